"""Fakes for the training loop's seams: a clock that moves by known amounts and a sink that keeps its rows."""
from __future__ import annotations

import time

from workbench.core.events import EvalProgressEvent
from workbench.core.sinks import Sink


class FakeClock:
    """A clock for ``train(clock=...)`` that moves only by known amounts: each ``perf_counter()`` reading is
    ``perf_tick`` seconds after the one before (a training step reads it twice: each step trains ``perf_tick``),
    each ``monotonic()`` reading ``monotonic_tick`` after the one before, and ``advance(seconds)`` moves both on
    (time passing outside the readings: an evaluation, a pause, a day before a resume)."""

    def __init__(self, perf_tick: float = 0.01, monotonic_tick: float = 0.0):
        self.perf_tick, self.monotonic_tick = perf_tick, monotonic_tick
        self.perf, self.mono = 0.0, 0.0

    def perf_counter(self) -> float:
        self.perf += self.perf_tick
        return self.perf

    def monotonic(self) -> float:
        self.mono += self.monotonic_tick
        return self.mono

    def time(self) -> float:
        return time.time()

    def advance(self, seconds: float) -> None:
        self.perf += seconds
        self.mono += seconds


def evaluations_taking(seconds: float, clock: FakeClock, events):
    """``events`` passed on, ``clock`` moved ``seconds`` on at the start of each evaluation (its first progress
    event, while the evaluation is under way): every evaluation takes ``seconds`` more of the clock."""
    started = None
    for event in events:
        if isinstance(event, EvalProgressEvent) and event.step != started:
            started = event.step
            clock.advance(seconds)
        yield event


class RecordingSink(Sink):
    """Keeps every metric row it is given, and whether it was closed."""

    def __init__(self):
        self.rows: list[dict] = []
        self.closed = False

    def write(self, row: dict) -> None:
        self.rows.append(dict(row))

    def close(self) -> None:
        self.closed = True
