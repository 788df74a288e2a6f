import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomli_w

from workbench.core import sweep as S
from workbench.core.config import Config, tomllib
from workbench.core.events import RunStarted
from workbench.core.registry import ConfigError
from workbench.core.runs import read_metrics

TINY = """
[data]
subset = 128
[train]
epochs = {epochs}
batch_size = 32
log_every = 1
[eval]
bank_size = 128
test_size = 100
embed_points = 50
"""


def write(tmp_path, sweep: str, epochs: int = 1, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(TINY.format(epochs=epochs) + sweep)
    return path


def spec_of(sweep_toml: str) -> S.SweepSpec:
    from workbench.core.config import tomllib

    return S.SweepSpec.from_dict(tomllib.loads(sweep_toml)["sweep"])


def events_of(base, spec, out, **kw):
    return list(S.run_sweep(base, spec, out, **kw))


# ----- expansion -----
def test_grid_is_the_product_of_the_lists_times_the_seeds():
    spec = spec_of('[sweep]\nseeds = [3, 4]\n[sweep.params]\nloss.name = ["ntxent", "dcl"]\nloss.temperature = [0.1, 0.5, 1.0]')
    trials = S.plan(Config(), spec)
    got = [(t.params["loss.name"], t.params["loss.temperature"], t.seed) for t in trials]
    want = [("ntxent", 0.1, 3), ("ntxent", 0.1, 4), ("ntxent", 0.5, 3), ("ntxent", 0.5, 4), ("ntxent", 1.0, 3), ("ntxent", 1.0, 4),
            ("dcl", 0.1, 3), ("dcl", 0.1, 4), ("dcl", 0.5, 3), ("dcl", 0.5, 4), ("dcl", 1.0, 3), ("dcl", 1.0, 4)]
    assert got == want
    assert [t.id for t in trials] == list(range(12)) and [t.point for t in trials] == [i // 2 for i in range(12)]
    for t in trials:  # each trial's config carries its values, and the loss's other parameters are its own defaults
        got = (t.config.loss.name, t.config.loss.params["temperature"], t.config.train.seed)
        assert got == (t.params["loss.name"], t.params["loss.temperature"], t.seed)
    assert trials[6].config.loss.params == {"temperature": 0.1, "weighted": False, "sigma": 0.5}


def test_grid_ranges_are_evenly_spaced_points():
    assert S.Range(1e-4, 1e-2, num=3, log=True).grid() == [1e-4, 1e-3, 1e-2]
    assert S.Range(0.0, 1.0, num=5).grid() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert S.Range(32, 256, num=4, log=True, int=True).grid() == [32, 64, 128, 256]
    spec = spec_of('[sweep]\n[sweep.params]\noptim.lr = {low = 0.001, high = 0.004, num = 4}')
    assert [t.config.optim.lr for t in S.plan(Config(), spec)] == [0.001, 0.002, 0.003, 0.004]


def test_random_draws_count_distinct_points_inside_the_ranges_reproducibly():
    text = ('[sweep]\nmethod = "random"\ncount = 6\nsampler_seed = 7\n[sweep.params]\n'
            'optim.lr = {low = 1e-4, high = 1e-2, log = true}\naugment.preset = ["simclr_small_grey", "none"]\n'
            'train.batch_size = {low = 32, high = 128, int = true}')
    a, b = S.plan(Config(), spec_of(text)), S.plan(Config(), spec_of(text))
    assert [t.params for t in a] == [t.params for t in b] and len(a) == 6
    assert len({tuple(t.params.values()) for t in a}) == 6
    for t in a:
        assert 1e-4 <= t.params["optim.lr"] <= 1e-2 and t.config.optim.lr == t.params["optim.lr"]
        assert t.params["augment.preset"] in ("simclr_small_grey", "none")
        assert isinstance(t.params["train.batch_size"], int) and 32 <= t.params["train.batch_size"] <= 128
    other = S.plan(Config(), spec_of(text.replace("sampler_seed = 7", "sampler_seed = 8")))
    assert [t.params for t in other] != [t.params for t in a]
    # log-uniform: about half the draws below the geometric midpoint 1e-3 (a uniform draw would put ~9% there)
    many = S.points(Config(), spec_of(text.replace("count = 6", "count = 400")))
    assert 0.4 < sum(p["optim.lr"] < 1e-3 for p in many) / len(many) < 0.6


# ----- bad input: one line, nothing created -----
@pytest.mark.parametrize("sweep_toml, needle", [
    ('[sweep]\nmethd = "grid"\n[sweep.params]\nloss.temperature = [0.1]', "sweep.methd: unknown key"),
    ('[sweep]\n[sweep.params]\nloss.temprature = [0.1, 0.2]', "loss.temprature: unknown parameter of loss 'ntxent'"),
    ('[sweep]\n[sweep.params]\ntrain.epoch = [1, 2]', "train.epoch: unknown key"),
    ('[sweep]\n[sweep.params]\nlosses.temperature = [0.1]', "sweep.params.losses.temperature: expected section.key"),
    ('[sweep]\n[sweep.params]\nloss.temperature = [0.1, -1.0]', "loss.temperature = -1.0"),
    ('[sweep]\n[sweep.params]\nloss.name = ["ntxent", "simclr"]', "unknown loss 'simclr'"),
    ('[sweep]\n[sweep.params]\nloss.temperature = []', "sweep.params.loss.temperature: empty list"),
    ('[sweep]\n[sweep.params]\n', "sweep.params: no parameters to vary"),
    ('[sweep]\nmethod = "random"\n[sweep.params]\nloss.temperature = [0.1]', "sweep.count"),
    ('[sweep]\nmethod = "bayes"\n[sweep.params]\nloss.temperature = [0.1]', "sweep.method: choose from"),
    ('[sweep]\nseeds = []\n[sweep.params]\nloss.temperature = [0.1]', "sweep.seeds"),
    ('[sweep]\nmetric = "knn"\n[sweep.params]\nloss.temperature = [0.1]', "sweep.metric: choose from"),
    ('[sweep]\nmetric = "best_linear"\n[sweep.params]\nloss.temperature = [0.1]', "eval.linear_probe = true"),
    ('[sweep]\n[sweep.params]\noptim.lr = {low = 0.01, high = 0.001, num = 2}', "low < high"),
    ('[sweep]\n[sweep.params]\noptim.lr = {low = 0.001, high = 0.01}', "needs num"),
    ('[sweep]\n[sweep.params]\ntrain.seed = [1, 2]', "sweep.seeds"),
])
def test_bad_sweeps_are_one_clear_line_before_anything_starts(tmp_path, sweep_toml, needle):
    path = write(tmp_path, sweep_toml)
    with pytest.raises(ConfigError) as err:
        base, spec = S.load(path)
        next(S.run_sweep(base, spec, tmp_path / "out"))
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_a_grid_above_the_limit_asks_first(tmp_path):
    base, spec = S.load(write(tmp_path, '[sweep]\nmax_trials = 5\nseeds = [0, 1]\n[sweep.params]\nloss.temperature = [0.1, 0.2, 0.3]'))
    with pytest.raises(S.NeedsConfirmation, match="6 trials is more than sweep.max_trials = 5"):
        next(S.run_sweep(base, spec, tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    gen = S.run_sweep(base, spec, tmp_path / "out", confirm=True)
    started = next(gen)
    gen.close()
    assert isinstance(started, S.SweepStarted) and started.n_trials == 6


def test_a_sweep_folder_of_another_config_is_refused(tmp_path):
    base, spec = S.load(write(tmp_path, '[sweep]\n[sweep.params]\nloss.temperature = [0.1, 0.2]'))
    S.open_sweep_dir(tmp_path / "out", base, spec)
    S.open_sweep_dir(tmp_path / "out", base, spec)  # the same sweep reopens (resume)
    with pytest.raises(ConfigError, match=r"written by another config \(optim.lr: 0.002 there, 0.01 here\)"):
        S.open_sweep_dir(tmp_path / "out", base.replace("optim", lr=0.01), spec)
    S.open_sweep_dir(tmp_path / "out", base, spec_of('[sweep]\nmax_trials = 500\n[sweep.params]\nloss.temperature = [0.1, 0.2]'))
    other = spec_of('[sweep]\n[sweep.params]\nloss.temperature = [0.1, 0.3]')
    with pytest.raises(ConfigError, match="sweep.params.loss.temperature"):
        S.open_sweep_dir(tmp_path / "out", base, other)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a sweep folder"):
        S.open_sweep_dir(tmp_path / "full", base, spec)


def test_set_overrides_the_sweep_section_as_well_as_the_base_config(tmp_path):
    path = write(tmp_path, '[sweep]\nseeds = [0, 1]\n[sweep.params]\nloss.name = ["ntxent", "dcl"]\nloss.temperature = [0.1, 0.2]')
    base, spec = S.load(path, ["sweep.seeds=[5]", "sweep.params.loss.temperature=[0.3]", "train.epochs=2", "sweep.metric=final_knn"])
    assert spec.seeds == (5,) and spec.params == {"loss.name": ("ntxent", "dcl"), "loss.temperature": (0.3,)}
    assert spec.metric == "final_knn" and base.train.epochs == 2
    assert [(t.params["loss.name"], t.seed) for t in S.plan(base, spec)] == [("ntxent", 5), ("dcl", 5)]
    for bad, needle in (("sweep.seeds=[]", "sweep.seeds"), ("sweep.bogus=1", "sweep.bogus: unknown key"),
                        ("sweep.params.loss=[1]", "expected sweep.KEY=VALUE"),
                        ("sweep.params.loss.temperature.x=1", "sweep.params.loss.temperature is a value, not a table")):
        with pytest.raises(ConfigError, match=needle):
            S.load(path, [bad])


def test_a_plain_run_of_a_sweep_config_trains_its_base_config(tmp_path):
    cfg = Config.load(write(tmp_path, '[sweep]\n[sweep.params]\nloss.temperature = [0.05, 0.3]'))
    assert cfg.data.subset == 128 and cfg.loss.params["temperature"] == 0.1  # the default, not a swept value


# ----- ranking -----
def trial(i, point, seed, metric, status="finished", temp=0.1):
    return S.Trial(i, point, seed, {"loss.temperature": temp}, status, metric, f"run{i}")


def test_ranked_table_orders_points_by_mean_over_seeds_with_the_spread():
    spec = spec_of('[sweep]\n[sweep.params]\nloss.temperature = [0.1, 0.2, 0.5, 1.0]')
    trials = [trial(0, 0, 0, 0.70, temp=0.1), trial(1, 0, 1, 0.80, temp=0.1),    # mean 0.75, std 0.0707
              trial(2, 1, 0, 0.78, temp=0.2), trial(3, 1, 1, 0.76, temp=0.2),    # mean 0.77, std 0.0141
              trial(4, 2, 0, 0.90, temp=0.5), trial(5, 2, 1, 0.60, "pruned", temp=0.5),  # a pruned seed: after complete points
              trial(6, 3, 0, 0.50, "pruned", temp=1.0), trial(7, 3, 1, None, "failed", temp=1.0)]
    rows = S.ranked(trials, spec)
    assert [r["params"]["loss.temperature"] for r in rows] == [0.2, 0.1, 0.5, 1.0]
    assert rows[0]["mean"] == pytest.approx(0.77) and rows[0]["std"] == pytest.approx(math.sqrt(0.0002))
    assert rows[1]["mean"] == pytest.approx(0.75) and rows[1]["std"] == pytest.approx(0.0707107, abs=1e-6)
    assert rows[2]["n"] == 1 and rows[2]["std"] is None and rows[2]["status"] == "1 finished, 1 pruned"
    assert rows[3]["mean"] is None and rows[3]["status"] == "1 pruned, 1 failed"
    table = S.format_table(rows, spec).splitlines()
    assert table[0].split() == ["rank", "loss.temperature", "best_knn", "±", "std", "seeds", "trials"]
    assert table[2].split()[:5] == ["1", "0.2", "0.7700", "0.0141", "2/2"]
    assert table[4].split()[:5] == ["3", "0.5", "0.9000", "—", "1/2"]  # one finished seed: no spread to show
    loss_spec = spec_of('[sweep]\nmetric = "final_loss"\n[sweep.params]\nloss.temperature = [0.1, 0.2, 0.5, 1.0]')
    assert [r["params"]["loss.temperature"] for r in S.ranked(trials[:4], loss_spec)] == [0.1, 0.2]  # lower is better


def test_run_metric_and_intermediate_values_from_metrics_rows():
    def row(epoch, step, loss=None, knn=None):
        return {"epoch": epoch, "step": step, "loss": loss, "knn_acc": knn}

    rows = [row(1, 1, loss=5.0), row(1, 2, loss=4.0), row(1, 2, knn=0.6), row(2, 3, loss=3.0), row(2, 4, loss=2.5),
            row(2, 4, knn=0.8), row(2, 4, knn=0.7)]  # the last: an evaluation after a stop at the same step
    assert S.run_metric(rows, "final_knn") == 0.7 and S.run_metric(rows, "best_knn") == 0.8
    assert S.run_metric(rows, "final_loss") == 2.5 and S.run_metric(rows, "best_loss") == 2.5
    assert S.run_metric(rows, "best_linear") is None
    assert S.intermediate(rows, "best_knn") == {1: 0.6, 2: 0.7}
    assert S.intermediate(rows, "final_loss") == {1: 4.5, 2: 2.75}  # mean loss of the steps before each evaluation


# ----- pruning -----
def test_median_rule_prunes_below_the_median_of_finished_trials_at_the_same_evaluation():
    rule = S.MedianRule(maximize=True, startup=2, warmup=1)
    rule.finish(0, {1: 0.5, 2: 0.6, 3: 0.7}, 0.7)
    assert not rule.should_prune(9, {1: 0.1, 2: 0.1})  # only one finished trial so far
    rule.finish(1, {1: 0.7, 2: 0.8, 3: 0.9}, 0.9)
    assert not rule.should_prune(9, {1: 0.1})  # the warm-up evaluation is never pruned
    assert rule.should_prune(9, {1: 0.1, 2: 0.69})  # median at evaluation 2 is 0.7
    assert not rule.should_prune(9, {1: 0.1, 2: 0.71})
    assert not rule.should_prune(9, {1: 0.75, 2: 0.69})  # its best value so far counts (as in Optuna)
    low = S.MedianRule(maximize=False, startup=2, warmup=0)
    low.finish(0, {1: 3.0}, 3.0)
    low.finish(1, {1: 4.0}, 4.0)
    assert low.should_prune(9, {1: 3.6}) and not low.should_prune(9, {1: 3.4})


def test_median_rule_decides_as_optunas_median_pruner():
    pytest.importorskip("optuna")
    import random

    rng = random.Random(0)
    ours, theirs = S.MedianRule(True, 3, 1), S.OptunaMedian(True, 3, 1)
    for trial_id in range(12):
        series = {}
        for epoch in range(1, 5):
            series[epoch] = rng.random()
            a, b = ours.should_prune(trial_id, series), theirs.should_prune(trial_id, series)
            assert a == b, (trial_id, epoch)
            if a:
                ours.drop(trial_id, True, series)
                theirs.drop(trial_id, True, series)
                break
        else:
            ours.finish(trial_id, series, series[4])
            theirs.finish(trial_id, series, series[4])


def test_a_hopeless_trial_is_pruned_and_recorded(tmp_path):
    # ranked by the loss: a learning rate of 1e-7 keeps NT-Xent near its starting value while 3e-3 lowers it
    # (first epoch's mean about 3.8 against 3.95 with 32 images a batch)
    base, spec = S.load(write(tmp_path, '[sweep]\nmetric = "final_loss"\nprune_startup = 1\nprune_warmup = 0\n'
                                        '[sweep.params]\noptim.lr = [0.003, 1e-7]', epochs=2))
    evs = events_of(base, spec, tmp_path / "out", pruner="median")
    done = evs[-1]
    assert isinstance(done, S.SweepDone) and [t.status for t in done.trials] == ["finished", "pruned"]
    pruned = done.trials[1]
    evals = [r for r in read_metrics(tmp_path / "out" / pruned.run_dir) if r["knn_acc"] is not None]
    assert [r["epoch"] for r in evals] == [1]  # stopped at its first evaluation, before the second epoch
    csv_text = (tmp_path / "out" / "trials.csv").read_text()
    assert ",pruned," in csv_text and "below the median at evaluation 1" in csv_text
    assert done.table[0]["params"] == {"optim.lr": 0.003}


# ----- running, resuming -----
def test_grid_sweep_runs_each_trial_as_a_run_folder_with_data_loaded_once(tmp_path, monkeypatch):
    from workbench.core import data

    calls = []
    real = data.load_splits
    monkeypatch.setattr(data, "load_splits", lambda *a, **k: calls.append(1) or real(*a, **k))
    base, spec = S.load(write(tmp_path, '[sweep]\nprune = false\n[sweep.params]\nloss.name = ["ntxent", "dcl"]'))
    evs = events_of(base, spec, tmp_path / "out")
    assert len(calls) == 1
    kinds = [type(e).__name__ for e in evs]
    assert kinds[0] == "SweepStarted" and kinds[-1] == "SweepDone" and kinds.count("TrialFinished") == 2
    done = evs[-1]
    runs = sorted(p.name for p in (tmp_path / "out").iterdir() if (p / "config.toml").is_file())
    assert sorted(t.run_dir for t in done.trials) == runs and len(runs) == 2
    for t in done.trials:
        cfg = Config.load(tmp_path / "out" / t.run_dir / "config.toml")
        assert (cfg.loss.name, cfg.train.seed) == (t.params["loss.name"], t.seed)
        assert t.metric == S.run_metric(read_metrics(tmp_path / "out" / t.run_dir), "best_knn")
    best = max(done.trials, key=lambda t: t.metric)
    assert [r["n"] for r in done.table] == [1, 1] and done.table[0]["params"] == best.params and done.table[0]["mean"] == best.metric
    assert S.read_trials(tmp_path / "out", spec) == [S.Trial(t.id, t.point, t.seed, t.params, t.status, pytest.approx(t.metric, rel=1e-5),
                                                            t.run_dir, pytest.approx(t.seconds, abs=0.06), t.message) for t in done.trials]
    again = events_of(base, spec, tmp_path / "out")  # all done: nothing reruns
    assert [type(e).__name__ for e in again] == ["SweepStarted", "SweepDone"] and again[0].done == 2


def test_sweep_resumes_after_kill_without_rerunning_finished_trials(tmp_path):
    path = write(tmp_path, '[sweep]\nprune = false\n[sweep.params]\nloss.temperature = [0.2, 0.5]', epochs=2)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "sweep", str(path), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    for line in proc.stdout:  # the second trial has started ...
        if line.startswith("trial 2/2 started"):
            break
    deadline = time.monotonic() + 120
    while len(list(out.glob("*/checkpoints/last.pt"))) < 2:  # ... and written its first checkpoint: kill -9
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    base, spec = S.load(path)
    before = S.read_trials(out, spec)
    assert [t.status for t in before] == ["finished", "running"]
    first_metrics = (out / before[0].run_dir / "metrics.csv").read_bytes()
    evs = events_of(base, spec, out)
    started = [e for e in evs if isinstance(e, S.TrialStarted)]
    assert [(e.trial.id, e.resumed) for e in started] == [(1, True)]
    run_started = next(e.event for e in evs if isinstance(e, S.RunEvent) and isinstance(e.event, RunStarted))
    assert run_started.start_step > 0 and Path(run_started.run_dir).name == before[1].run_dir
    assert [t.status for t in evs[-1].trials] == ["finished", "finished"]
    assert (out / before[0].run_dir / "metrics.csv").read_bytes() == first_metrics
    assert len([p for p in out.iterdir() if p.is_dir()]) == 2  # no extra run folder


def test_parallel_runs_one_process_per_device(tmp_path):
    base, spec = S.load(write(tmp_path, '[sweep]\nprune = false\n[sweep.params]\nloss.temperature = [0.2, 0.5]\n'))
    base = base.replace("train", threads=1)
    evs = events_of(base, spec, tmp_path / "out", devices=["", ""])
    done = evs[-1]
    assert [t.status for t in done.trials] == ["finished", "finished"]
    pids = {e.trial: e.event.run_dir for e in evs if isinstance(e, S.RunEvent) and isinstance(e.event, RunStarted)}
    assert sorted(pids) == [0, 1] and len(set(pids.values())) == 2
    firsts = [i for i, e in enumerate(evs) if isinstance(e, S.TrialStarted)]
    finishes = [i for i, e in enumerate(evs) if isinstance(e, S.TrialFinished)]
    assert max(firsts) < min(finishes)  # both were running at once
    for t in done.trials:
        assert t.metric == pytest.approx(S.run_metric(read_metrics(tmp_path / "out" / t.run_dir), "best_knn"), rel=1e-5)


def test_tpe_sweep_asks_optuna_for_each_point(tmp_path):
    pytest.importorskip("optuna")
    base, spec = S.load(write(tmp_path, '[sweep]\nmethod = "tpe"\ncount = 3\nprune = false\n'
                                        '[sweep.params]\nloss.temperature = {low = 0.05, high = 1.0, log = true}'))
    done = events_of(base.replace("train", max_steps=2), spec, tmp_path / "out")[-1]
    assert len(done.trials) == 3 and all(t.status == "finished" for t in done.trials)
    assert all(0.05 <= t.params["loss.temperature"] <= 1.0 for t in done.trials)
    assert len({t.params["loss.temperature"] for t in done.trials}) == 3
    assert all(len(repr(t.params["loss.temperature"]).lstrip("0.")) <= 6 for t in done.trials)  # 6 figures, as random gives


def test_cli_sweep_prints_a_line_per_trial_and_the_ranked_table(tmp_path, capsys):
    from workbench.cli import main

    path = write(tmp_path, '[sweep]\nmax_trials = 1\nprune = false\n[sweep.params]\nloss.temperature = [0.2, 0.5]')
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--set", "train.max_steps=2"]) == 2
    assert "2 trials is more than sweep.max_trials = 1" in capsys.readouterr().err
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--set", "train.max_steps=2", "--set", "sweep.seeds=[3]",
                 "--yes"]) == 0
    cap = capsys.readouterr()
    text = cap.out
    assert "trial 1/2 finished: loss.temperature=0.2 seed=3" in text and "trial 2/2 finished" in text
    assert "rank  loss.temperature  best_knn" in text
    warm = [line for line in cap.err.splitlines() if "optim.warmup_epochs" in line]
    assert len(warm) == 1 and warm[0].startswith("warning: ")  # the same warning of every trial: once a sweep
    preset = [line for line in cap.err.splitlines() if "augment.preset auto" in line]
    assert len(preset) == 1 and preset[0].startswith("note: ")  # a decision stated, not a warning
    assert all("optim.warmup_epochs" in p.read_text() for p in (tmp_path / "out").glob("*/run.log"))  # each run keeps its own
    assert len(list((tmp_path / "out").glob("*/run.log"))) == 2
    os.remove(tmp_path / "out" / "sweep.toml")
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--yes"]) == 2
    assert "not a sweep folder" in capsys.readouterr().err


def test_a_resumed_tpe_sweep_runs_the_seeds_a_point_had_not_started(tmp_path):
    pytest.importorskip("optuna")
    base, spec = S.load(write(tmp_path, '[sweep]\nmethod = "tpe"\ncount = 2\nseeds = [0, 1]\n'
                                        '[sweep.params]\nloss.temperature = {low = 0.05, high = 1.0}'))
    out = S.open_sweep_dir(tmp_path / "out", base, spec)
    S.write_trials(out, [S.Trial(0, 0, 0, {"loss.temperature": 0.3}, "finished", 0.5, "run0")], spec)  # killed before seed 1
    gen = S.run_sweep(base, spec, out)
    started = next(gen)
    gen.close()
    assert [(t.id, t.point, t.seed, t.params, t.status) for t in started.trials] == [
        (0, 0, 0, {"loss.temperature": 0.3}, "finished"), (1, 0, 1, {"loss.temperature": 0.3}, "")]


@pytest.mark.parametrize("prune", [True, False])
def test_a_pruned_sweep_evaluates_every_trial_at_the_same_epochs(tmp_path, prune):
    """The median rule compares trials at the same evaluations, so pruning turns off the skipping of costly
    evaluations (eval.max_share = 1) and says so; without pruning the config is left as it is. A sweep folder
    written before eval.max_share existed resumes."""
    path = write(tmp_path, f'[sweep]\nprune = {str(prune).lower()}\n[sweep.params]\nloss.temperature = [0.2]')
    base, spec = S.load(path)
    assert base.eval.max_share == 0.2
    evs = events_of(base, spec, tmp_path / "out")
    started = evs[0]
    run_cfg = tomllib.loads((tmp_path / "out" / evs[-1].trials[0].run_dir / "config.toml").read_text())
    assert run_cfg["eval"]["max_share"] == (1.0 if prune else 0.2)
    assert ("eval.max_share = 1 instead of 0.2" in started.note) == prune
    marker = tmp_path / "out" / "sweep.toml"
    old = tomllib.loads(marker.read_text())
    del old["eval"]["max_share"]  # as written before the key existed
    marker.write_text(tomli_w.dumps(old))
    assert isinstance(events_of(base, spec, tmp_path / "out")[-1], S.SweepDone)
