import pytest
import torch
import torchvision.transforms.v2.functional as TF

from workbench.core.augment import AUGMENTS, PRESETS, Augmenter, check_recipe


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def batch(n=64, c=3, s=32):
    x = torch.linspace(0, 1, s * s).view(1, 1, s, s).expand(n, c, s, s).clone()
    x[:, :, :, : s // 4] = 0.9  # a bright band on the left
    return x


@pytest.mark.parametrize("name", [n for n in AUGMENTS.names()])
def test_every_op_keeps_layout_and_range_and_p0_is_identity(name):
    x = batch()
    op = AUGMENTS.get(name).factory(p=1.0)
    y = op(x, gen())
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.min() >= -1e-5 and y.max() <= 1 + 1e-5
    assert torch.equal(AUGMENTS.get(name).factory(p=0.0)(x, gen()), x)


@pytest.mark.parametrize("name", ["random_resized_crop", "rotation", "color_jitter", "gaussian_blur", "gaussian_noise"])
def test_parameters_are_drawn_per_sample_not_per_batch(name):
    x = batch()
    y = AUGMENTS.get(name).factory(p=1.0)(x, gen())
    distinct = {tuple(v.flatten()[::37].round(decimals=4).tolist()) for v in y}
    assert len(distinct) > 32  # identical inputs, (nearly) all outputs differ


def test_probability_is_respected_per_sample():
    x = batch(n=2000, s=8)
    y = AUGMENTS.get("horizontal_flip").factory(p=0.3)(x, gen())
    flipped = (y != x).flatten(1).any(1).float().mean().item()
    assert 0.25 < flipped < 0.35
    assert torch.equal(y[(y != x).flatten(1).any(1)], x[(y != x).flatten(1).any(1)].flip(-1))


def test_crop_respects_scale_and_output_size():
    x = torch.zeros(500, 1, 64, 64)
    x[:, :, 16:48, 16:48] = 1.0  # centre square is a quarter of the area
    y = AUGMENTS.get("random_resized_crop").factory(scale=(1.0, 1.0), ratio=(1.0, 1.0), size=32)(x, gen())
    assert y.shape == (500, 1, 32, 32)
    assert torch.allclose(y.mean((1, 2, 3)), torch.full((500,), 0.25), atol=0.03)
    ramp = torch.linspace(0, 1, 64).view(1, 1, 1, 64).expand(500, 1, 64, 64)
    quarter = AUGMENTS.get("random_resized_crop").factory(scale=(0.25, 0.25), ratio=(1.0, 1.0))(ramp, gen())
    span = quarter.amax((1, 2, 3)) - quarter.amin((1, 2, 3))
    assert torch.allclose(span, torch.full((500,), 0.5), atol=0.04)  # side = sqrt(area) = half the width
    assert quarter.mean((1, 2, 3)).std() > 0.05  # positions differ per sample


def test_solarize_posterize_equalize_match_torchvision():
    g = torch.Generator().manual_seed(1)
    u8 = torch.randint(0, 200, (8, 3, 16, 16), generator=g, dtype=torch.uint8)
    x = u8.float() / 255
    sol = AUGMENTS.get("solarize").factory(p=1.0, threshold=0.5)(x, gen())
    assert torch.allclose(sol, TF.solarize(x, 0.5), atol=1e-6)
    post = AUGMENTS.get("posterize").factory(p=1.0, bits=3)(x, gen())
    assert torch.equal((post * 255).round().to(torch.uint8), TF.posterize(u8, 3))
    eq = AUGMENTS.get("equalize").factory(p=1.0)(x, gen())
    ref = TF.equalize(u8).float() / 255
    assert torch.allclose(eq, ref, atol=1e-6)


def test_grayscale_and_jitter_saturation_zero_keep_grey_images_grey():
    x = batch(c=3)
    y = AUGMENTS.get("grayscale").factory(p=1.0)(torch.rand(4, 3, 8, 8), gen())
    assert torch.allclose(y[:, 0], y[:, 1]) and torch.allclose(y[:, 1], y[:, 2])
    j = AUGMENTS.get("color_jitter").factory(p=1.0, hue=0.3)(x, gen())
    assert torch.allclose(j[:, 0], j[:, 1], atol=1e-4)  # a grey input has no hue to shift


def test_presets_are_valid_and_augmenter_normalises():
    for recipe in PRESETS.values():
        check_recipe(recipe)
    aug = Augmenter(check_recipe(PRESETS["simclr_small_grey"]), [0.5], [0.25])
    u8 = torch.full((16, 1, 28, 28), 128, dtype=torch.uint8)
    v1, v2 = aug.views(u8, gen(0)), aug.views(u8, gen(1))
    assert v1.shape == (16, 1, 28, 28) and not torch.equal(v1, v2)
    assert torch.allclose(aug.plain(u8), torch.full_like(v1, (128 / 255 - 0.5) / 0.25), atol=1e-6)
