"""Set-up panel: dataset, augmentation recipe with live two-view preview, loss and method, encoder, optimiser, device.

Every edit rebuilds a Config through the same validation the CLI uses; the first error is shown
(wrapped) under the form and ``validityChanged(False, message)`` keeps Start disabled. The dataset
loads in a background task with a progress bar and Cancel; the form stays usable meanwhile. The loaded splits
go into the session's ``LoadedData`` (the window's, shared with training and sweeps: no second load), and
``dataLoaded`` says they are there.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import re

import torch
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QApplication, QComboBox, QFileDialog, QFormLayout, QGridLayout, QGroupBox, QHBoxLayout, QLabel,
                               QLineEdit, QListWidget, QProgressBar, QScrollArea, QSizePolicy, QSpinBox,
                               QToolButton, QVBoxLayout, QWidget)

from workbench.core.augment import AUGMENTS, AUTO, PRESETS, Augmenter, resolve_preset
from workbench.core.config import Config, method_for_loss
from workbench.core.data import DATASETS, load_splits
from workbench.core.losses import LOSSES
from workbench.core.methods import METHODS
from workbench.core.models import ENCODERS
from workbench.core.optim import OPTIMIZERS
from workbench.core.registry import ConfigError
from workbench.core.setup import batch_too_large
from workbench.gui.session import LoadedData, Session
from workbench.gui.worker import EventWorker, task
from workbench.gui.widgets import FloatBox, LogSlider, ParamForm, TileGrid

CUSTOM = "custom"
LENGTH_UNITS = ("epochs", "steps", "minutes")  # the three ways a run's length is given
MAX_EPOCHS = 100000  # train.epochs' limit: what a run given in steps or minutes gets, so that they end it
THUMBS_PER_CLASS, THUMB_COLUMNS = 2, 10


def preset_recipe(name: str) -> list[dict]:
    """A preset's recipe as the config resolves it (every parameter written out), to compare with and to apply."""
    return copy.deepcopy(Config.from_dict({"augment": {"preset": name}}).augment.recipe)


def _combo(names, name):
    c = QComboBox()
    c.addItems(names)
    c.setObjectName(name)
    c.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
    c.setMinimumContentsLength(8)
    return c


def plain_doc(doc: str) -> str:
    """The first paragraph of a docstring as plain text (RST markup removed), ending as a sentence: a paragraph
    that leads into a formula ("... as negatives:") ends with a full stop instead."""
    first = doc.strip().split("\n\n")[0]
    first = re.sub(r":\w+:`([^`]*)`", r"\1", first)
    first = re.sub(r"`{1,2}([^`]*)`{1,2}_?", r"\1", first)
    first = " ".join(first.split())
    return first.rstrip(":,;- ") + "." if first and first[-1] not in ".!?" else first


def _tallest_step_form() -> int:
    """The height of the editors of the augmentation with the most parameters (measured once)."""
    if not hasattr(_tallest_step_form, "px"):
        form = ParamForm()
        heights = []
        for name in AUGMENTS.names():
            form.set_params(AUGMENTS.get(name).params)
            form.layout().activate()
            heights.append(form.sizeHint().height())
        form.deleteLater()
        _tallest_step_form.px = max(heights, default=0)
    return _tallest_step_form.px


def _wrap_label(name: str = "") -> QLabel:
    lab = QLabel("")
    lab.setWordWrap(True)
    lab.setObjectName(name)
    lab.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)  # wraps to the panel's width, never widens it
    lab.setTextInteractionFlags(Qt.TextSelectableByMouse)
    return lab


def thumbnail_rows(labels: list[int], per_class: int = THUMBS_PER_CLASS, limit: int = 2 * THUMB_COLUMNS) -> list[int]:
    """Rows to show as thumbnails: the first ``per_class`` of each class, ordered so that the first
    row of tiles holds one image of each class, the next row a second one (first rows if unlabeled)."""
    rank, rows = {}, []
    for i, c in enumerate(labels):
        if rank.get(c, 0) < per_class:
            rows.append((rank.get(c, 0), c, i))
            rank[c] = rank.get(c, 0) + 1
    return [i for _, _, i in sorted(rows)][:limit]


class SetupPanel(QScrollArea):
    validityChanged = Signal(bool, str)
    dataLoaded = Signal(object)  # (train, test)

    def __init__(self, cfg: Config | None = None, data: LoadedData | None = None):
        super().__init__()
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)  # the form fits the width; nothing hides to the right
        body = QWidget()
        self.setWidget(body)
        lay = QVBoxLayout(body)
        self._building = True
        self.cfg = cfg or Config()
        self.data = data if data is not None else Session().data  # the loaded splits: the panel loads, others read
        self.loading: EventWorker | None = None
        lay.addWidget(self._data_box())
        lay.addWidget(self._augment_box())
        lay.addWidget(self._loss_box())
        lay.addWidget(self._train_box())
        self.error = _wrap_label("error")
        self.error.setStyleSheet("color: #c0392b; font-weight: bold")
        lay.addWidget(self.error)
        lay.addStretch(1)
        self._recipe: list[dict] = []
        self._previewed = None  # (images, recipe) the preview's views were drawn for
        self._timer = QTimer(self, singleShot=True, interval=150)
        self._timer.timeout.connect(self._validate)
        self._connect()
        self.set_config(self.cfg)

    def minimumSizeHint(self):  # noqa: N802 - Qt's name
        """As wide as the form needs (plus the scroll bar), so the dock never hides anything to the right."""
        hint = super().minimumSizeHint()
        body = self.widget().minimumSizeHint().width() if self.widget() else 0
        hint.setWidth(max(hint.width(), body + self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth() + 2))
        return hint

    def sizeHint(self):  # noqa: N802 - Qt's name
        hint = super().sizeHint()
        hint.setWidth(self.minimumSizeHint().width())
        return hint

    # ----- building -----
    def _data_box(self) -> QGroupBox:
        g = QGroupBox("Dataset")
        f = QFormLayout(g)
        f.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        self.dataset = _combo(DATASETS.names(), "dataset")
        self.root = QLineEdit()
        self.root.setObjectName("root")
        self.root.setPlaceholderText("folder")  # short: the field is narrow at 1280x800; the tooltip says the rest
        self.root.setToolTip("the dataset's folder (image_folder) or where it is stored; not needed for bundled")
        browse = QToolButton()
        browse.setText("Browse…")
        browse.setObjectName("browse")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.root, 1)
        row.addWidget(browse)
        self.image_size = QSpinBox()
        self.image_size.setRange(0, 1024)
        self.image_size.setSpecialValueText("auto")
        self.image_size.setToolTip("side in pixels the images are trained at; auto keeps a dataset's own size and "
                                   "resizes a folder of large or mixed-size images to a size chosen from them "
                                   "(the line under the folder says which)")
        self.subset = QSpinBox()
        self.subset.setRange(0, 10_000_000)
        self.subset.setSpecialValueText("all")
        self.load_bar = QProgressBar()
        self.load_bar.setObjectName("load_progress")
        self.load_bar.setTextVisible(True)
        self.load_cancel = QToolButton()
        self.load_cancel.setText("Cancel")
        self.load_cancel.setObjectName("load_cancel")
        self.load_cancel.clicked.connect(self.cancel_loading)
        load_row = QHBoxLayout()
        load_row.addWidget(self.load_bar, 1)
        load_row.addWidget(self.load_cancel)
        self.load_host = QWidget()
        self.load_host.setLayout(load_row)
        load_row.setContentsMargins(0, 0, 0, 0)
        self.load_host.setVisible(False)
        self.data_info = _wrap_label("data_info")
        thumbs_host = QWidget()
        self.thumbs = TileGrid(QGridLayout(thumbs_host), 24)
        self.thumbs.layout.setSpacing(0)
        self.thumbs.layout.setContentsMargins(0, 0, 0, 0)
        f.addRow("dataset", self.dataset)
        f.addRow("root", row)
        f.addRow("image size", self.image_size)
        f.addRow("training images", self.subset)
        f.addRow(self.load_host)
        f.addRow(self.data_info)
        f.addRow(thumbs_host)
        return g

    def _augment_box(self) -> QGroupBox:
        g = QGroupBox("Augmentations (two views per image)")
        v = QVBoxLayout(g)
        self.preset = _combo([AUTO, *PRESETS, CUSTOM], "preset")
        v.addWidget(self.preset)
        self.recipe_list = QListWidget()
        self.recipe_list.setObjectName("recipe")
        self.recipe_list.setMaximumHeight(96)
        self.recipe_list.setWordWrap(True)
        self.recipe_list.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        v.addWidget(self.recipe_list)
        btns = QHBoxLayout()
        self.add_op = _combo(AUGMENTS.names(), "add_op")
        self.add_op.setToolTip("the kind of step Add appends at the end of the recipe (the selected step is named "
                               "over its parameters below)")
        self.add_op.setMinimumContentsLength(max(map(len, AUGMENTS.names())))  # "random_resized_crop" whole
        btns.addWidget(self.add_op, 1)
        for text, tip, slot in (("Add", "add this step at the end", self._add_step),
                                ("Remove", "remove the selected step", self._remove_step),
                                ("▲", "move the step up", lambda: self._move(-1)), ("▼", "move the step down", lambda: self._move(1))):
            b = QToolButton()
            b.setText(text)
            b.setToolTip(tip)
            b.setObjectName(f"aug_{text}")
            b.clicked.connect(slot)
            btns.addWidget(b)
        v.addLayout(btns)
        self.step_title = QLabel("")  # "color_jitter: its parameters", over the selected step's editors
        self.step_title.setObjectName("step_title")
        self.step_title.setStyleSheet("font-weight: bold")
        v.addWidget(self.step_title)
        self.step_form = ParamForm()
        self.step_form.setMinimumHeight(_tallest_step_form())  # selecting another step never makes the form jump
        v.addWidget(self.step_form)
        v.addLayout(self._progressive_row())
        v.addWidget(QLabel("Preview: original, view 1, view 2"))
        host = QWidget()
        self.preview = TileGrid(QGridLayout(host), 36)
        self.preview.layout.setSpacing(0)
        self.preview.layout.setContentsMargins(0, 0, 0, 0)
        v.addWidget(host)
        return g

    def _length_row(self) -> QWidget:
        """How long a run lasts, in one of the three ways a config can say it: epochs, steps or minutes."""
        host = QWidget()
        row = QHBoxLayout(host)
        row.setContentsMargins(0, 0, 0, 0)
        self.epochs, self.steps, self.minutes = QSpinBox(), QSpinBox(), FloatBox(0.0, 1e6, 1.0)
        self.epochs.setRange(0, MAX_EPOCHS)
        self.steps.setRange(0, 10**9)  # 0 steps or minutes are shown and named by validation, not reverted
        self.unit = _combo(list(LENGTH_UNITS), "run_unit")
        self.unit.setToolTip("epochs: passes over the training images; steps: optimiser steps; minutes: training time, "
                             "with evaluations on top (the learning-rate schedule follows the same clock)")
        for w, name in ((self.epochs, "epochs"), (self.steps, "steps"), (self.minutes, "minutes")):
            w.setObjectName(name)
            row.addWidget(w, 1)
            w.valueChanged.connect(lambda _v, name=name: self._length_typed(name))  # arrows, wheel, typing
            w.lineEdit().textEdited.connect(lambda _t, name=name: self._length_typed(name))  # typed, even the same number
        row.addWidget(self.unit)
        self._loaded_length = ("epochs", 0.0)
        self._typed_unit, self._shown_unit = "", "epochs"  # the box a number was typed into since its unit was chosen
        QApplication.instance().focusChanged.connect(self._focus_moved)
        return host

    def set_locked(self, locked: bool) -> None:
        """While a run trains its settings are greyed out and cannot change; the panel still scrolls, to read them."""
        self.widget().setEnabled(not locked)

    def _length_typed(self, unit: str):
        if unit == self._shown_unit:
            self._typed_unit = unit

    def _focus_moved(self, _old, new):
        """A typed number carries over only to the unit picked next: focus going anywhere but its box and the unit
        combo (and its list) forgets it."""
        box = getattr(self, self._typed_unit, None) if self._typed_unit else None
        if box is not None and new is not None and not any(new is w or w.isAncestorOf(new)
                                                            for w in (box, self.unit, self.unit.view())):
            self._typed_unit = ""

    def _show_unit(self, unit: str):
        """Show the box of ``unit``; a number typed just before the unit was changed carries over to it (people type
        "2", then pick "minutes"), where it fits the box; otherwise each unit keeps its own number."""
        typed, self._typed_unit, self._shown_unit = self._typed_unit, "", unit
        if typed and typed != unit:
            value, box = getattr(self, typed).value(), getattr(self, unit)
            if box.minimum() <= value <= box.maximum() and (value == int(value) or not isinstance(box, QSpinBox)):
                box.setValue(int(value) if isinstance(box, QSpinBox) else value)
            self._typed_unit = ""  # carried, not typed
        for w in (self.epochs, self.steps, self.minutes):
            w.setVisible(w.objectName() == unit)

    def _length(self) -> tuple[str, float]:
        unit = self.unit.currentText()
        return unit, float(getattr(self, unit).value())

    def _set_length(self, t):
        """Show the config's run length: minutes when time-boxed, else steps when capped, else epochs."""
        self.epochs.setValue(t.epochs)
        self.steps.setValue(t.max_steps or 1000)
        self.minutes.setValue(t.time_budget_s / 60 if t.time_budget_s else 10.0)
        unit = "minutes" if t.time_budget_s else "steps" if t.max_steps else "epochs"
        self._typed_unit = ""  # loaded, not typed: nothing carries over
        self.unit.setCurrentText(unit)
        self._show_unit(unit)
        self._loaded_length = self._length()

    def _apply_length(self, t: dict):
        """The chosen length into the [train] dict: it alone ends the run; a loaded config left as it was stays exact."""
        if self._length() == self._loaded_length:
            return
        unit, value = self._length()
        t.update(epochs=int(value) if unit == "epochs" else MAX_EPOCHS, max_steps=int(value) if unit == "steps" else 0,
                 time_budget_s=60 * value if unit == "minutes" else 0.0)

    def _progressive_row(self) -> QHBoxLayout:
        """augment.start_size / full_size_at as percentages: views start smaller and grow to full size."""
        row = QHBoxLayout()
        self.start_size, self.full_size_at = QSpinBox(), QSpinBox()
        for w, name, lo, suffix in ((self.start_size, "start_size", 0, "% of full size"),
                                    (self.full_size_at, "full_size_at", 1, "% of the run")):
            w.setObjectName(name)
            w.setRange(lo, 100)
            w.setSuffix(suffix)
        self.start_size.setSpecialValueText("auto")  # 0: half size when the run is boxed by time, else full size
        self.start_size.setToolTip("progressive resolution: views start at this fraction of the full side and grow to it "
                                   "(cheaper early steps); 100% = off; auto = 50% for a run with a time budget, else off")
        self.full_size_at.setToolTip("by this fraction of the run the views are at full size")
        row.addWidget(QLabel("views start at"))
        row.addWidget(self.start_size, 1)
        row.addWidget(QLabel("full by"))
        row.addWidget(self.full_size_at, 1)
        return row

    def _loss_box(self) -> QGroupBox:
        g = QGroupBox("Loss")
        v = QVBoxLayout(g)
        self.loss = _combo(LOSSES.names(), "loss")
        self._loss_name = self.loss.currentText()  # the loss the method was chosen for (method_for_loss)
        self.loss_doc = _wrap_label("loss_doc")
        self.loss_form = ParamForm()
        v.addWidget(self.loss)
        v.addWidget(self.loss_doc)
        v.addWidget(self.loss_form)
        row = QHBoxLayout()  # the method that feeds the loss, with its own parameters (the [method] section)
        self.method = _combo(METHODS.names(), "method")
        self.method.setToolTip("the learning method: what it adds to the network (predictor, momentum teacher, queue) "
                               "and what it gives the loss")
        row.addWidget(QLabel("method"))
        row.addWidget(self.method, 1)
        v.addLayout(row)
        self.method_form = ParamForm()
        v.addWidget(self.method_form)
        return g

    def _train_box(self) -> QGroupBox:
        g = QGroupBox("Encoder and training")
        f = QFormLayout(g)
        f.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        self.encoder = _combo(ENCODERS.names(), "encoder")
        self.encoder_form = ParamForm()
        self.head_out = QSpinBox()
        self.head_out.setRange(0, 8192)
        self.optim = _combo(OPTIMIZERS.names(), "optim")
        self.optim_form = ParamForm()  # weight decay, momentum: what the chosen optimiser takes besides lr
        self.lr = LogSlider(Config().optim.lr, 1e-5, 10.0)
        self.lr.setToolTip("peak learning rate (after warm-up)")
        self.batch = QSpinBox()
        self.batch.setObjectName("batch_size")
        self.batch.setRange(0, 65536)
        length = self._length_row()
        self.device = _combo(["auto", "cpu", "cuda"], "device")
        if not torch.cuda.is_available():
            self.device.model().item(2).setEnabled(False)
            self.device.setToolTip("no CUDA GPU found on this machine")
        for label, w in (("encoder", self.encoder), ("", self.encoder_form), ("projection dim", self.head_out),
                         ("optimiser", self.optim), ("", self.optim_form), ("learning rate", self.lr), ("batch size", self.batch),
                         ("run for", length), ("device", self.device)):
            f.addRow(label, w)
        return g

    def _connect(self):
        self.dataset.currentTextChanged.connect(self._dataset_changed)
        self.root.editingFinished.connect(self._root_edited)
        self.image_size.valueChanged.connect(self._dataset_changed)
        self.subset.valueChanged.connect(self._dataset_changed)
        self.preset.currentTextChanged.connect(self._preset_changed)
        self.recipe_list.currentRowChanged.connect(self._select_step)
        self.step_form.changed.connect(self._step_edited)
        self.loss.currentTextChanged.connect(self._loss_changed)
        self.method.currentTextChanged.connect(self._method_changed)
        self.encoder.currentTextChanged.connect(self._encoder_changed)
        for w in (self.loss_form, self.method_form, self.encoder_form):
            w.changed.connect(self.changed)
        for w in (self.head_out, self.batch, self.epochs, self.steps, self.minutes, self.start_size, self.full_size_at):
            w.valueChanged.connect(self.changed)
        self.unit.currentTextChanged.connect(self._show_unit)
        self.unit.currentTextChanged.connect(self.changed)
        self.start_size.valueChanged.connect(lambda v: self.full_size_at.setEnabled(v < 100))  # 100%: nothing grows
        self.lr.valueChanged.connect(self.changed)
        self.optim.currentTextChanged.connect(self._optim_changed)
        self.optim_form.changed.connect(self.changed)
        self.device.currentTextChanged.connect(self.changed)

    # ----- config <-> widgets -----
    def set_config(self, cfg: Config):
        self._building = True
        self.cfg = self.loaded = cfg  # the last valid config, and the one loaded (what the form does not show)
        self.dataset.setCurrentText(cfg.data.name)
        self.root.setText(cfg.data.root)
        self.image_size.setValue(cfg.data.image_size)
        self.subset.setValue(cfg.data.subset)
        self._recipe = copy.deepcopy(cfg.augment.recipe)
        same = cfg.augment.preset in PRESETS and self._recipe == preset_recipe(cfg.augment.preset)
        if cfg.augment.preset == AUTO and not self._recipe:
            self._apply_preset(AUTO)
        else:
            self._set_preset(cfg.augment.preset if same else CUSTOM)
            self._refresh_recipe()
        self.start_size.setValue(round(100 * cfg.augment.start_size))
        self.full_size_at.setValue(round(100 * cfg.augment.full_size_at))
        self.full_size_at.setEnabled(cfg.augment.start_size < 1.0)
        self.loss.setCurrentText(cfg.loss.name)
        self.loss_form.set_params(LOSSES.get(cfg.loss.name).params, cfg.loss.params)
        self.loss_doc.setText(plain_doc(LOSSES.get(cfg.loss.name).doc))
        self._loss_name = cfg.loss.name
        self.method.setCurrentText(cfg.method.name)
        self.method_form.set_params(METHODS.get(cfg.method.name).params, dataclasses.asdict(cfg.method.params))
        self.encoder.setCurrentText(cfg.model.encoder)
        self.encoder_form.set_params(ENCODERS.get(cfg.model.encoder).params, cfg.model.params)
        self.head_out.setValue(cfg.model.head_out)
        self.optim.setCurrentText(cfg.optim.name)
        self._set_optim_params(cfg.optim.name, vars(cfg.optim))
        self.lr.setValue(cfg.optim.lr)
        self.batch.setValue(cfg.train.batch_size)
        self._set_length(cfg.train)
        self.device.setCurrentText(cfg.train.device)
        self._building = False
        self._load_data()
        self._validate()

    def build_config(self) -> Config:
        """The config that runs: the loaded config with every value the form shows (never the last validated
        config, which may hold an edit the form has since undone)."""
        d = self.loaded.to_dict()
        d["data"].update(name=self.dataset.currentText(), root=self.root_text(),
                         image_size=self.image_size.value(), subset=self.subset.value())
        auto = self.preset.currentText() == AUTO  # resolved by the core from the data it trains on
        d["augment"].update(preset=self.preset.currentText(), recipe=[] if auto else copy.deepcopy(self._recipe))
        for w in (self.start_size, self.full_size_at):  # a percentage; a loaded value it rounds stays exact
            if w.value() != round(100 * d["augment"][w.objectName()]):
                d["augment"][w.objectName()] = w.value() / 100
        d["loss"] = {"name": self.loss.currentText(), **self.loss_form.values()}
        d["method"] = {"name": self.method.currentText(), **self.method_form.values()}
        d["model"] = {k: v for k, v in d["model"].items() if k in ("head_layers", "head_hidden", "head_bn", "predictor_hidden", "sync_bn")}
        d["model"].update(encoder=self.encoder.currentText(), head_out=self.head_out.value(), **self.encoder_form.values())
        d["optim"].update(name=self.optim.currentText(), lr=self.lr.value(), **self.optim_form.values())
        d["train"].update(batch_size=self.batch.value(), device=self.device.currentText())
        self._apply_length(d["train"])
        return Config.from_dict(d)

    def changed(self, *_):
        if not self._building:
            self._timer.start()

    def _validate(self):
        try:
            unit, value = self._length()
            if value <= 0 and unit != "epochs":  # 0 would mean "no limit" in the config: a run of MAX_EPOCHS
                key = "train.max_steps" if unit == "steps" else "train.time_budget_s"
                raise ConfigError(f"{key}: a run of 0 {unit} does nothing; give it more than 0 {unit}", key)
            self.cfg = self.build_config()
            if self.cfg.train.device == "cuda" and not torch.cuda.is_available():
                raise ConfigError("train.device: no CUDA GPU on this machine; choose auto or cpu", "train.device")
            if self.data.splits is None and self.loading is None:
                raise ConfigError(self.data_info.text() or "dataset: not loaded", "data.root")
            n = self.data.train_size  # None while still loading: Start waits for it
            if n is not None and self.cfg.train.batch_size > n:
                raise ConfigError(batch_too_large(self.cfg.train.batch_size, n), "train.batch_size")
        except ConfigError as exc:
            self.error.setText(str(exc))
            self._mark(self.field_widget(exc.field))
            self.validityChanged.emit(False, str(exc))
            return
        self.error.setText("")
        self._mark(None)
        self.validityChanged.emit(True, "")
        self._update_preview()

    def field_widget(self, field: str | None):
        """The editor of a config key ("train.batch_size" -> the batch size box, "loss.temperature" -> its row of the
        loss form, "augment.recipe[2].p" -> the recipe), or None."""
        if not field:
            return None
        section, _, rest = field.partition(".")
        name = rest.split(".")[0].split("[")[0]
        fixed = {"data.name": self.dataset, "data.root": self.root, "data.image_size": self.image_size,
                 "data.subset": self.subset, "train.batch_size": self.batch, "train.epochs": self.epochs,
                 "train.max_steps": self.steps, "train.time_budget_s": self.minutes,
                 "train.device": self.device, "optim.lr": self.lr, "optim.name": self.optim, "loss.name": self.loss,
                 "method.name": self.method, "model.encoder": self.encoder, "model.head_out": self.head_out,
                 "augment.start_size": self.start_size, "augment.full_size_at": self.full_size_at}
        forms = {"loss": (self.loss_form, self.loss), "method": (self.method_form, self.method), "model": (self.encoder_form, self.encoder),
                 "optim": (self.optim_form, self.optim)}
        if f"{section}.{name}" in fixed:
            return fixed[f"{section}.{name}"]
        if section in forms:
            form, fallback = forms[section]
            return form.editors.get(name, fallback)
        if name == "recipe":
            return self._recipe_widget(rest)
        return None

    def _recipe_widget(self, rest: str):
        """"recipe[2].p": the step's editor when that step is the one shown, else the recipe list."""
        step, _, param = rest.partition("].")
        shown = self.recipe_list.currentRow()
        if param and step == f"recipe[{shown}":
            return self.step_form.editors.get(param, self.recipe_list)
        return self.recipe_list

    def _mark(self, widget):
        """Outline the editor the validation error is about (and only that one)."""
        old = getattr(self, "_marked", None)
        if old is not None and old is not widget:
            with contextlib.suppress(RuntimeError):  # the form rebuilt it meanwhile
                old.setStyleSheet("")
        widget = getattr(widget, "spin", widget)  # a slider with its number box: outline the box
        self._marked = widget
        if widget is not None:
            widget.setStyleSheet("border: 2px solid #c0392b")

    @property
    def valid(self) -> bool:
        return not self.error.text()

    # ----- dataset (loaded in the background) -----
    def _browse(self):
        path = QFileDialog.getExistingDirectory(self, "Dataset folder", self.root.text() or ".")
        if path:
            self.root.setText(path)
            self._root_edited()

    def _root_edited(self):
        """A folder given while the built-in sample is chosen (which reads none) means: train on that folder."""
        if self.root.text().strip() and self.dataset.currentText() == "bundled":
            self.dataset.setCurrentText("image_folder")  # which loads it
        else:
            self._dataset_changed()

    def root_text(self) -> str:
        """The root the config gets: none for the built-in sample, whatever the box still holds."""
        return "" if self.dataset.currentText() == "bundled" else self.root.text().strip()

    def _dataset_changed(self, *_):
        if not self._building:
            self._load_data()
            self.changed()

    def _data_config(self):
        from workbench.core.config import DataConfig

        d = self.cfg.data
        return DataConfig(name=self.dataset.currentText(), root=self.root_text(), image_size=self.image_size.value(),
                          holdout=d.holdout, subset=self.subset.value(), download=d.download, in_memory=d.in_memory)

    def loaded_for(self, cfg: Config):
        """The splits already loaded for ``cfg.data``, or None when they are still loading or differ."""
        return self.data.for_config(cfg)

    def _load_data(self):
        try:
            dcfg = self._data_config()
        except ConfigError as exc:
            self._loaded_error(str(exc))
            return
        if self.data.holds(dcfg):
            return
        self.cancel_loading(quiet=True)
        self.data.start_loading(dcfg)
        self._update_preview()  # no views of the previous dataset while this one loads
        self.data_info.setText(f"loading {dcfg.name}…")
        self.load_bar.setRange(0, 0)
        self.load_bar.setFormat("loading…")
        self.load_host.setVisible(True)
        self.loading = task(lambda report, cancel: load_splits(dcfg, progress=report, cancel=cancel),
                            lambda splits: self._loaded(dcfg, splits), lambda msg, *_: self._loaded_error(msg), self._progress)

    def cancel_loading(self, *_, quiet: bool = False):
        if self.loading is not None:
            self.loading.cancel()
            self.loading = None
            self.load_host.setVisible(False)
            if not quiet:
                self._loaded_error("dataset: loading cancelled; change the dataset or its folder to load again")

    def _progress(self, done: int, total: int, message: str):
        self.load_bar.setRange(0, max(total, 0))
        self.load_bar.setValue(done)
        self.load_bar.setFormat(f"{done:,} / {total:,} images" if total else "loading…")
        if message:
            self.load_bar.setToolTip(message)

    def _loaded(self, dcfg, splits):
        self.loading = None
        self.load_host.setVisible(False)
        train, test = splits
        self.data.loaded(dcfg, (train, test))
        labels = f"{len(train.classes)} classes" if train.has_labels else "unlabeled"
        skipped = f", {len(train.skipped)} unreadable files skipped" if train.skipped else ""
        note = ""
        if self.preset.currentText() == AUTO:
            self._apply_preset(AUTO)
            note = f"; augmentation preset auto -> {self._auto_preset()}"
        checks = "".join(f"\n⚠ {w.removeprefix('data: ')}" for w in dict.fromkeys(train.notes))  # what the loader guessed
        self.data_info.setText(f"{len(train):,} training / {len(test):,} held-out images, "
                               f"{train.channels}x{train.size}x{train.size}, {labels}{skipped}{note}{checks}")
        self._show_thumbs(train)
        self._update_preview(self._recipe)  # the new dataset's views at once, not after the next valid edit
        self.updateGeometry()
        self.dataLoaded.emit(splits)
        self.changed()

    def _loaded_error(self, msg: str):
        self.loading = None
        self.load_host.setVisible(False)
        self.data.failed()
        self.data_info.setText(msg)
        self._show_thumbs(None)
        self.changed()

    def _show_thumbs(self, data):
        self.thumbs.begin()
        if data is not None:
            if hasattr(data, "thumbnails"):
                images, labels = data.thumbnails(THUMBS_PER_CLASS)
                images, labels = images[: 2 * THUMB_COLUMNS], labels[: 2 * THUMB_COLUMNS]
            else:
                rows = thumbnail_rows(data.labels.tolist())
                images, labels = data.images[rows], data.labels[rows]
            for i, (img, c) in enumerate(zip(images, [int(c) for c in labels], strict=True)):
                name = data.classes[c] if 0 <= c < len(data.classes) else "unlabeled"
                self.thumbs.put(i // THUMB_COLUMNS, i % THUMB_COLUMNS, img.numpy() if hasattr(img, "numpy") else img, tooltip=name)
        self.thumbs.end()

    # ----- augmentation recipe -----
    def _set_preset(self, name: str):
        self.preset.blockSignals(True)
        self.preset.setCurrentText(name)
        self.preset.blockSignals(False)

    def _recipe_text(self, s: dict) -> str:
        def fmt(v):
            if isinstance(v, (list, tuple)):
                return "[" + ", ".join(fmt(x) for x in v) + "]"
            return f"{v:g}" if isinstance(v, float) else str(v)

        extras = ", ".join(f"{k}={fmt(v)}" for k, v in s.items() if k not in ("name", "p"))
        return f"{s['name']}  (p={s['p']:.2f}{', ' + extras if extras else ''})"

    def _refresh_recipe(self, select: int = 0):
        self.recipe_list.blockSignals(True)
        self.recipe_list.clear()
        for s in self._recipe:
            self.recipe_list.addItem(self._recipe_text(s))
        self.recipe_list.blockSignals(False)
        if self._recipe:
            self.recipe_list.setCurrentRow(min(select, len(self._recipe) - 1))
            self._select_step(self.recipe_list.currentRow())
        else:
            self.step_title.setText("")
            self.step_form.set_params([])

    def _select_step(self, row: int):
        if 0 <= row < len(self._recipe):
            s = self._recipe[row]
            self.step_title.setText(f"step {row + 1}, {s['name']}: its parameters")
            self.step_form.set_params(AUGMENTS.get(s["name"]).params, s)

    def _edited(self):
        self._set_preset(CUSTOM)
        self.changed()

    def _step_edited(self):
        row = self.recipe_list.currentRow()
        if 0 <= row < len(self._recipe):
            self._recipe[row] = {"name": self._recipe[row]["name"], **self.step_form.values()}
            self.recipe_list.item(row).setText(self._recipe_text(self._recipe[row]))
            self._edited()

    def _auto_preset(self) -> str | None:
        """The preset "auto" stands for with the loaded data (None while nothing is loaded)."""
        train = self.data.splits[0] if self.data.splits is not None else None
        return resolve_preset(train.channels, train.size) if train is not None else None

    def _apply_preset(self, name: str):
        self._set_preset(name)
        shown = self._auto_preset() if name == AUTO else name
        self._recipe = preset_recipe(shown) if shown else []
        self.preset.setToolTip(f"auto -> {shown}" if name == AUTO and shown else "")
        self._refresh_recipe()

    def _preset_changed(self, name: str):
        if name in PRESETS or name == AUTO:
            self._apply_preset(name)
            self.changed()

    def _add_step(self):
        name = self.add_op.currentText()
        defaults = {p.name: (list(p.default) if isinstance(p.default, tuple) else p.default) for p in AUGMENTS.get(name).params}
        self._recipe.append({"name": name, **defaults})
        self._refresh_recipe(len(self._recipe) - 1)
        self._edited()

    def _remove_step(self):
        row = self.recipe_list.currentRow()
        if 0 <= row < len(self._recipe):
            del self._recipe[row]
            self._refresh_recipe(row)
            self._edited()

    def _move(self, delta: int):
        row = self.recipe_list.currentRow()
        new = row + delta
        if 0 <= row < len(self._recipe) and 0 <= new < len(self._recipe):
            self._recipe[row], self._recipe[new] = self._recipe[new], self._recipe[row]
            self._refresh_recipe(new)
            self._edited()

    def _update_preview(self, recipe: list | None = None):
        """Original / view 1 / view 2 of the loaded training split's first images (none while nothing is loaded).
        New random views only when the recipe or the images change, not on unrelated edits (a temperature, a run
        length)."""
        if self.data.splits is None:
            self._show_preview(None)
            return
        train = self.data.splits[0]
        recipe = (self.cfg.augment.recipe or self._recipe) if recipe is None else recipe  # auto: the recipe it resolves to
        key = (id(train), repr(recipe))
        if key == self._previewed and self.preview.shown():
            return
        try:
            aug = Augmenter(recipe, [0.0] * train.channels, [1.0] * train.channels)
        except (ConfigError, ValueError, TypeError, KeyError):  # a recipe being edited: the validation line explains
            self._show_preview(None)
            return
        self._previewed = key
        x = train.images[:6]
        g = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ()).item()))
        self._show_preview([x.numpy()] + [aug.to_uint8(aug.views(x, g)) for _ in range(2)])

    def _show_preview(self, views):
        """Rows original / view 1 / view 2 (none: the preview empties)."""
        self.preview.begin()
        if views is None:
            self._previewed = None
        for col in range(len(views[0]) if views is not None else 0):
            for r in range(3):
                self.preview.put(r, col, views[r][col])
        self.preview.end()

    # ----- loss / encoder -----
    def _loss_changed(self, name: str):
        if self._building:
            return
        self.loss_form.set_params(LOSSES.get(name).params)
        self.loss_doc.setText(plain_doc(LOSSES.get(name).doc))
        old, self._loss_name = self._loss_name, name
        method = method_for_loss(name, old, {"name": self.method.currentText()})["name"]
        if method != self.method.currentText():
            self.method.setCurrentText(method)  # its parameters follow (_method_changed)
        self.changed()

    def _method_changed(self, name: str):
        if self._building:
            return
        self.method_form.set_params(METHODS.get(name).params)
        self.changed()

    def _set_optim_params(self, name: str, values: dict):
        self.optim_form.set_params([p for p in OPTIMIZERS.get(name).params if p.name != "lr"], values)

    def _optim_changed(self, name: str):
        if not self._building:
            self._set_optim_params(name, self.optim_form.values())
            self.changed()

    def _encoder_changed(self, name: str):
        if self._building:
            return
        self.encoder_form.set_params(ENCODERS.get(name).params)
        self.changed()
