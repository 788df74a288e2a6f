"""Cosine nearest neighbours of queries in a bank: the one search behind kNN, retrieval and every neighbour list.

``Index(bank).topk(query, k)`` returns the k most similar bank rows of each query by cosine, with their float32
similarities, most similar first. Two ways, the same answer:

- **exact**: float32 products of query chunks with the whole bank (about 128 MB of similarities a chunk, never the
  whole (Q, N) matrix), top-k of each row. Used on a GPU, for small problems and for deep lists (k > SCREEN_MAX_K).
- **screened** (large searches on a CPU whose int8 product is at least twice as quick as its float32 one,
  ``int8_pays``: VNNI or AVX2 on x86): an int8 screen picks ``k + extra(k)`` candidates a query (k + 8 up to k = 32), then each candidate's
  similarity is recomputed exactly in float32 and the k best are kept. The screen works on centred unit rows
  r = u - c (c the bank's mean unit row; u_i.u_j = r_i.r_j + t_i + t_j with t = u.c - |c|^2 / 2), each row
  quantised to int8 with its own scale (max |r| / 127), and one int8 x int8 -> int32 product (``torch._int_mm``):
  about 5x quicker than the float32 product on this project's 2-core test machine. Centring shrinks the rows
  that features of one network share (ReLU features lie in one orthant), so the quantisation error, relative to
  the similarities' spread, shrinks with them. The returned similarities are the exact ones; only a neighbour
  that the screen ranks below ``k + extra(k)`` could be missed: on 10,000 queries of trained encoders' 2,048-d
  features (Fashion-MNIST bank 60,000, CIFAR-10 50,000) the lists differ from the exact search's only where two
  bank images tie (``benchmarks/eval_cost.py`` counts them).

``rows_topk(x, depth)`` is the leave-one-out search within one set (retrieval's), exact, using the symmetry of
x x^T to multiply each pair of blocks once.
"""
from __future__ import annotations

import functools
import math
import time

import torch
import torch.nn.functional as F

CHUNK_ELEMENTS = 2 ** 25  # similarities a query chunk (128 MB in float32)
SCREEN_MIN_WORK = 2 ** 32  # query x bank x dimension products below which the exact search is as quick
SCREEN_MAX_K = 64  # deeper lists would re-rank too many candidates a query: exact search
EXTRA = 8  # candidates beyond k a query that the screen hands to the exact re-rank, at least (k // 4 for deeper lists)
RERANK_QUERIES = 128  # queries a re-rank chunk: their candidates' rows (128 x (k + EXTRA) x D float32) stay small
SYMMETRIC_MAX_ROWS = 11_585  # rows_topk keeps the whole (N, N) float32 matrix up to 512 MB


@functools.cache
def int8_pays() -> bool:
    """Whether this CPU multiplies int8 at least twice as fast as float32 (VNNI or AVX2 on x86; not every CPU
    has a fast int8 kernel): timed once, on the first large search, best of three of a 256 x 2048 x 4096 product."""
    try:
        a8, b8 = torch.ones(256, 2048, dtype=torch.int8), torch.ones(4096, 2048, dtype=torch.int8)
        a, b = a8.float(), b8.float()
        if int(torch._int_mm(a8, b8.T)[0, 0]) != 2048:
            return False
    except (RuntimeError, AttributeError):  # no int8 product in this build
        return False

    def best(fn) -> float:
        times = []
        for _ in range(3):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    return best(lambda: torch._int_mm(a8, b8.T)) * 2 <= best(lambda: a @ b.T)


class Index:
    """A bank (N, D) of any scale, prepared once for cosine searches (rows L2-normalised here)."""

    def __init__(self, bank: torch.Tensor):
        self.unit = F.normalize(bank.float(), dim=1)
        self._screen: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.unit)

    def take(self, rows) -> Index:
        """The index of bank rows ``rows`` (a mask or indices); its screen is rebuilt when needed."""
        out = Index.__new__(Index)
        out.unit, out._screen = self.unit[rows], None
        return out

    @torch.no_grad()
    def topk(self, query: torch.Tensor, k: int, check=None, exclude_self: bool = False,
             chunk: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """query (Q, D) -> (sims (Q, k), indices (Q, k)), most similar first. ``exclude_self``: query i is bank row i
        and is left out. ``check()`` runs before each query chunk (it may raise to abandon the search)."""
        q = F.normalize(query.float(), dim=1)
        k = min(k, len(self) - int(exclude_self))
        if not exclude_self and self.screened(len(q), k):
            return self._screened(q, k, check, chunk)
        return self._exact(q, k, check, exclude_self, chunk)

    def screened(self, n_queries: int, k: int) -> bool:
        """Whether a search of ``n_queries`` for ``k`` neighbours goes through the int8 screen."""
        n, d = self.unit.shape
        return (self.unit.device.type == "cpu" and 0 < k <= SCREEN_MAX_K and k + extra(k) < n
                and n_queries * n * d >= SCREEN_MIN_WORK and int8_pays())

    def _chunk(self, chunk: int) -> int:
        return chunk or max(1, min(1024, CHUNK_ELEMENTS // max(len(self), 1)))

    def _exact(self, q, k, check, exclude_self, chunk):
        step = self._chunk(chunk)
        sims, idxs = [], []
        for start in range(0, len(q), step):
            if check is not None:
                check()
            s = q[start:start + step] @ self.unit.T
            if exclude_self:
                rows = torch.arange(len(s), device=s.device)
                s[rows, rows + start] = -math.inf
            sim, idx = s.topk(k, dim=1)
            sims.append(sim)
            idxs.append(idx)
        return _joined(sims, idxs, k, q.device)

    def _prepared(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(centre c (D,), int8 rows (N, D), their scales (N,), offsets t (N,)), built once. Any centre gives the
        same cosines (the re-rank is exact); the mean unit row makes the rows smallest."""
        if self._screen is None:
            c = self.unit.mean(0)
            q8, scale = _quantised(self.unit, c)
            t = self.unit @ c - 0.5 * float(c @ c)
            self._screen = (c, q8, scale, t)
        return self._screen

    def _screened(self, q, k, check, chunk):
        c, bank8, bank_scale, bank_t = self._prepared()
        step = min(self._chunk(chunk), len(q))
        p = torch.empty(step, len(self), dtype=torch.int32)  # reused: fresh pages for every chunk cost more than the sums
        key = torch.empty(step, len(self))
        sims, idxs = [], []
        for start in range(0, len(q), step):
            if check is not None:
                check()
            rows = q[start:start + step]
            q8, q_scale = _quantised(rows, c)
            b = len(rows)
            torch._int_mm(q8, bank8.T, out=p[:b])
            # row i's order is that of r~_i.r~_j + t_j (+ t_i, the same along the row) = q_scale_i (scale_j p_ij + t_j / q_scale_i)
            key[:b].copy_(p[:b]).mul_(bank_scale).addr_(1.0 / q_scale, bank_t)
            cand = key[:b].topk(k + extra(k), dim=1).indices
            sim, idx = _reranked(rows, self.unit, cand, k)
            sims.append(sim)
            idxs.append(idx)
        return _joined(sims, idxs, k, q.device)


def extra(k: int) -> int:
    """Candidates beyond k that the screen hands to the re-rank: the denser the list's end, the more (measured:
    at k=64 on Fashion-MNIST pixels through a random layer, 8 missed a neighbour in 1 query of 1,000, 16 none)."""
    return max(EXTRA, k // 4)


def _quantised(unit: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit rows (n, D) centred on c and quantised, each with its own scale: (int8 rows (n, D), scales (n,))."""
    q8 = torch.empty(unit.shape, dtype=torch.int8)
    scale = torch.empty(len(unit))
    for a in range(0, len(unit), 8192):
        r = unit[a:a + 8192] - c
        s = r.abs().amax(1).clamp_min(1e-30) / 127.0
        q8[a:a + 8192] = r.div_(s[:, None]).round_()
        scale[a:a + 8192] = s
    return q8, scale


def _reranked(q: torch.Tensor, unit: torch.Tensor, cand: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best of each query's candidates (Q, m) by exact float32 cosine: (sims (Q, k), indices (Q, k))."""
    sims, idxs = [], []
    for a in range(0, len(q), RERANK_QUERIES):
        c = cand[a:a + RERANK_QUERIES]
        rows = unit.index_select(0, c.flatten()).view(len(c), c.shape[1], -1)  # (b, m, D)
        sim, pick = torch.einsum("bmd,bd->bm", rows, q[a:a + RERANK_QUERIES]).topk(k, dim=1)
        sims.append(sim)
        idxs.append(c.gather(1, pick))
    return torch.cat(sims), torch.cat(idxs)


def _joined(sims, idxs, k, device):
    if not sims:
        return torch.zeros(0, k, device=device), torch.zeros(0, k, dtype=torch.long, device=device)
    return torch.cat(sims), torch.cat(idxs)


@torch.no_grad()
def rows_topk(x: torch.Tensor, depth: int, check=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's ``depth`` most similar other rows of x (N, D) by exact float32 cosine: (sims (N, depth), indices
    (N, depth)). Up to SYMMETRIC_MAX_ROWS rows the (N, N) matrix is built from blocks of x x^T, each pair of blocks
    multiplied once (half the products); beyond, ``Index.topk`` with ``exclude_self``."""
    if len(x) > SYMMETRIC_MAX_ROWS or x.device.type != "cpu":
        return Index(x).topk(x, depth, check, exclude_self=True)
    u = F.normalize(x.float(), dim=1)
    n = len(u)
    depth = min(depth, n - 1)
    s = torch.empty(n, n)
    block = 2048
    for a in range(0, n, block):
        if check is not None:
            check()
        part = u[a:a + block] @ u[a:].T  # rows a.., columns a..: the upper blocks of this block row
        s[a:a + block, a:] = part
        s[a + block:, a:a + block] = part[:, part.shape[0]:].T
    s.fill_diagonal_(-math.inf)
    sims, idxs = [], []
    for a in range(0, n, block):
        sim, idx = s[a:a + block].topk(depth, dim=1)
        sims.append(sim)
        idxs.append(idx)
    return _joined(sims, idxs, depth, x.device)
