"""Batched augmentations against torchvision.transforms.v2, sample by sample, with the parameters our ops drew,
and the distribution of crop boxes against torchvision's own sampler."""
import math

import pytest
import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF

from workbench.core.augment import AUGMENTS, ColorJitter, RandomResizedCrop, adjust_hue, resized_crop


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def images(n=16, c=3, s=32, seed=0):
    """Smooth colourful images (random low-resolution colour fields upsampled), so hue, crops and resizes matter."""
    low = torch.rand(n, c, 6, 6, generator=gen(seed))
    return torch.nn.functional.interpolate(low, size=(s, s), mode="bicubic", align_corners=False).clamp(0, 1)


@pytest.mark.parametrize("size", [16, 32, 48])
def test_resized_crop_matches_torchvision_antialiased_at_the_drawn_boxes(size):
    x = images(24, s=32)
    box = RandomResizedCrop(scale=(0.08, 1.0)).params(24, 32, 32, gen(3), "cpu")
    ours = resized_crop(x, box, size)
    for i, (top, left, h, w) in enumerate(box.tolist()):
        ref = TF.resized_crop(x[i], top, left, h, w, [size, size], antialias=True)
        assert torch.allclose(ours[i], ref, atol=2e-5), (i, (top, left, h, w), float((ours[i] - ref).abs().max()))


def test_downscaling_is_antialiased_like_torchvision():
    stripes = torch.zeros(2, 1, 32, 32)
    stripes[..., ::2] = 1.0  # one-pixel stripes: aliasing turns them into solid colour, antialiasing into grey
    full = torch.tensor([[0, 0, 32, 32]] * 2)
    ours = resized_crop(stripes, full, 8)
    assert torch.allclose(ours, TF.resize(stripes, [8, 8], antialias=True), atol=1e-6)
    assert torch.allclose(ours, torch.full_like(ours, 0.5), atol=0.04)  # (edge columns renormalise: 0.46, 0.54)


def draws(n, scale, ratio, height=32, width=32):
    ours = RandomResizedCrop(scale=scale, ratio=ratio).params(n, height, width, gen(7), "cpu").double()
    torch.manual_seed(7)
    tv = T.RandomResizedCrop(width, scale=scale, ratio=ratio, antialias=True)
    img = torch.zeros(1, height, width)
    ref = torch.tensor([[p["top"], p["left"], p["height"], p["width"]] for p in (tv.make_params([img]) for _ in range(n))]).double()
    return ours, ref


def ks(a, b):
    """Two-sample Kolmogorov-Smirnov statistic."""
    grid = torch.cat([a, b]).unique()
    cdf = lambda v: torch.searchsorted(v.sort().values, grid, right=True).double() / len(v)  # noqa: E731
    return float((cdf(a) - cdf(b)).abs().max())


@pytest.mark.parametrize("scale,ratio", [((0.2, 1.0), (3 / 4, 4 / 3)), ((0.08, 1.0), (3 / 4, 4 / 3)), ((0.6, 1.0), (0.3, 3.0))])
def test_crop_area_aspect_and_position_distributions_match_torchvision(scale, ratio):
    n = 20000
    ours, ref = draws(n, scale, ratio)
    crit = 1.95 * math.sqrt(2 / n)  # KS critical value at alpha = 0.001
    for name, fa, fb in [("area", ours[:, 2] * ours[:, 3], ref[:, 2] * ref[:, 3]),
                         ("log aspect", (ours[:, 3] / ours[:, 2]).log(), (ref[:, 3] / ref[:, 2]).log()),
                         ("top", ours[:, 0], ref[:, 0]), ("left", ours[:, 1], ref[:, 1])]:
        assert ks(fa, fb) < crit, (name, ks(fa, fb), crit)
    assert abs(float((ours[:, 2] * ours[:, 3]).mean() - (ref[:, 2] * ref[:, 3]).mean())) / 1024 < 0.01


def test_no_fitting_draw_falls_back_to_torchvisions_centre_crop():
    # every draw is at least 3 times wider than tall at 90 % of the area: never fits a 32 x 20 image
    ours, ref = draws(50, (0.9, 1.0), (3.0, 4.0), height=20, width=32)
    assert torch.equal(ours, ref)  # deterministic fallback: the same box every time
    assert ours[0].tolist() == [4.0, 0.0, 11.0, 32.0]  # full width, height 32 / 3 rounded, centred: (20 - 11) // 2


def test_every_box_lies_inside_the_image():
    box = RandomResizedCrop(scale=(0.01, 1.0), ratio=(0.2, 5.0)).params(5000, 28, 40, gen(), "cpu")
    top, left, h, w = box.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (h >= 1).all() and (w >= 1).all()
    assert (top + h <= 28).all() and (left + w <= 40).all()


@pytest.mark.parametrize("shift", [-0.5, -0.3, -0.1, 0.05, 0.1, 0.25, 0.5])
def test_hue_shift_is_torchvisions_hsv_rotation(shift):
    x = torch.cat([images(8), torch.rand(2, 3, 32, 32), torch.full((1, 3, 32, 32), 0.4)])  # incl. a grey image
    x[0, :, :4] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)  # saturated primaries and ties between channels
    x[0, :, 4:8] = torch.tensor([1.0, 1.0, 0.0]).view(3, 1, 1)
    ours = adjust_hue(x, torch.full((len(x),), shift))
    assert torch.allclose(ours, TF.adjust_hue(x, shift), atol=2e-6)


@pytest.mark.parametrize("sync_free", [False, True])  # True: the path taken on accelerators
@pytest.mark.parametrize("channels", [3, 1])
def test_color_jitter_matches_torchvision_with_the_drawn_factors_and_order(channels, sync_free):
    x = images(64, c=channels)
    op = ColorJitter(p=0.8, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
    op.sync_free = sync_free
    prm = op.params(64, gen(5), "cpu")
    ours = op.apply(x, prm)
    fns = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    orders = set()
    for i in range(64):
        ref = x[i]
        if prm["on"][i]:
            for k in prm["order"][i].tolist():
                ref = fns[k](ref, float(prm["factors"][i, k]))
            orders.add(tuple(prm["order"][i].tolist()))
        assert torch.allclose(ours[i], ref, atol=2e-5), (i, prm["order"][i], float((ours[i] - ref).abs().max()))
    assert len(orders) > 12  # the order is drawn per sample (24 permutations)


def test_color_jitter_draws_factors_in_torchvisions_ranges():
    prm = ColorJitter(brightness=0.4, contrast=0.2, saturation=0.6, hue=0.1).params(20000, gen(), "cpu")
    f = prm["factors"]
    for k, (lo, hi) in enumerate([(0.6, 1.4), (0.8, 1.2), (0.4, 1.6), (-0.1, 0.1)]):
        assert lo <= float(f[:, k].min()) < lo + 0.01 and hi - 0.01 < float(f[:, k].max()) <= hi
    first = torch.bincount(prm["order"][:, 0], minlength=4).float() / 20000
    assert torch.allclose(first, torch.full((4,), 0.25), atol=0.02)  # each adjustment comes first a quarter of the time


def test_grayscale_uses_torchvisions_weights():
    x = images(4)
    y = AUGMENTS.get("grayscale").factory(p=1.0)(x, gen())
    assert torch.allclose(y, TF.rgb_to_grayscale(x, num_output_channels=3), atol=1e-6)


def test_rotation_and_blur_match_torchvision_at_fixed_parameters():
    x = images(4)
    rot = AUGMENTS.get("rotation").factory(p=1.0, degrees=0.0)
    assert torch.allclose(rot(x, gen()), x, atol=1e-5)
    g = gen(2)
    angle = (torch.rand(4, generator=gen(2)) * 2 - 1) * 30  # the op's own draw, replayed
    y = AUGMENTS.get("rotation").factory(p=1.0, degrees=30.0)(x, g)
    for i in range(4):
        ref = TF.rotate(x[i], float(angle[i]), interpolation=T.InterpolationMode.BILINEAR)
        assert torch.allclose(y[i], ref, atol=1e-4)
    blur = AUGMENTS.get("gaussian_blur").factory(p=1.0, kernel_size=5, sigma=(1.3, 1.3))(x, gen())
    assert torch.allclose(blur, TF.gaussian_blur(x, [5, 5], [1.3, 1.3]), atol=1e-6)


def test_color_jitter_in_fixed_order_is_torchvisions_functions_in_that_order():
    x = images(16)
    op = ColorJitter(p=1.0, random_order=False)
    prm = op.params(16, gen(6), "cpu")
    ours = op.apply(x, prm)
    for i in range(16):
        f = prm["factors"][i].tolist()
        ref = TF.adjust_hue(TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(x[i], f[0]), f[1]), f[2]), f[3])
        assert torch.allclose(ours[i], ref, atol=2e-5)
