"""The evaluation protocol against independent references: lightly's and DINO's kNN, pytorch-metric-learning's
retrieval metrics, the exact fp32 search; old run folders migrating to it."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from workbench.core import metrics as M
from workbench.core.data import load_splits
from workbench.core.config import Config


@pytest.fixture(scope="module")
def features():
    """Real features: the bundled Fashion-MNIST sample's pixels, 9,000 bank rows and 1,000 queries of 784-d,
    projected to 256-d by a fixed random ReLU layer (non-negative, like pooled maps), with their labels."""
    train, test = load_splits(Config().data)
    w = torch.randn(784, 256, generator=torch.Generator().manual_seed(0))
    bank, query = ((d.images.flatten(1).float() / 255 @ w).relu() for d in (train, test))
    return bank, train.labels, query, test.labels


def dino_knn(train_features, train_labels, test_features, k, T, num_classes):
    """DINO's ``eval_knn.knn_classifier`` (facebookresearch/dino), transcribed for one pass: normalised
    features, top-k cosine, one-hot votes weighted by exp(similarity / T), the highest total wins."""
    train_features, test_features = F.normalize(train_features, dim=1), F.normalize(test_features, dim=1)
    batch_size = test_features.shape[0]
    retrieval_one_hot = torch.zeros(k, num_classes)
    similarity = torch.mm(test_features, train_features.t())
    distances, indices = similarity.topk(k, largest=True, sorted=True)
    candidates = train_labels.view(1, -1).expand(batch_size, -1)
    retrieved_neighbors = torch.gather(candidates, 1, indices)
    retrieval_one_hot.resize_(batch_size * k, num_classes).zero_()
    retrieval_one_hot.scatter_(1, retrieved_neighbors.view(-1, 1), 1)
    distances_transform = distances.clone().div_(T).exp_()
    probs = torch.sum(torch.mul(retrieval_one_hot.view(batch_size, -1, num_classes), distances_transform.view(batch_size, -1, 1)), 1)
    _, predictions = probs.sort(1, True)
    return predictions[:, 0]


@pytest.mark.parametrize("k, t", [(20, 0.07), (200, 0.1)])
def test_knn_is_the_fields_protocol_as_lightly_and_dino_compute_it(features, k, t):
    from lightly.utils.benchmarking.knn import knn_predict as lightly_knn

    bank, labels, query, qlabels = features
    ours = M.knn_predict(bank, labels, query, k, t, 10)
    lightly = lightly_knn(F.normalize(query, dim=1), F.normalize(bank, dim=1).T, labels, 10, k, t)[:, 0]
    dino = dino_knn(bank, labels, query, k, t, 10)
    assert (ours == lightly).float().mean() > 0.998 and (ours == dino).float().mean() > 0.998  # ties may break either way
    acc = M.knn_accuracy(bank, labels, query, qlabels, k, t)
    assert acc == pytest.approx((lightly == qlabels).float().mean().item(), abs=0.002)
    assert acc == pytest.approx((dino == qlabels).float().mean().item(), abs=0.002)


def test_the_chunked_search_finds_the_plain_search_s_neighbours(features):
    """Chunks of queries, the similarity matrix never whole: the same neighbours as one full matmul, leave-one-out too."""
    bank, _, query, _ = features
    b, q = F.normalize(bank, dim=1), F.normalize(query, dim=1)
    want_sim, want_idx = (q @ b.T).topk(20, dim=1)
    sim, idx = M.cosine_topk(bank, query, 20, chunk=77)
    assert torch.allclose(sim, want_sim, atol=1e-6) and (idx == want_idx).float().mean() > 0.999  # exact ties may swap
    s = q @ q.T
    s.fill_diagonal_(-float("inf"))
    _, self_idx = M.cosine_topk(query, query, 5, exclude_self=True, chunk=100)
    assert torch.equal(self_idx[:, 0], s.argmax(1)) and not (self_idx == torch.arange(len(q))[:, None]).any()


def test_retrieval_metrics_equal_pytorch_metric_learning(features):
    from pytorch_metric_learning.distances import CosineSimilarity
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    _, _, query, qlabels = features
    ours = M.retrieval(query, qlabels, k=5)
    calc = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r"), device=torch.device("cpu"),
                              knn_func=CustomKNN(CosineSimilarity()))
    theirs = calc.get_accuracy(F.normalize(query, dim=1), qlabels, F.normalize(query, dim=1), qlabels, ref_includes_query=True)
    assert ours["precision_at_1"] == pytest.approx(theirs["precision_at_1"], abs=1e-4)
    assert ours["map_at_r"] == pytest.approx(theirs["mean_average_precision_at_r"], abs=1e-4)
    x = F.normalize(query, dim=1).numpy()  # Recall@5, plain numpy: a same-class image among the 5 nearest others
    s = x @ x.T
    np.fill_diagonal(s, -np.inf)
    top = np.argsort(-s, axis=1)[:, :5]
    want = (qlabels.numpy()[top] == qlabels.numpy()[:, None]).any(1).mean()
    assert ours["recall_at_k"] == pytest.approx(want, abs=1e-6)


def test_retrieval_leaves_unlabelled_images_out_and_says_nan_without_a_pair():
    x = torch.eye(4)
    assert np.isnan(M.retrieval(x, torch.tensor([0, 1, 2, 3]))["map_at_r"])
    out = M.retrieval(torch.tensor([[1.0, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]]), torch.tensor([0, 0, 1, -1]))
    assert out["precision_at_1"] == 1.0 and out["map_at_r"] == 1.0


def test_label_efficiency_subsets_take_each_class_share():
    labels = torch.tensor([0] * 500 + [1] * 300 + [2] * 7 + [-1] * 10)
    rows = M.balanced_subset(labels, 0.1, seed=3)
    counts = torch.bincount(labels[rows], minlength=3).tolist()
    assert counts == [50, 30, 1] and len(set(rows.tolist())) == len(rows)
    assert torch.equal(rows, M.balanced_subset(labels, 0.1, seed=3))


def test_the_display_projection_is_pca_without_a_full_svd(monkeypatch):
    """Randomised subspace iteration: the same two components as the SVD on data with a structure to show."""
    from workbench.core.projection import pca_2d

    rng = np.random.default_rng(1)
    z = rng.standard_normal((2000, 16)) * np.linspace(6, 1, 16)
    x = np.maximum(z @ rng.standard_normal((16, 512)) + 0.3 * rng.standard_normal((2000, 512)), 0)
    xc = x - x.mean(0)
    want = xc @ np.linalg.svd(xc, full_matrices=False)[2][:2].T
    real = np.linalg.svd
    monkeypatch.setattr(np.linalg, "svd", lambda a, **kw: real(a, **kw) if min(a.shape) <= 32 else pytest.fail("full SVD"))
    got = pca_2d(x)
    for i in range(2):
        assert abs(np.corrcoef(got[:, i], want[:, i])[0, 1]) > 0.999


def test_an_evaluation_says_what_it_is_doing_and_reports_every_metric(quick_cfg, tmp_path):
    from workbench.core.events import EvalEvent, EvalProgressEvent
    from workbench.core.train import train

    cfg = quick_cfg("train.max_steps=2", "eval.readout=centred", "eval.linear_probe=true", "eval.label_efficiency=true",
                    "eval.linear_probe_epochs=2")
    events = list(train(cfg, runs_root=tmp_path))
    progress = [e for e in events if isinstance(e, EvalProgressEvent)]
    stages = list(dict.fromkeys(e.stage for e in progress))
    assert stages == ["bank", "queries", "knn", "retrieval", "probe", "views"] and all(e.final for e in progress)
    assert events.index(progress[-1]) < next(i for i, e in enumerate(events) if isinstance(e, EvalEvent))
    metrics = [e for e in events if isinstance(e, EvalEvent)][-1].metrics
    assert set(metrics) == set(M.EVAL_METRICS)
    assert metrics["eval_queries"] == min(cfg.eval.test_size or 10**9, events[0].n_test)
    with open(f"{events[0].run_dir}/metrics.csv", newline="") as f:
        header = next(csv.reader(f))
    assert [c for c in header if c in M.EVAL_METRICS] == list(M.EVAL_METRICS)


def test_quick_evaluations_during_training_take_a_sample_and_the_final_one_all(quick_cfg, tmp_path):
    from workbench.core.events import EvalEvent
    from workbench.core.train import train

    events = list(train(quick_cfg("train.epochs=2", "eval.max_share=1", "eval.quick_size=40", "eval.test_size=0"), runs_root=tmp_path))
    counts = [e.metrics["eval_queries"] for e in events if isinstance(e, EvalEvent)]
    assert counts[0] == 40 and counts[-1] > 40


def test_a_run_folder_from_before_the_protocol_keeps_its_whitened_knn_under_its_own_name(quick_cfg, tmp_path):
    """A run written when "kNN" was read through the whitening: its old column is read as the read-out's kNN, it
    resumes with that read-out reported beside the field's kNN, and metrics.csv is rewritten once with aligned rows."""
    from workbench.core.events import DoneEvent, EvalEvent, StepEvent
    from workbench.core.runs import read_metrics
    from workbench.core.control import Control
    from workbench.core.train import train

    control = Control()
    for ev in train(quick_cfg("train.max_steps=4", "train.log_every=1"), control, runs_root=tmp_path):
        if isinstance(ev, StepEvent) and ev.step == 2:
            control.stop()
    run = next(tmp_path.iterdir())
    old_columns = ["time", "epoch", "step", "loss", "lr", "images_per_s", "knn_acc", "linear_acc", "alignment", "uniformity",
                   "emb_std", "eff_rank"]
    rows = [{"time": 1.0, "epoch": 1, "step": 1, "loss": 3.0, "lr": 0.001, "images_per_s": 100.0}, {"epoch": 1, "step": 2, "knn_acc": 0.5}]
    with open(run / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, old_columns)
        w.writeheader()
        w.writerows(rows)
    toml = run / "config.toml"
    new_keys = ("readout", "retrieval", "recall_k", "quick_size", "label_efficiency")
    toml.write_text("".join(line for line in toml.read_text().splitlines(True) if line.split("=")[0].strip() not in new_keys))
    read = read_metrics(run)
    assert read[1]["knn_acc"] is None and read[1]["knn_acc_readout"] == 0.5
    from workbench.core.history import read_history, run_summary

    row = run_summary(run)  # the runs table: the old figure under its own name, no standard kNN made up
    assert row["final_knn"] is None and row["final_knn_acc_readout"] == 0.5 and row["readout"] == "whitened"
    assert row["findings"] == []
    (run / "checks").mkdir()
    (run / "checks" / "summary.json").write_text('{"findings": ["3 held-out images have a near-duplicate in the training split"]}')
    assert run_summary(run)["findings"] == ["3 held-out images have a near-duplicate in the training split"]
    assert [e.metrics for e in read_history(run) if isinstance(e, EvalEvent)] == [{"knn_acc_readout": 0.5}]
    events = list(train(None, runs_root=tmp_path, resume=run))
    assert isinstance(events[-1], DoneEvent) and events[-1].reason == "finished"
    final = [e for e in events if isinstance(e, EvalEvent)][-1].metrics
    assert "knn_acc" in final and "knn_acc_readout" in final
    read = read_metrics(run)
    assert read[1]["knn_acc_readout"] == 0.5 and read[0]["loss"] == 3.0 and read[-1]["knn_acc"] == pytest.approx(final["knn_acc"], abs=1e-5)
    assert Config.load(toml).eval.readout == "whitened"
    with open(run / "metrics.csv", newline="") as f:
        lines = list(csv.reader(f))
    assert all(len(line) == len(lines[0]) for line in lines)
