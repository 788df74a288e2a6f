"""The training loop as a generator of events.

    control = Control()
    for event in train(cfg, control):   # RunStarted, StepEvent, EvalEvent, EmbeddingEvent, BatchEvent,
        ...                              # CheckpointEvent, PausedEvent, WarningEvent, DoneEvent, ErrorEvent

Set-up problems (bad data, a loss that needs labels on unlabeled data, a checkpoint that does
not fit its config, ...) raise ConfigError before the first event and before anything is
written; problems during training (non-finite loss, out of memory, a bug) end the stream with
an ErrorEvent carrying the full traceback, which run.log keeps too. ``control`` is checked
between steps and between evaluation batches: stop saves a checkpoint and ends with
DoneEvent("stopped"); pause blocks until resumed.

The loop (``train``) reads top to bottom; ``Training`` holds what moves (step, epoch, random stream,
files) and does one thing per method: ``train_step``, ``log``, ``evaluate``, ``checkpoint``. It asks its
``Cadence`` (core/cadence.py) when to log, embed, save and evaluate, times everything on an injected clock
and writes metric rows to its sinks (core/sinks.py); the set-up it runs is core/setup.py's.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from workbench.core import distributed as ddp
from workbench.core import metrics as M
from workbench.core import runfolder, runs
from workbench.core.augment import view_side
from workbench.core.cadence import Cadence, Clock
from workbench.core.config import Config
from workbench.core.control import Control
from workbench.core.data import ImageData
from workbench.core.evaluation import EVAL_VIEWS, Interrupted, autocast, embed, evaluation, held_out_count
from workbench.core.events import (BatchEvent, CheckpointEvent, DoneEvent, EmbeddingEvent, ErrorEvent, EvalEvent,
                                   EvalProgressEvent, PausedEvent, RunStarted, StepEvent, WarningEvent)
from workbench.core.inspector import batch_event
from workbench.core.losses import Views
from workbench.core.models import Readout
from workbench.core.optim import Schedule
from workbench.core.projection import StableProjector
from workbench.core.registry import ConfigError
from workbench.core.resume import check_resume, resume_notes, state_mismatch
from workbench.core.runlock import RunLock
from workbench.core.setup import Setup, data_changed, prepare, same_size_as_trained
from workbench.core.sinks import Sink

logger = logging.getLogger("workbench")


def make_views(s: Setup, images_u8: torch.Tensor, g: torch.Generator) -> list[torch.Tensor]:
    """The method's augmented views (two or more float batches) of a uint8 batch already on the device."""
    crops = s.method.views(images_u8, g)
    if s.cfg.train.channels_last:
        crops = [c.contiguous(memory_format=torch.channels_last) for c in crops]
    return crops


def forward_views(s: Setup, crops: list[torch.Tensor], labels: torch.Tensor, progress: float = 0.0) -> Views:
    with autocast(s):
        return s.method(s.model, crops, labels, progress)


class Guard:
    """Non-finite guard without a per-step host sync: each step records, on the device, the first step
    whose loss was not finite; ``check`` reads it (one sync) at log steps and, with the weights, before
    every evaluation and checkpoint, so a checkpoint never holds non-finite weights."""

    ADVICE = "lower optim.lr, raise loss.temperature or lengthen optim.warmup_epochs"

    def __init__(self, device: torch.device):
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)

    def record(self, loss: torch.Tensor, step: int) -> None:
        bad = ~torch.isfinite(loss.detach()) & (self.first_bad < 0)
        self.first_bad = torch.where(bad, step, self.first_bad)

    def check(self, run: Training, weights: bool = False) -> None:
        bad = int(self.first_bad)  # CPU-GPU sync point: only at log steps, evaluations and checkpoints
        what = f"the loss became non-finite at step {bad}" if bad >= 0 else ""
        if not what and weights:
            names = runs.nonfinite_tensors(run.s.net.state_dict())
            what = f"the weights became non-finite ({names[0]}) by step {run.step}" if names else ""
        if what:
            kept = f"the checkpoint of step {run.saved_step} is kept" if run.saved_step >= 0 else "no checkpoint was written"
            raise FloatingPointError(f"{what} (lr {run.lr:.3g}); training stopped and {kept}; {self.ADVICE}")


class Training:
    """One run's moving state: where it is (step, epoch, images into the epoch, training seconds), its
    random stream and its files. Methods advance it and return the events to yield."""

    def __init__(self, s: Setup, run_dir: Path, control: Control, clock: Clock = time, sinks: list[Sink] = ()):
        cfg = s.cfg
        self.s, self.cfg, self.dir, self.control, self.clock = s, cfg, run_dir, control, clock
        self.is_main = ddp.rank() == 0
        self.g = torch.Generator(device=s.device).manual_seed(cfg.train.seed * 1000 + ddp.rank())
        self.step, self.epoch, self.images_done, self.elapsed = 0, 0, 0, 0.0
        self.reason, self.final, self.evaluated_step, self.saved_step = "finished", {}, -1, -1
        self.guard = Guard(s.device)
        self.sinks = list(sinks)  # where metric rows go: metrics.csv and TensorBoard are added on the main process
        self.cadence = Cadence(cfg, s.total_steps, s.global_batch, clock)  # when to log, embed, save, evaluate
        self.projector = StableProjector("pca", cfg.train.seed)
        n_eval = held_out_count(s, final=False)  # the embedding view's points are in every evaluation's sample
        self.embed_idx = torch.randperm(n_eval, generator=torch.Generator().manual_seed(3))[: cfg.eval.embed_points].sort().values
        self.schedule = Schedule.of(cfg, s.steps_per_epoch, s.total_steps)  # warm-up in steps when time ends the run
        warning = self.schedule.warning
        self.notices = [WarningEvent(n, note=True) for n in s.notes] + ([WarningEvent(warning)] if warning else [])
        self.lr, self.logged_loss = cfg.optim.lr, float("nan")
        self.readout_noted = False  # the note that the read-out only centred is given once
        self.recorded = "running"  # the state status.json was last given
        self.finished_already = False  # a resumed run that had already reached its end
        self.lock: RunLock | None = None  # the run folder's owner lock (the main process's)

    @classmethod
    def start(cls, cfg: Config | None, control: Control, runs_root, resume, data, clock: Clock = time,
              sinks: list[Sink] = ()) -> Training:
        """Validate everything (config, data, checkpoint), then write the run folder's config.toml."""
        state = None
        if resume is not None:
            cfg, state = check_resume(resume)
        s = prepare(cfg, data=data)
        if state is not None:
            s = same_size_as_trained(s, state)
        cfg = s.cfg  # with augment.preset "auto" resolved: config.toml records what was used
        if resume is not None:
            run_dir = Path(resume)
            s.notes += resume_notes(state, cfg)
        else:
            run_dir = runfolder.new_run_dir(runs_root, cfg) if ddp.rank() == 0 else Path(runs_root) / "_rank"
            run_dir = Path(ddp.broadcast_object(str(run_dir)))
        lock = RunLock.acquire(run_dir) if ddp.rank() == 0 else None  # one owner: ConfigError when another has it
        try:
            run = cls(s, run_dir, control, clock, sinks)
            run.lock = lock
            if state is not None:
                run.restore(state)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        if lock is not None and lock.stale:  # said with the run's other notes (console and run.log)
            run.notices.append(WarningEvent(f"run folder: took over the lock of {lock.stale}, which is gone", note=True))
        if state is not None and run.progress() >= 1.0:  # nothing to do: leave every file as it is
            run.finished_already = True
            return run
        if run.is_main:
            if state is not None:
                runs.clean_orphans(run_dir)
                runs.truncate_metrics(run_dir, run.step)
            shape = f"{s.train.channels}x{s.train.size}x{s.train.size}: {len(s.train)} training, {len(s.test)} held-out images"
            if state is not None:
                run.notices += data_changed(runfolder.config_path(run_dir), shape)
            cfg.save(runfolder.config_path(run_dir), meta=runs.versions(cfg.train.seed) | {"world_size": ddp.world_size(), "data": shape})
            run.sinks[:0] = [runs.MetricsLog(run_dir, s.method.term_names)] + ([tensorboard_log(run_dir)] if cfg.eval.tensorboard else [])
        return run

    def restore(self, state: dict) -> None:
        s, advice = self.s, "restore config.toml as it was, or start a new run"
        try:
            s.net.load_state_dict(state["model"])
            s.method.load_checkpoint_state(state)
        except (RuntimeError, KeyError) as exc:  # named as check_resume names a model that does not fit
            diff = (state_mismatch(s.net.state_dict(), state["model"])
                    or (f"the loss's state: {state_mismatch(s.method.loss.state_dict(), state.get('loss') or {})}"
                        if isinstance(state.get("loss", {}), dict) else "") or str(exc).splitlines()[0])
            raise ConfigError(f"cannot resume '{self.dir}': the checkpoint does not fit config.toml ({diff}); {advice}") from None
        try:
            s.opt.load_state_dict(state["optim"])
        except ValueError as exc:
            raise ConfigError(f"checkpoint in '{self.dir}' does not match its config.toml's optimiser ({exc}); {advice}") from None
        self.step, self.epoch, self.images_done, self.elapsed = state["step"], state["epoch"], state["images_in_epoch"], state["elapsed"]
        self.saved_step = self.step
        if state.get("world_size", 1) == ddp.world_size() and "rng" in state:
            self.g.set_state(state["rng"].to(self.g.get_state().device) if s.device.type == "cpu" else state["rng"])

    def started(self, runlog: runfolder.RunLog | None = None) -> Iterator:
        """RunStarted, then any warning about the set-up (also in run.log, with what the loader said)."""
        s = self.s
        self.cadence.start(self.elapsed, self.step, self.epoch)  # a resumed run counts images/s and shares from here
        yield RunStarted(str(self.dir), self.cfg.to_dict(), len(s.train), len(s.test), s.steps_per_epoch, s.total_steps,
                         str(s.device), list(s.train.classes), self.step, s.test.images.cpu().numpy(),
                         s.test.source, s.test.indices.cpu().numpy())
        for note in s.loader_notes if runlog is not None else ():  # said on the console while loading: run.log only
            runlog.warning(f"data (when loaded): {note}")
        for notice in self.notices:  # logged at warning level, so run.log keeps it; notes marked as such
            logger.warning(notice.message, extra={"note": notice.note})
            yield notice

    # ----- where the run is -----
    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(indices (B,), uint8 images (B, C, H, W) and labels (B,) on the device) for the rest of the run,
        from where it stands. Each epoch is a fresh permutation seeded by (seed, epoch), so a resumed run
        replays the same order; this rank takes its slice of every global batch."""
        s, bs = self.s, self.cfg.train.batch_size
        labels = s.train.labels.to(s.device)  # label lookups stay on the device: no host sync per step
        while self.step < s.total_steps:
            perm = torch.randperm(len(s.train), generator=torch.Generator().manual_seed(self.cfg.train.seed * 7919 + self.epoch))
            perm_on_device = perm.to(s.device)
            first = self.images_done // s.global_batch * s.global_batch + ddp.rank() * bs
            starts = range(first, s.steps_per_epoch * s.global_batch, s.global_batch)
            images = s.train.batches((perm[lo: lo + bs] for lo in starts), s.device)
            for lo, x in zip(starts, images, strict=False):
                if self.step >= s.total_steps:
                    return
                yield perm[lo: lo + bs], x, labels[perm_on_device[lo: lo + bs]]

    def progress(self, ahead: int = 0) -> float:
        """Fraction of the run done (after ``ahead`` more steps): steps over total steps, or training seconds
        over train.time_budget_s when the budget is nearer its end. The lr schedule, the method's schedules
        and the ETA all follow it."""
        p = (self.step + ahead) / max(1, self.s.total_steps)
        budget = self.cfg.train.time_budget_s
        return min(1.0, max(p, self.elapsed / budget) if budget else p)

    def view_size(self, progress: float) -> int:
        """The side of this step's views (0: the recipe's own): see augment.view_side."""
        a = self.cfg.augment
        return view_side(a.start_size, a.full_size_at, self.s.aug.out_size(self.s.train.size), progress)

    def shown_epoch(self) -> int:
        """The epoch (1-based) the latest step belongs to: what events, metrics.csv and the user see."""
        return max(1, self.epoch + (1 if self.images_done else 0))

    def should_end(self) -> bool:
        """Stop asked for, or the time budget spent, on any rank: every rank ends at the same step."""
        spent = bool(self.cfg.train.time_budget_s) and self.elapsed >= self.cfg.train.time_budget_s
        if ddp.any_flag(self.control.stopped or spent):
            self.reason = "stopped" if self.control.stopped else "budget"
        return self.reason != "finished"

    def epoch_done(self) -> bool:
        return self.images_done >= self.s.steps_per_epoch * self.s.global_batch

    # ----- what the run does -----
    def train_step(self, x: torch.Tensor, labels: torch.Tensor, report: bool):
        """One optimiser step on a batch (a host sync only on the steps that are logged); returns (crops, LossOut)."""
        t0, s = self.clock.perf_counter(), self.s
        progress = self.progress()
        self.lr = self.cfg.optim.lr * self.schedule(self.step + 1, self.progress(ahead=1))
        for group in s.opt.param_groups:
            group["lr"] = self.lr
        s.aug.view_size = self.view_size(progress)
        crops = make_views(s, x, self.g)
        out = s.loss(forward_views(s, crops, labels, progress), report=report)
        s.opt.zero_grad(set_to_none=True)
        out.loss.backward()
        s.opt.step()
        s.method.after_step(s.net, progress)
        self.step += 1
        self.images_done += s.global_batch
        self.guard.record(out.loss, self.step)
        if self.cadence.log_due(self.step):  # CPU-GPU sync point, only every train.log_every steps; the wait is training time too
            self.logged_loss = out.loss.item()
        self.elapsed += self.clock.perf_counter() - t0
        return crops, out

    def log(self, out) -> StepEvent:
        """The StepEvent of this step (its pace: Cadence.pace), and its row to every sink."""
        self.guard.check(self)
        ips, eta = self.cadence.pace(self.step, self.elapsed)
        terms = {k: float(v) for k, v in out.terms.items()}
        epoch = self.shown_epoch()
        self.write(epoch=epoch, step=self.step, loss=self.logged_loss, lr=self.lr, images_per_s=ips, terms=terms)
        return StepEvent(epoch, self.step, self.logged_loss, self.lr, ips, eta, terms, self.progress())

    def write(self, terms: dict | None = None, **values) -> None:
        """One metric row to every sink (core/sinks.py): the time, then ``values``, then the loss's ``terms``."""
        row = {"time": round(self.clock.time(), 3), **values} | {f"term_{k}": v for k, v in (terms or {}).items()}
        for sink in self.sinks:
            sink.write(row)

    def pause(self) -> Iterator:
        yield PausedEvent(self.step, True)
        self.control.wait_while_paused()
        yield PausedEvent(self.step, False)

    def end_epoch(self) -> Iterator:
        """CheckpointEvent (yielded first: a failing evaluation loses nothing), then the evaluation's events."""
        self.epoch += 1
        self.images_done = 0
        done = self.step >= self.s.total_steps
        if self.epoch % self.cfg.train.checkpoint_every == 0 or done:
            yield from self.checkpoint()
        if done or self.cadence.evaluation_due(self.epoch, self.elapsed):
            yield from self.evaluate(final=done)  # the run's last: all the held-out images (eval.quick_size is for the others)
        elif note := self.cadence.skip_note(self.epoch, self.elapsed):
            logger.warning(note, extra={"note": True})  # run.log keeps it too
            yield WarningEvent(note, note=True)

    def evaluate(self, final: bool = False) -> Iterator:
        """EvalProgressEvents while it runs, then EvalEvent, EmbeddingEvent (and a collapse WarningEvent); nothing
        more when stopped meanwhile (during training by any stop, the final one by a quick stop), pausing between
        batches."""
        self.guard.check(self, weights=True)
        c = self.control

        paused = 0.0  # time paused during the evaluation is not its cost

        def interrupt() -> bool:
            nonlocal paused
            if final:
                return c.quick
            if c.paused:
                t = self.clock.perf_counter()
                c.hold()
                paused += self.clock.perf_counter() - t
            return c.stopped

        t0 = self.clock.perf_counter()
        steps = evaluation(self.s, interrupt, final=final)
        try:
            while True:
                try:
                    stage, done, total = next(steps)
                except StopIteration as end:
                    metrics, feats = end.value
                    break
                yield EvalProgressEvent(self.step, stage, done, total, final)
        except Interrupted:
            return
        self.cadence.evaluated(self.clock.perf_counter() - t0 - paused)
        yield from self.evaluated(metrics, feats)

    def evaluated(self, metrics: dict, feats: torch.Tensor) -> Iterator:
        """What follows a finished evaluation: the row in metrics.csv, the events, the collapse warning."""
        self.save_readout()
        self.final, self.evaluated_step = metrics, self.step
        self.write(epoch=self.shown_epoch(), step=self.step, **metrics)
        yield EvalEvent(self.shown_epoch(), self.step, metrics)
        view = self.embedding(feats[self.embed_idx.to(feats.device)])
        yield view
        if self.sinks:  # e.g. TensorBoard's projector, as the window's embedding view
            images = self.s.test.images[self.embed_idx.to(self.s.test.images.device)].cpu().numpy()
            for sink in self.sinks:
                sink.embedding(self.step, view.embeddings, view.labels, images, self.s.test.classes)
        head = self.cfg.model.head_out if self.cfg.model.head_layers else self.s.net.encoder.out_dim
        warning = M.collapse_warning(metrics["emb_std"], metrics["eff_rank"], head, min(metrics["eval_queries"], EVAL_VIEWS))
        yield from self.readout_note()
        if warning:
            yield WarningEvent(warning)

    def readout_note(self) -> list[WarningEvent]:
        """Once a run: a note when the read-out asked for could only centre the representations."""
        if self.cfg.eval.readout != "whitened" or self.s.readout != "centred" or self.readout_noted:
            return []
        self.readout_noted = True
        d = self.s.net.encoder.out_dim
        why = (f"representations {d} wide (whitening is fitted up to {Readout.MAX_WHITEN})" if d > Readout.MAX_WHITEN
               else "representations that barely vary (degenerate)")
        return [WarningEvent(f"read-out: {why} are centred, not whitened; 'kNN, read-out' reads them centred", note=True)]

    def embedding(self, feats: torch.Tensor | None = None) -> EmbeddingEvent:
        """The live 2-D view of the held-out backbone features (randomised PCA: milliseconds, no full SVD)."""
        if feats is None:
            feats = embed(self.s, self.s.test.images[self.embed_idx], raw=True)
        src = feats.cpu().numpy().astype(np.float32)
        if not np.isfinite(src).all():
            self.nonfinite_features(src)
        labels = self.s.test.labels[self.embed_idx].numpy()
        return EmbeddingEvent(self.shown_epoch(), self.step, self.projector(src), src, labels, self.embed_idx.numpy())

    def nonfinite_features(self, src: np.ndarray) -> None:
        """Say (run.log and the console) why the embedding holds NaN/inf although the guard found the weights finite."""
        bad = int((~np.isfinite(src)).any(1).sum())
        x = self.s.aug.plain(self.s.test.images[self.embed_idx[:64].to(self.s.test.images.device)].to(self.s.device))
        cause = ("the normalised inputs are not finite (check the data's mean/std)" if not torch.isfinite(x).all()
                 else f"the encoder overflows on these {x.shape[-1]}x{x.shape[-1]} inputs (very small or very large images; "
                      "set data.image_size, or lower optim.lr)")
        logger.warning("embedding at step %d: %d of %d points are not finite although the weights are: %s; "
                       "they are drawn at the origin", self.step, bad, len(src), cause)

    def checkpoint(self) -> list:
        """Save last.pt (previous one kept as prev.pt) unless this step is saved already; [CheckpointEvent]."""
        self.cadence.saved()
        if self.saved_step == self.step:
            return []
        self.guard.check(self, weights=True)
        self.saved_step = self.step
        if not self.is_main:
            return []
        path = runfolder.checkpoint_path(self.dir)
        runs.save_checkpoint(path, self.state())
        return [CheckpointEvent(str(path), self.shown_epoch(), self.step)]

    def state(self) -> dict:
        s = self.s
        return {"model": s.net.state_dict(), **s.method.checkpoint_state(), "optim": s.opt.state_dict(),
                "step": self.step, "epoch": self.epoch, "images_in_epoch": self.images_done, "elapsed": self.elapsed,
                "progress": self.progress(), "rng": self.g.get_state(), "world_size": ddp.world_size(),
                "mean": s.aug.mean, "std": s.aug.std, "channels": s.train.channels,
                "image_size": s.aug.out_size(s.train.size), "config": self.cfg.to_dict()}

    def save_readout(self) -> None:
        """After an evaluation, which fitted the read-out its kNN read: this step's last.pt, written before the
        evaluation, is rewritten in place with it (prev.pt stays the checkpoint before), so what is saved and
        exported reads representations as the kNN did. Training never sees the read-out."""
        path = runfolder.checkpoint_path(self.dir)
        if not self.is_main or self.saved_step != self.step or not path.is_file():
            return
        try:
            runs.save_checkpoint(path, self.state(), keep_prev=False)
        except OSError as exc:  # last.pt still holds this step, with the read-out before
            logger.warning("could not rewrite %s with the read-out this evaluation fitted (%s); it keeps the one before",
                           path, exc)

    def finish(self) -> Iterator:
        """The checkpoint first (a failing final evaluation cannot lose the run), the final evaluation, DoneEvent."""
        stopped_early = self.reason == "stopped" and (self.step == 0 or self.control.quick)
        yield from self.checkpoint()
        if self.evaluated_step != self.step and not stopped_early:
            yield from self.evaluate(final=True)
        self.record(self.reason)
        yield DoneEvent(self.reason, str(self.dir), self.final, step=self.step)

    def record(self, state: str, message: str = "") -> None:
        """The run's state in status.json, for the runs table (whichever client trains: CLI, Python, window)."""
        self.recorded = state
        if self.is_main:
            with contextlib.suppress(OSError):
                runfolder.write_status(self.dir, state, self.step, message)

    def done_already(self) -> DoneEvent:
        """The DoneEvent of a resumed run that had already finished; it says how to train longer."""
        config = runfolder.config_path(self.dir)
        until = (f"its time budget ({self.cfg.train.time_budget_s:g} s)" if self.step < self.s.total_steps
                 else f"train.epochs = {self.cfg.train.epochs}" + (f", train.max_steps = {self.cfg.train.max_steps}"
                                                                   if self.cfg.train.max_steps else ""))
        text = (f"run '{self.dir}' already finished at step {self.step} ({until}); nothing was changed. To train longer, "
                f"raise train.epochs (or train.max_steps / train.time_budget_s) in {config}, then: workbench train --resume {self.dir}")
        return DoneEvent("already finished", str(self.dir), {}, text)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        if self.lock is not None:
            self.lock.release()

    def abandon(self) -> None:
        """The consumer stopped reading events (broke out of the loop, closed the generator): save as a stop does and
        record the run as stopped at its step, so status.json never says "running" for a run nobody trains."""
        if self.recorded != "running":  # it had ended (DoneEvent, ErrorEvent) already
            return
        if self.epoch_done():  # left after an epoch's last step, before its end: the checkpoint is of the next epoch
            self.epoch, self.images_done = self.epoch + 1, 0
        if self.step > 0 and self.saved_step != self.step:
            with contextlib.suppress(Exception):  # a failure here must not mask the close
                self.checkpoint()
        self.record("stopped", "the program reading its events stopped reading them")

    def batch_event(self, idx, crops, labels, out) -> BatchEvent:
        return batch_event(self.step, self.s.aug, crops[0], crops[1], idx, labels, out, self.cfg.loss.name,
                           self.cfg.loss.params.get("temperature"))


def tensorboard_log(run_dir: Path):
    """The TensorBoard mirror of metrics.csv (grouped tags, hparams and projector embeddings: core/tensorboard.py)."""
    from workbench.core.tensorboard import TensorBoardLog

    return TensorBoardLog(run_dir)


def train(cfg: Config | None, control: Control | None = None, runs_root: str | Path = "runs",
          resume: str | Path | None = None, data: tuple[ImageData, ImageData] | None = None,
          raise_errors: bool = False, clock: Clock = time, sinks: list[Sink] = ()) -> Iterator:
    """Run (or resume) an experiment, yielding events; see the module docstring.

    ``resume``: the run folder to continue, with its own config.toml (``cfg`` is not used then). ``data = (train,
    test)`` already loaded skips loading; ``raise_errors`` re-raises a failure during
    training (after run.log has it) instead of yielding ErrorEvent. ``clock`` times training, evaluations and
    checkpoints (core/cadence.py; the ``time`` module); ``sinks`` receive every metric row metrics.csv receives
    (core/sinks.py) and are closed when the run ends.
    """
    control = control or Control()
    run = Training.start(cfg, control, runs_root, resume, data, clock, sinks)
    if run.finished_already:
        run.close()
        yield run.done_already()
    else:
        yield from _events(run, control, raise_errors)


def _events(run: Training, control: Control, raise_errors: bool) -> Iterator:
    """The loop of ``train``: the events of a started run, failures turned into ErrorEvent (or re-raised)."""
    with runfolder.RunLog(run.dir) if run.is_main else contextlib.nullcontext() as runlog, contextlib.closing(run):
        yield from run.started(runlog)
        run.record("running")
        try:
            yield from _steps(run, control)
            yield from run.finish()
        except GeneratorExit:
            run.abandon()
            raise
        except Exception as exc:  # every failure: one line for the user, the traceback in run.log and the event
            error = ErrorEvent.from_exception(exc, str(run.dir))
            run.record("failed", error.message)
            if raise_errors:
                raise  # RunLog records it on the way out
            if runlog is not None:
                runlog.exception(exc)
            yield error


def _steps(run: Training, control: Control) -> Iterator:
    """The training steps of ``_events``, until the run's end or a stop, with the events they give."""
    for idx, x, labels in run.batches():
        if control.paused:
            yield from run.pause()
        if run.should_end():  # stop asked for (on any rank), or the time budget spent
            break
        report = control.take_batch_request()
        crops, out = run.train_step(x, labels, report)
        if report:
            yield run.batch_event(idx, crops, labels, out)
        if run.cadence.log_due(run.step):
            yield run.log(out)
        if run.cadence.embed_due(run.step):
            yield run.embedding()
        if run.epoch_done():
            yield from run.end_epoch()
        elif run.cadence.save_due():
            yield from run.checkpoint()
