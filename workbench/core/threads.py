"""How many CPU threads torch computes with: one rule for the training loop, the window's workers and the loaders."""
from __future__ import annotations

import os


def cores() -> int:
    """The CPU cores this process may run on (its affinity where the system has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def set_threads(requested: int = 0, leave_free: int = 0) -> int:
    """Set torch's thread count and return it: ``requested`` (train.threads) when set; else, with ``leave_free``, all
    the cores but that many (a window keeps one to stay responsive while a CPU run trains); else torch's default."""
    import torch

    n = requested or (max(1, cores() - leave_free) if leave_free else 0)
    if n and torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return torch.get_num_threads()
