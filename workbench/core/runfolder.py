"""A run folder: the one module that knows its files, their names, how a new one is named, and what state the run is in.

    runs/2026-11-22_143015_bundled-ntxent/      run_name(dataset, loss), made by new_run_dir (never a collision)
      config.toml           config_path    resolved config (every default) + [meta] versions and seed
      metrics.csv           metrics_path   one row per logged step and per evaluation (core/runs.py writes it)
      run.log               log_path       warnings, errors and their full tracebacks (RunLog, append_log)
      status.json           status_path    the run's state as its trainer recorded it (write_status, run_state)
      owner.lock            runlock        the process that owns the folder now
      embedding_view.npz    view_path      the 2-D layout last shown of its embedding (save_view, read_view)
      checkpoints/last.pt   checkpoint_path(run), checkpoint_path(run, "prev") (core/runs.py writes them)
      checks/               checks_dir     what ``workbench check`` found (CHECK_SUMMARY and one CSV per list)
      export/<format>/      export_dir     where exports go unless told otherwise
      tensorboard/          tensorboard_dir  the TensorBoard mirror (eval.tensorboard)

A run's state is a recorded fact: status.json says running, finished, budget, stopped or failed (with the pid and
host of its writer, so a killed run reads "interrupted"). A folder written before status.json existed is read as
that version's table read it: "failed" when run.log holds an error, "finished" by its metrics, else running while
its files change, else stopped.
"""
from __future__ import annotations

import errno
import io
import json
import logging
import os
import socket
import time
from pathlib import Path

from workbench.core.files import atomic_write_bytes
from workbench.core.registry import ConfigError
from workbench.core.runlock import pid_alive

CONFIG, METRICS, LOG, STATUS, VIEW = "config.toml", "metrics.csv", "run.log", "status.json", "embedding_view.npz"
CHECKPOINTS, CHECKS, EXPORT, TENSORBOARD = "checkpoints", "checks", "export", "tensorboard"
CHECK_SUMMARY = "summary.json"  # in checks_dir: what the last data check found (core/checks.py writes it)
STATES = ("running", "finished", "budget", "stopped", "failed")  # what status.json records; "interrupted" is read
RUNNING_WITHIN_S = 120  # a folder from before status.json whose files changed this recently is still running


# ----- the layout -----
def config_path(run: str | Path) -> Path:
    return Path(run) / CONFIG


def metrics_path(run: str | Path) -> Path:
    return Path(run) / METRICS


def damaged_metrics_path(run: str | Path) -> Path:
    """Where a damaged metrics.csv is moved aside to, so a resume starts a new one."""
    return Path(run) / "metrics.damaged.csv"


def log_path(run: str | Path) -> Path:
    return Path(run) / LOG


def status_path(run: str | Path) -> Path:
    return Path(run) / STATUS


def view_path(run: str | Path) -> Path:
    return Path(run) / VIEW


def checkpoints_dir(run: str | Path) -> Path:
    return Path(run) / CHECKPOINTS


def checkpoint_path(run: str | Path, which: str = "last") -> Path:
    """RUN/checkpoints/last.pt (``which="prev"``: the checkpoint before it)."""
    return checkpoints_dir(run) / f"{which}.pt"


def previous_checkpoint(path: str | Path) -> Path:
    """The ``prev.pt`` beside a checkpoint file."""
    return Path(path).with_name("prev.pt")


def has_checkpoint(run: str | Path) -> bool:
    return checkpoint_path(run).is_file()


def checks_dir(run: str | Path) -> Path:
    """Where a run's data checks go by default: RUN/checks/ (one CSV per list and CHECK_SUMMARY)."""
    return Path(run) / CHECKS


def export_dir(run: str | Path, fmt: str | None = None) -> Path:
    """Where an export goes unless told otherwise: RUN/export/FORMAT/ (one folder per format, so a second format never
    replaces the first one's model card); RUN/export/ without ``fmt``."""
    folder = Path(run) / EXPORT
    return folder / str(fmt) if fmt is not None else folder


def tensorboard_dir(run: str | Path) -> Path:
    return Path(run) / TENSORBOARD


# ----- what a run folder is, and its name -----
def is_run_folder(path: str | Path) -> bool:
    """A folder a run wrote: its config.toml, checkpoints/ (made with the folder) and status.json, metrics.csv or a
    checkpoint; a project's own config.toml beside an empty checkpoints/ folder is not one."""
    path = Path(path)
    return (config_path(path).is_file() and checkpoints_dir(path).is_dir()
            and (status_path(path).is_file() or metrics_path(path).is_file() or has_checkpoint(path)))


def run_folders(root: str | Path) -> list[Path]:
    """The run folders under ``root``, newest first: its own, and each sweep's trials (``sweeps/<sweep>/<run>``), so
    a trial can be compared, overlaid and exported like any run."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for pattern in ("*", "sweeps/*/*") for p in root.glob(pattern) if is_run_folder(p)]
    return sorted(found, key=lambda p: p.name, reverse=True)


def find_run(path: str | Path) -> Path:
    """``path`` as a run folder; ConfigError saying what it is otherwise."""
    run = Path(path)
    if is_run_folder(run):
        return run
    if config_path(run).is_file() and checkpoints_dir(run).is_dir():  # made, but nothing written by its run yet
        raise ConfigError(f"checkpoint '{checkpoint_path(run)}' does not exist; has this run written a checkpoint yet?")
    if config_path(run).is_file():
        raise ConfigError(f"'{run}' holds a config.toml but is not a run folder (a run's also holds checkpoints/ and "
                          "status.json, metrics.csv or a checkpoint); give a run folder, or train from that config "
                          "(workbench train CONFIG.toml)")
    if not run.exists():
        raise ConfigError(f"'{run}' is not a run folder: it does not exist (a run folder holds config.toml)")
    holder = next((p for p in run.parents if is_run_folder(p)), None)
    if holder is not None:
        raise ConfigError(f"'{run}' is not a run folder but {'a file' if run.is_file() else 'a folder'} inside one; "
                          f"give the run folder that holds it: {holder}")
    if run.is_file():
        raise ConfigError(f"'{run}' is not a run folder but a file; give a run folder (one holding config.toml)")
    raise ConfigError(f"'{run}' is not a run folder (no config.toml in it)")


def run_name(dataset: str, loss: str, when: float | None = None) -> str:
    """A new run folder's name: the local time it starts, the dataset and the loss (``2026-11-22_143015_bundled-ntxent``)."""
    return f"{time.strftime('%Y-%m-%d_%H%M%S', time.localtime(when))}_{dataset}-{loss}"


def run_date(run: str | Path) -> str:
    """When the run started ("2026-11-22 14:30:15"): recorded in status.json, else read from the folder's name."""
    created = read_status(run).get("created")
    if isinstance(created, (int, float)):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))
    stamp = Path(run).name[:17]
    return f"{stamp[:10]} {stamp[11:13]}:{stamp[13:15]}:{stamp[15:17]}" if len(stamp) == 17 and stamp[10] == "_" else stamp


# ----- making one -----
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
    root = Path(check_runs_root(root, what))
    base = path = root / run_name(cfg.data.name, cfg.loss.name)
    try:
        root.mkdir(parents=True, exist_ok=True)
        for i in range(1, 10_000):
            path = base if i == 1 else Path(f"{base}-{i}")
            try:
                path.mkdir()
            except FileExistsError:
                continue
            checkpoints_dir(path).mkdir()
            return path
    except OSError as exc:
        if exc.errno not in (errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.EROFS):
            raise  # disk full and the like: events.explain words them
        raise ConfigError(f"{what} '{root}': cannot create the run folder '{path}' ({exc.strerror or exc}); "
                          "choose a folder you can write to") from None
    raise ConfigError(f"{what} '{root}': 10,000 run folders named '{base.name}' exist already; choose another folder")



# ----- its log -----
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
        self.path = log_path(run_dir)
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


def append_log(run: str | Path, text: str, level: str = "ERROR") -> Path:
    """Append ``text`` (e.g. a traceback) to the run's run.log as one record, in RunLog's line format; returns the file."""
    return append_record(log_path(run), text, level)


def append_record(path: str | Path, text: str, level: str = "ERROR") -> Path:
    """Append one record in run.log's line format (time, level, text) to the log file ``path`` (made if missing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {level} {text.rstrip()}\n")
    return path


def log_holds(run: str | Path, text: str) -> bool:
    """Whether the run's run.log already holds ``text``."""
    try:
        return text in log_path(run).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


# ----- the run's state -----
def write_status(run_dir: str | Path, state: str, step: int = 0, message: str = "") -> None:
    """Record a run's state (one of STATES) in ``status.json`` (atomic), with the writing process's pid and host, so
    a reader can tell a run whose process was killed ("interrupted"), and when the run was first started."""
    now = round(time.time(), 3)
    prev = read_status(run_dir)
    elapsed = float(prev.get("elapsed_s", 0.0))
    if prev.get("state") == "running":  # time spent running since the last record (not the time between sessions)
        elapsed += max(0.0, now - float(prev.get("updated", now)))
    record = {"state": state, "step": int(step), "elapsed_s": round(elapsed, 3), "updated": now, "message": message,
              "pid": os.getpid(), "host": socket.gethostname()}
    created = prev.get("created", None if prev else now)  # a status.json from before "created": the name says when
    text = json.dumps(record | ({"created": created} if created is not None else {}))
    atomic_write_bytes(status_path(run_dir), text.encode("utf-8"))


def read_status(run_dir: str | Path) -> dict:
    """The run's own ``status.json`` when it wrote one, else {}."""
    try:
        status = json.loads(status_path(run_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return status if isinstance(status, dict) else {}


def run_state(run: str | Path, ended: bool = False, status: dict | None = None) -> str:
    """The run's state: what status.json records ("interrupted" when it says running and its writer is gone). A
    folder from before status.json: "failed" when run.log holds an error, "finished" when ``ended`` (its metrics
    reached the end its config sets), "running" while its files change, else "stopped"."""
    status = read_status(run) if status is None else status
    if not status.get("state"):
        return _state_before_status(Path(run), ended)
    if status["state"] == "running" and _writer_gone(Path(run), status):
        return "interrupted"  # the process that wrote it was killed; the checkpoint stays resumable
    return status["state"]


def _state_before_status(run: Path, ended: bool) -> str:
    if log_holds(run, "ERROR") or log_holds(run, "Traceback"):
        return "failed"
    if ended:
        return "finished"
    newest = max((p.stat().st_mtime for p in (metrics_path(run), config_path(run)) if p.exists()), default=0)
    return "running" if time.time() - newest < RUNNING_WITHIN_S else "stopped"


def _writer_gone(run: Path, status: dict) -> bool:
    """A status.json saying "running" whose writer is gone: its pid is not alive on this host, or (another host,
    or no pid recorded) nothing in the folder changed for an hour."""
    if status.get("host") == socket.gethostname() and status.get("pid"):
        alive = pid_alive(int(status["pid"]))
        if alive is not None:
            return not alive
    newest = max((p.stat().st_mtime for p in (metrics_path(run), status_path(run)) if p.exists()), default=0)
    return time.time() - max(newest, float(status.get("updated", 0))) > 3600


# ----- the embedding's layout -----
def save_view(run_dir: str | Path, xy, indices) -> Path:
    """Keep the 2-D layout last shown of a run's held-out embedding: ``xy`` (N, 2), ``indices`` (N,) held-out rows."""
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, xy=np.asarray(xy, np.float32), indices=np.asarray(indices, np.int64))
    path = view_path(run_dir)
    atomic_write_bytes(path, buf.getvalue())
    return path


def read_view(run_dir: str | Path):
    """(xy (N, 2), indices (N,)) saved by ``save_view``, or None."""
    import numpy as np

    try:
        with np.load(view_path(run_dir)) as f:
            return f["xy"], f["indices"]
    except (OSError, KeyError, ValueError):
        return None
