"""The Data tab: a finished run is checked in the background on its final evaluation, an opened one on request; the
lists, the threshold line, the neighbours of a clicked image, a confusion cell and CSV export."""
import csv
from pathlib import Path

import numpy as np

from workbench.core.events import DoneEvent


def _run(window):
    from workbench.core.train import train

    cfg = window.setup.build_config().with_overrides(["train.max_steps=4"])
    return [e for e in train(cfg, runs_root=window.runs_root)][0].run_dir


def test_a_finished_run_is_checked_and_its_lists_shown(window, qtbot, tmp_path):
    run = _run(window)
    data = window.data
    with qtbot.waitSignal(data.checked, timeout=300000) as got:
        window._on_event(DoneEvent("finished", run, {}, step=4))  # the worker's DoneEvent, as the window gets it
        assert not data.run_btn.isEnabled() and data.task is not None  # running in the background
    loaded = got.args[0]
    report = loaded.report
    assert len(report.items) == 1024 + 1000 and report.leaks is not None
    assert "median nearest-neighbour distance" in data.summary.text()
    for line in report.findings:
        assert line in data.summary.text()
    assert (Path(run) / "checks" / "summary.json").is_file()  # kept with the run
    logged = [text for _, kind, text in window.message_log if kind == "data"]
    assert logged[-len(report.findings):] == report.findings  # in the window's messages too
    view = data.views["label_issues"]
    assert view.table.rowCount() == min(len(report.label_issues), 300) > 0
    assert view.table.item(0, 3).text() == report.label_issues["class"][0]
    view.table.cellClicked.emit(0, 1)  # an image's neighbours
    assert data.nbrs.count() == report.graph.k + 1
    assert data.nbrs.item(1).text().startswith(f"{report.graph.distances[report.label_issues['row'][0], 0]:.4f}")
    out = tmp_path / "issues.csv"
    view.save_csv(str(out))
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert len(rows) == len(report.label_issues) and rows[0]["suggested"] == report.label_issues["suggested"][0]
    # the threshold line dragged to the right: more near-duplicates, found again in the background
    with qtbot.waitSignal(data.rethresholded, timeout=30000):
        data.line.setValue(float(np.percentile(report.graph.nearest, 20)))
        data.line.sigPositionChangeFinished.emit(data.line)
    assert data.loaded.report.radius > report.radius
    assert data.views["duplicates"].table.rowCount() == min(len(data.loaded.report.duplicates), 300)
    # a confusion cell: the images labelled 0 that their neighbours voted 6
    data.show_cell(0, 6)
    n = int(report.confusion[0, 6])
    assert data.views["cell"].table.rowCount() == min(n, 300) and data.lists.currentWidget() is data.views["cell"]


def test_an_opened_run_is_checked_on_request(window, qtbot):
    run = _run(window)
    with qtbot.waitSignal(window.runOpened, timeout=120000):
        window.open_run(run)
    data = window.data
    assert data.run_btn.isEnabled() and data.loaded is None  # nothing runs until asked
    data.split.setCurrentText("train")
    with qtbot.waitSignal(data.checked, timeout=300000):
        data.run_btn.click()
    report = data.loaded.report
    assert len(report.items) == 1024 and report.leaks is None
    assert "both splits" in data.views["leaks"].note.text()


def test_the_leak_list_says_which_kind_of_copy_each_is(window):
    """Exact copies, the same picture resized or re-encoded (found by the pixels' fingerprints) and near-duplicates of
    the encoder are told apart in the list, with the fingerprints' distance beside the encoder's."""
    from workbench.core import checks

    class Pictures:
        def image(self, row):
            return np.full((1, 8, 8), 40 * row, np.uint8)

    kinds = np.array([checks.EXACT, checks.PERCEPTUAL, checks.NEAR], dtype=object)
    table = checks.Table(row=np.arange(3), split=np.array(["test"] * 3, dtype=object), index=np.arange(3),
                         file=np.array([""] * 3, dtype=object), **{"class": np.array(["a"] * 3, dtype=object)},
                         distance=np.array([0.0, 0.01, 0.002], np.float32), exact=np.array([True, False, False]),
                         kind=kinds, pixel_distance=np.array([0.0, 0.021, 0.3], np.float32),
                         train_file=np.array(["x.png"] * 3, dtype=object), train_class=np.array(["a"] * 3, dtype=object))
    view = window.data.views["leaks"]
    view.show_table(table, Pictures())
    headers = [view.table.horizontalHeaderItem(c).text() for c in range(view.table.columnCount())]
    assert headers[4:7] == ["kind", "distance", "pixel_distance"]
    assert [view.table.item(r, 4).text() for r in range(3)] == list(kinds)
    assert view.table.item(1, 6).text() == "0.0210"
