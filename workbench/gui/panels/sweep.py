"""Sweep tab: pick parameters and values from the registries, run the trials one after another in a
worker thread, and compare them: a live table of trials, every trial's curves overlaid and coloured by
a chosen parameter, and the ranking metric against that parameter (a point per seed, a line through
the means). A double-click on a trial opens its run like the Runs tab does.

The sweep runs in the window's one worker type (``gui/worker.py``) over the core's ``run_sweep`` generator;
step events are coalesced so a fast trial never floods the GUI thread; plots redraw with ``setData`` on a timer.
"""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QAbstractItemView, QApplication, QCheckBox, QComboBox, QFormLayout, QGridLayout, QHBoxLayout, QLabel,
                               QHeaderView, QLineEdit, QListWidget, QListWidgetItem, QMessageBox, QPushButton, QSizePolicy, QSpinBox,
                               QSplitter,                                QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from workbench.core import events as E
from workbench.core import sweep as S
from workbench.core.config import parse_value
from workbench.core.registry import ConfigError
from workbench.core.runs import read_metrics
from workbench.gui.panel import Panel, RunEnded
from workbench.gui.panels.plots import COLORS, ema
from workbench.gui.worker import EventWorker, leave_a_core, first_line, start_worker


def sweepable() -> dict[str, tuple]:
    """Parameters a sweep can vary: key -> allowed values (a choice) or () (numbers typed as a list)."""
    from workbench.core.augment import PRESETS
    from workbench.core.losses import LOSSES
    from workbench.core.methods import METHODS
    from workbench.core.models import ENCODERS
    from workbench.core.optim import OPTIMIZERS

    out = {"loss.name": tuple(LOSSES.names()), "method.name": tuple(METHODS.names()), "augment.preset": tuple(PRESETS),
           "model.encoder": tuple(ENCODERS.names()), "optim.name": tuple(OPTIMIZERS.names()), "optim.schedule": ("cosine", "constant")}
    for key in ("optim.lr", "optim.weight_decay", "optim.warmup_epochs", "train.batch_size", "train.epochs",
                "model.head_out", "model.head_layers"):
        out[key] = ()
    for section, reg in (("loss", LOSSES), ("method", METHODS)):
        for name in reg.names():
            for p in reg.get(name).params:
                if p.choices or p.kind is bool:
                    out.setdefault(f"{section}.{p.name}", tuple(p.choices) or (True, False))
                elif p.kind in (int, float):
                    out.setdefault(f"{section}.{p.name}", ())
    return out


def swept_key(spec) -> str:
    """The parameter to colour by and plot the metric against: the first that takes more than one value (a range
    always does), else the first."""
    keys = list(spec.params)
    varied = [k for k, v in spec.params.items() if isinstance(v, S.Range) or len(v) > 1]
    return (varied or keys or [""])[0]


def length_text(t) -> str:
    """A [train] section's run length in words: "2 min", "150 steps", "3 epochs"."""
    if t.time_budget_s:
        return f"{t.time_budget_s / 60:g} min" if t.time_budget_s >= 60 else f"{t.time_budget_s:g} s"
    if t.max_steps:
        return f"{t.max_steps} steps"
    return f"{t.epochs} epoch{'s' if t.epochs != 1 else ''}"


def _shown(vals) -> str:
    if isinstance(vals, dict):  # a range
        num = f", {vals['num']} points" if vals.get("num") else ""
        return f"{vals['low']} to {vals['high']}" + (" (log)" if vals.get("log") else "") + num
    return ", ".join(str(v) for v in vals)


def sweep_job(base, spec, out: str, data=None):
    """The sweep as a worker's job: ``run_sweep``'s events (the trials' own events wrapped in ``RunEvent``)."""
    def job(control, _report):
        leave_a_core(base)
        yield from S.run_sweep(base, spec, out, control, confirm=True, data=data)

    return job


def is_trial_step(ev) -> bool:
    """A trial's step event: coalesced by the worker, so a fast trial never floods the GUI thread."""
    return isinstance(ev, S.RunEvent) and isinstance(ev.event, E.StepEvent)


class SweepEditor(QWidget):
    """The [sweep] section as a form; ``spec_dict()`` is what the TOML section would hold."""
    changed = Signal()

    def __init__(self):
        super().__init__()
        self.choices = sweepable()
        self.params: dict[str, list] = {}
        form = QFormLayout(self)
        self.key = QComboBox()
        self.key.setObjectName("sweep_key")
        self.key.addItems(list(self.choices))
        self.key.currentTextChanged.connect(self._key_changed)
        form.addRow("parameter", self.key)
        self.values_list = QListWidget()  # checkable registry values of a choice parameter
        self.values_list.setObjectName("sweep_values_list")
        self.values_list.setMaximumHeight(120)
        self.values_text = QLineEdit()  # numbers: "0.05, 0.1, 0.2"
        self.values_text.setObjectName("sweep_values")
        self.values_text.setPlaceholderText("values, e.g. 0.05, 0.1, 0.2")
        form.addRow("values", self.values_text)
        form.addRow("", self.values_list)
        row = QHBoxLayout()
        self.add_btn, self.remove_btn = QPushButton("Add / replace"), QPushButton("Remove")
        self.add_btn.setObjectName("sweep_add")
        self.remove_btn.setObjectName("sweep_remove")
        self.add_btn.clicked.connect(self.add_current)
        self.remove_btn.clicked.connect(self.remove_current)
        row.addWidget(self.add_btn)
        row.addWidget(self.remove_btn)
        form.addRow(row)
        self.table = QTableWidget(0, 2)
        self.table.setObjectName("sweep_params")
        self.table.setHorizontalHeaderLabels(["parameter", "values"])
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeToContents)  # "loss.temperature" whole
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setMaximumHeight(110)
        self.table.verticalHeader().setVisible(False)
        form.addRow(self.table)
        self.method = QComboBox()
        self.method.setObjectName("sweep_method")
        self.method.addItems(["grid", "random"] + (["tpe"] if S.has_optuna() else []))
        self.count = QSpinBox(minimum=1, maximum=10000, value=8)
        self.metric = QComboBox()
        self.metric.setObjectName("sweep_metric")
        self.metric.addItems(list(S.METRICS))
        self.metric.setCurrentText("best_knn")
        self.seeds = QLineEdit("0")
        self.seeds.setObjectName("sweep_seeds")
        self.prune = QCheckBox("prune (median rule)")
        self.prune.setToolTip("stop a trial whose value falls below the median of finished trials at the same epoch")
        self.prune.setObjectName("sweep_prune")
        self.prune.setChecked(True)
        self.max_trials = QSpinBox(minimum=1, maximum=100000, value=64)
        self.count.setToolTip("points to try (random / tpe)")
        self.max_trials.setToolTip("a sweep with more trials asks before it starts")
        for label, w in (("method", self.method), ("points", self.count), ("rank by", self.metric),
                         ("seeds", self.seeds), ("", self.prune), ("ask above", self.max_trials)):
            form.addRow(label, w)
        for sig in (self.method.currentTextChanged, self.count.valueChanged, self.metric.currentTextChanged,
                    self.seeds.textChanged, self.prune.toggled, self.max_trials.valueChanged):
            sig.connect(self.changed)
        self.method.currentTextChanged.connect(lambda m: self.count.setEnabled(m != "grid"))
        self.count.setEnabled(False)
        self._key_changed(self.key.currentText())

    def _key_changed(self, key: str):
        allowed = self.choices.get(key, ())
        self.values_list.setVisible(bool(allowed))
        self.values_text.setVisible(not allowed)
        self.values_list.clear()
        for v in allowed:
            item = QListWidgetItem(str(v))
            item.setData(Qt.UserRole, v)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if v in self.params.get(key, []) else Qt.Unchecked)
            self.values_list.addItem(item)
        if not allowed:
            vals = self.params.get(key, [])
            self.values_text.setText("" if isinstance(vals, dict) else ", ".join(str(v) for v in vals))

    def current_values(self) -> list:
        if self.choices.get(self.key.currentText()):
            items = [self.values_list.item(i) for i in range(self.values_list.count())]
            return [i.data(Qt.UserRole) for i in items if i.checkState() == Qt.Checked]
        text = self.values_text.text().strip()
        value = parse_value(f"[{text}]") if text else []
        if isinstance(value, list):
            return value
        return [parse_value(v.strip()) for v in text.split(",")]  # one bad item ("abc") is named alone, not the whole text

    def add_current(self):
        self.params[self.key.currentText()] = self.current_values()
        self._refresh_table()

    def remove_current(self):
        rows = {i.row() for i in self.table.selectedItems()} or {self.table.currentRow()}
        for key in [self.table.item(r, 0).text() for r in rows if 0 <= r < self.table.rowCount()]:
            self.params.pop(key, None)
        self._refresh_table()

    def _refresh_table(self):
        self.table.setRowCount(len(self.params))
        for r, (k, vals) in enumerate(self.params.items()):
            self.table.setItem(r, 0, QTableWidgetItem(k))
            self.table.setItem(r, 1, QTableWidgetItem(_shown(vals)))
        self.changed.emit()

    def set_spec(self, spec, seeds: list) -> None:
        """Show a sweep's section (an opened sweep folder) without emitting ``changed``."""
        self.blockSignals(True)
        self.params = {k: (asdict(v) if isinstance(v, S.Range) else list(v)) for k, v in spec.params.items()}
        self.method.setCurrentText(spec.method)
        self.count.setValue(max(1, spec.count))
        self.metric.setCurrentText(spec.metric)
        self.seeds.setText(", ".join(str(x) for x in seeds))
        self.prune.setChecked(spec.prune)
        self.max_trials.setValue(spec.max_trials)
        self._refresh_table()
        self._key_changed(self.key.currentText())
        self.blockSignals(False)

    def spec_dict(self) -> dict:
        seeds = parse_value(f"[{self.seeds.text().strip()}]")
        d = {"method": self.method.currentText(), "metric": self.metric.currentText(),
             "seeds": seeds if isinstance(seeds, list) else self.seeds.text(), "prune": self.prune.isChecked(),
             "max_trials": self.max_trials.value(), "params": dict(self.params)}
        if d["method"] != "grid":
            d["count"] = self.count.value()
        return d


class SweepPanel(Panel, QWidget):
    openRun = Signal(str)
    title, shortcut = "Sweep", "Alt+5"
    sweepDone = Signal(object)  # SweepDone, once the window has shown it
    runningChanged = Signal(bool)  # a sweep started (True) or its thread ended (False)

    def __init__(self, base_config, runs_root, busy=lambda: False, loaded_for=lambda cfg: None):
        """``base_config()`` returns the set-up's Config (raises ConfigError); ``runs_root()`` the runs folder;
        ``loaded_for(cfg)`` the (train, test) splits the window has already loaded for ``cfg.data``, or None."""
        super().__init__()
        self.base_config, self.runs_root, self.busy, self.loaded_for = base_config, runs_root, busy, loaded_for
        self.worker = self.thread = None
        self.trials: dict[int, S.Trial] = {}
        self.curves: dict[int, dict] = {}  # trial id -> {"steps": [], "loss": [], "epochs": [], "knn": []}
        self.items: dict[int, tuple] = {}  # trial id -> (loss curve, kNN curve)
        self.sweep_dir = None
        self.editor = SweepEditor()
        self.editor.changed.connect(self._edited)
        self.error = QLabel()
        self.error.setObjectName("sweep_error")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #c0392b")
        self.start_btn, self.stop_btn = QPushButton("Start sweep"), QPushButton("Stop")
        self.start_btn.setObjectName("sweep_start")
        self.stop_btn.setObjectName("sweep_stop")
        self.start_btn.clicked.connect(lambda: self.start())
        self.open_btn = QPushButton("Open sweep…")
        self.open_btn.setObjectName("sweep_open")
        self.open_btn.setToolTip("show a sweep folder's trials; Start then resumes it")
        self.open_btn.clicked.connect(self._pick_sweep)
        self._opened = None  # (base config, spec, folder) of an opened sweep, until the editor is changed
        self.stop_btn.clicked.connect(self.stop)
        self.stop_btn.setEnabled(False)
        self.status = QLabel("add parameters to vary, then Start sweep")
        self.status.setObjectName("sweep_status")
        self.status.setWordWrap(True)
        self.budget = QLabel()  # what each trial trains for: the set-up panel's run length, said here
        self.budget.setObjectName("sweep_budget")
        self.budget.setWordWrap(True)
        left = QWidget()
        lay = QVBoxLayout(left)
        lay.addWidget(self.editor)
        lay.addWidget(self.budget)
        lay.addWidget(self.error)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_btn)
        buttons.addWidget(self.stop_btn)
        buttons.addWidget(self.open_btn)
        lay.addLayout(buttons)
        lay.addWidget(self.status)
        lay.addStretch(1)
        split = QSplitter()
        split.addWidget(left)
        split.addWidget(self._build_results())
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([left.sizeHint().width(), 10000])
        QVBoxLayout(self).addWidget(split)
        self.timer = QTimer(self, interval=500)
        self.timer.timeout.connect(self.redraw)
        self.timer.start()
        self.dirty = False
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)
        self.validate()

    @classmethod
    def create(cls, window):
        return cls(window.setup.build_config, lambda: window.runs_root, busy=lambda: window.running,
                   loaded_for=window.session.data.for_config)

    def attach(self, window):
        self.openRun.connect(window.open_run)
        self.runningChanged.connect(window.sweep_running)
        window.setupChecked.connect(lambda *_: self.validate(quiet=True))  # its trials' length

    def on_event(self, ev):
        if isinstance(ev, RunEnded):
            self.validate()  # a "stop the training first" it showed no longer holds

    def _build_results(self) -> QWidget:
        right = QWidget()
        lay = QVBoxLayout(right)
        self.table = QTableWidget(0, 0)
        self.table.setObjectName("sweep_trials")
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.cellDoubleClicked.connect(self._open_row)
        self.table.verticalHeader().setVisible(False)
        lay.addWidget(self.table, 2)
        row = QHBoxLayout()
        row.addWidget(QLabel("colour by"))
        self.colour_by = QComboBox()
        self.colour_by.setObjectName("sweep_colour_by")
        self.colour_by.currentTextChanged.connect(self._recolour)
        row.addWidget(self.colour_by, 2)
        self.legend = QLabel()
        self.legend.setObjectName("sweep_legend")
        self.legend.setWordWrap(True)  # many values wrap onto more lines; they never widen the window
        self.legend.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        row.addStretch(1)
        lay.addLayout(row)
        lay.addWidget(self.legend)  # under the combo, the whole width: a narrow window wraps it across, not down
        plots = QGridLayout()
        self.loss_plot = pg.PlotWidget(title="loss (smoothed)")
        self.knn_plot = pg.PlotWidget(title="kNN accuracy")
        self.metric_plot = pg.PlotWidget(title="metric against the parameter")
        self.loss_plot.setLabel("bottom", "step")
        self.knn_plot.setLabel("bottom", "epoch")
        for side in ("bottom", "left"):  # a temperature of 0.1 reads 0.1, not 100 on an axis marked (x0.001)
            self.metric_plot.getAxis(side).enableAutoSIPrefix(False)
        for p, (r, c, cs) in ((self.loss_plot, (0, 0, 1)), (self.knn_plot, (0, 1, 1)), (self.metric_plot, (1, 0, 2))):
            p.showGrid(x=True, y=True, alpha=0.3)
            p.getAxis("left").enableAutoSIPrefix(False)
            plots.addWidget(p, r, c, 1, cs)
        self.points = pg.ScatterPlotItem(size=8, pen=None, brush=pg.mkBrush("#1f77b4"))
        self.mean_line = pg.PlotDataItem(pen=pg.mkPen("#d62728", width=2), symbol="s", symbolSize=7)
        self.metric_plot.addItem(self.points)
        self.metric_plot.addItem(self.mean_line)
        lay.addLayout(plots, 5)
        return right

    # ----- editing -----
    def _edited(self):
        self._opened = None  # a new sweep from here on
        self.validate()

    def build(self):
        """(base config, sweep spec, trials planned); ConfigError names what is wrong."""
        if self._opened is not None:
            base, spec, _ = self._opened
            return base, spec, S.plan(base, spec)
        base = self.base_config()
        spec = S.SweepSpec.from_dict(self.editor.spec_dict())
        S.check_metric(base, spec)
        return base, spec, S.plan(base, spec)

    def validate(self, quiet: bool = False) -> bool:
        """Check the sweep against the set-up; Start, the error line and the trials' length follow. ``quiet`` (the
        set-up was re-checked): the status line keeps what it says (an opened sweep's or a finished one's outcome)."""
        if self.running:
            return False
        try:
            base, spec, trials = self.build()
        except ConfigError as exc:
            text = str(exc)
            if text.startswith("sweep.params: no parameters to vary"):  # said for a config file; here, the form
                text = "no parameters to vary yet: pick one above, give its values and press Add / replace"
            self.error.setText(text)
            self.start_btn.setEnabled(False)
            return False
        n = len(trials) or spec.count * len(S.seeds_of(base, spec))
        self.error.setText("")
        if not quiet:
            self.status.setText(f"{n} trial{'s' if n != 1 else ''} ready, each {length_text(base.train)}")
        self.budget.setText(f"each trial: {length_text(base.train)}, {base.data.name}, batch {base.train.batch_size} "
                            "(from the Set-up panel: change them there)")
        self.start_btn.setEnabled(True)
        return True

    @property
    def running(self) -> bool:
        return self.thread is not None

    # ----- running -----
    def start(self, out: str | None = None):
        if self.running or not self.validate():
            return
        if self.busy():
            self.status.setText("a training run is going on: stop it (or let it finish) before starting a sweep")
            return
        base, spec, trials = self.build()
        n = len(trials) or spec.count * len(S.seeds_of(base, spec))
        confirm = n <= spec.max_trials or self._ask(f"{n} trials is more than {spec.max_trials}; run them all?")
        if not confirm:
            return
        opened = self._opened[2] if self._opened is not None else None
        self.sweep_dir = out or opened or str(Path(self.runs_root()) / "sweeps" / time.strftime("%Y-%m-%d_%H%M%S"))
        self._reset(spec)
        self.worker = w = EventWorker(sweep_job(base, spec, self.sweep_dir, self.loaded_for(base)), batched=is_trial_step)
        w.event.connect(self._on_sweep_event)
        w.batchReady.connect(self._on_steps)
        w.failed.connect(lambda exc, _tb: self._show_error(first_line(exc)))
        w.finished.connect(self._on_finished)
        self.thread = start_worker(w)
        self._set_running(True)

    def _pick_sweep(self):
        from PySide6.QtWidgets import QFileDialog

        folder = QFileDialog.getExistingDirectory(self, "Open a sweep folder", str(Path(self.runs_root()) / "sweeps"))
        if folder:
            self.open_sweep(folder)

    def open_sweep(self, folder: str):
        """Show a sweep folder's recorded trials and curves; Start resumes it (unless the editor is changed)."""
        if self.running:
            return
        try:
            base, spec = S.load(Path(folder) / "sweep.toml")
            trials = S.read_trials(folder, spec)
        except ConfigError as exc:
            self._show_error(str(exc))
            return
        self.editor.set_spec(spec, S.seeds_of(base, spec))
        self._opened, self.sweep_dir = (base, spec, folder), folder
        self._reset(spec)
        for t in trials:
            self._show_trial(t)
            self._load_curve(t)
        self.validate()
        self.status.setText(f"sweep {folder}: {len(trials)} trials recorded; Start resumes it")

    def _load_curve(self, t: S.Trial):
        """A recorded trial's curves from its metrics.csv (small: one row per logged step)."""
        c = self.curves[t.id] = {"steps": [], "loss": [], "epochs": [], "knn": []}
        for r in read_metrics(Path(self.sweep_dir) / t.run_dir) if t.run_dir else []:
            if r.get("loss") is not None:
                c["steps"].append(r["step"])
                c["loss"].append(r["loss"])
            if r.get("knn_acc") is not None:
                c["epochs"].append(r["epoch"])
                c["knn"].append(r["knn_acc"])
        self.dirty = True

    def stop(self):
        if self.worker is not None:
            self.worker.control.stop(quick=True)
            self.status.setText("stopping… (the trial keeps its checkpoint)")

    def shutdown(self):
        """Stop and wait for the worker (application quit)."""
        if self.thread is not None:
            self.worker.control.stop()
            self.thread.wait(60000)

    def _set_running(self, running: bool):
        self.start_btn.setEnabled(not running)
        self.stop_btn.setEnabled(running)
        self.editor.setEnabled(not running)
        self.runningChanged.emit(running)

    def _on_finished(self):
        self.thread.wait()  # its job has returned: the thread is ending
        self.thread = None
        self._set_running(False)
        shown = self.status.text()  # the sweep's outcome stays in view
        self.validate()
        self.status.setText(shown)

    def _ask(self, question: str) -> bool:
        if os.environ.get("WORKBENCH_NO_DIALOGS"):
            return False
        return QMessageBox.question(self, "Sweep", question) == QMessageBox.Yes

    def _show_error(self, msg: str):
        self.error.setText(msg)  # in red, once; the status line keeps what it said

    # ----- live results -----
    def _reset(self, spec):
        self.spec = spec
        self.trials, self.curves = {}, {}
        for loss_c, knn_c in self.items.values():
            self.loss_plot.removeItem(loss_c)
            self.knn_plot.removeItem(knn_c)
        self.items = {}
        keys = list(spec.params)
        self.columns = ["trial"] + keys + ["seed", "status", spec.metric, "seconds", "run folder"]
        self.table.setColumnCount(len(self.columns))
        self.table.setHorizontalHeaderLabels(self.columns)
        self.table.setRowCount(0)
        self.colour_by.blockSignals(True)
        self.colour_by.clear()
        self.colour_by.addItems(keys)
        self.colour_by.setCurrentText(swept_key(spec))  # the parameter that varies, not one held at a single value
        self.colour_by.blockSignals(False)
        self.metric_plot.setLabel("left", spec.metric)
        self.dirty = True

    def _on_sweep_event(self, ev):
        """An event of the sweep (a trial's own events come wrapped in ``RunEvent``)."""
        if isinstance(ev, S.RunEvent):
            if isinstance(ev.event, E.EvalEvent):
                self._on_eval(ev.trial, ev.event)
            elif isinstance(ev.event, E.RunStarted):
                self._on_run_started(ev.trial, ev.event.run_dir)
            return
        handler = {S.SweepStarted: self._on_sweep_started, S.TrialStarted: self._on_trial_started,
                   S.TrialFinished: self._on_trial_finished, S.SweepDone: self._on_done}.get(type(ev))
        if handler is not None:
            handler(ev)

    def _on_sweep_started(self, ev):
        note = f"; {ev.note}" if ev.note else ""
        self.status.setText(f"sweep folder {ev.sweep_dir}: {ev.n_trials} trials, {ev.done} already done{note}")
        for t in ev.trials:
            if t.status:
                self._show_trial(t)
                self._load_curve(t)  # a resumed sweep shows what its earlier trials drew

    def _on_trial_started(self, ev):
        self._show_trial(ev.trial)
        self.status.setText(f"trial {ev.index}/{ev.total}: {ev.trial.label()}" + (" (resuming)" if ev.resumed else ""))

    def _on_run_started(self, trial: int, run_dir: str):
        t = self.trials.get(trial)
        if t is not None:
            t.run_dir, t.status = Path(run_dir).name, "running"
            self._show_trial(t)

    def _on_steps(self):
        for wrapped in self.worker.take_batch() if self.worker else []:
            trial, ev = wrapped.trial, wrapped.event
            c = self._curve(trial)
            c["steps"].append(ev.step)
            c["loss"].append(ev.loss)
        self.dirty = True

    def _on_eval(self, trial: int, ev):
        c = self._curve(trial)
        c["epochs"].append(ev.epoch)
        c["knn"].append(ev.metrics.get("knn_acc", np.nan))
        self.dirty = True

    def _on_trial_finished(self, ev):
        self._show_trial(ev.trial)
        self.dirty = True

    def _on_done(self, ev):
        for t in ev.trials:
            self._show_trial(t)
        best = ev.table[0] if ev.table and ev.table[0]["mean"] is not None else None
        text = f"sweep {ev.reason}; results in {ev.sweep_dir}"
        if best:
            text += "; best: " + ", ".join(f"{k}={v}" for k, v in best["params"].items()) + f" ({self.spec.metric} {best['mean']:.4f})"
        self.status.setText(text)
        self.dirty = True
        self.redraw()
        self.sweepDone.emit(ev)

    def _curve(self, trial: int) -> dict:
        return self.curves.setdefault(trial, {"steps": [], "loss": [], "epochs": [], "knn": []})

    def _show_trial(self, t: S.Trial):
        self.trials[t.id] = t
        row = sorted(self.trials).index(t.id)
        new_row = self.table.rowCount() < len(self.trials)
        if new_row:
            self.table.insertRow(row)
        metric = "" if t.metric is None else f"{t.metric:.4f}"
        cells = [str(t.id + 1)] + [str(t.params[k]) for k in self.spec.params] + [str(t.seed), t.status or "queued", metric,
                                                                              f"{t.seconds:.0f}", t.run_dir]
        for col, text in enumerate(cells):
            item = QTableWidgetItem(text)
            item.setToolTip(t.message or text)
            self.table.setItem(row, col, item)
        if new_row or t.status in ("finished", "pruned", "failed"):
            self.table.resizeColumnsToContents()

    def _open_row(self, row: int, _col: int):
        t = self.trials[sorted(self.trials)[row]]
        if t.run_dir and self.sweep_dir:
            self.openRun.emit(str(Path(self.sweep_dir) / t.run_dir))

    # ----- plots -----
    def colour_of(self, t: S.Trial) -> str:
        key = self.colour_by.currentText()
        values = self._axis_values(key)
        return COLORS[values.index(t.params[key]) % len(COLORS)] if key in t.params else COLORS[0]

    def _axis_values(self, key: str) -> list:
        vals = self.spec.params.get(key, ())
        if isinstance(vals, S.Range):
            return sorted({t.params[key] for t in self.trials.values()})
        return list(vals)

    def _recolour(self, *_):
        for tid, (loss_c, knn_c) in self.items.items():
            pen = pg.mkPen(self.colour_of(self.trials[tid]), width=1.5)
            loss_c.setPen(pen)
            knn_c.setPen(pen)
        key = self.colour_by.currentText()
        self.legend.setText("  ".join(f"<span style='color:{COLORS[i % len(COLORS)]}'>■ {v}</span>"
                                      for i, v in enumerate(self._axis_values(key))) if key else "")
        self.dirty = True

    def redraw(self):
        if not self.dirty or not self.isVisible():
            return
        self.dirty = False
        for tid, c in self.curves.items():
            if tid not in self.trials:
                continue
            if tid not in self.items:
                pen = pg.mkPen(self.colour_of(self.trials[tid]), width=1.5)
                self.items[tid] = (self.loss_plot.plot(pen=pen), self.knn_plot.plot(pen=pen, symbol="o", symbolSize=5))
            loss_c, knn_c = self.items[tid]
            if c["steps"]:
                loss_c.setData(np.asarray(c["steps"], float), ema(np.asarray(c["loss"], float)))
            if c["epochs"]:
                knn_c.setData(np.asarray(c["epochs"], float), np.asarray(c["knn"], float))
        self._recolour_legend_once()
        self._draw_metric()

    def _recolour_legend_once(self):
        if not self.legend.text() and self.colour_by.currentText():
            self._recolour()

    def metric_points(self) -> tuple[list, list, list, list, list]:
        """(x, y) of every finished trial's metric and (x, mean) per value of the colour-by parameter;
        categorical values sit at their index (labels on the axis)."""
        key = self.colour_by.currentText()
        values = self._axis_values(key)
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        xs, ys, groups = [], [], {}
        for t in self.trials.values():
            if t.status == "finished" and t.metric is not None and key in t.params:
                x = float(t.params[key]) if numeric else float(values.index(t.params[key]))
                xs.append(x)
                ys.append(t.metric)
                groups.setdefault(x, []).append(t.metric)
        mx = sorted(groups)
        return xs, ys, mx, [statistics.fmean(groups[x]) for x in mx], ([] if numeric else values)

    def _draw_metric(self):
        if not self.trials or not self.colour_by.currentText():
            return
        xs, ys, mx, my, labels = self.metric_points()
        key = self.colour_by.currentText()
        shown = [t for t in self.trials.values() if t.status == "finished" and t.metric is not None and key in t.params]
        self.points.setData(xs, ys, brush=[pg.mkBrush(self.colour_of(t)) for t in shown])  # as the legend colours them
        self.mean_line.setData(mx, my)
        axis = self.metric_plot.getAxis("bottom")
        axis.setTicks([list(enumerate(str(v) for v in labels))] if labels else None)
        self.metric_plot.setLabel("bottom", self.colour_by.currentText())
