"""HCL (hard negative sampling) against a dense float64 transcription of the authors' loss and against NT-Xent."""
import math

import pytest
import torch
import torch.nn.functional as F

from workbench.core.config import Config
from workbench.core.losses import LOSSES, Views
from workbench.core.registry import ConfigError


def rand(n=8, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)


def official_hcl(z1, z2, t, beta, tau_plus):
    """The estimator of Robinson et al. (2021), written out densely in float64 from the paper and its reference code:
    exponentiated cosine similarities, the 2B - 2 negatives of each row, importance weights exp(beta s / t) normalised
    by their mean, the debiased sum clamped below at (2B - 2) e^{-1/t}."""
    a, b = F.normalize(z1.double(), dim=1), F.normalize(z2.double(), dim=1)
    out = torch.cat([a, b])
    n = len(a)
    e = torch.exp(out @ out.T / t)
    total = 0.0
    for i in range(2 * n):
        p = (i + n) % (2 * n)
        negs = torch.stack([e[i, k] for k in range(2 * n) if k not in (i, p)])
        count = 2 * n - 2
        imp = negs ** beta
        reweighted = (imp * negs).sum() / imp.mean()
        ng = (reweighted - tau_plus * count * e[i, p]) / (1 - tau_plus)
        ng = max(float(ng), count * math.exp(-1 / t))
        total += -math.log(float(e[i, p]) / (float(e[i, p]) + ng))
    return total / (2 * n)


def hcl(**params):
    return LOSSES.build("hcl", params)


@pytest.mark.parametrize("t", [0.1, 0.5])
def test_beta_0_and_tau_plus_0_is_ntxent(t):
    z1, z2 = rand(16, 8)
    ours = hcl(temperature=t, beta=0.0, tau_plus=0.0)(Views(z1, z2)).loss
    ntxent = LOSSES.build("ntxent", {"temperature": t})(Views(z1, z2)).loss
    assert torch.allclose(ours, ntxent, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("t,beta,tau_plus", [(0.5, 1.0, 0.1), (0.2, 0.5, 0.05), (0.1, 2.0, 0.0), (0.5, 0.0, 0.3)])
def test_matches_the_official_estimator(t, beta, tau_plus):
    z1, z2 = rand(12, 5, seed=3)
    ours = float(hcl(temperature=t, beta=beta, tau_plus=tau_plus)(Views(z1, z2)).loss)
    assert ours == pytest.approx(official_hcl(z1, z2, t, beta, tau_plus), rel=1e-5)


def test_lower_bound_is_applied_when_debiasing_overshoots():
    # views of each image nearly identical and everything else far: the debiased sum goes negative and is clamped
    base = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    z1, z2 = base, base + 1e-3
    t, tau_plus = 0.5, 0.9
    ours = float(hcl(temperature=t, beta=1.0, tau_plus=tau_plus)(Views(z1, z2)).loss)
    m = 2 * 6 - 2
    pos = math.exp(1 / t)
    assert ours == pytest.approx(-math.log(pos / (pos + m * math.exp(-1 / t))), rel=1e-4)
    assert ours == pytest.approx(official_hcl(z1, z2, t, 1.0, tau_plus), rel=1e-5)


def test_small_temperature_stays_finite_and_exact():
    z1, z2 = rand(32, 16, seed=5)
    z1.requires_grad_(True)
    out = hcl(temperature=0.01, beta=1.0, tau_plus=0.1)(Views(z1, z2))
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(z1.grad).all()
    assert float(out.loss.detach()) == pytest.approx(official_hcl(z1.detach(), z2, 0.01, 1.0, 0.1), rel=1e-4)


def test_beta_weighs_the_negatives_towards_the_most_similar():
    z1, z2 = rand(8, 6, seed=7)
    plain = hcl(temperature=0.5, beta=0.0, tau_plus=0.0)(Views(z1, z2)).terms
    hard = hcl(temperature=0.5, beta=2.0, tau_plus=0.0)(Views(z1, z2)).terms
    assert float(plain["weighted_neg_sim"]) == pytest.approx(float(plain["neg_sim"]), abs=1e-6)
    assert float(hard["weighted_neg_sim"]) > float(hard["neg_sim"]) + 0.05


def test_report_and_config():
    out = hcl()(Views(*rand(4, 3)), report=True)
    assert out.similarity.shape == (8, 8) and out.per_sample.shape == (8,)
    assert out.hardest_negative.tolist() != out.positive.tolist()
    cfg = Config().with_overrides(["loss.name=hcl", "loss.beta=0.5", "loss.tau_plus=0.05"])
    # switching the loss keeps the temperature the config already had
    assert cfg.loss.params == {"temperature": Config().loss.params["temperature"], "beta": 0.5, "tau_plus": 0.05}
    with pytest.raises(ConfigError, match="tau_plus"):
        Config().with_overrides(["loss.name=hcl", "loss.tau_plus=1.0"])
    helps = {p.name: p.help for p in LOSSES.get("hcl").params}
    assert all(helps.values()), helps
