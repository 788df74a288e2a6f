"""LARS against a per-parameter transcription of the update in SimCLR's reference code (lars_optimizer.py)."""
import torch

from workbench.core.optim import LARS


def reference_lars_step(params, grads, bufs, lr, momentum, wd, eta, exclude):
    for p, g, buf in zip(params, grads, bufs, strict=True):
        d = g + wd * p
        if not exclude:
            w_norm, g_norm = p.norm(), d.norm()
            ratio = eta * w_norm / g_norm if (w_norm > 0 and g_norm > 0) else 1.0
            d = d * ratio
        buf.mul_(momentum).add_(d)
        p.sub_(lr * buf)


def test_lars_matches_the_per_parameter_reference_over_several_steps():
    g = torch.Generator().manual_seed(0)
    shapes = [(16, 3, 3, 3), (16,), (32, 16), (32,), (5, 5)]
    ours = [torch.randn(s, generator=g).requires_grad_(True) for s in shapes]
    ours[-1].data.zero_()  # a zero-norm parameter takes the unscaled step
    ref = [p.detach().clone() for p in ours]
    start = [p.detach().clone() for p in ours]
    bufs = [torch.zeros_like(p) for p in ref]
    opt = LARS([{"params": [ours[0], ours[2], ours[4]], "weight_decay": 1e-4},
                {"params": [ours[1], ours[3]], "weight_decay": 0.0, "lars_exclude": True}], lr=0.5, momentum=0.9, eta=0.001)
    for _ in range(4):
        grads = [torch.randn(s, generator=g) for s in shapes]
        for p, gr in zip(ours, grads, strict=True):
            p.grad = gr.clone()
        opt.step()
        reference_lars_step([ref[i] for i in (0, 2, 4)], [grads[i] for i in (0, 2, 4)], [bufs[i] for i in (0, 2, 4)],
                            0.5, 0.9, 1e-4, 0.001, exclude=False)
        reference_lars_step([ref[i] for i in (1, 3)], [grads[i] for i in (1, 3)], [bufs[i] for i in (1, 3)],
                            0.5, 0.9, 0.0, 0.001, exclude=True)
    for a, b in zip(ours, ref, strict=True):
        assert torch.allclose(a.detach(), b, atol=1e-6, rtol=1e-5)
    assert all(not torch.equal(p.detach(), s) for p, s in zip(ours, start, strict=True))  # every parameter moved
