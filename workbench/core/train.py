"""The training loop as a generator of events.

    control = Control()
    for event in train(cfg, control):   # RunStarted, StepEvent, EvalEvent, EmbeddingEvent, BatchEvent,
        ...                              # CheckpointEvent, PausedEvent, WarningEvent, DoneEvent, ErrorEvent

Set-up problems (bad data, a loss that needs labels on unlabeled data, ...) raise ConfigError
before the first event; problems during training (NaN loss, out of memory) end the stream
with an ErrorEvent. ``control`` is checked between steps: stop saves a checkpoint and ends
with DoneEvent("stopped"); pause blocks between steps until resumed.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from workbench.core import distributed as ddp
from workbench.core import metrics as M
from workbench.core.augment import Augmenter
from workbench.core.config import Config
from workbench.core.data import ImageData, load_splits
from workbench.core.events import (BatchEvent, CheckpointEvent, DoneEvent, EmbeddingEvent, ErrorEvent, EvalEvent,
                                   PausedEvent, RunStarted, StepEvent, WarningEvent)
from workbench.core.losses import LOSSES, Views
from workbench.core.models import Network, build_network, momentum_update
from workbench.core.optim import build_optimizer, lr_factor
from workbench.core.projection import StableProjector
from workbench.core.registry import ConfigError
from workbench.core.runs import MetricsLog, load_checkpoint, new_run_dir, save_checkpoint, versions


log = logging.getLogger("workbench")


class Control:
    """Thread-safe stop / pause / inspect flags shared between a consumer and the loop."""

    def __init__(self):
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._batch = threading.Event()

    def stop(self):
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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("train.device: CUDA was asked for but no GPU is available; use device = \"auto\" or \"cpu\"")
    return torch.device(name)


@dataclass
class Setup:
    cfg: Config
    device: torch.device
    train: ImageData
    test: ImageData
    aug: Augmenter
    net: Network
    model: torch.nn.Module  # net, possibly DDP-wrapped or compiled
    target: Network | None
    loss: torch.nn.Module
    opt: torch.optim.Optimizer
    meta: dict
    steps_per_epoch: int
    total_steps: int
    global_batch: int


def prepare(cfg: Config, device: torch.device | None = None, data: tuple[ImageData, ImageData] | None = None) -> Setup:
    """Build data, model, loss and optimiser; raise ConfigError for anything that cannot work.

    ``data = (train, test)`` already loaded (e.g. by the window) skips loading.
    """
    device = ddp.local_device(device or resolve_device(cfg.train.device))
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # denormal floats appear as training settles and slow CPU kernels by ~25%
    torch.manual_seed(cfg.train.seed)
    train_data, test_data = data if data is not None else load_splits(cfg.data)
    meta = LOSSES.get(cfg.loss.name).meta
    if meta.get("labels") and not train_data.has_labels:
        raise ConfigError(f"loss '{cfg.loss.name}' needs labels, but dataset '{cfg.data.name}' has none (no class sub-folders); choose a self-supervised loss such as ntxent")
    world = ddp.world_size()
    global_batch = cfg.train.batch_size * world
    if global_batch > len(train_data):
        raise ConfigError(f"train.batch_size: {global_batch} (x{world} processes) is larger than the {len(train_data)} training images; lower it")
    queue = cfg.loss.params.get("queue_size", 0)
    if queue and queue > len(train_data):
        raise ConfigError(f"loss.queue_size: {queue} is larger than the {len(train_data)} training images; lower it (e.g. {len(train_data) // 2})")
    mean, std = train_data.mean_std()
    aug = Augmenter(cfg.augment.recipe, mean, std)
    if cfg.data.in_memory:
        train_data = train_data.to(device)
    net = build_network(cfg, train_data.channels, aug.out_size(train_data.size), meta).to(device)
    if cfg.model.sync_bn and world > 1:
        if device.type == "cuda":
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
        else:
            log.warning("model.sync_bn needs GPUs (NCCL); on the CPU each process keeps its own BatchNorm statistics")
    if cfg.train.channels_last:
        net = net.to(memory_format=torch.channels_last)
    target = None
    if meta.get("momentum"):
        target = copy.deepcopy(net).requires_grad_(False)
    loss = LOSSES.build(cfg.loss.name, cfg.loss.params).to(device)
    if hasattr(loss, "setup"):
        loss.setup(net=net, device=device)
    params = torch.nn.ModuleList([net, loss])
    opt = build_optimizer(params, cfg.optim)
    model = ddp.wrap(net, device)
    if cfg.train.compile:
        model = torch.compile(model)
    spe = len(train_data) // global_batch
    total = cfg.train.epochs * spe
    if cfg.train.max_steps:
        total = min(total, cfg.train.max_steps)
    return Setup(cfg, device, train_data, test_data, aug, net, model, target, loss, opt, meta, spe, total, global_batch)


def autocast(s: Setup):
    if s.device.type == "cuda" and s.cfg.train.bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_views(s: Setup, idx: torch.Tensor, g: torch.Generator):
    x = s.train.images[idx.to(s.train.images.device)].to(s.device, non_blocking=True)
    v1, v2 = s.aug.views(x, g), s.aug.views(x, g)
    if s.cfg.train.channels_last:
        v1, v2 = v1.contiguous(memory_format=torch.channels_last), v2.contiguous(memory_format=torch.channels_last)
    return v1, v2


def forward_views(s: Setup, v1, v2, labels) -> Views:
    n = len(v1)
    with autocast(s):
        _, z, p = s.model(torch.cat([v1, v2]))
        p = p if s.meta.get("predictor") else None
        t = None
        if s.target is not None:
            with torch.no_grad():
                t = s.target(torch.cat([v1, v2]))[1].float()
    return Views(z[:n], z[n:], p[:n] if p is not None else None, p[n:] if p is not None else None,
                 t[:n] if t is not None else None, t[n:] if t is not None else None,
                 labels=labels, gather=ddp.gather_with_grad if ddp.world_size() > 1 else None, rank=ddp.rank())


@torch.no_grad()
def embed(s: Setup, images: torch.Tensor, batch: int = 1024, project: bool = False) -> torch.Tensor:
    """Representations (N, D) (or projections with ``project``) of un-augmented images, on the device."""
    was = s.net.training
    s.net.eval()
    out = None
    size = s.aug.out_size(images.shape[-1])
    for i in range(0, len(images), batch):
        x = s.aug.plain(images[i:i + batch].to(s.device))
        if x.shape[-1] != size:
            x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        with autocast(s):
            h, z, _ = s.net(x)
        y = z if project else h
        if out is None:
            out = torch.empty(len(images), y.shape[1], device=s.device)
        out[i:i + len(y)] = y
    s.net.train(was)
    return out


def evaluate(s: Setup) -> tuple[dict, torch.Tensor]:
    """kNN accuracy (+ linear probe), alignment, uniformity, std and effective rank on the held-out split.

    Uses its own fixed-seed generator so evaluating never changes the training's random stream.
    """
    g = torch.Generator(device=s.device).manual_seed(12345)
    e = s.cfg.eval
    bank_idx = torch.arange(len(s.train))
    if e.bank_size and e.bank_size < len(s.train):
        bank_idx = torch.randperm(len(s.train), generator=torch.Generator().manual_seed(2))[: e.bank_size]
    test = s.test if not e.test_size or e.test_size >= len(s.test) else s.test.take(torch.arange(e.test_size))
    bank = embed(s, s.train.images[bank_idx.to(s.train.images.device)])
    bank_labels = s.train.labels[bank_idx.to(s.train.labels.device)].to(s.device)
    feats = embed(s, test.images)
    test_labels = test.labels.to(s.device)
    out = {"knn_acc": M.knn_accuracy(bank, bank_labels, feats, test_labels, e.knn_k, e.knn_temperature)}
    if e.linear_probe:
        out["linear_acc"] = M.linear_probe(bank, bank_labels, feats, test_labels, epochs=e.linear_probe_epochs, seed=s.cfg.train.seed)
    was = s.net.training
    s.net.eval()
    with torch.no_grad():
        x = test.images[:1024].to(s.device)
        v1, v2 = s.aug.views(x, g), s.aug.views(x, g)
        with autocast(s):
            z1, z2 = s.net(v1)[1].float(), s.net(v2)[1].float()
    s.net.train(was)
    out["alignment"] = M.alignment(z1, z2)
    out["uniformity"] = M.uniformity(z1)
    out["emb_std"] = M.embedding_std(z1)
    out["eff_rank"] = M.effective_rank(z1)
    return out, feats


def train(cfg: Config, control: Control | None = None, runs_root: str | Path = "runs",
          resume: str | Path | None = None, data: tuple[ImageData, ImageData] | None = None) -> Iterator:
    """Run (or resume) an experiment, yielding events; see the module docstring."""
    control = control or Control()
    state = None
    if resume is not None:
        run_dir = Path(resume)
        cfg = Config.load(run_dir / "config.toml")
        state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    s = prepare(cfg, data=data)
    is_main = ddp.rank() == 0
    if resume is None:
        run_dir = new_run_dir(runs_root, cfg) if is_main else Path(runs_root) / "_rank"
        run_dir = Path(ddp.broadcast_object(str(run_dir)))
    if is_main:
        cfg.save(run_dir / "config.toml", meta=versions(cfg.train.seed) | {"world_size": ddp.world_size()})
    g = torch.Generator(device=s.device).manual_seed(cfg.train.seed * 1000 + ddp.rank())
    step, images_done, elapsed, best = 0, 0, 0.0, {}
    if state is not None:
        try:
            s.net.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise ConfigError(f"checkpoint in '{run_dir}' does not match its config.toml ({str(exc).splitlines()[0]}); "
                              "it was written by another version of the workbench: start a new run") from None
        s.loss.load_state_dict(state["loss"])
        if s.target is not None and "target" in state:
            s.target.load_state_dict(state["target"])
        try:
            s.opt.load_state_dict(state["optim"])
        except ValueError as exc:
            raise ConfigError(f"checkpoint does not match this config's optimiser ({exc})") from None
        step, images_done, elapsed = state["step"], state["images_in_epoch"], state["elapsed"]
        if state.get("world_size", 1) == ddp.world_size() and "rng" in state:
            g.set_state(state["rng"].to(g.get_state().device) if s.device.type == "cpu" else state["rng"])
    epoch = step // max(1, s.steps_per_epoch) if state is None else state["epoch"]
    log = MetricsLog(run_dir / "metrics.csv", getattr(s.loss, "term_names", ()), cfg.eval.tensorboard) if is_main else None
    projector = StableProjector("pca", cfg.train.seed)
    n_eval = min(cfg.eval.test_size or len(s.test), len(s.test))
    embed_idx = torch.randperm(n_eval, generator=torch.Generator().manual_seed(3))[: cfg.eval.embed_points].sort().values
    warmup = int(round(cfg.optim.warmup_epochs * s.steps_per_epoch))
    yield RunStarted(str(run_dir), cfg.to_dict(), len(s.train), len(s.test), s.steps_per_epoch, s.total_steps,
                     str(s.device), list(s.train.classes), step, s.test.images.cpu().numpy())

    def checkpoint():
        nonlocal last_ckpt
        if is_main and last_ckpt != step:
            last_ckpt = step
            path = run_dir / "checkpoints" / "last.pt"
            st = {"model": s.net.state_dict(), "loss": s.loss.state_dict(), "optim": s.opt.state_dict(),
                  "step": step, "epoch": epoch, "images_in_epoch": images_done, "elapsed": elapsed,
                  "rng": g.get_state(), "world_size": ddp.world_size(), "mean": s.aug.mean, "std": s.aug.std,
                  "channels": s.train.channels, "image_size": s.aug.out_size(s.train.size)}
            if s.target is not None:
                st["target"] = s.target.state_dict()
            save_checkpoint(path, st)
            return CheckpointEvent(str(path), epoch, step)
        return None

    def run_eval():
        metrics, feats = evaluate(s)
        xy_src = feats[embed_idx.to(feats.device)].cpu().numpy()
        xy = projector(xy_src)
        if log:
            log.write(epoch=epoch, step=step, **{k: v for k, v in metrics.items()})
        events = [EvalEvent(epoch, step, metrics),
                  EmbeddingEvent(epoch, step, xy, xy_src.astype(np.float32), s.test.labels[embed_idx].numpy(), embed_idx.numpy())]
        warn = M.collapse_warning(metrics["emb_std"], metrics["eff_rank"], cfg.model.head_out if cfg.model.head_layers else s.net.encoder.out_dim)
        if warn:
            events.append(WarningEvent(warn))
        return metrics, events

    reason = "finished"
    t_last, n_last, n_last_step = time.perf_counter(), 0, step
    last_ckpt = -1
    try:
        s.net.train()
        while step < s.total_steps:
            perm = torch.randperm(len(s.train), generator=torch.Generator().manual_seed(cfg.train.seed * 7919 + epoch))
            start = images_done // s.global_batch
            for i in range(start, s.steps_per_epoch):
                if ddp.any_flag(control.stopped):
                    reason = "stopped"
                    break
                if control.paused:
                    yield PausedEvent(step, True)
                    control.wait_while_paused()
                    t_last, n_last_step = time.perf_counter(), step
                    yield PausedEvent(step, False)
                    if control.stopped:
                        reason = "stopped"
                        break
                if step >= s.total_steps or (cfg.train.time_budget_s and elapsed >= cfg.train.time_budget_s):
                    reason = "budget" if step < s.total_steps else reason
                    break
                t0 = time.perf_counter()
                lo = i * s.global_batch + ddp.rank() * cfg.train.batch_size
                idx = perm[lo: lo + cfg.train.batch_size]
                v1, v2 = make_views(s, idx, g)
                labels = s.train.labels[idx.to(s.train.labels.device)].to(s.device)
                report = control.take_batch_request()
                for grp in s.opt.param_groups:
                    grp["lr"] = cfg.optim.lr * lr_factor(step, s.total_steps, warmup, cfg.optim.schedule, cfg.optim.min_lr_ratio)
                views = forward_views(s, v1, v2, labels)
                out = s.loss(views, report=report)
                s.opt.zero_grad(set_to_none=True)
                out.loss.backward()
                s.opt.step()
                if s.target is not None:
                    m = s.loss.momentum_at(step, s.total_steps) if hasattr(s.loss, "momentum_at") else cfg.loss.params.get("momentum", 0.99)
                    momentum_update(s.net, s.target, m)
                step += 1
                images_done = (i + 1) * s.global_batch
                if report:
                    yield batch_event(s, step, idx, v1, v2, labels, out)
                if step % cfg.train.log_every == 0 or step == s.total_steps:
                    loss_val = out.loss.item()
                    if not math.isfinite(loss_val):
                        raise FloatingPointError(f"the loss became {loss_val} at step {step}; lower optim.lr or raise the temperature (the last checkpoint is kept)")
                    now = time.perf_counter()
                    n_last = step - n_last_step
                    n_last_step = step
                    ips = n_last * s.global_batch / max(now - t_last, 1e-9)
                    t_last = now
                    eta = (s.total_steps - step) * s.global_batch / ips
                    term_vals = {k: float(v) for k, v in out.terms.items()}
                    lr = s.opt.param_groups[0]["lr"]
                    if log:
                        log.write(epoch=epoch, step=step, loss=loss_val, lr=lr, images_per_s=ips, terms=term_vals)
                    yield StepEvent(epoch, step, loss_val, lr, ips, eta, term_vals)
                elapsed += time.perf_counter() - t0
                if cfg.eval.embed_every_steps and step % cfg.eval.embed_every_steps == 0:
                    feats = embed(s, s.test.images[embed_idx])
                    src = feats.cpu().numpy()
                    yield EmbeddingEvent(epoch, step, projector(src), src, s.test.labels[embed_idx].numpy(), embed_idx.numpy())
            else:
                epoch += 1
                images_done = 0
                if epoch % cfg.eval.every == 0 or step >= s.total_steps:
                    best, events = run_eval()
                    yield from events
                if epoch % cfg.train.checkpoint_every == 0 or step >= s.total_steps:
                    ev = checkpoint()
                    if ev:
                        yield ev
                continue
            break
        if reason != "finished" or not best:
            if reason != "stopped" or step > 0:
                best, events = run_eval()
                yield from events
        ev = checkpoint()
        if ev:
            yield ev
        yield DoneEvent(reason, str(run_dir), best)
    except (FloatingPointError, torch.OutOfMemoryError, RuntimeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, torch.OutOfMemoryError):
            msg = "out of GPU memory; lower train.batch_size or use a smaller encoder"
        yield ErrorEvent(msg, str(run_dir))
    finally:
        if log:
            log.close()


def batch_event(s: Setup, step: int, idx, v1, v2, labels, out) -> BatchEvent:
    def np_or_none(t):
        return None if t is None else t.detach().float().cpu().numpy() if t.is_floating_point() else t.detach().cpu().numpy()

    temp = out.terms.get("temperature")
    return BatchEvent(step, s.aug.to_uint8(v1), s.aug.to_uint8(v2), idx.cpu().numpy(), labels.cpu().numpy(),
                      np_or_none(out.similarity), np_or_none(out.per_sample), np_or_none(out.positive),
                      np_or_none(out.hardest_negative), float(temp) if temp is not None else None, s.cfg.loss.name,
                      {k: np_or_none(v) for k, v in out.mined.items() if k in ("pairs", "triplets")})
