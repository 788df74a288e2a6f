"""What the window asks of a tab: a title, a shortcut, and three things it tells every tab.

A tab is a QWidget that also derives from ``Panel``; it is added to the window by one entry in
``main_window.PANELS``. Every method has a default that does nothing, so a tab implements only what it uses:

    class NotesPanel(Panel, QWidget):
        title, shortcut = "Notes", "Alt+7"

        def on_event(self, ev):                  # every event of the training run, on the GUI thread
            if isinstance(ev, EvalEvent): ...

The window makes it with ``create(window)``, lets it connect its requests with ``attach(window)`` (the window's
public actions: ``open_run``, ``start``, ``log``, ``show_panel``, ``broadcast``...), and then only tells it:

- ``reset(training)``: a run starts (``training``) or a run folder opens: forget the last run's pictures;
- ``on_event(ev)``: an event of the running training (the core's events, a past run's history as it is shown, and
  the window's own below), or a request another tab broadcast (``Retrieve``);
- ``run_opened(run)``: a run folder was opened to look at (its history has been sent through ``on_event``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class Panel:
    title = ""  # the tab's text
    shortcut = ""  # a key that shows the tab, e.g. "Alt+1"

    @classmethod
    def create(cls, window):
        """The tab for ``window`` (most need nothing from it)."""
        return cls()

    def attach(self, window) -> None:
        """Connect this tab's requests to the window's actions."""

    def reset(self, training: bool = False) -> None:
        """A run starts (``training``) or a run folder opens."""

    def on_event(self, ev) -> None:
        """An event of the running training, a past run's history, or a request (``Retrieve``)."""

    def run_opened(self, run: str) -> None:
        """A run folder was opened; its history went through ``on_event`` just before."""


@dataclass(frozen=True)
class RunEnded:
    """The training worker has finished (after its DoneEvent, or after an error without one)."""


@dataclass(frozen=True)
class EvaluationEnded:
    """An evaluation under way has ended: its progress is no longer shown."""


@dataclass(frozen=True, eq=False)
class HeldOut:
    """The held-out images (N, C, H, W) uint8 the run's embedding shows, their class names, and where known their
    files and a saved layout (xy, indices) to keep the orientation of; sent again with ``files`` once listed."""

    images: np.ndarray | None
    classes: list
    files: list | None = None
    reference: tuple | None = None


@dataclass(frozen=True)
class RunsRoot:
    """New runs and sweeps go to ``folder`` from now on."""

    folder: str


@dataclass(frozen=True)
class Overlay:
    """Draw these run folders' curves over the shown run's (``shown``, which is not drawn twice)."""

    runs: list
    shown: str | None = None


@dataclass(frozen=True, eq=False)
class Retrieve:
    """Show the nearest held-out images of a query: a held-out row (``row`` >= 0) or a dropped file's ``vector``
    (D,) and ``image`` (C, H, W) uint8, among ``embedding`` (an EmbeddingEvent) of ``images`` (N, C, H, W)."""

    row: int
    embedding: object
    images: np.ndarray
    classes: list
    files: list | None = None
    vector: np.ndarray | None = None
    image: np.ndarray | None = None
    query_file: str = ""
