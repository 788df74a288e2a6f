"""The `workbench` command: the window by default, and every core action headless.

    workbench                                   open the window
    workbench train CONFIG.toml [--set k=v] [--out DIR] [--resume RUN_DIR]
    workbench embed RUN_DIR --split test --out emb.npz [--set data.root=...]
    workbench neighbours RUN_DIR --image FILE [-k 10]
    workbench export RUN_DIR --format onnx --out PATH
    workbench datasets | augmentations | losses | models
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path

import numpy as np

from workbench.core.registry import ConfigError


def _fmt_time(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


class Progress:
    """One-line progress bar on stderr: epoch, step, loss, images/s, ETA."""

    def __init__(self, total: int, stream=sys.stderr):
        self.total, self.stream, self.tty = total, stream, stream.isatty()
        self.last_print = 0.0

    def update(self, ev) -> None:
        frac = ev.step / max(1, self.total)
        bar = "#" * int(frac * 30)
        line = (f"epoch {ev.epoch + 1} step {ev.step}/{self.total} [{bar:<30}] loss {ev.loss:.4f} "
                f"lr {ev.lr:.2e} {ev.images_per_s:,.0f} img/s ETA {_fmt_time(ev.eta_s)}")
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r" + line)
            self.stream.flush()
        elif now - self.last_print > 5 or ev.step == self.total:
            self.stream.write(line + "\n")
            self.last_print = now

    def message(self, text: str) -> None:
        self.stream.write(("\n" if self.tty else "") + text + "\n")
        self.stream.flush()


def cmd_train(args) -> int:
    from workbench.core import distributed as ddp
    from workbench.core.config import Config
    from workbench.core.events import (CheckpointEvent, DoneEvent, ErrorEvent, EvalEvent, RunStarted, StepEvent,
                                       WarningEvent)
    from workbench.core.train import Control, train

    ddp.init_from_env()
    main = ddp.rank() == 0
    if args.resume:
        cfg = None
        if args.config or args.set:
            raise ConfigError("--resume continues a run with its own config.toml; drop CONFIG and --set")
    else:
        if not args.config:
            raise ConfigError("train: give a CONFIG.toml (see examples/) or --resume RUN_DIR")
        cfg = Config.load(args.config).with_overrides(args.set or [])
    control = Control()
    presses = []

    def on_sigint(signum, frame):
        presses.append(1)
        if len(presses) > 1:
            raise KeyboardInterrupt
        control.stop()

    signal.signal(signal.SIGINT, on_sigint)
    progress = None
    status = 0
    for ev in train(cfg, control, runs_root=args.out, resume=args.resume):
        if not main:
            if isinstance(ev, ErrorEvent):
                status = 1
            continue
        if isinstance(ev, RunStarted):
            progress = Progress(ev.total_steps)
            progress.message(f"run folder: {ev.run_dir}\n{ev.n_train} training / {ev.n_test} held-out images, "
                             f"{ev.steps_per_epoch} steps an epoch, device {ev.device}")
        elif isinstance(ev, StepEvent):
            progress.update(ev)
        elif isinstance(ev, EvalEvent):
            progress.message(f"epoch {ev.epoch} (step {ev.step}): " + ", ".join(f"{k} {v:.4f}" for k, v in ev.metrics.items()))
        elif isinstance(ev, WarningEvent):
            progress.message(f"warning: {ev.message}")
        elif isinstance(ev, CheckpointEvent) and args.verbose:
            progress.message(f"checkpoint: {ev.path}")
        elif isinstance(ev, ErrorEvent):
            progress.message(f"error: {ev.message}")
            status = 1
        elif isinstance(ev, DoneEvent):
            progress.message(f"{ev.reason}; checkpoint and metrics in {ev.run_dir}"
                             + (f"\nresume with: workbench train --resume {ev.run_dir}" if ev.reason != "finished" else ""))
    return status


def cmd_embed(args) -> int:
    from workbench.core.export import write_npz
    from workbench.core.inference import RunModel

    rm = RunModel.load(args.run_dir)
    train, test = rm.splits(args.set)
    data = train if args.split == "train" else test
    emb = rm.embed(data.images)
    write_npz(Path(args.out), embeddings=emb.astype(np.float32), labels=data.labels.numpy().astype(np.int64),
              indices=data.indices.numpy().astype(np.int64))
    print(f"wrote {len(emb)} embeddings of dimension {emb.shape[1]} to {args.out}")
    return 0


def cmd_neighbours(args) -> int:
    from workbench.core.inference import RunModel, load_image_file, neighbours

    rm = RunModel.load(args.run_dir)
    train, _ = rm.splits(args.set)
    q = rm.embed(load_image_file(args.image, rm.channels))
    idx, sim = neighbours(q, rm.embed(train.images), args.k)
    print(f"{'rank':>4} {'index':>7} {'similarity':>10}  label")
    for r, (i, s) in enumerate(zip(idx[0], sim[0]), 1):
        lab = int(train.labels[i])
        name = train.classes[lab] if 0 <= lab < len(train.classes) else "-"
        print(f"{r:>4} {int(train.indices[i]):>7} {s:>10.4f}  {name}")
    return 0


def cmd_export(args) -> int:
    from workbench.core.export import export_run

    paths = export_run(args.run_dir, args.format, args.out, include_head=args.include_head)
    for p in paths:
        print(f"wrote {p}")
    return 0


def cmd_list(args) -> int:
    from workbench.core.augment import AUGMENTS, PRESETS
    from workbench.core.data import DATASETS
    from workbench.core.losses import LOSSES
    from workbench.core.models import ENCODERS

    reg = {"datasets": DATASETS, "augmentations": AUGMENTS, "losses": LOSSES, "models": ENCODERS}[args.command]
    print(reg.describe())
    if args.command == "augmentations":
        print("\npresets: " + ", ".join(PRESETS))
    return 0


def cmd_gui(args) -> int:
    from workbench.gui.app import run

    return run(args.config)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="workbench", description="Contrastive Workbench: contrastive self-supervised learning you can see.")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command")
    g = sub.add_parser("gui", help="open the window (the default)")
    g.add_argument("config", nargs="?", help="a config TOML to load")
    t = sub.add_parser("train", help="train from a config file")
    t.add_argument("config", nargs="?")
    t.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config value (repeatable)")
    t.add_argument("--out", default="runs", help="folder that receives the run folder (default: runs)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run")
    t.add_argument("-v", "--verbose", action="store_true")
    e = sub.add_parser("embed", help="write embeddings of a dataset split as .npz")
    e.add_argument("run_dir")
    e.add_argument("--split", choices=["train", "test"], default="test")
    e.add_argument("--set", action="append", metavar="data.KEY=VALUE", help="embed another dataset (e.g. data.root=...)")
    e.add_argument("--out", required=True)
    n = sub.add_parser("neighbours", help="nearest training images of an image file")
    n.add_argument("run_dir")
    n.add_argument("--image", required=True)
    n.add_argument("-k", type=int, default=10)
    n.add_argument("--set", action="append", metavar="data.KEY=VALUE")
    x = sub.add_parser("export", help="export the trained encoder")
    x.add_argument("run_dir")
    x.add_argument("--format", choices=["safetensors", "torchscript", "onnx", "npz", "projector"], default="safetensors")
    x.add_argument("--out", required=True)
    x.add_argument("--include-head", action="store_true", help="include the projection head")
    for name in ("datasets", "augmentations", "losses", "models"):
        sub.add_parser(name, help=f"list the {name} and their parameters")
    return p


COMMANDS = {"train": cmd_train, "embed": cmd_embed, "neighbours": cmd_neighbours, "export": cmd_export,
            "datasets": cmd_list, "augmentations": cmd_list, "losses": cmd_list, "models": cmd_list, "gui": cmd_gui}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format="%(levelname)s: %(message)s")
    if args.command is None:
        args.command, args.config = "gui", None
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
