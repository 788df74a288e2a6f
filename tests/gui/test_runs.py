"""Runs in the window: pause/stop latency and feedback, resumed history, opened-run orientation, export, embedding view."""
import errno
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt


def test_pause_and_stop_answer_at_once_and_take_effect_within_a_second(window, qtbot):
    window.setup.epochs.setValue(20)
    qtbot.waitUntil(lambda: window.setup.cfg.train.epochs == 20)
    window.start_btn.trigger()
    qtbot.waitUntil(lambda: len(window.plots.steps) >= 2, timeout=60000)
    t0 = time.perf_counter()
    with qtbot.waitSignal(window.pauseChanged, timeout=10000) as p:
        window.pause_btn.trigger()
        assert not window.pause_btn.isEnabled() and "pausing" in window.status.text()  # feedback before the loop answers
    assert p.args == [True] and time.perf_counter() - t0 < 1.5
    step = window.plots.steps[-1]
    qtbot.wait(400)
    window._on_steps()
    assert window.plots.steps[-1] == step  # really paused
    with qtbot.waitSignal(window.pauseChanged, timeout=10000):
        window.resume_btn.trigger()
    qtbot.waitUntil(lambda: window.plots.steps[-1] > step, timeout=30000)
    t0 = time.perf_counter()
    with qtbot.waitSignal(window.trainingDone, timeout=30000) as done:
        window.stop()
        assert "stopping" in window.status.text() and not window.stop_btn.isEnabled()
    assert done.args[0].reason == "stopped"
    from workbench.core.runs import load_run_checkpoint

    saved = load_run_checkpoint(done.args[0].run_dir)[0]["step"]
    assert done.args[0].step == saved and window.progress.format() == f"stopped: step {saved}/{window.session.progress.total_steps}"
    qtbot.waitUntil(lambda: not window.running, timeout=10000)
    assert time.perf_counter() - t0 < 10.0  # a step, a final evaluation on 300 images and a checkpoint


def _train_some(window, steps: int):
    from workbench.core.train import train

    cfg = window.setup.build_config().with_overrides([f"train.max_steps={steps}", "train.epochs=3"])
    return [e for e in train(cfg, runs_root=window.runs_root)][0].run_dir


def test_resumed_run_shows_its_whole_history(window, qtbot, monkeypatch):
    import workbench.core.setup as setup_module
    from workbench.core.history import read_history
    from workbench.core.runfolder import write_status

    from workbench.core.config import Config

    run = _train_some(window, 20)  # stops after 20 of 48 steps
    write_status(run, "stopped", 20)
    cfg_path = Path(run) / "config.toml"
    Config.load(cfg_path).with_overrides(["train.max_steps=40"]).save(cfg_path)  # train it longer: there is more to do
    before = [e.step for e in read_history(run) if hasattr(e, "loss")]
    assert before and before[-1] == 20
    s = window.setup
    s.loss.setCurrentText("dcl")  # the panel has moved on since that run
    s.epochs.setValue(7)

    def no_second_load(*a, **k):
        raise AssertionError("the resumed run loaded the data although the panel had them")

    monkeypatch.setattr(setup_module, "load_splits", no_second_load)
    window.start(resume=run)
    assert s.loss.currentText() == "ntxent" and s.epochs.value() == 3  # the greyed panel shows what is trained
    qtbot.waitUntil(lambda: window.run_dir == run, timeout=60000)
    window.plots.redraw()
    assert window.plots.steps[: len(before)] == before  # earlier steps are on the curves from the start
    xs, _ = window.plots.raw.getData()
    assert xs is not None and xs[0] == before[0]
    window.stop()
    qtbot.waitUntil(lambda: not window.running, timeout=60000)


def test_opened_run_keeps_the_orientation_of_the_live_view(window, qtbot):
    window.start_btn.trigger()
    with qtbot.waitSignal(window.trainingDone, timeout=120000):
        pass
    qtbot.waitUntil(lambda: not window.running, timeout=10000)
    live_xy, live_rows = window.embedding.pca_view()
    run = window.run_dir
    assert (Path(run) / "embedding_view.npz").is_file()
    with qtbot.waitSignal(window.runOpened, timeout=60000):
        window.open_run(run)
    ev = window.embedding.latest
    assert np.array_equal(ev.indices, live_rows)  # the same points
    opened = window.embedding.pca_xy
    # the same network and points: after alignment the layout matches the live one closely, never mirrored
    err = np.linalg.norm(opened - live_xy) / np.linalg.norm(live_xy - live_xy.mean(0))
    assert err < 0.05


def test_export_writes_into_a_new_folder_and_keeps_the_other_formats_files(window, qtbot, tmp_path, monkeypatch):
    run = _train_some(window, 4)
    out = {}
    for fmt in ("safetensors", "npz"):
        with qtbot.waitSignal(window.exported, timeout=120000) as e:
            window.export_run(run, fmt, str(Path(run) / "export" / fmt))
        out[fmt] = e.args[0]
    files = [Path(p) for paths in out.values() for p in paths]
    assert all(p.is_file() for p in files)  # the first format's files (and its model card) are still there
    assert (Path(run) / "export" / "safetensors" / "encoder.safetensors").is_file()
    assert "exported" in window.status.text()
    (Path(run) / "afile").write_text("keep me")
    with qtbot.waitSignal(window.errorShown, timeout=30000) as err:  # a folder that cannot be made: a file on the way
        window.export_run(run, "safetensors", str(Path(run) / "afile" / "sub"))
    assert "export folder '" in err.args[0] and "is a file, not a folder" in err.args[0] and "\n" not in err.args[0]

    def refuse(self, *a, **kw):  # what the system refuses only when asked (a read-only disk; /proc even for root)
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    with qtbot.waitSignal(window.errorShown, timeout=30000) as err:
        window.export_run(run, "safetensors", str(tmp_path / "elsewhere"))
    assert f"export folder '{tmp_path / 'elsewhere'}': cannot create this folder (Read-only file system)" in err.args[0]
    assert "Errno" not in err.args[0] and "\n" not in err.args[0]


@pytest.mark.qt_log_ignore("does not support raise")  # the offscreen platform cannot raise the tooltip window
def test_embedding_tooltip_legend_and_knn_colouring(window, qtbot):
    from PySide6.QtGui import QCursor

    from workbench.core.events import EmbeddingEvent
    from workbench.gui.panels.embedding import class_colour

    rng = np.random.default_rng(0)
    n = 60
    labels = np.arange(n) % 3
    emb = rng.normal(size=(n, 8)).astype(np.float32) + 4 * np.eye(8, dtype=np.float32)[labels]
    images = rng.integers(0, 255, (n, 1, 28, 28), dtype=np.uint8)
    panel = window.embedding
    panel.set_dataset(images, ["cat", "dog", "eel"])
    with qtbot.waitSignal(panel.drawn):
        panel.show_embedding(EmbeddingEvent(2, 10, emb[:, :2].copy(), emb, labels, np.arange(n)))
    assert "PCA" in panel.plot.plotItem.titleLabel.text and panel.n_points == n
    assert "<b>dog</b>" in panel.tip_text(4) and "#4" in panel.tip_text(4)
    item = panel.items[1]
    pts = item.points()[:1]
    window.tabs.setCurrentWidget(panel)
    QCursor.setPos(panel.plot.mapToGlobal(panel.plot.rect().center()))
    panel._hovered(item, pts)
    assert panel.tip.isVisible() and panel.tip.pic.pixmap() is not None
    panel._hovered(item, [])
    assert not panel.tip.isVisible()
    window.tabs.setCurrentWidget(window.plots)  # a hover that arrives after the tab changed shows nothing
    panel._hovered(item, pts)
    assert not panel.tip.isVisible()
    assert panel.legend.count() == 3
    from PySide6.QtCore import Qt

    panel.legend.item(1).setCheckState(Qt.Unchecked)
    assert not panel.items[1].isVisible() and panel.items[0].isVisible()
    panel.colour_by.setCurrentText("kNN correct")
    qtbot.waitUntil(lambda: panel.correct is not None)
    # independent check: brute-force leave-one-out majority vote
    z = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    expect = []
    for i in range(n):
        sims = z @ z[i]
        sims[i] = -np.inf
        nn = np.argsort(-sims)[:20]
        expect.append(np.bincount(labels[nn], minlength=3).argmax() == labels[i])
    assert panel.correct.tolist() == expect
    assert "kNN" in panel.status.text() and "green" in panel.status.text()
    grey = panel.legend.item(0).icon().pixmap(12, 12).toImage().pixelColor(6, 6).name()
    assert grey == "#bbbbbb"  # the legend no longer claims the class colours
    panel.colour_by.setCurrentText("class")
    assert panel.legend.item(0).icon().pixmap(12, 12).toImage().pixelColor(6, 6).name() == class_colour(0).lower()
    brushes = {b.color().name() for b in panel.items[0].data["brush"]}  # every point back in its class colour
    assert brushes == {class_colour(0).lower()} and "green" not in panel.status.text()
    panel.colour_by.setCurrentText("kNN correct")  # cached: the explanation comes back without recomputing
    assert "green" in panel.status.text()


@pytest.mark.skipif(not __import__("importlib").util.find_spec("sklearn"), reason="t-SNE needs scikit-learn")
def test_tsne_is_computed_in_a_child_process_and_cancelled_on_reset(window, qtbot):
    from workbench.core.events import EmbeddingEvent

    rng = np.random.default_rng(1)
    emb = rng.normal(size=(80, 6)).astype(np.float32)
    panel = window.embedding
    panel.method.setCurrentText("tsne")
    panel.show_embedding(EmbeddingEvent(0, 1, emb[:, :2].copy(), emb, np.zeros(80, int), np.arange(80)))
    assert "computing t-SNE" in panel.plot.plotItem.titleLabel.text
    qtbot.waitUntil(lambda: panel.job is not None and panel.job.fn.proc is not None, timeout=10000)
    proc = panel.job.fn.proc
    panel.reset()
    qtbot.waitUntil(lambda: not proc.is_alive(), timeout=5000)


def test_runs_table_shows_a_killed_window_run_as_interrupted_and_a_cli_runs_duration(qtbot, tmp_path, monkeypatch):
    """A window run killed while training (status.json says running, its pid is gone) and a CLI run cut by max_steps."""
    import json
    import subprocess
    import sys

    from workbench.core.config import Config
    from workbench.core.runfolder import write_status
    from workbench.gui.panels.runs import COLUMNS, RunsPanel

    killed, cli = tmp_path / "2026-11-22_140000_bundled-ntxent", tmp_path / "2026-11-22_150000_bundled-ntxent"
    for run, over in ((killed, []), (cli, ["train.max_steps=15"])):
        (run / "checkpoints").mkdir(parents=True)  # what a run folder holds from its start
        Config().with_overrides(["train.epochs=3", *over]).save(run / "config.toml")
        (run / "metrics.csv").write_text("time,epoch,step,loss\n1763900000.125,1,1,5.5\n1763900075.375,1,15,4.9\n")
    write_status(killed, "running", 0)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    st = json.loads((killed / "status.json").read_text())
    (killed / "status.json").write_text(json.dumps({**st, "pid": gone.pid}))
    panel = RunsPanel(str(tmp_path))
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.refreshed, timeout=10000):
        panel.refresh()
    col = {key: j for j, (_, key) in enumerate(COLUMNS)}
    cells = {panel.table.item(i, 0).data(Qt.UserRole): i for i in range(panel.table.rowCount())}
    k, c = cells[str(killed)], cells[str(cli)]
    assert panel.table.item(k, col["status"]).text() == "interrupted"
    assert "Resume" in panel.table.item(k, col["status"]).toolTip()
    assert panel.table.item(c, col["duration_s"]).text() == "1:15"  # 75.25 s between the first and last rows
    assert panel.table.item(c, col["epochs"]).text() == "15 steps"
    assert panel.table.item(k, col["epochs"]).text() == "1/3"
    monkeypatch.setattr(RunsPanel, "LIVE_MS", 50)  # a training run's row moves on between evaluations, unasked
    live = RunsPanel(str(tmp_path))
    qtbot.addWidget(live)
    live.show()
    with qtbot.waitSignal(live.refreshed, timeout=10000):
        live.set_running(str(cli))
    with open(cli / "metrics.csv", "a") as f:
        f.write("1763900090.0,2,30,4.1\n")
    qtbot.waitUntil(lambda: any(r["run"] == str(cli) and r["step"] == 30 for r in live.rows), timeout=10000)


@pytest.mark.qt_log_ignore("does not support")  # the offscreen platform cannot raise a window
def test_the_image_tooltip_stays_on_the_screen_near_its_edges(qtbot):
    from PySide6.QtCore import QPoint
    from PySide6.QtGui import QGuiApplication

    from workbench.gui.panels.embedding import ImageTip

    tip = ImageTip()
    qtbot.addWidget(tip)
    room = QGuiApplication.primaryScreen().availableGeometry()
    for at in (room.center(), QPoint(room.right() - 4, room.bottom() - 4)):
        tip.show_at(at, None, "<b>cat</b><br>held-out #42<br>cat/0025.jpg<br><i>click: nearest neighbours</i>")
        assert room.contains(tip.geometry()), (at, tip.geometry(), room)


def test_a_run_ended_before_its_final_evaluation_says_where_its_knn_is_from(tmp_path):
    """status.json "budget" at step 69, the last evaluation at step 39: the table's kNN names step 39."""
    from workbench.core.config import Config
    from workbench.core.history import run_summary
    from workbench.core.runfolder import write_status
    from workbench.gui.panels.runs import knn_text

    run = tmp_path / "2026-11-22_143015_bundled-ntxent"
    run.mkdir()
    Config().with_overrides(["train.epochs=100000", "train.time_budget_s=60"]).save(run / "config.toml")
    (run / "metrics.csv").write_text(
        "time,epoch,step,loss,lr,images_per_s,knn_acc,linear_acc,alignment,uniformity,emb_std,eff_rank,eval_queries\n"
        "100.0,1,39,5.5,0.001,900,,,,,,,\n"
        "101.0,1,39,,,,0.41,,0.4,-2.1,0.03,12.5,1000\n"
        "130.0,2,68,4.9,0.001,950,,,,,,,\n")
    write_status(run, "budget", 69)
    row = run_summary(run)
    assert (row["status"], row["knn_step"], row["end_step"], row["knn_at_end"]) == ("budget", 39, 69, False)
    text, tip = knn_text(row)
    assert text == "0.4100 (step 39)" and "ended at step 69 before its final evaluation" in tip
    (run / "metrics.csv").write_text((run / "metrics.csv").read_text() + "131.0,2,69,,,,0.52,,0.4,-2.1,0.03,12.5,1000\n")
    row = run_summary(run)
    assert row["knn_at_end"] and knn_text(row) == ("0.5200", "")


def test_the_epochs_column_of_a_run_given_in_steps():
    from workbench.gui.panels.runs import epochs_text

    running = {"epochs": 100000, "max_steps": 150, "step": 0, "status": "running", "epochs_done": 0}
    assert epochs_text(running) == "0/150 steps"
    assert epochs_text({**running, "step": 150, "status": "finished"}) == "150 steps"
    assert epochs_text({**running, "step": 40, "status": "stopped"}) == "40/150 steps"
