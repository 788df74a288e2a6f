"""What the loss sees in a batch: the BatchEvent built from a loss's report, and what the window
reads from it (plain numpy, no Qt).

Rows/columns of ``similarity`` index [view1 of the N anchors; view2 of the N anchors] (2N).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.core.metrics import nearest


@dataclass(frozen=True)
class AnchorRow:
    row: int  # row in the (2N, 2N) similarity matrix
    loss: float  # the anchor's per-sample loss
    positive: int
    positive_sim: float
    hardest: list  # [(column, similarity)] of the k most similar negatives, most similar first
    false_negatives: list  # [(column, similarity)] negatives that share the anchor's label


def batch_event(step: int, aug, views1, views2, indices, labels, out, loss_name: str, temperature: float | None = None):
    """A BatchEvent (numpy only) from two view batches (N, C, H, W) float, the batch's indices and labels (N,)
    and a LossOut computed with ``report=True``; ``temperature`` is the configured one, for losses whose
    terms do not report the temperature they used (a learned one)."""
    from workbench.core.events import BatchEvent

    def np_or_none(t):
        return None if t is None else t.detach().float().cpu().numpy() if t.is_floating_point() else t.detach().cpu().numpy()

    temp = out.terms.get("temperature", temperature)
    return BatchEvent(step, aug.to_uint8(views1), aug.to_uint8(views2), np_or_none(indices), np_or_none(labels),
                      np_or_none(out.similarity), np_or_none(out.per_sample), np_or_none(out.positive),
                      np_or_none(out.hardest_negative), float(temp) if temp is not None else None, loss_name,
                      {k: np_or_none(v) for k, v in out.mined.items() if k in ("pairs", "triplets")})


def view_labels(batch) -> np.ndarray:
    return np.concatenate([batch.labels, batch.labels])


def view_image(batch, col: int) -> np.ndarray:
    """(C, H, W) uint8 image of column ``col`` of the similarity matrix."""
    n = len(batch.views1)
    return batch.views1[col] if col < n else batch.views2[col - n]


def anchor_rows(batch, k: int = 5, sort_by_loss: bool = True) -> list[AnchorRow]:
    sim = batch.similarity
    m = sim.shape[0]
    labels = view_labels(batch)
    rows = []
    for i in range(m):
        pos = int(batch.positive[i])
        mask = np.ones(m, bool)
        mask[[i, pos]] = False
        cols = np.nonzero(mask)[0]
        order = cols[np.argsort(-sim[i, cols], kind="stable")]
        hardest = [(int(c), float(sim[i, c])) for c in order[:k]]
        same = order[(labels[order] == labels[i]) & (labels[i] >= 0)]
        rows.append(AnchorRow(i, float(batch.per_sample[i]) if batch.per_sample is not None else float("nan"),
                              pos, float(sim[i, pos]), hardest, [(int(c), float(sim[i, c])) for c in same[:k]]))
    if sort_by_loss:
        rows.sort(key=lambda r: -r.loss)
    return rows


def pos_neg_similarities(batch) -> tuple[np.ndarray, np.ndarray]:
    """Similarities of positive pairs (2N,) and of all negative pairs."""
    sim = batch.similarity
    m = sim.shape[0]
    rows = np.arange(m)
    mask = np.ones_like(sim, bool)
    mask[rows, rows] = False
    mask[rows, batch.positive] = False
    return sim[rows, batch.positive], sim[mask]


def positive_probability(sim: np.ndarray, positive: np.ndarray, temperature: float) -> np.ndarray:
    """softmax over each row (self excluded) of sim / temperature, taken at the positive: (M,)."""
    logits = sim / temperature
    m = sim.shape[0]
    logits = logits.copy()
    logits[np.arange(m), np.arange(m)] = -np.inf
    logits -= logits.max(1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(1, keepdims=True)
    return p[np.arange(m), positive]


def retrieve(query: np.ndarray, bank: np.ndarray, k: int = 10, exclude: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cosine nearest neighbours of query (D,) in bank (N, D): (indices (k,), similarities (k,)); bank row
    ``exclude`` (the query itself, when it comes from the bank) is left out."""
    idx, sim = nearest(np.asarray(query)[None], bank, k, exclude)
    return idx[0], sim[0]
