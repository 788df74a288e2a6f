"""Decoded images on disk: one memory-mappable uint8 file per split, written once, shared by every run.

A store is a folder ``<cache>/store-<key>/`` holding

- ``images.u8``: the images as raw uint8 rows, (n, channels, size, size), C order;
- ``labels.npy`` (n,) int64 (-1 = unlabeled), ``indices.npy`` (n,) int64 (position in the file list);
- ``meta.json``: shape, classes, skipped files and the decisions taken; written last.

The key hashes the folder, the requested channels/size and every file's path, size, mtime, ctime and inode, so
a replaced or rewritten file gives a new store, even one with the same size and an older or restored mtime
(``cp -p``, ``rsync -a``, ``tar x``): the system sets ctime on every write and no program can set it back. A
change of metadata alone (``chmod``, ``touch``, a rename back and forth) also counts as a change: the folder is
decoded again, never read stale. docs/data.md says what is checked. A store is built in a temporary
folder and renamed into place (atomic); a lock file makes concurrent loaders (DDP ranks, two
windows) wait for one builder instead of decoding twice. The cache is ``$WORKBENCH_CACHE`` or the platform's
cache folder (``~/.cache/workbench`` on Linux; ``core/paths.py``).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workbench.core import paths
from workbench.core.files import DiskFullError
from workbench.core.registry import ConfigError

log = logging.getLogger("workbench.data")
FORMAT = 1
_announced: set[str] = set()


def cache_root() -> Path:
    """Where stores live: ``$WORKBENCH_CACHE`` or the platform's cache folder (logged once per process)."""
    root = paths.cache_root()
    if str(root) not in _announced:
        _announced.add(str(root))
        log.info("decoded images are cached in %s (set WORKBENCH_CACHE to move it)", root)
    return root


def key(folder: Path, files: list[tuple], **options) -> str:
    """Hash of the folder, the options and every (path, size, mtime_ns, ctime_ns, inode) in ``files``.

    Size and mtime alone miss a file rewritten with the same size and modification time, which ``cp -p``,
    ``rsync -a`` and ``tar x`` all leave: the status-change time (ctime, set by the system on every write,
    rename and metadata change, and settable by no program) and the inode (a replaced file is a new one) do not."""
    h = hashlib.sha1(f"{FORMAT}|{Path(folder).resolve()}|{sorted(options.items())}".encode())
    for entry in files:
        h.update(("\n" + "\t".join(str(v) for v in entry)).encode())
    return h.hexdigest()[:20]


@dataclass
class Store:
    """An opened store; ``images`` is a read-only memory map (n, C, S, S) uint8."""

    path: Path
    meta: dict
    labels: np.ndarray
    indices: np.ndarray
    images: np.ndarray = field(repr=False)
    _fd: int | None = field(default=None, repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(self.meta["shape"])

    @property
    def row_bytes(self) -> int:
        n, c, s, _ = self.shape
        return c * s * s

    def read(self, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Read ``rows`` (k,) into ``out`` (k, C, S, S) uint8 with positioned reads (no mapping, so
        the process's resident memory does not grow with the store)."""
        flat = out.reshape(len(rows), -1)
        rb = self.row_bytes
        if self._fd is None:  # kept open: a store pruned while a run reads it stays readable (POSIX)
            self._fd = os.open(self.path / "images.u8", os.O_RDONLY)
        if len(rows) > 1 and rows[-1] - rows[0] == len(rows) - 1 and bool((np.diff(rows) == 1).all()):
            return self._read_run(int(rows[0]), flat, out)
        order = np.argsort(rows, kind="stable")
        for j in order.tolist():
            if os.preadv(self._fd, [memoryview(flat[j])], int(rows[j]) * rb) != rb:
                raise OSError(f"{self.path / 'images.u8'} is shorter than its meta.json says")
        return out

    def _read_run(self, first: int, flat: np.ndarray, out: np.ndarray, step: int = 1 << 26) -> np.ndarray:
        """Consecutive rows from ``first`` in reads of up to 64 MB."""
        buf = memoryview(flat.reshape(-1))
        for a in range(0, len(buf), step):
            part = buf[a:a + step]
            if os.preadv(self._fd, [part], first * self.row_bytes + a) != len(part):
                raise OSError(f"{self.path / 'images.u8'} is shorter than its meta.json says")
        return out

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)


def open_store(path: Path) -> Store | None:
    """Open a finished store, or None when it is absent or incomplete."""
    try:
        meta = json.loads((path / "meta.json").read_text())
        shape = tuple(meta["shape"])
        if meta.get("format") != FORMAT or (path / "images.u8").stat().st_size != int(np.prod(shape)):
            return None
        images = np.memmap(path / "images.u8", dtype=np.uint8, mode="r", shape=shape) if shape[0] else np.zeros(shape, np.uint8)
        fd = os.open(path / "images.u8", os.O_RDONLY)
        return Store(path, meta, np.load(path / "labels.npy"), np.load(path / "indices.npy"), images, fd)
    except (OSError, ValueError, KeyError):
        return None


@contextlib.contextmanager
def locked(path: Path, waiting=None):
    """Hold an exclusive lock beside ``path`` (no-op where fcntl is missing); while another process holds
    it, ``waiting()`` is called every 0.2 s (it may raise to give up, e.g. on cancel)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path.with_name(path.name + ".lock"), "a+b")  # noqa: SIM115 - closed by the with below
    except OSError as exc:  # read-only, not a folder, ...
        raise ConfigError(f"cannot write the decoded-image cache '{path.parent}' ({exc.strerror or exc}); set "
                          "WORKBENCH_CACHE to a folder you can write") from None
    with f:
        try:
            import fcntl
        except ImportError:  # Windows: concurrent builders each write, the rename keeps one
            yield
            return
        _acquire(f, fcntl, path, waiting)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _acquire(f, fcntl, path: Path, waiting) -> None:
    said = False
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if not said:
                log.info("data: waiting for another process that is writing %s", path)
                said = True
            if waiting is not None:
                waiting()
            time.sleep(0.2)


class Writer:
    """Builds a store in ``<final>.tmp-<id>/``; ``finish`` compacts, writes the metadata and renames."""

    def __init__(self, final: Path, shape: tuple[int, int, int, int]):
        self.final, self.shape = final, tuple(int(s) for s in shape)
        for old in final.parent.glob(final.name + ".tmp-*"):  # left by a killed builder (we hold the lock)
            shutil.rmtree(old, ignore_errors=True)
        self.tmp = final.with_name(f"{final.name}.tmp-{uuid.uuid4().hex[:8]}")
        self.tmp.mkdir(parents=True)
        nbytes = int(np.prod(self.shape))
        try:
            with open(self.images_path, "wb") as f:
                _reserve(f, nbytes)
        except OSError as exc:
            self.abort()
            if exc.errno == errno.ENOSPC:  # found now, not as a SIGBUS from the memory map half-way through decoding
                raise DiskFullError(final, nbytes, "free some space there or set WORKBENCH_CACHE to a folder on a "
                                                   "disk with room") from None
            raise

    @property
    def images_path(self) -> Path:
        return self.tmp / "images.u8"

    def finish(self, keep: np.ndarray, labels: np.ndarray, indices: np.ndarray, meta: dict) -> Store:
        """Drop rows not in ``keep`` (sorted), write labels/indices/meta and move the store into place."""
        n = len(keep)
        shape = (n,) + self.shape[1:]
        if n < self.shape[0]:
            _compact(self.images_path, self.shape, keep)
        np.save(self.tmp / "labels.npy", np.asarray(labels, dtype=np.int64))
        np.save(self.tmp / "indices.npy", np.asarray(indices, dtype=np.int64))
        with open(self.images_path, "rb+") as f:
            os.fsync(f.fileno())
        (self.tmp / "meta.json").write_text(json.dumps(dict(meta, format=FORMAT, shape=list(shape)), indent=1))
        if self.final.exists():  # an incomplete or outdated store under the same key
            shutil.rmtree(self.final, ignore_errors=True)
        os.replace(self.tmp, self.final)
        store = open_store(self.final)
        if store is None:
            raise OSError(f"the store just written to {self.final} cannot be read back")
        return store

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _reserve(f, nbytes: int) -> None:
    """Size ``f`` to ``nbytes`` with its disk blocks allocated (ENOSPC now if they do not fit): writes through a
    memory map of a sparse file that the disk cannot hold kill the process with SIGBUS instead of raising."""
    f.truncate(nbytes)
    try:
        os.posix_fallocate(f.fileno(), 0, nbytes)
    except AttributeError:  # no posix_fallocate (macOS, Windows): compare with the free space instead
        if shutil.disk_usage(Path(f.name).parent).free < nbytes:
            raise OSError(errno.ENOSPC, "No space left on device") from None
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS) and shutil.disk_usage(Path(f.name).parent).free >= nbytes:
            return  # a file system without fallocate that has the room
        raise


def prune(final: Path, meta: dict) -> None:
    """Delete other stores built from the same folder with the same options (superseded by ``final``)."""
    for other in final.parent.glob("store-*"):
        if other == final or not other.is_dir() or ".tmp-" in other.name:
            continue
        try:
            old = json.loads((other / "meta.json").read_text())
        except (OSError, ValueError):
            continue
        if old.get("folder") == meta.get("folder") and old.get("options") == meta.get("options"):
            log.info("data: removing %s, superseded by %s", other, final.name)
            shutil.rmtree(other, ignore_errors=True)


def _compact(path: Path, shape: tuple, keep: np.ndarray, chunk: int = 4096) -> None:
    """Move rows ``keep`` (sorted) to the front in place and truncate; row k reads from keep[k] >= k."""
    if len(keep):
        mm = np.memmap(path, dtype=np.uint8, mode="r+", shape=shape)
        for a in range(0, len(keep), chunk):
            mm[a:a + len(keep[a:a + chunk])] = mm[keep[a:a + chunk]]
        mm.flush()
        del mm
    with open(path, "rb+") as f:
        f.truncate(len(keep) * int(np.prod(shape[1:])))
