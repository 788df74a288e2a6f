"""Encoder registry and projection / prediction heads.

An encoder maps images (B, C, H, W) to representations (B, D) and exposes ``out_dim = D``.
Representations are taken before the projection head (SimCLR, Chen et al. 2020): the backbone's output, which
the field's kNN protocol reads as it is. The network's ``Readout`` (centring or whitening fitted on the training
images' representations) is an option, ``eval.readout``, reported beside the standard figures, never instead.
"""
from __future__ import annotations

import torch
from torch import nn

from workbench.core.registry import Registry

ENCODERS = Registry("encoder", context=("in_channels", "image_size"))


def _check(cond, msg):
    if not cond:
        raise ValueError(msg)


class GridPool(nn.AdaptiveAvgPool2d):
    """Adaptive average pooling to ``output_size`` (an int) that passes through maps already of that size:
    (B, C, h, w) -> (B, C, n, n). Torch's own pooling copies such maps, and the copy's backward pass took about
    4% of a small_cnn training step on a 2-core CPU."""

    def forward(self, x):
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():  # a traced graph takes torch's own pooling
            return super().forward(x)
        n = self.output_size
        return x if x.shape[-2] == n and x.shape[-1] == n else super().forward(x)


class Readout(nn.Module):
    """The representation as it is read out: (B, D) -> (B, D), ``(h - mean) @ P`` with P the regularised PCA
    whitening of the training images' representations (``fit``), fixed, not learned by gradient.

    Pooled ReLU maps all lie on one side of the origin and a few directions carry most of their variance, so
    cosine similarities of raw representations are dominated by what every image shares. Centring them is the
    CL2N read-out of SimpleShot (Wang et al. 2019, arXiv:1911.04623); whitening them (PCA whitening, as in
    image retrieval: Jegou & Chum 2012, ECCV) gives every direction of variation an equal say. The head is fed
    the raw representation, so training never sees this. The buffers are ``nn.Linear(D, D)``'s weight (P^T) and
    bias (-mean @ P), as the model card writes it. The identity until fitted; a checkpoint saved before it
    existed loads with the identity: the representation it had.
    """

    EPS = 1e-2  # each eigenvalue is raised by this share of the largest: directions the images barely vary in stay small
    MAX_ROWS = 20_000  # the covariance is estimated from at most this many representations
    MAX_WHITEN = 4096  # wider representations are centred only (the eigendecomposition grows as D^3)

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("weight", torch.eye(dim))
        self.register_buffer("bias", torch.zeros(dim))

    def forward(self, h):
        return torch.nn.functional.linear(h, self.weight.to(h.dtype), self.bias.to(h.dtype))

    @torch.no_grad()
    def fit(self, h: torch.Tensor, whiten: bool = True) -> str:
        """Fit to representations ``h`` (N, D) of un-augmented training images (centring only unless ``whiten``);
        returns what was fitted: "centred" or "whitened"."""
        h = h.float()
        mean, d = h.mean(0), h.shape[1]
        self.weight.copy_(torch.eye(d, device=self.weight.device))
        self.bias.copy_(-mean)
        if not whiten or d > self.MAX_WHITEN or len(h) < 2:
            return "centred"
        if len(h) > self.MAX_ROWS:
            h = h[torch.randperm(len(h), generator=torch.Generator().manual_seed(0))[: self.MAX_ROWS].to(h.device)]
        x = h - mean
        try:
            lam, vec = torch.linalg.eigh((x.T @ x / (len(x) - 1)).double())
        except RuntimeError:  # no convergence (degenerate representations): centred only
            return "centred"
        lam = lam.clamp_min(0)
        if not lam.max() > 0:
            return "centred"
        p = (vec * (lam + self.EPS * lam.max()).rsqrt()).float()  # (D, D), one whitened direction a column
        self.weight.copy_(p.T)
        self.bias.copy_(-(mean @ p))
        return "whitened"

    def apply_(self, h: torch.Tensor) -> torch.Tensor:
        """``h`` (N, D) read out in place, a chunk at a time (a bank of 100,000 representations is large)."""
        for chunk in h.split(8192):
            chunk.copy_(self(chunk))
        return h

    def _load_from_state_dict(self, state, prefix, *args):
        for name, value in self._buffers.items():
            state.setdefault(prefix + name, value.clone())
        super()._load_from_state_dict(state, prefix, *args)


@ENCODERS.register("small_cnn")
class SmallCNN(nn.Module):
    """``stages`` stride-2 conv blocks (3x3 conv, BatchNorm, ReLU), width doubling each stage, ``depth`` - 1
    stride-1 blocks more at the last stage, and average pooling to a ``pool`` x ``pool`` grid.

    (B, C, H, W) -> (B, width * 2**(stages - 1) * pool**2). Built for a 2-core CPU: downsampling from the
    first layer keeps every activation small (no full-resolution BatchNorm/ReLU passes), extra depth goes
    where the maps are smallest (a block at 4x4 costs a fraction of one at 16x16), and pooling to a grid
    instead of a single vector keeps where things are (28x28 -> 14 -> 7 -> 4 -> 4x4x128 = 2048-d with the
    defaults). At a fixed three minutes on two cores the 4x4 grid gave kNN 0.885 on Fashion-MNIST and 0.609
    on CIFAR-10 against 0.876 and 0.582 for a 2x2 one, at 0.8x and 0.67x the images/s
    (benchmarks/learn_per_second.py, variant pool4 before it was the default).
    """

    def __init__(self, in_channels: int = 1, image_size: int = 28, width: int = 32, pool: int = 4,
                 stages: int = 3, depth: int = 1):
        super().__init__()
        _check(4 <= width <= 512, f"width must be in 4..512, got {width}")
        _check(1 <= pool <= 4, f"pool must be in 1..4, got {pool}")
        _check(1 <= stages <= 5, f"stages must be in 1..5, got {stages}")
        _check(1 <= depth <= 8, f"depth must be in 1..8, got {depth}")

        def block(cin, cout, stride):
            return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        layers, cin = [], in_channels
        for i in range(stages):
            layers += block(cin, width * 2 ** i, 2)
            cin = width * 2 ** i
        for _ in range(depth - 1):
            layers += block(cin, cin, 1)
        self.features = nn.Sequential(*layers, GridPool(pool), nn.Flatten())
        self.out_dim = cin * pool * pool

    def forward(self, x):
        return self.features(x)


def _torchvision_resnet(arch: str, in_channels: int, cifar_stem: bool) -> nn.Module:
    import torchvision

    net = getattr(torchvision.models, arch)(weights=None)
    if cifar_stem:
        net.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    out_dim = net.fc.in_features
    net.fc = nn.Identity()
    net.out_dim = out_dim
    return net


@ENCODERS.register("resnet18_cifar")
def resnet18_cifar(in_channels: int = 3, image_size: int = 32):
    """ResNet-18, CIFAR variant: 3x3 stride-1 stem and no max-pool (for 32x32 images); 512-d output."""
    return _torchvision_resnet("resnet18", in_channels, cifar_stem=True)


@ENCODERS.register("resnet18")
def resnet18(in_channels: int = 3, image_size: int = 96):
    """torchvision ResNet-18 (ImageNet stem) for larger images (64 px and up); 512-d output."""
    return _torchvision_resnet("resnet18", in_channels, cifar_stem=False)


@ENCODERS.register("resnet34")
def resnet34(in_channels: int = 3, image_size: int = 96):
    """torchvision ResNet-34 (ImageNet stem); 512-d output."""
    return _torchvision_resnet("resnet34", in_channels, cifar_stem=False)


@ENCODERS.register("resnet50")
def resnet50(in_channels: int = 3, image_size: int = 96):
    """torchvision ResNet-50 (ImageNet stem); 2048-d output."""
    return _torchvision_resnet("resnet50", in_channels, cifar_stem=False)


def mlp(in_dim: int, hidden: int, out: int, layers: int, bn: bool) -> nn.Module:
    """``layers`` linear layers (in -> hidden ... -> out) with BatchNorm/ReLU between; 0 layers = identity."""
    if layers == 0:
        return nn.Identity()
    mods: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers - 1):
        mods += [nn.Linear(dim, hidden, bias=not bn)] + ([nn.BatchNorm1d(hidden)] if bn else []) + [nn.ReLU(inplace=True)]
        dim = hidden
    mods.append(nn.Linear(dim, out))
    return nn.Sequential(*mods)


class Network(nn.Module):
    """Encoder + projection head + the method's predictor (``core/methods/``).

    forward(x (B, C, H, W)) -> (h (B, D_rep), z (B, D_proj), p (B, D_pred)); p = predictor(z)
    (p is z when the method adds none). ``x`` may also be a list of batches at different sizes
    (multi-crop): each goes through the encoder, then the head and predictor see them all,
    concatenated in order. Everything runs inside forward so DDP sees every parameter once.
    h is the encoder's raw output, which the head is trained on and the standard kNN reads; ``readout(h)`` is
    the optional read-out (``Readout``: the identity unless ``eval.readout`` fits one; never trained).
    """

    def __init__(self, encoder: nn.Module, head: nn.Module, predictor: nn.Module | None = None):
        super().__init__()
        self.encoder, self.head = encoder, head
        self.predictor = predictor if predictor is not None else nn.Identity()
        self.readout = Readout(encoder.out_dim)

    def forward(self, x):
        h = torch.cat([self.encoder(c) for c in x]) if isinstance(x, (list, tuple)) else self.encoder(x)
        z = self.head(h)
        return h, z, self.predictor(z)
