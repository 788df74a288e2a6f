"""What a run folder holds (where each file is: ``core/runfolder.py``): its checkpoints, its metrics and its config.

- checkpoints/last.pt, written atomically (temp file + rename), never with non-finite weights, loaded with
  weights_only=True; checkpoints/prev.pt, the checkpoint before it;
- metrics.csv, append-only with a fixed header (old headers migrated), read back as dicts;
- config.toml, read back migrated (``load_run_config``).

Files are written through a temporary file in the same folder, fsynced, then renamed over the
target, with the permissions a plain ``open`` would give (the user's umask), so a crash at any
moment leaves either the old file or the new one, never a torn one.
"""
from __future__ import annotations

import csv
import io
import logging
import os
import platform
import shlex
import shutil
import time
import zipfile
from pathlib import Path

import torch

from workbench.core.files import DiskFullError, atomic_write_bytes, atomic_write_text, file_mode, orphans  # noqa: F401 (re-exported)
from workbench.core import runfolder as layout
from workbench.core.metrics import EVAL_METRICS
from workbench.core.registry import ConfigError
from workbench.core.sinks import Sink

METRIC_COLUMNS = ["time", "epoch", "step", "loss", "lr", "images_per_s", *EVAL_METRICS]
# metrics.csv written before the field's kNN protocol became the headline has no such column: its "knn_acc" was read
# through the whitened read-out, and is read (and, on resume, rewritten) as "knn_acc_readout"
NEW_PROTOCOL_COLUMN = "eval_queries"


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
        prev = layout.previous_checkpoint(path)
        tmp = path.with_name(f".{prev.name}.{os.getpid()}.tmp")
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
    prev = layout.previous_checkpoint(path)
    if Path(path) != prev and prev.is_file():
        try:
            load_checkpoint(prev)
        except ConfigError:
            return "prev.pt beside it is unusable too; start a new run"
        return f"go back to the previous checkpoint with: mv {shlex.quote(str(prev))} {shlex.quote(str(path))}"
    return "start a new run"


def load_run_checkpoint(run_dir: str | Path) -> tuple[dict, Path]:
    """A run's checkpoint for reading (embed, export, inspect): ``last.pt``, or ``prev.pt`` with a
    warning when last.pt is unusable and prev.pt is whole (nothing is written). Returns (state, file)."""
    last = layout.checkpoint_path(run_dir)
    try:
        return load_checkpoint(last), last
    except ConfigError as exc:
        prev = layout.checkpoint_path(run_dir, "prev")
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
    owned = (run, layout.checkpoints_dir(run))
    for folder in (*owned, layout.export_dir(run), *sorted(layout.export_dir(run).glob("*/"))):
        for p in orphans(folder, unnamed_after=0 if folder in owned else 3600):
            p.unlink(missing_ok=True)
            gone.append(p)
    return gone


def truncate_metrics(run_dir: str | Path, step: int) -> int:
    """Drop metrics.csv rows logged after ``step`` (and torn rows), so a resumed run does not repeat
    steps; returns how many rows were dropped. Rewritten atomically."""
    path = layout.metrics_path(run_dir)
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


def python_resume_message(run: Path) -> str:
    """A run trained on images passed from Python is resumed from Python, with the same images."""
    return (f"cannot resume '{run}' without its images: it was trained on images passed to workbench.fit() from Python, "
            f"which its config cannot load again; resume it from Python with the same images: "
            f"workbench.fit(resume={str(run)!r}, data=images, labels=labels)")


class MetricsLog(Sink):
    """Append-only metrics.csv of the run folder ``run_dir`` with a fixed header (METRIC_COLUMNS + the loss's own
    terms): the training loop's sink of record (core/sinks.py)."""

    def __init__(self, run_dir: str | Path, terms: tuple[str, ...]):
        self.path = path = layout.metrics_path(run_dir)
        self.columns = METRIC_COLUMNS + [f"term_{t}" for t in terms]
        new = not path.exists() or path.stat().st_size == 0
        if not new:
            self._migrate(path)
        self._f = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115 - open for the run's lifetime
        self._w = csv.DictWriter(self._f, self.columns, extrasaction="ignore")
        if new:
            self._w.writeheader()

    def write(self, row: dict) -> None:
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


def is_metrics_header(cols: list[str]) -> bool:
    """Whether ``cols`` is a metrics.csv header: time, epoch, step first, then known columns and loss terms."""
    return cols[:3] == METRIC_COLUMNS[:3] and all(c in METRIC_COLUMNS or c.startswith("term_") for c in cols)


def read_metrics(run_dir: str | Path) -> list[dict]:
    """metrics.csv as a list of dicts of floats (None where empty), an old-protocol kNN under ``knn_acc_readout``
    (see NEW_PROTOCOL_COLUMN). ConfigError naming the file when its first line is not the metrics header; rows that
    do not parse (a torn last line, garbage) are left out with one warning naming the file and the first such line."""
    path = layout.metrics_path(run_dir)
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


def load_run_config(run: Path):
    """A run folder's config.toml, migrated: a run written before ``eval.readout`` existed read its kNN through the
    whitening its checkpoints hold, so it keeps that read-out, now reported beside the field's kNN."""
    from workbench.core.config import Config, tomllib

    path = layout.config_path(run)
    cfg = Config.load(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return cfg
    if isinstance(raw.get("eval"), dict) and "readout" not in raw["eval"]:
        cfg = cfg.replace("eval", readout="whitened")
    return cfg


