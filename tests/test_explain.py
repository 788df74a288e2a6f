"""Similarity maps of a trained run: the deletion curve falls faster in the maps' order than in a random one (real
Fashion-MNIST images), ``run.explain`` / ``run.deletion_curve`` and ``workbench explain``."""
import re

import numpy as np
import pytest
import torch

from workbench.core.explain import Explainer, deletion_curve

from .test_cli import wb


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A short run on the bundled Fashion-MNIST images (real data, offline): enough steps for its maps to mean something."""
    import workbench as wb

    cfg = wb.config(None, **{"data.subset": 2048, "train.batch_size": 128, "train.max_steps": 40, "eval.test_size": 100,
                             "eval.bank_size": 512, "eval.embed_points": 50, "eval.every": 1000, "augment.start_size": 1})
    return wb.fit(cfg, runs_root=tmp_path_factory.mktemp("runs"))


def test_deletion_in_the_maps_order_drops_faster_than_random_on_a_trained_run(trained_run):
    from workbench.core.inference import RunModel, neighbours

    rm = RunModel.load(trained_run.run_dir)
    _, test = rm.splits()
    x = test.images[:200]
    idx, _ = neighbours(rm.features(x), rm.features(x), k=2)  # each image with its nearest other image: a similar pair
    ex = Explainer.for_run(rm)
    curve = deletion_curve(ex, ex.preprocess(x[:100]), ex.preprocess(x[idx[:100, 1]]))
    ranked, rand = curve.auc
    assert ranked < rand - 0.02, (ranked, rand)
    assert (curve.ranked.mean(0)[1:-1] < curve.random.mean(0)[1:-1]).all()  # below the random order all the way


def test_the_api_and_a_figure(trained_run, tmp_path):
    from PIL import Image

    from workbench.core.inference import RunModel

    rm = RunModel.load(trained_run.run_dir)
    _, test = rm.splits()
    a, b = test.images[0], test.images[1]
    Image.fromarray(a[0].numpy()).save(tmp_path / "a.png")
    maps = trained_run.explain(tmp_path / "a.png", b)
    emb = trained_run.model.features(torch.stack([a, b]))
    cos = float(emb[0] @ emb[1] / np.linalg.norm(emb[0]) / np.linalg.norm(emb[1]))
    assert maps.cosine[0] == pytest.approx(cos, abs=1e-5) and maps.map_a[0].sum() == pytest.approx(cos, abs=1e-5)
    fig = maps.figure(0, size=112)
    assert fig.dtype == np.uint8 and fig.ndim == 3 and fig.shape[2] == 3 and fig.shape[1] > 224
    batch = trained_run.explain(test.images[:4], test.images[4:8])
    assert len(batch) == 4 and batch.map_b.shape == (4, *batch.grid)
    curve = trained_run.deletion_curve(test.images[:4], test.images[4:8])
    assert curve.ranked.shape == (4, len(curve.fraction))


def test_the_cli_writes_a_figure_and_says_what_it_explains(trained_run, tmp_path):
    from PIL import Image

    from workbench.core.inference import RunModel

    rm = RunModel.load(trained_run.run_dir)
    _, test = rm.splits()
    for name, k in (("a.png", 0), ("b.png", 1)):
        Image.fromarray(test.images[k, 0].numpy()).save(tmp_path / name)
    out = tmp_path / "pair.png"
    res = wb("explain", str(trained_run.run_dir), str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--out", str(out),
             "--deletion", "--lines", "3")
    assert res.returncode == 0, res.stderr
    cos = trained_run.explain(tmp_path / "a.png", tmp_path / "b.png").cosine[0]
    said = re.search(r"^cosine (\S+) .*map of a sums to (\S+), map of b to (\S+)", res.stdout, re.M)
    assert said and np.allclose([float(v) for v in said.groups()], cos, atol=2e-6), res.stdout
    assert "not through the projection head" in res.stdout
    assert res.stdout.count("  match ") == 3 and "deletion curve" in res.stdout
    with Image.open(out) as fig:
        assert fig.size[0] > 2 * 224  # both images side by side at the default size
    again = wb("explain", str(trained_run.run_dir), str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--out", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr and "--force" in again.stderr
    missing = wb("explain", str(trained_run.run_dir), str(tmp_path / "nope.png"), str(tmp_path / "b.png"), "--out", str(out))
    assert missing.returncode == 2 and "nope.png" in missing.stderr and "does not exist" in missing.stderr
