"""A run folder written by version 0.1.0 (tests/fixtures/run_0.1.0: 2 epochs of a 4-wide small_cnn on 256 bundled
images at 16x16, with its config.toml, metrics.csv, run.log, status.json, embedding_view.npz and checkpoints/last.pt,
as that version wrote them) opens, resumes and exports with today's code, and its state reads as it was."""
import json
import os
import shutil
from pathlib import Path

import pytest

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "run_0.1.0" / "2026-12-07_232540_bundled-ntxent"


@pytest.fixture
def old_run(tmp_path):
    run = tmp_path / "runs" / FIXTURE.name
    shutil.copytree(FIXTURE, run)
    return run


def test_an_old_run_folder_opens(old_run):
    import workbench as wb
    from workbench.core.history import read_history, run_summary
    from workbench.core.runfolder import read_view

    run = wb.load_run(old_run)
    assert run.config.train.epochs == 2 and run.config.model.params["width"] == 4
    assert [r["step"] for r in run.metrics if r.get("knn_acc") is not None] == [4, 8]
    assert run.final["knn_acc"] == pytest.approx(0.585938)
    assert len(read_history(old_run)) == 7
    row = run_summary(old_run)
    assert row["status"] == "finished" and row["date"] == "2026-12-07 23:25:40" and row["step"] == 8
    assert row["duration_s"] == pytest.approx(2.104)
    xy, rows = read_view(old_run)
    assert xy.shape == (64, 2) and rows.tolist() == list(range(64))
    emb = run.embed(run.model.splits()[1].images[:5])
    assert emb.shape == (5, 64)


def test_an_old_run_folder_resumes(old_run):
    from workbench.core.events import DoneEvent, RunStarted
    from workbench.core.history import run_summary
    from workbench.core.runs import read_metrics
    from workbench.core.train import train

    path = old_run / "config.toml"
    path.write_text(path.read_text().replace("epochs = 2", "epochs = 3"))  # train longer: resume allows it
    events = list(train(None, resume=old_run))
    assert events[0].start_step == 8 and isinstance(events[0], RunStarted)
    assert isinstance(events[-1], DoneEvent) and events[-1].reason == "finished" and events[-1].step == 12
    assert max(r["step"] for r in read_metrics(old_run)) == 12
    assert run_summary(old_run)["status"] == "finished"


def test_an_old_run_folder_exports(old_run):
    import workbench as wb

    paths = wb.load_run(old_run).export("safetensors")
    assert paths[0] == old_run / "export" / "safetensors" / "encoder.safetensors" and paths[0].is_file()
    card = json.loads((old_run / "export" / "safetensors" / "model_card.json").read_text())
    assert card["run"] == FIXTURE.name
    with pytest.raises(wb.ConfigError, match="already exists"):
        wb.load_run(old_run).export("safetensors")


def test_the_state_of_old_folders_reads_as_it_was(old_run):
    """A folder from before status.json: finished by its metrics, failed by its run.log, stopped when idle."""
    from workbench.core.history import run_summary

    (old_run / "status.json").unlink()
    assert run_summary(old_run)["status"] == "finished"
    path = old_run / "config.toml"
    path.write_text(path.read_text().replace("epochs = 2", "epochs = 3"))
    for p in old_run.iterdir():
        os.utime(p, (1, 1))
    assert run_summary(old_run)["status"] == "stopped"
    with open(old_run / "run.log", "a") as f:
        f.write("2026-12-07 23:26:00 ERROR the loss became non-finite at step 9\nTraceback (most recent call last):\n")
    assert run_summary(old_run)["status"] == "failed"
