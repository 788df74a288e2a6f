"""Every loss against an independent dense re-implementation and, where one exists, a trusted library."""
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


def full_views(z1, z2, labels=None, seed=1):
    g = torch.Generator().manual_seed(seed)
    return Views(z1, z2, p1=torch.randn(z1.shape, generator=g), p2=torch.randn(z1.shape, generator=g),
                 t1=torch.randn(z1.shape, generator=g), t2=torch.randn(z1.shape, generator=g), labels=labels,
                 negatives=F.normalize(torch.randn(16, z1.shape[1], generator=g), dim=1))


def cos(a, b):
    return float(F.cosine_similarity(a.double()[None], b.double()[None]))


# ---------------- references (plain loops over the formulas) ----------------
def ref_dcl(z1, z2, t, weighted=False, sigma=0.5):
    z = torch.cat([z1, z2]).double()
    n2 = len(z)
    n = n2 // 2
    pos_sims = [cos(z[i], z[i + n]) for i in range(n)]
    mean_e = sum(math.exp(s / sigma) for s in pos_sims) / n
    total = 0
    for i in range(n2):
        p = (i + n) % n2
        w = 2 - math.exp(cos(z[i], z[p]) / sigma) / mean_e if weighted else 1
        total += -w * cos(z[i], z[p]) / t + math.log(sum(math.exp(cos(z[i], z[k]) / t) for k in range(n2) if k not in (i, p)))
    return total / n2


def ref_supcon(z1, z2, labels, t):
    z = torch.cat([z1, z2]).double()
    y = torch.cat([labels, labels])
    total = 0
    for i in range(len(z)):
        den = sum(math.exp(cos(z[i], z[a]) / t) for a in range(len(z)) if a != i)
        ps = [p for p in range(len(z)) if p != i and y[p] == y[i]]
        total += -sum(math.log(math.exp(cos(z[i], z[p]) / t) / den) for p in ps) / len(ps)
    return total / len(z)


def ref_margin(z1, z2, m):
    z1, z2 = F.normalize(z1.double(), dim=1), F.normalize(z2.double(), dim=1)
    n = len(z1)
    terms = []
    for i in range(n):
        terms.append(0.5 * float((z1[i] - z2[i]).norm()) ** 2)
    for i in range(n):
        d = float((z1[i] - z2[(i + n // 2) % n]).norm())
        terms.append(0.5 * max(0.0, m - d) ** 2)
    return sum(terms) / len(terms)


def ref_triplet_all(z, y, m):
    z = F.normalize(z.double(), dim=1)
    vals = []
    for a in range(len(z)):
        for p in range(len(z)):
            for n in range(len(z)):
                if a != p and y[a] == y[p] and y[n] != y[a]:
                    v = float((z[a] - z[p]).norm() - (z[a] - z[n]).norm()) + m
                    if v > 0:
                        vals.append(v)
    return sum(vals) / len(vals)


def ref_triplet_semihard(z, y, m):
    z = F.normalize(z.double(), dim=1)
    d = torch.cdist(z, z)
    vals = []
    for a in range(len(z)):
        for p in range(len(z)):
            if a == p or y[a] != y[p]:
                continue
            negs = [n for n in range(len(z)) if y[n] != y[a]]
            semi = [n for n in negs if d[a, n] > d[a, p]]
            n = min(semi, key=lambda k: d[a, k]) if semi else max(negs, key=lambda k: d[a, k])
            vals.append(max(0.0, float(d[a, p] - d[a, n]) + m))
    return sum(vals) / len(vals)


def ref_barlow(z1, z2, lam):
    z1, z2 = z1.double(), z2.double()
    n, d = z1.shape
    a = (z1 - z1.mean(0)) / torch.sqrt(z1.var(0, unbiased=False) + 1e-5)
    b = (z2 - z2.mean(0)) / torch.sqrt(z2.var(0, unbiased=False) + 1e-5)
    total = 0
    for i in range(d):
        for j in range(d):
            c = float(sum(a[k, i] * b[k, j] for k in range(n)) / n)
            total += (1 - c) ** 2 if i == j else lam * c ** 2
    return total


def ref_vicreg(x, y, sim_coeff=25, std_coeff=25, cov_coeff=1):
    """facebookresearch/vicreg main_vicreg.py VICReg.forward, transcribed (single process, no projector)."""
    x, y = x.double(), y.double()
    batch_size, num_features = x.shape

    def off_diagonal(m):
        n, _ = m.shape
        return m.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()

    repr_loss = F.mse_loss(x, y)
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    std_x = torch.sqrt(x.var(dim=0) + 0.0001)
    std_y = torch.sqrt(y.var(dim=0) + 0.0001)
    std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
    cov_x = (x.T @ x) / (batch_size - 1)
    cov_y = (y.T @ y) / (batch_size - 1)
    cov_loss = off_diagonal(cov_x).pow_(2).sum().div(num_features) + off_diagonal(cov_y).pow_(2).sum().div(num_features)
    return float(sim_coeff * repr_loss + std_coeff * std_loss + cov_coeff * cov_loss)


def ref_moco(q1, q2, k1, k2, queue, t):
    total = 0
    for q, k in list(zip(q1, k2, strict=True)) + list(zip(q2, k1, strict=True)):
        pos = math.exp(cos(q, k) / t)
        neg = sum(math.exp(cos(q, kq) / t) for kq in queue)
        total += -math.log(pos / (pos + neg))
    return total / (2 * len(q1))


# ---------------- value checks ----------------
@pytest.mark.parametrize("weighted", [False, True])
def test_dcl_matches_reference(weighted):
    z1, z2 = rand()
    name = "dclw" if weighted else "dcl"
    out = LOSSES.build(name, {"temperature": 0.2})(Views(z1, z2))
    assert out.loss.item() == pytest.approx(ref_dcl(z1, z2, 0.2, weighted), rel=1e-5)


def test_supcon_matches_reference_and_reduces_to_ntxent_without_labels():
    z1, z2 = rand(10)
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 2, 2, 1, 0])
    loss = LOSSES.build("supcon", {"temperature": 0.3})
    assert loss(Views(z1, z2, labels=labels)).loss.item() == pytest.approx(ref_supcon(z1, z2, labels, 0.3), rel=1e-5)
    unlabeled = torch.full((10,), -1)
    ntx = LOSSES.build("ntxent", {"temperature": 0.3})(Views(z1, z2)).loss
    assert loss(Views(z1, z2, labels=unlabeled)).loss.item() == pytest.approx(ntx.item(), rel=1e-5)


def test_supcon_matches_pytorch_metric_learning():
    pml = pytest.importorskip("pytorch_metric_learning.losses")
    z1, z2 = rand(12)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 3, 3, 0])
    ours = LOSSES.build("supcon", {"temperature": 0.1})(Views(z1, z2, labels=labels)).loss
    ref = pml.SupConLoss(temperature=0.1)(torch.cat([z1, z2]), torch.cat([labels, labels]))
    assert ours.item() == pytest.approx(ref.item(), rel=1e-4)


def test_ntxent_matches_pytorch_metric_learning():
    pml = pytest.importorskip("pytorch_metric_learning.losses")
    z1, z2 = rand(9)
    ours = LOSSES.build("ntxent", {"temperature": 0.25})(Views(z1, z2)).loss
    ids = torch.arange(9)
    ref = pml.NTXentLoss(temperature=0.25)(torch.cat([z1, z2]), torch.cat([ids, ids]))
    assert ours.item() == pytest.approx(ref.item(), rel=1e-4)


def test_margin_contrastive_matches_reference_and_hand_value():
    z1, z2 = rand(8)
    out = LOSSES.build("margin_contrastive", {"margin": 1.0})(Views(z1, z2))
    assert out.loss.item() == pytest.approx(ref_margin(z1, z2, 1.0), rel=1e-5)
    # hand value: identical positives (d=0), negatives orthogonal unit vectors (d=sqrt 2 > margin 1): loss 0
    e = torch.eye(4)
    assert LOSSES.build("margin_contrastive", {"margin": 1.0})(Views(e, e)).loss.item() == pytest.approx(0.0, abs=1e-6)
    # margin 2: each negative pays 0.5 * (2 - sqrt 2)^2, half the pairs are negatives
    out = LOSSES.build("margin_contrastive", {"margin": 2.0})(Views(e, e))
    assert out.loss.item() == pytest.approx(0.25 * (2 - math.sqrt(2)) ** 2, rel=1e-5)


def test_margin_contrastive_equals_hinge_embedding_on_squared_distances():
    # Hadsell's positive term is HingeEmbeddingLoss's y=1 branch on d^2/2
    z1, z2 = rand(6)
    a, b = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    d = (a - b).norm(dim=1)
    ref_pos = torch.nn.HingeEmbeddingLoss(reduction="none")(0.5 * d ** 2, torch.ones(6))
    out = LOSSES.build("margin_contrastive", {"margin": 1.0})(Views(z1, z2), report=True)
    assert torch.allclose(out.per_sample[:6], ref_pos, atol=1e-6)


def test_triplet_batch_hard_matches_torch_triplet_margin_loss_on_mined_triplets():
    z1, z2 = rand(6)
    out = LOSSES.build("triplet", {"margin": 0.3, "mining": "batch_hard"})(Views(z1, z2), report=True)
    t = out.mined["triplets"]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    ref = torch.nn.TripletMarginLoss(margin=0.3, eps=0)(z[t[:, 0]], z[t[:, 1]], z[t[:, 2]])
    assert out.loss.item() == pytest.approx(ref.item(), rel=1e-4)
    d = torch.cdist(z, z)
    for a, p, n in t.tolist():
        assert p == (a + 6) % 12  # the only positive is the other view
        negs = [k for k in range(12) if k not in (a, p)]
        assert d[a, n] == pytest.approx(min(d[a, k] for k in negs).item(), abs=1e-5)


def test_triplet_batch_all_and_semi_hard_match_references():
    z1, z2 = rand(5)
    y = torch.cat([torch.arange(5), torch.arange(5)])
    z = torch.cat([z1, z2])
    ba = LOSSES.build("triplet", {"margin": 0.5, "mining": "batch_all"})(Views(z1, z2)).loss
    assert ba.item() == pytest.approx(ref_triplet_all(z, y, 0.5), rel=1e-5)
    sh = LOSSES.build("triplet", {"margin": 0.5, "mining": "semi_hard"})(Views(z1, z2)).loss
    assert sh.item() == pytest.approx(ref_triplet_semihard(z, y, 0.5), rel=1e-5)


def test_triplet_batch_hard_matches_pytorch_metric_learning_with_labels():
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning import losses, miners

    z1, z2 = rand(8)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    ours = LOSSES.build("triplet", {"margin": 0.2, "mining": "batch_hard", "use_labels": True})(Views(z1, z2, labels=labels)).loss
    emb, lab = torch.cat([z1, z2]), torch.cat([labels, labels])
    miner = miners.BatchHardMiner()
    from pytorch_metric_learning.reducers import MeanReducer

    loss = losses.TripletMarginLoss(margin=0.2, reducer=MeanReducer())
    ref = loss(emb, lab, miner(emb, lab))
    assert ours.item() == pytest.approx(ref.item(), rel=1e-3)


def test_barlow_and_vicreg_match_references():
    z1, z2 = rand(7, 4)
    z2 = z2 * 0.3  # a view with standard deviation under 1 in every dimension: the variance hinge is active
    bt = LOSSES.build("barlow_twins", {"lambda_offdiag": 0.05})(Views(z1, z2))
    assert bt.loss.item() == pytest.approx(ref_barlow(z1, z2, 0.05), rel=1e-4)
    vr = LOSSES.build("vicreg")(Views(z1, z2))
    assert vr.loss.item() == pytest.approx(ref_vicreg(z1, z2), rel=1e-4)
    assert set(vr.terms) == {"invariance", "variance", "covariance"}


def test_byol_and_simsiam_match_formulas():
    z1, z2 = rand(6)
    v = full_views(z1, z2)
    byol = LOSSES.build("byol")(v).loss.item()

    def regression_loss(x, y):  # deepmind-research byol/byol_experiment.py, transcribed from JAX
        def l2_normalize(a, eps=1e-12):
            return a * torch.rsqrt(torch.clamp((a.double() ** 2).sum(-1, keepdim=True), min=eps))
        return ((l2_normalize(x) - l2_normalize(y)) ** 2).sum(-1)

    ref = (regression_loss(v.p1, v.t2) + regression_loss(v.p2, v.t1)).mean().item()
    assert byol == pytest.approx(ref, rel=1e-5)
    sims = LOSSES.build("simsiam")(v).loss.item()
    ref = sum(-cos(v.p1[i], z2[i]) / 2 - cos(v.p2[i], z1[i]) / 2 for i in range(6)) / 6
    assert sims == pytest.approx(ref, rel=1e-5)
    # identical predictions and targets: the minimum
    same = Views(z1, z1, p1=z1, p2=z1, t1=z1, t2=z1)
    assert LOSSES.build("byol")(same).loss.item() == pytest.approx(0, abs=1e-5)
    assert LOSSES.build("simsiam")(same).loss.item() == pytest.approx(-1, abs=1e-5)


def test_moco_matches_reference():
    z1, z2 = rand(4)
    v = full_views(z1, z2)
    out = LOSSES.build("moco", {"temperature": 0.2})(v)
    assert out.loss.item() == pytest.approx(ref_moco(z1, z2, v.t1, v.t2, v.negatives, 0.2), rel=1e-5)
    with pytest.raises(ValueError, match="queue"):
        LOSSES.build("moco")(Views(z1, z2, t1=z1, t2=z2))


# ---------------- robustness ----------------
EDGE = {
    "duplicates": lambda: (torch.ones(8, 1) * torch.randn(1, 6), torch.ones(8, 1) * torch.randn(1, 6)),
    "all_equal": lambda: (torch.ones(8, 6), torch.ones(8, 6)),
    "zeros": lambda: (torch.zeros(8, 6), torch.zeros(8, 6)),
    "random": lambda: rand(8),
}


@pytest.mark.parametrize("name", LOSSES.names())
@pytest.mark.parametrize("case", list(EDGE))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_gradients_are_finite(name, case, dtype):
    torch.manual_seed(0)
    z1, z2 = EDGE[case]()
    z1 = z1.to(dtype).requires_grad_(True)
    z2 = z2.to(dtype).requires_grad_(True)
    labels = torch.zeros(8, dtype=torch.long)  # one class in the batch
    labels[0] = 1
    loss = LOSSES.build(name)
    v = Views(z1, z2, p1=z1 * 1.5, p2=z2 * 0.5, t1=z1.detach().float(), t2=z2.detach().float(), labels=labels,
              negatives=F.normalize(torch.randn(16, 6), dim=1))
    out = loss(v, report=True)
    assert torch.isfinite(out.loss), (name, case)
    out.loss.backward()
    assert torch.isfinite(z1.grad.float()).all() and torch.isfinite(z2.grad.float()).all()
    assert out.similarity.shape == (16, 16) and out.per_sample.shape[0] >= 16 and out.hardest_negative.shape == (16,)


@pytest.mark.parametrize("t", [1e-3, 10.0])
@pytest.mark.parametrize("name", ["ntxent", "dcl", "supcon", "moco"])
def test_temperature_at_its_bounds_is_finite(name, t):
    z1, z2 = rand(8)
    z1.requires_grad_(True)
    out = LOSSES.build(name, {"temperature": t})(full_views(z1, z2, labels=torch.arange(8) % 3))
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(z1.grad).all()


def test_reporting_costs_nothing_unless_asked():
    z1, z2 = rand(8)
    for name in LOSSES.names():
        out = LOSSES.build(name)(full_views(z1, z2, labels=torch.arange(8) % 2))
        assert out.similarity is None and out.per_sample is None and out.hardest_negative is None


def test_hardest_negative_is_the_most_similar_non_positive_for_every_loss():
    z1, z2 = rand(6)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T
    for name in LOSSES.names():
        out = LOSSES.build(name)(full_views(z1, z2, labels=torch.arange(6)), report=True)
        for i in range(12):
            cand = [k for k in range(12) if k not in (i, out.positive[i].item())]
            best = max(cand, key=lambda k: sim[i, k].item())
            assert sim[i, out.hardest_negative[i]].item() == pytest.approx(sim[i, best].item(), abs=1e-5), name


# ---------------- bad input before training ----------------
@pytest.mark.parametrize("overrides, needle", [
    (["loss.name=margin_contrastive", "loss.margin=0"], "margin must be > 0"),
    (["loss.name=triplet", "loss.margin=-1"], "margin must be > 0"),
    (["loss.name=triplet", "loss.mining=hardest"], "loss.mining: choose from: batch_all, batch_hard, semi_hard; got .hardest."),
    (["loss.similarity=cosin"], "loss.similarity: choose from: cosine, dot; got .cosin."),
    (["loss.name=margin_contrastive", "train.batch_size=63"], "even batch size"),
    (["loss.name=moco", "method.momentum=1.5"], r"method.momentum: must be in \[0, 1\), got 1.5"),
    (["loss.name=moco", "loss.momentum=1.5"], "method.momentum"),  # the spelling from before [method]
    (["loss.learnable_temperature=true", "loss.temperature=2.0"], r"learnable temperature must start inside \(0.01, 1\), got 2.0"),
])
def test_bad_loss_settings_are_rejected_by_the_config(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        Config().with_overrides(overrides)


def test_label_loss_on_unlabeled_data_and_oversized_queue_fail_before_training(tmp_path):
    from PIL import Image

    from workbench.core.setup import prepare

    for i in range(40):
        Image.new("L", (12, 12), i * 5).save(tmp_path / f"{i}.png")
    cfg = Config().with_overrides(["data.name=image_folder", f"data.root={tmp_path}", "loss.name=supcon", "train.batch_size=8"])
    with pytest.raises(ConfigError, match="needs labels"):
        prepare(cfg)
    cfg = Config().with_overrides(["loss.name=moco", "method.queue_size=65536"])
    with pytest.raises(ConfigError, match="method.queue_size: 65536 is larger than"):
        prepare(cfg)
