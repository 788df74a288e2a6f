"""A run folder's owner: one process at a time trains (or resumes) a run, or runs a sweep.

    lock = RunLock.acquire(run_dir, "training")   # ConfigError naming the owner when another process holds it
    ...                                           # train; last.pt, metrics.csv and status.json are ours
    lock.release()                                # also when the process dies, whatever the way

The lock is the file ``RUN/owner.lock`` holding ``{"pid", "host", "what", "since"}`` and, on POSIX, an
``flock`` on it held while the owner lives. The kernel drops an ``flock`` with its process, so a lock
left by a killed process (kill -9, a crash, a power cut) is stale by construction: the next owner takes
it and says whose it was. Where ``flock`` is missing (Windows) a lock whose process id is not alive on
this host is stale. Readers (embed, export, the runs table) never take it; they ask ``owner(run_dir)``
to say that what they read belongs to a run still being trained.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from workbench.core.registry import ConfigError

LOCK_NAME = "owner.lock"

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


def pid_alive(pid: int) -> bool | None:
    """Whether process ``pid`` exists on this machine (None where that cannot be told)."""
    if os.name != "posix" or pid <= 0:
        return None
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    except OSError:
        return None
    return True


def _read(path: Path) -> dict:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _describe(info: dict) -> str:
    pid, host = info.get("pid", "?"), info.get("host", "?")
    where = "this machine" if host == socket.gethostname() else f"host {host}"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["since"])) if info.get("since") else "?"
    return f"process {pid} on {where} ({info.get('what', 'training')} since {since})"


@dataclass
class RunLock:
    """A held lock; ``stale`` describes the dead owner whose lock was taken over ("" when there was none)."""

    path: Path
    fd: int | None
    stale: str = ""

    @classmethod
    def acquire(cls, folder: str | Path, what: str = "training") -> RunLock:
        """Own ``folder`` (a run or sweep folder); ConfigError naming the live owner when another process has it."""
        path = Path(folder) / LOCK_NAME
        for _ in range(10):  # again when the file was replaced between opening and locking it (an owner leaving)
            before = _read(path)
            fd = _open(path, folder)
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    raise ConfigError(busy_message(folder, _read(path) or before)) from None
                if not _same_file(fd, path):
                    os.close(fd)
                    continue
            elif before and before.get("host") == socket.gethostname() and pid_alive(int(before.get("pid", 0))):
                os.close(fd)
                raise ConfigError(busy_message(folder, before))
            break
        else:
            raise ConfigError(busy_message(folder, _read(path)))
        stale = _describe(before) if before and before.get("pid") != os.getpid() else ""
        info = {"pid": os.getpid(), "host": socket.gethostname(), "what": what, "since": round(time.time(), 3)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
        return cls(path, fd, stale)

    def release(self) -> None:
        """Give the folder up: the lock file goes (it is stale anyway once its flock is released)."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            if _read(self.path).get("pid") == os.getpid():
                self.path.unlink()
        os.close(self.fd)  # closing drops the flock
        self.fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self):
        if getattr(self, "fd", None) is not None:
            os.close(self.fd)


def _open(path: Path, folder) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ConfigError(f"cannot lock '{folder}' ({exc.strerror or exc}); check that you can write there") from None


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (an owner leaving unlinks it: a lock on the old file is none)."""
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except OSError:
        return False


def busy_message(folder: str | Path, info: dict) -> str:
    who = _describe(info) if info else "another process"
    return (f"'{folder}' is in use by {who}; wait for it to end or stop it (Ctrl-C / kill {info.get('pid', 'PID')}) "
            "before resuming it, or start a new run")


def owner(folder: str | Path) -> dict:
    """The live owner of ``folder`` ({} when nobody holds it): the lock file's pid, host, what and since."""
    path = Path(folder) / LOCK_NAME
    info = _read(path)
    if not info:
        return {}
    if fcntl is None:
        alive = info.get("host") == socket.gethostname() and pid_alive(int(info.get("pid", 0)))
        return info if alive else {}
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return {}
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # granted only when no owner holds it
    except OSError:
        return info
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return {}
    finally:
        os.close(fd)
