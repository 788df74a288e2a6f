"""A sweep's cost beyond its trials: 4 temperatures x 2 losses on Fashion-MNIST, a fixed training budget a trial.

    python benchmarks/sweep.py [--budget 60] [--data ../shared/data/fashion-mnist] [--out DIR]

Every trial trains small_cnn for ``--budget`` seconds of training steps (train.time_budget_s) on the
60,000 training images, then is evaluated (kNN, k=20, bank of 10,000 training images, 2,000 test
images). The sweep should end within trials x budget + overhead; the overhead a trial (data, model
and optimiser set-up, evaluation, checkpoint, trials.csv) is printed beside the baseline measured in
the same run: one plain ``train()`` of the same config and budget, which loads its own data.
Pruning is off so that every trial spends its whole budget.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "fashion-mnist"

SWEEP = """
[sweep]
method = "grid"
metric = "final_knn"
prune = false

[sweep.params]
loss.name = ["ntxent", "dcl"]
loss.temperature = [0.05, 0.1, 0.2, 0.5]
"""


def base_config(data: str, budget: float):
    from workbench.core.config import Config

    return Config().with_overrides([
        "data.name=fashion_mnist", f"data.root={data}", "train.batch_size=256", "optim.lr=0.002", "optim.warmup_epochs=0.5",
        "train.epochs=50", f"train.time_budget_s={budget}", "train.log_every=20",  # the time budget ends each trial
        "eval.every=1000", "eval.bank_size=10000", "eval.test_size=2000", "eval.embed_points=500"])


def baseline(cfg, out: Path) -> float:
    """Wall seconds of one plain run of the same budget (data loaded by the run itself)."""
    from workbench.core.train import train

    t0 = time.perf_counter()
    for _ in train(cfg.with_overrides(["loss.temperature=0.2"]), runs_root=out):
        pass
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=60.0, help="training seconds a trial")
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--out", help="keep the sweep folder here (default: a temporary folder)")
    args = ap.parse_args()
    if not Path(args.data).is_dir():
        print(f"error: Fashion-MNIST not found in {args.data}; give --data", file=sys.stderr)
        return 2
    from workbench.core.config import tomllib

    from workbench.core import sweep as S

    out = Path(args.out or tempfile.mkdtemp(prefix="wb-sweep-bench-"))
    cfg = base_config(args.data, args.budget)
    spec = S.SweepSpec.from_dict(tomllib.loads(SWEEP)["sweep"])
    print(f"baseline: one plain run of {args.budget:.0f} s training ...", flush=True)
    lone = baseline(cfg, out / "baseline")
    print(f"  {lone:.1f} s wall: {lone - args.budget:.1f} s beyond its budget\n", flush=True)
    t0 = time.perf_counter()
    for ev in S.run_sweep(cfg, spec, out / "sweep"):
        line = S.describe(ev)
        if line:
            print(line, flush=True)
        if isinstance(ev, S.SweepDone):
            done = ev
    wall = time.perf_counter() - t0
    n = len(done.trials)
    print("\n" + S.format_table(done.table, spec))
    budget_total = n * args.budget
    print(f"\n{n} trials x {args.budget:.0f} s = {budget_total:.0f} s of training; the sweep took {wall:.0f} s wall")
    print(f"overhead: {wall - budget_total:.0f} s in all, {(wall - budget_total) / n:.1f} s a trial "
          f"(baseline, a lone run: {lone - args.budget:.1f} s beyond its budget)")
    print("per trial (wall - budget): " + ", ".join(f"{t.seconds - args.budget:.1f}" for t in done.trials))
    print(f"sweep folder: {out / 'sweep'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
