import math
import re
import threading

import numpy as np
import pytest
import torch

from workbench.core.events import (CheckpointEvent, DoneEvent, EmbeddingEvent, ErrorEvent, EvalEvent, EvalProgressEvent,
                                   PausedEvent, RunStarted, StepEvent, WarningEvent)
from workbench.core.registry import ConfigError
from workbench.core.runfolder import read_status
from workbench.core.runs import load_checkpoint, read_metrics
from workbench.core.config import Config
from workbench.core.control import Control
from workbench.core.evaluation import evaluate
from workbench.core.setup import prepare
from workbench.core.train import forward_views, make_views, train
from tests.core.fakes import FakeClock, RecordingSink, evaluations_taking


def run_all(cfg, control=None, **kw):
    return list(train(cfg, control, **kw))


@pytest.mark.slow
def test_short_training_on_real_data_lowers_loss_and_beats_untrained_encoder(tmp_path, quick_cfg):
    cfg = quick_cfg("data.subset=8192", "train.batch_size=128", "train.epochs=4", "loss.temperature=0.2",
                    "eval.bank_size=8192", "eval.test_size=1000", "optim.lr=0.002", "eval.readout=whitened")
    untrained, _ = evaluate(prepare(cfg))
    events = run_all(cfg, runs_root=tmp_path)
    losses = [e.loss for e in events if isinstance(e, StepEvent)]
    evals = [e.metrics for e in events if isinstance(e, EvalEvent)]
    assert isinstance(events[-1], DoneEvent) and events[-1].reason == "finished"
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5
    # the untrained 4x4x128 grid already keeps much of the pixels (0.838 whitened here): 4 epochs of 8,192 images
    # add 0.016 whitened; the field's kNN (no read-out) reads lower on this short run (0.830)
    assert evals[-1]["knn_acc"] > untrained["knn_acc"] + 0.01
    assert evals[-1]["knn_acc_readout"] > untrained["knn_acc_readout"] + 0.01
    assert evals[-1]["knn_acc_readout"] > 0.84
    assert evals[-1]["knn_acc"] > 0.80
    run = events[0].run_dir
    rows = read_metrics(run)
    assert any(r["knn_acc"] is not None for r in rows) and any(r["loss"] is not None for r in rows)
    assert (tmp_path / run.split("/")[-1] / "config.toml").is_file()


def test_events_are_plain_data(tmp_path, quick_cfg):
    events = run_all(quick_cfg(), runs_root=tmp_path)
    kinds = [type(e) for e in events]
    assert kinds[0] is RunStarted and kinds[-1] is DoneEvent
    for k in (StepEvent, EvalEvent, EmbeddingEvent, CheckpointEvent):
        assert k in kinds
    emb = next(e for e in events if isinstance(e, EmbeddingEvent))
    assert emb.xy.shape == (200, 2) and emb.xy.dtype == np.float32 and emb.labels.shape == (200,)
    for e in events:
        for v in vars(e).values():
            assert not isinstance(v, torch.Tensor)


def test_seeded_cpu_runs_repeat(tmp_path, quick_cfg):
    cfg = quick_cfg("train.max_steps=6", "train.log_every=1")
    a = [e.loss for e in run_all(cfg, runs_root=tmp_path / "a") if isinstance(e, StepEvent)]
    b = [e.loss for e in run_all(cfg, runs_root=tmp_path / "b") if isinstance(e, StepEvent)]
    assert a == b and len(a) == 6


def test_stop_then_resume_continues_the_same_run(tmp_path, quick_cfg):
    cfg = quick_cfg("train.epochs=2", "train.log_every=1")
    straight = [e.loss for e in run_all(cfg, runs_root=tmp_path / "straight") if isinstance(e, StepEvent)]
    control = Control()
    first = []
    run_dir = None
    for ev in train(cfg, control, runs_root=tmp_path / "split"):
        if isinstance(ev, RunStarted):
            run_dir = ev.run_dir
        if isinstance(ev, StepEvent):
            first.append(ev.loss)
            if ev.step == 21:  # mid-way through the second epoch (16 steps an epoch)
                control.stop()
        last = ev
    assert isinstance(last, DoneEvent) and last.reason == "stopped"
    assert load_checkpoint(f"{run_dir}/checkpoints/last.pt")["step"] == 21
    rest = [e.loss for e in train(None, runs_root=tmp_path, resume=run_dir) if isinstance(e, StepEvent)]
    assert len(first) + len(rest) == len(straight)
    np.testing.assert_allclose(first + rest, straight, rtol=1e-4)


def test_pause_blocks_between_steps_until_resumed(tmp_path, quick_cfg):
    control = Control()
    seen = []
    gen = train(quick_cfg("train.log_every=1", "train.max_steps=6"), control, runs_root=tmp_path)
    for ev in gen:
        seen.append(ev)
        if isinstance(ev, StepEvent) and ev.step == 2:
            control.pause()
            threading.Timer(0.3, control.resume).start()
    steps = [e.step for e in seen if isinstance(e, StepEvent)]
    pauses = [e for e in seen if isinstance(e, PausedEvent)]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert [p.paused for p in pauses] == [True, False] and pauses[0].step == 2


def test_nan_loss_ends_with_a_clear_error(tmp_path, quick_cfg, monkeypatch):
    """A loss that turns NaN at step 3 (between log steps) stops the run at the next log step, naming step 3."""
    from workbench.core.losses.ntxent import NTXent

    calls = []
    real = NTXent.forward

    def poisoned(self, views, report=False):
        calls.append(1)
        out = real(self, views, report)
        out.loss = out.loss * float("nan") if len(calls) >= 3 else out.loss
        return out

    monkeypatch.setattr(NTXent, "forward", poisoned)
    events = run_all(quick_cfg("train.log_every=4", "train.max_steps=8"), runs_root=tmp_path)
    assert isinstance(events[-1], ErrorEvent) and "lower optim.lr" in events[-1].message
    assert "step 3" in events[-1].message and events[-1].traceback
    assert [e.step for e in events if isinstance(e, StepEvent)] == [1]  # step 1 is logged; nothing after the NaN
    status = read_status(events[0].run_dir)  # the runs table reads it, whichever client trained
    assert status["state"] == "failed" and "lower optim.lr" in status["message"]


def test_the_run_records_its_state_and_a_later_failed_export_does_not_change_it(tmp_path, quick_cfg):
    from pathlib import Path

    from workbench.core.history import run_summary

    events = run_all(quick_cfg("train.max_steps=3"), runs_root=tmp_path)
    run = Path(events[0].run_dir)
    assert (read_status(run)["state"], read_status(run)["step"]) == ("finished", 3)
    with open(run / "run.log", "a", encoding="utf-8") as log:  # what an export into a read-only folder leaves
        log.write("2026-11-24 05:00:00 ERROR workbench export: [Errno 13] cannot write 'x.onnx': Permission denied\n")
    assert run_summary(run)["status"] == "finished"


def test_setup_errors_raise_before_training(tmp_path, quick_cfg):
    with pytest.raises(ConfigError, match="larger than the") as err:
        run_all(quick_cfg("train.batch_size=2048"), runs_root=tmp_path)
    assert not any(tmp_path.iterdir())
    found = re.search(r"the (\d+) training images; lower it \(e\.g\. (\d+): (\d+) steps an epoch", str(err.value))
    assert found, str(err.value)  # the message names a batch size that fits, and the epoch it makes
    n, batch, steps = map(int, found.groups())
    assert batch * steps <= n < batch * (steps + 1)
    events = run_all(quick_cfg(f"train.batch_size={batch}", "train.max_steps=1"), runs_root=tmp_path)
    assert isinstance(events[-1], DoneEvent)


def test_corrupt_checkpoint_gives_a_clear_message(tmp_path, quick_cfg):
    events = run_all(quick_cfg("train.max_steps=2"), runs_root=tmp_path)
    ckpt = f"{events[0].run_dir}/checkpoints/last.pt"
    from pathlib import Path

    data = Path(ckpt).read_bytes()
    Path(ckpt).write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match="corrupted or truncated"):
        run_all(None, runs_root=tmp_path, resume=events[0].run_dir)


def test_checkpoint_that_does_not_fit_its_config_gives_a_clear_message(tmp_path, quick_cfg):
    from pathlib import Path

    from workbench.core.inference import RunModel

    events = run_all(quick_cfg("train.max_steps=2"), runs_root=tmp_path)
    run = Path(events[0].run_dir)
    ckpt = (run / "checkpoints" / "last.pt").read_bytes()
    cfg_file = run / "config.toml"
    cfg_file.write_text(cfg_file.read_text().replace("width = 32", "width = 16"))
    with pytest.raises(ConfigError, match="model.width was changed from 32 to 16 in config.toml.*restore config.toml"):
        run_all(None, runs_root=tmp_path, resume=run)
    with pytest.raises(ConfigError, match="cannot embed .*: model.width was changed from 32 to 16 in config.toml"):
        RunModel.load(run)  # the same words as resume (and export)
    assert (run / "checkpoints" / "last.pt").read_bytes() == ckpt  # nothing saved is lost


@pytest.mark.parametrize("loss", ["ntxent", "dcl", "dclw", "supcon", "margin_contrastive", "triplet", "moco", "byol",
                                  "simsiam", "barlow_twins", "vicreg", "dino"])
def test_every_loss_trains_in_the_loop_and_reports_a_batch(tmp_path, quick_cfg, loss):
    extra = ["loss.queue_size=256"] if loss == "moco" else []
    control = Control()
    control.request_batch()
    events = run_all(quick_cfg(f"loss.name={loss}", "train.max_steps=4", "train.log_every=2", *extra), control, runs_root=tmp_path)
    assert isinstance(events[-1], DoneEvent), events[-1]
    batch = next(e for e in events if type(e).__name__ == "BatchEvent")
    assert batch.similarity.shape == (128, 128) and batch.views1.dtype == np.uint8
    assert batch.views1.shape == (64, 1, 28, 28)
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert all(np.isfinite(e.loss) for e in steps) and set(steps[0].terms)


def test_collapse_is_reported(tmp_path, quick_cfg):
    # SimSiam without its predictor's asymmetry collapses fast at a huge learning rate; the eval must say so
    from workbench.core.metrics import collapse_warning, effective_rank, embedding_std

    z = torch.ones(100, 32) + 1e-6 * torch.randn(100, 32)
    assert collapse_warning(embedding_std(z), effective_rank(z), 32) is not None
    assert collapse_warning(embedding_std(torch.randn(100, 32)), effective_rank(torch.randn(100, 32)), 32) is None
    two = torch.randn(2, 32)  # two healthy points have effective rank 1: too few to tell
    assert effective_rank(two) < 1.5 and collapse_warning(embedding_std(two), effective_rank(two), 32, n=2) is None


def test_no_collapse_warning_from_two_held_out_images(tmp_path, quick_cfg):
    """Two held-out embeddings always have effective rank 1: a run evaluated on two says nothing of collapse."""
    from workbench.core.events import WarningEvent

    events = run_all(quick_cfg("eval.test_size=2"), runs_root=tmp_path)
    assert [e for e in events if isinstance(e, EvalEvent)][-1].metrics["eff_rank"] < 1.5
    assert not [e for e in events if isinstance(e, WarningEvent) and "collapse" in e.message]


def test_triplet_batch_event_carries_the_mined_triplets(tmp_path, quick_cfg):
    control = Control()
    control.request_batch()
    events = run_all(quick_cfg("loss.name=triplet", "train.max_steps=2"), control, runs_root=tmp_path)
    batch = next(e for e in events if type(e).__name__ == "BatchEvent")
    t = batch.mined["triplets"]
    assert t.shape == (128, 3)
    sim = batch.similarity
    for a, p, n in t[:20]:
        assert p == (a + 64) % 128  # the other view is the only positive
        others = [c for c in range(128) if c not in (a, p)]
        assert sim[a, n] == max(sim[a, c] for c in others)  # batch-hard = most similar negative


def test_channels_last_is_a_layout_choice_not_a_numerical_one(quick_cfg):
    """The same seeded first step gives the same loss and gradients in NCHW and NHWC."""
    results = []
    for cl in ("true", "false"):
        s = prepare(quick_cfg(f"train.channels_last={cl}", "loss.temperature=0.5"))
        g = torch.Generator().manual_seed(0)
        idx = torch.arange(32)
        crops = make_views(s, s.train.images[idx], g)
        out = s.loss(forward_views(s, crops, s.train.labels[idx]))
        out.loss.backward()
        conv = s.net.encoder.features[3].weight
        assert conv.is_contiguous(memory_format=torch.channels_last) == (cl == "true")
        results.append((out.loss.item(), conv.grad.clone()))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    a, b = results[0][1], results[1][1]  # each layout its own kernels: on AVX-512 CPUs oneDNN's differ by ~0.5%
    assert (a - b).abs().max() <= 1e-2 * a.abs().max()


def test_cpu_training_flushes_denormals(quick_cfg):
    """Denormal floats (below 1.2e-38) slow CPU kernels as training settles; the engine flushes them to zero."""
    torch.set_flush_denormal(False)
    assert (torch.tensor([1e-39]) * 0.5).item() > 0
    prepare(quick_cfg())
    assert (torch.tensor([1e-39]) * 0.5).item() == 0.0


def test_small_cnn_output_size():
    """small_cnn: (B, C, H, W) -> (B, 4 * width * pool**2) for any input size; pool=1 is global average pooling."""
    from workbench.core.models import ENCODERS

    x = torch.randn(3, 1, 28, 28)
    for width, pool in ((32, 2), (16, 1), (8, 3)):
        enc = ENCODERS.build("small_cnn", {"width": width, "pool": pool}, in_channels=1, image_size=28)
        assert enc(x).shape == (3, 4 * width * pool * pool) and enc.out_dim == 4 * width * pool * pool
    assert ENCODERS.build("small_cnn", {}, in_channels=3, image_size=96)(torch.randn(2, 3, 96, 96)).shape == (2, 2048)
    with pytest.raises(ValueError, match="pool"):
        ENCODERS.build("small_cnn", {"pool": 0}, in_channels=1, image_size=28)


@pytest.mark.parametrize("side", [4, 7, 2])
def test_grid_pool_matches_torch_adaptive_pooling(side):
    """small_cnn's pool passes 4x4 maps through untouched and pools any other size exactly as torch does,
    forward and backward, in either memory format."""
    from workbench.core.models import GridPool

    x = torch.randn(3, 5, side, side).contiguous(memory_format=torch.channels_last).requires_grad_()
    ref = x.detach().clone().requires_grad_()
    got, want = GridPool(4)(x), torch.nn.AdaptiveAvgPool2d(4)(ref)
    w = torch.randn_like(want)
    (got * w).sum().backward()
    (want * w).sum().backward()
    assert got.shape == (3, 5, 4, 4) and torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(x.grad, ref.grad, atol=1e-6)
    assert (got is x) == (side == 4)


def test_readout_whitens_as_an_svd_of_the_training_representations_does_and_leaves_training_alone():
    """Readout.fit(h): (h - mean) V diag((lambda + eps lambda_max)^-1/2), with V and lambda taken here from an SVD of
    the centred data (an independent route to the eigendecomposition); compared through Gram matrices, which a
    sign flip of a direction leaves as they are. The head still sees the raw representation, and a checkpoint
    saved without a read-out loads strictly as the identity."""
    from workbench.core.methods import build_network
    from workbench.core.models import Readout

    g = torch.Generator().manual_seed(0)
    h = torch.rand(600, 40, generator=g) @ torch.rand(40, 40, generator=g) + 3  # correlated, all positive
    r = Readout(40)
    assert r.fit(h) == "whitened"
    x = (h - h.mean(0)).double()
    _, sv, vt = torch.linalg.svd(x, full_matrices=False)
    lam = sv ** 2 / (len(x) - 1)
    want = x @ vt.T * (lam + Readout.EPS * lam.max()).rsqrt()
    got = r(h).double()
    assert torch.allclose(got @ got.T, want @ want.T, atol=1e-4 * float((want @ want.T).abs().max()))  # float32 against float64
    shrunk = (lam / (lam + Readout.EPS * lam.max())).sort().values  # each direction's variance after whitening
    assert got.mean(0).abs().max() < 1e-4 and torch.allclose(got.var(0).sort().values, shrunk, atol=1e-4)

    net = build_network(Config(), 1, 28).eval()
    images = torch.rand(64, 1, 28, 28, generator=g)
    with torch.no_grad():
        before = net(images)
        net.readout.fit(before[0])
        after = net(images)
    assert torch.equal(after[0], before[0]) and torch.equal(after[1], before[1])  # h raw, z as it was
    old = {k: v for k, v in net.state_dict().items() if not k.startswith("readout.")}  # as saved before the read-out
    fresh = build_network(Config(), 1, 28)
    fresh.load_state_dict(old)  # strict
    assert torch.equal(fresh.readout.weight, torch.eye(2048)) and not fresh.readout.bias.any()


def test_the_reported_knn_is_the_fields_protocol_on_the_saved_backbone_and_a_read_out_is_reported_beside_it(tmp_path, quick_cfg):
    """The headline kNN is plain cosine kNN on the saved encoder's own output (no read-out fitted or applied);
    with eval.readout = whitened the read-out's kNN is reported beside it, from the whitening saved in last.pt
    (rewritten in place after the final evaluation; prev.pt stays the epoch before)."""
    from workbench.core.inference import RunModel
    from workbench.core.metrics import knn_accuracy
    from workbench.core.runs import load_checkpoint

    for readout in ("none", "whitened"):
        events = run_all(quick_cfg("train.epochs=2", f"eval.readout={readout}"), runs_root=tmp_path / readout)
        reported = [e for e in events if isinstance(e, EvalEvent)][-1].metrics
        rm = RunModel.load(events[0].run_dir)
        train_split, test_split = rm.splits()
        test_split = test_split.take(torch.arange(500))
        bank, query = (torch.from_numpy(rm.embed(d.images)) for d in (train_split, test_split))
        assert bank.min() >= 0  # the backbone's pooled ReLU maps: nothing centred them
        assert knn_accuracy(bank, train_split.labels, query, test_split.labels) == pytest.approx(reported["knn_acc"], abs=0.002)
        fitted = not torch.equal(rm.net.readout.weight, torch.eye(len(rm.net.readout.bias)))
        assert fitted == (readout == "whitened") and ("knn_acc_readout" in reported) == fitted
        if fitted:
            bank, query = (torch.from_numpy(rm.embed(d.images, readout=True)) for d in (train_split, test_split))
            assert bank.mean(0).abs().max() < 1e-3 * bank.abs().mean()  # centred on the training images
            assert knn_accuracy(bank, train_split.labels, query, test_split.labels) == pytest.approx(reported["knn_acc_readout"], abs=0.002)
            ckpt = rm.run_dir / "checkpoints"
            assert load_checkpoint(ckpt / "prev.pt")["step"] < load_checkpoint(ckpt / "last.pt")["step"]


def test_head_hidden_auto_fits_the_encoder_and_is_written_out(tmp_path, quick_cfg):
    """model.head_hidden = 0 (the default): 256 for small_cnn's 2048-d grid, the representation's size for a
    ResNet (SimCLR's convention); a number given is kept; config.toml records what was built."""
    from workbench.core.methods import build_network

    def hidden(*sets):
        return build_network(Config().with_overrides(list(sets)), 3, 32).head[0].out_features

    assert Config().model.head_hidden == 0
    assert hidden() == 256 and hidden("model.encoder=resnet18_cifar") == 512 and hidden("model.head_hidden=64") == 64
    events = run_all(quick_cfg("train.max_steps=1"), runs_root=tmp_path)
    assert events[0].config["model"]["head_hidden"] == 256


def test_small_cnn_stages_and_depth():
    """stages doubles the width per stride-2 stage; depth adds stride-1 blocks at the last stage only."""
    from workbench.core.models import ENCODERS

    x = torch.randn(2, 3, 32, 32)
    enc = ENCODERS.build("small_cnn", {"width": 8, "stages": 4, "depth": 3, "pool": 1}, in_channels=3, image_size=32)
    assert enc(x).shape == (2, 64) and enc.out_dim == 64
    convs = [m for m in enc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride[0]) for c in convs] == [
        (3, 8, 2), (8, 16, 2), (16, 32, 2), (32, 64, 2), (64, 64, 1), (64, 64, 1)]
    assert enc.features[:-2](x).shape == (2, 64, 2, 2)  # 32 -> 16 -> 8 -> 4 -> 2; the stride-1 blocks keep 2x2
    with pytest.raises(ValueError, match="depth"):
        ENCODERS.build("small_cnn", {"depth": 0}, in_channels=3, image_size=32)


def test_dino_with_local_crops_stops_and_resumes_exactly(tmp_path, quick_cfg):
    """The centre, the teacher and the multi-crop random stream survive a stop and resume bit for bit."""
    cfg = quick_cfg("loss.name=dino", "loss.out_dim=64", "loss.local_crops=2", "train.max_steps=6", "train.log_every=1")
    straight = [e.loss for e in run_all(cfg, runs_root=tmp_path / "a") if isinstance(e, StepEvent)]
    control, first, run_dir = Control(), [], None
    for ev in train(cfg, control, runs_root=tmp_path / "b"):
        run_dir = getattr(ev, "run_dir", run_dir)
        if isinstance(ev, StepEvent):
            first.append(ev.loss)
            if ev.step == 3:
                control.stop(quick=True)
    assert load_checkpoint(f"{run_dir}/checkpoints/last.pt")["method"]["center"].abs().sum() > 0
    rest = [e.loss for e in train(None, runs_root=tmp_path, resume=run_dir) if isinstance(e, StepEvent)]
    assert first + rest == straight and len(straight) == 6


def test_checkpoints_on_a_time_cadence_before_the_first_epoch_ends(tmp_path, quick_cfg):
    clock = FakeClock(monotonic_tick=1.0)  # the loop's clock advances 1 s per look: 0.6 s cadence, whatever the machine's speed
    control = Control()
    saved = []
    for ev in train(quick_cfg("train.checkpoint_minutes=0.01", "train.log_every=1"), control, runs_root=tmp_path,
                    clock=clock):
        if isinstance(ev, CheckpointEvent):
            saved.append(ev.step)
            control.stop(quick=True)
    assert saved and saved[0] < 16  # 16 steps an epoch: saved by the clock, not by the epoch's end
    assert load_checkpoint(f"{ev.run_dir}/checkpoints/last.pt")["step"] == saved[-1]


def test_quick_stop_skips_the_final_evaluation(tmp_path, quick_cfg):
    control = Control()
    events = []
    for ev in train(quick_cfg("train.log_every=1"), control, runs_root=tmp_path):
        events.append(ev)
        if isinstance(ev, StepEvent) and ev.step == 2:
            control.stop(quick=True)
    assert not any(isinstance(e, EvalEvent) for e in events)
    assert isinstance(events[-2], CheckpointEvent) and events[-1].reason == "stopped"


def test_lr_schedule_is_a_fraction_of_the_run():
    """Linear warm-up over the first ``warmup`` of the run, then a half cosine to ``min_ratio`` at the end."""
    from workbench.core.optim import lr_factor, warmup_fraction

    assert lr_factor(0.05, 0.1, "cosine", 0.1) == pytest.approx(0.5)
    assert lr_factor(0.1, 0.1, "cosine", 0.1) == pytest.approx(1.0)
    assert lr_factor(0.55, 0.1, "cosine", 0.1) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way down: cos(pi/2) = 0
    assert lr_factor(1.0, 0.1, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_factor(0.7, 0.0, "constant", 0.1) == 1.0
    assert warmup_fraction(1.0, 16, 160) == (0.1, "")
    frac, warning = warmup_fraction(1.0, 16, 16)  # a one-epoch run asking for one epoch of warm-up
    assert frac == 0.5 and "optim.warmup_epochs = 1 is 100% of this run" in warning


def test_time_boxed_run_ends_at_the_bottom_of_its_schedule(tmp_path, quick_cfg):
    """With a clock where every training step takes 25 ms, a 0.49 s budget is 20 steps of a 3,200-step plan:
    the cosine follows the clock, not the step count, and the last step's lr is near the floor."""
    cfg = quick_cfg("train.epochs=200", "train.time_budget_s=0.49", "train.log_every=1", "optim.min_lr_ratio=0.1",
                    "optim.warmup_epochs=0", "optim.lr=0.001", "eval.every=100")  # no evaluation before the end
    events = run_all(cfg, runs_root=tmp_path, clock=FakeClock(perf_tick=0.025))
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert events[-1].reason == "budget" and len(steps) == 20
    expected = [0.001 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * max(k / 3200, (k - 1) * 0.025 / 0.49)))) for k in range(1, 21)]
    assert [e.lr for e in steps] == pytest.approx(expected, rel=1e-6)
    assert steps[-1].lr < 0.001 * 0.11  # 97% of the budget spent before the last step: near the floor
    assert [e.eta_s for e in steps] == pytest.approx([max(0.0, 0.49 - k * 0.025) for k in range(1, 21)], abs=1e-6)


def test_a_run_given_in_time_warms_up_over_its_warm_up_steps(tmp_path, quick_cfg):
    """A run ended by train.time_budget_s plans 200 epochs (3,200 steps) as a ceiling: one epoch of warm-up is its 16
    steps, not 0.5% of the ceiling (which the clock passes by the third step). 25 ms a step, a 10 s budget."""
    cfg = quick_cfg("train.epochs=200", "train.time_budget_s=10", "train.log_every=1", "optim.min_lr_ratio=0.1",
                    "optim.warmup_epochs=1", "optim.lr=0.001", "eval.every=100")
    control, steps = Control(), []
    for ev in train(cfg, control, runs_root=tmp_path, clock=FakeClock(perf_tick=0.025)):
        if isinstance(ev, StepEvent):
            steps.append(ev)
            if ev.step == 12:
                control.stop(quick=True)
    progress = [max(k / 3200, (k - 1) * 0.025 / 10) for k in range(1, 13)]
    cosine = [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)) for p in progress]
    expected = [0.001 * min(c, k / 16) for k, c in zip(range(1, 13), cosine, strict=True)]
    assert [e.lr for e in steps] == pytest.approx(expected, rel=1e-6)
    assert steps[0].lr == pytest.approx(0.001 / 16, rel=1e-3) and steps[-1].lr < 0.001 * 0.76  # still warming up


def test_a_time_budget_warm_up_ends_by_half_the_budget_and_joins_the_cosine():
    from workbench.core.optim import Schedule

    s = Schedule(10, 100, 10**6, "cosine", 0.1, timed=True)  # 1,000 warm-up steps: more than the budget allows
    assert s.warning == "" and s(100, 0.25) == pytest.approx(0.5)  # half of the MAX_WARMUP share of the budget
    cos = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))
    assert s(200, 0.5) == pytest.approx(cos)  # the ramp ended: on the cosine, no jump up to 1
    assert s(5000, 1.0) == pytest.approx(0.1)
    assert Schedule(0, 100, 10**6, "constant", 0.1, timed=True)(1, 0.001) == 1.0
    epochs = Schedule(1.0, 16, 160, "cosine", 0.1)  # a run counted in steps: as before, a fraction of it
    assert epochs(8, 0.05) == pytest.approx(0.5) and epochs(16, 0.1) == pytest.approx(1.0)


def test_epochs_are_numbered_from_one_everywhere(tmp_path, quick_cfg):
    events = run_all(quick_cfg("train.epochs=2", "train.log_every=1", "optim.warmup_epochs=0.5"), runs_root=tmp_path)
    assert not any(isinstance(e, WarningEvent) and "warmup" in e.message for e in events)
    steps = {e.step: e.epoch for e in events if isinstance(e, StepEvent)}
    assert steps[1] == 1 and steps[16] == 1 and steps[17] == 2 and steps[32] == 2  # 16 steps an epoch
    assert [e.epoch for e in events if isinstance(e, EvalEvent)] == [1, 2]
    rows = read_metrics(events[0].run_dir)
    assert {r["epoch"] for r in rows if r["step"] <= 16} == {1.0} and {r["epoch"] for r in rows if r["step"] > 16} == {2.0}


def test_warm_up_longer_than_half_the_run_is_capped_with_a_warning(tmp_path, quick_cfg):
    events = run_all(quick_cfg("train.max_steps=2"), runs_root=tmp_path)  # 1 epoch of warm-up in a 2-step run
    notices = [e for e in events if isinstance(e, WarningEvent)]
    assert isinstance(events[0], RunStarted) and events[1:1 + len(notices)] == notices
    assert notices[0].message.startswith("augment.preset auto -> ")  # the set-up's decisions come first, then the warm-up
    assert notices[-1].message.startswith("optim.warmup_epochs") and "first 50%" in notices[-1].message


def test_streamed_and_in_memory_training_see_the_same_batches(tmp_path):
    """data.in_memory = false streams batches from the decoded store (memory-mapped); the run is the same."""
    from PIL import Image

    from workbench.core.config import Config
    from workbench.core.data import load_splits

    root = tmp_path / "imgs"
    g = np.random.default_rng(0)
    for c in range(2):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(96):
            Image.fromarray(g.integers(0, 255, (16, 16), dtype=np.uint8)).save(root / f"c{c}" / f"{i}.png")
    losses = {}
    for mode in ("true", "false"):
        cfg = Config().with_overrides([f"data.root={root}", "data.name=image_folder", f"data.in_memory={mode}", "train.batch_size=32",
                                       "train.max_steps=6", "train.log_every=1", "eval.embed_points=20"])
        assert load_splits(cfg.data)[0].in_memory == (mode == "true")
        events = run_all(cfg, runs_root=tmp_path / mode)
        assert isinstance(events[-1], DoneEvent), events[-1]
        losses[mode] = [e.loss for e in events if isinstance(e, StepEvent)]
    assert losses["true"] == losses["false"] and len(losses["true"]) == 6


def test_progressive_resolution_grows_the_views_to_full_size(tmp_path, quick_cfg):
    cfg = quick_cfg("augment.start_size=0.5", "augment.full_size_at=0.5", "train.max_steps=8", "train.log_every=1")
    control, sides, notes = Control(), [], []
    control.request_batch()
    for ev in train(cfg, control, runs_root=tmp_path):
        if isinstance(ev, WarningEvent):
            notes.append(ev)
        elif type(ev).__name__ == "BatchEvent":
            sides.append(ev.views1.shape[-1])
        elif isinstance(ev, StepEvent) and ev.step == 6:
            control.request_batch()
        last = ev
    assert isinstance(last, DoneEvent) and np.isfinite(last.metrics["knn_acc"])
    assert sides[0] < 28 and sides[0] % 4 == 0 and sides[-1] == 28, sides
    assert any(n.note and f"views grow from {sides[0]} to 28 px" in n.message for n in notes), notes
    for extra in ("augment.start_size=1", "train.epochs=1"):  # off; auto for a run not boxed by time: off too
        events = run_all(quick_cfg(extra, "train.max_steps=1"), runs_root=tmp_path)
        assert events[0].config["augment"]["start_size"] == 1.0  # config.toml records what the run used
        assert not any("progressive" in e.message for e in events if isinstance(e, WarningEvent))


def test_a_time_boxed_run_starts_at_half_size_by_default(tmp_path, quick_cfg):
    control = Control()
    control.request_batch()
    events = run_all(quick_cfg("train.time_budget_s=600", "train.max_steps=2"), control, runs_root=tmp_path)
    assert events[0].config["augment"]["start_size"] == 0.5
    assert next(e for e in events if type(e).__name__ == "BatchEvent").views1.shape[-1] == 16
    assert any(e.note and e.message.startswith("progressive resolution (augment.start_size auto, a time-boxed run): "
                                                 "views grow from 16 to 28 px") for e in events if isinstance(e, WarningEvent))


def test_view_size_without_a_crop_in_the_recipe():
    from workbench.core.augment import Augmenter

    aug = Augmenter([{"name": "horizontal_flip", "p": 0.5}], [0.5], [0.5])
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    aug.view_size = 16
    assert aug.views(x, torch.Generator().manual_seed(0)).shape == (4, 1, 16, 16)
    aug.view_size = 0
    assert aug.views(x, torch.Generator().manual_seed(0)).shape == (4, 1, 28, 28)


def test_a_run_from_before_progressive_resolution_resumes_at_full_size(tmp_path, quick_cfg):
    from workbench.core.resume import check_resume

    run_dir = run_all(quick_cfg("train.time_budget_s=600", "train.max_steps=2"), runs_root=tmp_path)[0].run_dir
    assert check_resume(run_dir)[0].augment.start_size == 0.5  # what the run used, from its config.toml
    ckpt, toml = f"{run_dir}/checkpoints/last.pt", tmp_path / run_dir.split("/")[-1] / "config.toml"
    state = load_checkpoint(ckpt)
    del state["config"]["augment"]["start_size"]  # as written before the setting existed
    torch.save(state, ckpt)
    toml.write_text("".join(line for line in toml.read_text().splitlines(True) if not line.startswith("start_size")))
    assert check_resume(run_dir)[0].augment.start_size == 1.0


def test_images_per_second_counts_training_time_only(tmp_path, quick_cfg):
    """Evaluations between two log lines (here made to take 1,000 s of the clock) and the time before a
    resumed run starts do not dilute images/s; the ETA, on the wall clock, does include the evaluations.
    Each training step takes 10 ms of the clock, so images/s is exactly 64 / 0.01."""
    clock = FakeClock(perf_tick=0.01)
    cfg = quick_cfg("train.epochs=3", "train.log_every=5", "eval.max_share=1")  # 16 steps an epoch: logs at 20 and 35 span an evaluation
    control, steps = Control(), []
    events = []
    for ev in evaluations_taking(1000.0, clock, train(cfg, control, runs_root=tmp_path, clock=clock)):
        events.append(ev)
        if isinstance(ev, StepEvent) and ev.step == 35:
            control.stop()
    steps = {e.step: e for e in events if isinstance(e, StepEvent)}
    assert all(steps[n].images_per_s > 100 * 5 * 64 / 1000 for n in (20, 35))  # 5 steps of 64 images, not over 1,000 s
    assert all(steps[n].images_per_s == pytest.approx(64 / 0.01) for n in (20, 35))
    assert steps[35].eta_s > 500  # 13 steps to go, and evaluations have taken 1,000 s an epoch
    clock.advance(5000.0)  # time passes, then the run is resumed
    resumed = [e for e in train(None, runs_root=tmp_path, resume=events[0].run_dir, clock=clock) if isinstance(e, StepEvent)]
    typical = sorted(e.images_per_s for e in steps.values())[len(steps) // 2]
    assert resumed[0].step == 40 and resumed[0].images_per_s < 3 * typical  # 5 steps' images, not the run's 40
    assert resumed[0].images_per_s == pytest.approx(64 / 0.01)


def test_the_cadence_paces_on_training_time_and_keeps_evaluations_to_their_share():
    """Hand-computed: 10 steps of 64 images in 2 s of training, then an evaluation of 3 s (a share of 3 / 4 s of
    training, capped at eval.max_share = 0.5 for the ETA, and too much for another evaluation)."""
    from workbench.core.cadence import Cadence

    cfg = Config().with_overrides(["train.log_every=5", "eval.max_share=0.5", "train.checkpoint_minutes=2"])
    clock = FakeClock(monotonic_tick=30.0)
    c = Cadence(cfg, total_steps=100, global_batch=64, clock=clock)  # the first checkpoint a minute after the start
    c.start(elapsed=0.0, step=0, epoch=0)
    assert [c.log_due(n) for n in (1, 2, 5, 7, 100)] == [True, False, True, False, True]
    assert c.save_due() is False and c.save_due() is True  # 30 s, then 60 s: due
    c.saved()  # at 90 s: the next at 210 s
    assert [c.save_due() for _ in range(4)] == [False, False, False, True]
    assert c.pace(step=10, elapsed=2.0) == pytest.approx((320.0, 90 * 0.2))
    assert c.evaluation_due(epoch=1, elapsed=2.0)  # the first of a session always runs
    c.evaluated(3.0)
    assert c.pace(step=20, elapsed=4.0) == pytest.approx((320.0, 80 * 0.2 * 1.5 + 3.0))
    assert not c.evaluation_due(epoch=2, elapsed=4.0)  # 3 s spent and 3 s to come against 0.5 x 4 s
    assert c.skip_note(epoch=2, elapsed=4.0).startswith("skipping some of the evaluations asked for (every epoch): "
                                                        "one takes 3.0 s against 2.0 s of training an epoch")
    assert c.skip_note(epoch=3, elapsed=6.0) == ""  # said once


def test_a_sink_given_to_train_receives_the_rows_metrics_csv_gets(tmp_path, quick_cfg):
    """Every logged step and every evaluation, value for value (metrics.csv keeps 6 significant digits), then closed."""
    sink = RecordingSink()
    events = run_all(quick_cfg("train.epochs=2", "train.log_every=4", "eval.max_share=1"), runs_root=tmp_path, sinks=[sink])
    assert isinstance(events[-1], DoneEvent) and sink.closed
    kept = [{k: v for k, v in row.items() if v is not None} for row in read_metrics(events[0].run_dir)]
    assert [sorted(r) for r in sink.rows] == [sorted(r) for r in kept]
    assert sink.rows == [pytest.approx(r, rel=1e-5) for r in kept]
    assert sum("knn_acc" in r for r in sink.rows) == 2 and sum("loss" in r for r in sink.rows) == 9  # steps 1, 4, ..., 32


@pytest.mark.parametrize("share", [0.2, 1.0])
def test_evaluations_keep_to_their_share_of_the_training_time(tmp_path, quick_cfg, share):
    """Evaluations that take 10 s against well under a second of training an epoch: with the default share the
    first runs, the next are skipped with one note, the final one runs; ``eval.max_share = 1`` evaluates every epoch."""
    clock = FakeClock(perf_tick=0.01)  # 16 steps of 10 ms an epoch
    cfg = quick_cfg("train.epochs=4", f"eval.max_share={share}")
    events = list(evaluations_taking(10.0, clock, train(cfg, runs_root=tmp_path, clock=clock)))
    evaluated = [e.epoch for e in events if isinstance(e, EvalEvent)]
    notes = [e for e in events if isinstance(e, WarningEvent) and "eval.max_share" in e.message]
    assert evaluated == ([1, 4] if share < 1 else [1, 2, 3, 4])
    assert len(notes) == (1 if share < 1 else 0) and all(n.note for n in notes)
    assert all(re.match(r"skipping some of the evaluations asked for \(every epoch\): one takes 10\.\d s against", n.message)
               for n in notes)
    assert isinstance(events[-1], DoneEvent) and events[-1].metrics["knn_acc"] > 0


def test_a_resumed_run_keeps_the_image_size_it_was_trained_at(tmp_path, monkeypatch):
    """``data.image_size = 0`` resolves on every start; when it would now give another side (a newer limit, a
    machine without the GPU), the resumed run goes on at the side its checkpoint was trained at, and says so."""
    from PIL import Image

    from workbench.core import folder
    from workbench.core.config import Config

    for c, colour in enumerate([(200, 30, 30), (30, 30, 200)]):
        for i in range(40):
            (tmp_path / "data" / str(c)).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (120, 120), tuple(v + i for v in colour)).save(tmp_path / "data" / str(c) / f"{i}.png")
    cfg = Config().with_overrides([f"data.root={tmp_path / 'data'}", "data.name=image_folder", "train.batch_size=16",
                                   "train.max_steps=2", "eval.embed_points=10", "augment.preset=none"])
    monkeypatch.setattr(folder, "auto_cap", lambda: 96)  # the limit at the start ...
    first = run_all(cfg, runs_root=tmp_path / "runs")
    run_dir = first[0].run_dir
    assert isinstance(first[-1], DoneEvent) and load_checkpoint(f"{run_dir}/checkpoints/last.pt")["image_size"] == 96
    monkeypatch.setattr(folder, "auto_cap", lambda: 64)  # ... and another when the run is resumed
    Config.load(f"{run_dir}/config.toml").with_overrides(["train.max_steps=4"]).save(f"{run_dir}/config.toml")
    events = run_all(None, runs_root=tmp_path / "runs", resume=run_dir)
    notes = [e.message for e in events if isinstance(e, WarningEvent) and e.note]
    assert any("trained on 96x96" in n and "now gives 64x64" in n for n in notes), notes
    assert isinstance(events[-1], DoneEvent) and load_checkpoint(f"{run_dir}/checkpoints/last.pt")["step"] == 4
    assert Config.load(f"{run_dir}/config.toml").data.image_size == 96


def test_a_pause_during_an_evaluation_is_not_counted_as_its_cost(tmp_path, quick_cfg):
    """Paused for 1,000 s of the clock in the middle of each evaluation: the ETA after it (which counts the
    evaluations to come at the pace of those done) is not swollen by the pause."""
    clock = FakeClock(perf_tick=0.01)

    class ResumedLater(Control):
        def wait_while_paused(self, poll=0.1):  # the user presses Resume 1,000 s of the clock later
            if self.paused:
                clock.advance(1000.0)
                self.resume()

    control, events = ResumedLater(), []
    for ev in train(quick_cfg("train.epochs=2", "train.log_every=4", "eval.max_share=1"), control, runs_root=tmp_path,
                    clock=clock):
        if isinstance(ev, EvalProgressEvent) and not any(isinstance(e, EvalProgressEvent) and e.step == ev.step for e in events):
            control.pause()  # the user presses Pause while the evaluation runs
        events.append(ev)
    after = [e for e in events if isinstance(e, StepEvent) and 16 < e.step < 32]
    assert after and all(e.eta_s < 100 for e in after), [e.eta_s for e in after]
    assert sum(isinstance(e, EvalEvent) for e in events) == 2


def test_the_config_is_resolved_once(quick_cfg, monkeypatch):
    """The automatic settings the data decide (the preset, the start size, the head's width) are written into the
    config at once: one validation, which builds the loss once, not once per setting."""
    from workbench.core.config import Config

    cfg, built = quick_cfg("train.time_budget_s=60"), []
    real = Config.from_dict.__func__
    monkeypatch.setattr(Config, "from_dict", classmethod(lambda cls, d: built.append(d) or real(cls, d)))
    s = prepare(cfg)
    assert len(built) == 1
    assert (s.cfg.augment.preset, s.cfg.augment.start_size, s.cfg.model.head_hidden) == ("simclr_small_grey", 0.5, 256)
    assert any(n.startswith("augment.preset auto -> simclr_small_grey") for n in s.notes)
    assert any(n.startswith("progressive resolution (augment.start_size auto, a time-boxed run)") for n in s.notes)


@pytest.mark.parametrize("train_labels, test_labels, needle", [
    ([-1] * 40, [-1] * 8, "no labels (no class folders), so kNN accuracy is not measured"),
    ([0] * 40, [0] * 8, "only one class is labelled, so kNN accuracy is 1 whatever"),
    ([0] * 42 + [1] * 2, [0, 1] * 4, "classes range from 2 to 42 training images"),
    ([0, 1] * 20, [0, 1] * 4, None),
    ([0, 1] * 20, [1] * 8, None),  # one class held out among two trained: kNN can still be wrong
])
def test_a_kNN_that_means_little_is_said_at_the_start(train_labels, test_labels, needle):
    from workbench.core.data import ImageData
    from workbench.core.setup import label_notes

    def split(labels):
        return ImageData(torch.zeros(len(labels), 1, 8, 8, dtype=torch.uint8), torch.tensor(labels), ["a", "b"])

    notes = label_notes(split(train_labels), split(test_labels))
    assert (notes == []) if needle is None else (len(notes) == 1 and needle in notes[0])


def test_a_stop_during_the_knn_search_ends_the_evaluation(quick_cfg):
    """The search over a large bank takes seconds on a CPU: it asks between query chunks, as embedding does between
    batches, so a stop does not wait for it."""
    from workbench.core import metrics as M
    from workbench.core.evaluation import Interrupted

    s = prepare(quick_cfg())
    asked, chunks = [], []
    real = M.knn_predict

    def counted(*a, **kw):
        chunks.append(len(a[2]))
        return real(*a, **kw)

    def interrupt():  # False while embedding (bank and test batches), True from the first kNN chunk on
        asked.append(bool(chunks) or len(asked) >= 50)
        return asked[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(M, "knn_predict", counted)
        with pytest.raises(Interrupted):
            evaluate(s, interrupt)
    assert chunks and asked.count(True) == 1 and len(asked) < 50  # stopped at the search, not in the embedding
    bank = torch.randn(100, 8)
    calls = []
    M.knn_predict(bank, torch.arange(100) % 3, torch.randn(10, 8), k=5, chunk=3, check=lambda: calls.append(1))
    assert len(calls) == 4  # once before each of the 4 query chunks



def test_a_read_out_that_can_only_centre_is_said_once(tmp_path, quick_cfg, monkeypatch):
    """Representations wider than Readout.MAX_WHITEN are centred, not whitened: the run says so once, as a note."""
    from workbench.core.events import WarningEvent
    from workbench.core.models import Readout

    monkeypatch.setattr(Readout, "MAX_WHITEN", 8)
    events = run_all(quick_cfg("train.epochs=2", "eval.every=1", "eval.max_share=1", "eval.readout=whitened"), runs_root=tmp_path / "a")
    notes = [e for e in events if isinstance(e, WarningEvent) and "read-out" in e.message]
    assert len([e for e in events if isinstance(e, EvalEvent)]) >= 2
    assert len(notes) == 1 and notes[0].note and "centred, not whitened" in notes[0].message
    monkeypatch.undo()
    whitened = run_all(quick_cfg("train.epochs=1", "eval.readout=whitened"), runs_root=tmp_path / "b")
    assert not any(isinstance(e, WarningEvent) and "read-out" in e.message for e in whitened)
