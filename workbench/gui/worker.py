"""The one bridge between the core's training generator and Qt: a QObject in its own QThread
that iterates ``train()`` and re-emits every event as a signal. The GUI only talks to it through
signals and the thread-safe ``Control``."""
from __future__ import annotations

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from workbench.core import events as E
from workbench.core.train import Control, train


class TrainWorker(QObject):
    started = Signal(object)  # RunStarted
    step = Signal(object)  # StepEvent
    evaluated = Signal(object)  # EvalEvent
    embedding = Signal(object)  # EmbeddingEvent
    batch = Signal(object)  # BatchEvent
    checkpoint = Signal(object)
    paused = Signal(bool)
    warning = Signal(str)
    done = Signal(object)  # DoneEvent
    error = Signal(str)
    finished = Signal()

    ROUTES = {E.RunStarted: "started", E.StepEvent: "step", E.EvalEvent: "evaluated", E.EmbeddingEvent: "embedding",
              E.BatchEvent: "batch", E.CheckpointEvent: "checkpoint", E.DoneEvent: "done"}

    def __init__(self, cfg, runs_root: str, resume: str | None = None):
        super().__init__()
        self.cfg, self.runs_root, self.resume = cfg, runs_root, resume
        self.control = Control()

    @Slot()
    def run(self):
        import os

        import torch

        if self.cfg is None or not self.cfg.train.threads:
            # leave a core to the window so it stays responsive (CPU training only; a GPU run barely uses them)
            torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
        try:
            for ev in train(self.cfg, self.control, runs_root=self.runs_root, resume=self.resume):
                if isinstance(ev, E.PausedEvent):
                    self.paused.emit(ev.paused)
                elif isinstance(ev, E.WarningEvent):
                    self.warning.emit(ev.message)
                elif isinstance(ev, E.ErrorEvent):
                    self.error.emit(ev.message)
                else:
                    getattr(self, self.ROUTES[type(ev)]).emit(ev)
        except Exception as exc:  # noqa: BLE001 - anything goes to the window as a message, never a crash
            self.error.emit(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        finally:
            self.finished.emit()


def start_worker(worker: TrainWorker) -> QThread:
    thread = QThread()
    worker.moveToThread(thread)
    thread.started.connect(worker.run)
    worker.finished.connect(thread.quit, Qt.DirectConnection)  # quit() is thread-safe; no GUI round trip
    thread.start()
    return thread
