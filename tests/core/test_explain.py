"""Similarity maps (core/explain.py): exact for every shipped encoder, equal to the reference code's formula, batched
as one at a time, the same on CUDA. Faithfulness on a trained run, the API and the CLI: tests/test_explain.py."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from workbench.core.explain import Explainer, anatomy, deletion_curve, pooling_matrix
from workbench.core.models import ENCODERS, Readout

# (encoder, params, channels, image size): every registry encoder, small_cnn at every pool and at sizes whose last
# feature grid is pooled evenly (32 -> 4x4), unevenly (overlapping bins: 56 -> 7x7 into 4x4, 3x3) or not at all
CASES = [(name, {}, 3, 32 if name == "resnet18_cifar" else 64) for name in ENCODERS.names() if name != "small_cnn"]
CASES += [("small_cnn", {"pool": p}, c, s) for p in (1, 2, 3, 4) for c, s in ((1, 28), (3, 32), (3, 56))]


def _net(name, params, channels, size, seed=0):
    torch.manual_seed(seed)
    enc = ENCODERS.build(name, params, in_channels=channels, image_size=size)
    for m in enc.modules():  # BatchNorm with statistics of its own, as a trained encoder has
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return enc.eval()


def test_every_registry_encoder_has_a_case():
    assert {c[0] for c in CASES} == set(ENCODERS.names())


@pytest.mark.parametrize("name,params,channels,size", CASES,
                         ids=[f"{c[0]}{''.join(f'-{k}{v}' for k, v in c[1].items())}-{c[3]}px" for c in CASES])
def test_maps_sum_to_the_cosine_of_the_encoder_output(name, params, channels, size):
    enc = _net(name, params, channels, size)
    g = torch.Generator().manual_seed(1)
    xa, xb = torch.randn(2, channels, size, size, generator=g), torch.randn(2, channels, size, size, generator=g)
    maps = Explainer(enc).explain(xa, xb)
    with torch.no_grad():
        cos = F.cosine_similarity(enc(xa), enc(xb)).numpy()  # the encoder's own output: what kNN reads
    assert np.abs(maps.map_a.sum((1, 2)) - cos).max() < 1e-5
    assert np.abs(maps.map_b.sum((1, 2)) - cos).max() < 1e-5
    assert np.abs(maps.matches.sum((1, 2)) - cos).max() < 1e-5
    assert np.abs(maps.cosine - cos).max() < 1e-5


def test_an_affine_readout_after_pooling_stays_exact():
    enc = _net("small_cnn", {"pool": 2}, 1, 28)
    x = torch.randn(40, 1, 28, 28)
    ro = Readout(enc.out_dim)
    with torch.no_grad():
        assert ro.fit(enc(x)) in ("whitened", "centred")
        cos = F.cosine_similarity(ro(enc(x[:20]).double()), ro(enc(x[20:]).double())).numpy()
    maps = Explainer(enc, readout=ro).explain(x[:20], x[20:])
    assert np.abs(maps.map_a.sum((1, 2)) - cos).max() < 1e-5 and (maps.map_a < 0).any()  # centred: signed shares


def _reference_spatial_similarity(conv1, conv2):
    """GWUvision/Similarity-Visualization, similarity_ops.compute_spatial_similarity, transcribed (numpy.matlib's
    repmat(x, n, 1) written as np.tile(x, (n, 1))). conv1, conv2: (N, C) last conv layer, N a square."""
    pool1 = np.mean(conv1, axis=0)
    pool2 = np.mean(conv2, axis=0)
    out_sz = (int(np.sqrt(conv1.shape[0])), int(np.sqrt(conv1.shape[0])))
    conv1_normed = conv1 / np.linalg.norm(pool1) / conv1.shape[0]
    conv2_normed = conv2 / np.linalg.norm(pool2) / conv2.shape[0]
    im_similarity = np.zeros((conv1_normed.shape[0], conv1_normed.shape[0]))
    for zz in range(conv1_normed.shape[0]):
        rep_px = np.tile(conv1_normed[zz, :], (conv1_normed.shape[0], 1))
        im_similarity[zz, :] = np.multiply(rep_px, conv2_normed).sum(axis=1)
    similarity1 = np.reshape(np.sum(im_similarity, axis=1), out_sz)
    similarity2 = np.reshape(np.sum(im_similarity, axis=0), out_sz)
    return similarity1, similarity2, im_similarity


def test_resnet18_maps_equal_the_reference_code():
    enc = _net("resnet18", {}, 3, 224)
    g = torch.Generator().manual_seed(2)
    xa, xb = torch.randn(1, 3, 224, 224, generator=g), torch.randn(1, 3, 224, 224, generator=g)
    maps = Explainer(enc).explain(xa, xb)
    trunk = anatomy(enc).trunk
    with torch.no_grad():
        fa, fb = trunk(xa)[0].double().numpy(), trunk(xb)[0].double().numpy()  # (512, 7, 7)
    s1, s2, im = _reference_spatial_similarity(fa.reshape(512, -1).T, fb.reshape(512, -1).T)
    assert maps.grid == (7, 7) and s1.shape == (7, 7)
    scale = np.abs(s1).max()
    assert np.abs(maps.map_a[0] - s1).max() < 1e-5 * scale
    assert np.abs(maps.map_b[0] - s2).max() < 1e-5 * scale
    assert np.abs(maps.matches[0] - im).max() < 1e-5 * np.abs(im).max()


def test_grid_pooling_matches_only_locations_that_share_a_cell():
    enc = _net("small_cnn", {"pool": 2}, 3, 32)  # a 4x4 feature grid pooled to 2x2: cells of 2x2 locations
    maps = Explainer(enc).explain(torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32))
    cell = [(i // 4 // 2) * 2 + (i % 4) // 2 for i in range(16)]
    same = np.array([[cell[i] == cell[j] for j in range(16)] for i in range(16)])
    assert np.all(maps.matches[:, ~same] == 0) and np.all(maps.matches[:, same] > 0)  # ReLU maps: positive shares
    p = pooling_matrix(7, 7, 4)  # overlapping bins (7 into 4): columns sum to the share of each location
    assert p.shape == (16, 49) and torch.allclose(p.sum(1), torch.ones(16))


def test_a_page_of_pairs_is_explained_in_one_batch_like_one_at_a_time():
    enc = _net("small_cnn", {}, 3, 32)
    xa, xb = torch.randn(32, 3, 32, 32), torch.randn(32, 3, 32, 32)
    ex = Explainer(enc, batch=8)
    page = ex.explain(xa, xb)
    one = ex.explain(xa[5:6], xb[5:6])
    assert len(page) == 32 and np.allclose(page.map_a[5], one.map_a[0], atol=1e-6)
    assert page.top_matches(5, 3)[0][2] == pytest.approx(one.matches[0].max())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_maps_equal_the_cpu_maps():
    enc = _net("resnet18_cifar", {}, 3, 32)
    xa, xb = torch.randn(8, 3, 32, 32), torch.randn(8, 3, 32, 32)
    cpu = Explainer(enc).explain(xa, xb)
    gpu = Explainer(enc.cuda()).explain(xa.cuda(), xb.cuda())
    with torch.no_grad():
        cos = F.cosine_similarity(enc(xa.cuda()), enc(xb.cuda())).cpu().numpy()
    assert np.abs(gpu.map_a.sum((1, 2)) - cos).max() < 1e-5
    assert np.allclose(gpu.map_a, cpu.map_a, atol=1e-4)


def test_the_deletion_masks_the_regions_in_order():
    enc = _net("small_cnn", {}, 1, 28)
    x = torch.randn(2, 1, 28, 28)
    curve = deletion_curve(Explainer(enc), x, x, steps=16, fill="mean")
    assert curve.fraction[0] == 0 and curve.fraction[-1] == 1 and len(curve.fraction) == 17
    assert np.allclose(curve.ranked[:, 0], 1, atol=1e-5) and np.allclose(curve.random[:, 0], 1, atol=1e-5)  # a with itself
