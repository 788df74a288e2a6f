"""The workbench window: composition of panels and the wiring of the training worker's signals."""
from __future__ import annotations

import contextlib
import os
import shlex
import time
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QApplication, QDockWidget, QFileDialog, QInputDialog, QLabel, QMainWindow, QMessageBox,
                               QSizePolicy, QTabWidget, QToolBar, QToolButton)

from pyqtgraph.util.garbage_collector import GarbageCollector

from workbench.core.config import Config
from workbench.core.history import read_history
from workbench.core.runfolder import read_view
from workbench.core.registry import ConfigError
from workbench.core.runfolder import config_path
from workbench.gui import explain_view, wheel
from workbench.gui.actions import RunActions
from workbench.gui.first_run import DONE_KEY, FirstRunGuide
from workbench.gui.menus import Menus
from workbench.gui.panels.data import DataPanel
from workbench.gui.panels.embedding import EmbeddingPanel
from workbench.gui.panels.inspector import InspectorPanel
from workbench.gui.panels.plots import PlotsPanel
from workbench.gui.panels.runs import RunsPanel
from workbench.gui.panels.setup import SetupPanel
from workbench.gui.panels.sweep import SweepPanel
from workbench.gui.paths import app_icon, default_runs_root
from workbench.gui.tasks import Task
from workbench.gui.widgets import ElidedLabel, MessagesDialog, TextBar, clock
from workbench.gui.worker import TrainWorker, start_worker, warm_up

CLOSE_WAIT_MS = 15000
INVALID_WIDTH = 460  # px of the toolbar's validation message (whole in its tooltip)


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


BAR_WIDTH = 120  # px of the progress bar itself; its text is beside it
PROGRESS_TEXT_MIN = 330  # px the progress text keeps at the least (1024 px wide: the status text gets the rest)
WIDEST_PROGRESS = "epoch 999  step 99999  99,999 img/s  trained 59:59 of 60:00  ETA 59:59"
BOXED_TIP = ("A run given in minutes counts training time: evaluations come on top (at most eval.max_share of it), "
             "so on the clock it takes longer. The bar fills with the training time; the ETA includes the evaluations.")


def _message_line(t: str, kind: str, msg: str) -> str:
    return f"{t}  {kind}: {msg}"


class MainWindow(RunActions, QMainWindow):
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
        self.runs_root = str(self.settings.value("runs_root", runs_root or default_runs_root()))  # documents, not the cwd
        self.setup = SetupPanel(cfg)
        dock = QDockWidget("Set-up", self)
        dock.setObjectName("setup_dock")
        dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable)
        dock.setWidget(self.setup)
        self.addDockWidget(Qt.LeftDockWidgetArea, dock)
        self.tabs = QTabWidget()
        self.plots = PlotsPanel()
        self.embedding = EmbeddingPanel()
        self.inspector = InspectorPanel()
        self.runs = RunsPanel(self.runs_root)
        self.sweep = SweepPanel(self.setup.build_config, lambda: self.runs_root, busy=lambda: self.running,
                                loaded_for=self.setup.loaded_for)
        self.data = DataPanel()
        for w, name in ((self.plots, "Curves"), (self.embedding, "Embedding"), (self.inspector, "Pairs"), (self.runs, "Runs"),
                        (self.sweep, "Sweep"), (self.data, "Data")):
            self.tabs.addTab(w, name)
        self.setCentralWidget(self.tabs)
        self._toolbar()
        self.setWindowIcon(app_icon())
        self.menus = Menus(self)  # File (configs, examples, run folders, recent lists, Quit) and Help
        self.guide: FirstRunGuide | None = None
        self.worker = self.thread = None
        self._running = False  # set by start(), cleared when the worker thread's finished signal arrives
        self._closing = False
        self._pending_start = None  # Start pressed while the dataset was still loading
        self._verdict = None  # the set-up's last (valid, message), so a re-check that finds the same says nothing
        self.run_dir = None
        self.total_steps, self.step, self.boxed, self.budget_s = 1, 0, False, 0.0
        self.evaluating = False  # an evaluation under way: the bar counts its work until the next step or result
        self._bar_at = (0, "")  # the bar's value and text at the last step, to return to after an evaluation
        self.messages: list[str] = []  # this run's notes, warnings and errors
        self.message_log: list[tuple[str, str, str]] = []  # the session's (time, kind, text), for the messages list
        self.messages_box: MessagesDialog | None = None  # the messages window, once opened
        self.held_out = None
        self.classes: list = []
        self.t_start = self.t_first_step = None
        self.last_eval = None  # the latest EvalEvent shown (its epoch and step label the kNN quoted at the end)
        self._wire()
        self.explainer = explain_view.install(self)  # similarity maps: Pairs toggle, clicks on pairs and retrieval tiles
        Task(warm_up, lambda _: None).start()
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
        self.runs.root = Path(folder)
        self.runs.refresh()
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
        self.status = ElidedLabel("ready")
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
        self.setup.validityChanged.connect(lambda *_: self.sweep.validate(quiet=True))  # its trials' length
        self.setup.dataLoaded.connect(self._data_loaded)
        self.inspector.captureRequested.connect(self.capture_batch)
        self.embedding.pointSelected.connect(self._retrieve)
        self.runs.openRun.connect(self.open_run)
        self.runs.overlayRuns.connect(self.overlay_runs)
        self.runs.resumeRun.connect(lambda r: self.start(resume=r))
        self.runs.cloneRun.connect(self.clone_run)
        self.runs.exportRun.connect(self.export_dialog)
        self.sweep.openRun.connect(self.open_run)
        self.sweep.runningChanged.connect(self._sweep_running)
        self.trainingDone.connect(self.data.run_finished)  # checked on its final evaluation
        self.runOpened.connect(self.data.set_run)  # checked on request
        self.data.checked.connect(lambda got: [self.log("data", line) for line in got.report.findings])

    def _sweep_running(self, running: bool):
        """The status bar follows a sweep too: its trials and curves are in the Sweep tab."""
        self.progress.setRange(0, 0 if running else 1)  # busy while it runs
        self.progress.setValue(0)
        self.progress.setFormat("sweep running" if running else "sweep ended")
        self.set_status("a sweep is running: its trials and curves are in the Sweep tab" if running else "ready")
        self.start_btn.setEnabled(not running and self.setup.valid)
        self.setup.set_locked(running)  # the trials were planned from it: it reads, greyed, what they train

    def set_status(self, text: str, colour: str = ""):
        self.status.setText(text)
        self.status.setToolTip(text)
        self.status.setStyleSheet(f"color: {colour}" if colour else "")

    def log(self, kind: str, msg: str):
        """Keep a note, warning or error for the messages list (the status bar shows only the latest, cut to fit)."""
        self.messages.append(msg)
        self.message_log = (self.message_log + [(time.strftime("%H:%M:%S"), kind, msg)])[-1000:]
        problems = sum(k != "note" for _, k, _ in self.message_log)
        self.log_btn.setText(f"messages ({len(self.message_log)})" + (f" ⚠ {problems}" if problems else ""))
        if self.messages_box is not None:
            self.messages_box.add(_message_line(*self.message_log[-1]), len(self.message_log))

    def messages_text(self) -> str:
        return "\n".join(_message_line(*m) for m in self.message_log) or "no messages yet"

    def show_messages(self):
        """The messages window (not modal: it stays open while training goes on, and grows)."""
        if self.messages_box is None:
            self.messages_box = MessagesDialog(self)
        self.messages_box.set_lines([_message_line(*m) for m in self.message_log])
        self.messages_box.show()
        self.messages_box.raise_()

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
        return self._running

    def _set_running(self, running: bool, paused: bool = False):
        self.start_btn.setEnabled(not running and self.setup.valid)
        self.pause_btn.setEnabled(running and not paused)
        self.resume_btn.setEnabled(running and paused)
        self.stop_btn.setEnabled(running)
        self.setup.set_locked(running)

    def _validity(self, ok: bool, message: str):
        """The set-up re-checked (an edit, the data loaded): Start and the line beside it follow at once; the status
        text only when the verdict is news. A re-check that finds what the last one found (e.g. when the background
        data load ends) leaves the status as it was: an error or a note stays until a newer message replaces it."""
        text = f"set-up: {message}" if not ok else ""
        self.invalid.setToolTip(text)
        self.invalid.setText(self.invalid.fontMetrics().elidedText(text, Qt.ElideRight, INVALID_WIDTH))
        self.invalid_action.setVisible(not ok)
        verdict, self._verdict = self._verdict, (ok, message)
        if not self.running and self._pending_start is None and not self.sweep.running:
            self.start_btn.setEnabled(ok)
            if verdict != (ok, message):
                self.set_status("ready" if ok else f"set-up invalid: {message}")

    # ----- training -----
    def start(self, resume: str | None = None):
        if self.running:
            return
        if getattr(self, "sweep", None) is not None and self.sweep.running:
            self.show_error("a sweep is running: stop it in the Sweep tab before starting a single run")
            return
        try:
            cfg = Config.load(config_path(resume)) if resume else self.setup.build_config()
        except ConfigError as exc:
            self.show_error(str(exc))
            return
        if resume:
            self.setup.set_config(cfg)  # the greyed panel shows what the resumed run trains (loads its data if they differ)
        data = self.setup.loaded_for(cfg)
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
            self._launch(cfg, resume, self.setup.loaded_for(cfg))

    def _launch(self, cfg, resume, data):
        self.t_start, self.t_first_step = time.perf_counter(), None
        self.plots.reset()
        self.embedding.reset()
        self.embedding.show_activity(training=True)
        self.inspector.reset(training=True)
        self.messages = []
        self.last_eval = None
        self.evaluating = False
        self.progress.setRange(0, 0)  # busy until the run reports its length
        self.progress.setFormat("starting…")
        self.worker = TrainWorker(cfg, self.runs_root, resume, data)
        w = self.worker
        w.started.connect(self._on_started)
        w.stepsReady.connect(self._on_steps)
        w.evalProgress.connect(self._on_eval_progress)
        w.evaluated.connect(self._on_eval)
        w.embedding.connect(self.embedding.show_embedding)
        w.batch.connect(self._on_batch)
        w.paused.connect(self._on_paused)
        w.warning.connect(self._on_warning)
        w.error.connect(self.show_error)
        w.done.connect(self._on_done)
        w.finished.connect(self._on_finished)  # before the thread starts: a run that fails at once still ends here
        self._running = True
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
            if self.evaluating:  # the evaluation ends at its next batch: say so, the bar stops counting it
                self.progress.setFormat("stopping: ending the evaluation…")
                self.set_status("stopping: the evaluation ends at its next batch, then a checkpoint is saved…")
            else:
                self.set_status("stopping at the end of this step… (saving a checkpoint)")

    def _on_started(self, ev):
        self.run_dir = ev.run_dir
        self.total_steps, self.step = max(1, ev.total_steps), ev.start_step
        self.budget_s = float(ev.config["train"].get("time_budget_s") or 0)
        self.boxed = bool(self.budget_s)  # a time budget ends it: the bar follows its clock
        self.progress.setToolTip(BOXED_TIP if self.boxed else "")
        self.progress.setRange(0, 1000 if self.boxed else self.total_steps)
        self.progress.setValue(0 if self.boxed else ev.start_step)
        self.progress.setFormat(f"step {self._steps_text()}")
        self._bar_at = (self.progress.value(), self.progress.format())
        self.set_status(f"training on {ev.device}: {ev.n_train:,} images, run folder {ev.run_dir}")
        self.classes = ev.classes
        self.held_out = ev.held_out_images
        self.embedding.set_dataset(self.held_out, ev.classes)
        if ev.held_out_source:
            self.name_held_out(ev.held_out_source, ev.held_out_indices)
        if ev.start_step > 0:  # resumed: show what the run did before
            self._show_history(ev.run_dir)
            self.embedding.set_reference(read_view(ev.run_dir))
        self.runs.set_running(ev.run_dir)

    def name_held_out(self, source: str, indices):
        """List the held-out images' folder in the background, for the embedding's tooltips (a failure is said in
        the messages list; the tooltips then go without names)."""
        from workbench.core.data import file_names

        images = self.held_out
        Task(lambda: file_names(source, indices), lambda names: self.embedding.set_files(images, names),
             lambda msg, tb: self.log("warning", f"could not list the held-out images' files in '{source}': {msg}")).start()

    def _show_history(self, run_dir):
        for e in read_history(run_dir):
            (self.plots.add_step if hasattr(e, "loss") else self.plots.add_eval)(e)
            if not hasattr(e, "loss"):
                self.last_eval = e
        self.plots.redraw()

    def _on_eval_progress(self):
        """An evaluation under way (minutes on a large bank): what it does and how far, in the status bar, the bar
        and the Embedding tab, instead of a frozen step count."""
        ev = self.worker.take_progress() if self.worker is not None else None
        if ev is None:
            return
        self.evaluating = True
        self.embedding.show_activity(ev.text)
        self.progress.setRange(0, ev.total if ev.total > 0 else 0)  # busy while its size is unknown
        self.progress.setValue(min(ev.done, ev.total) if ev.total > 0 else 0)
        if self.worker.control.stopped:  # Stop pressed: the stop message stays
            self.progress.setFormat("stopping: ending the evaluation…")
            return
        self.progress.setFormat(ev.text)
        after = "the run ends" if ev.final else "training goes on"
        self.set_status(f"{'final ' if ev.final else ''}evaluation under way at step {ev.step}: {after} when it ends; "
                        "Stop ends it")
        self.evaluationShown.emit(ev)

    def _end_evaluation(self):
        """Back to the training bar (its range, value and text at the last step) once an evaluation has ended."""
        if not self.evaluating:
            return
        self.evaluating = False
        self.embedding.show_activity(training=self.running)
        self.progress.setRange(0, 1000 if self.boxed else self.total_steps)
        self.progress.setValue(self._bar_at[0])
        self.progress.setFormat(self._bar_at[1])

    def _on_steps(self):
        if self.worker is None:
            return
        steps = self.worker.take_steps()
        if not steps:
            return
        self._end_evaluation()
        for ev in steps:
            self.plots.add_step(ev)
        ev = steps[-1]
        if self.t_first_step is None:
            self.t_first_step = time.perf_counter()
            self.plots.redraw()  # the first point shows at once, not at the next timer tick
        self.step = ev.step
        self.progress.setValue(round(1000 * ev.progress) if self.boxed else ev.step)
        if self.worker.control.paused or self.worker.control.stopped:
            self.progress.setFormat(f"epoch {ev.epoch}  step {self._steps_text()}")  # the curves' last step; no rate
            self._bar_at = (self.progress.value(), self.progress.format())
            return
        trained = f"trained {clock(ev.progress * self.budget_s)} of {clock(self.budget_s)}  " if self.boxed else ""
        self.progress.setFormat(f"epoch {ev.epoch}  step {self._steps_text()}  {ev.images_per_s:,.0f} img/s  "
                                f"{trained}ETA {clock(ev.eta_s)}")
        self._bar_at = (self.progress.value(), self.progress.format())
        self.stepsShown.emit(ev.step)

    def _on_eval(self, ev):
        self._end_evaluation()
        self.plots.add_eval(ev)
        self.last_eval = ev
        m = ev.metrics
        self.set_status(f"epoch {ev.epoch}: kNN {m['knn_acc']:.4f}, alignment {m['alignment']:.3f}, "
                        f"uniformity {m['uniformity']:.3f}, eff. rank {m['eff_rank']:.1f}")
        if self.worker:
            self.worker.control.request_batch()  # keep the similarity history growing
        if self.runs.isVisible():
            self.runs.refresh()  # the running run's kNN (read in the background)
        self.epochEvaluated.emit(ev)

    # slots are methods of this window so Qt queues them onto the GUI thread
    def _on_paused(self, paused: bool):
        if self.worker is not None and self.worker.control.stopped:
            return
        self._set_running(True, paused)
        self.set_status("paused: Resume continues, Stop saves a checkpoint" if paused else "training")
        self.pauseChanged.emit(paused)

    def _on_batch(self, ev):
        self.inspector.show_batch(ev)
        self.batchShown.emit(ev)

    def _on_finished(self):
        self._running = False
        self._end_evaluation()
        self.embedding.show_activity()  # no longer "training: ..." where no embedding came
        self._set_running(False)
        self._on_steps()
        self.plots.fit()  # the live view's headroom for steps that never came goes
        self.worker = None
        self.runs.set_running(None)
        self.sweep.validate()  # a "stop the training first" it showed no longer holds

    def _steps_text(self) -> str:
        """"120/160", or "120" in a run a time budget ends (its step count is no measure of the end)."""
        return f"{self.step}" if self.boxed else f"{self.step}/{self.total_steps}"

    def _on_warning(self, msg: str, note: bool = False):
        """A note (a decision stated) or a warning (a problem, in orange): in the status text beside the progress
        bar, which stays in view, and whole in the messages list."""
        self.log("note" if note else "warning", msg)
        self.set_status(f"note: {msg}" if note else f"⚠ warning: {msg}", "" if note else "#b35900")

    def _on_done(self, ev):
        self._end_evaluation()
        if ev.reason == "already finished":  # a resumed run with nothing left to do: the bar leaves its busy state
            self.progress.setRange(0, 1)
            self.progress.setValue(1)
            self.progress.setFormat(ev.reason)
            self.set_status(ev.message or ev.text)
            self.trainingDone.emit(ev)
            return
        self.step = ev.step if ev.step >= 0 else self.step  # the checkpoint's step, not the last one logged
        if not self.boxed:
            self.progress.setValue(min(self.step, self.progress.maximum()))
        if ev.reason in ("finished", "budget"):  # its end reached: the last logged step may be a little before it
            self.progress.setValue(self.progress.maximum())
        self.progress.setFormat(f"{'finished' if ev.reason == 'budget' else ev.reason}: step {self._steps_text()}")
        self.set_status(f"{ev.words} at step {self.step}{self._knn_note(ev.metrics)}: "
                        f"checkpoint and metrics in {ev.run_dir}")
        self.trainingDone.emit(ev)

    def _knn_note(self, metrics: dict) -> str:
        """", last kNN 0.7820 (epoch 3, step 120)": which evaluation the figure comes from (it may be an earlier one)."""
        knn = metrics.get("knn_acc")
        if knn is None:
            return ""
        ev = self.last_eval
        where = f" (epoch {ev.epoch}, step {ev.step})" if ev is not None and ev.metrics.get("knn_acc") == knn else ""
        return f", last kNN {knn:.4f}{where}"

    def show_error(self, msg: str, details: str = ""):
        self.log("error", msg)
        self.set_status(f"error: {msg}", "#c0392b")
        if self.running:  # a run that ended in an error; a refused action leaves the bar as it was
            self.progress.setFormat("error")
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

        return Task(fn, done, self.show_error).start()

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
        return QMessageBox.question(self, "Training is running",
                                    "Stop training and close? The checkpoint is kept and the run can be resumed.") == QMessageBox.Yes

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
        Task.cancel_all()
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
