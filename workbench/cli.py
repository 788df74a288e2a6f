"""The `workbench` command: the window by default, and every core action headless.

    workbench                                   open the window
    workbench train CONFIG.toml [--set k=v] [--out DIR] [--resume RUN_DIR]
    workbench sweep CONFIG.toml [--set k=v] [--out DIR] [--parallel N] [--yes]
    workbench embed RUN_DIR --split test --out emb.npz|- [--set data.root=...] [--force]
    workbench neighbours RUN_DIR --image FILE [-k 10] [--out table.csv] [--force]
    workbench export RUN_DIR --format onnx [--out DIR] [--force]
    workbench explain RUN_DIR A.png B.png --out pair.png [--lines 5] [--deletion] [--force]
    workbench check RUN_DIR [--split train|test|both] [--out DIR] [-k 10] [--subset N]
    workbench datasets | augmentations | losses | methods | models
    workbench install-shortcut | uninstall-shortcut     the current user's menu entry for the window
    workbench --version

Every problem ends as one line on stderr (``error: ...``) naming what is wrong and what to do;
exit 2 for bad input, 1 for a failure, 130 after Ctrl-C. Full tracebacks go to the run's
``run.log`` (or a log file the line names); ``-v`` also prints them.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from workbench import __version__
from workbench.core.formats import FORMATS
from workbench.core.registry import ConfigError
from workbench.core.timefmt import clock

log = logging.getLogger("workbench")


class UsageError(Exception):
    """A command-line mistake argparse found (unknown option, missing argument, bad -k)."""


class OutputError(Exception):
    """Standard output failed (closed, or its reader went away): the output's failure, not the run's (exit 1, nothing
    written to the run's run.log)."""


def write_stdout(data: bytes) -> None:
    """All of ``data`` on standard output, or OutputError saying how much of it its reader took."""
    if sys.stdout is None or getattr(sys.stdout, "closed", False):
        raise OutputError("standard output is closed; give a file with --out FILE")
    try:
        fd = sys.stdout.fileno()
        sys.stdout.flush()
    except (OSError, ValueError):  # not a file (a test's capture, a notebook's stream): its own buffer
        fd = None
    view, done = memoryview(data), 0
    try:
        while done < len(view):  # a pipe takes what fits; a write can end short of the whole
            done += os.write(fd, view[done:]) if fd is not None else (sys.stdout.buffer.write(view[done:]) or len(view) - done)
        if fd is None:
            sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        raise OutputError(f"the reader of standard output closed it after {done:,} of {len(data):,} bytes; "
                          "the output is incomplete") from None


def _silence_stdout() -> None:
    """Point standard output at /dev/null so that Python's flush at exit does not fail a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass


class TerminalProgress:
    """One-line progress bar on stderr: on a terminal redrawn in place, otherwise a line every 5 s."""

    def __init__(self, total: int, stream=None):
        self.total, self.stream, self.boxed = total, stream or sys.stderr, False
        self.tty = self.stream.isatty()
        self.last_print, self.eval_cfg = 0.0, None
        self.quiet_from, self.shown = time.monotonic(), False
        # decode progress arrives from the loading thread; re-entrant because the Ctrl-C handler
        # prints from the main thread, possibly while that thread is inside _show
        self.lock = threading.RLock()

    def _show(self, line: str, final: bool, quiet_start: bool = False) -> None:
        now = time.monotonic()
        with self.lock:
            if self.tty:
                self.stream.write("\r" + line + ("\n" if final else ""))
                self.stream.flush()
                self.shown = not final
            elif quiet_start and not self.shown and now - self.quiet_from < 5:
                pass  # a log file gets no line for work that finishes within a few seconds
            elif final or now - self.last_print > 5:
                self.stream.write(line + "\n")
                self.last_print, self.shown = now, not final

    def update(self, ev) -> None:
        frac = max(ev.progress, ev.step / max(1, self.total))  # a time-boxed run: its clock, not its step count
        bar = "#" * int(frac * 30)
        steps = f"{ev.step}" if self.boxed else f"{ev.step}/{self.total}"  # a time budget ends it, not a step count
        self._show(f"epoch {ev.epoch} step {steps} [{bar:<30}] loss {ev.loss:.4f} "
                   f"lr {ev.lr:.2e} {ev.images_per_s:,.0f} img/s ETA {clock(ev.eta_s)}", ev.step == self.total)

    def started(self, ev) -> None:
        """The run's folder, data and device, from its RunStarted."""
        from workbench.core.config import EvalConfig

        self.total, self.boxed = ev.total_steps, bool(ev.config["train"].get("time_budget_s"))
        self.eval_cfg = EvalConfig(**ev.config["eval"])
        self.message(f"run folder: {ev.run_dir}\n{ev.n_train} training / {ev.n_test} held-out images, "
                     f"{ev.steps_per_epoch} steps an epoch, device {ev.device}"
                     + (f"; resuming at step {ev.start_step}" if ev.start_step else ""))

    def evaluating(self, ev) -> None:
        """An evaluation under way (``EvalProgressEvent``: its stage and count, so a long one never looks hung), or
        its figures (``EvalEvent``) under the names users read."""
        from workbench.core.metrics import describe

        if hasattr(ev, "stage"):
            self._show(f"{ev.text:<90}", False)
        else:
            self.message(f"epoch {ev.epoch} (step {ev.step}): {describe(ev.metrics, self.eval_cfg)}")

    def decode(self, done: int, total: int, message: str = "") -> None:
        """``load_splits``'s progress callback: ``done`` of ``total`` units with a short message."""
        if total <= 0:
            return
        final = done >= total
        if final and not self.shown:
            return
        self._show(f"{message or 'loading data'} [{'#' * int(done / total * 30):<30}] {done:,}/{total:,}", final, quiet_start=True)

    def message(self, text: str) -> None:
        with self.lock:
            self.stream.write(("\n" if self.tty and self.shown else "") + text + "\n")
            self.stream.flush()
            self.shown = False


class CtrlC:
    """SIGINT handler: the first press asks the loop (or the loading) to stop and save and says so;
    a second one aborts without saving. Checkpoints are written atomically (temporary file, then a
    rename), so an abort during the save leaves the previous last.pt whole."""

    SAVING = "stopping: finishing this step and saving a checkpoint (press Ctrl-C again to abort without saving)"
    LOADING = "stopping: cancelling the loading; nothing has been written yet"

    def __init__(self, control=None, cancel: threading.Event | None = None, say=None, text: str = SAVING):
        self.control, self.cancel, self.say, self.presses = control, cancel or threading.Event(), say, 0
        self.text = text  # what the first press says

    def __call__(self, signum, frame) -> None:
        self.presses += 1
        if self.presses > 1:
            raise KeyboardInterrupt
        self.cancel.set()
        if self.control is not None:
            self.control.stop()
        (self.say or (lambda t: print(t, file=sys.stderr, flush=True)))(self.text)

    def __enter__(self) -> CtrlC:
        """Ctrl-C and SIGTERM (``kill``, ``timeout``, a job scheduler's end of time) both stop with a checkpoint."""
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            self.previous = {sig: signal.signal(sig, self) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def load_data(cfg, progress: TerminalProgress | None, cancel: threading.Event | None):
    """Decode the config's splits, drawing ``progress`` while it runs (an interrupt cancels it)."""
    from workbench.core.data import load_splits

    return load_splits(cfg.data, progress=progress.decode if progress else None, cancel=cancel)


def cmd_train(args) -> int:
    from workbench.core import distributed as ddp
    from workbench.core.config import Config
    from workbench.core.resume import check_resume
    from workbench.core.runfolder import check_runs_root
    from workbench.core.runs import python_resume_message
    from workbench.core.control import Control
    from workbench.core.train import train

    ddp.init_from_env()
    main = ddp.rank() == 0
    if args.resume:
        if args.config or args.set:
            raise ConfigError("--resume continues a run with its own config.toml; drop CONFIG and --set")
        args.run_dir = args.resume
        cfg, _ = check_resume(args.resume)  # everything checked before decoding or writing anything
        if cfg.data.name == "python":
            raise ConfigError(python_resume_message(Path(args.resume)))
    else:
        if not args.config:
            raise ConfigError("train: give a CONFIG.toml (see examples/) or --resume RUN_DIR")
        cfg, notes = Config.load_noted(args.config)
        for note in notes:  # a config from an older version, brought up to date
            log.warning(note, extra={"note": True})
        cfg = cfg.with_overrides(args.set or [])
        check_runs_root(args.out, "--out")  # before decoding: a bad --out costs no wait
    control = Control()
    out = TerminalProgress(0) if main else None
    with CtrlC(control, say=out.message if out else None, text=CtrlC.LOADING) as ctrl_c:
        data = load_data(cfg, out, ctrl_c.cancel)  # decoded once here, with a progress bar, and handed over
        if ctrl_c.presses:
            raise KeyboardInterrupt
        ctrl_c.text = CtrlC.SAVING
        status = _follow(train(cfg, control, runs_root=args.out, resume=args.resume, data=data),
                         args, out, main)
    return 130 if ctrl_c.presses and not status else status  # stopped by Ctrl-C or SIGTERM (checkpoint saved): not a finish


def _follow(events, args, out: TerminalProgress | None, main: bool) -> int:
    """Print the training events; returns the exit status (1 after an ErrorEvent)."""
    from workbench.core.events import (CheckpointEvent, DoneEvent, ErrorEvent, EvalEvent, EvalProgressEvent, RunStarted,
                                       StepEvent, WarningEvent)

    status = 0
    for ev in events:
        if isinstance(ev, RunStarted):
            args.run_dir = ev.run_dir
        if not main:
            status = 1 if isinstance(ev, ErrorEvent) else status
            continue
        if isinstance(ev, RunStarted):
            out.started(ev)
        elif isinstance(ev, StepEvent):
            out.update(ev)
        elif isinstance(ev, (EvalProgressEvent, EvalEvent)):
            out.evaluating(ev)
        elif isinstance(ev, WarningEvent) and ev.message not in PRINTED:
            out.message(f"{'note' if ev.note else 'warning'}: {ev.message}")
        elif isinstance(ev, CheckpointEvent) and args.verbose:
            out.message(f"checkpoint: {ev.path}")
        elif isinstance(ev, ErrorEvent):
            out.message(f"error: {ev.message}")
            if ev.traceback:
                out.message(_traceback_note(ev.traceback, ev.run_dir or args.run_dir, args.verbose))
            status = 1
        elif isinstance(ev, DoneEvent):
            out.message(ev.message or f"{ev.text}; checkpoint and metrics in {ev.run_dir}"
                        + (f"\nresume with: workbench train --resume {ev.run_dir}" if ev.reason == "stopped" else ""))
    return status


def _traceback_note(tb: str, run_dir, verbose: bool) -> str:
    """Where the full traceback is (written to run.log if the loop did not already) or the text itself."""
    from workbench.core import runfolder

    path = runfolder.log_path(run_dir) if run_dir else None
    if path is not None and not runfolder.log_holds(run_dir, tb.strip().splitlines()[-1]):
        runfolder.append_log(run_dir, "\n" + tb)
    if verbose:
        return tb.rstrip()
    return f"full traceback in {path} (or run with -v)" if path else ""


def _check_out_file(out: str, force: bool, suffix: str, binary: bool = False) -> Path | None:
    """The --out file (refusing a folder and an existing file without --force), or None for ``-`` (stdout)."""
    if out == "-":
        if sys.stdout is None:
            raise OutputError("standard output is closed; give a file with --out FILE")
        if binary and sys.stdout.isatty():
            raise ConfigError(f"--out -: {suffix} data is binary and stdout is a terminal; redirect it "
                              f"(--out - > embeddings{suffix}) or give a file name")
        return None
    from workbench.core.export import refuse_overwrite
    from workbench.core.runfolder import check_folder

    path = Path(out)
    if path.is_dir():
        raise ConfigError(f"--out '{path}' is a folder; give a file name such as {path / ('embeddings' + suffix)}")
    if path.suffix.lower() != suffix:  # npz bytes in 'emb.txt' help nobody (as export refuses them)
        raise ConfigError(f"--out '{path}': this writes {suffix[1:].upper()} data; give a file name ending in {suffix} "
                          f"(such as {path.with_suffix(suffix)})")
    check_folder(path.parent, "--out", file=path)
    refuse_overwrite([path], force, "--out", "add --force")
    return path


def _finite_or_refuse(emb, run_dir) -> None:
    import numpy as np

    from workbench.core.runfolder import checkpoint_path
    from workbench.core.runs import previous_advice

    if not np.isfinite(emb).all():
        raise ConfigError(f"the model in '{run_dir}' produces non-finite embeddings; nothing was written; "
                          f"{previous_advice(checkpoint_path(run_dir))} (or retrain with a lower optim.lr)")


def data_overrides(sets: list[str] | None) -> list[str]:
    """``--set`` of embed and neighbours: which data to read; the network is the run's, so anything else is refused."""
    other = [s for s in sets or [] if not s.strip().startswith("data.")]
    if other:
        raise ConfigError(f"--set {other[0]}: only data.KEY=VALUE applies here (which images to embed); the network, loss "
                          "and training settings are the run's")
    return sets or []


def run_data(rm, sets: list[str] | None):
    """The config of the images to embed for run ``rm``: its own data, or the data ``--set`` names, decoded at the
    size the encoder was trained at (not resized a second time from a size chosen for them)."""
    cfg = rm.cfg.with_overrides(data_overrides(sets))
    if cfg.data != rm.cfg.data and not any(s.strip().startswith("data.image_size") for s in sets or []):
        cfg = cfg.replace("data", image_size=rm.image_size)
    root = cfg.data.root
    if (cfg.data.name == "image_folder" and root and cfg.data.root == rm.cfg.data.root
            and not Path(root).expanduser().exists()):  # a torchvision dataset may be downloaded there again
        raise ConfigError(f"data.root: the folder this run trained on, '{root}', is not there any more (moved or deleted); "
                          "give where it is now with --set data.root=FOLDER")
    return cfg


def cmd_embed(args) -> int:
    import numpy as np

    from workbench.core.export import npz_bytes, write_npz
    from workbench.core.inference import RunModel

    out = _check_out_file(args.out, args.force, ".npz", binary=True)
    rm = RunModel.load(args.run_dir)
    cfg = run_data(rm, args.set)
    bar = TerminalProgress(0)
    with CtrlC(say=bar.message, text=CtrlC.LOADING) as ctrl_c:
        train, test = load_data(cfg, bar, ctrl_c.cancel)
    if ctrl_c.presses:
        raise KeyboardInterrupt
    data = train if args.split == "train" else test
    emb = rm.embed(data.images, readout=args.readout)
    _finite_or_refuse(emb, args.run_dir)
    arrays = {"embeddings": emb.astype(np.float32), "labels": data.labels.numpy().astype(np.int64),
              "indices": data.indices.numpy().astype(np.int64)}
    if out is None:
        write_stdout(npz_bytes(**arrays))
    else:
        write_npz(out, **arrays)
    what = f"through the run's {rm.cfg.eval.readout} read-out" if args.readout else "the backbone's output, no read-out"
    print(f"wrote {len(emb)} embeddings of dimension {emb.shape[1]} ({what}) to {out or 'stdout'}",
          file=sys.stderr if out is None else sys.stdout)
    return 0


def cmd_neighbours(args) -> int:
    from workbench.core.data import file_names
    from workbench.core.inference import RunModel, check_image_path, load_image_file, neighbours

    check_image_path(args.image)  # before the run loads
    out = _check_out_file(args.out, args.force, ".csv") if args.out and args.out != "-" else args.out
    rm = RunModel.load(args.run_dir)
    cfg = run_data(rm, args.set)
    train, _ = load_data(cfg, TerminalProgress(0), None)
    q = rm.embed(load_image_file(args.image, rm.channels, rm.image_size))
    bank = rm.embed(train.images)
    _finite_or_refuse(bank, args.run_dir)
    if args.k > len(bank):
        print(f"note: -k {args.k} is more than the {len(bank)} training images; showing all of them", file=sys.stderr)
    idx, sim = neighbours(q, bank, args.k)
    rows = []
    for r, (i, s) in enumerate(zip(idx[0], sim[0], strict=True), 1):
        lab = int(train.labels[i])
        rows.append((r, int(train.indices[i]), float(s), train.classes[lab] if 0 <= lab < len(train.classes) else "-"))
    names = file_names(train.source, [i for _, i, _, _ in rows])  # image folders: the file of each neighbour
    files = [str(Path(train.source) / n) if n else "" for n in names] if names else None
    _print_neighbours(rows, files, out)
    return 0


def _print_neighbours(rows: list[tuple], files: list[str] | None, out: Path | str | None) -> None:
    """The table on stdout (and as CSV in ``out``; ``-``: the CSV instead of the table on stdout): rank,
    source index, similarity, label, and the file for image folders."""
    import csv
    import io

    from workbench.core.files import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["rank", "index", "similarity", "label"] + (["path"] if files else []))
    for k, (r, i, s, name) in enumerate(rows):
        w.writerow([r, i, f"{s:.6f}", name] + ([files[k]] if files else []))
    if out == "-":
        write_stdout(buf.getvalue().encode("utf-8"))
        return
    label_w = max([5] + [len(n) for *_, n in rows])
    print((f"{'rank':>4} {'index':>7} {'similarity':>10}  {'label':<{label_w}}" + ("  path" if files else "")).rstrip())
    for k, (r, i, s, name) in enumerate(rows):
        print((f"{r:>4} {i:>7} {s:>10.4f}  {name:<{label_w}}" + (f"  {files[k]}" if files else "")).rstrip())
    if out is not None:
        atomic_write_text(out, buf.getvalue())
        print(f"wrote {out}", file=sys.stderr)


def cmd_export(args) -> int:
    from workbench.core.export import destination, export_run

    if args.out == "-":
        raise ConfigError("--out -: an export is one or more files (model and model card); give a folder, e.g. --out export/")
    out = destination(args.run_dir, args.format, args.out, args.force, "--out", "add --force")
    paths = export_run(args.run_dir, args.format, out, include_head=args.include_head, what="--out", readout=args.readout)
    for p in paths:
        print(f"wrote {p}")
    return 0


def cmd_explain(args) -> int:
    """Why two images are similar: the exact similarity maps of the run's backbone (core/explain.py) as a figure."""
    from PIL import Image

    from workbench.core.explain import deletion_run, explain_run
    from workbench.core.inference import RunModel, check_image_path

    for p in (args.image_a, args.image_b):
        check_image_path(p)
    if Path(args.out).suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise ConfigError(f"--out '{args.out}': the figure is an image; give a .png (or .jpg) file name")
    out = _check_out_file(args.out, args.force, ".png")
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {args.device}: this machine has no CUDA device; use --device cpu")
    rm = RunModel.load(args.run_dir, device=args.device)
    maps = explain_run(rm, args.image_a, args.image_b, args.readout)
    what = "read-out" if args.readout else "backbone"
    print(f"cosine {maps.cosine[0]:+.6f} ({what}; not through the projection head); map of a sums to "
          f"{maps.map_a[0].sum():+.6f}, map of b to {maps.map_b[0].sum():+.6f} ({maps.grid[0]}x{maps.grid[1]} locations)")
    for n, (i, j, v) in enumerate(maps.top_matches(0, args.lines), 1):
        w = maps.grid[1]
        print(f"  match {n}: a (row {i // w}, col {i % w}) with b (row {j // w}, col {j % w}): {v:+.4f}")
    if args.deletion:
        auc = deletion_run(rm, args.image_a, args.image_b, readout=args.readout).auc
        print(f"deletion curve (a's regions masked): area {auc[0]:.4f} highest map first, {auc[1]:.4f} in a random order")
    Image.fromarray(maps.figure(0, size=args.size, lines=args.lines)).save(out)
    print(f"wrote {out}")
    return 0


def _explain_parser(sub, verbose) -> None:
    ex = sub.add_parser("explain", parents=[verbose], help="why two images are similar: similarity maps as a figure")
    ex.add_argument("run_dir")
    ex.add_argument("image_a")
    ex.add_argument("image_b")
    ex.add_argument("--out", required=True, help="the figure to write (.png)")
    ex.add_argument("--lines", type=positive_int, default=5, help="strongest location matches drawn (default 5)")
    ex.add_argument("--size", type=positive_int, default=224, help="pixels a side each image is drawn at")
    ex.add_argument("--readout", action="store_true", help="explain the whitening read-out instead of the plain backbone")
    ex.add_argument("--deletion", action="store_true", help="also print the deletion curve's areas (faithfulness)")
    ex.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ex.add_argument("--force", action="store_true", help="overwrite --out if it exists")


def cmd_check(args) -> int:
    """Duplicates, leaks, outliers and label issues of a run's data (core/checks.py): one CSV per list in --out
    (default RUN_DIR/checks/) and what is worth a look on the terminal."""
    from workbench.core.checks import check_run, file_list
    from workbench.core.files import atomic_write_text
    from workbench.core.runfolder import check_folder, checks_dir, find_run

    out = Path(args.out) if args.out else checks_dir(find_run(args.run_dir))
    check_folder(out, "--out")
    bar = TerminalProgress(0)
    with CtrlC(say=bar.message, text="stopping: cancelling the checks; nothing has been written yet") as ctrl_c:
        report = check_run(args.run_dir, args.split, args.k, args.factor, args.subset, args.subset_distance,
                           overrides=data_overrides(args.set), progress=bar.decode, cancel=ctrl_c.cancel)
    paths = report.save(out)
    if report.subset is not None:
        atomic_write_text(out / "subset.txt", file_list(report.subset))
        paths.append(out / "subset.txt")
    s = report.summary()
    print(f"{s['images']:,} images ({s['test_images']:,} held-out), k {s['k']}, median nearest-neighbour distance "
          f"{s['median_nn_distance']:.4f}, near-duplicates closer than {s['duplicate_radius']:.4f}"
          + (f", the kNN vote agrees with {s['vote_agreement']:.1%} of the labels" if s["vote_agreement"] is not None else ""))
    print("\n".join(f"  - {line}" for line in report.findings) or "  nothing worth a look")
    print(f"wrote {len(paths)} files to {out}: {', '.join(p.name for p in paths)}")
    return 0


def cmd_list(args) -> int:
    from workbench.core.augment import AUGMENTS, PRESET_HELP
    from workbench.core.config import DataConfig
    from workbench.core.data import DATASETS
    from workbench.core.losses import LOSSES
    from workbench.core.methods import METHODS, default_method
    from workbench.core.models import ENCODERS

    reg = {"datasets": DATASETS, "augmentations": AUGMENTS, "losses": LOSSES, "methods": METHODS, "models": ENCODERS}[args.command]
    print(reg.describe())
    if args.command in ("losses", "methods"):
        print("\nthe method each loss trains with unless [method] names another (method.name):")
        for name in LOSSES.names():
            print(f"  {name:<18} {default_method(name)}")
    if args.command == "datasets":
        print("\nsettings every dataset reads ([data] section; --set data.KEY=VALUE):")
        for f in dataclasses.fields(DataConfig):
            print(f"  {f.name} = {f.default!r}")
    if args.command == "augmentations":
        print("\npresets (augment.preset; an augment.recipe of your own wins over it):")
        for name, text in PRESET_HELP.items():
            print(f"  {name:<18} {text}")
        print("\nprogressive resolution (augment.start_size, augment.full_size_at): views start at start_size of the full "
              "side and grow to it by full_size_at of the run; start_size 0 = auto (0.5 for a run with "
              "train.time_budget_s, else 1 = off)")
    return 0


def cmd_sweep(args) -> int:
    from workbench.core.sweep import run_cli

    return run_cli(args.config, args.out, args.set or [], args.parallel, args.yes)


def cmd_gui(args) -> int:
    check_display()
    from workbench.gui.app import run

    return run(args.config, check=getattr(args, "check", False))


def check_display() -> None:
    """On Linux, refuse in one line what would make Qt abort with a page of plugin text: no display at all, or
    the X11 plugin without system libraries it needs (libxcb-cursor0 and others, missing on minimal systems)."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return
    headless = "; to train without a window use 'workbench train CONFIG.toml'"
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise ConfigError("no display to open the window on (DISPLAY and WAYLAND_DISPLAY are unset; over ssh use ssh -X, "
                          f"or xvfb-run){headless}")
    missing = [] if os.environ.get("WAYLAND_DISPLAY") else missing_x11_libraries()
    if missing:
        raise ConfigError(f"the window needs system libraries that are not installed: {', '.join(missing)} (Debian/Ubuntu: "
                          f"sudo apt install {' '.join(_debian_package(m) for m in missing)}){headless}")


def missing_x11_libraries() -> list[str]:
    """Shared libraries Qt's X11 plugin links to that the system lacks (``ldd`` says "not found")."""
    import subprocess

    import PySide6

    qt = Path(PySide6.__file__).parent / "Qt"
    found = []
    for lib in (qt / "plugins" / "platforms" / "libqxcb.so", qt / "lib" / "libQt6XcbQpa.so.6"):
        try:
            out = subprocess.run(["ldd", str(lib)], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return []  # no ldd: let Qt say it
        found += [line.split()[0] for line in out.splitlines() if "not found" in line]
    return sorted(set(found))


def _debian_package(lib: str) -> str:
    """'libxcb-cursor.so.0' -> 'libxcb-cursor0' (Debian names a library package after its soname)."""
    name, _, version = lib.partition(".so.")
    return f"{name}{'-' if name[-1].isdigit() else ''}{version.split('.')[0]}" if version else name


class Parser(argparse.ArgumentParser):
    """argparse whose mistakes are one line (``error: ...``) instead of usage text and an exit."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}; see '{self.prog} --help'")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="workbench", description="Contrastive Workbench: contrastive self-supervised learning you can see.")
    p.add_argument("-v", "--verbose", action="store_true", help="more detail; print full tracebacks")
    p.add_argument("--version", action="version", version=f"workbench {__version__}")
    verbose = Parser(add_help=False)  # -v after the command too, without undoing `workbench -v train`
    verbose.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                         help="more detail; print full tracebacks")
    sub = p.add_subparsers(dest="command", parser_class=Parser)
    g = sub.add_parser("gui", parents=[verbose], help="open the window (the default)")
    g.add_argument("config", nargs="?", help="a config TOML to load")
    g.add_argument("--check", action="store_true", help="open the window, load its dataset, say what it found and close "
                                                        "(does this installation work?)")
    t = sub.add_parser("train", parents=[verbose], help="train from a config file")
    t.add_argument("config", nargs="?")
    t.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config value (repeatable)")
    t.add_argument("--out", default="runs", help="folder that receives the run folder (default: runs)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run")
    w = sub.add_parser("sweep", parents=[verbose], help="run every trial of a config's [sweep] section, ranked (again: resume)")
    w.add_argument("config")
    w.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a base config value (repeatable)")
    w.add_argument("--out", help="the sweep folder (default: sweeps/<config name>)")
    w.add_argument("--parallel", type=positive_int, default=1, help="trials at once, one process per GPU")
    w.add_argument("--yes", action="store_true", help="run a sweep larger than sweep.max_trials without asking")
    e = sub.add_parser("embed", parents=[verbose], help="write embeddings of a dataset split as .npz")
    e.add_argument("run_dir")
    e.add_argument("--split", choices=["train", "test"], default="test")
    e.add_argument("--set", action="append", metavar="data.KEY=VALUE", help="embed another dataset (e.g. data.root=...)")
    e.add_argument("--out", required=True, help="the .npz file to write, or - for stdout (redirected)")
    e.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    e.add_argument("--readout", action="store_true", help="through the run's fitted read-out (eval.readout); default: none")
    n = sub.add_parser("neighbours", parents=[verbose], help="nearest training images of an image file")
    n.add_argument("run_dir")
    n.add_argument("--image", required=True)
    n.add_argument("-k", type=positive_int, default=10, help="how many neighbours (>= 1)")
    n.add_argument("--set", action="append", metavar="data.KEY=VALUE")
    n.add_argument("--out", help="also write the table as CSV (-: the CSV on stdout instead of the table)")
    n.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    x = sub.add_parser("export", parents=[verbose], help="export the trained encoder")
    x.add_argument("run_dir")
    x.add_argument("--format", choices=FORMATS, default="safetensors")
    x.add_argument("--out", help="the folder to write into (default: RUN_DIR/export/FORMAT/, as the window and the Python API)")
    x.add_argument("--include-head", action="store_true", help="include the projection head")
    x.add_argument("--readout", action="store_true",
                   help="add the run's fitted read-out (eval.readout) as a separate, named last layer; default: the plain backbone")
    x.add_argument("--force", action="store_true", help="overwrite files that exist")
    _explain_parser(sub, verbose)
    c = sub.add_parser("check", parents=[verbose], help="duplicates, train/test leaks, outliers and label issues of a run's data")
    c.add_argument("run_dir")
    c.add_argument("--split", choices=["both", "train", "test"], default="both", help="the images to check (leaks need both)")
    c.add_argument("--out", help="folder for the CSV files and summary.json (default: RUN_DIR/checks/)")
    c.add_argument("-k", type=positive_int, default=10, help="neighbours an image has in the graph (default 10)")
    c.add_argument("--factor", type=float, default=0.13, help="near-duplicates: closer than this x the median nearest-neighbour distance")
    c.add_argument("--subset", type=positive_int, default=0, metavar="N", help="also pick N diverse training images (subset.txt)")
    c.add_argument("--subset-distance", type=float, default=0.0, metavar="D", help="... or as many as are D apart (cosine)")
    c.add_argument("--set", action="append", metavar="data.KEY=VALUE", help="check another dataset (e.g. data.root=...)")
    for name in ("datasets", "augmentations", "losses", "methods", "models"):
        sub.add_parser(name, parents=[verbose], help=f"list the {name} and their parameters")
    sub.add_parser("install-shortcut", parents=[verbose], help="add the window to your applications menu (this user only)")
    sub.add_parser("uninstall-shortcut", parents=[verbose], help="remove that menu entry")
    return p


def cmd_shortcut(args) -> int:
    from workbench import shortcut

    if args.command == "install-shortcut":
        files = shortcut.install()
        print(f"menu entry '{shortcut.APP_NAME}' added for this user; it starts {shortcut.launcher()}")
    else:
        files = shortcut.uninstall()
        print("menu entry removed" if files else "no menu entry to remove")
    for f in files:
        print(f"  {f}")
    return 0


def gui_main() -> int:
    """The ``workbench-gui`` entry point (gui-scripts: no console window on Windows), which menu entries start.
    Without a console (pythonw) there is no stderr: messages go to the cache's gui.log instead."""
    if sys.stderr is None or sys.stdout is None:
        from workbench.core.paths import cache_root

        log_file = cache_root() / "gui.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        sys.stdout = sys.stderr = open(log_file, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - for the process's life
    return main(["gui", *sys.argv[1:]])


COMMANDS = {"train": cmd_train, "sweep": cmd_sweep, "embed": cmd_embed, "neighbours": cmd_neighbours, "export": cmd_export,
            "explain": cmd_explain, "check": cmd_check, "datasets": cmd_list, "augmentations": cmd_list, "losses": cmd_list,
            "methods": cmd_list, "models": cmd_list, "gui": cmd_gui, "install-shortcut": cmd_shortcut, "uninstall-shortcut": cmd_shortcut}


def _crash_log(run_dir) -> Path:
    from workbench.core import runfolder

    if run_dir and runfolder.is_run_folder(run_dir):
        return runfolder.log_path(run_dir)
    from workbench.core.paths import cache_root

    return cache_root() / "error.log"


def report_failure(exc: BaseException, args) -> str:
    """The user's line for a failure; its full traceback goes to the run's run.log (or the cache's
    error.log) so nothing is lost; with -v it is printed as well."""
    from workbench.core.events import explain, format_traceback
    from workbench.core.runfolder import append_record

    line = f"error: {explain(exc)}"
    tb = format_traceback(exc)
    path = _crash_log(getattr(args, "run_dir", None))
    try:
        append_record(path, f"workbench {getattr(args, 'command', '')}: {explain(exc)}\n{tb}")
        where = f"full traceback in {path}"
    except OSError:
        where = "run with -v for the full traceback"
    if getattr(args, "verbose", False):
        return tb.rstrip() + "\n" + line
    return f"{line}\n{where}" + (" (or run with -v)" if "-v" not in where else "")


PRINTED: set[str] = set()  # log messages already on stderr (the loop also yields most as WarningEvent)


class _StderrLog(logging.Handler):
    """The workbench's log records as ``warning: ...`` lines (``note: ...`` for a stated decision) on the
    current stderr, each remembered so the same text arriving as a WarningEvent is not printed twice."""

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        PRINTED.add(text)
        level = "note" if getattr(record, "note", False) else record.levelname.lower()
        print(f"{level}: {text}", file=sys.stderr, flush=True)


def _log_to_stderr(verbose: bool) -> None:
    logger = logging.getLogger("workbench")
    if not any(isinstance(h, _StderrLog) for h in logger.handlers):
        logger.addHandler(_StderrLog())
    logger.setLevel(logging.INFO if verbose else logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    if args.command is None:
        args.command, args.config, args.check = "gui", None, False
    args.run_dir = getattr(args, "run_dir", None)
    _log_to_stderr(args.verbose)
    from workbench.core.folder import Cancelled  # (not via core.data: that loads torch, which --version and the shortcuts do without)

    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OutputError, BrokenPipeError) as exc:  # the output's failure: the run is fine, its run.log untouched
        if isinstance(exc, BrokenPipeError):
            _silence_stdout()
        print(f"error: {exc if isinstance(exc, OutputError) else 'the reader of standard output closed it; the output is incomplete'}",
              file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Cancelled):
        if args.command == "train" and args.run_dir:
            what = f"stopped without saving; the last checkpoint in {args.run_dir} is kept"
        else:
            what = "nothing was written"
        print(f"\ninterrupted: {what}", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure ends as one line; the traceback is kept in a log
        print(report_failure(exc, args), file=sys.stderr)
        return 1
