"""Set-up panel: dataset, augmentation recipe with live two-view preview, loss, encoder, optimiser, device.

Every edit rebuilds a Config through the same validation the CLI uses; the first error is shown
under the form and ``validityChanged(False, message)`` keeps Start disabled.
"""
from __future__ import annotations

import copy

import torch
from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QGridLayout, QGroupBox, QHBoxLayout, QLabel,
                               QLineEdit, QListWidget, QPushButton, QScrollArea, QSpinBox, QVBoxLayout, QWidget)

from workbench.core.augment import AUGMENTS, PRESETS, Augmenter
from workbench.core.config import Config
from workbench.core.data import DATASETS, load_splits
from workbench.core.losses import LOSSES
from workbench.core.models import ENCODERS
from workbench.core.optim import OPTIMIZERS
from workbench.core.registry import ConfigError
from workbench.gui.widgets import LogSlider, ParamForm, TileGrid


def _combo(names, name):
    c = QComboBox()
    c.addItems(names)
    c.setObjectName(name)
    return c


class SetupPanel(QScrollArea):
    validityChanged = Signal(bool, str)

    def __init__(self, cfg: Config | None = None):
        super().__init__()
        self.setWidgetResizable(True)
        body = QWidget()
        self.setWidget(body)
        lay = QVBoxLayout(body)
        self._building = True
        self.cfg = cfg or Config()
        self.data_cache = None

        # --- data ---
        g = QGroupBox("Dataset")
        f = QFormLayout(g)
        self.dataset = _combo(DATASETS.names(), "dataset")
        self.root = QLineEdit()
        self.root.setObjectName("root")
        self.root.setPlaceholderText("folder (not needed for the bundled dataset)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.root)
        row.addWidget(browse)
        self.image_size = QSpinBox()
        self.image_size.setRange(0, 1024)
        self.image_size.setSpecialValueText("native")
        self.subset = QSpinBox()
        self.subset.setRange(0, 10_000_000)
        self.subset.setSpecialValueText("all")
        self.data_info = QLabel("")
        self.data_info.setObjectName("data_info")
        self.thumbs = TileGrid(QGridLayout(), 40)
        f.addRow("dataset", self.dataset)
        f.addRow("root", row)
        f.addRow("image size", self.image_size)
        f.addRow("training images", self.subset)
        f.addRow(self.data_info)
        f.addRow(self.thumbs.layout)
        lay.addWidget(g)

        # --- augmentations ---
        g = QGroupBox("Augmentations (two views per image)")
        v = QVBoxLayout(g)
        self.preset = _combo(list(PRESETS), "preset")
        v.addWidget(self.preset)
        self.recipe_list = QListWidget()
        self.recipe_list.setObjectName("recipe")
        self.recipe_list.setMaximumHeight(110)
        v.addWidget(self.recipe_list)
        btns = QHBoxLayout()
        self.add_op = _combo(AUGMENTS.names(), "add_op")
        for text, slot in (("Add", self._add_step), ("Remove", self._remove_step), ("▲", lambda: self._move(-1)), ("▼", lambda: self._move(1))):
            b = QPushButton(text)
            b.setObjectName(f"aug_{text}")
            b.clicked.connect(slot)
            btns.addWidget(b) if text != "Add" else (btns.addWidget(self.add_op), btns.addWidget(b))
        v.addLayout(btns)
        self.step_form = ParamForm()
        v.addWidget(self.step_form)
        self.preview = TileGrid(QGridLayout(), 48)
        v.addWidget(QLabel("Preview: original, view 1, view 2"))
        v.addLayout(self.preview.layout)
        lay.addWidget(g)

        # --- loss ---
        g = QGroupBox("Loss")
        v = QVBoxLayout(g)
        self.loss = _combo(LOSSES.names(), "loss")
        self.loss_doc = QLabel()
        self.loss_doc.setWordWrap(True)
        self.loss_form = ParamForm()
        v.addWidget(self.loss)
        v.addWidget(self.loss_doc)
        v.addWidget(self.loss_form)
        lay.addWidget(g)

        # --- model / optimisation ---
        g = QGroupBox("Encoder and training")
        f = QFormLayout(g)
        self.encoder = _combo(ENCODERS.names(), "encoder")
        self.encoder_form = ParamForm()
        self.head_out = QSpinBox()
        self.head_out.setRange(0, 8192)
        self.optim = _combo(OPTIMIZERS.names(), "optim")
        self.lr = LogSlider(1e-3, 1e-5, 10.0, decimals=5)
        self.batch = QSpinBox()
        self.batch.setObjectName("batch_size")
        self.batch.setRange(0, 65536)
        self.epochs = QSpinBox()
        self.epochs.setObjectName("epochs")
        self.epochs.setRange(0, 100000)
        self.device = _combo(["auto", "cpu", "cuda"], "device")
        if not torch.cuda.is_available():
            self.device.model().item(2).setEnabled(False)
            self.device.setToolTip("no CUDA GPU found on this machine")
        for label, w in (("encoder", self.encoder), ("", self.encoder_form), ("projection dim", self.head_out),
                         ("optimiser", self.optim), ("learning rate", self.lr), ("batch size", self.batch),
                         ("epochs", self.epochs), ("device", self.device)):
            f.addRow(label, w)
        lay.addWidget(g)
        self.error = QLabel("")
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #c0392b; font-weight: bold")
        lay.addWidget(self.error)
        lay.addStretch(1)

        self._recipe: list[dict] = []
        self._timer = QTimer(self, singleShot=True, interval=150)
        self._timer.timeout.connect(self._validate)
        self.dataset.currentTextChanged.connect(self._dataset_changed)
        self.root.editingFinished.connect(self._dataset_changed)
        self.preset.currentTextChanged.connect(self._preset_changed)
        self.recipe_list.currentRowChanged.connect(self._select_step)
        self.step_form.changed.connect(self._step_edited)
        self.loss.currentTextChanged.connect(self._loss_changed)
        self.encoder.currentTextChanged.connect(self._encoder_changed)
        for w in (self.loss_form, self.encoder_form):
            w.changed.connect(self.changed)
        for w in (self.image_size, self.subset, self.head_out, self.batch, self.epochs):
            w.valueChanged.connect(self.changed)
        self.lr.valueChanged.connect(self.changed)
        self.optim.currentTextChanged.connect(self.changed)
        self.device.currentTextChanged.connect(self.changed)
        self.set_config(self.cfg)

    # ----- config <-> widgets -----
    def set_config(self, cfg: Config):
        self._building = True
        self.cfg = cfg
        self.dataset.setCurrentText(cfg.data.name)
        self.root.setText(cfg.data.root)
        self.image_size.setValue(cfg.data.image_size)
        self.subset.setValue(cfg.data.subset)
        self._recipe = copy.deepcopy(cfg.augment.recipe)
        self.preset.blockSignals(True)
        self.preset.setCurrentText(cfg.augment.preset)
        self.preset.blockSignals(False)
        self._refresh_recipe()
        self.loss.setCurrentText(cfg.loss.name)
        self.loss_form.set_params(LOSSES.get(cfg.loss.name).params, cfg.loss.params)
        self.loss_doc.setText(LOSSES.get(cfg.loss.name).doc.split("\n\n")[0])
        self.encoder.setCurrentText(cfg.model.encoder)
        self.encoder_form.set_params(ENCODERS.get(cfg.model.encoder).params, cfg.model.params)
        self.head_out.setValue(cfg.model.head_out)
        self.optim.setCurrentText(cfg.optim.name)
        self.lr.setValue(cfg.optim.lr)
        self.batch.setValue(cfg.train.batch_size)
        self.epochs.setValue(cfg.train.epochs)
        self.device.setCurrentText(cfg.train.device)
        self._building = False
        self._load_data()
        self._validate()

    def build_config(self) -> Config:
        d = self.cfg.to_dict()
        d["data"].update(name=self.dataset.currentText(), root=self.root.text().strip(),
                         image_size=self.image_size.value(), subset=self.subset.value())
        d["augment"] = {"preset": self.preset.currentText(), "recipe": copy.deepcopy(self._recipe)}
        d["loss"] = {"name": self.loss.currentText(), **self.loss_form.values()}
        d["model"] = {k: v for k, v in d["model"].items() if k in ("head_layers", "head_hidden", "head_bn", "predictor_hidden", "sync_bn")}
        d["model"].update(encoder=self.encoder.currentText(), head_out=self.head_out.value(), **self.encoder_form.values())
        d["optim"].update(name=self.optim.currentText(), lr=self.lr.value())
        d["train"].update(batch_size=self.batch.value(), epochs=self.epochs.value(), device=self.device.currentText())
        return Config.from_dict(d)

    def changed(self, *_):
        if not self._building:
            self._timer.start()

    def _validate(self):
        try:
            self.cfg = self.build_config()
            if self.cfg.train.device == "cuda" and not torch.cuda.is_available():
                raise ConfigError("train.device: no CUDA GPU on this machine; choose auto or cpu")
            if self.data_cache is None:
                raise ConfigError(self.data_info.text() or "dataset: not loaded")
            n = len(self.data_cache[0])
            if self.cfg.train.batch_size > (self.cfg.data.subset or n):
                raise ConfigError(f"train.batch_size: {self.cfg.train.batch_size} is larger than the {n} training images")
        except ConfigError as exc:
            self.error.setText(str(exc))
            self.validityChanged.emit(False, str(exc))
            return
        self.error.setText("")
        self.validityChanged.emit(True, "")
        self._update_preview()

    @property
    def valid(self) -> bool:
        return not self.error.text()

    # ----- dataset -----
    def _browse(self):
        path = QFileDialog.getExistingDirectory(self, "Dataset folder", self.root.text() or ".")
        if path:
            self.root.setText(path)
            self._dataset_changed()

    def _dataset_changed(self, *_):
        if not self._building:
            self._load_data()
            self.changed()

    def _load_data(self):
        from workbench.core.config import DataConfig

        self.data_cache = None
        try:
            train, test = load_splits(DataConfig(name=self.dataset.currentText(), root=self.root.text().strip()))
        except ConfigError as exc:
            self.data_info.setText(str(exc))
            self._show_thumbs(None)
            return
        self.data_cache = (train, test)
        labels = f"{len(train.classes)} classes" if train.has_labels else "unlabeled"
        skipped = f", {len(train.skipped)} unreadable files skipped" if train.skipped else ""
        self.data_info.setText(f"{len(train)} training / {len(test)} held-out images, "
                               f"{train.channels}x{train.size}x{train.size}, {labels}{skipped}")
        self._show_thumbs(train)

    def _show_thumbs(self, data):
        self.thumbs.begin()
        for i in range(min(16, len(data)) if data is not None else 0):
            c = int(data.labels[i])
            self.thumbs.put(i // 8, i % 8, data.images[i].numpy(),
                            tooltip=data.classes[c] if 0 <= c < len(data.classes) else "unlabeled")
        self.thumbs.end()

    # ----- augmentation recipe -----
    def _refresh_recipe(self, select: int = 0):
        self.recipe_list.blockSignals(True)
        self.recipe_list.clear()
        for s in self._recipe:
            extras = ", ".join(f"{k}={v}" for k, v in s.items() if k not in ("name", "p"))
            self.recipe_list.addItem(f"{s['name']}  (p={s['p']:.2f}{', ' + extras if extras else ''})")
        self.recipe_list.blockSignals(False)
        if self._recipe:
            self.recipe_list.setCurrentRow(min(select, len(self._recipe) - 1))
            self._select_step(self.recipe_list.currentRow())
        else:
            self.step_form.set_params([])

    def _select_step(self, row: int):
        if 0 <= row < len(self._recipe):
            s = self._recipe[row]
            self.step_form.set_params(AUGMENTS.get(s["name"]).params, s)

    def _step_edited(self):
        row = self.recipe_list.currentRow()
        if 0 <= row < len(self._recipe):
            self._recipe[row] = {"name": self._recipe[row]["name"], **self.step_form.values()}
            item = self.recipe_list.item(row)
            s = self._recipe[row]
            item.setText(f"{s['name']}  (edited)")
            self.changed()

    def _preset_changed(self, name: str):
        self._recipe = copy.deepcopy(Config.from_dict({"augment": {"preset": name}}).augment.recipe)
        self._refresh_recipe()
        self.changed()

    def _add_step(self):
        name = self.add_op.currentText()
        self._recipe.append({"name": name, **{p.name: (list(p.default) if isinstance(p.default, tuple) else p.default) for p in AUGMENTS.get(name).params}})
        self._refresh_recipe(len(self._recipe) - 1)
        self.changed()

    def _remove_step(self):
        row = self.recipe_list.currentRow()
        if 0 <= row < len(self._recipe):
            del self._recipe[row]
            self._refresh_recipe(row)
            self.changed()

    def _move(self, delta: int):
        row = self.recipe_list.currentRow()
        new = row + delta
        if 0 <= row < len(self._recipe) and 0 <= new < len(self._recipe):
            self._recipe[row], self._recipe[new] = self._recipe[new], self._recipe[row]
            self._refresh_recipe(new)
            self.changed()

    def _update_preview(self):
        self.preview.begin()
        if self.data_cache is None:
            self.preview.end()
            return
        train = self.data_cache[0]
        aug = Augmenter(self.cfg.augment.recipe, [0.0] * train.channels, [1.0] * train.channels)
        x = train.images[:6]
        g = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ()).item()))
        views = [x.numpy()] + [aug.to_uint8(aug.views(x, g)) for _ in range(2)]
        for col in range(len(x)):
            for r in range(3):
                self.preview.put(r, col, views[r][col])
        self.preview.end()

    # ----- loss / encoder -----
    def _loss_changed(self, name: str):
        if self._building:
            return
        self.loss_form.set_params(LOSSES.get(name).params)
        self.loss_doc.setText(LOSSES.get(name).doc.split("\n\n")[0])
        self.changed()

    def _encoder_changed(self, name: str):
        if self._building:
            return
        self.encoder_form.set_params(ENCODERS.get(name).params)
        self.changed()
