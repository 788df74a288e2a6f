"""Image folders: which sub-folders are splits and classes, which size and channels, decoded once into a store.

Everything is decided from the whole folder and said in the log ("workbench.data"): decisions a user
should check are warnings, the rest is info.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import statistics
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workbench.core import decode, store
from workbench.core.registry import ConfigError
from workbench.core.threads import cores

log = logging.getLogger("workbench.data")
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
TRAIN_NAMES = ("train", "training")  # any case; first present wins
HELDOUT_NAMES = ("val", "valid", "validation", "test", "testing", "holdout", "eval")  # any case; first present wins
MAX_AUTO_SIZE = 256  # image_size = 0 never picks more than this with a GPU ...
MAX_AUTO_SIZE_CPU = 96  # ... nor more than this without one, where every pixel costs training time (STL-10's side)
MIN_AUTO_SIZE = 16  # ... nor less than this (smaller medians mean icons or a mistyped data.root)
IRREGULAR_CLASSES = 100  # more class folders than this, with very uneven sizes, looks like a mistyped data.root
CHUNK = 128  # files per decode task: small enough for prompt progress and cancel
WORKER_NICE = 5  # decode processes yield to the window's thread


class Cancelled(Exception):
    """Loading was cancelled through its ``cancel`` event."""


@dataclass
class Listing:
    folder: Path
    files: list[str] = field(default_factory=list)  # absolute paths
    stats: list[tuple] = field(default_factory=list)  # (relative path, size, mtime_ns, ctime_ns, inode): store.key
    labels: list[int] = field(default_factory=list)  # -1 for loose files
    classes: list[str] = field(default_factory=list)


def split_folders(root: Path, say: bool = True) -> tuple[Path, Path | None]:
    """(training folder, held-out folder or None) for ``root``; says which sub-folders it took as splits (``say``)."""
    warn, info = (log.warning, log.info) if say else (log.debug, log.debug)
    subdirs = _subdirs(root)
    by_name = {d.name.lower(): d for d in subdirs}
    heldout = next((by_name[n] for n in HELDOUT_NAMES if n in by_name), None)
    split_like = [d for d in subdirs if d.name.lower() in (*TRAIN_NAMES, *HELDOUT_NAMES)]
    train = next((by_name[n] for n in TRAIN_NAMES if n in by_name), None)
    if train is None:
        if split_like and len(split_like) == len(subdirs):
            raise ConfigError(f"data.root: '{root}' holds only {', '.join(d.name + '/' for d in split_like)} and no train/; "
                              "add a train/ folder beside it, or point data.root at a folder of class sub-folders")
        if split_like:
            warn("data: '%s' has no train/ folder, so %s taken as class(es), not split(s)", root,
                        ", ".join(d.name + "/" for d in split_like))
        return root, None
    others = [d.name + "/" for d in subdirs if d not in (train, heldout)]
    if heldout is None:
        warn("data: '%s' has %s/ but no %s: the held-out split is carved from %s/", root, train.name,
             ", ".join(n + "/" for n in HELDOUT_NAMES), train.name)
    elif (train.name, heldout.name) == ("train", "test"):
        info("data: '%s': train/ is the training split, test/ the held-out split", root)
    else:
        warn("data: '%s': %s/ is the training split, %s/ the held-out split", root, train.name, heldout.name)
    if others:
        warn("data: '%s': ignoring %s (only the split folders are read)", root, ", ".join(others))
    return train, heldout


def _subdirs(folder: Path) -> list[Path]:
    """Sub-folders (not hidden); a link back to ``folder`` or above it (a loop, which would hold the whole data set
    again as one more class) is left out with a warning."""
    try:
        found = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except PermissionError:
        raise ConfigError(f"data.root: cannot read '{folder}' (permission denied); check its permissions") from None
    here = folder.resolve()
    loops = [p for p in found if p.is_symlink() and (p.resolve() == here or p.resolve() in here.parents)]
    if loops:
        log.warning("data: left out %s under '%s': link(s) back to this folder or above it", ", ".join(p.name + "/" for p in loops),
                    folder)
    return [p for p in found if p not in loops]


def list_images(folder: Path, say: bool = True, stat: bool = True) -> Listing:
    """Loose images (label -1) and class sub-folders (searched recursively); unreadable folders are named in a warning
    (``say`` False: nothing said, for a folder listed again to name its files; ``stat`` False: no ``stats``)."""
    if not say:
        with _quiet():
            return list_images(folder, stat=stat)
    out, errors = Listing(folder), []
    loose = _walk(folder, errors, recurse=False)
    out.files += loose
    out.labels += [-1] * len(loose)
    subdirs = _subdirs(folder)
    if loose and subdirs:
        log.warning("data: %d image(s) lie in '%s' beside its class folders, in none of them: they are used unlabeled",
                    len(loose), folder)
    empty, counts, nested = [], [], {}
    for d in subdirs:
        failed = len(errors)
        found = _walk(d, errors, recurse=True)
        inner = sorted({parts[0] for f in found if (parts := Path(f).parent.relative_to(d).parts)})
        if inner:
            nested[d.name] = inner
        if found:
            out.labels += [len(out.classes)] * len(found)
            out.classes.append(d.name)
            out.files += found
            counts.append(len(found))
        elif not any(p == str(d) for p, _ in errors[failed:]):  # an unreadable folder is named once, below
            empty.append(d.name)
    if empty:
        log.warning("data: %d class folder(s) under '%s' hold no images and are left out (no class made for them): %s",
                    len(empty), folder, ", ".join(empty[:10]) + (" ..." if len(empty) > 10 else ""))
    _check_regular(folder, counts)
    if nested:
        log.warning("data: %d class folder(s) under '%s' hold images in sub-folders of their own, merged into one class each: "
                    "%s; to use a class folder's sub-folders as the classes, point data.root at that class folder", len(nested), folder,
                    "; ".join(f"{k} ({', '.join(v[:4])}{' ...' if len(v) > 4 else ''})" for k, v in list(nested.items())[:5])
                    + (" ..." if len(nested) > 5 else ""))
    if errors:
        log.warning("data: could not read or follow %d entr(ies) under '%s'; left out: %s", len(errors), folder,
                    "; ".join(f"{p} ({why})" for p, why in errors[:5]) + (" ..." if len(errors) > 5 else ""))
    for f in out.files if stat else ():
        st = os.stat(f)
        out.stats.append((os.path.relpath(f, folder), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    return out


@contextlib.contextmanager
def _quiet():
    """This thread's data warnings dropped while the block runs (other threads' still said)."""
    me = threading.get_ident()

    def drop(record):
        return record.thread != me

    log.addFilter(drop)
    try:
        yield
    finally:
        log.removeFilter(drop)


def _check_regular(folder: Path, counts: list[int]) -> None:
    """Warn when the class folders look like a general folder tree rather than a data set (e.g. data.root=/tmp)."""
    if len(counts) > IRREGULAR_CLASSES and max(counts) > 50 * statistics.median(counts):
        log.warning("data: '%s' has %d sub-folders holding %d to %d images each: this looks like a general folder rather than "
                    "a data set; using each sub-folder as a class anyway; check data.root", folder, len(counts),
                    min(counts), max(counts))


def _walk(folder: Path, errors: list, recurse: bool) -> list[str]:
    found = []
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        errors.append((str(folder), exc.strerror or type(exc).__name__))
        return found
    for e in entries:
        if e.name.startswith("."):
            continue
        image = os.path.splitext(e.name)[1].lower() in IMAGE_EXTS
        try:
            is_file = e.is_file()
            is_dir = not is_file and e.is_dir()
        except OSError as exc:  # a link loop (or an entry gone since the listing): left out, said
            if image or recurse:
                errors.append((e.path, "a link loop" if exc.errno == errno.ELOOP else exc.strerror or type(exc).__name__))
            continue
        if is_file and image:
            found.append(e.path)
        elif recurse and e.is_dir(follow_symlinks=False):
            found += _walk(Path(e.path), errors, recurse=True)
        elif e.is_symlink() and (image or recurse) and not is_file:
            why = "a link to a folder (not followed inside class folders)" if is_dir else "a broken link"
            errors.append((e.path, why))
    return found


def load_folder(folder: Path, channels="auto", image_size: int = 0, progress=None, cancel=None, workers: str = "auto",
                decoder: str = "auto") -> store.Store:
    """Decode every image under ``folder`` into a store (or open the one already there).

    ``workers``: "threads" | "processes" | "serial" | "auto" (threads for large folders);
    ``decoder``: "cuda" | "cpu" | "auto" (JPEGs on the GPU when CUDA is present, ``$WORKBENCH_DECODER`` overrides)."""
    listing = list_images(folder)
    if not listing.files:
        raise ConfigError(f"data.root: no images ({', '.join(sorted(IMAGE_EXTS))}) found in '{folder}' or its sub-folders")
    final = store_path(folder, listing, channels, image_size)
    run = Runner(workers, progress, cancel, os.environ.get("WORKBENCH_DECODER", decoder))
    with store.locked(final, waiting=run.check):
        st = store.open_store(final)
        if st is None:
            with run:
                st = _build(listing, final, channels, image_size, run)
        else:
            for text in st.meta.get("warnings", []):
                log.warning("%s", text)
            log.info("data: '%s': %d images, %s", folder, st.shape[0], st.meta["decided"])
    _report(st.meta["failures"], folder, st.path)
    return st


def store_path(folder: Path, listing: Listing, channels, image_size: int) -> Path:
    """Where the decoded store of ``folder`` lives: keyed by its files and every option that shapes the pixels."""
    options = {"channels": channels, "image_size": image_size}
    if not image_size and auto_cap() != MAX_AUTO_SIZE:
        options["auto_cap"] = auto_cap()  # a store sized on a GPU machine is not reused without one
    return store.cache_root() / f"store-{store.key(folder, listing.stats, **options)}"


def _build(listing: Listing, final: Path, channels, image_size: int, run: Runner) -> store.Store:
    files = listing.files
    failures: dict[str, tuple[str, str]] = {}
    notes: list[str] = []
    c, size = channels, image_size
    if channels == "auto" or not image_size:
        heads = run.chunks(decode.probe_many, [(files[a:a + CHUNK],) for a in range(0, len(files), CHUNK)], len(files),
                           f"reading headers in {listing.folder}")
        c, size, decided = decide(listing.folder, files, [h for chunk in heads for h in chunk], channels, image_size, failures, notes)
    else:
        decided = f"{c} channel(s), {size}x{size} (set in the config)"
    todo = [i for i in range(len(files)) if files[i] not in failures]
    if not todo:
        _report(failures, listing.folder)
        raise ConfigError(f"data.root: none of the {len(files)} image files in '{listing.folder}' could be read")
    perm = np.random.default_rng(0).permutation(len(todo))  # rows in a fixed random order: any prefix is a random subset
    rows = np.empty(len(todo), dtype=np.int64)
    rows[perm] = np.arange(len(todo))
    writer = store.Writer(final, (len(todo), c, size, size))
    try:
        _decode_all(run, writer, files, todo, rows, (size, c), failures, listing.folder)
        ok = np.asarray([files[i] not in failures for i in todo])
        if not ok.any():
            _report(failures, listing.folder)
            raise ConfigError(f"data.root: none of the {len(files)} image files in '{listing.folder}' could be read")
        keep = np.sort(rows[ok])
        order = np.asarray(todo)[np.argsort(rows)]  # file index held by each row
        labels = np.asarray(listing.labels)[order[keep]]
        meta = {"classes": listing.classes, "decided": decided, "folder": str(listing.folder.resolve()),
                "options": {"channels": channels, "image_size": image_size}, "warnings": notes,
                "failures": {f: list(v) for f, v in failures.items()}}
        st = writer.finish(keep, labels, order[keep], meta)
    except BaseException:
        writer.abort()
        raise
    store.prune(final, st.meta)  # a changed folder's earlier store is never read again
    log.info("data: '%s': %d images, %s; stored in %s", listing.folder, st.shape[0], decided, final)
    return st


def _decode_all(run: Runner, writer: store.Writer, files, todo, rows, size_c, failures: dict, folder: Path) -> None:
    """Decode ``files[todo[k]]`` into store row ``rows[k]``: JPEGs on the GPU in batches when the runner's decoder
    says so, the rest (and what nvjpeg refuses) on the CPU workers; failures land in ``failures``."""
    size, c = size_c
    pos = list(range(len(todo)))
    if run.use_cuda([files[i] for i in todo]):
        pos = _decode_cuda(run, writer, [files[i] for i in todo], rows, size_c, folder)
    args = [(str(writer.images_path), writer.shape, [int(rows[k]) for k in pos[a:a + CHUNK]], [files[todo[k]] for k in pos[a:a + CHUNK]],
             size, c) for a in range(0, len(pos), CHUNK)]
    results = run.chunks(decode.decode_into, args, len(pos), f"decoding {folder}")
    for a, chunk in zip(range(0, len(pos), CHUNK), results, strict=True):
        for i, kind, msg in chunk:
            failures[files[todo[pos[a + i]]]] = (kind, msg)


def _decode_cuda(run: Runner, writer: store.Writer, paths: list[str], rows, size_c, folder: Path) -> list[int]:
    """JPEGs among ``paths`` decoded on the GPU into ``rows``; returns the positions left for the CPU."""
    from workbench.core import decode_cuda

    jpeg = [k for k, p in enumerate(paths) if p.lower().endswith(decode_cuda.JPEG_EXTS)]
    rest = sorted(set(range(len(paths))) - set(jpeg))
    log.info("data: decoding %d JPEG files of '%s' on %s (nvjpeg)", len(jpeg), folder, run.device)
    mm = np.memmap(writer.images_path, dtype=np.uint8, mode="r+", shape=writer.shape)
    message = f"decoding {folder} on {run.device}"
    run.tick(0, len(jpeg), message)
    for a in range(0, len(jpeg), decode_cuda.BATCH):
        run.check()
        part = jpeg[a:a + decode_cuda.BATCH]
        arrays, failed = decode_cuda.decode_batch([paths[k] for k in part], *size_c, device=run.device)
        mm[rows[part]] = arrays
        rest += [part[i] for i in failed]
        run.tick(a + len(part), len(jpeg), message)
    del mm
    return sorted(rest)


def decide(folder: Path, files: list[str], heads: list, channels, image_size: int, failures: dict, notes: list) -> tuple[int, int, str]:
    """Channels and size from the headers of every readable file; logs what it decided and why."""
    ok = []
    for f, h in zip(files, heads, strict=True):
        if len(h) == 2:
            failures[f] = h
        else:
            ok.append(h)
    if not ok:
        return 3, max(8, image_size), "nothing readable"
    n_colour = sum(1 for h in ok if h[2])
    c = channels if channels != "auto" else (3 if n_colour else 1)
    said = [f"{c} channel(s)"]
    if channels == "auto" and 0 < n_colour < len(ok):
        _note(notes, f"data: '{folder}' mixes {n_colour} colour and {len(ok) - n_colour} greyscale files: using 3 channels "
                     "(greyscale repeated in R, G, B); set data.channels = 1 for greyscale")
        said[0] += f" ({n_colour} colour, {len(ok) - n_colour} greyscale files)"
    size = image_size or _auto_size(folder, ok, notes)
    said.append(f"{size}x{size}" + (" (set in the config)" if image_size else ""))
    return c, size, ", ".join(said)


def auto_cap() -> int:
    """The largest side ``data.image_size = 0`` picks on this machine."""
    import torch

    return MAX_AUTO_SIZE if torch.cuda.is_available() else MAX_AUTO_SIZE_CPU


def _auto_size(folder: Path, heads: list, notes: list) -> int:
    sides = [min(w, h) for w, h, _ in heads]
    med, most = int(statistics.median_low(sides)), auto_cap()
    size = max(MIN_AUTO_SIZE, min(med, most))
    if med < MIN_AUTO_SIZE:
        _note(notes, f"data: the images in '{folder}' are tiny (median shorter side {med} px, {len(sides)} files): resizing "
                     f"them up to {size}x{size}; if this is not your data set, check data.root; set data.image_size to choose")
    elif len({(w, h) for w, h, _ in heads}) > 1 or size != med:
        cap = f", capped at {most}" if med > most else ""
        cap += " on a machine without a GPU, where every pixel costs training time" if cap and most < MAX_AUTO_SIZE else ""
        _note(notes, f"data: images in '{folder}' range from {min(sides)} to {max(sides)} px on their shorter side: resizing all "
                     f"to {size}x{size} (the median shorter side{cap}); set data.image_size to choose")
    return size


def _note(notes: list, text: str) -> None:
    """A decision the user should check: logged as a warning now and again whenever the store is reused."""
    notes.append(text)
    log.warning("%s", text)


KIND_TEXT = {"unreadable": "unreadable image file(s) (decoder failed)",
             "memory": f"file(s) too large to decode in memory (the limit is {decode.MAX_PIXELS // 10**6:,} megapixels)",
             "permission": "file(s) that could not be opened (permission denied)"}


def _report(failures: dict, folder: Path, store_dir: Path | None = None) -> None:
    """One warning a kind of failure, naming five files; the rest are in the store's meta.json when there is one."""
    for kind, text in KIND_TEXT.items():
        paths = [f for f, v in failures.items() if v[0] == kind]
        if paths:
            shown = ", ".join(f"{p} ({_without(failures[p][1], p)})" if kind == "unreadable" else p for p in paths[:5])
            more = "" if len(paths) <= 5 else " ..." if store_dir is None else \
                f" ... (all {len(paths)} are listed under \"failures\" in {store_dir / 'meta.json'})"
            log.warning("skipped %d %s in %s: %s%s", len(paths), text, folder, shown, more)


def _without(reason: str, path: str) -> str:
    """A decoder's message without the file name it repeats (PIL: "cannot identify image file '/a/b.jpg'")."""
    return reason.replace(f" '{path}'", "").replace(f" {path}", "")


class Runner:
    """Runs chunk tasks on one pool (processes, threads or inline) with progress and cancel; a context manager."""

    def __init__(self, workers: str = "auto", progress=None, cancel=None, decoder: str = "auto"):
        self.workers, self.progress, self.cancel, self.pool = workers, progress, cancel, None
        self.decoder, self.device = decoder, "cuda"

    def use_cuda(self, paths: list[str]) -> bool:
        """Decode JPEGs on the GPU: ``decoder`` "cuda", or "auto" with CUDA present and enough JPEGs to pay off."""
        if self.decoder == "cpu" or (self.decoder == "auto" and sum(p.lower().endswith((".jpg", ".jpeg")) for p in paths) < 2 * CHUNK):
            return False
        from workbench.core import decode_cuda

        return decode_cuda.available()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if self.pool is not None:
            self.pool.shutdown(wait=exc_type is None, cancel_futures=True)

    def chunks(self, fn, args: list[tuple], total: int, message: str) -> list:
        # threads measured faster than spawned processes here (2.8k vs 1.0k CIFAR-10 files/s on 2 cores): the
        # decoders release the GIL, and processes pay their start and imports on every load
        kind = self.workers if self.workers != "auto" else ("threads" if total >= 4 * CHUNK and cores() > 1 else "serial")
        self.tick(0, total, message)
        if kind == "serial":
            return self._inline(fn, args, total, message)
        if self.pool is None:
            self.pool = self._pool(kind)
        with _main_not_imported():  # spawned as the burst of submits needs them
            futures = {self.pool.submit(fn, *a): i for i, a in enumerate(args)}
        results, pending, done = [None] * len(args), set(futures), 0
        while pending:
            finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            self.check()
            for f in finished:
                results[futures[f]] = f.result()
                done += _count(args[futures[f]])
            if finished:
                self.tick(done, total, message)
        return results

    def _inline(self, fn, args, total, message):
        results, done = [], 0
        for a in args:
            self.check()
            results.append(fn(*a))
            done += _count(a)
            self.tick(done, total, message)
        return results

    @staticmethod
    def _pool(kind: str):
        if kind == "threads":
            return ThreadPoolExecutor(cores())
        return ProcessPoolExecutor(cores(), mp_context=_spawn(), initializer=_lower_priority, initargs=(WORKER_NICE,))

    def tick(self, done, total, message):
        if self.progress is not None:
            self.progress(done, total, message)

    def check(self):
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("loading cancelled")


def _count(args: tuple) -> int:
    return len(args[0]) if len(args) == 1 else len(args[3])


def _spawn():
    import multiprocessing

    return multiprocessing.get_context("spawn")  # never fork a process that runs threads (the window, torch)


@contextlib.contextmanager
def _main_not_imported():
    """Spawned workers re-run the parent's ``__main__`` unless it has neither ``__file__`` nor a module spec
    (a script without an ``if __name__ == "__main__"`` guard, or ``python -m workbench``, would start again and
    wait on the store's lock forever); the workers need only ``workbench.core.decode``."""
    main = sys.modules.get("__main__")
    saved = dict(main.__dict__) if main is not None else {}
    try:
        if main is not None:
            main.__dict__.pop("__file__", None)
            main.__spec__ = None
        yield
    finally:
        if main is not None:
            for k in ("__file__", "__spec__"):
                if k in saved:
                    main.__dict__[k] = saved[k]


def _lower_priority(nice: int):
    if nice and hasattr(os, "nice"):
        os.nice(nice)
