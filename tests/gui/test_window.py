import re

import numpy as np
import pytest
from PySide6.QtCore import Qt

from workbench.core.inspector import view_labels


def test_invalid_inputs_disable_start_and_explain(window, qtbot):
    s = window.setup
    assert window.start_btn.isEnabled()
    s.loss_form.editors["temperature"].setValue(0.0)
    qtbot.waitUntil(lambda: not window.start_btn.isEnabled())
    assert "temperature" in s.error.text()
    assert window.invalid_action.isVisible() and "temperature" in window.invalid.toolTip()  # beside Start, not only at the bottom
    assert s.loss_form.editors["temperature"].spin.styleSheet()  # the field it is about is outlined
    s.loss_form.editors["temperature"].setValue(0.2)
    qtbot.waitUntil(window.start_btn.isEnabled)
    assert not window.invalid_action.isVisible() and not s.loss_form.editors["temperature"].spin.styleSheet()
    s.batch.setValue(1)
    qtbot.waitUntil(lambda: "batch_size" in s.error.text())
    assert not window.start_btn.isEnabled() and "batch_size" in window.invalid.text() and s.batch.styleSheet()
    s.batch.setValue(64)
    s.dataset.setCurrentText("image_folder")
    qtbot.waitUntil(lambda: "root" in s.error.text())
    assert not window.start_btn.isEnabled()
    s.dataset.setCurrentText("bundled")
    qtbot.waitUntil(window.start_btn.isEnabled)
    s.device.setCurrentText("cuda")  # greyed in the list; forced, it is still rejected without a GPU
    import torch

    if not torch.cuda.is_available():
        qtbot.waitUntil(lambda: not window.start_btn.isEnabled())


def test_recipe_editor_add_edit_reorder_remove(window, qtbot):
    s = window.setup
    qtbot.waitUntil(lambda: s.data.splits is not None and len(s._recipe) > 1, timeout=30000)  # auto resolves once loaded
    n = len(s._recipe)
    s.add_op.setCurrentText("solarize")
    from PySide6.QtWidgets import QToolButton as QPushButton

    qtbot.mouseClick(s.findChild(QPushButton, "aug_Add"), Qt.LeftButton)
    assert s.preset.currentText() == "custom"  # edited: no longer the preset it started from
    assert [r["name"] for r in s._recipe][-1] == "solarize" and len(s._recipe) == n + 1
    s.step_form.editors["threshold"].setValue(0.7)
    qtbot.waitUntil(lambda: [r.get("threshold") for r in s.cfg.augment.recipe][-1:] == [pytest.approx(0.7)])  # auto: [] at first
    qtbot.mouseClick(s.findChild(QPushButton, "aug_▲"), Qt.LeftButton)
    assert s._recipe[-2]["name"] == "solarize"
    s.step_form.editors["threshold"].setValue(1.7)  # out of range
    qtbot.waitUntil(lambda: "threshold" in s.error.text())
    qtbot.mouseClick(s.findChild(QPushButton, "aug_Remove"), Qt.LeftButton)
    qtbot.waitUntil(lambda: s.error.text() == "")
    assert len(s._recipe) == n
    assert s.preview.shown() == 18  # 6 images x (original + two views)


def test_train_pause_resume_stop_from_the_window(window, qtbot):
    window.setup.loss_form.editors["temperature"].setValue(0.2)
    qtbot.waitUntil(window.start_btn.isEnabled, timeout=30000)  # once the dataset has loaded in the background
    window.start_btn.trigger()  # while the data still load, Start waits for them, then starts
    qtbot.waitUntil(lambda: window.running, timeout=30000)
    assert not window.setup.widget().isEnabled()  # the settings cannot change mid-run, but can be scrolled to and read
    from tests.gui.test_layout import wheel

    bar = window.setup.verticalScrollBar()
    bar.setValue(0)
    wheel(window.setup.loss, -2)
    assert bar.value() > 0 and window.setup.loss.currentText() == "ntxent"
    with qtbot.waitSignal(window.epochEvaluated, timeout=120000) as ev:
        pass
    assert 0 <= ev.args[0].metrics["knn_acc"] <= 1
    qtbot.waitUntil(lambda: window.embedding.latest is not None, timeout=10000)
    window.plots.redraw()
    xs, ys = window.plots.raw.getData()
    assert len(xs) > 3 and np.isfinite(ys).all()
    kx, ky = window.plots.knn_curve.getData()
    assert len(kx) == 1
    assert window.embedding.n_points == 150
    assert "epoch" in window.progress.format()
    with qtbot.waitSignal(window.pauseChanged, timeout=30000) as p:
        window.pause_btn.trigger()
    assert p.args == [True] and window.resume_btn.isEnabled() and not window.pause_btn.isEnabled()
    with qtbot.waitSignal(window.pauseChanged, timeout=30000) as p:
        window.resume_btn.trigger()
    assert p.args == [False]
    with qtbot.waitSignal(window.trainingDone, timeout=60000) as done:
        window.stop_btn.trigger()
    assert done.args[0].reason in ("stopped", "finished")
    qtbot.waitUntil(lambda: not window.running, timeout=10000)
    assert window.start_btn.isEnabled() and window.setup.widget().isEnabled()
    assert window.progress.format().startswith(done.args[0].reason)  # not the stale step text
    qtbot.waitUntil(lambda: [r["status"] for r in window.runs.rows] == [done.args[0].reason])


def test_inspector_shows_true_hardest_negatives_and_retrieval(window, qtbot):
    window.start_btn.trigger()
    with qtbot.waitSignal(window.batchShown, timeout=120000) as b:
        window.inspector.capture.click()
    batch = b.args[0]
    rows = window.inspector.rows()
    sim = batch.similarity
    for r in rows[:10]:
        others = [c for c in range(sim.shape[0]) if c not in (r.row, r.positive)]
        assert r.hardest[0][1] == pytest.approx(max(sim[r.row, c] for c in others))
        assert r.positive_sim == pytest.approx(sim[r.row, r.positive])
        labels = view_labels(batch)
        assert all(labels[c] == labels[r.row] for c, _ in r.false_negatives)
    assert [r.loss for r in rows] == sorted([r.loss for r in rows], reverse=True)
    insp = window.inspector
    assert insp.grid.shown() == min(24, len(rows)) * (2 + insp.k.value())
    tiles = dict(insp.grid.tiles)
    insp.k.setValue(2)  # fewer negatives: the same tiles, the extra ones hidden
    assert insp.grid.shown() == min(24, len(rows)) * 4 and insp.grid.tiles == tiles
    assert sum(t.isVisibleTo(insp) for t in tiles.values()) == insp.grid.shown()
    shown_rows = insp.rows()
    assert f"{shown_rows[0].positive_sim:+.3f}" in tiles[(0, 1)].cap.text()
    assert f"{shown_rows[0].hardest[1][1]:+.3f}" in tiles[(0, 3)].cap.text()
    qtbot.waitUntil(lambda: window.embedding.latest is not None, timeout=120000)
    ev = window.embedding.latest
    got = window.inspector.show_retrieval(int(ev.indices[5]), ev, window.held_out, window.embedding.classes)
    sims = ev.embeddings @ ev.embeddings[5] / np.linalg.norm(ev.embeddings, axis=1) / np.linalg.norm(ev.embeddings[5])
    assert int(ev.indices[5]) not in [row for row, _, _ in got]  # the query is not its own neighbour
    assert got[0][1] == pytest.approx(np.sort(sims)[-2], abs=1e-5) and len(got) == 10
    window.stop()
    qtbot.waitUntil(lambda: not window.running, timeout=60000)
    assert insp.history and insp.batch is not None
    window.start_btn.trigger()  # the next run starts its own similarity history
    assert insp.history == [] and insp.batch is None and insp.grid.shown() == 0 and insp.info.text().startswith("training: capture")
    window.stop()
    qtbot.waitUntil(lambda: not window.running, timeout=60000)


def test_errors_in_training_show_in_the_window(window, qtbot):
    window.setup.loss.setCurrentText("moco")
    window.setup.method_form.editors["queue_size"].setValue(100000)  # valid on its own, larger than the dataset
    qtbot.waitUntil(lambda: getattr(window.setup.cfg.method.params, "queue_size", 0) == 100000)
    qtbot.waitUntil(window.start_btn.isEnabled)
    window.start_btn.trigger()
    with qtbot.waitSignal(window.errorShown, timeout=60000) as err:
        pass
    assert "queue_size" in err.args[0] and "\n" not in err.args[0]  # one line for the user
    assert "Traceback" in err.args[1]  # the whole story for the Details section
    qtbot.waitUntil(lambda: not window.running, timeout=30000)
    assert "error" in window.status.text() and window.start_btn.isEnabled()


def test_a_run_that_fails_at_once_still_ends_in_the_window(window, qtbot, monkeypatch):
    """A worker that fails and finishes before start_worker returns (a set-up error on a fast machine): the window
    still learns it ended; Start is offered again instead of the window waiting on a run that is gone."""
    import threading

    from PySide6.QtCore import QThread

    import workbench.gui.main_window as MW

    from workbench.core.events import ErrorEvent

    def fail_at_once(worker):  # emitted from another thread, as the worker's are, and over before this returns
        def run():
            worker.event.emit(ErrorEvent("loss 'moco': queue_size is larger than the dataset", "",
                                         "Traceback (most recent call last): ..."))
            worker.finished.emit()

        t = threading.Thread(target=run)
        t.start()
        t.join()
        return QThread()  # never started

    monkeypatch.setattr(MW, "start_worker", fail_at_once)
    qtbot.waitUntil(window.start_btn.isEnabled, timeout=30000)
    window.start_btn.trigger()
    qtbot.waitUntil(lambda: not window.running and window.start_btn.isEnabled(), timeout=5000)
    assert "error" in window.status.text()


def test_close_during_training_is_quick_keeps_checkpoint_and_remembers_config(window, qtbot, tmp_path):
    import time
    from pathlib import Path

    window.setup.epochs.setValue(5)
    qtbot.waitUntil(lambda: window.setup.cfg.train.epochs == 5)
    window.start_btn.trigger()
    qtbot.waitUntil(lambda: window.plots.steps != [], timeout=120000)
    run_dir = window.run_dir
    t0 = time.perf_counter()
    window.close()
    assert not window.isVisible()  # the window goes at once
    qtbot.waitUntil(lambda: not window.running, timeout=10000)
    assert time.perf_counter() - t0 < 5.0
    assert (Path(run_dir) / "checkpoints" / "last.pt").is_file()
    from workbench.gui.main_window import MainWindow

    again = MainWindow(runs_root=str(tmp_path / "runs"))
    qtbot.addWidget(again)
    assert again.setup.epochs.value() == 5 and again.setup.subset.value() == 1024


def test_the_close_question_says_so_when_training_ends_while_it_is_open(window, qtbot):
    """The question "Stop training and close?" is about a running training: when the training ends while it is
    open, it asks only whether to close; "No" keeps the window."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QMessageBox

    from workbench.gui.main_window import MainWindow

    window.setup.epochs.setValue(50)
    qtbot.waitUntil(lambda: window.setup.cfg.train.epochs == 50)
    window.start_btn.trigger()
    qtbot.waitUntil(lambda: window.plots.steps != [], timeout=120000)
    seen = []

    def answer():
        box = window._close_question
        seen.append(box.text())
        window.stop()
        qtbot.waitUntil(lambda: not window.running, timeout=60000)
        seen.append(box.text())
        box.button(QMessageBox.No).click()

    QTimer.singleShot(0, answer)
    assert MainWindow.confirm_close(window) is False and window._close_question is None
    assert seen[0].startswith("Stop training and close?") and seen[1].startswith("Training has ended")
    assert window.isVisible()


def read_terms(run) -> set:
    from workbench.core.history import read_history

    return {k for e in read_history(run) if hasattr(e, "terms") for k in e.terms}


def test_runs_table_open_overlay_diff_clone_and_torchrun_command(window, qtbot, tmp_path):
    from pathlib import Path

    from workbench.core.train import train

    runs = []
    for t in (0.3, 0.5):
        cfg = window.setup.build_config().with_overrides(["train.max_steps=6", f"loss.temperature={t}"])
        runs.append([e for e in train(cfg, runs_root=window.runs_root)][0].run_dir)
    with qtbot.waitSignal(window.runs.refreshed, timeout=10000):
        window.runs.refresh()
    table = window.runs.table
    assert table.rowCount() == 2
    header = [table.horizontalHeaderItem(j).text() for j in range(table.columnCount())]
    row = {header[j]: table.item(0, j).text() for j in range(table.columnCount())}
    assert row["loss"] == "ntxent" and row["dataset"] == "bundled" and row["status"] == "finished" and row["final kNN"]
    table.sortItems(header.index("T"))
    assert [table.item(i, header.index("T")).text() for i in range(2)] == ["0.3", "0.5"]
    window.runs.filter.setText("0.5")
    assert window.runs.visible_runs() == [runs[1]]
    window.runs.filter.setText("")
    window.runs.select(runs)
    assert "loss.temperature: 0.3  |  0.5" in window.runs.diff.toPlainText()
    window.runs.buttons["overlay"].click()
    p = window.plots

    def overlaid(plot):
        return [i for i in p.overlays if i in plot.listDataItems()]

    assert [len(overlaid(q)) for q in (p.loss_plot, p.knn_plot, p.lr_plot)] == [2, 2, 2]  # loss, kNN, lr of each run
    assert len(overlaid(p.terms_plot)) == 2 * len(p.term_curves or read_terms(runs[0]))  # and each of its loss terms
    run_dir = runs[0]
    with qtbot.waitSignal(window.runOpened, timeout=60000):
        window.open_run(run_dir)
    window.plots.redraw()
    assert len(window.plots.steps) >= 1 and window.embedding.n_points > 0
    (_, x1), _ = window.plots.loss_plot.getViewBox().viewRange()
    assert max(window.plots.steps) <= x1 <= 1.1 * max(window.plots.steps)  # fitted: no headroom for steps never taken
    window.overlay_runs(runs)
    assert [len(overlaid(q)) for q in (p.loss_plot, p.knn_plot, p.lr_plot)] == [1, 1, 1]  # the other run only: the
    assert Path(run_dir).name[11:] in p.loss_plot.plotItem.legend.items[0][1].text  # shown one is named, not redrawn
    with qtbot.waitSignal(window.batchShown, timeout=30000) as b:
        window.inspector.capture.click()  # not training: the batch comes from the checkpoint
    assert b.args[0].similarity.shape == (128, 128) and window.inspector.grid.shown() > 0
    assert "checkpoint" in window.inspector.info.text() and "-1" not in window.inspector.info.text()
    window.setup.loss_form.editors["temperature"].setValue(0.9)
    window.clone_run(run_dir)
    assert window.setup.loss_form.editors["temperature"].value() == pytest.approx(0.3)
    cmd = window.torchrun_command(str(tmp_path / "exp.toml"), 4)
    assert cmd.startswith("torchrun --standalone --nproc_per_node=4 -m workbench train") and "exp.toml" in cmd
    window.save_config(str(tmp_path / "exp.toml"))
    from workbench.core.config import Config

    assert Config.load(tmp_path / "exp.toml").loss.params["temperature"] == pytest.approx(0.3)
    window.runs.select([runs[1]])
    window.runs.confirm_delete = lambda runs: True
    with qtbot.waitSignal(window.runs.refreshed, timeout=10000):
        window.runs.buttons["delete"].click()
    assert not Path(runs[1]).exists() and table.rowCount() == 1


def test_retrieval_of_a_dropped_file(window, qtbot, tmp_path):
    from PIL import Image

    from workbench.core.train import train

    cfg = window.setup.build_config().with_overrides(["train.max_steps=4"])
    run_dir = [e for e in train(cfg, runs_root=window.runs_root)][0].run_dir
    with qtbot.waitSignal(window.runOpened, timeout=60000):
        window.open_run(run_dir)
    img = window.held_out[3]
    Image.fromarray(img[0]).save(tmp_path / "q.png")
    window.retrieve_file(str(tmp_path / "q.png"))
    qtbot.waitUntil(lambda: window.inspector.retrieval.shown() == 11, timeout=60000)
    assert window.tabs.currentWidget() is window.inspector
    tiles = window.inspector.retrieval.tiles
    caps = [tiles[(1 + j // 5, j % 5)].cap.text() for j in range(10)]
    assert tiles[(0, 0)].cap.text() == "query\n?"  # a dropped file has no class ...
    assert not any(c.startswith(("✗", "✓")) for c in caps), caps  # ... so no neighbour is marked wrong (or right)
    window.retrieve_file(str(tmp_path / "missing.png"))
    qtbot.waitUntil(lambda: any("does not exist" in m for m in window.messages), timeout=60000)


CLOSE_SCRIPT = r"""
import sys, time
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from workbench.core.config import Config
from workbench.gui import main_window

app = QApplication([])
cfg = Config().with_overrides(["data.subset=1024", "train.batch_size=64", "train.epochs=50", "train.log_every=2",
                               "eval.test_size=300", "eval.embed_points=200", "eval.bank_size=1024",
                               "eval.embed_every_steps=3"])
win = main_window.MainWindow(cfg, runs_root=sys.argv[1])
win.confirm_close = lambda: True
win.show()
win.embedding.method.setCurrentText("tsne")  # a background projection job is running when the window closes
win.start()
closed = []

def poll():
    if win.embedding.job is not None and getattr(win.embedding.job.fn, "proc", None) is not None and not closed:
        closed.append(time.perf_counter())
        print("CLOSING", flush=True)
        win.close()
    elif not closed:
        QTimer.singleShot(50, poll)

QTimer.singleShot(50, poll)
app.exec()
win.wait_for_worker()
print(f"WORKER-DONE {time.perf_counter() - closed[0]:.2f}", flush=True)
import os
os._exit(0)  # as workbench.gui.app.run ends the process once everything is saved
"""


@pytest.mark.slow
def test_app_process_ends_within_seconds_of_closing_during_training(tmp_path):
    """The whole process (training thread, t-SNE child process) is gone a few seconds after the window closes."""
    import importlib.util
    import os
    import subprocess
    import sys
    import time

    if not importlib.util.find_spec("sklearn"):
        pytest.skip("t-SNE needs scikit-learn")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", WORKBENCH_SETTINGS=str(tmp_path / "s.ini"), WORKBENCH_NO_DIALOGS="1")
    proc = subprocess.Popen([sys.executable, "-c", CLOSE_SCRIPT, str(tmp_path / "runs")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, t_close = [], None
    with proc.stdout:
        for line in proc.stdout:
            out.append(line)
            if line.startswith("CLOSING"):
                t_close = time.perf_counter()
    proc.wait(timeout=300)
    took = time.perf_counter() - t_close if t_close else None
    assert proc.returncode == 0, "".join(out)
    assert took is not None and took < 5.0, "".join(out)  # from the close to the end of the process
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "checkpoints" / "last.pt").is_file()


SIGNAL_SCRIPT = r"""
import os, sys
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from workbench.core.config import Config
from workbench.gui import app as gui_app, main_window

app = QApplication([])
cfg = Config().with_overrides(["data.subset=1024", "train.batch_size=64", "train.epochs=50", "train.log_every=1",
                               "eval.test_size=300", "eval.embed_points=200", "eval.bank_size=1024"])
win = main_window.MainWindow(cfg, runs_root=sys.argv[1])
win.confirm_close = lambda: print("ASKED", flush=True) or True
win.show()
gui_app.stop_on_signals(win)
win.start()

def poll():
    if win.plots.steps:
        print("TRAINING", flush=True)
    else:
        QTimer.singleShot(50, poll)

QTimer.singleShot(50, poll)
app.exec()
win.wait_for_worker()
print("WORKER-DONE", flush=True)
os._exit(0)
"""


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])  # kill or a logout; Ctrl-C in the launching terminal
def test_the_window_asked_to_end_by_a_signal_keeps_the_checkpoint(tmp_path, signame):
    """A signal closes the window without a question, and the running training stops with its checkpoint."""
    import json
    import os
    import signal
    import subprocess
    import sys

    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", WORKBENCH_SETTINGS=str(tmp_path / "s.ini"), WORKBENCH_NO_DIALOGS="1")
    proc = subprocess.Popen([sys.executable, "-c", SIGNAL_SCRIPT, str(tmp_path / "runs")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = []
    with proc.stdout:
        for line in proc.stdout:
            out.append(line)
            if line.startswith("TRAINING"):
                proc.send_signal(getattr(signal, signame))
    assert proc.wait(timeout=120) == 0, "".join(out)
    assert "WORKER-DONE" in "".join(out) and "ASKED" not in "".join(out) and "Traceback" not in "".join(out)
    run = next((tmp_path / "runs").iterdir())
    assert (run / "checkpoints" / "last.pt").is_file()
    assert json.loads((run / "status.json").read_text())["state"] == "stopped"


def test_stop_status_says_which_evaluation_its_knn_is_from(window):
    from workbench.core.events import DoneEvent, EvalEvent

    window._on_eval(EvalEvent(3, 120, {"knn_acc": 0.782, "alignment": 0.5, "uniformity": -2.0, "eff_rank": 9.0}))
    window.session.progress.step, window.session.progress.total_steps = 157, 400  # where the last step event left the run
    window._on_done(DoneEvent("stopped", "runs/x", {"knn_acc": 0.782}))
    text = window.status.text()
    assert text.startswith("stopped at step 157") and "kNN 0.7820 (epoch 3, step 120)" in text


def test_a_bad_config_load_names_the_file_and_the_next_success_clears_the_error(window, qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    bad, good = tmp_path / "typo.toml", tmp_path / "fine.toml"
    bad.write_text("[loss]\ntemprature = 0.1\n")
    window.setup.build_config().save(good)
    bar_before = (window.progress.format(), window.progress.value(), window.progress.maximum())
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(bad), ""))
    with qtbot.waitSignal(window.errorShown) as shown:
        window.load_config()
    assert "typo.toml" in shown.args[0] and "temprature" in shown.args[0]
    assert (window.progress.format(), window.progress.value(), window.progress.maximum()) == bar_before  # no full "error" bar
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(good), ""))
    window.load_config()
    assert "error" not in window.status.text() and "fine.toml" in window.status.text()


def test_progressive_resolution_is_set_in_the_window_and_a_loaded_value_kept(window, qtbot):
    from workbench.core.config import Config

    s = window.setup
    assert s.start_size.text() == "auto" and s.full_size_at.isEnabled()  # the default: decided by the run's budget
    s.start_size.setValue(10)  # below the 25% floor: Start is off and the line names the field
    qtbot.waitUntil(lambda: "augment.start_size" in s.error.text())
    assert not window.start_btn.isEnabled()
    s.start_size.setValue(100)
    assert not s.full_size_at.isEnabled()  # off: nothing grows
    s.start_size.setValue(75)
    s.full_size_at.setValue(60)
    a = s.build_config().augment
    assert (a.start_size, a.full_size_at) == (0.75, 0.6)
    s.set_config(Config().with_overrides(["augment.start_size=0.625", "augment.full_size_at=0.333"]))
    a = s.build_config().augment
    assert (a.start_size, a.full_size_at) == (0.625, 0.333) and s.start_size.value() == 62


def test_run_length_in_epochs_steps_or_minutes(window, qtbot):
    from workbench.gui.panels.runs import epochs_text

    s = window.setup
    assert s.unit.currentText() == "epochs" and s.epochs.isVisibleTo(s) and not s.minutes.isVisibleTo(s)
    s.unit.setCurrentText("steps")
    s.steps.setValue(40)
    assert s.steps.isVisibleTo(s) and not s.epochs.isVisibleTo(s)
    t = s.build_config().train
    assert (t.max_steps, t.time_budget_s) == (40, 0.0) and t.epochs >= 40  # the steps alone end the run
    s.unit.setCurrentText("minutes")
    s.minutes.setValue(0.1)
    t = s.build_config().train
    assert (t.max_steps, t.time_budget_s) == (0, 6.0)
    qtbot.waitUntil(window.start_btn.isEnabled, timeout=30000)
    shown = []
    window.stepsShown.connect(lambda _step: shown.append(window.progress.format()))
    with qtbot.waitSignal(window.trainingDone, timeout=120000) as done:
        window.start_btn.trigger()
    assert done.args[0].reason == "budget"
    assert shown and all(re.search(r"trained 0:0\d of 0:06  ETA \d+:\d\d$", f) for f in shown), shown  # the budget's clock
    assert "evaluations come on top" in window.progress.toolTip()
    assert window.progress.format().startswith("finished: step ") and "/" not in window.progress.format()  # no step total
    assert window.status.text().startswith("finished on its time budget at step ")
    assert window.progress.maximum() == 1000 == window.progress.value()  # the bar follows the budget's clock to its end
    qtbot.waitUntil(lambda: [r["status"] for r in window.runs.rows] == ["budget"])  # the table read after the run ended
    assert epochs_text(window.runs.rows[0]).endswith("in 6 s")
    window.runs.select([window.runs.rows[0]["run"]])  # a finished run: nothing to resume, and the button says so
    assert window.runs.table.item(0, 0).text() == "finished" and not window.runs.buttons["resume"].isEnabled()
    assert "Clone and edit" in window.runs.buttons["resume"].toolTip()
    s.set_config(window.setup.build_config().with_overrides(["train.time_budget_s=0", "train.max_steps=0", "train.epochs=3"]))
    assert s.unit.currentText() == "epochs" and s.epochs.value() == 3


def test_a_number_typed_before_the_unit_is_picked_carries_over(window, qtbot):
    """People type "2" and then pick "minutes": the run lasts 2 minutes, not the 10 the minutes box held."""
    from tests.gui.test_layout import type_into

    s = window.setup
    steps_before = s.steps.value()
    type_into(qtbot, s.epochs, "2")
    s.unit.setCurrentText("minutes")
    assert s.minutes.value() == 2 and s.build_config().train.time_budget_s == 120
    s.unit.setCurrentText("steps")  # nothing typed since: the steps box keeps its own number
    assert s.steps.value() == steps_before
    type_into(qtbot, s.steps, "7")  # typed, then on to another setting (Tab leaves for the unit combo: click elsewhere)
    s.batch.setFocus(Qt.MouseFocusReason)
    qtbot.waitUntil(s.batch.hasFocus)
    s.unit.setCurrentText("minutes")  # picked later: the minutes box keeps its 2
    assert s.minutes.value() == 2


@pytest.mark.qt_log_ignore("does not support")  # the offscreen platform cannot raise a window or propagate size hints
def test_a_note_leaves_the_progress_bar_in_view_and_a_warning_takes_the_status_bar(window, qtbot):
    window._on_warning("augment.preset auto -> simclr_small_grey", True)
    assert window.status.text() == "note: augment.preset auto -> simclr_small_grey"
    assert window.statusBar().currentMessage() == "" and window.progress.isVisible()
    window._on_warning("loss is rising", False)
    assert "warning: loss is rising" in window.status.text() and window.status.styleSheet()  # in orange
    assert window.progress.isVisible() and window.statusBar().currentMessage() == ""
    assert window.messages == ["augment.preset auto -> simclr_small_grey", "loss is rising"]
    window.set_status("epoch 1: kNN 0.5")
    assert not window.status.styleSheet()
    assert window.log_btn.text() == "messages (2) ⚠ 1"
    text = window.messages_text()
    assert "note: augment.preset auto -> simclr_small_grey" in text and "warning: loss is rising" in text
    qtbot.mouseClick(window.log_btn, Qt.LeftButton)  # the messages window: every line whole, growing while open
    box = window.messages_box
    qtbot.waitUntil(box.isVisible)
    assert box.text.toPlainText() == text and box.header.text().startswith("2 notes")
    window._on_warning("a third", False)
    assert box.text.toPlainText().endswith("warning: a third") and box.header.text().startswith("3 notes")
    assert box.width() >= 800 and not box.isModal()


def test_a_pause_that_lands_in_an_evaluation_offers_resume(window, qtbot, monkeypatch):
    """Pause pressed just before an epoch's evaluation: the loop waits inside it, where it yields no event;
    the window must still learn it is paused (Resume enabled), and Resume must carry the run on."""
    import workbench.gui.worker as W
    from workbench.core.events import EvalProgressEvent

    real, pressed = W.train, []

    def pause_as_the_evaluation_begins(cfg, control, *args, **kwargs):  # in the worker's thread, between two batches
        for event in real(cfg, control, *args, **kwargs):
            if isinstance(event, EvalProgressEvent) and not pressed:
                pressed.append(True)
                control.pause()  # as if the user pressed Pause as the evaluation began
            yield event

    monkeypatch.setattr(W, "train", pause_as_the_evaluation_begins)
    with qtbot.waitSignal(window.pauseChanged, timeout=120000, check_params_cb=lambda p: p is True):
        window.start_btn.trigger()
    assert window.resume_btn.isEnabled() and not window.pause_btn.isEnabled()
    with qtbot.waitSignal(window.trainingDone, timeout=120000) as done:
        window.resume_btn.trigger()
    assert done.args[0].reason == "finished"


def test_held_out_images_of_a_folder_are_named_in_the_tooltips_and_the_retrieval(window, qtbot, tmp_path):
    from PIL import Image

    from workbench.core import decode
    from workbench.core.config import Config

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in ("cat", "dog"):
            for i in range(40 if split == "train" else 12):
                (tmp_path / "pets" / split / c).mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(tmp_path / "pets" / split / c / f"{c}{i}.png")
    window.setup.set_config(Config().with_overrides([
        "data.name=image_folder", f"data.root={tmp_path / 'pets'}", "train.batch_size=16", "train.max_steps=3",
        "eval.embed_points=24"]))
    qtbot.waitUntil(window.start_btn.isEnabled, timeout=30000)
    with qtbot.waitSignal(window.trainingDone, timeout=60000):
        window.start()
    panel = window.embedding
    qtbot.waitUntil(lambda: panel.files is not None, timeout=10000)

    def shown_file(text):  # the file a tooltip or tile names, checked against the image shown for it
        return next(part for part in text.split("<br>") if part.endswith(".png"))

    for i in (0, 5, 17):
        row, _ = panel.point_info(i)
        name = shown_file(panel.tip_text(i))
        assert np.array_equal(decode.decode(str(tmp_path / "pets" / "test" / name), 20, 3), window.held_out[row])
    window.retrieve(panel.point_info(5)[0])
    tips = [t.pic.toolTip() for t in window.inspector.retrieval.tiles.values() if t.isVisible()]
    assert len(tips) == 11 and tips[0] == panel.files[panel.point_info(5)[0]] and all(t.endswith(".png") for t in tips)


def test_the_form_shows_the_length_that_runs_after_an_edit_is_undone(window, qtbot):
    """Loaded 2 minutes, typed 0.33 (validated), then 2 again: the run trains 2 minutes, as the form says; and the
    reverse (0.33 loaded, 3 typed, then 0.33)."""
    from tests.gui.test_layout import type_into
    from workbench.core.config import Config

    s = window.setup
    for loaded, passing in ((2.0, 0.33), (0.33, 3.0)):
        s.set_config(Config().with_overrides([f"train.time_budget_s={60 * loaded}"]))
        assert s.unit.currentText() == "minutes" and s.minutes.value() == pytest.approx(loaded)
        type_into(qtbot, s.minutes, f"{passing:g}")
        qtbot.waitUntil(lambda p=passing: s.cfg.train.time_budget_s == pytest.approx(60 * p))  # validated in between
        type_into(qtbot, s.minutes, f"{loaded:g}")
        assert s.minutes.value() == pytest.approx(loaded)
        assert s.build_config().train.time_budget_s == pytest.approx(60 * loaded)
        qtbot.waitUntil(lambda ld=loaded: s.cfg.train.time_budget_s == pytest.approx(60 * ld))


def test_a_recheck_of_the_form_never_replaces_a_message(window, qtbot):
    """An error or a long note stays in the status bar when the set-up is re-checked with the same verdict (as when
    the background data load ends on a busy machine); a new verdict, or a newer message, replaces it."""
    s = window.setup
    qtbot.waitUntil(lambda: s.data.splits is not None, timeout=30000)
    qtbot.waitUntil(window.start_btn.isEnabled)
    window.show_error("loss 'moco': queue_size 100000 is larger than the dataset")
    s._validate()  # the same verdict: valid
    assert window.status.text().startswith("error: loss 'moco'")
    note = "augment.preset auto -> simclr_small_grey: " + "a long explanation " * 20
    window._on_warning(note, True)
    s._load_data()  # already loaded: nothing to do, as when a load ends
    s.dataLoaded.emit(s.data.splits)
    s._validate()
    assert window.status.text() == f"note: {note}"
    s.batch.setValue(1)  # a new verdict is news
    qtbot.waitUntil(lambda: window.status.text().startswith("set-up invalid: train.batch_size"))
    s.batch.setValue(64)
    qtbot.waitUntil(lambda: window.status.text() == "ready")


def test_an_evaluation_under_way_shows_its_progress_and_stop_ends_it(window, qtbot, monkeypatch, tmp_path):
    """A fake event stream (no training): an evaluation's progress events reach the status bar, the bar and the
    Embedding tab's placeholder; Stop pressed during it says so, and the run ends stopped."""
    import threading

    import workbench.gui.worker as W
    from workbench.core.config import Config
    from workbench.core.events import DoneEvent, EvalProgressEvent, RunStarted, StepEvent

    asked = threading.Event()

    def fake_train(cfg, control, runs_root, resume=None, data=None):
        yield RunStarted(str(tmp_path / "run"), Config().to_dict(), 100, 10, 10, 40, "cpu", ["a", "b"])
        yield StepEvent(1, 10, 1.0, 0.1, 100.0, 30.0, {}, 0.25)
        for done in (0, 2500, 5000):
            yield EvalProgressEvent(10, "bank", done, 10000)
        yield EvalProgressEvent(10, "knn", 3000, 10000)
        asked.wait(30)  # until Stop is pressed (it ends the evaluation)
        if control.stopped:
            yield EvalProgressEvent(10, "knn", 3100, 10000)  # one last batch before the evaluation sees Stop
            yield DoneEvent("stopped", str(tmp_path / "run"), {}, step=10)

    monkeypatch.setattr(W, "train", fake_train)
    assert "Press Start" in window.embedding.hint.textItem.toPlainText()
    with qtbot.waitSignal(window.evaluationShown, timeout=10000, check_params_cb=lambda e: e.stage == "knn"):
        window._launch(Config(), None, None)
    assert window.session.progress.evaluating
    assert window.progress.format() == "evaluation at step 10: kNN 3,000 / 10,000"
    assert window.status.text() == "evaluation under way at step 10: training goes on when it ends; Stop ends it"
    assert (window.progress.value(), window.progress.maximum()) == (3000, 10000)
    hint = window.embedding.hint
    assert hint.isVisible() and "evaluation at step 10: kNN" in hint.textItem.toPlainText()
    assert "Press Start" not in hint.textItem.toPlainText()
    window.stop_btn.trigger()
    assert "stopping: the evaluation ends" in window.status.text() and window.progress.format().startswith("stopping")
    with qtbot.waitSignal(window.trainingDone, timeout=10000) as done:
        asked.set()
    qtbot.waitUntil(lambda: not window.running, timeout=10000)
    assert done.args[0].reason == "stopped" and not window.session.progress.evaluating
    assert window.status.text().startswith("stopped at step 10") and window.progress.format() == "stopped: step 10/40"
    assert window.progress.maximum() == 40 and "Press Start" in hint.textItem.toPlainText()


def test_the_worker_hands_on_only_the_latest_evaluation_progress(qtbot):
    from workbench.core.events import EvalProgressEvent
    from workbench.gui.worker import training_worker

    w = training_worker(None, "runs")
    with qtbot.waitSignal(w.latestReady):
        for done in range(5):
            w.report(EvalProgressEvent(3, "queries", done, 5))
    assert w.take_latest() == EvalProgressEvent(3, "queries", 4, 5) and w.take_latest() is None
