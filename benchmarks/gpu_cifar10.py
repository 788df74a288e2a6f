"""GPU throughput on CIFAR-10: the workbench's device-resident pipeline against a usual DataLoader.

    python benchmarks/gpu_cifar10.py [--data ../shared/data/cifar10-jpg] [--steps 200] [--compile]
    python benchmarks/gpu_cifar10.py --knn-minutes 20        # also: train to a kNN figure in a time budget
    python benchmarks/gpu_cifar10.py --device cpu --batch 32 --steps 3   # smoke check without a GPU
    python benchmarks/gpu_cifar10.py --variants     # images/s with each speed option switched off / on
    python benchmarks/gpu_cifar10.py --profile      # host-device syncs per training step (torch.profiler)

ResNet-18 (CIFAR variant), batch 512, two 32x32 views per image, NT-Xent, SGD/LARS. Ours: the
whole uint8 dataset on the GPU, per-sample augmentations made there in batches, bf16 autocast,
channels_last, optionally torch.compile. Baseline, in the same run: torchvision ImageFolder with
per-image CPU transforms in a DataLoader (one worker per core, pinned memory), same model, bf16
and channels_last. Images/s counts training images (each seen as two views).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def overrides(a, extra=()):
    return ["data.name=image_folder", f"data.root={a.data}", "augment.preset=simclr_cifar", "model.encoder=resnet18_cifar",
            "model.head_hidden=2048", f"train.batch_size={a.batch}", f"train.device={a.device}", "loss.temperature=0.2",
            "optim.name=lars", "optim.lr=1.0", "optim.weight_decay=1e-6", f"train.compile={str(a.compile).lower()}",
            "train.log_every=10", "eval.every=100000", *extra]


def ours(a, extra=()) -> float:
    from workbench.core.config import Config
    from workbench.core.events import StepEvent
    from workbench.core.train import train

    cfg = Config().with_overrides(overrides(a, [f"train.max_steps={a.steps}", "train.epochs=1000", "eval.test_size=1000",
                                                "eval.bank_size=5000", *extra]))
    rates = [e.images_per_s for e in train(cfg, runs_root="/tmp/wb-gpu-bench") if isinstance(e, StepEvent)]
    tail = rates[len(rates) // 3:] or rates  # skip warm-up (and compilation)
    return sum(tail) / len(tail)


VARIANTS = {  # name -> overrides on top of the defaults above (bf16, channels_last, LARS, no compile)
    "default": [],
    "fp32 (no bf16)": ["train.bf16=false"],
    "NCHW (no channels_last)": ["train.channels_last=false"],
    "SGD instead of LARS": ["optim.name=sgd", "optim.lr=0.3"],
    "torch.compile": ["train.compile=true"],
}


def variants(a) -> None:
    base = None
    for name, extra in VARIANTS.items():
        rate = ours(a, extra)
        base = base or rate
        print(f"  {name:<28} {rate:>10,.0f} images/s  ({rate / base:.2f}x default)", flush=True)


def profile(a) -> None:
    """Count host<->device synchronisations over steps 20-70 (5 log steps; no epoch end, which evaluates)."""
    from torch.profiler import ProfilerActivity, profile as tprofile

    from workbench.core.config import Config
    from workbench.core.events import StepEvent
    from workbench.core.train import train

    cfg = Config().with_overrides(overrides(a, ["train.max_steps=120", "train.epochs=1000", "eval.test_size=1000", "eval.bank_size=5000"]))
    prof = tprofile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
    for ev in train(cfg, runs_root="/tmp/wb-gpu-bench"):
        if isinstance(ev, StepEvent) and ev.step == 20:
            prof.start()
        elif isinstance(ev, StepEvent) and ev.step == 70:
            torch.cuda.synchronize()
            prof.stop()
    names = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "aten::_local_scalar_dense",
             "aten::item", "Memcpy DtoH (Device -> Pageable)", "Memcpy DtoH (Device -> Pinned)")
    counts = {e.key: e.count for e in prof.key_averages() if e.key in names}
    print("host syncs over 50 steps (5 of them log steps):", counts or "none")


def baseline(a) -> float:
    import torchvision
    import torchvision.transforms as T

    from workbench.core.config import Config
    from workbench.core.losses import LOSSES, Views
    from workbench.core.methods import build_network
    from workbench.core.optim import build_optimizer

    dev = torch.device(a.device)
    tf = T.Compose([T.RandomResizedCrop(32, scale=(0.2, 1.0)), T.RandomHorizontalFlip(),
                    T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(0.2), T.ToTensor(),
                    T.Normalize((0.49, 0.48, 0.45), (0.25, 0.24, 0.26))])

    class TwoViews:
        def __call__(self, im):
            return tf(im), tf(im)

    ds = torchvision.datasets.ImageFolder(os.path.join(a.data, "train"), transform=TwoViews())
    loader = torch.utils.data.DataLoader(ds, batch_size=a.batch, shuffle=True, drop_last=True, num_workers=os.cpu_count(),
                                         pin_memory=dev.type == "cuda", persistent_workers=True, prefetch_factor=4)
    cfg = Config().with_overrides(overrides(a))
    net = build_network(cfg, 3, 32).to(dev).to(memory_format=torch.channels_last)
    loss_fn = LOSSES.build("ntxent", cfg.loss.params)
    opt = build_optimizer(net, cfg.optim)  # overrides() sets optim.name = "lars"
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else torch.autocast("cpu", enabled=False)
    step, t0, seen = 0, None, 0
    while step < a.steps:
        for (v1, v2), _ in loader:
            x = torch.cat([v1, v2]).to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
            with amp:
                _, z, _ = net(x)
            loss = loss_fn(Views(z[: len(v1)], z[len(v1):])).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step == max(1, a.steps // 3):
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t0, seen = time.perf_counter(), 0
            elif t0 is not None:
                seen += len(v1)
            if step >= a.steps:
                break
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return seen / max(time.perf_counter() - t0, 1e-9)


def knn_run(a) -> dict:
    from workbench.core.config import Config
    from workbench.core.events import DoneEvent
    from workbench.core.train import train

    budget = a.knn_minutes * 60
    cfg = Config().with_overrides(overrides(a, [f"train.epochs={a.epochs}", f"train.time_budget_s={budget}", "optim.warmup_epochs=10"]))
    for ev in train(cfg, runs_root="/tmp/wb-gpu-knn"):
        if isinstance(ev, DoneEvent):
            return ev.metrics | {"reason": ev.reason}
    return {}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpg"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--knn-minutes", type=float, default=0)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--variants", action="store_true", help="also measure each speed option")
    ap.add_argument("--profile", action="store_true", help="also count host syncs per step")
    a = ap.parse_args()
    name = torch.cuda.get_device_name() if a.device.startswith("cuda") else "CPU"
    o, b = ours(a), baseline(a)
    print(f"CIFAR-10, ResNet-18 (CIFAR), batch {a.batch}, two 32x32 views, {name}, torch {torch.__version__}")
    print(f"workbench (device-resident, batched aug, bf16, channels_last{', compile' if a.compile else ''}): {o:,.0f} images/s")
    print(f"baseline (DataLoader, per-image CPU aug, {os.cpu_count()} workers):           {b:,.0f} images/s")
    print(f"ratio: {o / b:.2f}x", flush=True)
    if a.variants:
        variants(a)
    if a.profile:
        profile(a)
    if a.knn_minutes:
        m = knn_run(a)
        print(f"kNN accuracy after {a.knn_minutes:g} min: {m.get('knn_acc', float('nan')):.4f} ({m})")


if __name__ == "__main__":
    main()
