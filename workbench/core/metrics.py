"""Representation quality metrics, computed on the training device.

- kNN accuracy: weighted cosine kNN (Wu et al. 2018), one matmul + top-k per query chunk.
- Linear probe: a linear classifier on frozen features.
- Alignment and uniformity (Wang & Isola 2020, arXiv:2005.10242).
- Effective rank (Roy & Vetterli 2007) and per-dimension std of normalised embeddings, to catch collapse.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from workbench.core.neighbours import Index, rows_topk


# What an evaluation reports: metrics.csv's column -> the name users read. One list for the CSV, the runs table,
# TensorBoard and sweeps. "kNN" is the field's protocol (below); a read-out's kNN is reported beside it.
EVAL_METRICS = {
    "knn_acc": "kNN",
    "knn_acc_readout": "kNN, read-out",
    "precision_at_1": "P@1",
    "recall_at_k": "R@k",
    "map_at_r": "mAP@R",
    "linear_acc": "linear probe",
    "linear_acc_10pct": "linear probe, 10% labels",
    "linear_acc_1pct": "linear probe, 1% labels",
    "alignment": "alignment",
    "uniformity": "uniformity",
    "emb_std": "embedding std",
    "eff_rank": "effective rank",
    "eval_queries": "held-out images evaluated",
}

def metric_label(key: str, eval_cfg=None) -> str:
    """The name users read for a metrics key, with the protocol's settings where they matter:
    "kNN (k=20, T=0.07)", "kNN, whitened read-out", "R@5"."""
    label = EVAL_METRICS.get(key, key)
    if eval_cfg is None:
        return label
    if key == "knn_acc":
        return f"{label} (k={eval_cfg.knn_k}, T={eval_cfg.knn_temperature:g})"
    if key == "knn_acc_readout":
        return f"kNN, {eval_cfg.readout} read-out"
    if key == "recall_at_k":
        return f"R@{eval_cfg.recall_k}"
    return label


def describe(metrics: dict, eval_cfg=None) -> str:
    """One line of an evaluation's figures under the names users read, the standard kNN first."""
    parts = []
    for key, value in metrics.items():
        if key == "eval_queries":
            parts.append(f"{int(value):,} held-out images")
        elif isinstance(value, float):
            parts.append(f"{metric_label(key, eval_cfg)} {value:.4f}")
    return ", ".join(parts)


def cosine_topk(bank, query: torch.Tensor, k: int, check=None, exclude_self: bool = False,
                chunk: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest bank rows of each query by cosine: bank (N, D) or a prepared ``neighbours.Index``, query
    (Q, D) -> (sims (Q, k), indices (Q, k)), most similar first, float32. ``exclude_self``: query i is bank row i
    and is left out (leave-one-out). ``check()`` runs before each query chunk (it may raise to abandon the search,
    e.g. when training is stopped). ``neighbours`` says how the search is done."""
    index = bank if isinstance(bank, Index) else Index(bank)
    return index.topk(query, k, check, exclude_self, chunk)


def nearest(query, bank, k: int = 10, exclude: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``cosine_topk`` for arrays: query (Q, D), bank (N, D) -> (indices (Q, k), similarities (Q, k)) numpy, most similar
    first; bank row ``exclude`` (the query itself, when it comes from the bank) is left out."""
    q, b = torch.as_tensor(np.asarray(query, np.float32)), torch.as_tensor(np.asarray(bank, np.float32))
    sim, idx = cosine_topk(b, q, k + (exclude is not None))
    sim, idx = sim.numpy(), idx.numpy()
    if exclude is None:
        return idx, sim
    rows = [np.flatnonzero(row != exclude)[:k] for row in idx]
    n = min((len(r) for r in rows), default=0)
    keep = np.stack([r[:n] for r in rows]) if rows else np.zeros((0, 0), np.int64)
    return np.take_along_axis(idx, keep, 1), np.take_along_axis(sim, keep, 1)


@torch.no_grad()
def knn_predict(bank: torch.Tensor, bank_labels: torch.Tensor, query: torch.Tensor, k: int = 20,
                temperature: float = 0.07, n_classes: int | None = None, check=None, chunk: int = 0) -> torch.Tensor:
    """Weighted kNN labels for ``query`` (Q, D) given ``bank`` (N, D) and its labels (N,) -> (Q,).

    The protocol of Wu et al. 2018 as the field benchmarks it (DINO's ``eval_knn.py``, solo-learn's
    ``WeightedKNNClassifier``, lightly's ``knn_predict``): L2-normalised features, the ``k`` most similar bank
    rows each vote for their class with weight exp(cosine / temperature); no centring, no whitening.
    """
    n_classes = n_classes or int(bank_labels.max()) + 1
    sim, idx = cosine_topk(bank, query, k, check, chunk=chunk)  # bank: (N, D) or a prepared neighbours.Index
    votes = torch.zeros(len(query), n_classes, device=query.device).scatter_add_(1, bank_labels[idx], (sim / temperature).exp())
    return votes.argmax(1)


def knn_accuracy(bank, bank_labels, query, query_labels, k=20, temperature=0.07, check=None) -> float:
    keep = bank_labels >= 0
    qkeep = query_labels >= 0
    if not keep.any() or not qkeep.any():
        return float("nan")
    n_classes = int(max(bank_labels.max(), query_labels.max())) + 1
    if not keep.all():
        bank, bank_labels = bank.take(keep) if isinstance(bank, Index) else bank[keep], bank_labels[keep]
    if not qkeep.all():
        query, query_labels = query[qkeep], query_labels[qkeep]
    pred = knn_predict(bank, bank_labels, query, k, temperature, n_classes, check=check)
    return (pred == query_labels).float().mean().item()


@torch.no_grad()
def retrieval(x: torch.Tensor, labels: torch.Tensor, k: int = 5, check=None) -> dict:
    """Retrieval within one labelled split, each image the query for all the others (leave-one-out), as
    pytorch-metric-learning's ``AccuracyCalculator`` with the split as its own reference:

    - ``precision_at_1``: the nearest other image has the query's class;
    - ``recall_at_k``: one of the ``k`` nearest does (Recall@K of Song et al. 2016, the metric-learning one);
    - ``map_at_r``: MAP@R (Musgrave et al. 2020): with R the number of other images of the query's class,
      (1/R) sum over the first R retrieved of precision@i at each correct one.

    x (N, D), labels (N,) (-1 = unlabelled: left out); cosine on L2-normalised features, fp32. NaN when no
    class has two images.
    """
    keep = labels >= 0
    x, labels = x[keep], labels[keep]
    counts = torch.bincount(labels) if len(labels) else torch.zeros(0, dtype=torch.long)
    r = counts[labels] - 1 if len(labels) else labels
    if len(labels) < 2 or int(r.max()) < 1:
        return {"precision_at_1": float("nan"), "recall_at_k": float("nan"), "map_at_r": float("nan")}
    depth = min(len(x) - 1, max(int(r.max()), k))
    _, idx = rows_topk(x, depth, check)
    hit = (labels[idx] == labels[:, None]).float()  # (N, depth)
    ranks = torch.arange(1, depth + 1, device=x.device, dtype=torch.float32)
    within = ranks[None, :] <= r[:, None]
    precision = hit.cumsum(1) / ranks
    ap = (precision * hit * within).sum(1) / r.clamp_min(1)
    has = r > 0
    return {"precision_at_1": hit[has, 0].mean().item(), "recall_at_k": hit[has, :k].amax(1).mean().item(),
            "map_at_r": ap[has].mean().item()}


def balanced_subset(labels: torch.Tensor, fraction: float, seed: int = 0) -> torch.Tensor:
    """Indices of ``fraction`` of each class's labelled rows (at least one each), drawn with ``seed``: the
    label-efficiency subsets of the papers (1% and 10% of the labels, class-balanced as in SimCLR's)."""
    g = torch.Generator().manual_seed(seed)
    labels = labels.cpu()
    out = []
    for c in labels[labels >= 0].unique():
        rows = (labels == c).nonzero().flatten()
        n = max(1, round(fraction * len(rows)))
        out.append(rows[torch.randperm(len(rows), generator=g)[:n]])
    return torch.cat(out).sort().values if out else torch.zeros(0, dtype=torch.long)


def linear_probe(train_x, train_y, test_x, test_y, epochs: int = 50, lr: float = 0.1, seed: int = 0) -> float:
    """Top-1 accuracy of a linear classifier trained on frozen, standardised features."""
    keep, qkeep = train_y >= 0, test_y >= 0
    if not keep.any() or not qkeep.any():
        return float("nan")
    train_x, train_y, test_x, test_y = train_x[keep].float(), train_y[keep], test_x[qkeep].float(), test_y[qkeep]
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    g = torch.Generator(device="cpu").manual_seed(seed)
    clf = torch.nn.Linear(train_x.shape[1], n_classes).to(train_x.device)
    opt = torch.optim.SGD(clf.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    bs = 512
    with torch.enable_grad():
        for _ in range(epochs):
            perm = torch.randperm(len(train_x), generator=g).to(train_x.device)
            for i in range(0, len(perm), bs):
                b = perm[i:i + bs]
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(clf(train_x[b]), train_y[b]).backward()
                opt.step()
            sched.step()
    with torch.no_grad():
        return (clf(test_x).argmax(1) == test_y).float().mean().item()


@torch.no_grad()
def alignment(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 2) -> float:
    """E ||f(x) - f(y)||^alpha over positive pairs of normalised embeddings (lower is better)."""
    z1, z2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
    return (z1 - z2).norm(dim=1).pow(alpha).mean().item()


@torch.no_grad()
def uniformity(z: torch.Tensor, t: float = 2, max_points: int = 4096) -> float:
    """log E exp(-t ||f(x) - f(y)||^2) over distinct pairs of normalised embeddings (lower is better); NaN for
    fewer than two points (no pair)."""
    if len(z) < 2:
        return float("nan")
    z = F.normalize(z[:max_points].float(), dim=1)
    d = torch.pdist(z).pow(2)
    return (torch.logsumexp(-t * d, 0) - math.log(len(d))).item()


@torch.no_grad()
def effective_rank(z: torch.Tensor) -> float:
    """exp(entropy of the normalised singular values) of centred embeddings (N, D); 1 = collapsed; NaN for one point."""
    if len(z) < 2:
        return float("nan")
    z = z.float() - z.float().mean(0)
    s = torch.linalg.svdvals(z)
    if s.sum() <= 0:
        return 1.0
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


@torch.no_grad()
def embedding_std(z: torch.Tensor) -> float:
    """Mean per-dimension std of L2-normalised embeddings; ~1/sqrt(D) when spread, ~0 when collapsed; NaN for one point."""
    if len(z) < 2:
        return float("nan")
    return F.normalize(z.float(), dim=1).std(0).mean().item()


COLLAPSE_MIN_POINTS = 16  # fewer embeddings span too few directions to tell collapse (two have effective rank 1)


def collapse_warning(std: float, rank: float, dim: int, n: int = COLLAPSE_MIN_POINTS) -> str | None:
    """The warning for collapsed embeddings, judged from ``n`` of them; None when healthy or ``n`` is too few to tell."""
    if n < COLLAPSE_MIN_POINTS:
        return None
    if std < 0.1 / math.sqrt(dim) or rank < 1.5:
        return (f"embedding collapse: std of normalised embeddings {std:.4f} (healthy ~{1 / math.sqrt(dim):.3f}), "
                f"effective rank {rank:.1f} of {dim}; try a lower learning rate, another temperature or loss")
    return None
