"""The workbench window: composition of panels and the wiring of the training worker's signals."""
from __future__ import annotations

import os
import shlex
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtWidgets import (QDockWidget, QFileDialog, QInputDialog, QLabel, QMainWindow, QMessageBox, QProgressBar,
                               QTabWidget, QToolBar)

from workbench.core.config import Config
from workbench.core.registry import ConfigError
from workbench.core.runs import read_metrics
from workbench.gui.panels.embedding import EmbeddingPanel
from workbench.gui.panels.inspector import InspectorPanel
from workbench.gui.panels.plots import PlotsPanel
from workbench.gui.panels.runs import RunsPanel
from workbench.gui.panels.setup import SetupPanel
from workbench.gui.widgets import Task
from workbench.gui.worker import TrainWorker, start_worker


def settings() -> QSettings:
    path = os.environ.get("WORKBENCH_SETTINGS")
    if path:
        return QSettings(path, QSettings.IniFormat)
    return QSettings("ContrastiveWorkbench", "workbench")


class MainWindow(QMainWindow):
    # re-emitted on the GUI thread once the window has shown the event
    epochEvaluated = Signal(object)
    pauseChanged = Signal(bool)
    trainingDone = Signal(object)
    batchShown = Signal(object)

    def __init__(self, cfg: Config | None = None, runs_root: str = "runs"):
        super().__init__()
        self.setWindowTitle("Contrastive Workbench")
        self.setAcceptDrops(True)
        self.settings = settings()
        if cfg is None:
            cfg = self._last_config()
        self.runs_root = str(self.settings.value("runs_root", runs_root))
        self.setup = SetupPanel(cfg)
        dock = QDockWidget("Set-up", self)
        dock.setObjectName("setup_dock")
        dock.setWidget(self.setup)
        self.addDockWidget(Qt.LeftDockWidgetArea, dock)
        self.tabs = QTabWidget()
        self.plots = PlotsPanel()
        self.embedding = EmbeddingPanel()
        self.inspector = InspectorPanel()
        self.runs = RunsPanel(self.runs_root)
        for w, name in ((self.plots, "Curves"), (self.embedding, "Embedding"), (self.inspector, "Pairs"), (self.runs, "Runs")):
            self.tabs.addTab(w, name)
        self.setCentralWidget(self.tabs)
        tb = QToolBar("Training")
        tb.setObjectName("toolbar")
        self.addToolBar(tb)
        self.start_btn = tb.addAction("Start", self.start)
        self.pause_btn = tb.addAction("Pause", self.pause)
        self.resume_btn = tb.addAction("Resume", self.resume)
        self.stop_btn = tb.addAction("Stop", self.stop)
        tb.addSeparator()
        tb.addAction("Load config…", self.load_config)
        tb.addAction("Save config…", self.save_config)
        tb.addAction("Multi-GPU command…", self.show_torchrun)
        self.progress = QProgressBar()
        self.progress.setMinimumWidth(480)
        self.status = QLabel("ready")
        self.status.setObjectName("status")
        self.statusBar().addWidget(self.progress)
        self.statusBar().addWidget(self.status, 1)
        self.worker = self.thread = None
        self._running = False  # set by start(), cleared when the worker thread's finished signal arrives
        self.run_dir = None
        self.messages: list[str] = []
        self.held_out = None
        self.setup.validityChanged.connect(self._validity)
        self.inspector.captureRequested.connect(self.capture_batch)
        self.embedding.pointSelected.connect(self._retrieve)
        self.runs.openRun.connect(self.open_run)
        self.runs.overlayRun.connect(self.overlay_run)
        self.runs.resumeRun.connect(lambda r: self.start(resume=r))
        self.runs.cloneRun.connect(self.clone_run)
        self.runs.exportRun.connect(self.export_dialog)
        self._set_running(False)
        self._validity(self.setup.valid, self.setup.error.text())
        geo = self.settings.value("geometry")
        if geo is not None:
            self.restoreGeometry(geo)
            self.restoreState(self.settings.value("state"))
        else:
            self.resize(1500, 950)

    # ----- state -----
    def _last_config(self) -> Config:
        text = self.settings.value("last_config")
        if text:
            try:
                import tomllib

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
        self.setup.setEnabled(not running)

    def _validity(self, ok: bool, message: str):
        if not self.running:
            self.start_btn.setEnabled(ok)
            self.status.setText("ready" if ok else f"set-up invalid: {message}")

    # ----- training -----
    def start(self, resume: str | None = None):
        if self.running:
            return
        try:
            cfg = None if resume else self.setup.build_config()
        except ConfigError as exc:
            self.show_error(str(exc))
            return
        self.plots.reset()
        self.embedding.reset()
        self.messages = []
        self.worker = TrainWorker(cfg, self.runs_root, resume)
        w = self.worker
        w.started.connect(self._on_started)
        w.step.connect(self._on_step)
        w.evaluated.connect(self._on_eval)
        w.embedding.connect(self.embedding.show_embedding)
        w.batch.connect(self._on_batch)
        w.paused.connect(self._on_paused)
        w.warning.connect(self._on_warning)
        w.error.connect(self.show_error)
        w.done.connect(self._on_done)
        self.thread = start_worker(w)
        self.thread.finished.connect(self._on_finished)
        self._running = True
        self._set_running(True)
        self.status.setText("loading data…")

    def pause(self):
        if self.worker:
            self.worker.control.pause()

    def resume(self):
        if self.worker:
            self.worker.control.resume()

    def stop(self):
        if self.worker:
            self.worker.control.stop()
            self.status.setText("stopping… (saving a checkpoint)")

    def _on_started(self, ev):
        self.run_dir = ev.run_dir
        self.total_steps = ev.total_steps
        self.progress.setRange(0, max(1, ev.total_steps))
        self.progress.setValue(ev.start_step)
        self.status.setText(f"training on {ev.device}: {ev.n_train} images, run folder {ev.run_dir}")
        self.classes = ev.classes
        self.held_out = ev.held_out_images
        self.embedding.set_dataset(self.held_out, ev.classes)
        self.runs.refresh()

    def _on_step(self, ev):
        self.plots.add_step(ev)
        self.progress.setValue(ev.step)
        eta = int(ev.eta_s)
        self.progress.setFormat(f"epoch {ev.epoch + 1}  step {ev.step}/{self.total_steps}  "
                                f"{ev.images_per_s:,.0f} img/s  ETA {eta // 60}:{eta % 60:02d}")

    def _on_eval(self, ev):
        self.plots.add_eval(ev)
        m = ev.metrics
        self.status.setText(f"epoch {ev.epoch}: kNN {m['knn_acc']:.4f}, alignment {m['alignment']:.3f}, "
                            f"uniformity {m['uniformity']:.3f}, eff. rank {m['eff_rank']:.1f}")
        if self.worker:
            self.worker.control.request_batch()  # keep the similarity history growing
        self.epochEvaluated.emit(ev)

    # slots are methods of this window so Qt queues them onto the GUI thread
    def _on_paused(self, paused: bool):
        self._set_running(True, paused)
        self.status.setText("paused" if paused else "training")
        self.pauseChanged.emit(paused)

    def _on_batch(self, ev):
        self.inspector.show_batch(ev)
        self.batchShown.emit(ev)

    def _on_finished(self):
        self._running = False
        self._set_running(False)

    def _on_warning(self, msg: str):
        self.messages.append(msg)
        self.statusBar().showMessage(f"warning: {msg}", 15000)

    def _on_done(self, ev):
        self.status.setText(f"{ev.reason}: checkpoint and metrics in {ev.run_dir}")
        self.runs.refresh()
        self.trainingDone.emit(ev)

    def show_error(self, msg: str):
        self.messages.append(msg)
        self.status.setText(f"error: {msg}")
        if not os.environ.get("WORKBENCH_NO_DIALOGS"):
            QMessageBox.warning(self, "Contrastive Workbench", msg)

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
        self.background(lambda: batch_from_checkpoint(RunModel.load(run)), self._on_batch, "capturing a batch")

    def background(self, fn, on_done, what: str):
        """Model work (loading, embedding, exporting) off the GUI thread; errors end up in show_error."""
        self.status.setText(f"{what}…")

        def done(result):
            self.status.setText("ready")
            on_done(result)

        Task(fn, done, self.show_error).start()

    # ----- retrieval -----
    def _retrieve(self, row: int):
        ev = self.embedding.latest
        if ev is not None and self.held_out is not None:
            self.tabs.setCurrentWidget(self.inspector)
            self.inspector.show_retrieval(row, ev, self.held_out, self.embedding.classes)

    def retrieve_file(self, path: str):
        from workbench.core.inference import RunModel, load_image_file

        ev = self.embedding.latest
        if ev is None or not self.run_dir:
            self.show_error("train or open a run first: retrieval needs an embedding")
            return
        run = self.run_dir

        def work():
            rm = RunModel.load(run)
            img = load_image_file(path, rm.channels)
            return img[0].numpy(), rm.embed(img)[0]

        def show(result):
            image, vec = result
            self.tabs.setCurrentWidget(self.inspector)
            self.inspector.show_query(vec, image, -1, ev, self.held_out, self.embedding.classes)

        self.background(work, show, "embedding the image")

    def dragEnterEvent(self, e):
        if e.mimeData().hasUrls():
            e.acceptProposedAction()

    def dropEvent(self, e):
        urls = e.mimeData().urls()
        if urls:
            self.retrieve_file(urls[0].toLocalFile())

    # ----- configs and runs -----
    def load_config(self):
        path, _ = QFileDialog.getOpenFileName(self, "Load config", "", "TOML (*.toml)")
        if path:
            try:
                self.setup.set_config(Config.load(path))
            except ConfigError as exc:
                self.show_error(str(exc))

    def save_config(self, path: str | None = None):
        if not path:
            path, _ = QFileDialog.getSaveFileName(self, "Save config", "experiment.toml", "TOML (*.toml)")
        if path:
            try:
                self.setup.build_config().save(path)
            except (ConfigError, OSError) as exc:
                self.show_error(str(exc))

    def torchrun_command(self, config_path: str, gpus: int) -> str:
        return f"torchrun --standalone --nproc_per_node={gpus} -m workbench train {shlex.quote(config_path)} --out {shlex.quote(self.runs_root)}"

    def show_torchrun(self):
        gpus, ok = QInputDialog.getInt(self, "Multi-GPU", "GPUs on the target machine", 2, 1, 64)
        if not ok:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Write the config for torchrun", "experiment.toml", "TOML (*.toml)")
        if path:
            self.save_config(path)
            QMessageBox.information(self, "Multi-GPU command", "Run on the multi-GPU machine:\n\n" + self.torchrun_command(path, gpus)
                                    + "\n\nThen open the run folder from the Runs tab.")

    def open_run(self, run: str):
        try:
            cfg = Config.load(Path(run) / "config.toml")
        except ConfigError as exc:
            self.show_error(str(exc))
            return
        self.plots.reset()
        rows = read_metrics(run)
        for r in rows:
            if r.get("loss") is not None:
                from workbench.core.events import StepEvent

                self.plots.add_step(StepEvent(int(r["epoch"]), int(r["step"]), r["loss"], r["lr"], r["images_per_s"] or 0, 0,
                                              {k[5:]: v for k, v in r.items() if k.startswith("term_") and v is not None}))
            if r.get("knn_acc") is not None:
                from workbench.core.events import EvalEvent

                self.plots.add_eval(EvalEvent(int(r["epoch"]), int(r["step"]), {"knn_acc": r["knn_acc"]}))
        self.run_dir = run
        self._show_run_embedding(run, cfg)
        self.tabs.setCurrentWidget(self.plots)

    def _show_run_embedding(self, run, cfg):
        from workbench.core.events import EmbeddingEvent
        from workbench.core.inference import RunModel
        from workbench.core.projection import pca_2d

        def work():
            rm = RunModel.load(run)
            _, test = rm.splits()
            n = min(cfg.eval.embed_points or 2000, len(test))
            emb = rm.embed(test.images[:n])
            return test, EmbeddingEvent(-1, -1, pca_2d(emb), emb, test.labels[:n].numpy(), np.arange(n))

        def show(result):
            test, ev = result
            self.held_out = test.images.numpy()
            self.embedding.reset()
            self.embedding.set_dataset(self.held_out, test.classes)
            self.embedding.show_embedding(ev)

        self.background(work, show, "embedding the held-out set")

    def overlay_run(self, run: str):
        rows = read_metrics(run)
        steps = [r["step"] for r in rows if r.get("loss") is not None]
        losses = [r["loss"] for r in rows if r.get("loss") is not None]
        ep = [r["epoch"] for r in rows if r.get("knn_acc") is not None]
        knn = [r["knn_acc"] for r in rows if r.get("knn_acc") is not None]
        self.plots.overlay(Path(run).name, steps, losses, ep, knn, len(self.plots.overlays) // 2 + 1)
        self.tabs.setCurrentWidget(self.plots)

    def clone_run(self, run: str):
        try:
            self.setup.set_config(Config.load(Path(run) / "config.toml"))
        except ConfigError as exc:
            self.show_error(str(exc))

    def export_dialog(self, run: str):
        from workbench.core.export import export_run

        fmt, ok = QInputDialog.getItem(self, "Export", "format", ["safetensors", "torchscript", "onnx", "npz", "projector"], 0, False)
        if not ok:
            return
        folder = QFileDialog.getExistingDirectory(self, "Export into folder", str(Path(run) / "export"))
        if folder:
            self.background(lambda: export_run(run, fmt, folder),
                            lambda paths: self.status.setText("exported: " + ", ".join(str(p) for p in paths)), f"exporting {fmt}")

    # ----- closing -----
    def confirm_close(self) -> bool:
        return QMessageBox.question(self, "Training is running",
                                    "Stop training and close? The checkpoint is kept and the run can be resumed.") == QMessageBox.Yes

    def closeEvent(self, event):
        if self.running:
            if not self.confirm_close():
                event.ignore()
                return
            self.worker.control.stop()
            self._running = not self.thread.wait(60000)
        try:
            self.settings.setValue("last_config", self.setup.build_config().to_toml())
        except ConfigError:
            pass
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("state", self.saveState())
        self.settings.sync()
        event.accept()
