"""The data checks (core/checks.py): their cost, and how well they find faults planted in real data.

    python benchmarks/checks.py cost [--n-train 60000 --n-test 10000 --dim 2048] [--features F.npy] [--baseline 2000]
    python benchmarks/checks.py faults RUN_DIR [--data fashion|cifar] [--seed 0]

``cost`` times the graph and every check over n-train + n-test feature rows (a run's real features from
``--features``, else a clustered random set of that size) with peak memory above the features, and beside it
the brute-force baseline (a float64 product of each row with every image and a full sort) on ``--baseline``
random rows, extrapolated to all of them and compared row by row with the graph.

``faults`` plants faults in the run's own dataset (Fashion-MNIST from IDX files or the CIFAR-10 JPEG folder, from
../shared/data) as the issue describes: 1% of the test images copied into the training split (a third as they are,
a third resized down and back, a third re-encoded as JPEG at quality 75), 2% of the training labels flipped to
another class, 0.5% images of the other dataset added to the training split (with a random label); then reads
everything with the run's encoder (``RunModel.features``) and reports each check's precision and recall against
what was planted (the datasets' own duplicates and label errors count against precision); leaks are counted by
kind (exact copy, resized or re-encoded, near-duplicate), flipped labels in the 2% least likely by the
probabilities the label issues are ranked by. ``--no-fingerprints`` leaves the pixels' fingerprints out.
"""
from __future__ import annotations

import argparse
import io
import json
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/data")


# ----- planting -----
def _jpeg(img: np.ndarray, quality: int = 75) -> np.ndarray:
    from PIL import Image

    arr = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L" if img.shape[0] == 1 else "RGB"))
    return out[None] if img.shape[0] == 1 else out.transpose(2, 0, 1)


def _resized(img: np.ndarray, scale: float = 2.0) -> np.ndarray:
    """The copy stored at ``scale`` times the size (uint8, as a file would hold it), then read at the split's size
    as an image folder's loader reads it (bilinear, antialiased). ``scale`` < 1: a smaller copy enlarged (blurred)."""
    x = torch.from_numpy(np.array(img)).float()[None]
    side = img.shape[-1]
    stored = torch.nn.functional.interpolate(x, size=round(side * scale), mode="bilinear", antialias=True, align_corners=False)
    stored = stored.round().clamp(0, 255)
    back = torch.nn.functional.interpolate(stored, size=side, mode="bilinear", antialias=True, align_corners=False)
    return back.round().clamp(0, 255).to(torch.uint8)[0].numpy()


def fit_images(other: np.ndarray, channels: int, side: int) -> np.ndarray:
    """Images (N, C', H', W') uint8 as (N, channels, side, side): greyscale by ITU-R 601 luma or repeated, resized."""
    x = torch.from_numpy(np.array(other)).float()
    if x.shape[1] != channels:
        x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True) if channels == 1 else x.expand(-1, 3, -1, -1)
    if x.shape[-1] != side:
        x = torch.nn.functional.interpolate(x, size=side, mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).numpy()


def plant(train_x, train_y, test_x, other_x, n_classes: int, seed: int = 0, leak: float = 0.01, flip: float = 0.02,
          extra: float = 0.005, scale: float = 2.0) -> dict:
    """Faults planted in uint8 splits: returns the new training images and labels (the originals first, then the
    test copies, then the other images), the true labels, and the planted rows: ``leaked`` (test rows copied),
    ``copies`` (their training rows), ``flipped`` and ``foreign`` (training rows)."""
    rng = np.random.default_rng(seed)
    n, n_test = len(train_x), len(test_x)
    leaked = np.sort(rng.choice(n_test, max(1, round(leak * n_test)), replace=False))
    copies = []
    for j, t in enumerate(leaked):
        img = test_x[t]
        copies.append(img if j % 3 == 0 else _resized(img, scale) if j % 3 == 1 else _jpeg(img))
    n_extra = max(1, round(extra * n))
    foreign = fit_images(other_x[rng.choice(len(other_x), n_extra, replace=False)], train_x.shape[1], train_x.shape[-1])
    flipped = np.sort(rng.choice(n, max(1, round(flip * n)), replace=False))
    y = train_y.copy()
    y[flipped] = (y[flipped] + rng.integers(1, n_classes, len(flipped))) % n_classes
    images = np.concatenate([train_x, np.stack(copies), foreign])
    labels = np.concatenate([y, rng.integers(0, n_classes, len(copies) + n_extra)])
    true = np.concatenate([train_y, np.full(len(copies) + n_extra, -1)])
    return {"train_x": images, "train_y": labels, "true_y": true, "leaked": leaked, "copies": np.arange(n, n + len(copies)),
            "flipped": flipped, "foreign": np.arange(n + len(copies), len(images))}


def score(found, truth) -> dict:
    found, truth = set(np.asarray(found).tolist()), set(np.asarray(truth).tolist())
    hit = len(found & truth)
    return {"found": len(found), "planted": len(truth), "precision": hit / max(1, len(found)), "recall": hit / max(1, len(truth))}


def evaluate(report, planted: dict, n_train: int) -> dict:
    """Precision and recall of each check against the planted faults (graph rows: training first)."""
    from workbench.core.checks import Table  # noqa: F401 - the report's tables

    test_rows = planted["leaked"] + n_train
    leaks = report.leaks["row"] if report.leaks is not None else []
    issues = report.label_issues
    train_issue_rows = issues["row"][issues["split"] == "train"]
    labels = report.items.labels
    trainable = np.flatnonzero(~report.items.test & (labels >= 0))
    quality = report.label_probs[trainable, labels[trainable]]  # the probabilities the label issues are ranked by
    top = trainable[np.argsort(quality, kind="stable")[: len(planted["flipped"])]]  # the top-2% list
    dup_rows = report.duplicates["row"]
    kinds = {"exact": test_rows[0::3], "resized": test_rows[1::3], "jpeg": test_rows[2::3]}
    by_kind = {}
    if report.leaks is not None:
        for kind in np.unique(report.leaks["kind"]).tolist():
            by_kind[kind] = score(leaks[report.leaks["kind"] == kind], test_rows)["found"]
            by_kind[kind + " (planted)"] = len(set(leaks[report.leaks["kind"] == kind].tolist()) & set(test_rows.tolist()))
    return {"leaks": score(leaks, test_rows), **{f"leak_recall_{k}": score(leaks, v)["recall"] for k, v in kinds.items()},
            "leaks_by_kind": by_kind,
            "copies_in_duplicate_groups": score(dup_rows[np.isin(dup_rows, planted["copies"])], planted["copies"])["recall"],
            "flipped_top2pct": score(top, planted["flipped"]),
            "flipped_label_issues": score(train_issue_rows, planted["flipped"]),
            "foreign_outliers": score(report.outliers["row"][report.outliers["split"] == "train"], planted["foreign"]),
            "foreign_in_top2pct_labels": score(top, planted["foreign"])["recall"]}


# ----- data -----
def load_fashion():
    from workbench.core.data import read_idx

    root = SHARED / "fashion-mnist"
    get = lambda stem: read_idx(root / f"{stem}-ubyte.gz")  # noqa: E731
    return (get("train-images-idx3")[:, None], get("train-labels-idx1").astype(np.int64),
            get("t10k-images-idx3")[:, None], get("t10k-labels-idx1").astype(np.int64))


def load_cifar_files(split: str, n: int | None = None, seed: int = 0):
    """CIFAR-10 JPEGs of a split as (N, 3, 32, 32) uint8 and labels (all, or ``n`` drawn at random)."""
    from PIL import Image

    root = SHARED / "cifar10-jpg" / split
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files = [(p, c) for c, name in enumerate(classes) for p in sorted((root / name).iterdir())]
    if n is not None:
        pick = np.random.default_rng(seed).choice(len(files), n, replace=False)
        files = [files[i] for i in sorted(pick)]
    x = np.stack([np.asarray(Image.open(p).convert("RGB")).transpose(2, 0, 1) for p, _ in files])
    return x, np.array([c for _, c in files], np.int64)


# ----- cost -----
class PeakRSS:
    """Peak resident memory while the block runs, sampled every 20 ms (ru_maxrss covers the whole process)."""

    def __enter__(self):
        self.base = self.peak = _rss()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self):
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def above(self) -> float:
        return (self.peak - self.base) / 1e9


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    """n non-negative rows (like pooled ReLU maps) around 100 centres, with a few exact and near duplicates."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(100, d, generator=g) ** 4
    x = centres[torch.randint(0, 100, (n,), generator=g)] + 0.15 * torch.rand(n, d, generator=g) ** 4
    x[n // 2: n // 2 + 50] = x[:50]
    x[n // 2 + 50: n // 2 + 100] = x[50:100] + 1e-3 * torch.rand(50, d, generator=g)
    return x.numpy()


def cost(a) -> dict:
    from workbench.core import checks

    if a.features:
        feats = np.load(a.features, mmap_mode="r")[: a.n_train + a.n_test]
        feats = np.ascontiguousarray(feats, dtype=np.float32)
        labels = np.load(a.features.replace(".npy", "_labels.npy"))[: len(feats)]
    else:
        feats = clustered(a.n_train + a.n_test, a.dim)
        labels = np.random.default_rng(0).integers(0, 10, len(feats))
    n = len(feats)
    test = np.arange(n) >= n - a.n_test
    items = checks.Items(labels, test, np.arange(n), [str(i) for i in range(10)],
                         hashes=np.array([f"{i}" for i in range(n)], dtype=object),
                         fingerprints=np.random.default_rng(2).normal(size=(n, 64)).astype(np.float32))  # their search's cost
    torch.set_num_threads(a.threads or torch.get_num_threads())
    with PeakRSS() as mem:
        t = time.perf_counter()
        report = checks.run_checks(feats, items)
        total = time.perf_counter() - t
    rows = np.random.default_rng(1).choice(n, min(a.baseline, n), replace=False)
    t = time.perf_counter()
    ref = checks.brute_force_graph(feats, report.graph.k, rows)
    base = (time.perf_counter() - t) / len(rows) * n
    same_dist = float(np.abs(ref.distances - report.graph.distances[rows]).max())
    same_idx = float((ref.indices == report.graph.indices[rows]).mean())
    return {"rows": n, "dim": feats.shape[1], "features": a.features or "clustered random", "threads": torch.get_num_threads(),
            "graph_s": report.seconds["graph"], "checks_s": report.seconds["checks"], "total_s": total,
            "peak_gb_above_features": mem.above, "features_gb": feats.nbytes / 1e9,
            "brute_force_s_extrapolated": base, "baseline_rows": len(rows),
            "max_distance_difference": same_dist, "same_neighbour_share": same_idx,
            "summary": {k: v for k, v in report.summary().items() if k != "seconds"}}


# ----- planted faults with a run's encoder -----
def faults(a) -> dict:
    from workbench.core import checks
    from workbench.core.inference import RunModel

    rm = RunModel.load(a.run)
    if a.data == "fashion":
        tr_x, tr_y, te_x, te_y = load_fashion()
        other, _ = load_cifar_files("test", 2000, a.seed)
        classes = [str(i) for i in range(10)]
    else:
        tr_x, tr_y = load_cifar_files("train")
        te_x, te_y = load_cifar_files("test")
        other = load_fashion()[2][:2000]
        classes = sorted(p.name for p in (SHARED / "cifar10-jpg" / "train").iterdir())
    p = plant(tr_x, tr_y, te_x, other, 10, a.seed)
    t = time.perf_counter()
    chunks = np.array_split(p["train_x"], 64) + np.array_split(te_x, 16)
    feats = np.concatenate([rm.features(torch.from_numpy(np.array(x))) for x in chunks])
    t_feat = time.perf_counter() - t
    n_train = len(p["train_x"])
    items = checks.Items(np.concatenate([p["train_y"], te_y]), np.arange(len(feats)) >= n_train,
                         np.concatenate([np.arange(n_train), np.arange(len(te_x))]), classes,
                         hashes=np.concatenate([checks.pixel_hashes(p["train_x"]), checks.pixel_hashes(te_x)]),
                         fingerprints=None if a.no_fingerprints else checks.fingerprints(np.concatenate([p["train_x"], te_x])))
    report = checks.run_checks(feats, items)
    out = {"run": str(a.run), "data": a.data, "train_images": n_train, "test_images": len(te_x), "features_s": t_feat,
           **report.seconds, **evaluate(report, p, n_train), "findings": report.findings,
           "leaks_with_the_line_dragged": {f: evaluate(report.with_factor(f), p, n_train)["leaks"] for f in (0.3, 0.5, 1.0)}}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    sub = ap.add_subparsers(dest="what", required=True)
    c = sub.add_parser("cost", help="time and memory of the graph and the checks, against brute force")
    c.add_argument("--n-train", type=int, default=60000)
    c.add_argument("--n-test", type=int, default=10000)
    c.add_argument("--dim", type=int, default=2048)
    c.add_argument("--features", help="a .npy of a run's features (rows: train then test) with a _labels.npy beside it")
    c.add_argument("--baseline", type=int, default=2000, help="rows the brute-force baseline computes (extrapolated)")
    c.add_argument("--threads", type=int, default=0)
    f = sub.add_parser("faults", help="precision and recall on planted faults with a run's encoder")
    f.add_argument("run")
    f.add_argument("--data", choices=["fashion", "cifar"], default="fashion")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--no-fingerprints", action="store_true", help="leave out the resized / re-encoded copies' check")
    a = ap.parse_args(argv)
    print(json.dumps(cost(a) if a.what == "cost" else faults(a), indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
