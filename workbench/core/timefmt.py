"""Durations as people read them, one way in the terminal, the window and the messages."""
from __future__ import annotations

import math


def clock(seconds: float | None) -> str:
    """A duration (a run's length, an ETA) as m:ss, or h:mm:ss from an hour; "" for None, "--:--" when not finite."""
    if seconds is None:
        return ""
    if not math.isfinite(seconds):
        return "--:--"
    s = int(round(max(0.0, seconds)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def short(seconds: float) -> str:
    """A short span (an evaluation, a step) as "1.2 s", or "35 ms" under a tenth of a second."""
    return f"{seconds:.1f} s" if seconds >= 0.1 else f"{1000 * seconds:.0f} ms"
