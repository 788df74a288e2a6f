"""The run control shared by a consumer of the training events and the loop: stop, pause, quick stop, a batch to show.

    control = Control()
    for event in train(cfg, control):   # another thread (the window, a signal handler) calls control.stop()
        ...

Every front end (CLI, window, Python API, sweeps) drives a run through one of these; the loop checks it between steps
and between evaluation batches.
"""
from __future__ import annotations

import threading


class Control:
    """Thread-safe stop / pause / inspect flags shared between a consumer and the loop."""

    def __init__(self):
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._batch = threading.Event()
        self.quick = False
        self.notify = None  # a client's callback(paused: bool) for pauses where the loop cannot yield (evaluations)

    def stop(self, quick: bool = False):
        """Stop at the next step (or evaluation batch) and save; ``quick`` also skips the final evaluation."""
        self.quick = self.quick or quick
        self._stop.set()
        self._running.set()

    def pause(self):
        self._running.clear()

    def resume(self):
        self._running.set()

    def request_batch(self):
        self._batch.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def take_batch_request(self) -> bool:
        if self._batch.is_set():
            self._batch.clear()
            return True
        return False

    def wait_while_paused(self, poll: float = 0.1) -> None:
        while not self._running.wait(poll):
            pass

    def hold(self) -> None:
        """Wait while paused where no PausedEvent can be yielded (inside an evaluation), telling ``notify`` that the
        loop is paused and when it goes on: a window waiting for the event would otherwise never offer Resume."""
        if self.notify is not None:
            self.notify(True)
        self.wait_while_paused()
        if self.notify is not None:
            self.notify(False)
