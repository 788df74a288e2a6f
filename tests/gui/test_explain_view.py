"""Similarity maps in the window: the Pairs tab's toggle draws every shown pair as its two maps (computed in the
background), a click on a pair, on a retrieval tile or Ctrl+click on a second embedding point opens the detail with
the cosine its maps sum to, and the deletion curve comes on request."""
import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt

from workbench.core.inference import RunModel
from workbench.core.inspector import view_image


def _backbone_cosine(run_dir, a, b):
    """cos of the run's encoder outputs (what kNN reads) for two uint8 images (C, H, W): the independent reference."""
    f = RunModel.load(run_dir).features(torch.from_numpy(np.stack([a, b])))
    return float(f[0] @ f[1] / np.linalg.norm(f[0]) / np.linalg.norm(f[1]))


@pytest.fixture
def opened(window, qtbot):
    from workbench.core.train import train

    cfg = window.setup.build_config().with_overrides(["train.max_steps=4"])
    run_dir = [e for e in train(cfg, runs_root=window.runs_root)][0].run_dir
    with qtbot.waitSignal(window.runOpened, timeout=60000):
        window.open_run(run_dir)
    return run_dir


def test_the_pairs_toggle_overlays_maps_and_a_click_opens_the_detail(window, qtbot, opened):
    insp = window.inspector
    with qtbot.waitSignal(window.batchShown, timeout=60000):
        insp.capture.click()
    window.tabs.setCurrentWidget(insp)
    insp.k.setValue(2)
    with qtbot.waitSignal(insp.mapsShown, timeout=60000) as shown:
        insp.maps.click()
    maps = shown.args[0]
    assert insp.maps_host.isVisible() and not insp.grid_host.isVisible()
    assert insp.map_grid.shown() == len(insp.pairs) == min(24, len(insp.rows())) * 3 == len(maps)
    assert np.allclose(maps.map_a.sum((1, 2)), maps.cosine, atol=1e-5)
    r, c, a, b, kind, loss_sim, _ = insp.pairs[4]
    ref = _backbone_cosine(opened, view_image(insp.batch, a), view_image(insp.batch, b))
    tile = insp.map_grid.tiles[(r, c - 1)]
    assert f"cos {ref:+.3f}" in tile.cap.text() and f"loss saw {loss_sim:+.3f}" in tile.cap.text()
    dialog = window.explain_dialog
    with qtbot.waitSignal(dialog.shown, timeout=60000) as detail:
        qtbot.mouseClick(tile.pic, Qt.LeftButton)
    assert dialog.isVisible() and kind in dialog.title.text()
    assert detail.args[0].cosine[0] == pytest.approx(ref, abs=1e-5) and f"{ref:+.4f}" in dialog.info.text()
    assert not dialog.figure.pixmap().isNull() and dialog.figure.pixmap().width() > 2 * 190  # both images side by side
    with qtbot.waitSignal(dialog.deletionShown, timeout=60000) as deleted:
        dialog.delete_btn.click()
    curve = deleted.args[0]
    assert curve.ranked.shape == (1, len(curve.fraction)) and curve.ranked[0, 0] == pytest.approx(ref, abs=1e-5)
    assert dialog.curve.isVisible()
    insp.maps.click()  # off: the plain tiles again
    assert insp.grid_host.isVisible() and not insp.maps_host.isVisible()
    with qtbot.waitSignal(dialog.shown, timeout=60000):  # a plain partner tile opens the detail too
        qtbot.mouseClick(insp.grid.tiles[(0, 1)].pic, Qt.LeftButton)
    assert "positive" in dialog.title.text()


def test_retrieval_tiles_and_ctrl_click_in_the_embedding_open_the_detail(window, qtbot, opened):
    dialog = window.explain_dialog
    emb = window.embedding
    row = emb.point_info(3)[0]
    window.retrieve(row)
    tile = window.inspector.retrieval.tiles[(1, 0)]
    with qtbot.waitSignal(dialog.shown, timeout=60000) as detail:
        qtbot.mouseClick(tile.pic, Qt.LeftButton)
    assert "neighbour" in dialog.title.text()
    first = int(tile.cap.text().split("#")[1].split()[0])
    ref = _backbone_cosine(opened, window.held_out[row], window.held_out[first])
    assert detail.args[0].cosine[0] == pytest.approx(ref, abs=1e-5)

    class Click:
        def __init__(self, mods):
            self.mods = mods

        def modifiers(self):
            return self.mods

    item = next(iter(emb.items.values()))
    points = item.points()
    emb._clicked(item, [points[0]], Click(Qt.NoModifier))  # a plain click: the neighbours of this point
    a = emb.point_info(int(points[0].data()))[0]
    b = emb.point_info(int(points[1].data()))[0]
    with qtbot.waitSignal(emb.pairSelected, timeout=5000), qtbot.waitSignal(dialog.shown, timeout=60000) as detail:
        emb._clicked(item, [points[1]], Click(Qt.ControlModifier))
    assert f"#{a} (left) and #{b} (right)" in dialog.title.text()
    assert detail.args[0].cosine[0] == pytest.approx(_backbone_cosine(opened, window.held_out[a], window.held_out[b]), abs=1e-5)


def test_maps_before_any_checkpoint_say_why_there_are_none(window, qtbot, tmp_path):
    window.session.run.folder = None
    failed = []
    window.explainer.explain(np.zeros((1, 1, 28, 28), np.uint8), np.zeros((1, 1, 28, 28), np.uint8), lambda out: None,
                             lambda msg, *_: failed.append(msg))
    qtbot.waitUntil(lambda: bool(failed), timeout=10000)
    assert "train or open a run first" in failed[0]
    window.session.run.folder = str(tmp_path)  # a run that has started but written no checkpoint yet
    window.explainer.explain(np.zeros((1, 1, 28, 28), np.uint8), np.zeros((1, 1, 28, 28), np.uint8), lambda out: None,
                             lambda msg, *_: failed.append(msg))
    qtbot.waitUntil(lambda: len(failed) == 2, timeout=10000)
    assert "none is written yet" in failed[1]
