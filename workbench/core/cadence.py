"""When the training loop logs, shows the embedding, saves and evaluates, and the pace it reports.

The loop asks a ``Cadence`` at each step; it keeps what those answers need: the training time and step of the last
log line (images/s over training time only), the evaluations' cost (their share of the training time, the ETA, and
``eval.max_share``, which skips evaluations that would cost more) and when the next time-based checkpoint is due.

Times come from a clock: ``perf_counter()`` measures training and evaluations, ``monotonic()`` spaces the checkpoints
and ``time()`` stamps the metric rows. The ``time`` module is the real one; a test gives one that advances by known
amounts.
"""
from __future__ import annotations

import time
from typing import Protocol

from workbench.core import distributed as ddp
from workbench.core.timefmt import short


class Clock(Protocol):
    def perf_counter(self) -> float: ...

    def monotonic(self) -> float: ...

    def time(self) -> float: ...


class Cadence:
    """The cadence of one training session (a resumed run starts a new one) of a run of ``total_steps`` steps of
    ``global_batch`` images, as ``cfg.train`` and ``cfg.eval`` ask for it."""

    def __init__(self, cfg, total_steps: int, global_batch: int, clock: Clock = time):
        self.train, self.eval = cfg.train, cfg.eval
        self.total_steps, self.global_batch, self.clock = total_steps, global_batch, clock
        self.last_log = (0.0, 0)  # (training seconds, step) of the last log line
        self.trained_from, self.started_epoch = 0.0, 0  # where this session started: evaluations' share, the note
        self.eval_time = 0.0  # seconds evaluations have taken this session
        self.eval_cost = 0.0  # seconds the last evaluation took
        self.skip_noted = False  # the note that evaluations are being skipped is given once
        self.next_save = clock.monotonic() + 60 * min(1.0, self.train.checkpoint_minutes)  # the first after a minute at most

    def start(self, elapsed: float, step: int, epoch: int) -> None:
        """The session starts at ``elapsed`` training seconds, ``step`` and ``epoch`` (a resumed run's, from its
        checkpoint): images/s and the evaluations' share count from here."""
        self.last_log = (elapsed, step)
        self.trained_from, self.started_epoch = elapsed, epoch

    def log_due(self, step: int) -> bool:
        # step 1 too: the curve starts after one step instead of after train.log_every of them
        return step == 1 or step % self.train.log_every == 0 or step == self.total_steps

    def embed_due(self, step: int) -> bool:
        return bool(self.eval.embed_every_steps) and step % self.eval.embed_every_steps == 0

    def save_due(self) -> bool:
        return self.clock.monotonic() >= self.next_save

    def saved(self) -> None:
        """A checkpoint was written (or this step's was already): the next is train.checkpoint_minutes away."""
        self.next_save = self.clock.monotonic() + 60 * self.train.checkpoint_minutes

    def evaluated(self, seconds: float) -> None:
        """An evaluation took ``seconds`` (pauses left out)."""
        self.eval_cost = seconds
        self.eval_time += seconds

    def pace(self, step: int, elapsed: float) -> tuple[float, float]:
        """(images/s, ETA in seconds) at a log line, and the next lap starts. Images/s is over training time only
        (evaluations and checkpoints between two log lines do not count); ETA = training time left (the steps left
        at the recent pace, or what is left of the budget) plus the evaluations to come at the share they have
        taken so far, then the final one."""
        then_elapsed, then_step = self.last_log
        self.last_log = (elapsed, step)
        train_s = max(elapsed - then_elapsed, 1e-9)
        ips = (step - then_step) * self.global_batch / train_s
        left = (self.total_steps - step) * train_s / max(step - then_step, 1)
        if self.train.time_budget_s:  # the same clock as the run's progress: whichever ends the run first
            left = min(left, max(0.0, self.train.time_budget_s - elapsed))
        share = self.eval_time / max(elapsed - self.trained_from, 1e-9)
        share = min(share, self.eval.max_share) if self.eval.max_share < 1 else share  # 1: none skipped
        return ips, left * (1 + share) + self.eval_cost

    def evaluation_due(self, epoch: int, elapsed: float) -> bool:
        """Whether the epoch ``epoch`` just ended is evaluated (not counting the final evaluation, which always is)."""
        return epoch % self.eval.every == 0 and self.evaluation_affordable(elapsed)

    def evaluation_affordable(self, elapsed: float) -> bool:
        """Whether evaluations, this one included (costing as much as the last), stay within ``eval.max_share`` of
        the training time. The first of a session always runs."""
        share, spent = self.eval.max_share, self.eval_time + self.eval_cost
        return share >= 1 or not ddp.any_flag(spent > share * (elapsed - self.trained_from))  # all ranks alike

    def skip_note(self, epoch: int, elapsed: float) -> str:
        """Once a session, at an epoch whose evaluation was skipped: the note that says so ("" otherwise)."""
        if epoch % self.eval.every or self.skip_noted:
            return ""
        self.skip_noted = True
        trained = (elapsed - self.trained_from) / max(epoch - self.started_epoch, 1)
        every = "every epoch" if self.eval.every == 1 else f"every {self.eval.every} epochs"
        return (f"skipping some of the evaluations asked for ({every}): one takes {short(self.eval_cost)} "
                f"against {short(trained)} of training an epoch, and eval.max_share keeps evaluations under "
                f"{self.eval.max_share:.0%} of the training time (1 = every time); the final one always runs")
