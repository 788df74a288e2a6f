"""Background work for the window: a ``Task`` runs a function in Qt's thread pool, reports progress
and its result on the GUI thread, and can be cancelled; ``ProcessTask`` runs one in a child process
at low priority (UMAP / t-SNE), so cancelling it, or closing the window, ends it at once.

    Task(fn, on_done, on_failed, progress=on_progress).start()   # fn(report, cancel) or fn()
"""
from __future__ import annotations

import contextlib
import inspect
import multiprocessing as mp
import os
import threading
import traceback

from PySide6.QtCore import QObject, QThreadPool, Signal


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Task(QObject):
    """Run ``fn`` in the global thread pool; ``on_done(result)`` / ``on_failed(message, traceback)`` and
    ``progress(done, total, message)`` run on the GUI thread.

    ``fn`` takes no argument, or ``(report, cancel)``: ``report(done, total, message)`` from the worker
    thread and ``cancel`` a ``threading.Event`` to poll. A cancelled task reports neither result nor
    failure. The signals are connected to this object's own methods and the object lives on the GUI
    thread, so Qt queues the callbacks there whatever thread emits.
    """

    done = Signal(object)
    failed = Signal(str, str)
    progressed = Signal(int, int, str)
    running: set = set()  # keeps tasks alive until they report; cancel_all() on close

    def __init__(self, fn, on_done, on_failed=None, progress=None):
        super().__init__()
        self.fn, self.on_done, self.on_failed, self.on_progress = fn, on_done, on_failed, progress
        self.cancel_event = threading.Event()
        self.finished = threading.Event()
        self.done.connect(self._finish)
        self.failed.connect(self._fail)
        self.progressed.connect(self._progress)

    def start(self) -> Task:
        Task.running.add(self)
        QThreadPool.globalInstance().start(self._run)
        return self

    def cancel(self) -> None:
        self.cancel_event.set()

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def _call(self):
        try:
            takes_args = len(inspect.signature(self.fn).parameters) >= 2
        except (TypeError, ValueError):
            takes_args = False
        if takes_args:
            return self.fn(lambda d, t, m="": self.progressed.emit(int(d), int(t), str(m)), self.cancel_event)
        return self.fn()

    def _run(self):
        try:
            result = self._call()
            if not self.cancelled:
                self._emit(self.done, result)
        except Exception as exc:  # noqa: BLE001 - reported in the window, never a crash
            if not self.cancelled:
                self._emit(self.failed, first_line(exc), traceback.format_exc())
        finally:
            self.finished.set()
            if self.cancelled:
                Task.running.discard(self)

    @staticmethod
    def _emit(signal, *args):
        with contextlib.suppress(RuntimeError):  # the window (and this object) went while the work ran
            signal.emit(*args)

    def _finish(self, result):
        Task.running.discard(self)
        if not self.cancelled:
            self.on_done(result)

    def _fail(self, message, tb):
        Task.running.discard(self)
        if self.cancelled or self.on_failed is None:
            return
        try:
            self.on_failed(message, tb)
        except TypeError:
            self.on_failed(message)

    def _progress(self, done, total, message):
        if self.on_progress is not None and not self.cancelled:
            self.on_progress(done, total, message)

    @classmethod
    def cancel_all(cls, wait_s: float = 0.0) -> None:
        """Cancel every running task (closing the window) and wait up to ``wait_s`` for them to return."""
        tasks = list(cls.running)
        for t in tasks:
            t.cancel()
        for t in tasks:
            t.finished.wait(wait_s)


def _child(conn, fn, args):
    with contextlib.suppress(OSError):
        os.nice(10)  # yield the CPU to training and to the window
    try:
        conn.send(("ok", fn(*args)))
    except BaseException as exc:  # noqa: BLE001 - sent back to the window
        conn.send(("error", (first_line(exc), traceback.format_exc())))
    finally:
        conn.close()


class ProcessTask(Task):
    """A Task whose work runs in a child process (``fn(*args)`` must be importable and picklable):
    cancelling terminates the process, so nothing outlives the window."""

    def __init__(self, fn, args, on_done, on_failed=None):
        self.proc = None
        self.target, self.args = fn, args
        super().__init__(self._in_child, on_done, on_failed)

    def _in_child(self, report, cancel):
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=_child, args=(child, self.target, self.args), daemon=True)
        self.proc.start()
        child.close()
        try:
            while not cancel.is_set():
                if parent.poll(0.05):
                    kind, value = parent.recv()
                    if kind == "error":
                        raise RuntimeError(value[0])
                    return value
                if not self.proc.is_alive() and not parent.poll(0):
                    raise RuntimeError(f"the background process ended unexpectedly (exit code {self.proc.exitcode})")
            return None
        finally:
            if self.proc.is_alive():
                self.proc.terminate()
            self.proc.join(2)
            parent.close()

    def cancel(self) -> None:
        super().cancel()
        if self.proc is not None and self.proc.is_alive():
            self.proc.terminate()
