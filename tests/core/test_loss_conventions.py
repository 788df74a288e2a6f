"""Each loss's convention against lightly (a test-only reference) and the learnable temperature's parametrisation.

The README's conventions table states, per loss, which reference it equals; these tests hold it to that.
"""
import math

import pytest
import torch

from workbench.core.losses import LOSSES, Views
from workbench.core.losses.ntxent import Temperature

LL = pytest.importorskip("lightly.loss")


def views(n=32, d=16, seed=0, scale2=1.0):
    g = torch.Generator().manual_seed(seed)
    z1, z2, p1, p2, t1, t2 = (torch.randn(n, d, generator=g) for _ in range(6))
    return Views(z1, z2 * scale2, p1=p1, p2=p2, t1=t1, t2=t2)


@pytest.mark.parametrize("name,params,ref", [
    ("ntxent", {"temperature": 0.5}, lambda: LL.NTXentLoss(temperature=0.5)),
    ("ntxent", {"temperature": 0.07}, lambda: LL.NTXentLoss(temperature=0.07)),
    ("dcl", {"temperature": 0.1}, lambda: LL.DCLLoss(temperature=0.1)),
    ("dclw", {"temperature": 0.1, "sigma": 0.5}, lambda: LL.DCLWLoss(temperature=0.1, sigma=0.5)),
    ("barlow_twins", {"lambda_offdiag": 0.005}, lambda: LL.BarlowTwinsLoss(lambda_param=0.005)),
    ("vicreg", {}, lambda: LL.VICRegLoss(lambda_param=25.0, mu_param=25.0, nu_param=1.0)),
])
@pytest.mark.parametrize("scale2", [1.0, 0.2])  # 0.2: every dimension's std under 1, VICReg's variance hinge active
@pytest.mark.filterwarnings("ignore::UserWarning")  # lightly's DCLW builds a tensor from a tensor
def test_loss_equals_lightly(name, params, ref, scale2):
    v = views(scale2=scale2)
    ours = LOSSES.build(name, params)(v).loss
    assert ours.item() == pytest.approx(ref()(v.z1, v.z2).item(), rel=1e-5, abs=1e-6)


def test_vicreg_gradient_equals_lightly():
    v = views(scale2=0.2)
    z1 = v.z1.clone().requires_grad_(True)
    LOSSES.build("vicreg")(Views(z1, v.z2)).loss.backward()
    ref = v.z1.clone().requires_grad_(True)
    LL.VICRegLoss()(ref, v.z2).backward()
    assert torch.allclose(z1.grad, ref.grad, rtol=1e-4, atol=1e-7)


def test_simsiam_equals_lightlys_symmetrised_negative_cosine():
    v = views()
    ncs = LL.NegativeCosineSimilarity()
    ours = LOSSES.build("simsiam")(v).loss
    assert ours.item() == pytest.approx((0.5 * (ncs(v.p1, v.z2) + ncs(v.p2, v.z1))).item(), rel=1e-5, abs=1e-7)


def test_byol_scale_is_the_official_one_four_times_lightlys():
    """Official: sum over directions of 2 - 2 cos. lightly: 0.5 * (-cos - cos). Same minimiser, 4x the gradient."""
    v = views()
    ncs = LL.NegativeCosineSimilarity()
    p1 = v.p1.clone().requires_grad_(True)
    ours = LOSSES.build("byol")(Views(v.z1, v.z2, p1=p1, p2=v.p2, t1=v.t1, t2=v.t2)).loss
    ours.backward()
    q1 = v.p1.clone().requires_grad_(True)
    light = 0.5 * (ncs(q1, v.t2) + ncs(v.p2, v.t1))
    light.backward()
    assert ours.item() == pytest.approx(4 + 4 * light.item(), rel=1e-5)
    assert torch.allclose(p1.grad, 4 * q1.grad, rtol=1e-4, atol=1e-8)
    # range [0, 8]: aligned predictions give 0, opposite ones 8
    z = v.z1
    assert LOSSES.build("byol")(Views(z, z, p1=z, p2=z, t1=z, t2=z)).loss.item() == pytest.approx(0, abs=1e-5)
    assert LOSSES.build("byol")(Views(z, z, p1=-z, p2=-z, t1=z, t2=z)).loss.item() == pytest.approx(8, abs=1e-5)


@pytest.mark.parametrize("start", [0.0101, 0.05, 0.5, 0.99])
def test_learnable_temperature_starts_where_asked_and_always_has_a_gradient(start):
    tau = Temperature(start, learnable=True)
    t = tau()
    assert t.item() == pytest.approx(start, rel=1e-5)
    t.backward()
    assert tau.logit_t.grad.abs().item() > 0


@pytest.mark.parametrize("start", [2.0, 1.0, 0.01, 0.005])
def test_learnable_temperature_outside_its_range_is_rejected_not_clamped(start):
    with pytest.raises(ValueError, match=r"inside \(0.01, 1\)"):
        Temperature(start, learnable=True)
    assert Temperature(start, learnable=False)().item() == pytest.approx(start)  # a fixed one may be anywhere allowed


def test_learnable_temperature_comes_back_from_near_its_bound():
    unrelated = Views(views(16, 8).z1, views(16, 8, seed=1).z1)  # prefers a high temperature
    aligned = Views(unrelated.z1, unrelated.z1 + 0.05 * unrelated.z2)  # prefers a low one
    loss = LOSSES.build("ntxent", {"temperature": 0.5, "learnable_temperature": True})
    opt = torch.optim.SGD(loss.parameters(), lr=20.0)
    seen = []
    for v in [unrelated] * 40 + [aligned] * 40:
        opt.zero_grad()
        loss(v).loss.backward()
        opt.step()
        seen.append(loss.tau().item())
    assert all(0.01 < t < 1 for t in seen)
    assert seen[39] > 0.9  # pushed up near the bound (a clamp would have stopped it there with zero gradient)
    assert seen[-1] < seen[39] - 0.3  # and it follows the gradient back down


def test_old_log_temperature_checkpoints_still_load():
    tau = Temperature(0.5, learnable=True)
    tau.load_state_dict({"log_t": torch.tensor(math.log(0.2))})
    assert tau().item() == pytest.approx(0.2, rel=1e-4)
