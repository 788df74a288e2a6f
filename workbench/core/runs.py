"""Run folders: resolved config, metrics.csv, run.log, atomic checkpoints, resume.

    runs/2026-11-22_143015_bundled-ntxent/
      config.toml            resolved config (every default) + [meta] versions and seed
      metrics.csv            one row per logged step and per evaluation
      run.log                warnings, errors and their full tracebacks
      checkpoints/last.pt    written atomically (temp file + rename); loaded with weights_only=True
      checkpoints/prev.pt    the checkpoint before it

Files are written through a temporary file in the same folder, fsynced, then renamed over the
target, with the permissions a plain ``open`` would give (the user's umask), so a crash at any
moment leaves either the old file or the new one, never a torn one.
"""
from __future__ import annotations

import csv
import errno
import io
import json
import logging
import os
import platform
import shlex
import shutil
import socket
import time
import zipfile
from pathlib import Path

import torch

from workbench.core.files import DiskFullError, atomic_write_bytes, atomic_write_text, file_mode, orphans  # noqa: F401 (re-exported)
from workbench.core import resume as resume_policy
from workbench.core import runlock
from workbench.core.metrics import EVAL_METRICS
from workbench.core.registry import ConfigError

METRIC_COLUMNS = ["time", "epoch", "step", "loss", "lr", "images_per_s", *EVAL_METRICS]
# metrics.csv written before the field's kNN protocol became the headline has no such column: its "knn_acc" was read
# through the whitened read-out, and is read (and, on resume, rewritten) as "knn_acc_readout"
NEW_PROTOCOL_COLUMN = "eval_queries"


def check_runs_root(root: str | Path, what: str = "runs_root") -> Path:
    """Check, without creating anything, that run folders can be made in ``root`` (``check_folder``) and that it is
    not inside a run folder (a new run would nest in it). ConfigError names ``what`` (e.g. ``--out``)."""
    if not str(root).strip():  # --out "$UNSET": the current folder would receive the run, unasked
        raise ConfigError(f"{what} is empty (an unset variable?); give the folder that receives run folders, e.g. runs")
    root = check_folder(root, what)
    full = root.resolve()
    run = next((p for p in (full, *full.parents) if is_run_folder(p)), None)
    if run is not None:
        where = "is a run folder" if run == full else f"is inside the run folder '{run}'"
        raise ConfigError(f"{what} '{root}' {where}; give the folder that holds runs (such as '{run.parent}'), "
                          "or continue that run with --resume (resume= in Python)")
    return root


def is_run_folder(path: Path) -> bool:
    """A folder a run wrote: its config.toml, checkpoints/ and status.json or metrics.csv."""
    return ((path / "config.toml").is_file() and (path / "checkpoints").is_dir()
            and ((path / "status.json").is_file() or (path / "metrics.csv").is_file()))


def check_folder(folder: str | Path, what: str, file: str | Path | None = None) -> Path:
    """Check, without creating anything, that files can be written in ``folder`` (created if missing): no part of
    it is a file (or a broken link) and the deepest existing folder is writable. ConfigError names ``what`` and the
    offending path (``file``, when given, is the file to be written there, and the advice is for a file name)."""
    folder = Path(folder)
    shown = Path(file) if file is not None else folder
    existing = next((p for p in (folder, *folder.parents) if p.exists() or p.is_symlink()), Path("."))
    if not existing.is_dir():
        where = f"{what} '{shown}'" if existing == shown else f"{what} '{shown}': '{existing}'"
        kind = "a broken link" if existing.is_symlink() and not existing.exists() else "a file, not a folder"
        advice = ("give a folder (it is created if missing)" if shown == folder or existing == shown
                  else f"choose another path for {what}")
        raise ConfigError(f"{where} is {kind}; {advice}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} '{shown}': cannot create folders in '{existing}' (permission denied); "
                          "choose a folder you can write to")
    return folder


def make_folder(folder: str | Path, what: str) -> Path:
    """Create ``folder`` (and its parents) after ``check_folder``; what the system still refuses (a read-only disk,
    /proc) is a ConfigError naming ``what`` and the reason."""
    folder = check_folder(folder, what)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{what} '{folder}': cannot create this folder ({exc.strerror or type(exc).__name__}); "
                          "choose another") from None
    return folder


def new_run_dir(root: str | Path, cfg, what: str = "runs_root") -> Path:
    """A new, empty run folder (with checkpoints/) under ``root``, named by time, dataset and loss.

    The name is reserved by ``mkdir`` itself (atomic: it fails when the folder exists), so processes started in the
    same second (a job array) each get their own folder: ``NAME``, ``NAME-2``, ``NAME-3`` ..."""
    stamp = time.strftime("%Y-%m-%d_%H%M%S")
    root = Path(check_runs_root(root, what))
    base = path = root / f"{stamp}_{cfg.data.name}-{cfg.loss.name}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        for i in range(1, 10_000):
            path = base if i == 1 else Path(f"{base}-{i}")
            try:
                path.mkdir()
            except FileExistsError:
                continue
            (path / "checkpoints").mkdir()
            return path
    except OSError as exc:
        if exc.errno not in (errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.EROFS):
            raise  # disk full and the like: events.explain words them
        raise ConfigError(f"{what} '{root}': cannot create the run folder '{path}' ({exc.strerror or exc}); "
                          "choose a folder you can write to") from None
    raise ConfigError(f"{what} '{root}': 10,000 run folders named '{base.name}' exist already; choose another folder")


def versions(seed: int) -> dict:
    import numpy
    import torchvision

    from workbench import __version__

    return {"workbench": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": numpy.__version__, "python": platform.python_version(), "seed": seed,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}


CHECKPOINT_KEYS = ("model", "loss", "optim", "step", "epoch", "images_in_epoch", "elapsed", "mean", "std",
                   "channels", "image_size")


def nonfinite_tensors(tensors: dict, prefix: str = "") -> list[str]:
    """Names of the floating-point tensors in a (nested) state dict holding NaN or infinity.

    One host sync for the whole dict (a single stacked ``isfinite`` reduction), not one per tensor.
    """
    names, flags = [], []
    for k, v in tensors.items():
        if isinstance(v, dict):
            names_sub = nonfinite_tensors(v, f"{prefix}{k}.")
            if names_sub:
                return names_sub
        elif isinstance(v, torch.Tensor) and v.is_floating_point() and v.numel():
            names.append(f"{prefix}{k}")
            flags.append(torch.isfinite(v).all())
    if not flags:
        return []
    ok = torch.stack([f.to(flags[0].device) for f in flags]).cpu().tolist()
    return [n for n, good in zip(names, ok, strict=True) if not good]


def save_checkpoint(path: Path, state: dict, keep_prev: bool = True) -> None:
    """Write ``state`` to ``path`` atomically, keeping the checkpoint it replaces as ``prev.pt`` (unless
    ``keep_prev`` is False: the same step's checkpoint, rewritten).

    Refuses (FloatingPointError, nothing written) when the model's weights are not finite, so the
    last good checkpoint always survives. At every instant ``path`` holds a complete checkpoint.
    """
    path = Path(path)
    bad = nonfinite_tensors(state.get("model", {}))
    if bad:
        raise FloatingPointError(f"the weights became non-finite (e.g. {bad[0]}) by step {state.get('step', '?')}; "
                                 f"'{path}' was not overwritten; lower optim.lr or raise loss.temperature")
    buf = io.BytesIO()
    torch.save(state, buf)
    if keep_prev and path.is_file():
        prev = path.with_name("prev.pt")
        tmp = path.with_name(f".prev.pt.{os.getpid()}.tmp")
        try:  # a hard link keeps last.pt in place until the new one replaces it
            tmp.unlink(missing_ok=True)
            os.link(path, tmp)
        except OSError:
            shutil.copyfile(path, tmp)
        os.replace(tmp, prev)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint without unpickling arbitrary objects; clear ConfigError when damaged,
    not a workbench checkpoint, or holding non-finite weights (naming the command that goes back
    to ``prev.pt`` when that one is whole)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint '{path}' does not exist; has this run written a checkpoint yet?")
    try:
        state = torch.load(io.BytesIO(path.read_bytes()), map_location=map_location, weights_only=True)
    except MemoryError:
        raise
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError):
        raise ConfigError(f"checkpoint '{path}' is corrupted or truncated; {previous_advice(path)}") from None
    except Exception as exc:  # pickle.UnpicklingError for disallowed globals and the like
        raise ConfigError(f"checkpoint '{path}' cannot be loaded safely: it is corrupted or not a workbench checkpoint "
                          f"({type(exc).__name__}); nothing in it was executed") from None
    if not isinstance(state, dict):
        raise ConfigError(f"checkpoint '{path}' holds a {type(state).__name__}, not a workbench checkpoint (a dict of "
                          f"model, optimiser and progress); {previous_advice(path)}")
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise ConfigError(f"checkpoint '{path}' is not a workbench checkpoint: it lacks {', '.join(repr(k) for k in missing[:4])}")
    if not isinstance(state["model"], dict):
        raise ConfigError(f"checkpoint '{path}': 'model' is a {type(state['model']).__name__}, not a state dict")
    bad = nonfinite_tensors(state["model"])
    if bad:
        raise ConfigError(f"checkpoint '{path}' holds non-finite weights ({bad[0]}); {previous_advice(path)}")
    return state


def previous_advice(path: Path) -> str:
    """What to do about an unusable ``last.pt``: the exact command that puts a whole ``prev.pt`` in its
    place, or, without one, to start a new run."""
    prev = Path(path).with_name("prev.pt")
    if Path(path).name != "prev.pt" and prev.is_file():
        try:
            load_checkpoint(prev)
        except ConfigError:
            return "prev.pt beside it is unusable too; start a new run"
        return f"go back to the previous checkpoint with: mv {shlex.quote(str(prev))} {shlex.quote(str(path))}"
    return "start a new run"


def load_run_checkpoint(run_dir: str | Path) -> tuple[dict, Path]:
    """A run's checkpoint for reading (embed, export, inspect): ``last.pt``, or ``prev.pt`` with a
    warning when last.pt is unusable and prev.pt is whole (nothing is written). Returns (state, file)."""
    last = Path(run_dir) / "checkpoints" / "last.pt"
    try:
        return load_checkpoint(last), last
    except ConfigError as exc:
        prev = last.with_name("prev.pt")
        try:
            state = load_checkpoint(prev) if prev.is_file() else None
        except ConfigError:
            state = None
        if state is None:
            raise exc from None
    logging.getLogger("workbench").warning(
        f"'{last}' is unusable (damaged or non-finite); using prev.pt beside it (step {state['step']}) instead")
    return state, prev


def clean_orphans(run_dir: str | Path) -> list[Path]:
    """Remove temporary files that killed processes left in the run folder and its exports (``.*.tmp`` whose
    writer is gone: ``files.orphans``); a live writer's (an export under way) is left alone. Called by the run
    folder's owner, the only writer of the run's own files. Returns them."""
    run = Path(run_dir)
    gone = []
    owned = (run, run / "checkpoints")
    for folder in (*owned, run / "export", *sorted((run / "export").glob("*/"))):
        for p in orphans(folder, unnamed_after=0 if folder in owned else 3600):
            p.unlink(missing_ok=True)
            gone.append(p)
    return gone


def truncate_metrics(run_dir: str | Path, step: int) -> int:
    """Drop metrics.csv rows logged after ``step`` (and torn rows), so a resumed run does not repeat
    steps; returns how many rows were dropped. Rewritten atomically."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return 0
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines(keepends=True)
    if not lines:
        return 0
    header = lines[0]
    cols = next(csv.reader([header]))
    width, at = len(cols), cols.index("step") if "step" in cols else None
    keep, dropped = [header], 0
    for line in lines[1:]:
        row = next(csv.reader([line]), [])
        try:
            good = line.endswith("\n") and len(row) == width and (at is None or float(row[at]) <= step)
        except ValueError:
            good = False
        if good:
            keep.append(line)
        else:
            dropped += 1
    if not header.endswith("\n"):
        keep[0] = header + "\n"
    if dropped or not header.endswith("\n"):
        atomic_write_text(path, "".join(keep))
    return dropped


class _RunLogFormat(logging.Formatter):
    """run.log's line format; a record marked ``note`` (a stated decision, ``note:`` on the console) reads NOTE."""

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "note", False):
            record = logging.makeLogRecord({**record.__dict__, "levelname": "NOTE"})
        return super().format(record)


class RunLog:
    """``with RunLog(run_dir) as rl:`` appends the workbench's warnings and errors, with their full
    tracebacks, to ``run_dir/run.log`` while the block runs; an exception escaping the block is
    logged with its traceback before it propagates. ``rl.info(msg)`` records a line (run started,
    resumed, checkpoint) without printing it anywhere else; ``rl.exception(exc)`` logs a handled one.
    """

    def __init__(self, run_dir: str | Path, logger: str = "workbench"):
        self.path = Path(run_dir) / "run.log"
        self.logger = logging.getLogger(logger)
        self.handler: logging.Handler | None = None

    def __enter__(self) -> RunLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handler = logging.FileHandler(self.path, encoding="utf-8", delay=True)
        self.handler.setLevel(logging.INFO)
        self.handler.setFormatter(_RunLogFormat("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        self.logger.addHandler(self.handler)
        return self

    def _emit(self, level: int, msg: str, exc: BaseException | None = None) -> None:
        if self.handler is None:
            return
        info = (type(exc), exc, exc.__traceback__) if exc is not None else None
        record = self.logger.makeRecord(self.logger.name, level, "(run)", 0, msg, (), info)
        self.handler.handle(record)
        self.handler.flush()

    def info(self, msg: str) -> None:
        self._emit(logging.INFO, msg)

    def warning(self, msg: str) -> None:
        self._emit(logging.WARNING, msg)

    def exception(self, exc: BaseException, msg: str = "") -> None:
        from workbench.core.events import explain

        self._emit(logging.ERROR, msg or explain(exc), exc)

    def __exit__(self, kind, exc, tb) -> None:
        if exc is not None and not isinstance(exc, GeneratorExit):
            if isinstance(exc, KeyboardInterrupt):
                self._emit(logging.WARNING, "interrupted (Ctrl-C twice): stopped without saving")
            else:
                self.exception(exc)
        if self.handler is not None:
            self.logger.removeHandler(self.handler)
            self.handler.close()
            self.handler = None


CHECK_SUMMARY = "summary.json"  # in checks_dir: what the last data check found (core/checks.py writes it)


def checks_dir(run_dir: str | Path) -> Path:
    """Where a run's data checks go by default: RUN/checks/ (one CSV per list and CHECK_SUMMARY)."""
    return Path(run_dir) / "checks"


def find_run(path: str | Path) -> Path:
    """``path`` as a run folder (one holding config.toml); ConfigError saying what it is otherwise."""
    run = Path(path)
    if (run / "config.toml").is_file():
        return run
    if not run.exists():
        raise ConfigError(f"'{run}' is not a run folder: it does not exist (a run folder holds config.toml)")
    holder = next((p for p in run.parents if (p / "config.toml").is_file() and (p / "checkpoints").is_dir()), None)
    if run.is_file() or holder is not None:
        hint = f"give the run folder that holds it: {holder}" if holder is not None else "give a run folder (one holding config.toml)"
        raise ConfigError(f"'{run}' is not a run folder but {'a file' if run.is_file() else 'a folder'} inside one; {hint}"
                          if holder is not None else f"'{run}' is not a run folder but a file; {hint}")
    raise ConfigError(f"'{run}' is not a run folder (no config.toml in it)")


def python_resume_message(run: Path) -> str:
    """A run trained on images passed from Python is resumed from Python, with the same images."""
    return (f"cannot resume '{run}' without its images: it was trained on images passed to workbench.fit() from Python, "
            f"which its config cannot load again; resume it from Python with the same images: "
            f"workbench.fit(resume={str(run)!r}, data=images, labels=labels)")


class MetricsLog:
    """Append-only metrics.csv with a fixed header (METRIC_COLUMNS + the loss's own terms),
    mirrored into TensorBoard event files under ``tensorboard/`` when asked."""

    def __init__(self, path: Path, terms: tuple[str, ...], tensorboard: bool = False):
        self.path = path
        self.tb = None
        if tensorboard:  # grouped tags, hparams and projector embeddings: core/tensorboard.py
            from workbench.core.tensorboard import TensorBoardLog

            self.tb = TensorBoardLog(path.parent)
        self.columns = METRIC_COLUMNS + [f"term_{t}" for t in terms]
        new = not path.exists() or path.stat().st_size == 0
        if not new:
            self._migrate(path)
        self._f = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115 - open for the run's lifetime
        self._w = csv.DictWriter(self._f, self.columns, extrasaction="ignore")
        if new:
            self._w.writeheader()

    def write(self, **row) -> None:
        for k, v in row.pop("terms", {}).items():
            row[f"term_{k}"] = v
        row.setdefault("time", round(time.time(), 3))
        if self.tb is not None:
            self.tb.write(row)
        # 6 significant digits for values; the timestamp keeps its milliseconds (durations are read from it)
        self._w.writerow({k: (f"{v:.6g}" if isinstance(v, float) and k != "time" else v) for k, v in row.items()})
        self._f.flush()

    def _migrate(self, path: Path) -> None:
        """An existing metrics.csv with other columns (an older version's, or another loss's terms) is rewritten
        once, atomically, with this run's columns: every value kept under its name (an old-protocol kNN under
        ``knn_acc_readout``), so appended rows line up with the header."""
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
        if header == self.columns:
            return
        rows = [{k: ("" if v is None else v) for k, v in r.items()} for r in read_metrics(path.parent)]
        extra = [c for c in rows[0] if c not in self.columns] if rows else []
        self.columns = self.columns + extra
        out = io.StringIO()
        w = csv.DictWriter(out, self.columns, extrasaction="ignore")
        w.writeheader()
        w.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
        atomic_write_text(path, out.getvalue())

    def close(self) -> None:
        self._f.close()
        if self.tb is not None:
            self.tb.close()


def is_metrics_header(cols: list[str]) -> bool:
    """Whether ``cols`` is a metrics.csv header: time, epoch, step first, then known columns and loss terms."""
    return cols[:3] == METRIC_COLUMNS[:3] and all(c in METRIC_COLUMNS or c.startswith("term_") for c in cols)


def read_metrics(run_dir: str | Path) -> list[dict]:
    """metrics.csv as a list of dicts of floats (None where empty), an old-protocol kNN under ``knn_acc_readout``
    (see NEW_PROTOCOL_COLUMN). ConfigError naming the file when its first line is not the metrics header; rows that
    do not parse (a torn last line, garbage) are left out with one warning naming the file and the first such line."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        if header and not is_metrics_header(header):
            raise ConfigError(f"'{path}' is damaged: its first line is not the metrics header ({','.join(header)[:40]!r}); "
                              f"move it aside (the run's checkpoint is not affected)")
        rows, bad = [], []
        for line, values in enumerate(reader, 2):
            try:
                if len(values) != len(header):
                    raise ValueError(f"{len(values)} values for {len(header)} columns")
                rows.append({k: (float(v) if v != "" else None) for k, v in zip(header, values, strict=True)})
            except ValueError:
                bad.append(line)
    if bad:
        logging.getLogger("workbench").warning("'%s': left out %d line(s) that do not parse as metrics (first: line %d)",
                                               path, len(bad), bad[0])
    if NEW_PROTOCOL_COLUMN not in header and "knn_acc" in header:
        for r in rows:
            r["knn_acc_readout"], r["knn_acc"] = r.pop("knn_acc"), None
    return rows


# ----- resume: everything checked before anything is written -----
def config_change(saved: dict, now: dict, network_only: bool = False) -> str:
    """The first change between a checkpoint's config and config.toml that resume refuses (``core/resume.py`` has
    the policy of every field), in words ("the loss was changed from ntxent to dcl"), or "" when there is none.
    ``network_only``: changes to what the network's state depends on only (embed, export)."""
    return resume_policy.refused(saved, now, resume_policy.STATE_SECTIONS if network_only else None)


def saved_config(state: dict) -> dict | None:
    """The config a checkpoint was written with, as a dict brought up to date (``config.upgrade``), or None."""
    from workbench.core.config import upgrade

    saved = state.get("config")
    return upgrade(saved)[0] if isinstance(saved, dict) else None


def resume_notes(state: dict, cfg) -> list[str]:
    """The lines that state what reading the checkpoint's config brought up to date (a run from an older version)
    and what config.toml changed since the checkpoint and resume allows (none: [])."""
    from workbench.core.config import upgrade

    saved = state.get("config")
    if not isinstance(saved, dict):
        return []
    notes = [f"resume: this run was written by an older version: {n}; config.toml is written so" for n in upgrade(saved)[1]]
    return notes + resume_policy.allowed(saved_config(state), cfg.to_dict(), int(state.get("step", 0)))


def state_mismatch(expected: dict, found: dict) -> str:
    """What differs between a freshly built state dict's tensors and a checkpoint's, in a few words."""
    missing = [k for k in expected if k not in found]
    extra = [k for k in found if k not in expected]
    shapes = [k for k in expected if k in found and hasattr(found[k], "shape") and tuple(found[k].shape) != tuple(expected[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} tensor(s) the config needs are missing (e.g. {missing[0]})")
    if extra:
        parts.append(f"{len(extra)} tensor(s) the config does not have (e.g. {extra[0]})")
    if shapes:
        k = shapes[0]
        parts.append(f"{k} has shape {tuple(found[k].shape)} in the checkpoint but {tuple(expected[k].shape)} for config.toml")
    return "; ".join(parts)


def load_run_config(run: Path):
    """A run folder's config.toml, migrated: a run written before ``eval.readout`` existed read its kNN through the
    whitening its checkpoints hold, so it keeps that read-out, now reported beside the field's kNN."""
    from workbench.core.config import Config, tomllib

    path = run / "config.toml"
    cfg = Config.load(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return cfg
    if isinstance(raw.get("eval"), dict) and "readout" not in raw["eval"]:
        cfg = cfg.replace("eval", readout="whitened")
    return cfg


def checkpoint_mismatch(run: Path, cfg, state: dict, verb: str) -> str:
    """Why ``state`` (a run's checkpoint) does not fit ``cfg`` (its config.toml), as the one message resume, embed and
    export give ("cannot VERB 'RUN': ...; what to do"), or "" when it fits. ``verb``: resume | embed | export."""
    saved = saved_config(state)
    change = config_change(saved, cfg.to_dict(), network_only=verb != "resume") if saved is not None else ""
    if not change:
        expected = _model_shapes(cfg, state)
        diff = state_mismatch(expected, state["model"]) if expected is not None else ""
        change = f"the checkpoint does not fit config.toml's model ({diff})" if diff else ""
    else:
        change += " in config.toml after the checkpoint was written"
    if not change:
        return ""
    advice = "restore config.toml as it was" + (f", or start a new run from it (workbench train {run / 'config.toml'})"
                                                  if verb == "resume" else " (the checkpoint was written with the other value)")
    return f"cannot {verb} '{run}': {change}; {advice}"


def check_metrics(run: Path) -> None:
    """A resumed run appends to metrics.csv: refuse one whose first line is not its header (a damaged or foreign
    file), naming the command that moves it aside, before anything is written."""
    path = run / "metrics.csv"
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            first = f.readline()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"cannot resume '{run}': metrics.csv cannot be read ({exc.strerror or exc})") from None
    cols = next(csv.reader([first]), []) if first.strip() else []
    if first and not is_metrics_header(cols):
        aside = path.with_name("metrics.damaged.csv")
        raise ConfigError(f"cannot resume '{run}': metrics.csv is damaged (its first line is not the metrics header: "
                          f"{first.strip()[:40]!r}); move it aside to resume with a new one: "
                          f"mv {shlex.quote(str(path))} {shlex.quote(str(aside))}")


def check_resume(run_dir: str | Path):
    """Validate a resume completely before anything is written: nobody else owns the run folder (``runlock``), its
    config.toml, its checkpoint (a workbench checkpoint dict, finite weights), the config the checkpoint was written
    with against config.toml (``core/resume.py``), the model's tensors (names and shapes, built on the meta device,
    so no memory and no data) and metrics.csv. Returns ``(Config, state)``; raises ConfigError naming what differs
    and what to do."""
    run = find_run(run_dir)
    holder = runlock.owner(run)
    if holder and holder.get("pid") != os.getpid():
        raise ConfigError(f"cannot resume: {runlock.busy_message(run, holder)}")
    cfg = load_run_config(run)
    ckpt = run / "checkpoints" / "last.pt"
    state = load_checkpoint(ckpt)
    for key in ("step", "epoch", "images_in_epoch"):
        if not isinstance(state[key], int) or state[key] < 0:
            raise ConfigError(f"checkpoint '{ckpt}': '{key}' is {state[key]!r}, not a step count; {previous_advice(ckpt)}")
    saved = state.get("config")
    if isinstance(saved, dict) and isinstance(saved.get("augment"), dict) and "start_size" not in saved["augment"]:
        cfg = cfg.replace("augment", start_size=1.0)  # a run from before progressive resolution: full-size views throughout
    mismatch = checkpoint_mismatch(run, cfg, state, "resume")
    if mismatch:
        raise ConfigError(mismatch)
    check_metrics(run)
    return cfg, state


def _model_shapes(cfg, state: dict) -> dict | None:
    """The model's state dict for ``cfg`` built on the meta device (shapes only), or None when the
    network cannot be built from the checkpoint's recorded input (left to the loader to report)."""
    from workbench.core.methods import build_network

    try:
        with torch.device("meta"):
            net = build_network(cfg, int(state["channels"]), int(state["image_size"]))
    except (ConfigError, TypeError, ValueError, RuntimeError, NotImplementedError):
        return None
    return net.state_dict()


def write_status(run_dir: str | Path, state: str, step: int = 0, message: str = "") -> None:
    """Record a run's state ("running", "finished", "stopped", "budget" or "failed") in ``status.json`` (atomic), with
    the writing process's pid and host, so a reader can tell a run whose process was killed ("interrupted")."""
    now = round(time.time(), 3)
    prev = read_status(run_dir)
    elapsed = float(prev.get("elapsed_s", 0.0))
    if prev.get("state") == "running":  # time spent running since the last record (not the time between sessions)
        elapsed += max(0.0, now - float(prev.get("updated", now)))
    text = json.dumps({"state": state, "step": int(step), "elapsed_s": round(elapsed, 3), "updated": now, "message": message,
                       "pid": os.getpid(), "host": socket.gethostname()})
    atomic_write_bytes(Path(run_dir) / "status.json", text.encode("utf-8"))


def read_status(run_dir: str | Path) -> dict:
    """The run's own ``status.json`` when it wrote one, else {}."""
    try:
        return json.loads((Path(run_dir) / "status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
