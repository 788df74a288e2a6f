"""Work the window hands to a background thread or child process; plain numpy, no Qt (a spawned
child process imports this module only)."""
from __future__ import annotations

import contextlib
import os
import traceback

import numpy as np


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def child_main(conn, fn, args):
    """A child process's work (``worker.in_child``): ``fn(*args)`` at low priority, its result or its error sent
    back through ``conn``. It lives here, beside plain numpy, so that the child starts without importing torch."""
    with contextlib.suppress(OSError):
        os.nice(10)  # yield the CPU to training and to the window
    try:
        conn.send(("ok", fn(*args)))
    except BaseException as exc:  # noqa: BLE001 - sent back to the window
        conn.send(("error", (first_line(exc), traceback.format_exc())))
    finally:
        conn.close()


def project(method: str, x: np.ndarray, prev: np.ndarray | None, seed: int = 0) -> np.ndarray:
    """(N, D) -> (N, 2) with ``method`` (pca | umap | tsne), aligned to ``prev`` (N, 2) when given."""
    from workbench.core.projection import StableProjector

    proj = StableProjector(method, seed)
    proj.prev = prev
    return proj(x)


def align_shared(ref_xy: np.ndarray, ref_idx: np.ndarray, xy: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Rotate/reflect/scale ``xy`` (rows ``idx``) onto ``ref_xy`` (rows ``ref_idx``) by orthogonal Procrustes
    (Schoenemann 1966) over the rows both share; unchanged when fewer than three are shared."""
    pos = {int(r): i for i, r in enumerate(ref_idx)}
    shared = [(pos[int(r)], j) for j, r in enumerate(idx) if int(r) in pos]
    if len(shared) < 3:
        return xy
    a, b = (np.asarray(t) for t in zip(*shared, strict=True))
    ref, cur = ref_xy[a], xy[b]
    ca, cb = ref.mean(0), cur.mean(0)
    u, _, vt = np.linalg.svd((cur - cb).T @ (ref - ca))
    r = u @ vt
    scale = np.linalg.norm(ref - ca) / max(np.linalg.norm(cur - cb), 1e-12)
    return ((xy - cb) @ r * scale + ca).astype(np.float32)


def knn_correct(emb: np.ndarray, labels: np.ndarray, k: int = 20) -> np.ndarray:
    """(N,) bool: does a leave-one-out cosine k-nearest-neighbour majority vote among the other points
    give the point's own label? (Wu et al. 2018 use a weighted vote; a plain majority is enough to colour.)"""
    z = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    sim = z @ z.T
    np.fill_diagonal(sim, -np.inf)
    k = max(1, min(k, len(z) - 1))
    nn = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    votes = labels[nn]
    n_classes = int(labels.max()) + 1 if len(labels) else 1
    counts = np.stack([(votes == c).sum(1) for c in range(n_classes)], 1)
    return counts.argmax(1) == labels
