"""DDP on the CPU with the gloo backend: gathered negatives make 2 ranks x B equal 1 process x 2B."""
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.conftest import ROOT
from workbench.core import distributed as ddp
from workbench.core.losses import LOSSES, Views


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, name, z1, z2, out):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    b = len(z1) // world
    a1 = z1[rank * b:(rank + 1) * b].clone().requires_grad_(True)
    a2 = z2[rank * b:(rank + 1) * b].clone().requires_grad_(True)
    loss = LOSSES.build(name, {"temperature": 0.3})(Views(a1, a2, gather=ddp.gather_with_grad, rank=rank)).loss
    (loss / world).backward()  # DDP averages gradients over ranks
    g1, g2 = a1.grad.clone(), a2.grad.clone()
    for g in (g1, g2):
        dist.all_reduce(g)  # every rank's contribution to its own rows (gather's backward already summed them)
    t = torch.tensor([loss.item()])
    dist.all_reduce(t)
    out[rank] = (t.item() / world, a1.grad, a2.grad)
    dist.destroy_process_group()


@pytest.mark.parametrize("name", ["ntxent", "dcl"])
def test_two_ranks_equal_one_process_with_the_global_batch(name):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    ref1, ref2 = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    ref = LOSSES.build(name, {"temperature": 0.3})(Views(ref1, ref2)).loss
    ref.backward()
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(2, _free_port(), name, z1, z2, out), nprocs=2, join=True)
    for rank in range(2):
        loss, g1, g2 = out[rank]
        assert loss == pytest.approx(ref.item(), rel=1e-5)
        # each rank's rows get the gradient of the global loss
        assert torch.allclose(g1, ref1.grad[rank * 8:(rank + 1) * 8], atol=1e-6)
        assert torch.allclose(g2, ref2.grad[rank * 8:(rank + 1) * 8], atol=1e-6)


@pytest.mark.slow
def test_torchrun_two_processes_then_resume_on_one(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    res = subprocess.run(torchrun + ["-m", "workbench", "train", str(ROOT / "examples" / "bundled_quick.toml"),
                                     "--set", "data.subset=1024", "--set", "train.batch_size=32", "--set", "train.epochs=2",
                                     "--set", "train.max_steps=20", "--set", "eval.test_size=200", "--set", "model.sync_bn=true",
                                     "--out", str(tmp_path)], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(runs) == 1  # only rank 0 writes a run folder
    run = runs[0]
    assert "world_size = 2" in (run / "config.toml").read_text()
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 20 and ckpt["world_size"] == 2
    # resume on one process with more steps allowed
    from workbench.core.config import Config

    cfg = Config.load(run / "config.toml").with_overrides(["train.max_steps=24"])
    cfg.save(run / "config.toml")
    res = subprocess.run([sys.executable, "-m", "workbench", "train", "--resume", str(run)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 24


@pytest.mark.slow
def test_torchrun_time_boxed_run_ends_on_every_rank_at_the_same_step(tmp_path):
    """Each rank times its own steps; the budget ends the run when any rank has spent it, so no rank waits
    in a gradient all-reduce for one that has already stopped (which would hang the run)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    res = subprocess.run(torchrun + ["-m", "workbench", "train", str(ROOT / "examples" / "bundled_quick.toml"),
                                     "--set", "data.subset=1024", "--set", "train.batch_size=32", "--set", "train.epochs=50",
                                     "--set", "train.time_budget_s=4", "--set", "eval.test_size=200",
                                     "--out", str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "finished on its time budget at step" in res.stdout + res.stderr
    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] > 0
