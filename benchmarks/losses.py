"""Every loss side by side: same encoder, data, augmentations, epochs and wall-clock cap.

    python benchmarks/losses.py [--epochs 1] [--budget 60] [--data ../shared/data/fashion-mnist] [--losses ntxent,vicreg]

Prints kNN accuracy (k=20, full 60k bank, 10k test), alignment and uniformity (Wang & Isola),
std of normalised embeddings and effective rank, and flags collapse. The untrained encoder is
measured in the same run as the baseline.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workbench.core.config import Config  # noqa: E402
from workbench.core.events import DoneEvent, StepEvent, WarningEvent  # noqa: E402
from workbench.core.losses import LOSSES  # noqa: E402
from workbench.core.evaluation import evaluate  # noqa: E402
from workbench.core.setup import prepare  # noqa: E402
from workbench.core.train import train  # noqa: E402

EXTRA = {"moco": ["method.queue_size=4096"], "margin_contrastive": [], "supcon": []}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--budget", type=float, default=60, help="training seconds at most per loss")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "fashion-mnist"))
    ap.add_argument("--losses", default=",".join(LOSSES.names()))
    a = ap.parse_args()
    base = ["data.name=fashion_mnist", f"data.root={a.data}", "train.batch_size=256", "optim.lr=0.002",
            "optim.warmup_epochs=0.2", f"train.epochs={a.epochs}", f"train.time_budget_s={a.budget}", "eval.every=1000"]
    rows = []
    untrained, _ = evaluate(prepare(Config().with_overrides(base)))
    rows.append(("untrained encoder", untrained, 0, 0.0, ""))
    for name in a.losses.split(","):
        cfg = Config().with_overrides(base + [f"loss.name={name}"] + EXTRA.get(name, []))
        t0, steps, ips, warn, metrics = time.perf_counter(), 0, [], "", {}
        for ev in train(cfg, runs_root="/tmp/wb-loss-bench"):
            if isinstance(ev, StepEvent):
                steps, ips = ev.step, ips + [ev.images_per_s]
            elif isinstance(ev, WarningEvent):
                warn = "COLLAPSE"
            elif isinstance(ev, DoneEvent):
                metrics = ev.metrics
            elif type(ev).__name__ == "ErrorEvent":
                warn = f"error: {ev.message}"
        rows.append((name, metrics, steps, sum(ips) / max(1, len(ips)), warn))
        print(f"done {name} in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    print(f"Fashion-MNIST, small_cnn, batch 256, {a.epochs} epoch(s) per loss, at most {a.budget:.0f} s (CPU)")
    print(f"{'loss':<20}{'steps':>6}{'img/s':>8}{'kNN':>8}{'align':>8}{'unif':>8}{'std':>8}{'rank':>7}  note")
    for name, m, steps, ips, warn in rows:
        if not m:
            print(f"{name:<20}{steps:>6}{ips:>8.0f}  {warn}")
            continue
        print(f"{name:<20}{steps:>6}{ips:>8.0f}{m['knn_acc']:>8.4f}{m['alignment']:>8.3f}{m['uniformity']:>8.3f}"
              f"{m['emb_std']:>8.4f}{m['eff_rank']:>7.1f}  {warn}")


if __name__ == "__main__":
    main()
