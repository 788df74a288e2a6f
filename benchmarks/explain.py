"""Similarity maps (workbench/core/explain.py): how fast a page of pairs is explained, and how faithful the maps are.

1. Speed: a page of 32 pairs (the Pairs tab shows up to 24 rows of a few pairs) explained for small_cnn at 32 px,
   3 channels (maps, the N x N location matches, and the tiles' overlay pictures), median of ``--repeats``, beside
   the in-run baseline of only embedding the same 64 images (what any similarity costs).
2. Faithfulness: the deletion curve on a trained run over real data, averaged over ``--pairs`` held-out pairs (each
   image with its nearest other held-out image by backbone cosine): a's regions blacked out highest map value
   first against a random order; the areas under the two mean curves (lower = the cosine falls sooner) with the
   standard error of their per-pair difference. Without ``--run`` a short run is trained first with the CLI
   (``--minutes`` on Fashion-MNIST from ../shared/data, or ``--data cifar10`` on the CIFAR-10 JPEG folder).

    .venv/bin/python benchmarks/explain.py                       # trains a 2-minute Fashion-MNIST run first
    .venv/bin/python benchmarks/explain.py --run runs/2026-...   # an existing run folder
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from workbench.core.explain import FILLS, Explainer, deletion_curve, pair_strip  # noqa: E402
from workbench.core.models import ENCODERS  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def page_speed(pairs: int, size: int, repeats: int) -> None:
    torch.manual_seed(0)
    enc = ENCODERS.build("small_cnn", {}, in_channels=3, image_size=size).eval()

    def preprocess(x):
        return (x.float() / 255 - 0.5) / 0.25

    ex = Explainer(enc, preprocess=preprocess)
    a = torch.randint(0, 256, (pairs, 3, size, size), dtype=torch.uint8)
    b = torch.randint(0, 256, (pairs, 3, size, size), dtype=torch.uint8)
    embed, maps_only, page = [], [], []
    for _ in range(repeats + 1):  # the first is a warm-up
        t0 = time.perf_counter()
        with torch.no_grad():
            enc(preprocess(torch.cat([a, b])))
        t1 = time.perf_counter()
        maps = ex.explain_u8(a, b)
        t2 = time.perf_counter()
        [pair_strip(a[k].numpy(), b[k].numpy(), maps, k) for k in range(pairs)]
        t3 = time.perf_counter()
        embed.append(t1 - t0)
        maps_only.append(t2 - t1)
        page.append(t3 - t1)
    med = [float(np.median(v[1:])) for v in (embed, maps_only, page)]
    print(f"page of {pairs} pairs, small_cnn at {size} px, 3 channels, {torch.get_num_threads()} torch threads, "
          f"median of {repeats}:")
    print(f"  embedding the {2 * pairs} images only (baseline)   {med[0] * 1000:8.1f} ms")
    print(f"  maps + {maps.grid[0] * maps.grid[1]}x{maps.grid[0] * maps.grid[1]} location matches          "
          f"{med[1] * 1000:8.1f} ms")
    print(f"  ... and the {pairs} tile pictures (the page)      {med[2] * 1000:8.1f} ms   (target < 2000 ms)")


def train_run(data: str, minutes: float, out: Path) -> Path:
    if data == "fashion_mnist":
        sets = ["data.root=" + str(SHARED / "fashion-mnist")]
    else:  # the same small_cnn recipe on the CIFAR-10 JPEG folder, with the colour augmentations
        sets = ['data.name="image_folder"', "data.root=" + str(SHARED / "cifar10-jpg"), 'augment.preset="auto"']
    config = ROOT / "examples" / "fashion_mnist_simclr.toml"
    sets += [f"train.time_budget_s={minutes * 60:g}", "eval.test_size=2000", "eval.bank_size=10000"]
    cmd = [sys.executable, "-m", "workbench", "train", str(config), "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    print("training:", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    return next(p for p in out.iterdir() if (p / "config.toml").is_file())


def faithfulness(run: Path, pairs: int, steps: int, fill: str) -> None:
    from workbench.core.inference import RunModel, neighbours

    rm = RunModel.load(run)
    _, test = rm.splits()
    pool = test.images[: max(2000, pairs)]
    feats = rm.features(pool)
    idx, sim = neighbours(feats, feats, k=2)
    a, b = pool[:pairs], pool[idx[:pairs, 1]]
    ex = Explainer.for_run(rm)
    t = time.perf_counter()
    curve = deletion_curve(ex, ex.preprocess(a), ex.preprocess(b), steps=steps, fill=fill)
    took = time.perf_counter() - t
    ranked, rand = curve.auc
    diff = np.array([curve.area(curve.fraction, curve.random[k]) - curve.area(curve.fraction, curve.ranked[k])
                     for k in range(pairs)])
    print(f"deletion curve, run {run.name} ({rm.cfg.model.encoder}, {rm.image_size} px), {pairs} held-out pairs "
          f"(nearest neighbours, mean cosine {sim[:pairs, 1].mean():.3f}), {steps} steps, fill {fill}, {took:.1f} s:")
    print(f"  area under the curve, highest map first   {ranked:.4f}")
    print(f"  area under the curve, random order        {rand:.4f}")
    print(f"  random - ranked                           {rand - ranked:+.4f} +/- {diff.std(ddof=1) / np.sqrt(pairs):.4f} "
          f"(standard error); ranked lower in {np.mean(diff > 0):.0%} of the pairs")
    print("  mean curves (fraction masked: ranked / random):")
    for f, r, q in zip(curve.fraction[::2], curve.ranked.mean(0)[::2], curve.random.mean(0)[::2], strict=True):
        print(f"    {f:5.3f}  {r:.4f} / {q:.4f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", help="a trained run folder (default: train one first)")
    p.add_argument("--data", choices=["fashion_mnist", "cifar10"], default="fashion_mnist", help="what a new run trains on")
    p.add_argument("--minutes", type=float, default=2.0, help="training time of the new run")
    p.add_argument("--pairs", type=int, default=200, help="pairs the deletion curve is averaged over")
    p.add_argument("--steps", type=int, default=16, help="deletion steps (at most one a location)")
    p.add_argument("--fill", choices=FILLS, default="black", help="what masked regions become")
    p.add_argument("--page", type=int, default=32, help="pairs a page")
    p.add_argument("--size", type=int, default=32, help="image size of the speed test")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--speed-only", action="store_true", help="skip the deletion curve")
    args = p.parse_args()
    page_speed(args.page, args.size, args.repeats)
    if args.speed_only:
        return
    if args.run:
        faithfulness(Path(args.run), args.pairs, args.steps, args.fill)
        return
    with tempfile.TemporaryDirectory(prefix="wb-explain-") as tmp:
        faithfulness(train_run(args.data, args.minutes, Path(tmp)), args.pairs, args.steps, args.fill)


if __name__ == "__main__":
    main()
