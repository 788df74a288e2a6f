"""Decode throughput of image folders into the store, against a plain PIL open-convert-resize loop.

Two folders: the CIFAR-10 JPEG folder (60,000 32x32 files, ../shared/data/cifar10-jpg) and a folder
of large JPEGs this script makes (``--large`` files of 1000x750, upscaled from CIFAR-10, decoded to
``--size``). For each: the plain loop's images/s (one process, PIL, full decode then resize, into
one uint8 array), then ``folder.load_folder`` with each worker kind (a fresh cache each time, so
it lists, reads every header, decides, decodes and writes the store), and the ratio.

    .venv/bin/python benchmarks/decode.py                      # CPU workers: processes, threads
    .venv/bin/python benchmarks/decode.py --device cuda        # JPEGs on the GPU (nvjpeg) as well

Decode workers normally run at nice +5 so the window keeps a core; here they run at the baseline's
priority (``folder.WORKER_NICE = 0``), since other processes on a shared machine would otherwise
take their time.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from workbench.core import folder  # noqa: E402

CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpg"


def plain_loop(paths: list[str], size: int) -> float:
    """Images/s of the obvious loop: open, convert to RGB, resize the whole image, copy into one array."""
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    t = time.perf_counter()
    for i, p in enumerate(paths):
        with Image.open(p) as im:
            out[i] = np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
    return len(paths) / (time.perf_counter() - t)


def ours(folders: list[Path], size: int, workers: str, decoder: str) -> float:
    cache = Path(tempfile.mkdtemp(prefix="wb-decode-cache-"))
    os.environ["WORKBENCH_CACHE"] = str(cache)
    try:
        t = time.perf_counter()
        n = sum(folder.load_folder(f, 3, size, workers=workers, decoder=decoder).shape[0] for f in folders)
        return n / (time.perf_counter() - t)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def make_large(out: Path, n: int) -> list[str]:
    """``n`` 1000x750 JPEGs (quality 90) upscaled (bicubic) from CIFAR-10 training images."""
    src = sorted((CIFAR / "train").glob("*/*.jpg"))[:: max(1, 50000 // n)][:n]
    out.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(src):
        with Image.open(p) as im:
            im.convert("RGB").resize((1000, 750), Image.Resampling.BICUBIC).save(out / f"{i:05d}.jpg", quality=90)
    return sorted(str(p) for p in out.glob("*.jpg"))


def compare(name: str, folders: list[Path], paths: list[str], size: int, kinds: list[tuple[str, str]]) -> None:
    base = plain_loop(paths, size)
    print(f"{name}: {len(paths):,} files -> {size}x{size}")
    print(f"  plain PIL loop (1 process)            {base:8,.0f} images/s")
    for workers, decoder in kinds:
        ips = ours(folders, size, workers, decoder)
        label = f"workbench ({workers}, {decoder} decoder)"
        print(f"  {label:<38}{ips:8,.0f} images/s   {ips / base:5.2f}x", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="also decode JPEGs on this device")
    ap.add_argument("--large", type=int, default=2000, help="number of 1000x750 JPEGs to make")
    ap.add_argument("--size", type=int, default=64, help="decoded size of the large JPEGs")
    ap.add_argument("--skip-cifar", action="store_true")
    args = ap.parse_args()
    folder.WORKER_NICE = 0
    kinds = [("processes", "cpu"), ("threads", "cpu")] + ([("processes", "cuda")] if args.device == "cuda" else [])
    print(f"{os.cpu_count()} CPU cores; machine load average {os.getloadavg()[0]:.1f} at start")
    if not args.skip_cifar and CIFAR.is_dir():
        splits = [CIFAR / "train", CIFAR / "test"]
        compare("CIFAR-10 JPEG folder", splits, sorted(str(p) for s in splits for p in s.glob("*/*.jpg")), 32, kinds)
    if args.large <= 0:
        return
    tmp = Path(tempfile.mkdtemp(prefix="wb-large-jpegs-"))
    try:
        t = time.perf_counter()
        paths = make_large(tmp / "large", args.large)
        print(f"(made {len(paths):,} large JPEGs in {time.perf_counter() - t:.0f} s)")
        compare("large JPEGs 1000x750", [tmp / "large"], paths, args.size, kinds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"machine load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
