import gc
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from workbench.core import sweep as S
from workbench.core.runs import read_metrics


@pytest.fixture
def win(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_SETTINGS", str(tmp_path / "settings.ini"))
    monkeypatch.setenv("WORKBENCH_NO_DIALOGS", "1")
    monkeypatch.chdir(tmp_path)
    from workbench.core.config import Config
    from workbench.gui.main_window import MainWindow

    cfg = Config().with_overrides(["data.subset=128", "train.batch_size=32", "train.epochs=2", "eval.test_size=100",
                                   "eval.bank_size=128", "eval.embed_points=50", "train.log_every=1"])
    w = MainWindow(cfg, runs_root=str(tmp_path / "runs"))
    w.confirm_close = lambda: True
    qtbot.addWidget(w)
    w.show()
    w.tabs.setCurrentWidget(w.sweep)
    yield w
    w.sweep.shutdown()
    w.close()
    gc.collect()  # freed in the GUI thread (see conftest.window)
    gc.enable()


def choose(panel, key: str, values: str | list):
    ed = panel.editor
    ed.key.setCurrentText(key)
    if isinstance(values, str):
        ed.values_text.setText(values)
    else:
        for i in range(ed.values_list.count()):
            item = ed.values_list.item(i)
            item.setCheckState(Qt.Checked if item.text() in values else Qt.Unchecked)
    ed.add_btn.click()


def test_only_registry_values_can_be_chosen_and_bad_values_block_start(win):
    panel = win.sweep
    panel.editor.key.setCurrentText("loss.name")
    shown = [panel.editor.values_list.item(i).text() for i in range(panel.editor.values_list.count())]
    from workbench.core.losses import LOSSES

    assert shown == LOSSES.names() and not panel.editor.values_text.isVisible()
    assert not panel.start_btn.isEnabled() and "no parameters to vary yet: pick one above" in panel.error.text()
    assert "[sweep.params]" not in panel.error.text()  # the form's words, not the config file's
    choose(panel, "loss.temperature", "0.2, -1")
    assert not panel.start_btn.isEnabled()
    assert "loss.temperature = -1" in panel.error.text()
    choose(panel, "loss.temperature", "0.1, abc")  # not TOML as a whole: the bad item is named alone
    assert "'abc'" in panel.error.text() and "0.1, abc" not in panel.error.text()
    choose(panel, "loss.temperature", "0.2, 0.5")
    assert panel.start_btn.isEnabled() and panel.error.text() == "" and "2 trials" in panel.status.text()
    panel.editor.max_trials.setValue(1)
    panel.start_btn.click()  # above the limit: asks (no dialogs here: the answer is no) and nothing starts
    assert not panel.running


def test_sweep_queue_runs_trials_in_the_worker_and_shows_them(win, qtbot, tmp_path, monkeypatch):
    from workbench.core import data

    panel = win.sweep
    qtbot.waitUntil(lambda: win.setup.loaded_for(win.setup.build_config()) is not None, timeout=60_000)
    loads = []
    monkeypatch.setattr(data, "load_splits", lambda *a, **k: loads.append(a))  # the window's loaded splits are used
    choose(panel, "loss.temperature", "0.2, 0.5")
    choose(panel, "loss.name", ["ntxent", "dcl"])
    panel.editor.seeds.setText("0")
    panel.editor.prune.setChecked(False)
    assert "4 trials" in panel.status.text()
    with qtbot.waitSignal(panel.sweepDone, timeout=240_000) as blocker:
        panel.start_btn.click()
        assert panel.running and not panel.start_btn.isEnabled() and panel.stop_btn.isEnabled()
    done = blocker.args[0]
    qtbot.waitUntil(lambda: not panel.running)
    assert panel.start_btn.isEnabled() and loads == []
    best = done.table[0]
    assert panel.status.text().startswith("sweep finished") and f"best_knn {best['mean']:.4f}" in panel.status.text()
    # the live table shows what trials.csv records
    recorded = S.read_trials(done.sweep_dir, panel.spec)
    assert panel.table.rowCount() == 4 == len(recorded)
    cols = [panel.table.horizontalHeaderItem(c).text() for c in range(panel.table.columnCount())]
    for r, t in enumerate(recorded):
        cells = {c: panel.table.item(r, i).text() for i, c in enumerate(cols)}
        assert cells["status"] == t.status == "finished"
        assert float(cells["best_knn"]) == pytest.approx(t.metric, abs=5e-5)
        assert t.metric == pytest.approx(S.run_metric(read_metrics(f"{done.sweep_dir}/{t.run_dir}"), "best_knn"), rel=1e-5)
        assert cells["run folder"] == t.run_dir
    # every trial's curves overlaid, coloured by the chosen parameter
    panel.colour_by.setCurrentText("loss.name")
    panel.dirty = True
    panel.redraw()
    assert len(panel.items) == 4
    pens = {t.id: panel.items[t.id][1].opts["pen"].color().name() for t in recorded}
    by_loss: dict = {}
    for t in recorded:
        by_loss.setdefault(t.params["loss.name"], set()).add(pens[t.id])
    assert all(len(c) == 1 for c in by_loss.values()) and len(set.union(*by_loss.values())) == 2
    for t in recorded:
        x, y = panel.items[t.id][1].getData()
        evals = [row for row in read_metrics(f"{done.sweep_dir}/{t.run_dir}") if row["knn_acc"] is not None]
        assert list(x) == [row["epoch"] for row in evals] and list(y) == pytest.approx([row["knn_acc"] for row in evals], abs=1e-5)
    # metric against the parameter: a point per trial and the mean per value
    panel.colour_by.setCurrentText("loss.temperature")
    xs, ys, mx, my, _ = panel.metric_points()
    assert sorted(xs) == [0.2, 0.2, 0.5, 0.5] and mx == [0.2, 0.5]
    for x, m in zip(mx, my, strict=True):
        assert m == pytest.approx(sum(t.metric for t in recorded if t.params["loss.temperature"] == x) / 2)
    # a trial opens like a run
    opened = []
    win.open_run = opened.append  # what the Runs tab calls
    panel.openRun.disconnect()
    panel.openRun.connect(win.open_run)
    panel.table.cellDoubleClicked.emit(2, 0)
    assert opened == [f"{done.sweep_dir}/{recorded[2].run_dir}"]


def test_stop_ends_the_sweep_with_the_trial_resumable(win, qtbot):
    panel = win.sweep
    choose(panel, "loss.temperature", "0.2, 0.5")
    panel.editor.prune.setChecked(False)
    with qtbot.waitSignal(panel.sweepDone, timeout=240_000) as blocker:
        panel.start_btn.click()
        qtbot.waitUntil(lambda: any(t.status == "running" for t in panel.trials.values()), timeout=120_000)
        assert win.progress.format() == "sweep running" and "Sweep tab" in win.status.text()  # not the last run's bar
        panel.stop_btn.click()
    done = blocker.args[0]
    assert done.reason == "stopped"
    assert [t.status for t in done.trials if t.status] == ["stopped"]
    first_run = done.trials[0].run_dir
    qtbot.waitUntil(lambda: not panel.running)
    assert win.progress.format() == "sweep ended" and win.status.text() == "ready" and panel.error.text() == ""
    # a fresh look at the folder: the recorded trial is shown; Start resumes it from its checkpoint
    panel.editor.key.setCurrentText("loss.name")
    panel.open_sweep(done.sweep_dir)
    assert panel.table.rowCount() == 1 and panel.table.item(0, 2).text() == "0" and panel.start_btn.isEnabled()
    with qtbot.waitSignal(panel.sweepDone, timeout=240_000) as blocker:
        panel.start_btn.click()
    again = blocker.args[0]
    assert again.sweep_dir == done.sweep_dir and [t.status for t in again.trials] == ["finished", "finished"]
    assert again.trials[0].run_dir == first_run  # continued in its own run folder, no new one
    assert sorted(p.name for p in Path(done.sweep_dir).iterdir() if p.is_dir()) == sorted(t.run_dir for t in again.trials)


def test_trials_numbered_from_one_points_coloured_like_the_legend_and_parameters_whole(win, qtbot):
    panel = win.sweep
    win.resize(1280, 800)
    choose(panel, "loss.temperature", "0.2, 0.5")
    params = panel.editor.table
    qtbot.waitUntil(lambda: params.rowCount() == 1)
    name = params.item(0, 0)
    need = params.fontMetrics().horizontalAdvance(name.text())
    assert params.columnWidth(0) >= need  # "loss.temperature", not "loss.tempera…"
    spec = S.SweepSpec({"loss.name": ["ntxent", "dcl"]}, seeds=(0, 1))
    panel._reset(spec)
    trials = [S.Trial(i, i // 2, i % 2, {"loss.name": ["ntxent", "dcl"][i // 2]}, "finished", 0.5 + 0.1 * i, f"t{i}")
              for i in range(4)]
    for t in trials:
        panel._show_trial(t)
    panel.colour_by.setCurrentText("loss.name")
    panel.dirty = True
    panel.redraw()
    assert [panel.table.item(r, 0).text() for r in range(4)] == ["1", "2", "3", "4"]  # as the CLI's "trial 1/4"
    brushes = [b.color().name() for b in panel.points.data["brush"]]
    assert brushes == [panel.colour_of(t) for t in trials] and len(set(brushes)) == 2  # dcl's seeds as dcl in the legend


def test_the_sweep_tab_colours_by_the_swept_parameter_says_each_trials_length_and_locks_the_set_up(win, qtbot):
    panel = win.sweep
    choose(panel, "loss.name", ["ntxent"])  # held at one value: not what the plots should be coloured by
    assert "1 trial ready" in panel.status.text()
    choose(panel, "loss.temperature", "0.1, 0.3")
    assert "2 trials ready, each 2 epochs" in panel.status.text()
    assert panel.budget.text().startswith("each trial: 2 epochs") and "Set-up" in panel.budget.text()
    win.setup.unit.setCurrentText("minutes")
    win.setup.minutes.setValue(0.5)
    qtbot.waitUntil(lambda: panel.budget.text().startswith("each trial: 30 s"))  # follows the set-up panel
    _, spec, _ = panel.build()
    panel._reset(spec)
    assert panel.colour_by.currentText() == "loss.temperature"
    win.sweep_running(True)
    assert not win.setup.widget().isEnabled()  # the trials were planned from it: it cannot change under them
    win.sweep_running(False)
    assert win.setup.widget().isEnabled()


def test_sweep_trials_are_listed_in_the_runs_tab(qtbot, tmp_path):
    from workbench.core.config import Config
    from workbench.gui.panels.runs import RunsPanel

    for run in (tmp_path / "2026-11-22_140000_bundled-ntxent",
                tmp_path / "sweeps" / "2026-11-23_090000" / "2026-11-23_090001_bundled-ntxent"):
        (run / "checkpoints").mkdir(parents=True)  # what a run folder holds from its start
        Config().save(run / "config.toml")
        (run / "metrics.csv").write_text("time,epoch,step,loss\n1763900000.125,1,1,5.5\n")
    panel = RunsPanel(str(tmp_path))
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.refreshed, timeout=10000):
        panel.refresh()
    assert [Path(r["run"]).name for r in panel.rows] == ["2026-11-23_090001_bundled-ntxent", "2026-11-22_140000_bundled-ntxent"]
    dates = sorted(panel.table.item(i, 1).text() for i in range(panel.table.rowCount()))
    assert dates[1].endswith("(sweep 2026-11-23_090000)") and "sweep" not in dates[0]
    panel.filter.setText("sweep")
    assert [panel.table.isRowHidden(i) for i in range(2)].count(False) == 1
