import numpy as np
import pytest

from workbench.core.config import Config
from workbench.core.events import EvalEvent, StepEvent
from workbench.core.history import read_history, run_summary
from workbench.core.runfolder import read_view, save_view, write_status


def write_run(tmp_path, epochs=2):
    run = tmp_path / "2026-11-22_143015_bundled-ntxent"
    run.mkdir()
    Config().with_overrides([f"train.epochs={epochs}", "loss.temperature=0.3"]).save(run / "config.toml")
    (run / "metrics.csv").write_text(
        "time,epoch,step,loss,lr,images_per_s,knn_acc,linear_acc,alignment,uniformity,emb_std,eff_rank,eval_queries,term_pos,term_neg\n"
        "100.0,0,10,5.5,0.001,900,,,,,,,,-0.5,6.0\n"
        "105.0,0,20,5.0,0.001,950,,,,,,,,-0.5,5.5\n"
        "110.0,1,20,,,,0.61,,0.4,-2.1,0.03,12.5,,,\n"
        "120.0,1,40,4.2,0.0009,990,,,,,,,,-0.6,5.1\n"  # resumed here: rows before stay
        "130.0,2,40,,,,0.70,,0.5,-2.5,0.03,14.0,,,\n")
    return run


def test_history_rebuilds_steps_and_evaluations_in_order(tmp_path):
    events = read_history(write_run(tmp_path))
    assert [type(e) for e in events] == [StepEvent, StepEvent, EvalEvent, StepEvent, EvalEvent]
    assert [e.step for e in events] == [10, 20, 20, 40, 40]
    assert events[0].loss == pytest.approx(5.5) and events[0].terms == {"pos": -0.5, "neg": 6.0}
    assert events[2].metrics == {"knn_acc": 0.61, "alignment": 0.4, "uniformity": -2.1, "emb_std": 0.03, "eff_rank": 12.5}
    assert events[4].epoch == 2
    assert read_history(tmp_path / "missing") == []


def test_summary_names_state_metrics_and_duration(tmp_path):
    run = write_run(tmp_path, epochs=2)
    row = run_summary(run)
    assert row["status"] == "finished" and row["dataset"] == "bundled" and row["loss"] == "ntxent"
    assert row["temperature"] == pytest.approx(0.3) and row["final_knn"] == pytest.approx(0.70)
    assert row["best_knn"] == pytest.approx(0.70) and row["duration_s"] == pytest.approx(30.0) and row["step"] == 40
    folder = tmp_path / "folder_run"
    folder.mkdir()
    Config().with_overrides(["data.name=image_folder", f"data.root={tmp_path / 'my photos'}"]).save(folder / "config.toml")
    assert run_summary(folder)["dataset"] == "image_folder (my photos)"  # two folder runs are told apart
    (run / "run.log").write_text("ERROR the loss became nan at step 41\n")
    assert run_summary(run)["status"] == "failed"
    import json

    write_status(run, "running", 0)
    st = json.loads((run / "status.json").read_text())
    st["updated"] -= 90  # started 90 s ago
    (run / "status.json").write_text(json.dumps(st))
    write_status(run, "stopped", 40)
    assert run_summary(run)["status"] == "stopped"
    assert run_summary(run)["duration_s"] == pytest.approx(90, abs=2)  # time running, from status.json
    write_status(run, "failed", 41, "the loss became nan at step 41")
    assert run_summary(run)["error"] == "the loss became nan at step 41"
    (run / "config.toml").write_text("[data]\nnope = 1\n")
    assert run_summary(run)["status"] == "unreadable"


def test_unfinished_run_is_stopped_once_idle(tmp_path):
    import os

    run = write_run(tmp_path, epochs=9)
    assert run_summary(run)["status"] == "running"  # files just written
    for p in run.iterdir():
        os.utime(p, (1, 1))
    assert run_summary(run)["status"] == "stopped"


def test_view_round_trip(tmp_path):
    xy, idx = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32), np.array([3, 1, 4, 1, 5])
    assert read_view(tmp_path) is None
    save_view(tmp_path, xy, idx)
    got = read_view(tmp_path)
    assert np.array_equal(got[0], xy) and np.array_equal(got[1], idx)


def test_a_running_run_whose_process_is_gone_reads_interrupted(tmp_path):
    import json
    import subprocess
    import sys

    run = write_run(tmp_path, epochs=9)
    write_status(run, "running", 20)
    assert run_summary(run)["status"] == "running"  # this very process wrote it and is alive
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process that existed and ended, as a window killed with SIGTERM
    st = json.loads((run / "status.json").read_text())
    st.update(pid=gone.pid, updated=110.0)
    (run / "status.json").write_text(json.dumps(st))
    row = run_summary(run)
    assert row["status"] == "interrupted"
    assert row["duration_s"] == pytest.approx(20.0)  # 0 s recorded at start + metrics rows up to 130.0


def test_cli_run_duration_from_millisecond_times_and_steps_done(tmp_path):
    run = tmp_path / "2026-11-22_150000_bundled-ntxent"
    run.mkdir()
    Config().with_overrides(["train.epochs=3", "train.max_steps=15"]).save(run / "config.toml")
    (run / "metrics.csv").write_text("time,epoch,step,loss,knn_acc,eval_queries\n"
                                     "1763900000.125,1,1,5.5,,\n1763900001.5,1,10,5.0,,\n1763900002.875,1,15,4.9,,\n"
                                     "1763900004.250,1,15,,0.4,\n")
    row = run_summary(run)  # a CLI run: no status.json
    assert row["duration_s"] == pytest.approx(4.125)
    assert row["epochs"] == 3 and row["epochs_done"] == 1 and row["max_steps"] == 15 and row["step"] == 15
