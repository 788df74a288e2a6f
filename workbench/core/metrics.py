"""Representation quality metrics, computed on the training device.

- kNN accuracy: weighted cosine kNN (Wu et al. 2018), one matmul + top-k per query chunk.
- Linear probe: a linear classifier on frozen features.
- Alignment and uniformity (Wang & Isola 2020, arXiv:2005.10242).
- Effective rank (Roy & Vetterli 2007) and per-dimension std of normalised embeddings, to catch collapse.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_predict(bank: torch.Tensor, bank_labels: torch.Tensor, query: torch.Tensor, k: int = 20,
                temperature: float = 0.07, n_classes: int | None = None, chunk: int = 0, check=None) -> torch.Tensor:
    """Weighted kNN labels for ``query`` (Q, D) given ``bank`` (N, D) and its labels (N,) -> (Q,).

    Queries go in chunks whose (chunk, N) similarity block stays near 64 MB; ``check()`` runs before each
    (it may raise to abandon the search, e.g. when training is stopped).
    """
    bank = F.normalize(bank.float(), dim=1)
    query = F.normalize(query.float(), dim=1)
    n_classes = n_classes or int(bank_labels.max()) + 1
    k = min(k, len(bank))
    chunk = chunk or max(1, min(1024, 2 ** 24 // len(bank)))
    preds = []
    for q in query.split(chunk):
        if check is not None:
            check()
        sim, idx = (q @ bank.T).topk(k, dim=1)
        w = (sim / temperature).exp()
        votes = torch.zeros(len(q), n_classes, device=q.device).scatter_add_(1, bank_labels[idx], w)
        preds.append(votes.argmax(1))
    return torch.cat(preds)


def knn_accuracy(bank, bank_labels, query, query_labels, k=20, temperature=0.07, check=None) -> float:
    keep = bank_labels >= 0
    qkeep = query_labels >= 0
    if not keep.any() or not qkeep.any():
        return float("nan")
    n_classes = int(max(bank_labels.max(), query_labels.max())) + 1
    if not keep.all():
        bank, bank_labels = bank[keep], bank_labels[keep]
    if not qkeep.all():
        query, query_labels = query[qkeep], query_labels[qkeep]
    pred = knn_predict(bank, bank_labels, query, k, temperature, n_classes, check=check)
    return (pred == query_labels).float().mean().item()


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
