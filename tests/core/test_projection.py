import numpy as np
import pytest

from workbench.core.projection import StableProjector, align_to, pca_2d


def test_pca_frames_do_not_flip_or_jump():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 16)) * np.linspace(3, 0.1, 16)
    proj = StableProjector("pca")
    a = proj(x)
    # the same points, slightly changed and with the sign of every feature flipped: PCA alone would mirror
    b = proj(-(x + 0.05 * rng.normal(size=x.shape)))
    assert np.corrcoef(a[:, 0], b[:, 0])[0, 1] > 0.99 and np.corrcoef(a[:, 1], b[:, 1])[0, 1] > 0.99
    raw = pca_2d(-(x + 0.05 * rng.normal(size=x.shape)))
    assert abs(np.corrcoef(a[:, 0], raw[:, 0])[0, 1]) > 0.99  # same axes up to sign


def test_align_recovers_a_rotation_and_reflection():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(100, 2)).astype(np.float32)
    t = 0.7
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]) @ np.diag([1, -1])
    np.testing.assert_allclose(align_to(a, a @ rot * 3.0 + 5), a, atol=1e-4)


def test_tsne_continues_from_the_previous_layout():
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(2)
    centers = rng.normal(size=(3, 10)) * 10
    x = np.concatenate([c + rng.normal(size=(40, 10)) for c in centers]).astype(np.float32)
    proj = StableProjector("tsne")
    a = proj(x)
    b = proj(x + 0.01 * rng.normal(size=x.shape).astype(np.float32))
    assert a.shape == (120, 2) and np.corrcoef(a[:, 0], b[:, 0])[0, 1] > 0.9
    with pytest.raises(ValueError, match="unknown projection"):
        StableProjector("mds")
