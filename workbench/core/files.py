"""Atomic file writes for everything the workbench saves (run files, configs, exports).

A file is written to a temporary file in the same folder, fsynced, then renamed over the target,
with the permissions a plain ``open`` would give (the user's umask; ``mkstemp`` alone gives 0600),
so a crash at any moment leaves either the old file or the new one, never a torn one. Errors
name the target, never the temporary file; a full disk says how much was needed and is free.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
import time
from pathlib import Path


class DiskFullError(OSError):
    """No space left while writing ``filename``; ``str()`` is the user's line with path and sizes."""

    def __init__(self, path: Path, needed: int, advice: str = "free some space on that disk or write elsewhere (--out)"):
        super().__init__(errno.ENOSPC, "No space left on device", str(path))
        self.needed = needed
        try:
            free = shutil.disk_usage(path.parent).free
        except OSError:
            free = -1
        sizes = [f"it needs about {_mb(needed)}" if needed > 0 else "", f"{_mb(free)} is free" if free >= 0 else ""]
        self.text = (f"disk full writing '{path}'" + (": " + " and ".join(x for x in sizes if x) if any(sizes) else "")
                     + "; " + advice)

    def __str__(self) -> str:
        return self.text


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def file_mode() -> int:
    """The mode ``open()`` gives a new file (0o666 less the umask); mkstemp would give 0o600."""
    try:  # read the umask without changing it (os.umask would race with other threads)
        with open("/proc/self/status", encoding="ascii") as f:
            umask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically; errors name ``path`` (never the temporary file)."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), file_mode())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, DiskFullError):
            if exc.errno == errno.ENOSPC:
                raise DiskFullError(path, len(data)) from exc
            raise OSError(exc.errno, f"cannot write '{path}': {exc.strerror or exc}") from exc
        raise


def temp_prefix(path: Path) -> str:
    """The start of a temporary file's name for ``path``: hidden, with the writer's process id, so that what a killed
    writer left can be told from what a live one is writing (``orphans``)."""
    return f".{Path(path).name}.{os.getpid()}."


def orphans(folder: Path, unnamed_after: float = 3600) -> list[Path]:
    """Temporary files (``.*.tmp``) in ``folder`` whose writer is gone: the process id in the name is not alive on
    this machine. A name without a process id (an older version's) counts as an orphan ``unnamed_after`` seconds
    after its last write."""
    found = []
    for p in sorted(Path(folder).glob(".*.tmp")) if Path(folder).is_dir() else ():
        parts = p.name.split(".")  # .NAME.PID.RANDOM.tmp (temp_prefix) or .NAME.PID.tmp
        pid = int(parts[-3]) if len(parts) > 3 and parts[-3].isdigit() else int(parts[-2]) if parts[-2].isdigit() else 0
        try:
            old = time.time() - p.stat().st_mtime >= unnamed_after
        except OSError:
            continue
        if (pid and not _alive(pid)) or (not pid and old):
            found.append(p)
    return found


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's, or cannot be told: leave it
    return True


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
