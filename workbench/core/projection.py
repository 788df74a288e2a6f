"""2-D projections of embeddings for the live scatter.

PCA is the default: each refresh is rotated/reflected onto the previous frame (orthogonal
Procrustes over the shared points) so the picture does not flip or jump between epochs.
UMAP and t-SNE are optional (umap-learn / scikit-learn) and meant to run off the GUI thread;
t-SNE starts from the previous layout when there is one.
"""
from __future__ import annotations

import numpy as np


def pca_2d(x: np.ndarray) -> np.ndarray:
    """(N, D) -> (N, 2) principal-component coordinates (Pearson 1901).

    The top two directions come from randomised subspace iteration (Halko, Martinsson & Tropp 2011): a few
    products with an (D, 8) block instead of a full SVD, so a 2,000 x 2,048 embedding costs milliseconds, not
    seconds; small inputs take the exact SVD. Never raises for a display: rows holding NaN/inf are placed at
    the origin and left out of the fit; fewer than two finite rows, or an SVD that does not converge, give
    zeros/the first two centred columns.
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros((len(x), 2), dtype=np.float32)
    ok = np.isfinite(x).all(1)
    if ok.sum() < 2:
        return out
    xc = x[ok] - x[ok].mean(0)
    try:
        xy = xc @ _top_directions(xc, 2)
    except np.linalg.LinAlgError:
        xy = xc[:, :2]
    out[ok, : xy.shape[1]] = xy
    return out


def _top_directions(xc: np.ndarray, n: int, block: int = 8, rounds: int = 6) -> np.ndarray:
    """(D, n) leading right singular vectors of centred ``xc`` (N, D); exact SVD when ``xc`` is small."""
    if min(xc.shape) <= 4 * block:
        return np.linalg.svd(xc, full_matrices=False)[2][:n].T
    q = np.random.default_rng(0).standard_normal((xc.shape[1], block))
    for _ in range(rounds):  # power iterations on xc^T xc, re-orthonormalised each time
        q, _ = np.linalg.qr(xc.T @ (xc @ q))
    _, _, vt = np.linalg.svd(xc @ q, full_matrices=False)  # (N, block): small
    return q @ vt[:n].T


def align_to(prev: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Rotate/reflect and scale ``new`` (N, 2) to best match ``prev`` (N, 2), same points in the same order
    (orthogonal Procrustes, Schoenemann 1966); ``new`` unchanged when the fit is degenerate."""
    a, b = prev - prev.mean(0), new - new.mean(0)
    try:
        u, _, vt = np.linalg.svd(b.T @ a)
    except np.linalg.LinAlgError:
        return new.astype(np.float32)
    r = u @ vt
    scale = np.linalg.norm(a) / max(np.linalg.norm(b), 1e-12)
    return (b @ r * scale + prev.mean(0)).astype(np.float32)


class StableProjector:
    """Keeps successive projections of the same points visually stable."""

    def __init__(self, method: str = "pca", seed: int = 0):
        if method not in METHODS:
            raise ValueError(f"unknown projection '{method}'; choose from: {', '.join(METHODS)}")
        self.method, self.seed, self.prev = method, seed, None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        init = self.prev if self.prev is not None and len(self.prev) == len(x) else None
        xy = METHODS[self.method](x, init, self.seed)
        if init is not None:
            xy = align_to(init, xy)
        self.prev = xy
        return xy


def _pca(x, init, seed):
    return pca_2d(x)


def _umap(x, init, seed):
    try:
        import umap
    except ImportError:
        raise RuntimeError("UMAP needs the optional package umap-learn: pip install umap-learn") from None
    return umap.UMAP(n_components=2, random_state=seed, init=init if init is not None else "spectral").fit_transform(x).astype(np.float32)


def _tsne(x, init, seed):
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        raise RuntimeError("t-SNE needs the optional package scikit-learn: pip install scikit-learn") from None
    start = init if init is not None else pca_2d(x) / max(np.std(pca_2d(x)[:, 0]), 1e-6) * 1e-4
    perplexity = min(30.0, max(2.0, (len(x) - 1) / 3))
    return TSNE(2, init=start.astype(np.float32), random_state=seed, perplexity=perplexity).fit_transform(x).astype(np.float32)


METHODS = {"pca": _pca, "umap": _umap, "tsne": _tsne}
