"""A run's history from its folder: the events its metrics.csv records, a one-row summary for
the runs table, and the last 2-D layout shown of its embedding.

    events = read_history("runs/2026-11-22_143015_bundled-ntxent")   # [StepEvent, ..., EvalEvent, ...]
    row = run_summary(run_dir)                                        # status, dataset, loss, kNN, ...
"""
from __future__ import annotations

import io
import socket
import time
from pathlib import Path

import numpy as np

from workbench.core.events import EvalEvent, StepEvent
from workbench.core.metrics import EVAL_METRICS
from workbench.core.runlock import pid_alive  # noqa: F401 (re-exported)
from workbench.core.runs import (CHECK_SUMMARY, atomic_write_bytes, checks_dir, load_run_config, read_metrics, read_status,  # noqa: F401 (status: re-exported)
                                 write_status)

EVAL_KEYS = tuple(EVAL_METRICS)
# the runs table's figures beside the kNN (the final value of each): read-out kNN, retrieval, probes
SUMMARY_KEYS = ("knn_acc_readout", "map_at_r", "precision_at_1", "linear_acc", "linear_acc_10pct", "linear_acc_1pct")


def is_evaluation(row: dict) -> bool:
    """A metrics.csv row written by an evaluation (a run from before the field's protocol has only its read-out's kNN)."""
    return any(row.get(k) is not None for k in ("knn_acc", "knn_acc_readout", "eval_queries"))
RUNNING_WITHIN_S = 120  # a run without a final state whose files changed this recently is still running


def read_history(run_dir: str | Path) -> list:
    """StepEvent / EvalEvent objects rebuilt from ``metrics.csv``, in the order they were logged.

    A step row has a loss; an evaluation row has a kNN accuracy. Steps logged before a resume
    are kept, so a resumed run shows its whole history. ``eta_s`` is not stored and reads 0.
    """
    events = []
    for r in read_metrics(run_dir):
        if r.get("step") is None:
            continue
        epoch, step = int(r.get("epoch") or 0), int(r["step"])
        if r.get("loss") is not None:
            terms = {k[5:]: v for k, v in r.items() if k.startswith("term_") and v is not None}
            events.append(StepEvent(epoch, step, r["loss"], r.get("lr") or 0.0, r.get("images_per_s") or 0.0, 0.0, terms))
        if is_evaluation(r):
            events.append(EvalEvent(epoch, step, {k: r[k] for k in EVAL_KEYS if r.get(k) is not None}))
    return events


def _infer_state(run: Path, cfg, rows: list[dict]) -> str:
    log = run / "run.log"
    try:
        failed = log.is_file() and any(w in log.read_text(encoding="utf-8", errors="replace") for w in ("ERROR", "Traceback"))
    except OSError:
        failed = False
    if failed:
        return "failed"
    evals = [r for r in rows if is_evaluation(r)]
    newest = max((p.stat().st_mtime for p in (run / "metrics.csv", run / "config.toml") if p.exists()), default=0)
    steps = [r["step"] for r in rows if r.get("step") is not None]
    if evals and int(evals[-1].get("epoch") or 0) >= cfg.train.epochs:
        return "finished"
    if evals and cfg.train.max_steps and steps and max(steps) >= cfg.train.max_steps:
        return "finished"
    if time.time() - newest < RUNNING_WITHIN_S:
        return "running"
    return "stopped"


def run_summary(run_dir: str | Path) -> dict:
    """One row for the runs table; ``error`` is set (and the rest mostly empty) when the config cannot be read."""
    from workbench.core.registry import ConfigError

    run = Path(run_dir)
    stamp = run.name[:17]
    date = f"{stamp[:10]} {stamp[11:13]}:{stamp[13:15]}:{stamp[15:17]}" if len(stamp) == 17 and stamp[10] == "_" else stamp
    row = {"run": str(run), "name": run.name, "date": date, "status": "?", "dataset": "",
           "loss": "", "temperature": None, "encoder": "", "batch": None, "epochs": None, "final_knn": None,
           "best_knn": None, "duration_s": None, "step": 0, "error": ""}
    try:
        cfg = load_run_config(run)  # a run from before eval.readout: its read-out was the whitening
    except ConfigError as exc:
        row.update(status="unreadable", error=str(exc))
        return row
    try:
        rows = read_metrics(run)
    except ConfigError as exc:
        row.update(status="unreadable", error=str(exc))
        return row
    knn = [r["knn_acc"] for r in rows if r.get("knn_acc") is not None]
    knn_steps = [int(r["step"] or 0) for r in rows if r.get("knn_acc") is not None]
    times = [r["time"] for r in rows if r.get("time") is not None]
    steps = [r["step"] for r in rows if r.get("step") is not None]
    status = read_status(run)
    state = status.get("state") or _infer_state(run, cfg, rows)
    if state == "running" and _writer_gone(run, status):
        state = "interrupted"  # the process that wrote it was killed; the checkpoint stays resumable
    epochs_done = [int(r["epoch"]) for r in rows if r.get("epoch") is not None]
    dataset = f"{cfg.data.name} ({Path(cfg.data.root).name or cfg.data.root})" if cfg.data.root else cfg.data.name
    row.update(status=state, dataset=dataset, loss=cfg.loss.name, temperature=cfg.loss.params.get("temperature"),
               encoder=cfg.model.encoder, batch=cfg.train.batch_size, epochs=cfg.train.epochs,
               epochs_done=max(epochs_done, default=0), max_steps=int(cfg.train.max_steps or 0),
               time_budget_s=float(cfg.train.time_budget_s or 0.0),
               final_knn=knn[-1] if knn else None, best_knn=max(knn) if knn else None,
               duration_s=_duration(status, times), step=int(max(steps)) if steps else 0,
               error=status.get("message", "") if state == "failed" else "")
    row["end_step"] = int(status.get("step") or row["step"]) if state in ("finished", "budget", "stopped") else row["step"]
    row["knn_step"] = knn_steps[-1] if knn_steps else None
    row["knn_protocol"] = f"weighted kNN, k={cfg.eval.knn_k}, T={cfg.eval.knn_temperature:g}, on plain backbone features"
    row["readout"] = cfg.eval.readout
    row["findings"] = check_findings(run)
    for key in SUMMARY_KEYS:
        values = [r[key] for r in rows if r.get(key) is not None]
        row[f"final_{key}"] = values[-1] if values else None
    # the kNN of the run's end, or of an earlier evaluation (a run ended, e.g. on its time budget or closed, before
    # its final evaluation): the runs table says which
    row["knn_at_end"] = bool(knn_steps) and knn_steps[-1] >= row["end_step"]
    return row


def check_findings(run: Path) -> list[str]:
    """What the run's last data check (``workbench check``, the Data tab: RUN/checks/summary.json) found worth a look,
    one line each, e.g. "37 held-out images have a near-duplicate in the training split"; [] when never checked."""
    import json

    try:
        found = json.loads((checks_dir(run) / CHECK_SUMMARY).read_text(encoding="utf-8")).get("findings", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [str(f) for f in found] if isinstance(found, list) else []


def _writer_gone(run: Path, status: dict) -> bool:
    """A status.json saying "running" whose writer is gone: its pid is not alive on this host, or (another host,
    or no pid recorded) nothing in the folder changed for an hour."""
    if status.get("host") == socket.gethostname() and status.get("pid"):
        alive = pid_alive(int(status["pid"]))
        if alive is not None:
            return not alive
    newest = max((p.stat().st_mtime for p in (run / "metrics.csv", run / "status.json") if p.exists()), default=0)
    return time.time() - max(newest, float(status.get("updated", 0))) > 3600


def _duration(status: dict, times: list[float]) -> float | None:
    """Seconds spent running (status.json), else between the first and last metrics rows."""
    if "elapsed_s" in status:
        if status.get("state") == "running" and times:  # killed: add what it ran after its last record
            return float(status["elapsed_s"]) + max(0.0, times[-1] - float(status.get("updated", times[-1])))
        return float(status["elapsed_s"])
    return (times[-1] - times[0]) if len(times) > 1 else None


def save_view(run_dir: str | Path, xy: np.ndarray, indices: np.ndarray) -> Path:
    """Keep the 2-D layout last shown of a run's held-out embedding: ``xy`` (N, 2), ``indices`` (N,) held-out rows."""
    buf = io.BytesIO()
    np.savez(buf, xy=np.asarray(xy, np.float32), indices=np.asarray(indices, np.int64))
    path = Path(run_dir) / "embedding_view.npz"
    atomic_write_bytes(path, buf.getvalue())
    return path


def read_view(run_dir: str | Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(xy, indices) saved by ``save_view``, or None."""
    try:
        with np.load(Path(run_dir) / "embedding_view.npz") as f:
            return f["xy"], f["indices"]
    except (OSError, KeyError, ValueError):
        return None
