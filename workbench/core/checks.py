"""What a run's representation says about its data: near-duplicates, train/test leaks, outliers, likely
label errors and a diverse subset, read from one exact cosine kNN graph (with the pixels' fingerprints for
resized or re-encoded copies, and a cross-validated linear classifier for the label probabilities).

    report = check_run("runs/2026-12-07_fashion_mnist-ntxent")          # both splits, k = 10
    report.leaks.to_csv("leaks.csv"); print("\\n".join(report.findings))

The graph (``knn_graph``) holds every image's k nearest other images by cosine distance ``1 - cos`` of the
encoder's own output (``RunModel.features``: the backbone representation of un-augmented images, never the
whitening read-out), over both splits together. It is exact and memory-bounded: candidates come from blocks
of a bfloat16 product of the normalised features less their mean (symmetric, so each pair is multiplied once;
see ``_centred_bf16``), are re-ranked in float32, and a row whose true k-th neighbour could lie outside its
candidates by the product's worst-case rounding error is recomputed in float32 against every image (see
``_bf16_error``), or, when most rows are in that case, every pair once in float32.

The checks follow cleanlab's Datalab where it has one (its thresholds, so the figures can be compared):
- near-duplicates: images closer than ``factor`` x the median nearest-neighbour distance (factor 0.13 as in
  Datalab's near_duplicate issue), grouped as connected components, plus exact copies by pixel hash and the same
  picture resized or re-encoded by a perceptual fingerprint of the pixels (``fingerprints``: the low frequencies
  pHash reads, compared as numbers);
- leaks: held-out images with a near- or exact duplicate, or a resized or re-encoded copy, in the training split;
- outliers: mean distance to the k neighbours above Q3 + 1.7 IQR of all of them (Datalab's outlier rule);
- label issues: confident learning (Northcutt, Jiang & Chuang, "Confident Learning: Estimating Uncertainty
  in Dataset Labels", JAIR 2021) on out-of-sample class probabilities of a cross-validated linear classifier on
  the representations (``linear_probabilities``, the route cleanlab recommends), ranked by the given label's
  probability; the confusion matrix is the neighbours' vote's (an image's own vote is never in its neighbours),
  weighted exp(cos / T) as the run's kNN evaluation weighs them;
- a diverse subset by farthest-point sampling (Gonzalez 1985) to a count or a minimum distance.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from workbench.core.folder import Cancelled
from workbench.core.registry import ConfigError
from workbench.core.runfolder import CHECK_SUMMARY

K = 10
DUPLICATE_FACTOR = 0.13  # Datalab's near_duplicate threshold: a fraction of the median nearest-neighbour distance
OUTLIER_IQR = 1.7  # Datalab's outlier rule: mean kNN distance above Q3 + 1.7 IQR
TEMPERATURE = 0.07  # vote weight exp(cos / T), the kNN evaluation's default (eval.knn_temperature)
BLOCK = 4096  # rows a block of the graph's product: a 4096 x 4096 float32 block is 64 MB
EXTRA = 38  # candidates a row beyond k kept from the bfloat16 pass
BF16_U = 2.0 ** -8  # unit roundoff of bfloat16 (8 significant bits)
EXACT_PASS_SHARE = 0.5  # above this share of undecided rows, one float32 pass over every pair replaces their recomputation
FINGERPRINT_SIDE = 32  # images are resampled to 32 x 32 greyscale for their fingerprint, as pHash does
FINGERPRINT_BAND = 8  # the fingerprint: the 8 x 8 lowest frequencies of that resample's 2-D DCT (64 numbers)
PERCEPTUAL_RADIUS = 0.04  # fingerprints closer than this (relative distance) are the same picture resized or re-encoded
EXACT, PERCEPTUAL, NEAR = "exact copy", "resized or re-encoded", "near-duplicate"  # the kinds of duplicate
LINEAR_FOLDS = 3  # the label probabilities: cross-validation folds of the linear classifier
LINEAR_SHRINK = 0.1  # ... the shared covariance shrunk this far towards its mean variance
PCA_SAMPLE = 10_000  # rows whose covariance gives the principal directions (every row is projected)
LINEAR_DIM = 256  # ... on this many principal components of the representations

Progress = Callable[[int, int, str], None]


def _tick(progress: Progress | None, cancel, done: int, total: int, what: str) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("checks cancelled")
    if progress is not None:
        progress(done, total, what)


# ----- the graph -----
@dataclass
class Graph:
    """Each of N images' k nearest other images: ``indices`` (N, k) int64 and cosine ``distances`` (N, k)
    float32 in ascending order (ties in index order)."""

    indices: np.ndarray
    distances: np.ndarray

    @property
    def k(self) -> int:
        return self.indices.shape[1]

    @property
    def nearest(self) -> np.ndarray:
        """(N,) distance to the nearest other image."""
        return self.distances[:, 0]


def _tensor(features) -> torch.Tensor:
    """(N, D) float32 features as a tensor sharing their memory (a read-only memory map too: nothing writes to it)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch warns of read-only arrays
        return torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))


def _inverse_norms(x: torch.Tensor) -> torch.Tensor:
    return 1.0 / torch.cat([c.norm(dim=1) for c in x.split(8192)]).clamp_min(1e-12)


def _centred_bf16(x: torch.Tensor, inv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The unit rows u = x / |x| less their mean c, in bfloat16 (N, D), with each row's norm |r~| and rounding error
    |r~ - r| (N,) in float32, and the offsets t = u.c - |c|^2 / 2 (N,) that give back the cosine:
    u_i.u_j = r_i.r_j + t_i + t_j. Centring shrinks the rows (features of one network share a large mean: ReLU
    features from a CNN lie in one orthant), so the product's rounding error, relative to |r_i||r_j|, shrinks with
    them."""
    n = len(x)
    mean = torch.zeros(x.shape[1], dtype=torch.float64)
    for a in range(0, n, 8192):
        mean += (x[a:a + 8192] * inv[a:a + 8192, None]).double().sum(0)
    c = mean / n
    out = torch.empty(x.shape, dtype=torch.bfloat16)
    norm, err, t = torch.empty(n), torch.empty(n), torch.empty(n)
    for a in range(0, n, 8192):
        u = x[a:a + 8192] * inv[a:a + 8192, None]
        t[a:a + 8192] = (u.double() @ c - 0.5 * (c @ c)).float()
        r = u - c.float()
        out[a:a + 8192] = r
        back = out[a:a + 8192].float()
        norm[a:a + 8192], err[a:a + 8192] = back.norm(dim=1), (back - r).norm(dim=1)
    return out, norm, err, t


def _bf16_error(norm: torch.Tensor, err: torch.Tensor) -> torch.Tensor:
    """(N,) worst-case |q~.b~ (rounded to bfloat16) - q.b| for each query q against any b of the bank:
    q.b = q~.b~ - q~.e_b - e_q.b~ + e_q.e_b, so the inputs' part is at most |q~||e_b| + |e_q||b~| + |e_q||e_b|
    (Cauchy-Schwarz, with the bank's largest |e_b| and |b~|); float32 accumulation adds d 2^-24 |q~||b~| at most
    (d <= 2^24 / 16 here) and the product's rounding to bfloat16 u |q~.b~| <= u |q~||b~| (Higham, Accuracy and
    Stability of Numerical Algorithms, 2002, 3.1)."""
    e_b, n_b = float(err.max()), float(norm.max())
    return norm * e_b + err * n_b + err * e_b + (2.0 ** -20 + BF16_U) * norm * n_b + 1e-5  # + the offsets' float32 sums


def _merge(best_v: torch.Tensor, best_i: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor,
           grouped: bool = False) -> None:
    """Merge entries (row ``rows[e]`` of the graph, column ``cols[e]``, similarity ``vals[e]``) into the rows' m
    largest: only the rows with an entry are touched, each with its current m and its new entries. ``grouped``:
    the entries come sorted by row already."""
    if len(rows) == 0:
        return
    m = best_v.shape[1]
    if not grouped:
        order = rows.argsort(stable=True)
        rows, cols, vals = rows[order], cols[order], vals[order]
    hit, counts = torch.unique_consecutive(rows, return_counts=True)
    slot = torch.repeat_interleave(torch.arange(len(hit)), counts)
    pos = torch.arange(len(rows)) - (torch.cumsum(counts, 0) - counts)[slot]
    v = torch.full((len(hit), int(counts.max())), -math.inf)
    i = torch.zeros((len(hit), v.shape[1]), dtype=torch.int64)
    v[slot, pos], i[slot, pos] = vals, cols
    v, j = torch.cat([best_v[hit], v], 1), torch.cat([best_i[hit], i], 1)
    top, pick = v.topk(m, dim=1)
    best_v[hit], best_i[hit] = top, j.gather(1, pick)


def _merge_block(best_v: torch.Tensor, best_i: torch.Tensor, s: torch.Tensor, a: int, c: int) -> None:
    """Merge block ``s`` (rows a.., columns c.., c != a) into both its rows' and its columns' lists (the product is
    symmetric). Only entries above a list's current m-th can enter: after the first blocks they are a handful a
    row, picked out by comparisons along the block's rows (never a walk down its columns)."""
    r, col = torch.nonzero(s > best_v[a:a + len(s), -1, None], as_tuple=True)
    low = best_v[c:c + s.shape[1], -1]  # read before the rows' merge: the columns' floors only rise, so this lets more in
    r2, col2 = torch.nonzero(s > low[None, :], as_tuple=True)
    _merge(best_v, best_i, r + a, col + c, s[r, col], grouped=True)  # nonzero gives them row by row
    _merge(best_v, best_i, col2 + c, r2 + a, s[r2, col2])


def knn_graph(features, k: int = K, block: int = BLOCK, progress: Progress | None = None, cancel=None) -> Graph:
    """The exact cosine kNN graph of ``features`` (N, D) (any scale; rows are L2-normalised here), each image's
    own row left out. Memory beyond the features: a bfloat16 copy (N x D x 2 bytes), a few blocks and the
    candidate lists, about 0.6 GB for 70,000 x 2,048 (and a float32 copy when the exact pass is needed).

    >>> g = knn_graph(np.eye(3, 4) + 0.1, k=1); g.indices.tolist()
    [[1], [0], [0]]
    """
    x = _tensor(features)
    n, d = x.shape
    if n < 2:
        raise ConfigError(f"checks: need at least 2 images for a neighbour graph, got {n}")
    k = max(1, min(int(k), n - 1))
    m = min(n - 1, k + EXTRA)
    inv = _inverse_norms(x)
    xb, norm, err, t = _centred_bf16(x, inv)
    eps = _bf16_error(norm, err)
    best_v, best_i = _block_pass(xb, t, m, block, lambda i, of: _tick(progress, cancel, i, of, "neighbour graph"))
    del xb
    sim, idx = _rerank(x, inv, best_v, best_i, eps, k)
    redo = torch.nonzero(sim[:, -1] <= best_v[:, -1] + eps).flatten() if m < n - 1 else torch.zeros(0, dtype=torch.int64)
    if len(redo) > EXACT_PASS_SHARE * n:  # most rows undecided (points at near-equal distances): every pair once in float32 is cheaper
        unit = torch.cat([x[a:a + 8192] * inv[a:a + 8192, None] for a in range(0, n, 8192)])
        v, i = _block_pass(unit, None, min(n - 1, k + 8), block,
                           lambda j, of: _tick(progress, cancel, j, of, "neighbour graph, exact pass"))
        sim, idx = _order(v, i, k)
    elif len(redo):  # rows whose k-th exact similarity a non-candidate might beat: recomputed against every image
        sim[redo], idx[redo] = _exact_rows(x, inv, redo, k)
    _tick(progress, cancel, 1, 1, "neighbour graph")
    return Graph(idx.numpy(), (1.0 - sim).clamp_(0.0, 2.0).numpy())


def _block(rows: torch.Tensor, t: torch.Tensor | None, a: int, c: int, block: int) -> torch.Tensor:
    """Rows a..a+block by rows c..c+block of ``rows @ rows.T + t_i + t_j``, float32."""
    s = (rows[a:a + block] @ rows[c:c + block].T).float()
    if t is not None:
        s += t[a:a + block, None]
        s += t[None, c:c + block]
    return s


def _block_pass(rows: torch.Tensor, t: torch.Tensor | None, m: int, block: int, tick) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's m largest ``rows_i . rows_j + t_i + t_j`` (j != i) and their columns, (N, m) each, by blocks of the
    product (symmetric: each pair of blocks multiplied once, merged both ways); ``tick(done, total)`` between blocks."""
    n = len(rows)
    best_v = torch.full((n, m), -math.inf)
    best_i = torch.zeros((n, m), dtype=torch.int64)
    starts = list(range(0, n, block))
    total = len(starts) * (len(starts) + 1) // 2
    for done, a in enumerate(starts):  # the diagonal blocks first: every row's list starts full
        tick(done, total)
        s = _block(rows, t, a, a, block)
        s.fill_diagonal_(-math.inf)
        top, pick = s.topk(min(m, len(s)), dim=1)
        best_v[a:a + len(s), :top.shape[1]], best_i[a:a + len(s), :top.shape[1]] = top, pick + a
    done = len(starts)
    for bi, a in enumerate(starts):
        for c in starts[bi + 1:]:
            tick(done, total)
            _merge_block(best_v, best_i, _block(rows, t, a, c, block), a, c)
            done += 1
    return best_v, best_i


def _order(sim: torch.Tensor, idx: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest similarities a row, ties broken by the smaller index (a stable sort on the index first)."""
    by_index = idx.argsort(dim=1, stable=True)
    sim, idx = sim.gather(1, by_index), idx.gather(1, by_index)
    order = sim.argsort(dim=1, descending=True, stable=True)[:, :k]
    return sim.gather(1, order), idx.gather(1, order)


def _rerank(x: torch.Tensor, inv: torch.Tensor, approx: torch.Tensor, cand: torch.Tensor, eps: torch.Tensor,
            k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact float32 similarities of each row to the candidates that may be among its k nearest (approximate
    similarity within 2 eps of the k-th approximate one; the others are below the k-th exact one), k kept. The
    candidate lists are sorted, so those are a prefix of each row's: rows with as many candidates go together,
    each multiplied with its first w candidates' features (its own features read once, not once per candidate)."""
    n, m = cand.shape
    maybe = approx >= (approx[:, k - 1] - 2 * eps)[:, None]
    exact = torch.full((n, m), -math.inf)
    counts = maybe.sum(1)
    by_count = counts.argsort()  # rows with as many candidates together: little padding
    step = 512  # rows a chunk: their candidates' features (512 x w x D float32) a few hundred MB at most
    for a in range(0, n, step):
        r = by_count[a:a + step]
        w = int(counts[r].max())
        c = cand[r, :w]
        rows = x.index_select(0, c.flatten()).view(len(c), w, -1)
        s = torch.einsum("bwd,bd->bw", rows, x[r]) * inv[r, None] * inv[c]
        exact[r, :w] = s.masked_fill_(~maybe[r, :w], -math.inf)
    return _order(exact, cand, k)


def _exact_rows(x: torch.Tensor, inv: torch.Tensor, rows: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest other images of ``rows`` by a float32 product with every image."""
    out_s, out_i = [], []
    for chunk in rows.split(256):
        s = (x[chunk] @ x.T) * inv[chunk, None] * inv[None]
        s[torch.arange(len(chunk)), chunk] = -math.inf
        top = s.topk(min(k + EXTRA, s.shape[1]), dim=1)
        sim, idx = _order(top.values, top.indices, k)
        out_s.append(sim)
        out_i.append(idx)
    return torch.cat(out_s), torch.cat(out_i)


def brute_force_graph(features, k: int = K, rows=None) -> Graph:
    """The graph's ``rows`` (default: all) by the plain method: a float64 product of each row with every image and
    a full sort. The reference ``knn_graph`` is tested and timed against."""
    x = _tensor(features)
    rows = torch.arange(len(x)) if rows is None else torch.as_tensor(rows)
    inv = _inverse_norms(x).double()
    idx, dist = [], []
    for chunk in rows.split(512):
        s = (x[chunk].double() @ x.double().T) * inv[chunk, None] * inv[None]
        s[torch.arange(len(chunk)), chunk] = -math.inf
        order = s.argsort(dim=1, descending=True, stable=True)[:, :k]
        idx.append(order)
        dist.append(1.0 - s.gather(1, order))
    return Graph(torch.cat(idx).numpy(), torch.cat(dist).float().numpy())


# ----- tables -----
class Table:
    """Named columns of equal length (numpy arrays): ``t["score"]``, ``len(t)``, ``t.rows()`` as dicts,
    ``t.to_csv(path)``; ``t.to_pandas()`` where pandas is installed."""

    def __init__(self, **columns):
        self.columns = {name: np.asarray(values) for name, values in columns.items()}
        sizes = {len(v) for v in self.columns.values()}
        if len(sizes) > 1:
            raise ValueError(f"columns of different lengths: { {n: len(v) for n, v in self.columns.items()} }")

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), ()))

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def __repr__(self) -> str:
        return f"Table({len(self)} rows: {', '.join(self.columns)})"

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    def take(self, rows) -> Table:
        return Table(**{n: v[rows] for n, v in self.columns.items()})

    def rows(self) -> list[dict]:
        cols = {n: v.tolist() for n, v in self.columns.items()}
        return [dict(zip(cols, values, strict=True)) for values in zip(*cols.values(), strict=True)]

    def csv_text(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.names)
        for row in zip(*(v.tolist() for v in self.columns.values()), strict=True):
            w.writerow([f"{x:.6g}" if isinstance(x, float) else x for x in row])
        return buf.getvalue()

    def to_csv(self, path: str | Path) -> Path:
        from workbench.core.files import atomic_write_text

        atomic_write_text(Path(path), self.csv_text())
        return Path(path)

    def to_pandas(self):
        import pandas as pd  # optional: not a dependency of the workbench

        return pd.DataFrame(self.columns)


# ----- what the checks read about each image -----
@dataclass
class Items:
    """The N images of the graph, training rows first: ``labels`` (N,) int64 (-1 = unlabeled), ``test`` (N,)
    bool (held-out), ``index`` (N,) position in the source split, ``files`` (N,) names ("" when not from a
    folder), ``hashes`` (N,) pixel digests (None: no exact-duplicate check), ``fingerprints`` (N, 64) perceptual
    fingerprints (None: no check for resized or re-encoded copies) and the class names."""

    labels: np.ndarray
    test: np.ndarray
    index: np.ndarray
    classes: list = field(default_factory=list)
    files: np.ndarray | None = None
    hashes: np.ndarray | None = None
    fingerprints: np.ndarray | None = None

    def __post_init__(self):
        n = len(self.labels)
        if self.files is None:
            self.files = np.array([""] * n, dtype=object)
        optional = tuple(name for name in ("hashes", "fingerprints") if getattr(self, name) is not None)
        for name in ("test", "index", "files") + optional:
            if len(getattr(self, name)) != n:
                raise ConfigError(f"checks: {name} has {len(getattr(self, name))} entries for {n} images")

    def __len__(self) -> int:
        return len(self.labels)

    def split_names(self, rows) -> np.ndarray:
        return np.where(self.test[rows], "test", "train")

    def class_names(self, labels) -> np.ndarray:
        names = list(self.classes)
        return np.array([names[c] if 0 <= c < len(names) else (str(c) if c >= 0 else "") for c in np.asarray(labels).tolist()],
                        dtype=object)

    def describe(self, rows) -> dict:
        """The columns that say which image a row is: row, split, index, file, class."""
        rows = np.asarray(rows, np.int64)
        return {"row": rows, "split": self.split_names(rows), "index": self.index[rows], "file": self.files[rows],
                "class": self.class_names(self.labels[rows])}


def pixel_hashes(images, chunk: int = 4096) -> np.ndarray:
    """(N,) hex digests (BLAKE2b, 16 bytes) of each image's uint8 pixels (N, C, H, W): equal for exact copies."""
    out = []
    for a in range(0, len(images), chunk):
        block = np.ascontiguousarray(np.asarray(images[a:a + chunk]))
        out += [hashlib.blake2b(row.tobytes(), digest_size=16).hexdigest() for row in block]
    return np.array(out, dtype=object)


def _dct_matrix(n: int) -> torch.Tensor:
    """(n, n) orthonormal DCT-II: row f is cos(pi (2 i + 1) f / 2n), scaled so the matrix is orthogonal."""
    f = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None]
    d = torch.cos(math.pi * (2 * i + 1) * f / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.float()


def fingerprints(images, chunk: int = 4096) -> np.ndarray:
    """(N, 64) float32 perceptual fingerprints of uint8 images (N, C, H, W): the 8 x 8 lowest frequencies of the 2-D
    DCT-II (orthonormal) of the image as 32 x 32 greyscale (ITU-R 601 luma, bilinear with antialiasing, pixels / 255).
    These are the coefficients pHash (Zauner, "Implementation and Benchmarking of Perceptual Image Hash Functions",
    2010) thresholds at their median into 64 bits; kept as numbers they tell a copy from a look-alike far better
    (on Fashion-MNIST the 64-bit hash of one test image in 75 equals a different training image's). Resizing and JPEG
    re-encoding change the high frequencies and leave these nearly as they were."""
    dct = _dct_matrix(FINGERPRINT_SIDE)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    out = []
    for a in range(0, len(images), chunk):
        x = torch.from_numpy(np.array(images[a:a + chunk], dtype=np.float32)) / 255.0
        grey = (x * luma).sum(1, keepdim=True) if x.shape[1] == 3 else x.mean(1, keepdim=True)
        small = torch.nn.functional.interpolate(grey, size=(FINGERPRINT_SIDE,) * 2, mode="bilinear", antialias=True,
                                                align_corners=False)[:, 0]
        out.append((dct @ small @ dct.T)[:, :FINGERPRINT_BAND, :FINGERPRINT_BAND].flatten(1))
    return torch.cat(out).numpy() if out else np.zeros((0, FINGERPRINT_BAND ** 2), np.float32)


def perceptual_distance(a: np.ndarray, b: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """Relative distance |a - b| / max(|a|, |b|) of fingerprints (M, 64) row by row: 0 for equal pictures (float32,
    ``chunk`` rows at a time)."""
    a, b = np.broadcast_arrays(np.asarray(a, np.float32), np.asarray(b, np.float32))
    shape = a.shape[:-1]
    a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    out = np.empty(len(a), np.float32)
    for i in range(0, len(a), chunk):
        x, y = torch.from_numpy(np.ascontiguousarray(a[i:i + chunk])), torch.from_numpy(np.ascontiguousarray(b[i:i + chunk]))
        scale = torch.maximum(x.norm(dim=1), y.norm(dim=1)).clamp_min(1e-6)
        out[i:i + chunk] = ((x - y).norm(dim=1) / scale).numpy()
    return out.reshape(shape)


def pair_distances(fp: np.ndarray, a: np.ndarray, b: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """``perceptual_distance`` of fingerprint rows a[i] and b[i] (M,), gathered ``chunk`` pairs at a time."""
    out = np.empty(len(a), np.float32)
    for i in range(0, len(a), chunk):
        out[i:i + chunk] = perceptual_distance(fp[a[i:i + chunk]], fp[b[i:i + chunk]])
    return out


def nearest_fingerprints(fp: np.ndarray, queries: np.ndarray, bank: np.ndarray, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Each of ``queries``' (rows of ``fp``) nearest row of ``bank`` by Euclidean distance, compared with every one (a
    float32 product, ``chunk`` queries at a time), and the pair's ``perceptual_distance``: (len(queries),) each."""
    x = torch.from_numpy(np.ascontiguousarray(fp, dtype=np.float32))
    bank = np.asarray(bank, np.int64)
    b = x[torch.from_numpy(bank)]
    nb = (b * b).sum(1)
    best = np.zeros(len(queries), np.int64)
    for a in range(0, len(queries), chunk):
        q = x[torch.as_tensor(queries[a:a + chunk], dtype=torch.int64)]
        best[a:a + len(q)] = bank[torch.addmm(nb[None], q, b.T, alpha=-2.0).argmin(1).numpy()]  # |b|^2 - 2 q.b
    return best, pair_distances(fp, np.asarray(queries), best)


@dataclass
class Pairs:
    """Pairs of images that are the same picture resized or re-encoded: rows ``a`` and ``b`` (M,), their fingerprints'
    ``pixel`` distance and their representations' cosine ``distance`` (M,)."""

    a: np.ndarray
    b: np.ndarray
    pixel: np.ndarray
    distance: np.ndarray

    @classmethod
    def none(cls) -> Pairs:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32))


def perceptual_pairs(features, graph: Graph, items: Items, radius: float = PERCEPTUAL_RADIUS) -> Pairs:
    """The same picture resized or re-encoded: fingerprints closer than ``radius``, looked for between each image and
    its k neighbours in the graph and between each held-out image and every training image (a leak must not hide
    behind look-alikes the encoder puts nearer). Equal pixels are left to the pixel hash. Empty without fingerprints."""
    fp = items.fingerprints
    if fp is None:
        return Pairs.none()
    a = np.repeat(np.arange(len(items)), graph.k)
    b = graph.indices.ravel()
    train, test = np.flatnonzero(~items.test), np.flatnonzero(items.test)
    if len(train) and len(test):
        nearest, _ = nearest_fingerprints(fp, test, train)
        a, b = np.concatenate([a, test]), np.concatenate([b, nearest])
    pixel = pair_distances(fp, a, b)
    keep = pixel < radius
    if items.hashes is not None:
        keep &= items.hashes[a] != items.hashes[b]
    a, b = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
    a, first = np.unique(a * len(items) + b, return_index=True)  # each pair once
    a, b, pixel = a // len(items), a % len(items), pixel[keep][first]
    x = _tensor(features)
    ua, ub = x[torch.from_numpy(a)], x[torch.from_numpy(b)]
    cos = (ua * ub).sum(1) / (ua.norm(dim=1) * ub.norm(dim=1)).clamp_min(1e-12)
    return Pairs(a, b, pixel, (1.0 - cos).clamp_(0.0, 2.0).numpy())


# ----- near-duplicates and leaks -----
def duplicate_radius(graph: Graph, factor: float = DUPLICATE_FACTOR) -> float:
    """The near-duplicate distance: ``factor`` x the median nearest-neighbour distance (Datalab's rule)."""
    if factor < 0:
        raise ConfigError(f"checks: the near-duplicate factor must be >= 0, got {factor}")
    return float(factor * max(float(np.median(graph.nearest)), 1e-12))


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n,) label of each node's connected component (its smallest member) for undirected edges a[i]-b[i]:
    minimum-label propagation with pointer jumping (Shiloach-Vishkin style), vectorised."""
    label = np.arange(n)
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    while True:
        low = np.minimum(label[a], label[b])
        new = label.copy()
        np.minimum.at(new, label[a], low)  # hook each component's root to the smaller one
        np.minimum.at(new, label[b], low)
        new = new[new]
        while not np.array_equal(new, new[new]):
            new = new[new]
        new = new[label]
        if np.array_equal(new, label):
            return label
        label = new


def _duplicate_edges(graph: Graph, items: Items, radius: float, pairs: Pairs | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges (a, b, distance) of near-duplicates (closer than ``radius``, or exactly 0), of equal pixel hashes and of
    ``pairs`` (the same picture resized or re-encoded)."""
    close = (graph.distances < radius) | (graph.distances <= 0)
    a = np.repeat(np.arange(len(graph.indices)), graph.k)[close.ravel()]
    b, dist = graph.indices[close], graph.distances[close]
    if items.hashes is not None:
        order = np.argsort(items.hashes, kind="stable")
        same = items.hashes[order][1:] == items.hashes[order][:-1]
        a = np.concatenate([a, order[:-1][same]])
        b = np.concatenate([b, order[1:][same]])
        dist = np.concatenate([dist, np.zeros(int(same.sum()), np.float32)])
    if pairs is not None:
        a, b, dist = np.concatenate([a, pairs.a]), np.concatenate([b, pairs.b]), np.concatenate([dist, pairs.distance])
    return a, b, dist


def near_duplicates(graph: Graph, items: Items, radius: float, pairs: Pairs | None = None) -> Table:
    """Groups of near- or exact duplicates and of resized or re-encoded copies (``pairs``) (connected components),
    largest first: one row per image with its group, the group's size, its distance to its nearest neighbour,
    whether its pixels equal another's and its ``kind``: exact copy, resized or re-encoded (a pair of ``pairs``),
    else near-duplicate."""
    a, b, _ = _duplicate_edges(graph, items, radius, pairs)
    label = components(len(items), a, b)
    members = np.unique(np.concatenate([a, b]))
    sizes = np.bincount(label[members], minlength=len(items))
    exact = np.zeros(len(items), bool)
    if items.hashes is not None:
        _, inverse, counts = np.unique(items.hashes, return_inverse=True, return_counts=True)
        exact = counts[inverse] > 1
    order = np.lexsort((members, label[members], -sizes[label[members]]))
    rows = members[order]
    roots = label[rows]
    group = np.cumsum(np.r_[True, roots[1:] != roots[:-1]]) - 1 if len(rows) else np.zeros(0, np.int64)
    perceptual = np.zeros(len(items), bool)
    if pairs is not None:
        perceptual[pairs.a], perceptual[pairs.b] = True, True
    kind = np.where(exact[rows], EXACT, np.where(perceptual[rows], PERCEPTUAL, NEAR)).astype(object)
    return Table(group=group, size=sizes[roots], **items.describe(rows), distance=graph.nearest[rows],
                 exact=exact[rows], kind=kind)


def leaks(graph: Graph, items: Items, radius: float, pairs: Pairs | None = None) -> Table:
    """Held-out images with a near-duplicate (closer than ``radius``), an exact copy or a resized or re-encoded copy
    (``pairs``) in the training split: the training image (an exact copy first, then a resized or re-encoded one,
    else the nearest), the representations' cosine distance, whether the pixels are equal, the ``kind`` of
    duplicate and the fingerprints' ``pixel_distance`` (NaN without fingerprints)."""
    train_nbr = ~items.test[graph.indices]
    close = train_nbr & ((graph.distances < radius) | (graph.distances <= 0)) & items.test[:, None]
    has = close.any(1)
    first = close.argmax(1)  # distances ascend: the first close training neighbour is the nearest
    partner = np.where(has, graph.indices[np.arange(len(items)), first], -1)
    dist = np.where(has, graph.distances[np.arange(len(items)), first], np.nan).astype(np.float32)
    exact, perceptual = np.zeros(len(items), bool), np.zeros(len(items), bool)
    if pairs is not None:
        cross = items.test[pairs.a] != items.test[pairs.b]
        held = np.where(items.test[pairs.a], pairs.a, pairs.b)[cross]
        other = np.where(items.test[pairs.a], pairs.b, pairs.a)[cross]
        order = np.argsort(-pairs.pixel[cross], kind="stable")  # the closest pair written last wins
        partner[held[order]], dist[held[order]] = other[order], pairs.distance[cross][order]
        perceptual[held] = True
    if items.hashes is not None:
        train_hash = {h: i for i, h in zip(np.flatnonzero(~items.test), items.hashes[~items.test], strict=True)}
        for i in np.flatnonzero(items.test):
            j = train_hash.get(items.hashes[i])
            if j is not None:
                partner[i], dist[i], exact[i] = j, 0.0, True
    rows = np.flatnonzero(partner >= 0)
    rows = rows[np.lexsort((rows, dist[rows], ~perceptual[rows], ~exact[rows]))]
    p = partner[rows]
    kind = np.where(exact[rows], EXACT, np.where(perceptual[rows], PERCEPTUAL, NEAR)).astype(object)
    pixel = (perceptual_distance(items.fingerprints[rows], items.fingerprints[p]) if items.fingerprints is not None
             else np.full(len(rows), np.nan, np.float32))
    return Table(**items.describe(rows), distance=dist[rows], exact=exact[rows], kind=kind, pixel_distance=pixel,
                 train_row=p, train_index=items.index[p], train_file=items.files[p],
                 train_class=items.class_names(items.labels[p]))


# ----- outliers -----
def outlier_scores(graph: Graph) -> np.ndarray:
    """(N,) mean cosine distance to the k nearest neighbours: larger is more isolated."""
    return graph.distances.mean(1)


def outlier_threshold(scores: np.ndarray, iqr: float = OUTLIER_IQR) -> float:
    """Q3 + ``iqr`` x IQR of the scores (Datalab's rule for features, its threshold 0.37 = 1 / (1 + 1.7))."""
    q1, q3 = np.percentile(scores, [25, 75])
    return float(q3 + iqr * (q3 - q1))


def outliers(graph: Graph, items: Items, iqr: float = OUTLIER_IQR) -> Table:
    """Images whose mean kNN distance is above the threshold, most isolated first."""
    scores = outlier_scores(graph)
    limit = outlier_threshold(scores, iqr)
    rows = np.flatnonzero(scores > limit)
    rows = rows[np.lexsort((rows, -scores[rows]))]
    return Table(**items.describe(rows), score=scores[rows], nearest=graph.nearest[rows])


# ----- label issues -----
def vote_probabilities(graph: Graph, labels: np.ndarray, n_classes: int, temperature: float = TEMPERATURE) -> np.ndarray:
    """(N, C) class probabilities from the labelled neighbours' votes, weighted exp(cos / T) as the kNN
    evaluation weighs them (Wu et al. 2018); an image is never its own neighbour, so they are out-of-sample.
    A row without a labelled neighbour gets the uniform distribution."""
    nbr = labels[graph.indices]
    w = np.exp(-graph.distances.astype(np.float64) / temperature) * (nbr >= 0)  # exp((cos - 1) / T): the same ratios
    p = np.zeros((len(labels), n_classes))
    rows = np.repeat(np.arange(len(labels)), graph.k)
    keep = nbr.ravel() >= 0
    np.add.at(p, (rows[keep], nbr.ravel()[keep]), w.ravel()[keep])
    total = p.sum(1, keepdims=True)
    return np.where(total > 0, p / np.where(total > 0, total, 1), 1.0 / n_classes)


def principal_components(features, dim: int = 256, sample: int = PCA_SAMPLE) -> np.ndarray:
    """(N, min(dim, D)) float32: the L2-normalised rows, centred, on their ``dim`` principal directions (the
    eigenvectors with the largest eigenvalues of the covariance of ``sample`` rows drawn with a fixed seed, all
    of them when there are fewer; no labels are read)."""
    x = _tensor(features)
    inv = _inverse_norms(x)
    rows = torch.arange(len(x))
    if len(x) > sample:
        rows = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:sample].sort().values
    mean = torch.zeros(x.shape[1], dtype=torch.float64)
    cov = torch.zeros((x.shape[1],) * 2, dtype=torch.float64)
    for part in rows.split(8192):
        u = x[part] * inv[part, None]
        mean += u.double().sum(0)
        cov += (u.T @ u).double()
    mean /= len(rows)
    cov = cov / len(rows) - torch.outer(mean, mean)
    _, vectors = torch.linalg.eigh(cov.float())  # float32: half the seconds, directions as good for a classifier's input
    top = vectors[:, -min(dim, x.shape[1]):].flip(1)
    return torch.cat([(x[a:a + 8192] * inv[a:a + 8192, None] - mean.float()) @ top for a in range(0, len(x), 8192)]).numpy()


def linear_probabilities(features, labels: np.ndarray, n_classes: int, folds: int = LINEAR_FOLDS, dim: int = LINEAR_DIM,
                         shrink: float = LINEAR_SHRINK, seed: int = 0, progress: Progress | None = None,
                         cancel=None) -> np.ndarray:
    """(N, C) out-of-sample class probabilities of a linear classifier on the representations (their ``dim``
    principal components), by ``folds``-fold cross-validation: each image's probabilities come from the model
    fitted on the labelled images of the other folds (cleanlab's recommended route to the probabilities confident
    learning reads; Northcutt et al. 2021, section 4). The classifier is linear discriminant analysis (Gaussian
    classes with one shared covariance, shrunk by ``shrink`` towards its mean variance; Hastie, Tibshirani &
    Friedman, Elements of Statistical Learning, 4.3): closed form, a second per fold, where a logistic regression
    by L-BFGS took 2 s a fold and ranked the planted flips no better (docs/checks.md). Unlabeled rows are predicted too."""
    z = torch.from_numpy(principal_components(features, dim)).double()
    y = torch.from_numpy(np.asarray(labels, np.int64))
    fold = torch.from_numpy(np.random.default_rng(seed).integers(0, folds, len(y)))
    out = np.full((len(y), n_classes), 1.0 / n_classes)
    for f in range(folds):
        _tick(progress, cancel, f, folds, "label probabilities")
        fit, held = (fold != f) & (y >= 0), fold == f
        if not fit.any() or not held.any():
            continue
        w, b = _discriminant(z[fit], y[fit], n_classes, shrink)
        out[held.numpy()] = torch.softmax(z[held] @ w + b, 1).numpy()
    return out


def _discriminant(x: torch.Tensor, y: torch.Tensor, n_classes: int, shrink: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (D, C) and bias (C,) of linear discriminant analysis on x (M, D), labels y (M,) in 0..C-1: class
    means m_c, pooled within-class covariance S (shrunk: (1 - a) S + a mean(diag S) I), w_c = S^-1 m_c,
    b_c = -m_c.w_c / 2 + log prior_c. A class without images gets probability 0 (bias -inf)."""
    counts = torch.bincount(y, minlength=n_classes).double()
    means = torch.zeros(n_classes, x.shape[1], dtype=x.dtype).index_add_(0, y, x) / counts.clamp_min(1)[:, None]
    r = x - means[y]
    cov = r.T @ r / max(len(x) - 1, 1)
    cov = (1 - shrink) * cov + shrink * cov.diagonal().mean() * torch.eye(len(cov), dtype=cov.dtype)
    w = torch.linalg.solve(cov, means.T)
    b = -0.5 * (means * w.T).sum(1) + torch.where(counts > 0, (counts / counts.sum()).log(), torch.tensor(-math.inf, dtype=x.dtype))
    return w, b


def confident_learning(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Confident learning (Northcutt et al. 2021, section 3.1): per-class thresholds t_j = mean p_j over the
    images labelled j; an image counts as truly of class argmax{p_j : p_j >= t_j}. Returns the thresholds (C,),
    each image's suggested class (N,) (-1: above no threshold, or unlabeled) and whether it is a label issue
    (its confident class differs from its label)."""
    n_classes = probs.shape[1]
    labelled = labels >= 0
    thresholds = np.array([probs[labels == c, c].mean() if (labels == c).any() else 1.0 for c in range(n_classes)])
    above = probs >= thresholds[None] - 1e-12
    suggested = np.where(above.any(1), np.where(above, probs, -1.0).argmax(1), -1)
    suggested[~labelled] = -1
    issue = labelled & (suggested >= 0) & (suggested != labels)
    return thresholds, suggested, issue


def label_issues(probs: np.ndarray, items: Items) -> tuple[Table, np.ndarray]:
    """Likely label errors, least likely label first: given and suggested class, the suggestion's probability
    (``confidence``) and the given label's (``quality``, the self-confidence cleanlab ranks by); and the
    (C, C) confusion of the vote (rows: given label, columns: the vote's class) over the labelled images."""
    labels = items.labels
    _, suggested, issue = confident_learning(probs, labels)
    labelled = labels >= 0
    quality = np.where(labelled, probs[np.arange(len(labels)), np.maximum(labels, 0)], np.nan)
    rows = np.flatnonzero(issue)
    rows = rows[np.lexsort((rows, -probs[rows, suggested[rows]], quality[rows]))]
    conf = probs[rows, suggested[rows]]
    table = Table(**items.describe(rows), suggested=items.class_names(suggested[rows]), confidence=conf,
                  quality=quality[rows], given_label=labels[rows], suggested_label=suggested[rows])
    vote = probs.argmax(1)
    confusion = np.zeros((probs.shape[1],) * 2, np.int64)
    np.add.at(confusion, (labels[labelled], vote[labelled]), 1)
    return table, confusion


# ----- a diverse subset -----
def farthest_points(features, count: int = 0, min_distance: float = 0.0, rows=None, start: int | None = None,
                    progress: Progress | None = None, cancel=None) -> tuple[np.ndarray, np.ndarray]:
    """Farthest-point sampling (Gonzalez 1985, the greedy 2-approximation of k-centre) by cosine distance over
    ``rows`` of ``features`` (default all): start at the image nearest the mean direction (or ``start``), then
    repeatedly add the image farthest from those chosen, until ``count`` are chosen or the farthest is nearer
    than ``min_distance``. Returns the chosen rows and each one's distance to those before it (inf first)."""
    if count <= 0 and min_distance <= 0:
        raise ConfigError("checks: a diverse subset needs a count (> 0) or a minimum distance (> 0)")
    x = _tensor(features)
    rows = torch.arange(len(x)) if rows is None else torch.as_tensor(np.asarray(rows), dtype=torch.int64)
    if len(rows) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    sub = x[rows] if len(rows) < len(x) else x
    sub = sub * _inverse_norms(sub)[:, None]
    count = min(count or len(rows), len(rows))
    first = int(torch.argmax(sub @ sub.mean(0))) if start is None else int(np.flatnonzero(rows.numpy() == start)[0])
    chosen, gaps = [first], [math.inf]
    near = 1.0 - sub @ sub[first]
    near[first] = -1.0
    while len(chosen) < count:
        _tick(progress, cancel, len(chosen), count, "diverse subset") if len(chosen) % 64 == 0 else None
        nxt = int(torch.argmax(near))
        gap = float(near[nxt])
        if gap <= 0 or gap < min_distance:
            break
        chosen.append(nxt)
        gaps.append(gap)
        near = torch.minimum(near, 1.0 - sub @ sub[nxt])
        near[nxt] = -1.0
    return rows.numpy()[chosen], np.array(gaps, np.float32)


# ----- all of them -----
@dataclass
class Report:
    """Every check's table over one graph. ``findings``: one line per check that found something worth a look."""

    graph: Graph
    items: Items
    radius: float
    factor: float
    duplicates: Table
    leaks: Table | None  # None: one split only
    outliers: Table
    outlier_threshold: float
    label_issues: Table | None  # None: no labels
    confusion: np.ndarray | None
    probs: np.ndarray | None  # (N, C) the vote's out-of-sample probabilities
    subset: Table | None = None
    seconds: dict = field(default_factory=dict)
    pairs: Pairs = field(default_factory=Pairs.none)  # the same picture resized or re-encoded (any factor)
    label_probs: np.ndarray | None = None  # (N, C) the label issues read: mean of the linear and the vote out-of-sample probabilities

    @property
    def tables(self) -> dict[str, Table]:
        """The lists by name (the CSV files' names without .csv)."""
        named = {"duplicates": self.duplicates, "leaks": self.leaks, "outliers": self.outliers,
                 "label_issues": self.label_issues, "subset": self.subset}
        if self.confusion is not None:
            names = list(self.items.class_names(np.arange(len(self.confusion))))
            named["confusion"] = Table(given=np.array(names, dtype=object),
                                       **{f"vote_{n}": self.confusion[:, j] for j, n in enumerate(names)})
        return {k: v for k, v in named.items() if v is not None}

    def with_factor(self, factor: float) -> Report:
        """The same report with the near-duplicates and leaks found again at another factor (cheap: no graph)."""
        from dataclasses import replace

        radius = duplicate_radius(self.graph, factor)
        return replace(self, radius=radius, factor=factor,
                       duplicates=near_duplicates(self.graph, self.items, radius, self.pairs),
                       leaks=None if self.leaks is None else leaks(self.graph, self.items, radius, self.pairs))

    @property
    def findings(self) -> list[str]:
        """Sentences for what is worth a look (empty when nothing is)."""
        out = []
        if self.leaks is not None and len(self.leaks):
            n, kind = len(self.leaks), self.leaks["kind"]
            out.append(f"{n:,} held-out image{'s have' if n > 1 else ' has'} a near-duplicate in the training split "
                       f"({int((kind == EXACT).sum()):,} exact copies, {int((kind == PERCEPTUAL).sum()):,} {PERCEPTUAL})")
        if len(self.duplicates):
            groups = int(self.duplicates["group"].max()) + 1
            out.append(f"{len(self.duplicates):,} images are in {groups:,} group{'s' if groups > 1 else ''} of near-duplicates")
        if self.label_issues is not None and len(self.label_issues):
            n, labelled = len(self.label_issues), int((self.items.labels >= 0).sum())
            out.append(f"{n:,} label{'s look' if n > 1 else ' looks'} wrong ({n / labelled:.1%} of the labelled images)")
        if len(self.outliers):
            n = len(self.outliers)
            what = f"{n:,} images are outliers (mean distance to their" if n > 1 else "1 image is an outlier (mean distance to its"
            out.append(f"{what} {self.graph.k} neighbours above {self.outlier_threshold:.3f})")
        return out

    def summary(self) -> dict:
        """Counts and thresholds as plain numbers (summary.json)."""
        return {"images": len(self.items), "test_images": int(self.items.test.sum()), "k": self.graph.k,
                "median_nn_distance": float(np.median(self.graph.nearest)), "duplicate_factor": self.factor,
                "duplicate_radius": self.radius, "perceptual_radius": PERCEPTUAL_RADIUS, "duplicates": len(self.duplicates),
                "leaks": None if self.leaks is None else len(self.leaks), "outliers": len(self.outliers),
                "outlier_threshold": self.outlier_threshold,
                "label_issues": None if self.label_issues is None else len(self.label_issues),
                "vote_agreement": self.vote_agreement, "findings": self.findings, "seconds": self.seconds}

    @property
    def vote_agreement(self) -> float | None:
        """Share of the labelled images whose neighbours' vote is their label (the label checks are only as good
        as this); None without labels."""
        if self.confusion is None or self.confusion.sum() == 0:
            return None
        return float(np.trace(self.confusion) / self.confusion.sum())

    def save(self, folder: str | Path) -> list[Path]:
        """One CSV per list plus summary.json in ``folder`` (made if missing); returns the written paths."""
        from workbench.core.files import atomic_write_text

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = [t.to_csv(folder / f"{name}.csv") for name, t in self.tables.items()]
        atomic_write_text(folder / CHECK_SUMMARY, json.dumps(self.summary(), indent=1) + "\n")
        return paths + [folder / CHECK_SUMMARY]


def run_checks(features, items: Items, k: int = K, factor: float = DUPLICATE_FACTOR, iqr: float = OUTLIER_IQR,
               temperature: float = TEMPERATURE, progress: Progress | None = None, cancel=None) -> Report:
    """Every check on ``features`` (N, D) of ``items`` (training rows first); see the module's docstring."""
    import time

    if len(features) != len(items):
        raise ConfigError(f"checks: {len(features)} feature rows for {len(items)} images")
    t0 = time.perf_counter()
    graph = knn_graph(features, k, progress=progress, cancel=cancel)
    t1 = time.perf_counter()
    _tick(progress, cancel, 0, 1, "checks")
    radius = duplicate_radius(graph, factor)
    both = bool(items.test.any() and (~items.test).any())
    scores = outlier_scores(graph)
    labelled = items.labels >= 0
    probs = issues = confusion = label_probs = None
    if labelled.any():
        n_classes = max(len(items.classes), int(items.labels.max()) + 1)
        probs = vote_probabilities(graph, items.labels, n_classes, temperature)
        # two out-of-sample estimates averaged: the linear classifier's and the neighbours' vote (each image's own
        # row left out); on the planted faults the mean ranks flipped labels better than either alone
        label_probs = 0.5 * (linear_probabilities(features, items.labels, n_classes, progress=progress, cancel=cancel) + probs)
        issues, _ = label_issues(label_probs, items)
        _, confusion = label_issues(probs, items)
    pairs = perceptual_pairs(features, graph, items)
    report = Report(graph, items, radius, factor, near_duplicates(graph, items, radius, pairs),
                    leaks(graph, items, radius, pairs) if both else None, outliers(graph, items, iqr),
                    outlier_threshold(scores, iqr), issues, confusion, probs, pairs=pairs, label_probs=label_probs)
    report.seconds = {"graph": t1 - t0, "checks": time.perf_counter() - t1}
    return report


# ----- a run -----
SPLITS = ("both", "train", "test")


def features_of(rm, data, batch: int = 1024, progress: Progress | None = None, cancel=None, what: str = "features") -> np.ndarray:
    """``rm.features`` (the encoder's output for un-augmented images) of every image of ``data`` (an ImageData, in
    memory or streamed), in batches: (N, D) float32."""
    out = None
    for a in range(0, len(data), batch):
        _tick(progress, cancel, a, len(data), what)
        f = rm.features(data.read(torch.arange(a, min(a + batch, len(data)))))
        if out is None:
            out = np.empty((len(data), f.shape[1]), np.float32)
        out[a:a + len(f)] = f
    return out if out is not None else np.zeros((0, rm.net.encoder.out_dim), np.float32)


def items_of(splits: list, names: list[str]) -> Items:
    """Items of the ImageData ``splits`` named ``names`` ("train" / "test"), in that order, with pixel hashes,
    fingerprints and (for image folders) each file's path."""
    labels, test, index, files = [], [], [], []
    hashes, prints = [np.zeros(0, object)], [np.zeros((0, FINGERPRINT_BAND ** 2), np.float32)]
    for data, name in zip(splits, names, strict=True):
        labels.append(data.labels.cpu().numpy())
        test.append(np.full(len(data), name == "test"))
        index.append(data.indices.cpu().numpy())
        found = data.file_names()
        files.append(np.array([str(Path(data.source) / f) if f else "" for f in found] if found else [""] * len(data), dtype=object))
        for a in range(0, len(data), 4096):  # the pixels read once for both
            block = _Rows(data)[a:a + 4096]
            hashes.append(pixel_hashes(block))
            prints.append(fingerprints(block))
    return Items(np.concatenate(labels).astype(np.int64), np.concatenate(test), np.concatenate(index).astype(np.int64),
                 list(splits[0].classes), np.concatenate(files), np.concatenate(hashes), np.concatenate(prints))


class _Rows:
    """``data[a:b]`` as uint8 arrays read from memory or the store (for pixel_hashes and fingerprints)."""

    def __init__(self, data):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, s: slice) -> np.ndarray:
        return self.data.read(torch.arange(s.start, min(s.stop, len(self.data)))).cpu().numpy()


def check_run(run, split: str = "both", k: int = K, factor: float = DUPLICATE_FACTOR, subset: int = 0,
              subset_distance: float = 0.0, device: str = "cpu", overrides: list[str] | None = None, splits=None,
              progress: Progress | None = None, cancel=None) -> Report:
    """Every check on a run folder's data (``split``: both, train or test), read with its trained encoder;
    ``subset`` / ``subset_distance``: also a diverse subset of the training images (of the test images when
    ``split`` is test). ``overrides``: data.KEY=VALUE for data elsewhere (as ``workbench embed --set``);
    ``splits``: (train, test) ImageData to check instead of the config's data."""
    import time

    from workbench.core.inference import RunModel

    if split not in SPLITS:
        raise ConfigError(f"checks: split must be one of {', '.join(SPLITS)}, got '{split}'")
    if int(k) < 1:
        raise ConfigError(f"checks: k must be >= 1, got {k}")
    rm = run if isinstance(run, RunModel) else RunModel.load(run, device=device)
    _tick(progress, cancel, 0, 0, "loading the data")
    train, test = splits if splits is not None else rm.splits(overrides)
    names = ["train", "test"] if split == "both" else [split]
    chosen = [train if n == "train" else test for n in names]
    t0 = time.perf_counter()
    feats = np.concatenate([features_of(rm, d, progress=progress, cancel=cancel, what=f"features of the {n} split")
                            for d, n in zip(chosen, names, strict=True)])
    if not np.isfinite(feats).all():
        raise ConfigError(f"the encoder of '{rm.run_dir}' gives non-finite features; nothing can be checked")
    items = items_of(chosen, names)
    t1 = time.perf_counter()
    report = run_checks(feats, items, k, factor, progress=progress, cancel=cancel)
    report.seconds = {"features": t1 - t0, **report.seconds}
    if subset or subset_distance:
        report.subset = diverse_subset(feats, items, subset, subset_distance, progress=progress, cancel=cancel)
    return report


def diverse_subset(features, items: Items, count: int = 0, min_distance: float = 0.0, progress: Progress | None = None,
                   cancel=None) -> Table:
    """Farthest-point sample of the training rows (the test rows when there are none): rank, the image, and its
    distance to the images chosen before it."""
    pool = np.flatnonzero(~items.test) if (~items.test).any() else np.arange(len(items))
    rows, gaps = farthest_points(features, count, min_distance, pool, progress=progress, cancel=cancel)
    return Table(rank=np.arange(1, len(rows) + 1), **items.describe(rows), distance=gaps)


def file_list(subset: Table) -> str:
    """The subset as a file list: one path a line, or ``split index`` for images not read from files."""
    return "".join(f"{f}\n" if f else f"{s} {i}\n" for f, s, i in zip(subset["file"], subset["split"], subset["index"], strict=True))
