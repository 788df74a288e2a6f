"""What the window knows, without Qt: the current run, the loaded data, the messages and the progress.

Panels read it; the window changes it; nothing reads state back out of a widget. Every change is announced to the
listeners as ``(topic, part)`` with topic one of ``TOPICS``; ``gui/bridge.py`` re-emits them as Qt signals.

    session = Session()
    session.listen(lambda topic, part: print(topic, part))
    session.messages.say("loaded experiment.toml")          # -> ("status", Messages)
    session.data.loaded(data_cfg, (train, test))             # -> ("data", LoadedData)
    session.progress.set(value=3, maximum=10, text="step 3/10")

The status line's rule: a message replaces it at once (the newest message is shown); a re-check of the set-up
(``verdict``) replaces it only when its verdict is news, so the error of a run that failed, or a long note, stays
until a newer message comes, however often the form is re-checked (an edit, the background data load ending).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from workbench.core.config import Config, ConfigError
from workbench.core.timefmt import clock

TOPICS = ("run", "data", "status", "log", "progress")
KINDS = ("info", "note", "warning", "error", "data")  # what a message is; "note", "warning", "error", "data" are logged
LOG_LIMIT = 1000  # the session's messages kept for the messages window

Listener = Callable[[str, Any], None]


class _Part:
    """A part of the session that tells the session when it changed."""

    topic = ""

    def __init__(self, announce: Listener):
        self._announce = announce

    def changed(self) -> None:
        self._announce(self.topic, self)


def _config(config) -> Config | None:
    """A run's config as a Config: as given, read from a dict, or None when this version cannot read it."""
    if config is None or isinstance(config, Config):
        return config
    try:
        return Config.from_dict(config)
    except ConfigError:
        return None


class ShownRun(_Part):
    """The run the window shows: its folder, the config it trains, its state, and the held-out images its
    embedding and retrieval show ((N, C, H, W) uint8, with the class names)."""

    topic = "run"
    STATES = ("none", "starting", "training", "paused", "stopping", "ended", "opened")

    def __init__(self, announce: Listener):
        super().__init__(announce)
        self.folder: str | None = None
        self.config = None  # the Config it trains (None while a resumed run has not said)
        self.state = "none"
        self.held_out = None
        self.classes: list = []
        self.files: list | None = None  # the held-out images' files (an image folder's), once listed
        self.embedding = None  # the latest EmbeddingEvent shown (retrieval searches it)
        self.last_eval = None  # the latest EvalEvent shown (its epoch and step label the kNN quoted at the end)

    @property
    def busy(self) -> bool:
        """True from Start until the worker has finished."""
        return self.state in ("starting", "training", "paused", "stopping")

    def set_state(self, state: str) -> None:
        assert state in self.STATES, state
        if state != self.state:
            self.state = state
            self.changed()

    def starting(self) -> None:
        self.state, self.last_eval = "starting", None
        self.changed()

    def started(self, folder: str, config=None, held_out=None, classes=None) -> None:
        """The run reported its folder, its config (a dict, kept as a Config) and its held-out images and class names."""
        self.folder, self.config, self.state = folder, _config(config), "training"
        self.held_out, self.classes, self.files, self.embedding = held_out, list(classes or []), None, None
        self.changed()

    def opened(self, folder: str, config=None) -> None:
        """A run folder opened to look at (not training): its held-out images come when they are loaded."""
        self.folder, self.config, self.state, self.last_eval = folder, config, "opened", None
        self.held_out, self.classes, self.files, self.embedding = None, [], None, None
        self.changed()

    def show_held_out(self, images, classes, files=None) -> None:
        self.held_out, self.classes, self.files = images, list(classes), files
        self.changed()


class LoadedData(_Part):
    """The (train, test) splits loaded for one ``DataConfig``, shared by the set-up, training and sweeps so that
    nothing loads a dataset twice."""

    topic = "data"

    def __init__(self, announce: Listener):
        super().__init__(announce)
        self.key = None  # the DataConfig the splits are for
        self.splits = None  # (train, test), or None while nothing is loaded
        self.loading = None  # the DataConfig being loaded, or None

    def start_loading(self, key) -> None:
        self.key, self.splits, self.loading = None, None, key
        self.changed()

    def loaded(self, key, splits) -> None:
        self.key, self.splits, self.loading = key, splits, None
        self.changed()

    def failed(self) -> None:
        """The load failed or was cancelled: nothing is loaded."""
        self.key, self.splits, self.loading = None, None, None
        self.changed()

    def holds(self, key) -> bool:
        return self.splits is not None and self.key == key

    def for_config(self, cfg):
        """The splits loaded for ``cfg.data``, or None while they are loading or differ."""
        return self.splits if self.holds(cfg.data) else None

    @property
    def train_size(self) -> int | None:
        return len(self.splits[0]) if self.splits is not None else None


@dataclass(frozen=True)
class Message:
    text: str
    kind: str = "info"
    at: str = field(default_factory=lambda: time.strftime("%H:%M:%S"))

    @property
    def line(self) -> str:
        """The line the messages window shows: "14:03:12  warning: loss is rising"."""
        return f"{self.at}  {self.kind}: {self.text}"


class Messages(_Part):
    """The status line and the session's log of notes, warnings and errors (the status shows only the latest, cut
    to fit; the log keeps them whole). ``run`` holds the texts logged since the current run started."""

    topic = "status"

    def __init__(self, announce: Listener):
        super().__init__(announce)
        self.status = Message("ready")
        self.log: list[Message] = []
        self.run: list[str] = []
        self._verdict = None  # the set-up's last (valid, message)

    def say(self, text: str, kind: str = "info") -> None:
        """Show ``text`` in the status line (a newer message replaces the shown one)."""
        assert kind in KINDS, kind
        self.status = Message(text, kind)
        self.changed()

    def verdict(self, ok: bool, message: str, quiet: bool = False) -> bool:
        """The set-up re-checked: says "ready" or why not only when the verdict is news (and not ``quiet``, e.g.
        while a run trains); True when the status changed."""
        old, self._verdict = self._verdict, (ok, message)
        if quiet or old == (ok, message):
            return False
        self.say("ready" if ok else f"set-up invalid: {message}")
        return True

    def add(self, kind: str, text: str) -> Message:
        """Keep a note, warning, error or data finding for the messages window (the status line is left alone)."""
        assert kind in KINDS, kind
        msg = Message(text, kind)
        self.run.append(text)
        self.log = (self.log + [msg])[-LOG_LIMIT:]
        self._announce("log", self)
        return msg

    def new_run(self) -> None:
        self.run = []

    @property
    def problems(self) -> int:
        return sum(m.kind != "note" for m in self.log)

    def text(self) -> str:
        return "\n".join(m.line for m in self.log) or "no messages yet"


BOXED_TIP = ("A run given in minutes counts training time: evaluations come on top (at most eval.max_share of it), "
             "so on the clock it takes longer. The bar fills with the training time; the ETA includes the evaluations.")
BOXED_RANGE = 1000  # the bar of a run a time budget ends counts thousandths of its budget


class ProgressBar(_Part):
    """The progress bar: ``value`` out of ``maximum`` (0 with ``maximum`` 0: busy, size unknown), its ``text`` and
    ``tip``; and the training run's place in it: ``step`` of ``total_steps`` (or of a time budget, ``boxed``), and
    whether an evaluation is under way (the bar then counts its work, and returns to the step after it)."""

    topic = "progress"

    def __init__(self, announce: Listener):
        super().__init__(announce)
        self.value, self.maximum, self.text, self.tip = 0, 1, "", ""
        self.step, self.total_steps, self.boxed, self.budget_s = 0, 1, False, 0.0
        self.evaluating = False
        self._at_step = (0, "")  # the bar's value and text at the last step, to return to after an evaluation

    def set(self, value: int | None = None, maximum: int | None = None, text: str | None = None,
            tip: str | None = None) -> None:
        """Change what is given; the value is kept within the range."""
        if maximum is not None:
            self.maximum = max(0, int(maximum))
        if value is not None:
            self.value = int(value)
        if text is not None:
            self.text = text
        if tip is not None:
            self.tip = tip
        self.value = min(max(self.value, 0), self.maximum)
        self.changed()

    def busy(self, text: str) -> None:
        """Busy, its size unknown (a run starting, a sweep)."""
        self.evaluating = False
        self.set(0, 0, text)

    # ----- a training run -----
    def steps_text(self) -> str:
        """"120/160", or "120" in a run a time budget ends (its step count is no measure of the end)."""
        return f"{self.step}" if self.boxed else f"{self.step}/{self.total_steps}"

    def _training_range(self) -> int:
        return BOXED_RANGE if self.boxed else self.total_steps

    def _at(self, value: int, text: str, tip: str | None = None) -> None:
        """The bar at a training step (kept, to return to after an evaluation)."""
        self.set(value, self._training_range(), text, tip)
        self._at_step = (self.value, self.text)

    def run_started(self, total_steps: int, start_step: int, budget_s: float) -> None:
        self.total_steps, self.step = max(1, total_steps), start_step
        self.budget_s, self.boxed, self.evaluating = budget_s, bool(budget_s), False
        self._at(0 if self.boxed else start_step, f"step {self.steps_text()}", BOXED_TIP if self.boxed else "")

    def stepped(self, ev, quiet: bool = False) -> None:
        """At StepEvent ``ev``; ``quiet`` (paused or stopping): the step without a rate or an ETA."""
        self.evaluating = False
        self.step = ev.step
        value = round(BOXED_RANGE * ev.progress) if self.boxed else ev.step
        if quiet:
            self._at(value, f"epoch {ev.epoch}  step {self.steps_text()}")
            return
        trained = f"trained {clock(ev.progress * self.budget_s)} of {clock(self.budget_s)}  " if self.boxed else ""
        self._at(value, f"epoch {ev.epoch}  step {self.steps_text()}  {ev.images_per_s:,.0f} img/s  "
                        f"{trained}ETA {clock(ev.eta_s)}")

    def evaluation(self, ev, stopping: bool = False) -> None:
        """An evaluation under way (EvalProgressEvent ``ev``): the bar counts its work (busy while its size is
        unknown); when ``stopping`` it says that the evaluation is being ended."""
        self.evaluating = True
        total = ev.total if ev.total > 0 else 0
        self.set(min(ev.done, ev.total) if total else 0, total, STOPPING_EVAL if stopping else ev.text)

    def end_evaluation(self) -> bool:
        """Back to the bar at the last step once an evaluation has ended; False when none was under way."""
        if not self.evaluating:
            return False
        self.evaluating = False
        self.set(self._at_step[0], self._training_range(), self._at_step[1])
        return True

    def stopping(self) -> None:
        if self.evaluating:
            self.set(text=STOPPING_EVAL)

    def run_done(self, ev) -> None:
        """The run ended (DoneEvent ``ev``): the bar at its checkpoint's step, full when its end was reached."""
        self.end_evaluation()
        if ev.reason == "already finished":  # a resumed run with nothing left to do: the bar leaves its busy state
            self.set(1, 1, ev.reason)
            return
        self.step = ev.step if ev.step >= 0 else self.step  # the checkpoint's step, not the last one logged
        value = self.value if self.boxed else self.step
        if ev.reason in ("finished", "budget"):  # its end reached: the last logged step may be a little before it
            value = self.maximum
        self.set(value, text=f"{'finished' if ev.reason == 'budget' else ev.reason}: step {self.steps_text()}")


STOPPING_EVAL = "stopping: ending the evaluation…"


class Session:
    """The window's state: ``run``, ``data``, ``messages``, ``progress``; ``listen(fn)`` hears every change."""

    def __init__(self):
        self._listeners: list[Listener] = []
        self.run = ShownRun(self._announce)
        self.data = LoadedData(self._announce)
        self.messages = Messages(self._announce)
        self.progress = ProgressBar(self._announce)

    def listen(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def _announce(self, topic: str, part) -> None:
        for fn in list(self._listeners):
            fn(topic, part)
