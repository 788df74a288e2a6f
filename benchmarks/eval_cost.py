"""What one evaluation costs, before and after the field's protocol became the headline, on the same features.

    python benchmarks/eval_cost.py [--data fashion|cifar] [--run RUN_DIR] [--test-size 0]

Embeds the whole training split (the kNN bank: 60,000 Fashion-MNIST or 50,000 CIFAR-10 images) and the held-out
split (10,000) once, with the encoder of ``--run`` (a trained run on that data) or, without it, the default
``small_cnn`` untrained (the features' shape, and so the cost, is the same). Then, on those features, times:

- **before** (the baseline, transcribed from the evaluation this replaced): the whitening read-out fitted on the
  bank (covariance of 20,000 rows, eigendecomposition in float64) and applied to both splits, the weighted kNN on
  the whitened features (fp32, 64 MB query chunks), and the display's PCA by a full SVD of 2,000 held-out
  features in float64 after undoing the read-out;
- **after**: the weighted kNN on the plain backbone features (``core/neighbours.py``: on a CPU an int8 screen and
  an exact float32 re-rank), retrieval metrics (P@1, R@5, mAP@R; exact, each pair of blocks multiplied once), and
  the display's PCA by randomised subspace iteration.

Both add the embedding seconds measured once. Printed: each part's seconds, the two totals and their ratio, the
standard kNN (k=20, T=0.07 and k=200, T=0.1) by the new search and by the old one on the same plain features
(their difference), how many queries' top-20 lists differ from the exact float32 search's and whether those are
ties (the same similarities), and the whitened kNN (the old headline).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = {"fashion": ["data.name=fashion_mnist", f"data.root={ROOT.parent / 'shared' / 'data' / 'fashion-mnist'}"],
        "cifar": ["data.name=image_folder", f"data.root={ROOT.parent / 'shared' / 'data' / 'cifar10-jpg'}"]}


def old_knn(bank, bank_labels, query, k=20, temperature=0.07):
    """The kNN search as it was: fp32, queries in chunks of a 64 MB similarity block."""
    bank, query = F.normalize(bank.float(), dim=1), F.normalize(query.float(), dim=1)
    n_classes = int(bank_labels.max()) + 1
    chunk = max(1, min(1024, 2 ** 24 // len(bank)))
    preds = []
    for q in query.split(chunk):
        sim, idx = (q @ bank.T).topk(k, dim=1)
        votes = torch.zeros(len(q), n_classes).scatter_add_(1, bank_labels[idx], (sim / temperature).exp())
        preds.append(votes.argmax(1))
    return torch.cat(preds)


def same_lists(bank, query, k=20):
    """(queries whose k neighbours are the exact search's, how many of the others tie: the same similarities)."""
    from workbench.core.neighbours import Index

    index = Index(bank)
    sim, idx = index.topk(query, k)
    q = F.normalize(query.float(), dim=1)
    exact = [(c @ index.unit.T).topk(k, dim=1) for c in q.split(512)]  # the plain search, float32
    want_sim, want_idx = torch.cat([e.values for e in exact]), torch.cat([e.indices for e in exact])
    same = (idx.sort(1).values == want_idx.sort(1).values).all(1)
    ties = torch.isclose(sim[~same].sum(1), want_sim[~same].sum(1), atol=1e-5).sum()
    return int(same.sum()), int(ties)


def old_pca(x: np.ndarray) -> np.ndarray:
    xc = x.astype(np.float64) - x.mean(0)
    return xc @ np.linalg.svd(xc, full_matrices=False)[2][:2].T


def features(args):
    from workbench.core.config import Config
    from workbench.core.evaluation import embed
    from workbench.core.setup import prepare

    overrides = DATA[args.data] + ["eval.bank_size=0", f"eval.test_size={args.test_size}"]
    if args.run:
        from workbench.core.inference import RunModel

        rm = RunModel.load(args.run)
        train, test = rm.splits()
        t = time.perf_counter()
        bank, query = (torch.from_numpy(rm.embed(d.images, batch=1024)) for d in (train, test))
        return bank, train.labels, query, test.labels, time.perf_counter() - t
    s = prepare(Config().with_overrides(overrides))
    t = time.perf_counter()
    bank, query = embed(s, s.train.images, raw=True), embed(s, s.test.images, raw=True)
    return bank, s.train.labels, query, s.test.labels, time.perf_counter() - t


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=DATA, default="fashion")
    p.add_argument("--run", help="a trained run on that data (default: the untrained default encoder)")
    p.add_argument("--test-size", type=int, default=0, help="held-out images (0 = all 10,000)")
    args = p.parse_args()
    torch.manual_seed(0)
    from workbench.core import metrics as M
    from workbench.core.models import Readout
    from workbench.core.projection import pca_2d

    bank, bank_labels, query, labels, t_embed = features(args)
    print(f"{args.data}: bank {tuple(bank.shape)}, queries {tuple(query.shape)}; embedding both {t_embed:.1f} s")
    shown = query[:2000].numpy()

    ro = Readout(bank.shape[1])
    kind, t_fit = timed(lambda: ro.fit(bank))
    (wb, wq), t_apply = timed(lambda: (ro.apply_(bank.clone()), ro.apply_(query.clone())))
    pred_w, t_old_knn = timed(lambda: old_knn(wb, bank_labels, wq))
    _, t_old_pca = timed(lambda: old_pca(shown))
    before = t_fit + t_apply + t_old_knn + t_old_pca
    print(f"before: read-out fit {t_fit:.1f} s ({kind}) + apply {t_apply:.1f} s + kNN {t_old_knn:.1f} s + PCA (full SVD) "
          f"{t_old_pca:.1f} s = {before:.1f} s (+ embedding: {before + t_embed:.1f} s)")

    acc, t_knn = timed(lambda: M.knn_accuracy(bank, bank_labels, query, labels, 20, 0.07))
    ret, t_ret = timed(lambda: M.retrieval(query, labels, 5))
    _, t_pca = timed(lambda: pca_2d(shown))
    after = t_knn + t_ret + t_pca
    print(f"after:  kNN {t_knn:.1f} s + retrieval {t_ret:.1f} s + PCA (randomised) {t_pca:.2f} s = {after:.1f} s "
          f"(+ embedding: {after + t_embed:.1f} s)")
    print(f"evaluation seconds after / before: {after / before:.2f} without the embedding, "
          f"{(after + t_embed) / (before + t_embed):.2f} with it")

    old = (old_knn(bank, bank_labels, query) == labels).float().mean().item()
    acc200 = M.knn_accuracy(bank, bank_labels, query, labels, 200, 0.1)
    old200 = (old_knn(bank, bank_labels, query, 200, 0.1) == labels).float().mean().item()
    print(f"kNN k=20 T=0.07: {acc:.4f} (the old search on the same features {old:.4f}; |diff| {abs(acc - old):.4f})")
    print(f"kNN k=200 T=0.1: {acc200:.4f} (the old search {old200:.4f}; |diff| {abs(acc200 - old200):.4f})")
    same, ties = same_lists(bank, query)
    print(f"top-20 lists: {len(query) - same:,} of {len(query):,} differ from the exact fp32 search's, "
          f"{ties} of them ties (the same similarities)")
    print(f"kNN through the whitened read-out (the old headline), k=20: {(pred_w == labels).float().mean().item():.4f}")
    print("retrieval on the held-out split: " + ", ".join(f"{k} {v:.4f}" for k, v in ret.items()))


if __name__ == "__main__":
    main()
