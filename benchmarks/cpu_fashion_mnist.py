"""CPU throughput and quality on Fashion-MNIST: the workbench pipeline against a usual baseline.

    python benchmarks/cpu_fashion_mnist.py [--budget 600] [--data ../shared/data/fashion-mnist]

Both pipelines train the same encoder (small_cnn + 2-layer head) with the same NT-Xent loss,
optimiser and augmentation recipe for the same wall-clock budget on the 60,000 training
images, then report weighted kNN accuracy (k=20) on the 10,000 test images. The baseline is
the usual kind: per-image torchvision transforms on PIL images in a DataLoader (2 workers).
A third row gives that baseline the engine's CPU kernel settings (channels-last weights and
inputs, denormals flushed to zero), so the share of the speed-up that comes from the data path
alone is visible.
Each pipeline runs in its own process so its peak memory (max RSS) is its own (for the baseline,
that of its main process: the two DataLoader workers come on top). Raw-pixel kNN
is printed as the floor a learned representation should beat.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "fashion-mnist"
COMMON = ["data.name=fashion_mnist", "train.batch_size=256", "loss.temperature=0.2", "optim.lr=0.002",
          "optim.warmup_epochs=0.5", "eval.every=1000", "train.log_every=20"]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ours(data: str, budget: float) -> dict:
    from workbench.core.config import Config
    from workbench.core.events import DoneEvent, StepEvent
    from workbench.core.train import train

    # plan the cosine schedule to end with the budget: measure the speed past the first steps
    cfg = Config().with_overrides(COMMON + [f"data.root={data}", "train.epochs=1", "train.max_steps=80"])
    ips = [e.images_per_s for e in train(cfg, runs_root="/tmp/wb-bench-calib") if isinstance(e, StepEvent)][-1]
    epochs = max(1, math.ceil(budget * ips / 60000))
    cfg = Config().with_overrides(COMMON + [f"data.root={data}", f"train.epochs={epochs}", f"train.time_budget_s={budget}"])
    t0, seen, steps = time.perf_counter(), [], 0
    for ev in train(cfg, runs_root="/tmp/wb-bench"):
        if isinstance(ev, StepEvent):
            seen.append(ev.images_per_s)
            steps = ev.step
        if isinstance(ev, DoneEvent):
            done = ev
    return {"images_per_s": float(np.median(seen)), "knn_acc": done.metrics["knn_acc"], "steps": steps,
            "epochs_planned": epochs, "wall_s": time.perf_counter() - t0, "peak_mb": peak_mb()}


def baseline(data: str, budget: float, tuned: bool = False) -> dict:
    import torchvision.transforms as T
    from PIL import Image

    from workbench.core.config import Config, DataConfig
    from workbench.core.data import load_splits
    from workbench.core.losses import LOSSES, Views
    from workbench.core.metrics import knn_accuracy
    from workbench.core.methods import build_network

    torch.manual_seed(0)
    train_d, test_d = load_splits(DataConfig(name="fashion_mnist", root=data))
    mean, std = train_d.mean_std()
    tf = T.Compose([T.RandomResizedCrop(28, scale=(0.2, 1.0)), T.RandomHorizontalFlip(),
                    T.RandomApply([T.ColorJitter(0.4, 0.4)], p=0.8), T.ToTensor(), T.Normalize(mean, std)])
    arr = train_d.images[:, 0].numpy()

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return len(arr)

        def __getitem__(self, i):
            im = Image.fromarray(arr[i], mode="L")
            return tf(im), tf(im)

    cfg = Config().with_overrides(COMMON + [f"data.root={data}"])
    net = build_network(cfg, 1, 28)
    if tuned:
        torch.set_flush_denormal(True)
        net = net.to(memory_format=torch.channels_last)
    loss_fn = LOSSES.build("ntxent", cfg.loss.params)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    loader = torch.utils.data.DataLoader(Pairs(), batch_size=256, shuffle=True, drop_last=True, num_workers=2,
                                         persistent_workers=True)
    t0, images, rates = time.perf_counter(), 0, []
    done = False
    while not done:
        tl, nl = time.perf_counter(), 0
        for v1, v2 in loader:
            x = torch.cat([v1, v2])
            _, z, _ = net(x.contiguous(memory_format=torch.channels_last) if tuned else x)
            loss = loss_fn(Views(z[:256], z[256:])).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            images += 256
            nl += 256
            if nl >= 256 * 20:
                rates.append(nl / (time.perf_counter() - tl))
                tl, nl = time.perf_counter(), 0
            if time.perf_counter() - t0 >= budget:
                done = True
                break
    net.eval()
    with torch.no_grad():
        def feats(d):
            x = (d.images.float() / 255 - mean[0]) / std[0]
            return torch.cat([net(c)[0] for c in x.split(1024)])
        acc = knn_accuracy(feats(train_d), train_d.labels, feats(test_d), test_d.labels, 20, 0.07)
    return {"images_per_s": float(np.median(rates)), "knn_acc": acc, "images": images,
            "wall_s": time.perf_counter() - t0, "peak_mb": peak_mb()}


def raw_pixel_knn(data: str) -> float:
    from workbench.core.config import DataConfig
    from workbench.core.data import load_splits
    from workbench.core.metrics import knn_accuracy

    tr, te = load_splits(DataConfig(name="fashion_mnist", root=data))
    return knn_accuracy(tr.images.flatten(1).float(), tr.labels, te.images.flatten(1).float(), te.labels, 20, 0.07)


PIPELINES = {
    "ours": ("workbench (batched, in-memory)", ours),
    "baseline": ("baseline (DataLoader, per-image)", baseline),
    "baseline_tuned": ("baseline + channels-last, flushed denormals", lambda d, b: baseline(d, b, tuned=True)),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=600.0, help="training seconds for each pipeline")
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--child", choices=list(PIPELINES))
    a = ap.parse_args()
    if a.child:
        print(json.dumps(PIPELINES[a.child][1](a.data, a.budget)))
        return
    if not Path(a.data).exists():
        sys.exit(f"Fashion-MNIST not found at {a.data}; pass --data")
    res = {}
    for which in PIPELINES:
        out = subprocess.run([sys.executable, __file__, "--child", which, "--budget", str(a.budget), "--data", a.data],
                             capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
        if out.returncode:
            sys.exit(out.stderr)
        res[which] = json.loads(out.stdout.strip().splitlines()[-1])
    raw = raw_pixel_knn(a.data)
    print(f"Fashion-MNIST, CPU ({os.cpu_count()} cores, torch {torch.__version__}), {a.budget:.0f} s training budget each")
    print(f"{'pipeline':<44}{'images/s':>10}{'kNN acc':>10}{'peak MB':>10}")
    for which, (label, _) in PIPELINES.items():
        r = res[which]
        print(f"{label:<44}{r['images_per_s']:>10.0f}{r['knn_acc']:>10.4f}{r['peak_mb']:>10.0f}")
    print(f"{'raw pixels':<44}{'':>10}{raw:>10.4f}")
    for which in ("baseline", "baseline_tuned"):
        print(f"throughput ratio workbench / {which}: {res['ours']['images_per_s'] / res[which]['images_per_s']:.2f}x")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
