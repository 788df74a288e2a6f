"""The neighbour search against the plain one: a full float32 product and a sort. The int8 screen and the
symmetric leave-one-out search must find the same neighbours with the same similarities."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from workbench.core import neighbours as N
from workbench.core.config import Config
from workbench.core.data import load_splits


@pytest.fixture(scope="module")
def features():
    """Real images: the bundled Fashion-MNIST sample's pixels through a fixed random ReLU layer (non-negative,
    sharing a large mean, like pooled feature maps): bank (9000, 256), queries (1000, 256)."""
    train, test = load_splits(Config().data)
    w = torch.randn(784, 256, generator=torch.Generator().manual_seed(0))
    return tuple((d.images.flatten(1).float() / 255 @ w).relu() for d in (train, test))


def plain(bank, query, k, exclude_self=False):
    s = F.normalize(query, dim=1) @ F.normalize(bank, dim=1).T
    if exclude_self:
        s.fill_diagonal_(-math.inf)
    return s.topk(k, dim=1)


def same_neighbours(got, want) -> float:
    """Share of queries with the same set of neighbours; where sets differ the k-th similarity must tie."""
    (gs, gi), (ws, wi) = got, want
    same = (gi.sort(1).values == wi.sort(1).values).all(1)
    assert torch.allclose(gs, ws, atol=1e-5)  # the similarities are the exact ones, in order
    return same.float().mean().item()


def screen(monkeypatch):
    """Searches of any size go through the screen (whether this CPU's int8 product pays is timed: not here)."""
    monkeypatch.setattr(N, "SCREEN_MIN_WORK", 0)
    monkeypatch.setattr(N, "int8_pays", lambda: True)


@pytest.mark.parametrize("k", [1, 20, 64])
def test_the_int8_screen_finds_the_plain_search_s_neighbours(features, monkeypatch, k):
    bank, query = features
    screen(monkeypatch)
    index = N.Index(bank)
    assert index.screened(len(query), k)
    assert same_neighbours(index.topk(query, k, chunk=300), plain(bank, query, k)) > 0.998  # exact ties may swap


def test_a_search_too_small_or_too_deep_for_the_screen_is_exact(features, monkeypatch):
    bank, query = features
    index = N.Index(bank)
    assert not index.screened(len(query), 20)  # 1000 x 9000 x 256 products: the float32 search is as quick
    screen(monkeypatch)
    assert not index.screened(len(query), N.SCREEN_MAX_K + 1) and not N.Index(bank[:20 + N.extra(20)]).screened(10, 20)
    calls = []
    monkeypatch.setattr(N, "_quantised", lambda *a: calls.append(1))  # the screen would quantise: it must not run
    assert same_neighbours(index.topk(query, 100), plain(bank, query, 100)) > 0.998 and not calls


def test_the_screen_asks_before_each_chunk_and_a_taken_index_searches_its_rows(features, monkeypatch):
    bank, query = features
    screen(monkeypatch)
    asked = []
    N.Index(bank).topk(query, 5, check=lambda: asked.append(1), chunk=400)
    assert len(asked) == 3
    rows = torch.arange(len(bank)) % 3 == 0
    got = N.Index(bank).take(rows).topk(query, 5)
    assert same_neighbours(got, plain(bank[rows], query, 5)) > 0.998


def test_the_symmetric_leave_one_out_search_is_the_plain_one(features, monkeypatch):
    """Retrieval's search within one set: each pair of blocks multiplied once; beyond SYMMETRIC_MAX_ROWS (and
    on a GPU) the chunked search with each query's own row left out. Both as the plain search."""
    _, query = features
    x = torch.cat([query, query[:1500] * 2 + 0.01])  # 2,500 rows: more than one 2,048-row block, near-copies too
    want = plain(x, x, 300, exclude_self=True)
    assert same_neighbours(N.rows_topk(x, 300), want) > 0.998
    monkeypatch.setattr(N, "SYMMETRIC_MAX_ROWS", 100)
    assert same_neighbours(N.rows_topk(x, 300), want) > 0.998
    assert not (N.rows_topk(x[:50], 49)[1] == torch.arange(50)[:, None]).any()  # never itself


def test_without_a_working_int8_product_every_search_is_exact(features, monkeypatch):
    bank, query = features

    def missing(*_):
        raise RuntimeError("no int8 product in this build")

    monkeypatch.setattr(torch, "_int_mm", missing)
    monkeypatch.setattr(N, "SCREEN_MIN_WORK", 0)
    N.int8_pays.cache_clear()
    try:
        assert not N.int8_pays() and not N.Index(bank).screened(len(query), 20)
        assert same_neighbours(N.Index(bank).topk(query, 20), plain(bank, query, 20)) > 0.998
    finally:
        N.int8_pays.cache_clear()
