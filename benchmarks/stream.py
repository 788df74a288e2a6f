"""Training from a store larger than memory: streamed batches against the in-memory path.

Writes a synthetic store of 64x64 RGB uint8 images (``--gb``, 40 GB by default, scaled down to
what the disk can hold with 10 GB to spare, and said so), then trains the default encoder
(``small_cnn``, NT-Xent, batch 256, ``simclr_cifar`` augmentations) for ``--seconds`` on each path,
each in its own process:

- in memory: the first ``--subset`` images read into RAM (the path every dataset that fits takes);
- streamed: every image of the store, batches read by the prefetch thread (random order over the
  whole file, so most reads miss the page cache once the store is larger than memory).

Prints training images/s (after ``--warmup`` steps), what ``batches()`` alone delivers (random
batches of 256, no training: the headroom over what training consumes) and each process's peak
RSS, and deletes the store afterwards.

    .venv/bin/python benchmarks/stream.py                 # 40 GB store, 120 s per path
    .venv/bin/python benchmarks/stream.py --gb 4 --seconds 30
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHAPE = (3, 64, 64)


def write_store(where: Path, gb: float):
    from workbench.core import store

    row = int(np.prod(SHAPE))
    n = int(gb * 1e9) // row
    block = np.random.default_rng(0).integers(0, 256, (4096, *SHAPE), dtype=np.uint8)  # 48 MB of noise, repeated
    w = store.Writer(where / "store-bench", (n, *SHAPE))
    t = time.perf_counter()
    with open(w.images_path, "r+b") as f:
        for a in range(0, n, len(block)):
            f.write(block[: min(len(block), n - a)].tobytes())
    labels = np.random.default_rng(1).integers(0, 10, n)
    st = w.finish(np.arange(n), labels, np.arange(n), {"classes": [str(i) for i in range(10)], "failures": {}})
    print(f"wrote {n:,} images ({n * row / 1e9:.1f} GB) in {time.perf_counter() - t:.0f} s to {st.path}", flush=True)
    return st


def child(path: str, mode: str, subset: int, seconds: float, warmup: int) -> None:
    from workbench.core.config import Config
    from workbench.core.data import from_store
    from workbench.core.events import StepEvent
    from workbench.core.store import open_store
    from workbench.core.train import train

    full = from_store(open_store(Path(path)))
    test = full.rows(0, 1000).to("cpu")
    data = full.rows(1000, 1000 + subset).to("cpu") if mode == "memory" else full.rows(1000, len(full))
    cfg = Config().with_overrides([
        "data.name=python", f"data.in_memory={'true' if mode == 'memory' else 'false'}", "augment.preset=simclr_cifar",
        "train.batch_size=256", "train.epochs=1", f"train.time_budget_s={seconds}", "train.log_every=1", "train.device=cpu",
        "eval.bank_size=2000", "eval.test_size=500", "eval.embed_points=200"])
    read_ips = _read_rate(data)
    times = []
    with tempfile.TemporaryDirectory() as runs:
        for ev in train(cfg, runs_root=runs, data=(data, test)):
            if isinstance(ev, StepEvent):
                times.append(time.perf_counter())
    steps = len(times) - 1 - warmup
    ips = steps * 256 / (times[-1] - times[warmup]) if steps > 0 else float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"mode": mode, "images": len(data), "steps": steps, "ips": ips, "read_ips": read_ips, "peak_rss": peak}))


def _read_rate(data, batches: int = 100, size: int = 256) -> float:
    """Images/s that ``batches()`` delivers alone: random batches over the whole split, no training."""
    import torch

    idx = torch.randint(0, len(data), (batches, size), generator=torch.Generator().manual_seed(0)).unbind(0)
    t = time.perf_counter()
    for _ in data.batches(idx, "cpu"):
        pass
    return batches * size / (time.perf_counter() - t)


def run_child(path: Path, mode: str, args) -> dict:
    cmd = [sys.executable, __file__, "--child", str(path), mode, "--subset", str(args.subset), "--seconds", str(args.seconds),
           "--warmup", str(args.warmup)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"{mode} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=40.0)
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="where the store is written (and deleted)")
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--subset", type=int, default=50_000, help="images held in memory for the in-memory run")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], args.subset, args.seconds, args.warmup)
    where = Path(tempfile.mkdtemp(prefix="wb-stream-", dir=args.dir))
    free, mem = shutil.disk_usage(where).free / 1e9, _ram_gb()
    gb = min(args.gb, free - 10)
    print(f"memory {mem:.1f} GB, free disk {free:.0f} GB at {where}; store {gb:.1f} GB"
          + (f" (scaled down from {args.gb:.0f} GB to leave 10 GB free)" if gb < args.gb else "")
          + ("" if gb > mem else " -- NOT larger than memory"), flush=True)
    try:
        st = write_store(where, gb)
        mem_run = run_child(st.path, "memory", args)
        stream_run = run_child(st.path, "stream", args)
    finally:
        shutil.rmtree(where, ignore_errors=True)
    for r in (mem_run, stream_run):
        label = f"in memory ({r['images']:,} images)" if r["mode"] == "memory" else f"streamed ({r['images']:,} images)"
        print(f"  {label:<34}{r['ips']:8,.0f} images/s  ({r['steps']} steps)   peak RSS {r['peak_rss'] / 1e9:5.2f} GB"
              f"   batches() alone {r['read_ips']:9,.0f} images/s")
    print(f"  streamed / in memory: {stream_run['ips'] / mem_run['ips']:.0%}")


def _ram_gb() -> float:
    with open("/proc/meminfo") as f:
        return int(f.readline().split()[1]) / 1e6


if __name__ == "__main__":
    main()
