"""The data checks (core/checks.py): the graph against brute force, confident learning against cleanlab, faults planted
in real Fashion-MNIST and CIFAR-10 images found, and agreement with cleanlab's Datalab on the same features."""
import math
import types
from collections import deque

import numpy as np
import pytest
import torch

from benchmarks.checks import SHARED, evaluate, load_cifar_files, load_fashion, plant
from workbench.core import checks
from workbench.core.registry import ConfigError

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning:sklearn.*", "ignore::RuntimeWarning:cleanlab.*",
                                        "ignore::UserWarning:cleanlab.*", "ignore:.*:pandas.errors.Pandas4Warning")


def clustered(n=1500, d=64, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.random((12, d)) ** 3
    x = centres[rng.integers(0, 12, n)] + 0.2 * rng.random((n, d)) ** 3
    x[10], x[20] = x[5], 3 * x[5]  # an exact copy and a scaled one: cosine distance 0
    return x.astype(np.float32)


def assert_same_graph(g, x, atol=2e-6):
    """``g`` equals the brute-force graph of ``x``: the same distances, and the same neighbours at every rank without
    a near tie on either side (the reference has one neighbour more to see the k-th's)."""
    ref = checks.brute_force_graph(x, g.k + 1)
    np.testing.assert_allclose(g.distances, ref.distances[:, :-1], atol=atol)
    gaps = np.diff(ref.distances, axis=1) > 1e-5
    clear = gaps.copy()
    clear[:, 1:] &= gaps[:, :-1]
    assert (g.indices[clear] == ref.indices[:, :-1][clear]).all()


@pytest.mark.parametrize("block", [128, 4096])
def test_graph_is_the_exact_brute_force_graph(block):
    x = clustered()
    g = checks.knn_graph(x, k=10, block=block)
    assert_same_graph(g, x)
    assert set(g.indices[5, :2].tolist()) == {10, 20} and g.distances[5, 1] < 1e-6
    assert not (g.indices == np.arange(len(x))[:, None]).any()  # no image is its own neighbour


@pytest.mark.parametrize("share", [1.0, 0.0])
def test_rows_the_bfloat16_pass_cannot_decide_are_computed_exactly(monkeypatch, share):
    """Undecided rows are recomputed one by one (share 1) or, when they are many, by one float32 pass (share 0)."""
    monkeypatch.setattr(checks, "EXTRA", 0)  # candidates = k: most rows need the float32 fallback
    monkeypatch.setattr(checks, "EXACT_PASS_SHARE", share)
    redone, passes = [], []
    exact_rows, block_pass = checks._exact_rows, checks._block_pass
    monkeypatch.setattr(checks, "_exact_rows", lambda *a: redone.append(len(a[2])) or exact_rows(*a))
    monkeypatch.setattr(checks, "_block_pass", lambda *a: passes.append(a[0].dtype) or block_pass(*a))
    x = clustered(600, 32, seed=1)
    assert_same_graph(checks.knn_graph(x, k=10, block=200), x)
    if share:
        assert redone and redone[0] > 0 and passes == [torch.bfloat16]
    else:
        assert not redone and passes == [torch.bfloat16, torch.float32]


def test_graph_of_tiny_and_bad_inputs():
    assert checks.knn_graph(np.eye(3, 4) + 0.1, k=5).k == 2  # k capped at N - 1
    with pytest.raises(ConfigError, match="at least 2 images"):
        checks.knn_graph(np.ones((1, 4)))
    x = clustered(200, 8)
    x.setflags(write=False)  # a memory-mapped .npy: read, never written, and no warning
    assert checks.knn_graph(x).k == 10 and len(checks.farthest_points(x, 5)[0]) == 5


def test_components_match_a_breadth_first_search():
    rng = np.random.default_rng(0)
    n = 400
    a, b = rng.integers(0, n, 300), rng.integers(0, n, 300)
    label = checks.components(n, a, b)
    nbrs = [[] for _ in range(n)]
    for u, v in zip(a, b, strict=True):
        nbrs[u].append(v)
        nbrs[v].append(u)
    for start in range(n):
        seen, todo = {start}, deque([start])
        while todo:
            for v in nbrs[todo.popleft()]:
                if v not in seen:
                    seen.add(v)
                    todo.append(v)
        assert {i for i in range(n) if label[i] == label[start]} == seen
        assert label[start] == min(seen)


def test_confident_learning_flags_what_cleanlab_flags():
    from cleanlab.filter import find_label_issues

    rng = np.random.default_rng(0)
    for c in (3, 10):
        y = rng.integers(0, c, 3000)
        p = rng.dirichlet(np.full(c, 0.5), 3000)
        p[np.arange(3000), y] += 2 * rng.random(3000)
        p /= p.sum(1, keepdims=True)
        _, _, issue = checks.confident_learning(p, y)
        assert issue.sum() > 20
        np.testing.assert_array_equal(issue, find_label_issues(y, p, filter_by="confident_learning"))


def test_the_vote_weighs_labelled_neighbours_by_exp_cos_over_t():
    g = checks.Graph(np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]),
                     np.array([[0.1, 0.2, 0.3]] * 4, np.float32))
    labels = np.array([0, 1, 1, -1])
    p = checks.vote_probabilities(g, labels, 2, temperature=0.1)
    w = np.exp(-np.array([0.1, 0.2, 0.3]) / 0.1)
    assert p[0] == pytest.approx([0, 1])
    assert p[1] == pytest.approx([w[0] / (w[0] + w[1]), w[1] / (w[0] + w[1])])
    assert p[3] == pytest.approx([w[0] / w.sum(), (w[1] + w[2]) / w.sum()])


def test_linear_probabilities_are_out_of_sample():
    """An image's probabilities come from a model fitted without it: changing its own label changes none of them."""
    x = clustered(400, 32, seed=4)
    y = np.random.default_rng(0).integers(0, 3, 400)
    p = checks.linear_probabilities(x, y, 3, folds=4, dim=16)
    assert p.shape == (400, 3) and np.allclose(p.sum(1), 1)
    for i in (0, 17, 399):
        other = y.copy()
        other[i] = (y[i] + 1) % 3
        again = checks.linear_probabilities(x, other, 3, folds=4, dim=16)
        np.testing.assert_array_equal(again[i], p[i])
        assert not np.array_equal(again, p)
    x2 = checks.principal_components(x, 8)
    assert x2.shape == (400, 8) and np.allclose(x2.mean(0), 0, atol=1e-5)
    assert (np.diff(x2.var(0)) <= 1e-6).all()  # the directions of largest variance first


def test_outliers_follow_the_q3_plus_1_7_iqr_rule():
    from scipy.stats import iqr

    rng = np.random.default_rng(0)
    d = np.sort(rng.gamma(2, 0.05, (500, 10)), axis=1).astype(np.float32)
    g = checks.Graph(np.zeros((500, 10), np.int64), d)
    mean = d.mean(1)
    limit = np.percentile(mean, 75) + 1.7 * iqr(mean)
    items = checks.Items(np.full(500, -1), np.zeros(500, bool), np.arange(500))
    out = checks.outliers(g, items)
    assert set(out["row"].tolist()) == set(np.flatnonzero(mean > limit).tolist()) and len(out) > 0
    assert (np.diff(out["score"]) <= 0).all()


def test_farthest_points_against_a_plain_loop():
    x = clustered(300, 16, seed=2)
    rows, gaps = checks.farthest_points(x, count=12)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    chosen = [int(np.argmax(u @ u.mean(0)))]
    for _ in range(11):
        d = (1 - u @ u[chosen].T).min(1)
        chosen.append(int(np.argmax(d)))
    assert rows.tolist() == chosen
    assert math.isinf(gaps[0]) and (np.diff(gaps[1:]) <= 1e-6).all()
    by_distance, _ = checks.farthest_points(x, min_distance=float(gaps[6]))
    assert by_distance.tolist() == chosen[:7]


# ----- the perceptual fingerprint -----
def test_fingerprint_is_the_low_frequency_block_of_the_orthonormal_dct():
    from PIL import Image
    from scipy.fft import dctn

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (2, 3, 40, 40), dtype=np.uint8)
    got = checks.fingerprints(img)
    grey = (img.astype(np.float32) / 255 * np.array([0.299, 0.587, 0.114], np.float32)[:, None, None]).sum(1)
    small = torch.nn.functional.interpolate(torch.from_numpy(grey)[:, None], size=(32, 32), mode="bilinear",
                                            antialias=True, align_corners=False)[:, 0].numpy()
    want = np.stack([dctn(s.astype(np.float64), norm="ortho")[:8, :8].ravel() for s in small])
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert got.shape == (2, 64) and checks.fingerprints(img[:0]).shape == (0, 64)
    grey_img = np.asarray(Image.fromarray(img[0].transpose(1, 2, 0)).convert("L"))[None, None]
    assert checks.perceptual_distance(checks.fingerprints(grey_img)[0], got[0]) < 0.01  # PIL's luma: the same picture


@pytest.mark.parametrize("data", ["fashion", "cifar"])
def test_fingerprint_matches_resized_and_jpeg_copies_and_not_other_images(data):
    """Real images: each one's JPEG (quality 75) copy and its copy stored at twice the size and read back are within
    the radius; of 500 different images, hardly any pair is (Fashion-MNIST has a few near-copies of its own). A copy
    stored at half the size is not asked for: a 28-pixel silhouette at 14 pixels loses what tells it from others."""
    from benchmarks.checks import _jpeg, _resized

    if not (SHARED / ("fashion-mnist" if data == "fashion" else "cifar10-jpg")).is_dir():
        pytest.skip("../shared/data is not here")
    x = load_fashion()[2][:500] if data == "fashion" else load_cifar_files("test", 500, seed=0)[0]
    fp = checks.fingerprints(x)
    for change in (_jpeg, lambda i: _resized(i, 2.0)):
        copies = checks.fingerprints(np.stack([change(i) for i in x[:100]]))
        d = checks.perceptual_distance(fp[:100], copies)
        assert (d < checks.PERCEPTUAL_RADIUS).mean() >= 0.9, np.quantile(d, [0.5, 0.9, 1.0])
    rows = np.arange(len(x))
    same = [checks.perceptual_distance(fp[i], np.delete(fp, i, 0)).min() for i in rows]
    assert (np.array(same) < checks.PERCEPTUAL_RADIUS).sum() <= 5, np.sort(same)[:10]


def test_nearest_fingerprints_against_a_plain_search():
    rng = np.random.default_rng(1)
    fp = rng.normal(size=(300, 64)).astype(np.float32)
    queries, bank = np.arange(0, 100), np.arange(100, 300)
    best, dist = checks.nearest_fingerprints(fp, queries, bank, chunk=7)
    want = bank[np.linalg.norm(fp[queries, None] - fp[None, bank], axis=2).argmin(1)]
    np.testing.assert_array_equal(best, want)
    np.testing.assert_allclose(dist, checks.perceptual_distance(fp[queries], fp[want]))


# ----- planted faults in real images -----
@pytest.fixture(scope="module")
def fashion_planted():
    """3,000 + 1,000 real Fashion-MNIST images with faults planted (10 test images copied in: as they are, stored at
    twice the size, re-encoded as JPEG; 60 labels flipped; 15 CIFAR-10 images in grey), read as centred raw pixels:
    an encoder-free feature, fast, weaker than a trained encoder (benchmarks/checks.py measures that one)."""
    if not (SHARED / "fashion-mnist").is_dir():
        pytest.skip("../shared/data is not here")
    tr_x, tr_y, te_x, te_y = load_fashion()
    other, _ = load_cifar_files("test", 60, seed=3)
    p = plant(tr_x[:3000], tr_y[:3000], te_x[:1000], other, 10, seed=0)
    n_train = len(p["train_x"])
    feats = np.concatenate([p["train_x"], te_x[:1000]]).reshape(n_train + 1000, -1).astype(np.float32)
    feats -= feats[:n_train].mean(0)
    images = np.concatenate([p["train_x"], te_x[:1000]])
    items = checks.Items(np.concatenate([p["train_y"], te_y[:1000]]), np.arange(len(feats)) >= n_train,
                         np.arange(len(feats)), [str(i) for i in range(10)], hashes=checks.pixel_hashes(images),
                         fingerprints=checks.fingerprints(images))
    return feats, items, p, n_train, checks.run_checks(feats, items)


def test_planted_faults_are_found(fashion_planted):
    _, _, p, n_train, report = fashion_planted
    got = evaluate(report, p, n_train)
    assert got["leak_recall_exact"] == 1 and got["leak_recall_jpeg"] == 1, got
    assert got["leaks"]["precision"] >= 0.5, got  # the rest are Fashion-MNIST's own near-copies across its splits
    wider = evaluate(report.with_factor(0.3), p, n_train)  # the line dragged right: the enlarged copies too
    assert wider["leaks"]["recall"] >= 0.8 and wider["copies_in_duplicate_groups"] >= 0.8, wider
    assert got["flipped_label_issues"]["recall"] >= 0.7, got  # 60 flipped labels
    assert got["flipped_top2pct"]["precision"] >= 0.15, got  # among the 60 least likely labels (chance: 0.02)
    trainable = np.flatnonzero(~report.items.test & (report.items.labels >= 0))
    by_vote = trainable[np.argsort(report.probs[trainable, report.items.labels[trainable]], kind="stable")[:60]]
    vote = len(set(by_vote.tolist()) & set(p["flipped"].tolist())) / 60
    assert got["flipped_top2pct"]["precision"] >= vote, (got, vote)  # the linear classifier ranks better than the vote
    exact = report.leaks["exact"]
    assert exact.sum() >= 4 and (report.leaks["distance"][exact] == 0).all()  # a third copied as they are: by hash
    assert (report.leaks["kind"][exact] == checks.EXACT).all()
    assert got["leak_recall_resized"] == 1 and got["leaks"]["recall"] >= 0.9, got  # by their fingerprints
    perceptual = report.leaks["kind"] == checks.PERCEPTUAL
    assert perceptual.sum() >= 6 and (report.leaks["pixel_distance"][perceptual] < checks.PERCEPTUAL_RADIUS).all()


def test_a_dragged_threshold_finds_groups_again(fashion_planted):
    *_, report = fashion_planted
    wider = report.with_factor(0.5)
    assert wider.radius > report.radius and len(wider.duplicates) > len(report.duplicates)
    assert len(wider.leaks) >= len(report.leaks) and wider.outliers is report.outliers
    g = wider.duplicates
    for group in np.unique(g["group"]):  # every group is connected by edges closer than the radius (or equal pixels)
        rows = set(g["row"][g["group"] == group].tolist())
        assert len(rows) == g["size"][g["group"] == group][0] >= 2


def datalab_flags(feats, labels, k=10):
    """What cleanlab 2.9's Datalab flags with features and k = 10, from its own parts: a scikit-learn cosine kNN graph
    (as Datalab builds it), its outlier rule and near-duplicate sets (its issue managers' code), and its label issues
    (a KNeighborsClassifier vote made out-of-sample, then cleanlab's find_label_issues). The Datalab class itself
    needs the `datasets` package, which this environment lacks."""
    from cleanlab.datalab.internal.issue_manager.duplicate import NearDuplicateIssueManager
    from cleanlab.datalab.internal.issue_manager.outlier import OutlierIssueManager
    from cleanlab.filter import find_label_issues
    from scipy.sparse import csr_matrix
    from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

    u = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    dist, idx = NearestNeighbors(n_neighbors=k, metric="cosine").fit(u).kneighbors()
    _, _, outlier = OutlierIssueManager._compute_threshold_and_issue_column_from_distances(
        object.__new__(OutlierIssueManager), dist, None)  # it averages the k distances itself
    graph = csr_matrix((dist.ravel(), idx.ravel(), np.arange(0, dist.size + 1, k)), shape=(len(u), len(u)))
    sets = NearDuplicateIssueManager._neighbors_within_radius(graph, 0.13, max(np.median(dist[:, 0]), 1e-8))
    near = np.array([len(s) > 0 for s in sets])
    probs = KNeighborsClassifier(n_neighbors=k + 1).fit(u, labels).predict_proba(u)
    probs = (probs - np.eye(probs.shape[1])[labels] / (k + 1)) * (k + 1) / k
    return outlier, near, find_label_issues(labels, probs)


def test_agrees_with_cleanlab_datalab_on_the_same_features(fashion_planted):
    """On the same features the flagged sets overlap: outliers Jaccard >= 0.7, near-duplicates >= 0.8, label issues
    from the neighbours' vote most of each side's in the other's (our vote is weighted exp(cos / T), Datalab's is not,
    and Datalab prunes by noise rate where we keep the confident joint's off-diagonal); the label issues listed (from
    the linear classifier's and the vote's probabilities averaged) and what cleanlab's find_label_issues flags on
    them hold most of each other's."""
    feats, items, _, _, report = fashion_planted
    outlier, near, label = datalab_flags(feats, items.labels)
    overlap = lambda ours, theirs: len(ours & theirs) / max(1, len(ours | theirs))  # noqa: E731
    theirs = set(np.flatnonzero(outlier).tolist())
    ours = set(report.outliers["row"].tolist())
    assert overlap(ours, theirs) >= 0.7, (len(ours), len(theirs), len(ours & theirs))
    theirs = set(np.flatnonzero(near).tolist())
    dup = checks.near_duplicates(report.graph, report.items, report.radius)  # without the fingerprints' pairs: Datalab has none
    ours = set(dup["row"].tolist())
    assert overlap(ours, theirs) >= 0.8, (len(ours), len(theirs), len(ours & theirs))
    theirs = set(np.flatnonzero(label).tolist())
    ours = set(checks.label_issues(report.probs, items)[0]["row"].tolist())  # the neighbours' vote, as Datalab's
    both = len(ours & theirs)
    assert both / len(ours) >= 0.5 and both / len(theirs) >= 0.5, (len(ours), len(theirs), both)
    from cleanlab.filter import find_label_issues  # the list itself: the linear classifier's probabilities

    theirs = set(np.flatnonzero(find_label_issues(items.labels, report.label_probs)).tolist())
    ours = set(report.label_issues["row"].tolist())
    both = len(ours & theirs)
    assert both / len(theirs) >= 0.8 and both / len(ours) >= 0.9, (len(ours), len(theirs), both)  # 397 of 490, of 408


def test_report_tables_save_as_csv(fashion_planted, tmp_path):
    *_, report = fashion_planted
    paths = report.save(tmp_path)
    names = {p.name for p in paths}
    assert {"duplicates.csv", "leaks.csv", "outliers.csv", "label_issues.csv", "confusion.csv", "summary.json"} <= names
    import csv

    rows = list(csv.DictReader((tmp_path / "leaks.csv").read_text().splitlines()))
    assert len(rows) == len(report.leaks) and rows[0]["split"] == "test"
    conf = list(csv.reader((tmp_path / "confusion.csv").read_text().splitlines()))
    assert len(conf) == 11 and sum(int(v) for r in conf[1:] for v in r[1:]) == int((report.items.labels >= 0).sum())
    assert any("held-out" in f for f in report.findings)


def test_cifar_planted_leaks_and_foreign_images_by_pixels():
    """CIFAR-10 JPEGs (2,000 + 500) with faults planted: the copies of test images are found as leaks (raw pixels:
    the label vote and the foreign images need an encoder on this data; benchmarks/checks.py measures those)."""
    if not (SHARED / "cifar10-jpg").is_dir():
        pytest.skip("../shared/data is not here")
    tr_x, tr_y = load_cifar_files("train", 2000, seed=0)
    te_x, te_y = load_cifar_files("test", 500, seed=0)
    p = plant(tr_x, tr_y, te_x, load_fashion()[2][:200], 10, seed=1)
    n_train = len(p["train_x"])
    images = np.concatenate([p["train_x"], te_x])
    items = checks.Items(np.concatenate([p["train_y"], te_y]), np.arange(len(images)) >= n_train, np.arange(len(images)),
                         hashes=checks.pixel_hashes(images), fingerprints=checks.fingerprints(images))
    report = checks.run_checks(torch.from_numpy(images).flatten(1).float().numpy(), items)
    got = evaluate(report, p, n_train)
    assert got["leak_recall_exact"] == 1 and got["leak_recall_jpeg"] == 1 and got["leaks"]["precision"] >= 0.8, got
    assert evaluate(report.with_factor(0.5), p, n_train)["leaks"]["recall"] == 1


def test_findings_read_as_sentences_with_thousands_separated():
    """"7,200 labels look wrong", "1 label looks wrong", "1 image is an outlier": counts as users read them."""
    r = object.__new__(checks.Report)
    r.leaks = checks.Table(kind=np.array([checks.EXACT] * 1200 + [checks.PERCEPTUAL] * 34, dtype=object))
    r.duplicates = checks.Table(group=np.repeat(np.arange(1001), 2))
    r.label_issues = checks.Table(row=np.arange(7200))
    r.items = types.SimpleNamespace(labels=np.zeros(60000, np.int64))
    r.outliers = checks.Table(row=np.arange(1))
    r.graph, r.outlier_threshold = types.SimpleNamespace(k=10), 0.465
    assert r.findings == [
        "1,234 held-out images have a near-duplicate in the training split (1,200 exact copies, 34 resized or re-encoded)",
        "2,002 images are in 1,001 groups of near-duplicates",
        "7,200 labels look wrong (12.0% of the labelled images)",
        "1 image is an outlier (mean distance to its 10 neighbours above 0.465)"]
    r.label_issues, r.outliers = checks.Table(row=np.arange(1)), checks.Table(row=np.arange(2))
    assert r.findings[2].startswith("1 label looks wrong") and r.findings[3].startswith("2 images are outliers (mean distance to their")
