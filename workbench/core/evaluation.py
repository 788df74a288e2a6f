"""Evaluation: the field's protocol first, read-outs and extra metrics beside it, features computed once.

The headline "kNN" is the weighted kNN of Wu et al. 2018 on L2-normalised backbone features (the encoder's
output, before the projection head), with no centring or whitening: the protocol of DINO's ``eval_knn.py`` and
solo-learn's ``WeightedKNNClassifier`` (k=20, T=0.07, this project's default) and of lightly's benchmarks
(k=200, T=0.1: set ``eval.knn_k`` and ``eval.knn_temperature``). The bank is the un-augmented training split
(``eval.bank_size`` of it), the queries the held-out split (``eval.test_size``).

Everything else is reported beside it under its own name (``metrics.EVAL_METRICS``):

- ``knn_acc_readout``: the same kNN through the read-out ``eval.readout`` ("centred": SimpleShot's CL2N;
  "whitened": PCA whitening, as in image retrieval), fitted on the bank's features only;
- ``precision_at_1``, ``recall_at_k``, ``map_at_r``: retrieval within the held-out split (``eval.retrieval``);
- ``linear_acc`` (+ ``linear_acc_10pct``, ``linear_acc_1pct`` with ``eval.label_efficiency``): a linear
  probe on frozen features trained on all, 10% or 1% of the bank's labels (``eval.linear_probe``);
- alignment, uniformity, std and effective rank of projections of two augmented views (the collapse guard).

``evaluation`` is a generator: it yields ``(stage, done, total)`` as it goes (the loop turns them into
``EvalProgressEvent``) and returns ``(metrics, feats)``; ``evaluate`` runs it to the end.
"""
from __future__ import annotations

import contextlib
from collections.abc import Generator

import torch

from workbench.core import metrics as M
from workbench.core.neighbours import Index

MAX_AUTO_BANK = 100_000  # eval.bank_size = 0 takes every training image up to this many (a random subset beyond)
EVAL_VIEWS = 1024  # held-out images whose two views give alignment, uniformity, std and effective rank
EMBED_BATCH = 1024
KNN_SLICE = 2048  # queries between two progress reports of the kNN search


class Interrupted(Exception):
    """Raised inside an evaluation when the front end asked it to stop."""


def autocast(s):
    if s.device.type == "cuda" and s.cfg.train.bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def embedding_steps(s, images: torch.Tensor, batch: int = EMBED_BATCH, project: bool = False, interrupt=None,
                    raw: bool = False) -> Generator[int, None, torch.Tensor]:
    """Yields the images done after each batch; returns representations (N, D) on the device.

    The encoder's output with ``raw`` (the backbone features the kNN protocol reads), the projections with
    ``project``, else the encoder's output through the network's read-out (the identity unless one is fitted).
    ``interrupt()`` is called between batches (it may block while paused); True raises Interrupted.
    """
    was = s.net.training
    s.net.eval()
    out = None
    size = s.aug.out_size(images.shape[-1])
    try:
        for i in range(0, len(images), batch):
            if interrupt is not None and interrupt():
                raise Interrupted
            with torch.no_grad():
                x = s.aug.plain(images[i:i + batch].to(s.device))
                if x.shape[-1] != size:
                    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
                with autocast(s):
                    h, z, _ = s.net(x)
                y = z if project else h if raw else s.net.readout(h.float())
            if out is None:
                out = torch.empty(len(images), y.shape[1], device=s.device)
            out[i:i + len(y)] = y
            yield i + len(y)
    finally:
        s.net.train(was)
    return out if out is not None else torch.empty(0, s.net.encoder.out_dim, device=s.device)


def embed(s, images: torch.Tensor, batch: int = EMBED_BATCH, project: bool = False, interrupt=None,
          raw: bool = False) -> torch.Tensor:
    """``embedding_steps`` run to the end: representations (N, D) of un-augmented images, on the device."""
    return drain(embedding_steps(s, images, batch, project, interrupt, raw))


def drain(gen):
    """Run a generator to its end; its return value."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def held_out_count(s, final: bool = True) -> int:
    """How many held-out images an evaluation takes: eval.test_size of them (0 = all); an evaluation during
    training takes eval.quick_size when that is set (a smaller sample, labelled by ``eval_queries``)."""
    e = s.cfg.eval
    n = (e.quick_size if e.quick_size and not final else 0) or e.test_size or len(s.test)
    return min(n, len(s.test))


def bank_rows(s) -> torch.Tensor:
    """The training rows in the kNN bank: all up to eval.bank_size (0: MAX_AUTO_BANK), else a fixed random subset."""
    size = s.cfg.eval.bank_size or MAX_AUTO_BANK
    if size < len(s.train):
        return torch.randperm(len(s.train), generator=torch.Generator().manual_seed(2))[:size]
    return torch.arange(len(s.train))


def evaluation(s, interrupt=None, final: bool = True) -> Generator[tuple[str, int, int], None, tuple[dict, torch.Tensor]]:
    """The metrics above on the held-out split, and its backbone features (N, D); yields (stage, done, total).

    Features are computed once (bank and queries) and shared by kNN, the read-out, retrieval and the probe.
    Uses its own fixed-seed generator so evaluating never changes the training's random stream.
    ``interrupt()`` is called between embedding batches and between chunks of the kNN search; True raises
    Interrupted.
    """
    e = s.cfg.eval
    rows = bank_rows(s)
    n_test = held_out_count(s, final)
    test = s.test if n_test == len(s.test) else s.test.take(torch.arange(n_test))
    bank_images = s.train.images[rows.to(s.train.images.device)]
    bank = yield from _staged("bank", embedding_steps(s, bank_images, interrupt=interrupt, raw=True), len(rows))
    feats = yield from _staged("queries", embedding_steps(s, test.images, interrupt=interrupt, raw=True), n_test)
    bank_labels = s.train.labels[rows.to(s.train.labels.device)].to(s.device)
    test_labels = test.labels.to(s.device)

    def check():  # the search over a large bank takes seconds: a stop ends it too
        if interrupt is not None and interrupt():
            raise Interrupted

    out = {"knn_acc": (yield from _knn(bank, bank_labels, feats, test_labels, e, check))}
    if e.readout != "none":
        out["knn_acc_readout"] = yield from _readout_knn(s, bank, bank_labels, feats, test_labels, check)
    if e.retrieval:
        yield "retrieval", 0, 0
        out.update(M.retrieval(feats, test_labels, e.recall_k, check=check))
    if e.linear_probe:
        yield from _probes(s, bank, bank_labels, feats, test_labels, out)
    yield "views", 0, 0
    out.update(_view_metrics(s, test))
    out["eval_queries"] = n_test
    return out, feats


def evaluate(s, interrupt=None, final: bool = True) -> tuple[dict, torch.Tensor]:
    """``evaluation`` run to the end: (metrics, held-out backbone features (N, D))."""
    return drain(evaluation(s, interrupt, final))


def _staged(stage: str, steps, total: int):
    """Re-yield an embedding's counts as (stage, done, total); its result."""
    yield stage, 0, total
    while True:
        try:
            done = next(steps)
        except StopIteration as stop:
            return stop.value
        yield stage, done, total


def _knn(bank, bank_labels, feats, test_labels, e, check):
    """The protocol's kNN accuracy, the queries in slices so that progress can be reported."""
    keep = test_labels >= 0
    if not (bank_labels >= 0).any() or not keep.any():
        return float("nan")
    correct, n = 0, int(keep.sum())
    queries, labels = feats[keep], test_labels[keep]
    labelled = bank_labels >= 0
    bank = Index(bank if labelled.all() else bank[labelled])  # prepared once for every slice
    bank_labels = bank_labels[labelled]
    for i in range(0, n, KNN_SLICE):
        yield "knn", i, n
        acc = M.knn_accuracy(bank, bank_labels, queries[i:i + KNN_SLICE], labels[i:i + KNN_SLICE], e.knn_k, e.knn_temperature,
                             check=check)
        correct += acc * min(KNN_SLICE, n - i)
    return correct / n


def _readout_knn(s, bank, bank_labels, feats, test_labels, check):
    """Fit the network's read-out to the bank (training split only) and read kNN through it."""
    if torch.isfinite(bank).all():  # non-finite representations keep the read-out they had (the guard says why)
        s.readout = s.net.readout.fit(bank, whiten=s.cfg.eval.readout == "whitened")
    ro = s.net.readout
    acc = yield from _knn(ro.apply_(bank.clone()), bank_labels, ro.apply_(feats.clone()), test_labels, s.cfg.eval, check)
    return acc


def _probes(s, bank, bank_labels, feats, test_labels, out: dict):
    """The linear probe on all the bank's labels, and on 10% and 1% of them with eval.label_efficiency."""
    e = s.cfg.eval
    shares = [(1.0, "linear_acc")] + ([(0.1, "linear_acc_10pct"), (0.01, "linear_acc_1pct")] if e.label_efficiency else [])
    for i, (share, key) in enumerate(shares):
        yield "probe", i, len(shares)
        rows = M.balanced_subset(bank_labels, share, s.cfg.train.seed).to(bank.device) if share < 1 else slice(None)
        out[key] = M.linear_probe(bank[rows], bank_labels[rows], feats, test_labels, epochs=e.linear_probe_epochs, seed=s.cfg.train.seed)


def _view_metrics(s, test) -> dict:
    """Alignment, uniformity, std and effective rank of the projections of two views of EVAL_VIEWS held-out images."""
    g = torch.Generator(device=s.device).manual_seed(12345)
    was = s.net.training
    s.net.eval()
    try:
        with torch.no_grad():
            x = test.images[:EVAL_VIEWS].to(s.device)
            v1, v2 = s.aug.views(x, g), s.aug.views(x, g)
            with autocast(s):
                z1, z2 = s.net(v1)[1].float(), s.net(v2)[1].float()
    finally:
        s.net.train(was)
    return {"alignment": M.alignment(z1, z2), "uniformity": M.uniformity(z1), "emb_std": M.embedding_std(z1),
            "eff_rank": M.effective_rank(z1)}
