"""Learning methods: what each adds to the network, its after-step updates, its checkpoint state, and
DINO's loss against a dense transcription of the official one (facebookresearch/dino, DINOLoss)."""
import math

import pytest
import torch

from workbench.core.config import Config
from workbench.core.losses import LOSSES, Views
from workbench.core.methods import METHODS, build_method, build_network, default_method
from workbench.core.methods.base import momentum_update
from workbench.core.methods.dino import Prototypes


# ---------------- DINO loss: dense reference ----------------
def ref_dino(student, teacher, center, tau_s, tau_t):
    """DINOLoss of the official code, written out element by element in float64.

    ``student``: list of V (N, K) logits (global views first), ``teacher``: list of 2 (N, K) logits,
    ``center``: (K,). For every teacher view a and student view v != a: the mean over images of
    -sum_k q_a[k] log p_v[k], with q = softmax((t - c) / tau_t) and p = softmax(s / tau_s); averaged over pairs.
    """
    def softmax(row, temp, shift=None):
        vals = [(float(x) - (float(shift[k]) if shift is not None else 0.0)) / temp for k, x in enumerate(row)]
        m = max(vals)
        e = [math.exp(v - m) for v in vals]
        s = sum(e)
        return [x / s for x in e]

    total, pairs = 0.0, 0
    for a, t in enumerate(teacher):
        for v, s in enumerate(student):
            if v == a:
                continue
            per_image = []
            for i in range(len(t)):
                q = softmax(t[i], tau_t, center)
                p = softmax(s[i], tau_s)
                per_image.append(-sum(qk * math.log(pk) for qk, pk in zip(q, p, strict=True)))
            total += sum(per_image) / len(per_image)
            pairs += 1
    return total / pairs


@pytest.mark.parametrize("locals_", [0, 2])
def test_dino_loss_matches_the_official_formula(locals_):
    g = torch.Generator().manual_seed(0)
    n, k = 5, 7
    p1, p2, t1, t2 = (torch.randn(n, k, generator=g) * 3 for _ in range(4))
    crops = tuple(torch.randn(n, k, generator=g) * 3 for _ in range(locals_))
    center = torch.randn(1, k, generator=g)
    loss = LOSSES.build("dino", {"student_temp": 0.1})
    z = torch.randn(2 * n, 4, generator=g)
    out = loss(Views(z[:n], z[n:], p1, p2, t1, t2, crops=crops, center=center, teacher_temp=0.05), report=True)
    ref = ref_dino([p1, p2, *crops], [t1, t2], center[0], 0.1, 0.05)
    assert out.loss.item() == pytest.approx(ref, rel=1e-5)
    # without a centre and a scheduled temperature: centre 0 and the loss's own teacher_temp
    plain = loss(Views(z[:n], z[n:], p1, p2, t1, t2, crops=crops)).loss.item()
    assert plain == pytest.approx(ref_dino([p1, p2, *crops], [t1, t2], torch.zeros(k), 0.1, 0.04), rel=1e-5)
    assert out.similarity.shape == (2 * n, 2 * n) and out.per_sample.shape == (2 * n,)


def test_dino_loss_teaches_only_the_student():
    g = torch.Generator().manual_seed(1)
    p1, p2, t1, t2 = (torch.randn(4, 6, generator=g).requires_grad_(True) for _ in range(4))
    LOSSES.build("dino")(Views(p1, p2, p1, p2, t1, t2)).loss.backward()
    assert p1.grad.abs().sum() > 0 and t1.grad is None and t2.grad is None


def test_dino_teacher_entropy_term_spans_collapse_modes():
    """Uniform teacher logits give entropy log K (one collapse mode); one dominant prototype gives ~0 (the other)."""
    k = 8
    flat = torch.zeros(4, k)
    peaked = torch.zeros(4, k)
    peaked[:, 3] = 10.0
    loss = LOSSES.build("dino")
    assert loss(Views(flat, flat, flat, flat, flat, flat)).terms["teacher_entropy"].item() == pytest.approx(math.log(k), rel=1e-5)
    assert loss(Views(flat, flat, flat, flat, peaked, peaked)).terms["teacher_entropy"].item() < 1e-3


@pytest.mark.parametrize("overrides, needle", [
    (["loss.name=dino", "method.center_momentum=1.0"], "method.center_momentum"),
    (["loss.name=dino", "method.out_dim=1"], "method.out_dim"),
    (["loss.name=dino", "method.local_scale=[0.5, 0.1]"], "method.local_scale"),
    (["loss.name=dino", "loss.teacher_temp=0"], "teacher_temp"),
    (["loss.name=dino", "method.warmup_teacher_temp=0"], "method.warmup_teacher_temp"),
])
def test_bad_dino_settings_are_rejected_by_the_config(overrides, needle):
    from workbench.core.registry import ConfigError

    with pytest.raises(ConfigError, match=needle):
        Config().with_overrides(overrides)


# ---------------- what each method adds ----------------
def cfg_for(loss, *extra):
    return Config().with_overrides([f"loss.name={loss}", "model.head_out=16", "model.head_hidden=32",
                                    "model.predictor_hidden=24", *extra])


@pytest.mark.parametrize("loss", LOSSES.names())
def test_every_loss_has_one_method_and_a_network(loss):
    cfg = cfg_for(loss, "method.queue_size=16") if loss == "moco" else cfg_for(loss)
    method = build_method(cfg)
    assert cfg.method.name == default_method(loss) == (loss if loss in METHODS.names() else "simclr")
    assert type(method) is METHODS.get(cfg.method.name).factory and method.term_names == tuple(method.loss.term_names)
    net = build_network(cfg, 1, 28, method)
    h, z, p = net(torch.randn(4, 1, 28, 28))
    assert z.shape == (4, 16)
    want = {"byol": 16, "simsiam": 16, "dino": cfg.method.params.out_dim if loss == "dino" else 0}.get(loss)
    if want is None:
        assert isinstance(net.predictor, torch.nn.Identity)
    else:
        assert p.shape == (4, want)


def test_momentum_update_is_an_exponential_moving_average():
    online, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    w_t, w_o = target.weight.detach().clone(), online.weight.detach().clone()
    momentum_update(online, target, 0.9)
    assert torch.allclose(target.weight, 0.9 * w_t + 0.1 * w_o)


def test_byol_momentum_rises_to_one_on_a_cosine():
    method = build_method(cfg_for("byol", "method.momentum=0.9"))
    assert method.momentum_at(0.0) == pytest.approx(0.9)
    assert method.momentum_at(0.5) == pytest.approx(0.95)
    assert method.momentum_at(1.0) == pytest.approx(1.0)
    assert build_method(cfg_for("moco", "method.momentum=0.9")).momentum_at(0.7) == 0.9  # MoCo keeps it constant


def dino_setup(*extra):
    from workbench.core.augment import Augmenter

    cfg = cfg_for("dino", "method.out_dim=10", *extra)
    method = build_method(cfg)
    net = build_network(cfg, 1, 28, method)
    method.attach(net, Augmenter(cfg.augment.recipe, [0.5], [0.25]))
    return cfg, method, net


def test_dino_after_step_moves_teacher_and_centre():
    """Centre: c <- m c + (1 - m) mean of the batch's teacher logits; teacher: EMA of the student."""
    _, method, net = dino_setup("method.center_momentum=0.8", "method.momentum=0.5", "method.local_crops=2")
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    crops = method.views(x, g)
    assert [c.shape[-1] for c in crops] == [28, 28, 12, 12]  # two global views, two local crops at 96/224 of the size
    method.center.fill_(0.3)
    views = method(net, crops, None, progress=0.0)
    assert len(views.crops) == 2 and views.p1.shape == (6, 10) and views.t1.shape == (6, 10)
    with torch.no_grad():
        teacher_logits = method.teacher(torch.cat(crops[:2]))[2]
    for p in net.parameters():  # stand-in for an optimiser step
        p.data.add_(1.0)
    before = [p.detach().clone() for p in method.teacher.parameters()]
    method.after_step(net, progress=0.0)
    assert torch.allclose(method.center, 0.8 * 0.3 + 0.2 * teacher_logits.mean(0, keepdim=True), atol=1e-6)
    for t0, t1, s in zip(before, method.teacher.parameters(), net.parameters(), strict=True):
        assert torch.allclose(t1, 0.5 * t0 + 0.5 * s, atol=1e-6)


def test_dino_teacher_temperature_warms_up_linearly():
    _, method, _ = dino_setup("method.warmup_teacher_temp=0.02", "loss.teacher_temp=0.06", "method.warmup_teacher_temp_frac=0.5")
    assert [method.teacher_temp_at(p) for p in (0.0, 0.25, 0.5, 1.0)] == pytest.approx([0.02, 0.04, 0.06, 0.06])


def test_checkpoint_state_round_trips_teacher_and_centre():
    _, a, net = dino_setup()
    a.center.normal_()
    for p in a.teacher.parameters():
        p.data.normal_()
    state = a.checkpoint_state()
    assert set(state) == {"loss", "target", "method"}
    _, b, _ = dino_setup()
    b.load_checkpoint_state(state)
    assert torch.equal(b.center, a.center)
    assert all(torch.equal(x, y) for x, y in zip(a.teacher.state_dict().values(), b.teacher.state_dict().values(), strict=True))


def test_moco_queue_takes_the_keys_after_the_step_first_in_first_out_and_is_checkpointed():
    from workbench.core.augment import Augmenter

    cfg = cfg_for("moco", "method.queue_size=6")
    method = build_method(cfg)
    net = build_network(cfg, 1, 28, method)
    method.attach(net, Augmenter(cfg.augment.recipe, [0.5], [0.25]))
    crops = method.views(torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8), torch.Generator().manual_seed(0))
    views = method(net, crops, None)
    before = method.queue.clone()
    assert torch.equal(views.negatives, before) and before.shape == (6, 16)
    assert torch.allclose(before.norm(dim=1), torch.ones(6))
    out = method.loss(views)
    assert torch.equal(method.queue, before)  # the loss reads the queue, never writes it
    method.after_step(net, progress=0.5)
    k1, k2 = (torch.nn.functional.normalize(t, dim=1) for t in views.t1.chunk(1) + views.t2.chunk(1))
    # 8 keys into a queue of 6: view-1 keys fill slots 0-3, view-2 keys wrap into 4, 5, 0, 1
    assert torch.allclose(method.queue[[4, 5, 0, 1]], k2, atol=1e-6)
    assert torch.allclose(method.queue[[2, 3]], k1[2:], atol=1e-6)
    assert int(method.ptr) == 8 % 6 and torch.isfinite(out.loss)
    state = method.checkpoint_state()
    fresh = build_method(cfg)
    fresh.load_checkpoint_state(state)
    assert torch.equal(fresh.queue, method.queue) and int(fresh.ptr) == 2
    # a checkpoint from before the queue moved to the method kept it in the loss's state
    old = {"loss": {"queue": method.queue.clone(), "ptr": method.ptr.clone()}}
    older = build_method(cfg)
    older.load_checkpoint_state(old)
    assert torch.equal(older.queue, method.queue) and int(older.ptr) == 2


def test_prototypes_are_cosines_to_unit_weights():
    proto = Prototypes(4, 3)
    z = torch.randn(5, 4)
    out = proto(z * 7.0)
    assert out.abs().max() <= 1 + 1e-6 and torch.allclose(out, proto(z), atol=1e-6)


def test_the_loop_inference_and_inspector_never_probe_for_optional_methods():
    """One interface: nothing asks a loss or method what it happens to have."""
    import inspect

    from workbench.core import inference, methods, train

    for mod in (train, inference, methods):
        assert "hasattr(" not in inspect.getsource(mod), mod.__name__


def test_inspector_batch_from_a_checkpoint_uses_the_saved_teacher_and_centre(tmp_path, quick_cfg):
    """No faked momentum targets: the checkpointed teacher and centre feed the loss the inspector reports."""
    import numpy as np

    from workbench.core.inference import RunModel, batch_from_checkpoint
    from workbench.core.runs import load_checkpoint
    from workbench.core.train import train

    cfg = quick_cfg("loss.name=dino", "method.out_dim=32", "train.max_steps=3", "method.momentum=0.5")
    run_dir = list(train(cfg, runs_root=tmp_path))[0].run_dir
    rm = RunModel.load(run_dir)
    state = load_checkpoint(f"{run_dir}/checkpoints/last.pt")
    online = {k: v for k, v in rm.net.state_dict().items() if k.startswith("predictor")}
    assert any(not torch.equal(online[k], state["target"][k]) for k in online)  # the teacher is not the student
    batch = batch_from_checkpoint(rm, n=16)
    assert batch.similarity.shape == (32, 32) and np.isfinite(batch.per_sample).all() and batch.step == -1
