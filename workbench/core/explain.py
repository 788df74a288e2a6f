"""Similarity maps: why an encoder finds two images similar, exactly, location by location.

The representation explained is the encoder's own output h, the backbone representation the standard kNN and
retrieval read (L2-normalised for the cosine); not the projection head's output the loss saw: the head is an MLP
and nothing after a non-linearity decomposes exactly. The optional whitening read-out (``models.Readout``) is an
affine map after pooling, and stays exact (``readout=True``).

The maths (Stylianou, Souvenir & Pless 2019, "Visualizing Deep Similarity Networks", WACV; reference code
GWUvision/Similarity-Visualization, ``similarity_ops.compute_spatial_similarity``). An encoder that ends in
global average pooling gives e = (1/N) sum_i F_i from its last feature maps F (N = h x w locations, C
channels), so

    cos(e_a, e_b) = sum_ij F_a,i . F_b,j / (N^2 |e_a| |e_b|) = sum_ij M_ij

M (N x N) says which location i of a matches which location j of b; its row sums are the map of a,
Map_a(i) = F_a,i . e_b / (N |e_a| |e_b|), its column sums the map of b; each map sums to the cosine. One
forward pass an image, no backward pass.

Generalised here to any pooling that is linear in the locations, e = sum_i c_i with c_i location i's
contribution: M_ij = c_a,i . c_b,j / (|e_a| |e_b|), exact whatever the pooling. For global average pooling (the
torchvision ResNets, small_cnn with ``pool`` = 1) c_i = F_i / N and this is the paper's formula. small_cnn pools
to a p x p grid and flattens it (channel-major: index c * p^2 + k), a linear arrangement of locations: with P
(p^2 x N) the adaptive pooling matrix (P_ki = the weight of location i in cell k), c_i = F_i (x) P[:, i] (its
channels placed in the cells it is pooled into), so c_a,i . c_b,j = F_a,i . F_b,j (P[:, i] . P[:, j]): two
locations match only through the grid cells they share. The maps live on the last feature grid (h x w, e.g.
4 x 4 for small_cnn at 28 or 32 px) and sum to the cosine there; the upsampling to the image is for display only.
An affine read-out y = W e + b distributes as c'_i = W c_i + b / N.

The deletion curve (after Petsiuk et al. 2018, RISE, "deletion") checks the maps against the network itself:
the image regions under a's locations are blacked out one after another, highest map value first, and the
cosine to b recomputed; against a random order, a faithful map makes it drop sooner (a smaller area under the
curve).

    ex = Explainer(encoder)                      # or Explainer.for_run(run_model)
    maps = ex.explain(xa, xb)                    # xa, xb (B, C, H, W) normalised float: PairMaps
    maps.map_a.sum((1, 2))                       # == maps.cosine == cos(encoder(xa), encoder(xb))
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workbench.core.models import GridPool, SmallCNN
from workbench.core.registry import ConfigError

EPS = 1e-12


# ----- the encoder, opened up -----
@dataclass
class Anatomy:
    """An encoder split at its pooling: ``trunk(x (B, C, H, W)) -> F (B, C', h, w)`` the last feature maps, and
    ``pool``: None for global average pooling (e = mean of F), else p for average pooling to a p x p grid
    flattened channel-major (small_cnn)."""

    trunk: Callable[[torch.Tensor], torch.Tensor]
    pool: int | None
    kind: str


def anatomy(encoder: nn.Module) -> Anatomy:
    """Where ``encoder`` (a registry encoder) pools: its trunk and its pooling; ConfigError for an encoder
    this module does not know how to open."""
    if isinstance(encoder, SmallCNN):
        mods = list(encoder.features)
        if not (isinstance(mods[-2], GridPool) and isinstance(mods[-1], nn.Flatten)):
            raise ConfigError("explain: small_cnn's layers are not the expected conv blocks, grid pooling and flatten")
        pool = mods[-2].output_size
        return Anatomy(nn.Sequential(*mods[:-2]), None if pool == 1 else int(pool), f"small_cnn, {pool}x{pool} grid")
    import torchvision

    if isinstance(encoder, torchvision.models.ResNet):
        if not isinstance(encoder.fc, nn.Identity) or tuple(_size(encoder.avgpool.output_size)) != (1, 1):
            raise ConfigError("explain: this ResNet has a classifier or a pooling other than global average pooling")
        e = encoder
        trunk = nn.Sequential(e.conv1, e.bn1, e.relu, e.maxpool, e.layer1, e.layer2, e.layer3, e.layer4)
        return Anatomy(trunk, None, "ResNet, global average pooling")
    raise ConfigError(f"explain: encoder {type(encoder).__name__} has no known split into feature maps and pooling; "
                      "similarity maps are available for the registry's small_cnn and ResNets")


def _size(s) -> tuple:
    return s if isinstance(s, tuple) else (s, s)


def pooling_matrix(h: int, w: int, pool: int | None, device=None) -> torch.Tensor:
    """P (K, N): cell k of the pooled output = sum_i P[k, i] F_i, N = h * w locations in row-major order.
    Global average pooling: K = 1, P = 1/N. A p x p grid: torch's adaptive average pooling applied to the N
    one-hot maps (exactly the weights the network uses, overlapping bins included)."""
    n = h * w
    if pool is None:
        return torch.full((1, n), 1.0 / n, device=device)
    basis = torch.eye(n, device=device).view(n, 1, h, w)
    return F.adaptive_avg_pool2d(basis, pool).view(n, pool * pool).T.contiguous()


def contributions(fmap: torch.Tensor, pool: int | None) -> torch.Tensor:
    """Each location's share of the representation: F (B, C, h, w) -> c (B, N, D) with sum_i c[:, i] = e, the
    encoder's output (D = C for global pooling, C * p^2 for a p x p grid flattened channel-major)."""
    b, c, h, w = fmap.shape
    flat = fmap.reshape(b, c, h * w)
    p = pooling_matrix(h, w, pool, fmap.device).to(fmap.dtype)
    if pool is None:
        return flat.transpose(1, 2) * p[0].view(1, -1, 1)
    return torch.einsum("bci,ki->bick", flat, p).reshape(b, h * w, c * p.shape[0])


# ----- maps of pairs -----
@dataclass
class PairMaps:
    """Exact similarity maps of B pairs (a_k, b_k).

    cosine (B,): cos(e_a, e_b) of the representation explained. matches (B, N, N): matches[k, i, j] the share of
    location i of a_k with location j of b_k; sum_ij = cosine. map_a, map_b (B, h, w): its row and column sums
    (location i = row i // w, column i % w of the last feature grid). ``images_a`` / ``images_b`` (B, C, H, W)
    uint8, the images as the network saw them, when known (for figures). All numpy float32 on the CPU.
    """

    cosine: np.ndarray
    map_a: np.ndarray
    map_b: np.ndarray
    matches: np.ndarray
    grid: tuple[int, int]
    kind: str = ""
    images_a: np.ndarray | None = None
    images_b: np.ndarray | None = None
    note: str = field(default="backbone representation (what kNN and retrieval read), not through the projection head")

    def __len__(self) -> int:
        return len(self.cosine)

    def __getitem__(self, k) -> PairMaps:
        """The pairs ``k`` (an int keeps a batch of one)."""
        k = slice(k, k + 1) if isinstance(k, (int, np.integer)) else k
        ia, ib = (None if im is None else im[k] for im in (self.images_a, self.images_b))
        return PairMaps(self.cosine[k], self.map_a[k], self.map_b[k], self.matches[k], self.grid, self.kind, ia, ib, self.note)

    def top_matches(self, k: int = 0, n: int = 5) -> list[tuple[int, int, float]]:
        """The ``n`` strongest location matches of pair ``k``: [(i, j, share)], largest share first."""
        m = self.matches[k].ravel()
        top = np.argsort(-m, kind="stable")[: min(n, m.size)]
        w = self.matches.shape[-1]
        return [(int(t // w), int(t % w), float(m[t])) for t in top]

    def upsampled(self, size: int, which: str = "a") -> np.ndarray:
        """Maps (B, size, size) bilinearly upsampled to the image for display (their sum is no longer the cosine)."""
        maps = torch.from_numpy(self.map_a if which == "a" else self.map_b)[:, None]
        return F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)[:, 0].numpy()

    def figure(self, k: int = 0, size: int = 224, lines: int = 5, title: str = "") -> np.ndarray:
        """Pair ``k`` drawn as an RGB image (H, W, 3) uint8: both images with the strongest matches as lines, and
        both maps over them (``render_pair``)."""
        if self.images_a is None or self.images_b is None:
            raise ValueError("these maps carry no images; give them to render_pair")
        return render_pair(self.images_a[k], self.images_b[k], self[k], size=size, lines=lines, title=title)


class Explainer:
    """Exact similarity maps for an encoder (``anatomy``), batched, on the encoder's device.

    ``preprocess``: uint8 (B, C, H, W) -> the normalised float input, used by the ``*_u8`` methods (a run's
    ``RunModel.preprocess``). ``readout``: an affine ``nn.Module`` (D -> D) applied after pooling (the run's
    whitening ``Readout``); None (default) explains the plain backbone output.
    """

    def __init__(self, encoder: nn.Module, readout: nn.Module | None = None,
                 preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None, batch: int = 256):
        self.encoder, self.readout, self.preprocess, self.batch = encoder, readout, preprocess, batch
        self.anatomy = anatomy(encoder)

    @classmethod
    def for_run(cls, rm, readout: bool = False) -> Explainer:
        """For a loaded run (``inference.RunModel``): its encoder, its preprocessing, and optionally its read-out."""
        return cls(rm.net.encoder, rm.net.readout if readout else None, rm.preprocess)

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    @torch.no_grad()
    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) normalised -> F (B, C', h, w) float32, the last feature maps, in eval mode."""
        was = self.encoder.training
        self.encoder.eval()
        try:
            return torch.cat([self.anatomy.trunk(chunk.to(self.device)).float() for chunk in x.split(self.batch)])
        finally:
            self.encoder.train(was)

    @torch.no_grad()
    def contributions(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """x (B, C, H, W) normalised -> (c (B, N, D) with sum_i c_i = the representation, (h, w)); float32, float64
        with a read-out."""
        fmap = self.feature_maps(x)
        c = contributions(fmap, self.anatomy.pool)
        if self.readout is not None:  # in float64: a whitening's small directions magnify float32 rounding
            w, b = _affine(self.readout, c.shape[-1], c.device)
            c = c.double() @ w.T + b / c.shape[1]
        return c, (fmap.shape[-2], fmap.shape[-1])

    @torch.no_grad()
    def represent(self, x: torch.Tensor) -> torch.Tensor:
        """The representation explained, (B, D): the sum of the contributions (without a read-out, the feature maps
        pooled as the encoder pools them, without forming the contributions)."""
        if self.readout is not None:
            return self.contributions(x)[0].sum(1)
        fmap = self.feature_maps(x)
        b, c, h, w = fmap.shape
        p = pooling_matrix(h, w, self.anatomy.pool, fmap.device)
        return (fmap.reshape(b, c, h * w) @ p.T).reshape(b, -1)  # (B, C, K) flattened channel-major, as Flatten does

    @torch.no_grad()
    def explain(self, xa: torch.Tensor, xb: torch.Tensor) -> PairMaps:
        """Maps of the pairs (xa[k], xb[k]); xa, xb (B, C, H, W) normalised float of the same size."""
        if len(xa) != len(xb):
            raise ConfigError(f"explain: {len(xa)} images a and {len(xb)} images b; give one b for each a")
        if self.readout is not None:
            (ca, grid), (cb, grid_b) = self.contributions(xa), self.contributions(xb)
            self._same_grid(grid, grid_b)
            return self._maps(torch.bmm(ca, cb.transpose(1, 2)), ca.sum(1), cb.sum(1), grid)
        if xa.shape[1:] != xb.shape[1:]:
            raise ConfigError(f"explain: images a are {tuple(xa.shape[1:])} and b {tuple(xb.shape[1:])}; give both at one size")
        fa, fb = self.feature_maps(torch.cat([xa.to(self.device), xb.to(self.device)])).split(len(xa))  # one pass: cheaper
        grid = (fa.shape[-2], fa.shape[-1])
        # c_a,i . c_b,j = F_a,i . F_b,j (P[:, i] . P[:, j]): the N x N dot products weighted by the pooling kernel
        # P^T P, without forming the contributions (D = C p^2 wide for a grid)
        b, c, h, w = fa.shape
        p = pooling_matrix(h, w, self.anatomy.pool, fa.device)
        fa, fb = fa.reshape(b, c, h * w), fb.reshape(b, c, h * w)
        dots = torch.bmm(fa.transpose(1, 2), fb) * (p.T @ p)
        return self._maps(dots, (fa @ p.T).reshape(b, -1), (fb @ p.T).reshape(b, -1), grid)

    @staticmethod
    def _same_grid(grid, grid_b) -> None:
        if grid != grid_b:
            raise ConfigError(f"explain: the images give {grid} and {grid_b} feature grids; give both at the same size")

    def _maps(self, dots: torch.Tensor, ea: torch.Tensor, eb: torch.Tensor, grid: tuple[int, int]) -> PairMaps:
        """PairMaps from the location dot products c_a,i . c_b,j (B, N, N) and the representations (B, D)."""
        na, nb = ea.norm(dim=1).clamp_min(EPS), eb.norm(dim=1).clamp_min(EPS)
        m = dots / (na * nb).view(-1, 1, 1)
        cos = (ea * eb).sum(1) / (na * nb)
        h, w = grid

        def out(t):
            return t.float().cpu().numpy()

        return PairMaps(out(cos), out(m.sum(2).view(-1, h, w)), out(m.sum(1).view(-1, h, w)), out(m), grid, self.anatomy.kind)

    def explain_u8(self, a: torch.Tensor, b: torch.Tensor) -> PairMaps:
        """Maps of uint8 images a, b (B, C, H, W) through ``preprocess``; the images are kept for figures."""
        maps = self.explain(self._pre(a), self._pre(b))
        maps.images_a, maps.images_b = np.asarray(a.cpu()), np.asarray(b.cpu())
        return maps

    def _pre(self, x: torch.Tensor) -> torch.Tensor:
        if self.preprocess is None:
            raise ValueError("this Explainer has no preprocess: give normalised float images to explain()")
        return self.preprocess(x)


def _affine(module: nn.Module, dim: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(W (D, D), b (D,)) of an affine module, read off by applying it to zero and the unit vectors."""
    with torch.no_grad():
        probe = torch.cat([torch.zeros(1, dim, device=device), torch.eye(dim, device=device)]).double()
        out = module(probe).double()
    return (out[1:] - out[:1]).T, out[0]


# ----- the deletion curve -----
@dataclass
class DeletionCurve:
    """fraction (S + 1,) of a's locations masked; ranked, random (B, S + 1): cos(e(a masked), e_b) with the
    locations masked highest map value first, or in a random order."""

    fraction: np.ndarray
    ranked: np.ndarray
    random: np.ndarray

    @staticmethod
    def area(fraction: np.ndarray, sims: np.ndarray) -> float:
        """Area under the mean curve (trapezoids over the masked fraction, 0..1)."""
        y = np.asarray(sims, np.float64).reshape(-1, len(fraction)).mean(0)
        return float(((y[1:] + y[:-1]) / 2 * np.diff(fraction)).sum())

    @property
    def auc(self) -> tuple[float, float]:
        """(ranked, random) areas under the curves averaged over the pairs: the smaller the ranked one against
        the random one, the more the map's order matters to the network."""
        return self.area(self.fraction, self.ranked), self.area(self.fraction, self.random)


def cell_bounds(n: int, size: int) -> np.ndarray:
    """(n + 1,) pixel edges dividing ``size`` pixels into n nearly equal bands (the image region of each row or
    column of the feature grid)."""
    return np.round(np.linspace(0, size, n + 1)).astype(int)


FILLS = ("black", "mean", "blur")


@torch.no_grad()
def deletion_curve(ex: Explainer, xa: torch.Tensor, xb: torch.Tensor, steps: int = 16, seed: int = 0,
                   fill: str = "black", orders: int = 1, chunk: int = 16) -> DeletionCurve:
    """The deletion curve of pairs (xa, xb) (B, C, H, W) normalised: a's locations masked in ``steps`` equal
    groups, in the order of a's map (highest first) and in a random order (one permutation a pair, seeded); b is
    left whole. ``fill``: what a masked region becomes: "black" (pixel value 0, as RISE's deletion removes pixels;
    needs the Explainer's ``preprocess``), "mean" (the dataset mean: zero after normalisation) or "blur" (a
    strongly blurred copy of the image). ``orders``: random orders averaged a pair (one is enough over many pairs;
    a single pair's curve wants several). ``chunk`` pairs at a time go through the network."""
    if fill not in FILLS:
        raise ConfigError(f"deletion fill '{fill}' is not one of {', '.join(FILLS)}")
    if fill == "black" and ex.preprocess is None:
        raise ConfigError("deletion fill 'black' needs the images' preprocessing; use Explainer.for_run or fill='mean'")
    g = np.random.default_rng(seed)
    parts = [_deletion(ex, xa[s : s + chunk], xb[s : s + chunk], steps, g, fill, orders) for s in range(0, len(xa), chunk)]
    return DeletionCurve(parts[0][0], np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]))


def _deletion(ex: Explainer, xa, xb, steps: int, g: np.random.Generator, fill: str, orders: int):
    maps = ex.explain(xa, xb)
    h, w = maps.grid
    n = h * w
    counts = np.round(np.linspace(0, n, max(1, min(steps, n)) + 1)).astype(int)
    eb = F.normalize(ex.represent(xb), dim=1)
    xa = xa.to(eb.device)
    ranked = np.argsort(-maps.map_a.reshape(len(xa), n), axis=1, kind="stable")
    fill_x = _fill(ex, xa, fill)

    def curve(order):
        masked = _masked(xa, order, counts, w, fill_x)  # (B, S + 1, C, H, W)
        e = F.normalize(ex.represent(masked.flatten(0, 1)), dim=1).view(len(xa), len(counts), -1)
        return (e * eb[:, None]).sum(-1).float().cpu().numpy()

    shuffled = [curve(np.stack([g.permutation(n) for _ in range(len(xa))])) for _ in range(max(1, orders))]
    return counts / n, curve(ranked), np.mean(shuffled, axis=0)


def _fill(ex: Explainer, x: torch.Tensor, how: str) -> torch.Tensor:
    """What masked pixels of x (B, C, H, W) normalised become, (B, C, H, W)."""
    if how == "mean":
        return torch.zeros_like(x)
    if how == "black":
        return ex.preprocess(torch.zeros(x.shape, dtype=torch.uint8, device=x.device)).to(x.dtype)
    k = max(3, x.shape[-1] // 4) | 1  # two box blurs a quarter of the image wide
    for _ in range(2):
        x = F.avg_pool2d(x, k, 1, k // 2, count_include_pad=False)
    return x


def _masked(x: torch.Tensor, order: np.ndarray, counts: np.ndarray, w: int, fill: torch.Tensor) -> torch.Tensor:
    """x (B, C, H, W) -> (B, S + 1, C, H, W): step s with the image regions of the first counts[s] locations of
    each pair's ``order`` (B, N) replaced by ``fill``."""
    b, _, hh, ww = x.shape
    h = order.shape[1] // w
    rows, cols = cell_bounds(h, hh), cell_bounds(w, ww)
    cell = (np.searchsorted(rows, np.arange(hh), "right") - 1)[:, None] * w + (np.searchsorted(cols, np.arange(ww), "right") - 1)
    rank = np.argsort(order, axis=1)  # rank[k, i]: when location i of pair k is masked
    pixel_rank = torch.from_numpy(rank[:, cell]).to(x.device)  # (B, H, W)
    steps = torch.as_tensor(counts, device=x.device).view(1, -1, 1, 1)
    keep = (pixel_rank[:, None] >= steps).to(x.dtype)[:, :, None]  # (B, S + 1, 1, H, W)
    return x[:, None] * keep + fill[:, None] * (1 - keep)


# ----- figures (PIL, no plotting library) -----
_TURBO = np.array([[48, 18, 59], [70, 107, 227], [40, 187, 236], [49, 242, 153], [162, 252, 60], [237, 208, 58],
                   [251, 128, 34], [208, 47, 5], [122, 4, 3]], np.float64)
_DIVERGING = np.array([[33, 102, 172], [146, 197, 222], [247, 247, 247], [244, 165, 130], [178, 24, 43]], np.float64)


def colormap(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """values (...) -> RGB (..., 3) uint8: a turbo-like scale from lo to hi, or blue-white-red centred on 0 when lo < 0
    (a read-out's maps can be negative: a location that makes the pair less similar)."""
    table = _DIVERGING if lo < 0 else _TURBO
    if lo < 0:
        hi = max(abs(lo), abs(hi))
        lo = -hi
    t = np.clip((np.asarray(values, np.float64) - lo) / max(hi - lo, EPS), 0, 1) * (len(table) - 1)
    idx = np.minimum(t.astype(int), len(table) - 2)
    frac = (t - idx)[..., None]
    return (table[idx] * (1 - frac) + table[idx + 1] * frac).round().astype(np.uint8)


def to_rgb(img: np.ndarray, size: int) -> np.ndarray:
    """(C, H, W) uint8 -> (size, size, 3) uint8 (grey as RGB, bilinear)."""
    from PIL import Image

    arr = np.asarray(img)
    arr = arr[0] if arr.shape[0] == 1 else arr[:3].transpose(1, 2, 0)
    pil = Image.fromarray(np.ascontiguousarray(arr)).convert("RGB").resize((size, size), Image.BILINEAR)
    return np.asarray(pil)


def overlay(img: np.ndarray, heat: np.ndarray, lo: float, hi: float, alpha: float = 0.7) -> np.ndarray:
    """An image (C, H, W) uint8 under a map (S, S) (upsampled to the side the image is drawn at), coloured from lo to
    hi: (S, S, 3) uint8. The colour's opacity grows with the share (up to ``alpha``), so where a location carries
    little of the similarity the image shows through."""
    size = heat.shape[-1]
    base = to_rgb(img, size).astype(np.float64)
    grey = base.mean(-1, keepdims=True)  # the map's colours over a grey image read better than over colours
    top = max(abs(lo), abs(hi), EPS)
    a = alpha * (0.3 + 0.7 * np.clip(np.abs(heat) / top, 0, 1))[..., None]
    return (grey * (1 - a) + colormap(heat, lo, hi) * a).round().astype(np.uint8)


def map_range(maps: PairMaps, k: int = 0) -> tuple[float, float]:
    """(lo, hi) shared by both maps of pair k, so their colours compare (0 at the bottom unless a map is negative)."""
    both = np.concatenate([maps.map_a[k].ravel(), maps.map_b[k].ravel()])
    return min(0.0, float(both.min())), max(float(both.max()), EPS)


def pair_strip(image_a: np.ndarray, image_b: np.ndarray, maps, k: int, side: int = 64) -> np.ndarray:
    """Pair k's two maps over their images side by side, on one colour scale: (side, 2 * side + 4, 3) uint8."""
    lo, hi = map_range(maps, k)
    up_a, up_b = maps[k].upsampled(side, "a")[0], maps[k].upsampled(side, "b")[0]
    gap = np.full((side, 4, 3), 255, np.uint8)
    return np.concatenate([overlay(image_a, up_a, lo, hi), gap, overlay(image_b, up_b, lo, hi)], axis=1)


def cell_centre(i: int, grid: tuple[int, int], size: int) -> tuple[float, float]:
    """(x, y) pixel centre of location i of the feature grid in an image drawn at ``size``."""
    h, w = grid
    r, c = divmod(i, w)
    return (c + 0.5) * size / w, (r + 0.5) * size / h


LINE_COLOURS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
                (240, 50, 230), (210, 245, 60), (250, 190, 190), (0, 128, 128)]


def render_pair(image_a: np.ndarray, image_b: np.ndarray, maps: PairMaps, k: int = 0, size: int = 224, lines: int = 5,
                title: str = "") -> np.ndarray:
    """A figure (H, W, 3) uint8 of pair k: row 1 both images with the ``lines`` strongest location matches drawn
    between them (numbered, widest = strongest), row 2 both maps over the images on one shared colour scale,
    and a caption with the cosine they explain."""
    from PIL import Image, ImageDraw

    gap, pad, head = 40, 10, 30
    width = 2 * size + gap + 2 * pad
    small = _font(11)
    notes = _wrap(f"{maps.grid[0]}x{maps.grid[1]} locations ({maps.kind}); lines: the strongest matches. {maps.note}",
                  small, width - 2 * pad)
    height = head + 2 * size + pad + 40 + 14 * len(notes)
    canvas = Image.new("RGB", (width, height), "white")
    xa, xb, y1, y2 = pad, pad + size + gap, head, head + size + pad
    canvas.paste(Image.fromarray(to_rgb(image_a, size)), (xa, y1))
    canvas.paste(Image.fromarray(to_rgb(image_b, size)), (xb, y1))
    lo, hi = map_range(maps, k)
    up_a = F.interpolate(torch.from_numpy(maps.map_a[k : k + 1])[:, None], size=(size, size), mode="bilinear",
                         align_corners=False)[0, 0].numpy()
    up_b = F.interpolate(torch.from_numpy(maps.map_b[k : k + 1])[:, None], size=(size, size), mode="bilinear",
                         align_corners=False)[0, 0].numpy()
    canvas.paste(Image.fromarray(overlay(image_a, up_a, lo, hi)), (xa, y2))
    canvas.paste(Image.fromarray(overlay(image_b, up_b, lo, hi)), (xb, y2))
    draw = ImageDraw.Draw(canvas)
    font = _font(13)
    top = maps.top_matches(k, lines)
    strongest = max((abs(v) for *_, v in top), default=1.0) or 1.0
    for n, (i, j, v) in reversed(list(enumerate(top))):  # the strongest drawn last, on top
        (ax, ay), (bx, by) = cell_centre(i, maps.grid, size), cell_centre(j, maps.grid, size)
        colour = LINE_COLOURS[n % len(LINE_COLOURS)]
        p, q = (xa + ax, y1 + ay), (xb + bx, y1 + by)
        draw.line([p, q], fill=colour, width=max(1, round(4 * abs(v) / strongest)))
        for x, y in (p, q):
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], outline=colour, width=2)
        draw.text((p[0] + 5, p[1] - 14), str(n + 1), fill=colour, font=font)
    cos = float(maps.cosine[k])
    draw.text((pad, 8), title or f"cosine {cos:+.4f}: each map sums to it", fill="black", font=_font(15))
    _colour_bar(canvas, draw, (pad, y2 + size + 8, width - pad, y2 + size + 18), lo, hi, font)
    for n, line in enumerate(notes):
        draw.text((pad, height - 14 * (len(notes) - n) - 4), line, fill="#444444", font=small)
    return np.asarray(canvas)


def _colour_bar(canvas, draw, box, lo: float, hi: float, font) -> None:
    from PIL import Image

    x0, y0, x1, y1 = box
    ramp = colormap(np.linspace(lo, hi if lo >= 0 else max(-lo, hi), x1 - x0)[None].repeat(y1 - y0, 0), lo, hi)
    canvas.paste(Image.fromarray(ramp), (x0, y0))
    low = -max(-lo, hi) if lo < 0 else lo
    draw.text((x0, y1 + 1), f"{low:+.3g}", fill="black", font=font)
    text = f"{hi if lo >= 0 else max(-lo, hi):+.3g} (share of the cosine a location carries)"
    draw.text((x1 - draw.textlength(text, font=font), y1 + 1), text, fill="black", font=font)


def _wrap(text: str, font, width: int) -> list[str]:
    """``text`` in lines no wider than ``width`` pixels in ``font``."""
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and font.getlength(trial) > width:
            lines.append(line)
            trial = word
        line = trial
    return lines + ([line] if line else [])


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one fixed size
        return ImageFont.load_default()


# ----- a trained run -----
def run_images(rm, image) -> torch.Tensor:
    """Image(s) for run ``rm`` (``inference.RunModel``) as uint8 (B, C, S, S) at its channels and size: an image
    file's path (decoded as a folder's files are for training), or uint8 (C, H, W) / (B, C, H, W) tensors or
    arrays (converted by the run's preprocessing later)."""
    from pathlib import Path

    from workbench.core.inference import load_image_file

    if isinstance(image, (str, Path)):
        return load_image_file(image, rm.channels, rm.image_size)
    x = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image)
    x = x[None] if x.ndim == 3 else x
    if x.ndim != 4 or x.dtype != torch.uint8:
        raise ConfigError(f"explain: expected an image file or uint8 images (C, H, W) or (B, C, H, W), got "
                          f"{x.dtype} {tuple(x.shape)}")
    return x


def explain_run(rm, a, b, readout: bool = False) -> PairMaps:
    """Maps of run ``rm``'s backbone for a and b (each an image file, or uint8 images: one each, or equal batches)."""
    xa, xb = run_images(rm, a), run_images(rm, b)
    if len(xa) != len(xb):
        raise ConfigError(f"explain: {len(xa)} images a and {len(xb)} images b; give one b for each a")
    return Explainer.for_run(rm, readout).explain_u8(xa, xb)


def deletion_run(rm, a, b, steps: int = 16, seed: int = 0, readout: bool = False, fill: str = "black",
                 orders: int = 1) -> DeletionCurve:
    """The deletion curve (``deletion_curve``) of run ``rm``'s backbone for a and b (as ``explain_run`` takes them)."""
    ex = Explainer.for_run(rm, readout)
    xa, xb = run_images(rm, a), run_images(rm, b)
    if len(xa) != len(xb):
        raise ConfigError(f"deletion curve: {len(xa)} images a and {len(xb)} images b; give one b for each a")
    return deletion_curve(ex, ex.preprocess(xa), ex.preprocess(xb), steps, seed, fill, orders)
