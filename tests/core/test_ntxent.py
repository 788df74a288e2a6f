import math

import pytest
import torch
import torch.nn.functional as F

from workbench.core.losses import LOSSES, Views


def ntxent_reference(z1, z2, t):
    """Dense loop over anchors, straight from the SimCLR paper's equation (1)."""
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        j = i + n if i < n else i - n
        num = math.exp(float(z[i] @ z[j]) / t)
        den = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(2 * n) if k != i)
        total += -math.log(num / den)
    return total / (2 * n)


def test_hand_computed_two_pairs():
    # orthogonal unit vectors: positive pairs identical, negatives orthogonal
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss = LOSSES.build("ntxent", {"temperature": 0.5})(Views(z1, z1.clone())).loss
    # each anchor: sims to others = [1 (positive), 0, 0] / 0.5
    expected = -math.log(math.e ** 2 / (math.e ** 2 + 2))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("t", [0.05, 0.2, 1.0])
def test_matches_dense_reference(t):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(12, 8, generator=g), torch.randn(12, 8, generator=g)
    loss = LOSSES.build("ntxent", {"temperature": t})(Views(z1, z2)).loss
    assert loss.item() == pytest.approx(ntxent_reference(z1, z2, t), rel=1e-5)


def test_report_gives_similarity_positive_and_hardest_negative():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    out = LOSSES.build("ntxent", {"temperature": 0.1})(Views(z1, z2), report=True)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T
    assert torch.allclose(out.similarity.fill_diagonal_(0), sim.fill_diagonal_(0), atol=1e-5)
    assert out.positive.tolist() == list(range(6, 12)) + list(range(6))
    for i in range(12):
        cand = [k for k in range(12) if k not in (i, out.positive[i].item())]
        assert out.hardest_negative[i].item() == max(cand, key=lambda k: sim[i, k].item())
    assert out.per_sample.mean().item() == pytest.approx(out.loss.item(), rel=1e-6)
    lazy = LOSSES.build("ntxent", {"temperature": 0.1})(Views(z1, z2))
    assert lazy.similarity is None and lazy.per_sample is None


def test_learnable_temperature_gets_a_gradient_and_dot_similarity():
    loss = LOSSES.build("ntxent", {"temperature": 0.3, "learnable_temperature": True})
    z1 = torch.randn(8, 4, requires_grad=True)
    out = loss(Views(z1, torch.randn(8, 4)))
    out.loss.backward()
    assert loss.tau.logit_t.grad is not None and loss.tau.logit_t.grad != 0 and torch.isfinite(z1.grad).all()
    dot = LOSSES.build("ntxent", {"temperature": 1.0, "similarity": "dot"})
    z = torch.eye(2)
    assert dot(Views(z, z)).loss.item() == pytest.approx(-math.log(math.e / (math.e + 2)), rel=1e-6)
