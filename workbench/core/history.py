"""A run's history from its folder: the events its metrics.csv records, and a one-row summary for the runs table
(its state and date as ``core/runfolder.py`` reads them).

    events = read_history("runs/2026-11-22_143015_bundled-ntxent")   # [StepEvent, ..., EvalEvent, ...]
    row = run_summary(run_dir)                                        # status, dataset, loss, kNN, ...
"""
from __future__ import annotations

from pathlib import Path

from workbench.core.events import EvalEvent, StepEvent
from workbench.core.metrics import EVAL_METRICS
from workbench.core.runfolder import CHECK_SUMMARY, checks_dir, read_status, run_date, run_state
from workbench.core.runs import load_run_config, read_metrics

EVAL_KEYS = tuple(EVAL_METRICS)
# the runs table's figures beside the kNN (the final value of each): read-out kNN, retrieval, probes
SUMMARY_KEYS = ("knn_acc_readout", "map_at_r", "precision_at_1", "linear_acc", "linear_acc_10pct", "linear_acc_1pct")


def is_evaluation(row: dict) -> bool:
    """A metrics.csv row written by an evaluation (a run from before the field's protocol has only its read-out's kNN)."""
    return any(row.get(k) is not None for k in ("knn_acc", "knn_acc_readout", "eval_queries"))


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


def reached_end(cfg, rows: list[dict]) -> bool:
    """Whether metrics.csv's rows show the run evaluated at the end its config sets (epochs, or max_steps)."""
    evals = [r for r in rows if is_evaluation(r)]
    steps = [r["step"] for r in rows if r.get("step") is not None]
    if evals and int(evals[-1].get("epoch") or 0) >= cfg.train.epochs:
        return True
    return bool(evals and cfg.train.max_steps and steps and max(steps) >= cfg.train.max_steps)


def run_summary(run_dir: str | Path) -> dict:
    """One row for the runs table; ``error`` is set (and the rest mostly empty) when the config cannot be read."""
    from workbench.core.registry import ConfigError

    run = Path(run_dir)
    row = {"run": str(run), "name": run.name, "date": run_date(run), "status": "?", "dataset": "",
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
    state = run_state(run, reached_end(cfg, rows), status)
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


def _duration(status: dict, times: list[float]) -> float | None:
    """Seconds spent running (status.json), else between the first and last metrics rows."""
    if "elapsed_s" in status:
        if status.get("state") == "running" and times:  # killed: add what it ran after its last record
            return float(status["elapsed_s"]) + max(0.0, times[-1] - float(status.get("updated", times[-1])))
        return float(status["elapsed_s"])
    return (times[-1] - times[0]) if len(times) > 1 else None
