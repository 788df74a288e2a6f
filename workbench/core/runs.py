"""Run folders: resolved config, metrics.csv, atomic checkpoints, resume.

    runs/2026-11-22_143015_bundled-ntxent/
      config.toml            resolved config (every default) + [meta] versions and seed
      metrics.csv            one row per logged step and per evaluation
      checkpoints/last.pt    written atomically (temp file + rename); loaded with weights_only=True
"""
from __future__ import annotations

import csv
import io
import os
import platform
import tempfile
import time
import zipfile
from pathlib import Path

import torch

from workbench.core.registry import ConfigError

METRIC_COLUMNS = ["time", "epoch", "step", "loss", "lr", "images_per_s", "knn_acc", "linear_acc",
                  "alignment", "uniformity", "emb_std", "eff_rank"]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def new_run_dir(root: str | Path, cfg) -> Path:
    stamp = time.strftime("%Y-%m-%d_%H%M%S")
    base = Path(root) / f"{stamp}_{cfg.data.name}-{cfg.loss.name}"
    path, i = base, 1
    while path.exists():
        i += 1
        path = Path(f"{base}-{i}")
    (path / "checkpoints").mkdir(parents=True)
    return path


def versions(seed: int) -> dict:
    import numpy
    import torchvision

    from workbench import __version__

    return {"workbench": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": numpy.__version__, "python": platform.python_version(), "seed": seed,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}


def save_checkpoint(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint without unpickling arbitrary objects; clear ConfigError when damaged."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint '{path}' does not exist; has this run finished an epoch or been stopped yet?")
    try:
        return torch.load(io.BytesIO(path.read_bytes()), map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"checkpoint '{path}' is corrupted or truncated ({first}); use another checkpoint or start a new run") from None
    except Exception as exc:  # pickle.UnpicklingError for disallowed globals and the like
        raise ConfigError(f"checkpoint '{path}' cannot be loaded safely: it is corrupted or not a workbench checkpoint ({type(exc).__name__}); nothing in it was executed") from None


def find_run(path: str | Path) -> Path:
    run = Path(path)
    if not (run / "config.toml").is_file():
        raise ConfigError(f"'{run}' is not a run folder (no config.toml in it)")
    return run


class MetricsLog:
    """Append-only metrics.csv with a fixed header (METRIC_COLUMNS + the loss's own terms),
    mirrored into TensorBoard event files under ``tensorboard/`` when asked."""

    def __init__(self, path: Path, terms: tuple[str, ...], tensorboard: bool = False):
        self.path = path
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError("eval.tensorboard needs the tensorboard package: pip install tensorboard") from None
            self.tb = SummaryWriter(str(path.parent / "tensorboard"))
        self.columns = METRIC_COLUMNS + [f"term_{t}" for t in terms]
        new = not path.exists() or path.stat().st_size == 0
        self._f = open(path, "a", newline="", encoding="utf-8")
        self._w = csv.DictWriter(self._f, self.columns, extrasaction="ignore")
        if new:
            self._w.writeheader()

    def write(self, **row) -> None:
        for k, v in row.pop("terms", {}).items():
            row[f"term_{k}"] = v
        row.setdefault("time", round(time.time(), 3))
        if self.tb is not None:
            for k, v in row.items():
                if k not in ("time", "epoch", "step") and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, row.get("step", 0))
        self._w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        self._f.flush()

    def close(self) -> None:
        self._f.close()
        if self.tb is not None:
            self.tb.close()


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        rows = []
        for r in csv.DictReader(f):
            rows.append({k: (float(v) if v not in ("", None) else None) for k, v in r.items()})
        return rows
