"""What a run learns per second of CPU: kNN accuracy against training time for recipe variants.

    python benchmarks/learn_per_second.py [--data fashion|cifar|PATH] [--budget 600] [--variants default,before,...]

Every variant trains for the same wall-clock budget (``train.time_budget_s``, so each one's
schedule ends with its budget) on the training split, in its own process, one after another;
kNN accuracy (weighted, k=20) on the test split is printed at each evaluation with the training
seconds it was reached at, then the final figure. ``default`` is what a new run gets; ``before``
is the recipe new runs got before this study (NT-Xent temperature 0.5, AdamW lr 1e-3, full-size
views throughout): the baseline measured in the same run; ``fullsize`` is today's default without
progressive resolution; ``prev`` is the default before the last study (head 512 wide, temperature
0.2). ``tau0.2`` and ``lr2e-3`` are ``before`` with one of the first two changes that made
``default``; the others change one thing against ``default`` (batch, encoder width, pooled grid,
head, optimiser, learning rate, weight decay, temperature, crops). ``--set`` adds an override to every
variant. Raw pixels
and the untrained encoder are printed as the floors a learned representation has to beat, each read out
three ways: as it is, centred on the training images' mean, and whitened as the network's ``Readout``
whitens a trained run's representation. Each variant's final kNN is also read the first two ways from the
same run's encoder (the read-out does not change training), so the read-out's share of the figure is
measured in the same run.

    python benchmarks/learn_per_second.py --data cifar --budget 180 --variants default,width48,batch128
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = {"fashion": ("fashion_mnist", ROOT.parent / "shared" / "data" / "fashion-mnist"),
        "cifar": ("image_folder", ROOT.parent / "shared" / "data" / "cifar10-jpg")}

BEFORE = ["loss.temperature=0.5", "optim.lr=0.001", "optim.warmup_epochs=1.0", "model.width=32", "model.pool=2",
          "augment.start_size=1", "model.head_hidden=512"]
VARIANTS: dict[str, list[str]] = {
    "default": [],
    "before": BEFORE,
    "tau0.2": BEFORE[1:] + ["loss.temperature=0.2"],
    "lr2e-3": BEFORE[:1] + BEFORE[2:] + ["optim.lr=0.002"],
    "width48": ["model.width=48"],
    "width64": ["model.width=64"],
    "batch128": ["train.batch_size=128"],
    "batch512": ["train.batch_size=512"],
    "pool1": ["model.pool=1"],
    "pool2": ["model.pool=2"],  # the default before the pool4 study
    "pool3": ["model.pool=3"],
    "head512": ["model.head_hidden=512"],
    "prev": ["model.head_hidden=512", "loss.temperature=0.2"],  # the default before the head/temperature study
    "lars": ["optim.name=lars", "optim.lr=1.0"],
    "depth2": ["model.depth=2"],
    "depth3": ["model.depth=3"],
    "stages4": ["model.stages=4", "model.pool=1"],
    "stages4d2": ["model.stages=4", "model.pool=1", "model.depth=2"],
    "fullsize": ["augment.start_size=1"],  # the default before progressive resolution
    "prog75": ["augment.start_size=0.75"],
    "prog50to80": ["augment.full_size_at=0.8"],
    "tau0.3": ["loss.temperature=0.3"],
    "lr1e-3": ["optim.lr=0.001"],
    "lr4e-3": ["optim.lr=0.004"],
    "wd1e-5": ["optim.weight_decay=1e-5"],
    "batch512lr4e-3": ["train.batch_size=512", "optim.lr=0.004"],
    "dcl0.1": ["loss.name=dcl", "loss.temperature=0.1"],
    "crop35grey": [  # greyscale data only: simclr_small_grey with crops keeping >= 35% instead of 20%
        'augment.recipe=[{name="random_resized_crop", p=1.0, scale=[0.35, 1.0]}, {name="color_jitter", p=0.8, '
        'brightness=0.4, contrast=0.4, saturation=0.0, hue=0.0}]'],
    "crop08grey": [  # greyscale data only: simclr_small_grey with crops keeping >= 8% instead of 20%
        'augment.recipe=[{name="random_resized_crop", p=1.0, scale=[0.08, 1.0]}, {name="color_jitter", p=0.8, '
        'brightness=0.4, contrast=0.4, saturation=0.0, hue=0.0}]'],
    "tau0.05": ["loss.temperature=0.05"],
}


def data_overrides(which: str) -> list[str]:
    name, root = DATA.get(which, ("image_folder", Path(which)))
    return [f"data.name={name}", f"data.root={root}"]


def child(which: str, variant: str, budget: float, every: int, extra: list[str]) -> dict:
    from workbench.core.config import Config
    from workbench.core.events import DoneEvent, EvalEvent, RunStarted, StepEvent
    from workbench.core.train import train

    sets = data_overrides(which) + [f"train.time_budget_s={budget}", "train.epochs=100000", "train.log_every=20",
                                    f"eval.every={every}", "eval.embed_points=0"] + extra + VARIANTS[variant]
    cfg = Config().with_overrides(sets)
    points, rates, t_train, t_last, final = [], [], 0.0, None, None
    for ev in train(cfg, runs_root="/tmp/wb-learn"):
        now = time.perf_counter()
        if isinstance(ev, RunStarted):
            run_dir = ev.run_dir
        elif isinstance(ev, StepEvent):
            if t_last is not None:  # steps since the last step or evaluation: training time
                t_train += now - t_last
            rates.append(ev.images_per_s)
            t_last = now
        elif isinstance(ev, EvalEvent):
            points.append((round(t_train, 1), ev.epoch, ev.metrics["knn_acc"]))
            t_last = None
        elif isinstance(ev, DoneEvent):
            final = ev.metrics.get("knn_acc")
    rates.sort()
    return {"points": points, "final_knn": final, "images_per_s": rates[len(rates) // 2] if rates else 0.0,
            "read_outs": read_outs(run_dir)}


def read_outs(run_dir: str) -> dict:
    """The run's final kNN (the whole test split) on its encoder's raw output: as it is, centred, whitened."""
    from workbench.core.inference import RunModel

    rm = RunModel.load(run_dir)
    tr, te = rm.splits()
    with torch.no_grad():
        raw = [torch.cat([rm.net(rm.preprocess(c))[0] for c in d.images.split(1024)]) for d in (tr, te)]
    return knn_three_ways(*raw, tr.labels, te.labels)


def knn_three_ways(bank, query, bank_labels, query_labels) -> dict:
    from workbench.core.metrics import knn_accuracy
    from workbench.core.models import Readout

    def knn(a, b):
        return knn_accuracy(a, bank_labels, b, query_labels, 20, 0.07)

    mean, readout = bank.mean(0), Readout(bank.shape[1])
    readout.fit(bank)
    return {"raw": knn(bank, query), "centred": knn(bank - mean, query - mean), "whitened": knn(readout(bank), readout(query))}


def floors(which: str) -> dict:
    """kNN of raw pixels and of the untrained default encoder (same normalisation as training), read out three
    ways (``knn_three_ways``)."""
    from workbench.core.config import Config
    from workbench.core.data import load_splits
    from workbench.core.methods import build_network

    cfg = Config().with_overrides(data_overrides(which))
    tr, te = load_splits(cfg.data)
    torch.manual_seed(0)
    c, h = tr.images.shape[1], tr.images.shape[2]
    net = build_network(cfg, c, h).eval()
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in tr.mean_std())

    def feats(d):
        with torch.no_grad():
            return torch.cat([net((x.float() / 255 - mean) / std)[0] for x in d.images.split(1024)])

    labels = tr.labels, te.labels
    return {"raw_pixels": knn_three_ways(tr.images.flatten(1).float(), te.images.flatten(1).float(), *labels),
            "untrained": knn_three_ways(feats(tr), feats(te), *labels)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="fashion", help="fashion, cifar (from ../shared/data) or an image folder")
    ap.add_argument("--budget", type=float, default=600.0, help="training seconds a variant")
    ap.add_argument("--variants", default="before,default", help=f"comma-separated, from: {', '.join(VARIANTS)}")
    ap.add_argument("--eval-every", type=int, default=5, help="epochs between evaluations")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="an override applied to every variant, e.g. model.head_hidden=256 (repeatable)")
    ap.add_argument("--child")
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.data, a.child, a.budget, a.eval_every, a.set)))
        return
    names = a.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variant(s) {', '.join(unknown)}; choose from: {', '.join(VARIANTS)}")
    print(f"{a.data}: CPU ({os.cpu_count()} cores, torch {torch.__version__}), {a.budget:.0f} s of training a variant")
    res = {}
    for name in names:
        out = subprocess.run([sys.executable, __file__, "--child", name, "--data", a.data, "--budget", str(a.budget),
                              "--eval-every", str(a.eval_every), *[f"--set={x}" for x in a.set]], capture_output=True, text=True,
                             env=dict(os.environ, PYTHONWARNINGS="ignore"))
        if out.returncode:
            sys.exit(f"variant {name} failed:\n{out.stderr[-3000:]}")
        res[name] = json.loads(out.stdout.strip().splitlines()[-1])
        r = res[name]
        curve = "  ".join(f"{t:.0f}s:{k:.3f}" for t, _, k in r["points"])
        ro = r["read_outs"]
        print(f"{name:<10} {r['images_per_s']:>7.0f} img/s  final kNN {r['final_knn']:.4f} (raw {ro['raw']:.4f}, "
              f"centred {ro['centred']:.4f}, whitened {ro['whitened']:.4f})   {curve}", flush=True)
    fl = floors(a.data)
    for name in ("raw_pixels", "untrained"):
        print(f"{name.replace('_', ' '):<10} {'':>13}  kNN " + ", ".join(f"{k} {v:.4f}" for k, v in fl[name].items()))
    if "before" in res:
        for name, r in res.items():
            print(f"{name:<10} final kNN {r['final_knn'] - res['before']['final_knn']:+.4f} against 'before'")
    print(json.dumps({"results": res, "floors": fl}))


if __name__ == "__main__":
    main()
