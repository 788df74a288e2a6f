"""The workbench window: the session's state shown, the tabs composed from ``PANELS``, and the one worker's
events handed to every tab.

What the window knows lives in ``self.session`` (``gui/session.py``, no Qt); ``self.signals`` re-emits its
changes, which the status bar, the progress bar and the messages button follow. A tab is a ``Panel``
(``gui/panel.py``): one file, plus one entry in ``PANELS``; the window tells every tab the same three things
(``reset``, ``on_event``, ``run_opened``) and never reaches into one by name.
"""
from __future__ import annotations

import contextlib
import os
import shlex
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QApplication, QDockWidget, QFileDialog, QInputDialog, QLabel, QMainWindow, QMessageBox,
                               QSizePolicy, QTabWidget, QToolBar, QToolButton)

from pyqtgraph.util.garbage_collector import GarbageCollector

from workbench.core import events as E
from workbench.core.config import Config
from workbench.core.history import read_history
from workbench.core.runfolder import config_path, read_view
from workbench.core.registry import ConfigError
from workbench.gui import explain_view, wheel
from workbench.gui.bridge import SessionSignals
from workbench.gui.first_run import DONE_KEY, FirstRunGuide
from workbench.gui.menus import Menus
from workbench.gui.panel import EvaluationEnded, HeldOut, Overlay, Retrieve, RunEnded, RunsRoot
from workbench.gui.panels.data import DataPanel
from workbench.gui.panels.embedding import EmbeddingPanel
from workbench.gui.panels.inspector import InspectorPanel
from workbench.gui.panels.plots import PlotsPanel
from workbench.gui.panels.runs import RunsPanel
from workbench.gui.panels.setup import SetupPanel
from workbench.gui.panels.sweep import SweepPanel
from workbench.gui.paths import app_icon, default_runs_root
from workbench.gui.session import Session
from workbench.gui.widgets import ElidedLabel, MessagesDialog, TextBar
from workbench.gui.worker import EventWorker, start_worker, task, training_worker, warm_up

# The tabs, in order: a tab is one file (a ``Panel``) plus its entry here. Each is ``window.<name>``, its class's
# name without "Panel" in lower case (``window.plots``).
PANELS = [PlotsPanel, EmbeddingPanel, InspectorPanel, RunsPanel, SweepPanel, DataPanel]

CLOSE_WAIT_MS = 15000
INVALID_WIDTH = 460  # px of the toolbar's validation message (whole in its tooltip)
COLOURS = {"warning": "#b35900", "error": "#c0392b"}  # the status line's colour by the kind of message


def _action(tb: QToolBar, text: str, slot, keys: str) -> QAction:
    """A toolbar action with a keyboard shortcut, named in its tooltip."""
    action = tb.addAction(text, slot)
    action.setShortcut(QKeySequence(keys))
    action.setToolTip(f"{text.rstrip('…')} ({QKeySequence(keys).toString(QKeySequence.NativeText)})")
    return action


def settings() -> QSettings:
    path = os.environ.get("WORKBENCH_SETTINGS")
    if path:
        return QSettings(path, QSettings.IniFormat)
    return QSettings("ContrastiveWorkbench", "workbench")


def panel_name(cls) -> str:
    """The window's attribute for a tab: ``PlotsPanel`` -> ``plots``."""
    return cls.__name__.removesuffix("Panel").lower()


BAR_WIDTH = 120  # px of the progress bar itself; its text is beside it
PROGRESS_TEXT_MIN = 330  # px the progress text keeps at the least (1024 px wide: the status text gets the rest)
WIDEST_PROGRESS = "epoch 999  step 99999  99,999 img/s  trained 59:59 of 60:00  ETA 59:59"


class MainWindow(QMainWindow):
    # re-emitted on the GUI thread once the window has shown the event
    epochEvaluated = Signal(object)
    stepsShown = Signal(int)  # latest step drawn into the curves
    evaluationShown = Signal(object)  # the EvalProgressEvent the status bar now shows
    pauseChanged = Signal(bool)
    trainingDone = Signal(object)
    batchShown = Signal(object)
    runOpened = Signal(str)
    exported = Signal(list)
    errorShown = Signal(str, str)
    setupChecked = Signal(bool, str)  # the set-up re-checked: (valid, why not)

    def __init__(self, cfg: Config | None = None, runs_root: str | None = None):
        super().__init__()
        wheel.install()
        # Python's cycle collector on a timer in this (GUI) thread only: collected in the training thread, a
        # Qt object's destructor can wait for the GIL while this thread holds it and waits for Qt (a deadlock)
        self._gc = GarbageCollector(interval=1.0)
        self.setWindowTitle("Contrastive Workbench")
        self.setAcceptDrops(True)
        self.settings = settings()
        first_run = not self.settings.allKeys()  # the very first launch: the bundled data and the guide
        if cfg is None:
            cfg = self._last_config()
        self.session = Session()
        self.signals = SessionSignals(self.session, self)
        self.runs_root = str(self.settings.value("runs_root", runs_root or default_runs_root()))  # documents, not the cwd
        self.setup = SetupPanel(cfg, self.session.data)
        dock = QDockWidget("Set-up", self)
        dock.setObjectName("setup_dock")
        dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable)
        dock.setWidget(self.setup)
        self.addDockWidget(Qt.LeftDockWidgetArea, dock)
        self.tabs = QTabWidget()
        self.panels = [self._add_panel(cls) for cls in PANELS]
        self.setCentralWidget(self.tabs)
        self._toolbar()
        self.setWindowIcon(app_icon())
        self.menus = Menus(self)  # File (configs, examples, run folders, recent lists, Quit) and Help
        self.guide: FirstRunGuide | None = None
        self.worker = self.thread = None
        self._closing = False
        self._close_question: QMessageBox | None = None  # the "stop training and close?" question while it is open
        self._sweeping = False  # a sweep runs (in the Sweep tab): Start waits for it
        self._pending_start = None  # Start pressed while the dataset was still loading
        self.messages_box: MessagesDialog | None = None  # the messages window, once opened
        self._wire()
        for panel in self.panels:
            panel.attach(self)
        self.explainer = explain_view.install(self)  # similarity maps: Pairs toggle, clicks on pairs and retrieval tiles
        task(warm_up, lambda _: None)
        self._set_running(False)
        self._validity(self.setup.valid, self.setup.error.text())
        geo = self.settings.value("geometry")
        if geo is not None:
            self.restoreGeometry(geo)
            self.restoreState(self.settings.value("state"))
        else:
            screen = QApplication.primaryScreen().availableGeometry()
            self.resize(min(1500, screen.width()), min(950, screen.height()))
            if screen.width() < 1500 or screen.height() < 950:
                self.setWindowState(Qt.WindowMaximized)  # a laptop screen: use all of it, title bar and status bar included
        if first_run and not self.settings.value(DONE_KEY, False, type=bool):
            self.show_guide()

    # ----- tabs -----
    def _add_panel(self, cls):
        """Make the tab, add it (with its shortcut) and name it on the window."""
        panel = cls.create(self)
        name = panel_name(cls)
        assert not hasattr(self, name), f"a tab called {name!r} would hide the window's own attribute"
        setattr(self, name, panel)
        self.tabs.addTab(panel, cls.title or name.title())
        if cls.shortcut:
            show = QAction(self)
            show.setShortcut(QKeySequence(cls.shortcut))
            show.triggered.connect(lambda _=False, p=panel: self.show_panel(p))
            self.addAction(show)
            self.tabs.setTabToolTip(self.tabs.count() - 1, cls.shortcut)
        return panel

    def show_panel(self, panel) -> None:
        self.tabs.setCurrentWidget(panel)

    def broadcast(self, ev) -> None:
        """Hand ``ev`` to every tab (on the GUI thread)."""
        for panel in self.panels:
            panel.on_event(ev)

    def _reset_panels(self, training: bool) -> None:
        for panel in self.panels:
            panel.reset(training)

    # ----- first run, runs folder -----
    def tab_names(self) -> list[str]:
        return [self.tabs.tabText(i) for i in range(self.tabs.count())]

    def show_guide(self):
        """The short first-run guide over the tabs (Help > Getting started shows it again)."""
        if self.guide is None:
            self.guide = FirstRunGuide(self, self.tab_names(), self.runs_root)
            self.guide.startRequested.connect(self.start)
            self.guide.dismissed.connect(lambda: self.settings.setValue(DONE_KEY, True))
        self.guide.set_runs_root(self.tab_names(), self.runs_root)
        self.guide.show_guide()

    def set_runs_root(self, folder: str):
        """Where the window's new runs and sweeps go from now on (kept in the settings; the Runs tab lists it)."""
        self.runs_root = str(folder)
        self.settings.setValue("runs_root", self.runs_root)
        self.broadcast(RunsRoot(self.runs_root))
        if self.guide is not None:
            self.guide.set_runs_root(self.tab_names(), self.runs_root)
        self.set_status(f"new runs go to {folder}")

    def _toolbar(self):
        tb = QToolBar("Training")
        tb.setObjectName("toolbar")
        self.addToolBar(tb)
        self.start_btn = _action(tb, "Start", self.start, "Ctrl+Return")
        self.pause_btn = _action(tb, "Pause", self.pause, "Ctrl+P")
        self.resume_btn = _action(tb, "Resume", self.resume, "Ctrl+R")
        self.stop_btn = _action(tb, "Stop", self.stop, "Ctrl+.")
        tb.addSeparator()
        self.open_config_action = _action(tb, "Open config…", self.load_config, "Ctrl+O")  # shared with the File menu
        self.save_config_action = _action(tb, "Save config…", self.save_config, "Ctrl+S")
        tb.addAction("Multi-GPU command…", self.show_torchrun)
        quit_action = QAction("Quit", self)
        quit_action.setShortcut(QKeySequence("Ctrl+Q"))
        quit_action.triggered.connect(self.close)  # asks first while a run trains
        self.addAction(quit_action)
        self.quit_action = quit_action
        tb.addSeparator()
        self.invalid = QLabel()  # why Start is disabled, beside it (the panel's own line may be scrolled out of view)
        self.invalid.setObjectName("invalid")
        self.invalid.setStyleSheet("color: #c0392b; font-weight: bold; padding-left: 6px")
        self.invalid_action = tb.addWidget(self.invalid)  # a toolbar widget is shown and hidden through its action
        self.progress = TextBar()  # its text beside it (drawn on it, a long text crossed the filled part's edge)
        self.progress.setFixedWidth(BAR_WIDTH)
        widest = self.progress.label.fontMetrics().horizontalAdvance(WIDEST_PROGRESS)  # a long run's text on one line
        self.progress.label.setMinimumWidth(min(widest + 12, PROGRESS_TEXT_MIN))  # cut with "…" only on a narrow window
        self.progress.label.setMaximumWidth(widest + 12)
        self.progress.label.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Preferred)
        self.progress.setFormat("")
        self.status = ElidedLabel(self.session.messages.status.text)
        self.status.setObjectName("status")
        self.status.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)  # long text ends in "…" in the bar, whole in the tooltip
        self.log_btn = QToolButton()
        self.log_btn.setObjectName("messages")
        self.log_btn.setText("messages")
        self.log_btn.setToolTip("every note, warning and error of this session, whole")
        self.log_btn.clicked.connect(self.show_messages)
        self.statusBar().addWidget(self.progress)
        self.statusBar().addWidget(self.progress.label, 3)
        self.statusBar().addWidget(self.status, 2)
        self.statusBar().addPermanentWidget(self.log_btn)

    def _wire(self):
        self.setup.validityChanged.connect(self._validity)
        self.setup.validityChanged.connect(self.setupChecked)
        self.setup.dataLoaded.connect(self._data_loaded)
        self.signals.status.connect(self._show_status)
        self.signals.log.connect(self._show_log)
        self.signals.progress.connect(self._show_progress)

    # ----- the session shown -----
    def set_status(self, text: str, kind: str = "info"):
        self.session.messages.say(text, kind)

    def _show_status(self, messages):
        m = messages.status
        self.status.setText(m.text)
        self.status.setToolTip(m.text)
        self.status.setStyleSheet(f"color: {COLOURS[m.kind]}" if m.kind in COLOURS else "")

    def log(self, kind: str, msg: str):
        """Keep a note, warning or error for the messages list (the status bar shows only the latest, cut to fit)."""
        self.session.messages.add(kind, msg)

    def _show_log(self, messages):
        n, problems = len(messages.log), messages.problems
        self.log_btn.setText(f"messages ({n})" + (f" ⚠ {problems}" if problems else ""))
        if self.messages_box is not None:
            self.messages_box.add(messages.log[-1].line, n)

    @property
    def messages(self) -> list[str]:
        """This run's notes, warnings and errors."""
        return self.session.messages.run

    @property
    def message_log(self) -> list[tuple[str, str, str]]:
        """The session's (time, kind, text), for the messages list."""
        return [(m.at, m.kind, m.text) for m in self.session.messages.log]

    def messages_text(self) -> str:
        return self.session.messages.text()

    def show_messages(self):
        """The messages window (not modal: it stays open while training goes on, and grows)."""
        if self.messages_box is None:
            self.messages_box = MessagesDialog(self)
        self.messages_box.set_lines([m.line for m in self.session.messages.log])
        self.messages_box.show()
        self.messages_box.raise_()

    def _show_progress(self, p):
        self.progress.setRange(0, p.maximum)
        self.progress.setValue(p.value)
        self.progress.setFormat(p.text)
        self.progress.setToolTip(p.tip)

    def sweep_running(self, running: bool):
        """The status bar follows a sweep too: its trials and curves are in the Sweep tab."""
        self._sweeping = running
        self.session.progress.set(0, 0 if running else 1, "sweep running" if running else "sweep ended")
        self.set_status("a sweep is running: its trials and curves are in the Sweep tab" if running else "ready")
        self.start_btn.setEnabled(not running and self.setup.valid)
        self.setup.set_locked(running)  # the trials were planned from it: it reads, greyed, what they train

    # ----- state -----
    def _last_config(self) -> Config:
        text = self.settings.value("last_config")
        if text:
            try:
                from workbench.core.config import tomllib

                return Config.from_dict(tomllib.loads(text))
            except Exception:  # noqa: BLE001 - a stale saved config just falls back to defaults
                pass
        return Config()

    @property
    def running(self) -> bool:
        """True from Start until the worker thread has finished and the buttons say so."""
        return self.session.run.busy

    @property
    def run_dir(self) -> str | None:
        """The folder of the run shown (training or opened)."""
        return self.session.run.folder

    @property
    def held_out(self):
        """The held-out images (N, C, H, W) uint8 the embedding shows."""
        return self.session.run.held_out

    def _set_running(self, running: bool, paused: bool = False):
        self.start_btn.setEnabled(not running and self.setup.valid)
        self.pause_btn.setEnabled(running and not paused)
        self.resume_btn.setEnabled(running and paused)
        self.stop_btn.setEnabled(running)
        self.setup.set_locked(running)

    def _validity(self, ok: bool, message: str):
        """The set-up re-checked (an edit, the data loaded): Start and the line beside it follow at once; the status
        line only when the verdict is news (``Messages.verdict``): an error or a note stays until a newer message."""
        text = f"set-up: {message}" if not ok else ""
        self.invalid.setToolTip(text)
        self.invalid.setText(self.invalid.fontMetrics().elidedText(text, Qt.ElideRight, INVALID_WIDTH))
        self.invalid_action.setVisible(not ok)
        quiet = self.running or self._pending_start is not None or self._sweeping
        if not quiet:
            self.start_btn.setEnabled(ok)
        self.session.messages.verdict(ok, message, quiet=quiet)

    # ----- training -----
    def start(self, resume: str | None = None):
        if self.running:
            return
        if self._sweeping:
            self.show_error("a sweep is running: stop it in the Sweep tab before starting a single run")
            return
        try:
            cfg = Config.load(config_path(resume)) if resume else self.setup.build_config()
        except ConfigError as exc:
            self.show_error(str(exc))
            return
        if resume:
            self.setup.set_config(cfg)  # the greyed panel shows what the resumed run trains (loads its data if they differ)
        data = self.session.data.for_config(cfg)
        if data is None and self.setup.loading is not None:
            self._pending_start = (cfg, resume)  # starts as soon as the panel has loaded the data
            self.set_status("waiting for the dataset to finish loading…")
            self.start_btn.setEnabled(False)
            return
        self._launch(cfg, resume, data)  # a resumed run trains its own config.toml

    def _data_loaded(self, splits):
        for note in dict.fromkeys(splits[0].notes):  # what the loader decided about the data, in the messages list too
            self.log("data", note.removeprefix("data: "))
        pending, self._pending_start = self._pending_start, None
        if pending is not None and not self.running:
            cfg, resume = pending
            self._launch(cfg, resume, self.session.data.for_config(cfg))

    def _launch(self, cfg, resume, data):
        self._reset_panels(training=True)
        self.session.messages.new_run()
        self.session.run.starting()
        self.session.progress.busy("starting…")  # until the run reports its length
        self.worker = w = training_worker(cfg, self.runs_root, resume, data)
        w.event.connect(self._on_event)
        w.batchReady.connect(self._on_steps)
        w.latestReady.connect(self._on_eval_progress)
        w.failed.connect(lambda exc, _tb: self._on_event(E.ErrorEvent.from_exception(exc, self.run_dir or "")))
        w.finished.connect(self._on_finished)  # before the thread starts: a run that fails at once still ends here
        self.thread = start_worker(w)
        self._set_running(True)
        self.set_status("resuming…" if resume else "starting…")

    def pause(self):
        if self.worker and self.running:
            self.worker.control.pause()
            self.pause_btn.setEnabled(False)  # immediate feedback; Resume lights up when the loop has paused
            self.set_status("pausing at the end of this step…")

    def resume(self):
        if self.worker and self.running:
            self.worker.control.resume()
            self.resume_btn.setEnabled(False)
            self.set_status("resuming…")

    def stop(self, quick: bool = True):
        """Stop at the next step and save a checkpoint; ``quick`` skips a final evaluation (the last epoch's stands)."""
        if self.worker and self.running:
            self.worker.stop(quick=quick)
            self.pause_btn.setEnabled(False)
            self.resume_btn.setEnabled(False)
            self.stop_btn.setEnabled(False)
            self.session.run.set_state("stopping")
            if self.session.progress.evaluating:  # the evaluation ends at its next batch: say so, the bar stops counting it
                self.session.progress.stopping()
                self.set_status("stopping: the evaluation ends at its next batch, then a checkpoint is saved…")
            else:
                self.set_status("stopping at the end of this step… (saving a checkpoint)")

    # ----- the training worker's events (queued onto the GUI thread) -----
    def _on_event(self, ev):
        handler = {E.RunStarted: self._on_started, E.EvalEvent: self._on_eval, E.PausedEvent: self._on_paused,
                   E.WarningEvent: lambda w: self._on_warning(w.message, w.note), E.DoneEvent: self._on_done,
                   E.ErrorEvent: lambda e: self.show_error(e.message, e.traceback), E.BatchEvent: self._on_batch,
                   E.EmbeddingEvent: self._on_embedding}.get(type(ev), self.broadcast)
        handler(ev)

    def _on_started(self, ev):
        budget_s = float(ev.config["train"].get("time_budget_s") or 0)  # a time budget ends it: the bar follows its clock
        self.session.run.started(ev.run_dir, ev.config, ev.held_out_images, ev.classes)
        self.session.progress.run_started(ev.total_steps, ev.start_step, budget_s)
        self.set_status(f"training on {ev.device}: {ev.n_train:,} images, run folder {ev.run_dir}")
        resumed = ev.start_step > 0
        self.broadcast(HeldOut(ev.held_out_images, ev.classes, reference=read_view(ev.run_dir) if resumed else None))
        if ev.held_out_source:
            self.name_held_out(ev.held_out_source, ev.held_out_indices)
        if resumed:  # show what the run did before
            self._replay(ev.run_dir)
        self.broadcast(ev)

    def name_held_out(self, source: str, indices):
        """List the held-out images' folder in the background, for the embedding's tooltips (a failure is said in
        the messages list; the tooltips then go without names)."""
        from workbench.core.data import file_names

        images = self.held_out

        def listed(names):
            if images is self.held_out:  # not another run's meanwhile
                self.session.run.files = names
                self.broadcast(HeldOut(images, self.session.run.classes, files=names))

        task(lambda: file_names(source, indices), listed,
             lambda msg, tb: self.log("warning", f"could not list the held-out images' files in '{source}': {msg}"))

    def _replay(self, run_dir):
        """A run's history (its metrics.csv as StepEvents and EvalEvents) through every tab, as if it came live."""
        for e in read_history(run_dir):
            self.broadcast(e)
            if isinstance(e, E.EvalEvent):
                self.session.run.last_eval = e

    def _on_eval_progress(self):
        """An evaluation under way (minutes on a large bank): what it does and how far, in the status bar, the bar
        and the tabs, instead of a frozen step count."""
        ev = self.worker.take_latest() if self.worker is not None else None
        if ev is None:
            return
        stopping = self.worker.control.stopped  # Stop pressed: the stop message stays
        self.session.progress.evaluation(ev, stopping)
        self.broadcast(ev)
        if stopping:
            return
        after = "the run ends" if ev.final else "training goes on"
        self.set_status(f"{'final ' if ev.final else ''}evaluation under way at step {ev.step}: {after} when it ends; "
                        "Stop ends it")
        self.evaluationShown.emit(ev)

    def _end_evaluation(self):
        """Back to the training bar once an evaluation has ended."""
        if self.session.progress.end_evaluation():
            self.broadcast(EvaluationEnded())

    def _on_steps(self):
        steps = self.worker.take_batch() if self.worker is not None else []
        if not steps:
            return
        self._end_evaluation()
        for ev in steps:
            self.broadcast(ev)
        quiet = self.worker.control.paused or self.worker.control.stopped  # the curves' last step; no rate
        self.session.progress.stepped(steps[-1], quiet)
        if not quiet:
            self.stepsShown.emit(steps[-1].step)

    def _on_eval(self, ev):
        self._end_evaluation()
        self.session.run.last_eval = ev
        m = ev.metrics
        self.set_status(f"epoch {ev.epoch}: kNN {m['knn_acc']:.4f}, alignment {m['alignment']:.3f}, "
                        f"uniformity {m['uniformity']:.3f}, eff. rank {m['eff_rank']:.1f}")
        self.broadcast(ev)
        if self.worker:
            self.worker.control.request_batch()  # keep the similarity history growing
        self.epochEvaluated.emit(ev)

    def _on_embedding(self, ev):
        self.session.run.embedding = ev
        self.broadcast(ev)

    def _on_paused(self, ev):
        if self.worker is not None and self.worker.control.stopped:
            return
        self.session.run.set_state("paused" if ev.paused else "training")
        self._set_running(True, ev.paused)
        self.set_status("paused: Resume continues, Stop saves a checkpoint" if ev.paused else "training")
        self.pauseChanged.emit(ev.paused)

    def _on_batch(self, ev):
        self.broadcast(ev)
        self.batchShown.emit(ev)

    def _on_finished(self):
        self.session.run.set_state("ended")
        self._end_evaluation()
        self._set_running(False)
        self._on_steps()
        self.worker = None
        self.broadcast(RunEnded())
        self._close_question_outdated()

    def _on_warning(self, msg: str, note: bool = False):
        """A note (a decision stated) or a warning (a problem, in orange): in the status text beside the progress
        bar, which stays in view, and whole in the messages list."""
        self.log("note" if note else "warning", msg)
        self.set_status(f"note: {msg}" if note else f"⚠ warning: {msg}", "note" if note else "warning")

    def _on_done(self, ev):
        self._end_evaluation()
        self.session.progress.run_done(ev)
        if ev.reason == "already finished":  # a resumed run with nothing left to do
            self.set_status(ev.message or ev.text)
        else:
            self.set_status(f"{ev.words} at step {self.session.progress.step}{self._knn_note(ev.metrics)}: "
                            f"checkpoint and metrics in {ev.run_dir}")
        self.broadcast(ev)
        self.trainingDone.emit(ev)

    def _knn_note(self, metrics: dict) -> str:
        """", last kNN 0.7820 (epoch 3, step 120)": which evaluation the figure comes from (it may be an earlier one)."""
        knn = metrics.get("knn_acc")
        if knn is None:
            return ""
        ev = self.session.run.last_eval
        where = f" (epoch {ev.epoch}, step {ev.step})" if ev is not None and ev.metrics.get("knn_acc") == knn else ""
        return f", last kNN {knn:.4f}{where}"

    def show_error(self, msg: str, details: str = ""):
        self.log("error", msg)
        self.set_status(f"error: {msg}", "error")
        if self.running:  # a run that ended in an error; a refused action leaves the bar as it was
            self.session.progress.set(text="error")
        self.errorShown.emit(msg, details)
        if not os.environ.get("WORKBENCH_NO_DIALOGS"):
            box = QMessageBox(QMessageBox.Warning, "Contrastive Workbench", msg, QMessageBox.Ok, self)
            if details:
                box.setDetailedText(details)
            box.exec()

    def capture_batch(self):
        """Live batch from the running training, else one from the open run's checkpoint."""
        if self.running:
            self.worker.control.request_batch()
            return
        if not self.run_dir:
            self.show_error("start training or open a run first")
            return
        from workbench.core.inference import RunModel, batch_from_checkpoint

        run = self.run_dir
        self.background(lambda: batch_from_checkpoint(RunModel.load(run)), self._on_batch, "capturing a batch through the checkpoint")

    def background(self, fn, on_done, what: str):
        """Model work (loading, embedding, exporting) off the GUI thread; errors end up in show_error."""
        self.set_status(f"{what}…")

        def done(result):
            self.set_status("ready")
            on_done(result)

        return task(fn, done, self.show_error)

    # ----- runs -----
    def open_run(self, run: str):
        """Show a run folder: its curves at once, its embedding once computed in the background (``runOpened``)."""
        if self.running:
            self.show_error("stop the training first: opening a run replaces the curves and the embedding")
            return
        try:
            cfg = Config.load(config_path(run))
        except ConfigError as exc:
            self.show_error(str(exc))
            return
        self.session.run.opened(run, cfg)
        self._reset_panels(training=False)
        self._replay(run)
        self.session.progress.set(0, 1, f"opened {Path(run).name}")
        for panel in self.panels:
            panel.run_opened(run)
        self._show_run_embedding(run, cfg)

    def _show_run_embedding(self, run, cfg):
        import numpy as np

        from workbench.core.inference import RunModel
        from workbench.core.projection import pca_2d

        view = read_view(run)

        def work():
            rm = RunModel.load(run)
            _, test = rm.splits()
            if view is not None and int(view[1].max(initial=-1)) < len(test):
                rows = view[1]  # the points the live view showed, so the picture matches it
            else:
                rows = np.arange(min(cfg.eval.embed_points or 2000, len(test)))
            emb = rm.embed(test.images[rows])  # the backbone's output, as the live view and the kNN read it
            ev = E.EmbeddingEvent(-1, -1, pca_2d(emb), emb, test.labels[rows].numpy(), np.asarray(rows))
            return test, ev, test.file_names()

        def show(result):
            test, ev, files = result
            images = test.images.numpy()
            self.session.run.show_held_out(images, test.classes, files)
            self.broadcast(HeldOut(images, test.classes, files, view))
            self._on_embedding(ev)
            self.runOpened.emit(run)

        self.background(work, show, "embedding the held-out set")

    def overlay_runs(self, runs: list):
        """Other runs' curves over the shown run's."""
        self.broadcast(Overlay(list(runs), self.run_dir))

    def clone_run(self, run: str):
        try:
            self.setup.set_config(Config.load(config_path(run)))
        except ConfigError as exc:
            self.show_error(str(exc))

    def export_dialog(self, run: str):
        from workbench.gui.export_dialog import ExportDialog

        dlg = ExportDialog(run, self)
        if dlg.exec() == ExportDialog.Accepted:
            self.export_run(run, *dlg.choice())

    def export_run(self, run: str, fmt: str, folder: str, include_head: bool = False, readout: bool = False):
        from workbench.core.export import export_run
        from workbench.core.runfolder import make_folder

        def work():
            if Path(folder).suffix:  # the dialog names a folder, even one called "v1.2" (made first: left if it fails)
                make_folder(folder, "export folder")
            return export_run(run, fmt, folder, include_head=include_head, what="export folder", readout=readout)

        def done(paths):
            names = ", ".join(Path(p).name for p in paths)
            self.set_status(f"exported {len(paths)} file(s) to {folder}: {names}")
            self.exported.emit([str(p) for p in paths])

        self.background(work, done, f"exporting {fmt}")

    # ----- retrieval -----
    def retrieve(self, row: int):
        """The nearest held-out images of held-out row ``row`` (a click in the embedding), in the Pairs tab."""
        run = self.session.run
        if run.embedding is not None and run.held_out is not None:
            self.broadcast(Retrieve(row, run.embedding, run.held_out, run.classes, run.files))

    def retrieve_file(self, path: str):
        """The nearest held-out images of an image file (dropped on the window)."""
        from workbench.core.inference import RunModel, load_image_file

        ev, run = self.session.run.embedding, self.run_dir
        if ev is None or not run:
            self.show_error("train or open a run first: retrieval needs an embedding")
            return

        def work():
            rm = RunModel.load(run)
            img = load_image_file(path, rm.channels, rm.image_size)
            return img[0].numpy(), rm.embed(img)[0]

        def show(result):
            image, vec = result
            r = self.session.run
            self.broadcast(Retrieve(-1, ev, r.held_out, r.classes, r.files, vector=vec, image=image, query_file=path))

        self.background(work, show, "embedding the image")

    def dragEnterEvent(self, e):  # noqa: N802 - Qt's name
        if e.mimeData().hasUrls():
            e.acceptProposedAction()

    def dropEvent(self, e):  # noqa: N802 - Qt's name
        urls = e.mimeData().urls()
        if urls:
            self.retrieve_file(urls[0].toLocalFile())

    # ----- configs -----
    def load_config(self):
        path, _ = QFileDialog.getOpenFileName(self, "Load config", "", "TOML (*.toml)")
        if path:
            try:
                self.setup.set_config(Config.load(path))
            except ConfigError as exc:
                self.show_error(f"{Path(path).name}: {exc}", f"while loading {path}")
                return
            self.set_status(f"loaded {path}")

    def save_config(self, path: str | None = None):
        if not path:
            path, _ = QFileDialog.getSaveFileName(self, "Save config", "experiment.toml", "TOML (*.toml)")
        if path:
            try:
                self.setup.build_config().save(path)
            except (ConfigError, OSError) as exc:
                self.show_error(f"{Path(path).name}: {exc}", f"while saving {path}")
                return
            self.set_status(f"saved {path}")

    def torchrun_command(self, config_path: str, gpus: int) -> str:
        return (f"torchrun --standalone --nproc_per_node={gpus} -m workbench train {shlex.quote(config_path)} "
                f"--out {shlex.quote(self.runs_root)}")

    def show_torchrun(self):
        gpus, ok = QInputDialog.getInt(self, "Multi-GPU", "GPUs on the target machine", 2, 1, 64)
        if not ok:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Write the config for torchrun", "experiment.toml", "TOML (*.toml)")
        if path:
            self.save_config(path)
            QMessageBox.information(self, "Multi-GPU command", "Run on the multi-GPU machine:\n\n" + self.torchrun_command(path, gpus)
                                    + "\n\nThen open the run folder from the Runs tab.")

    # ----- closing -----
    def confirm_close(self) -> bool:
        """Ask before stopping a running training; if the training ends while the question is open, the
        question says so (there is nothing left to stop)."""
        box = QMessageBox(QMessageBox.Question, "Training is running",
                          "Stop training and close? The checkpoint is kept and the run can be resumed.",
                          QMessageBox.Yes | QMessageBox.No, self)
        self._close_question = box
        try:
            return box.exec() == QMessageBox.Yes
        finally:
            self._close_question = None

    def _close_question_outdated(self) -> None:
        box = self._close_question
        if box is not None:
            box.setWindowTitle("Training has ended")
            box.setText("Training has ended and its checkpoint is saved. Close the window?")

    def terminate(self) -> None:
        """Close without asking (SIGTERM, or Ctrl-C in the terminal that launched the window): a running training
        stops at its next step and keeps its checkpoint, as after the close button's "Yes"."""
        if self.running and not self._closing:
            self._closing = True
            self.stop(quick=True)
        self.close()

    def closeEvent(self, event):  # noqa: N802 - Qt's name
        if self.running and not self._closing:
            if not self.confirm_close():
                event.ignore()
                return
            # stop at the next step without a final evaluation and end background jobs; the window goes at once and
            # app.run() waits for the worker to write its checkpoint (a step and a save: a few seconds at most)
            self._closing = True
            self.stop(quick=True)
        self.setup.cancel_loading(quiet=True)
        EventWorker.cancel_all()
        self.embedding.tip.hide()
        with contextlib.suppress(ConfigError):
            self.settings.setValue("last_config", self.setup.build_config().to_toml())
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("state", self.saveState())
        self.settings.sync()
        event.accept()

    def wait_for_worker(self, timeout_ms: int = CLOSE_WAIT_MS) -> bool:
        """Block until the training thread has ended (after the window closed); True when it has."""
        return self.thread is None or self.thread.wait(timeout_ms)
