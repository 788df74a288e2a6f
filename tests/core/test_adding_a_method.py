"""A method and a loss added from outside the package: each is one class and its registration line (registered
hidden here, so the window's and the CLI's lists stay as they are), and each trains through the config at once."""
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from workbench.core.config import Config
from workbench.core.events import DoneEvent, StepEvent
from workbench.core.losses import LOSSES, LossOut, Views
from workbench.core.losses.base import cross_view_report, l2n
from workbench.core.methods import METHODS, Method, MethodParams
from workbench.core.registry import ConfigError
from workbench.core.train import train


@dataclass
class NoisyParams(MethodParams):
    """noise: standard deviation of the Gaussian noise added to each projection while training, >= 0."""

    noise: float = 0.05

    def check(self) -> None:
        self.require(self.noise >= 0, "noise", f"must be >= 0, got {self.noise}")


@METHODS.register("noisy_views_test", hidden=True)
class NoisyViews(Method):
    """Two views through one network, their projections jittered by Gaussian noise (any loss of z1, z2 takes it)."""

    Params = NoisyParams
    params: NoisyParams

    def forward(self, model, crops, labels, progress: float = 1.0) -> Views:
        _, z, _ = model(torch.cat(crops[:2]))
        if self.training:
            z = z + self.params.noise * torch.randn_like(z)
        return self.pack(z, labels)


@LOSSES.register("queue_margin_test", hidden=True, method="moco")
class QueueMargin(nn.Module):
    """Each query's key should beat its hardest queued negative by a margin: mean relu(m - cos(q, k+) + max cos(q, k-)).

    margin: m, > 0.
    """

    term_names = ("hardest_queue_sim",)
    needs = ("t", "negatives")

    def __init__(self, margin: float = 0.5):
        super().__init__()
        if margin <= 0:
            raise ValueError(f"margin must be > 0, got {margin}")
        self.margin = margin

    def forward(self, views: Views, report: bool = False) -> LossOut:
        q = l2n(torch.cat([views.z1, views.z2]))
        k = l2n(torch.cat([views.t2, views.t1])).detach()
        hardest = (q @ views.negatives.to(q.dtype).T).max(1).values
        per = F.relu(self.margin - (q * k).sum(1) + hardest)
        out = LossOut(per.mean(), {"hardest_queue_sim": hardest.detach().mean()})
        return cross_view_report(out, views.z1, views.z2, per[: len(per) // 2]) if report else out


def two_steps(cfg: Config, tmp_path) -> list:
    events = list(train(cfg, runs_root=tmp_path))
    assert isinstance(events[-1], DoneEvent), events[-1]
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert [e.step for e in steps] == [1, 2] and all(torch.isfinite(torch.tensor(e.loss)) for e in steps)
    return steps


def test_a_method_from_outside_the_package_trains_with_an_existing_loss(tmp_path, quick_cfg):
    cfg = quick_cfg("loss.name=dcl", "method.name=noisy_views_test", "method.noise=0.1", "train.max_steps=2",
                    "train.log_every=1")
    assert cfg.method.params.noise == 0.1 and cfg.to_dict()["method"] == {"name": "noisy_views_test", "noise": 0.1}
    two_steps(cfg, tmp_path)
    with pytest.raises(ConfigError, match="method.noise: must be >= 0, got -1.0"):
        cfg.with_overrides(["method.noise=-1"])
    assert "noisy_views_test" not in METHODS.names()


def test_a_loss_from_outside_the_package_trains_with_the_moco_queue(tmp_path, quick_cfg):
    cfg = quick_cfg("loss.name=queue_margin_test", "loss.margin=0.3", "method.queue_size=128", "train.max_steps=2",
                    "train.log_every=1")
    assert (cfg.method.name, cfg.method.params.queue_size) == ("moco", 128)  # the loss's method by default
    steps = two_steps(cfg, tmp_path)
    assert set(steps[0].terms) == {"hardest_queue_sim"}
    with pytest.raises(ConfigError, match="method.name: loss 'queue_margin_test' reads t, negatives"):
        cfg.with_overrides(["method.name=simclr"])
