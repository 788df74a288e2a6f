"""What a user meets before training: the wheel, the space at 1280x800, editors, the export dialog."""
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import (QAbstractScrollArea, QAbstractSlider, QAbstractSpinBox, QApplication, QComboBox, QLabel,
                               QScrollBar, QWidget)


def wheel(widget, steps: int = -3):
    """Send what a mouse wheel sends over ``widget`` (through the application, so event filters run)."""
    pos = QPointF(widget.rect().center())
    ev = QWheelEvent(pos, QPointF(widget.mapToGlobal(pos.toPoint())), QPoint(0, 0), QPoint(0, 120 * steps),
                     Qt.NoButton, Qt.NoModifier, Qt.NoScrollPhase, False)
    QApplication.sendEvent(widget, ev)


def loaded(window, qtbot):
    qtbot.waitUntil(lambda: window.setup.data.splits is not None and window.setup.valid, timeout=30000)


def test_wheel_over_unfocused_controls_scrolls_the_panel_and_changes_nothing(window, qtbot):
    s = window.setup
    loaded(window, qtbot)
    window.resize(1280, 800)
    window.setFocus()
    before = s.build_config().to_dict()
    bar = s.verticalScrollBar()
    assert bar.maximum() > 0  # the panel is taller than the window: there is something to scroll
    bar.setValue(0)
    controls = [w for w in s.findChildren(QWidget) if isinstance(w, (QComboBox, QAbstractSpinBox, QAbstractSlider))
                and not isinstance(w, QScrollBar) and w.isVisible()]
    assert len(controls) > 8
    for w in controls:
        assert w.focusPolicy() == Qt.StrongFocus, w.objectName()  # the wheel never gives them focus
        wheel(w, -1)
    qtbot.wait(300)  # the form's 150 ms validation timer, had anything changed
    assert s.build_config().to_dict() == before
    assert bar.value() > 0  # the wheel scrolled the panel instead
    s.loss.setFocus(Qt.MouseFocusReason)  # clicked into: now the wheel is the user's intent
    qtbot.waitUntil(s.loss.hasFocus)
    wheel(s.loss, -1)
    assert s.loss.currentIndex() == 1


@pytest.mark.qt_log_ignore("does not support")  # the offscreen platform cannot raise or grab for the combo's popup
def test_wheel_leaves_a_control_reached_with_tab_until_it_is_clicked(window, qtbot):
    """Type a temperature, press Tab (focus moves on to the similarity combo), scroll over it: nothing changes."""
    s = window.setup
    s.loss.setCurrentText("ntxent")
    form = s.loss_form
    sim = form.editors["similarity"]
    temp = form.editors["temperature"].spin
    temp.setFocus(Qt.MouseFocusReason)
    qtbot.waitUntil(temp.hasFocus)
    before = sim.currentText()
    for _ in range(6):  # Tab until the similarity combo has focus (the slider's handle may come first)
        if sim.hasFocus():
            break
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key_Tab)
    assert sim.hasFocus()
    wheel(sim, -1)
    assert sim.currentText() == before  # focus by Tab is not a click
    qtbot.mousePress(sim, Qt.LeftButton)  # the user clicks into it (the popup opens, and is closed again)
    sim.hidePopup()
    wheel(sim, -1)
    assert sim.currentText() != before
    chosen = sim.currentText()
    QApplication.sendEvent(sim, QEvent(QEvent.Leave))  # the pointer moves off to scroll the panel; it comes back under it
    wheel(sim, -1)
    assert sim.currentText() == chosen and sim.hasFocus()  # still focused, but the wheel is the panel's again


def _clipped(root: QWidget) -> list[str]:
    """Visible widgets narrower than what their content needs (a label that wraps may be narrow)."""
    out = []
    for w in root.findChildren(QWidget):
        if not w.isVisibleTo(root) or w.width() == 0 or isinstance(w.parent(), (QAbstractScrollArea, QAbstractSpinBox)):
            continue
        if isinstance(w, QLabel) and (w.wordWrap() or w.pixmap() is not None and not w.pixmap().isNull()):
            continue
        need = w.minimumSizeHint().width()
        if need > 0 and w.width() + 1 < need:
            out.append(f"{type(w).__name__}('{w.objectName() or getattr(w, 'text', lambda: '')()}') {w.width()} < {need}")
    return out


def test_nothing_clipped_at_1280x800_and_errors_wrap(window, qtbot):
    loaded(window, qtbot)
    window.resize(1280, 800)
    qtbot.waitUntil(lambda: window.width() <= 1280)
    QApplication.processEvents()
    s = window.setup
    assert s.horizontalScrollBar().maximum() == 0  # no sideways scrolling in the set-up panel
    assert _clipped(s) == []
    for i in range(window.tabs.count()):
        window.tabs.setCurrentIndex(i)
        QApplication.processEvents()
        assert _clipped(window.tabs.currentWidget()) == [], window.tabs.tabText(i)
    width = s.width()
    s.root.setText("/a/" + "very-long-folder-name/" * 20)
    s.dataset.setCurrentText("image_folder")
    qtbot.waitUntil(lambda: "root" in s.error.text() or "exist" in s.error.text(), timeout=10000)
    QApplication.processEvents()
    assert s.width() == width and s.horizontalScrollBar().maximum() == 0  # a long error wraps, never widens
    assert s.error.height() > s.error.fontMetrics().height() * 1.5 or len(s.error.text()) < 40


def test_similarities_tab_shows_each_view_whole_and_the_heatmap_square(window, qtbot):
    from workbench.core.events import BatchEvent

    window.resize(1280, 800)
    insp = window.inspector
    window.tabs.setCurrentWidget(insp)
    insp.tabs.setCurrentIndex(1)
    rng = np.random.default_rng(0)
    n = 64
    z = rng.normal(size=(2 * n, 8)).astype(np.float32)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    sim = z @ z.T
    np.fill_diagonal(sim, -2)
    pos = np.r_[np.arange(n, 2 * n), np.arange(n)]
    views = rng.integers(0, 255, (n, 1, 28, 28), dtype=np.uint8)
    insp.show_batch(BatchEvent(5, views, views, np.arange(n), np.arange(n) % 10, sim, np.ones(2 * n), pos, pos, 0.5, "ntxent"))
    QApplication.processEvents()
    for w in (insp.heat, insp.hist, insp.trend, insp.prob_plot):
        assert w.width() >= 250 and w.height() >= 180, type(w).__name__
    vb = insp.heat.ci.getItem(0, 0).getViewBox()
    (x0, x1), (y0, y1) = vb.viewRange()
    assert x0 <= 0 and x1 >= 2 * n and y0 <= 0 and y1 >= 2 * n  # every column and row of the heatmap in view
    assert vb.state["aspectLocked"] == 1  # square cells
    assert insp.heat_bar.levels() == (-1, 1)
    assert "step 5" in insp.info.text()


def test_parameter_editors_are_typed_and_the_recipe_reads_back_numbers(window, qtbot):
    s = window.setup
    loaded(window, qtbot)
    s.add_op.setCurrentText("gaussian_blur")
    s.findChild(QWidget, "aug_Add").click()
    form = s.step_form
    ed = form.editors.get("sigma")
    assert ed is not None and hasattr(ed, "boxes")  # a (low, high) range: two number boxes, not a text field
    ed.boxes[1].setValue(1.5)
    qtbot.waitUntil(lambda: [r.get("sigma", [0, 0])[1] for r in s.cfg.augment.recipe][-1:] == [pytest.approx(1.5)])  # auto: [] at first
    assert all(isinstance(v, float) for v in s._recipe[-1]["sigma"])
    text = s.recipe_list.item(s.recipe_list.count() - 1).text()
    assert "'" not in text and "1.5" in text  # numbers, not strings
    assert s.preset.currentText() == "custom"
    s.preset.setCurrentText("simclr_small_grey")
    assert s.preset.currentText() == "simclr_small_grey" and s._recipe[-1]["name"] != "gaussian_blur"
    choice = [p for p in s.loss_form.editors.values() if isinstance(p, QComboBox)]
    from workbench.core.losses import LOSSES

    if any(getattr(p, "choices", ()) for p in LOSSES.get(s.loss.currentText()).params):
        assert choice  # choices come as a combo box
    assert "``" not in s.loss_doc.text()


def test_empty_plots_say_how_to_fill_them(window):
    assert all(h.isVisible() for h in window.plots.hints)
    assert window.embedding.hint.isVisible()


def test_export_dialog_suggests_a_folder_per_format_and_names_what_it_would_replace(qtbot, tmp_path):
    from workbench.gui.export_dialog import ExportDialog

    run = tmp_path / "run"
    run.mkdir()
    dlg = ExportDialog(str(run))
    qtbot.addWidget(dlg)
    assert dlg.folder.text() == str(run / "export" / "safetensors")
    assert dlg.buttons.buttons()[0].isEnabled()  # a folder that does not exist yet is fine: it is created
    dlg.format.setCurrentText("onnx")
    assert dlg.folder.text() == str(run / "export" / "onnx")
    (run / "mine").mkdir()
    (run / "mine" / "model_card.json").write_text("{}")
    dlg.folder.setText(str(run / "mine"))
    dlg.folder.textEdited.emit(dlg.folder.text())
    assert "model_card.json" in dlg.note.text()
    dlg.format.setCurrentText("npz")
    assert dlg.folder.text() == str(run / "mine")  # the user's folder is kept
    assert dlg.choice() == ("npz", str(run / "mine"), False, False)
    assert not dlg.readout.isEnabled()  # no config, no fitted read-out: nothing to add


def test_export_dialog_offers_a_read_out_only_for_a_run_that_fitted_one_and_never_with_the_head(qtbot, tmp_path):
    from workbench.core.config import Config
    from workbench.gui.export_dialog import ExportDialog

    for readout in ("none", "whitened"):
        run = tmp_path / readout
        run.mkdir()
        Config().with_overrides([f"eval.readout={readout}"]).save(run / "config.toml")
        dlg = ExportDialog(str(run))
        qtbot.addWidget(dlg)
        assert dlg.readout.isEnabled() == (readout == "whitened")
    assert "whitened read-out" in dlg.readout.text()
    dlg.readout.setChecked(True)
    assert not dlg.head.isEnabled() and dlg.choice()[2:] == (False, True)
    dlg.readout.setChecked(False)
    dlg.head.setChecked(True)
    assert not dlg.readout.isEnabled() and dlg.choice()[2:] == (True, False)


def test_optimiser_parameters_follow_the_optimiser_and_keep_small_values(window, qtbot):
    s = window.setup
    loaded(window, qtbot)
    assert set(s.optim_form.editors) == {"weight_decay"}  # adamw: lr has its own slider
    s.optim_form.editors["weight_decay"].setValue(1e-6)
    qtbot.waitUntil(lambda: s.cfg.optim.weight_decay == pytest.approx(1e-6))
    s.optim.setCurrentText("sgd")
    assert set(s.optim_form.editors) == {"weight_decay", "momentum"}
    assert s.optim_form.editors["weight_decay"].value() == pytest.approx(1e-6)  # kept across the switch
    qtbot.waitUntil(lambda: s.cfg.optim.name == "sgd")


def test_thumbnails_show_several_classes(window, qtbot):
    loaded(window, qtbot)
    tiles = [t for t in window.setup.thumbs.tiles.values() if t.isVisibleTo(window.setup)]
    classes = {t.pic.toolTip() for t in tiles}
    assert len(tiles) >= 10 and len(classes) >= 5  # not the first 16 files of one class


def colour_folder(tmp_path, classes, seed, monkeypatch):
    """tmp_path/imgs/<class>/*.png: 40 random 20x20 colour images a class; the decoded store goes to tmp_path/cache."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in classes:
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(40):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(tmp_path / "imgs" / c / f"{i}.png")
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))


def test_data_load_in_the_background_cancel_and_start_reuses_them(window, qtbot, tmp_path, monkeypatch):
    colour_folder(tmp_path, ("ants", "bees", "cats"), seed=0, monkeypatch=monkeypatch)
    s = window.setup
    loaded(window, qtbot)
    s.batch.setValue(16)
    s.root.setText(str(tmp_path / "imgs"))
    s.dataset.setCurrentText("image_folder")
    assert s.loading is not None and s.load_host.isVisibleTo(s)  # loading: progress bar and Cancel shown
    s.load_cancel.click()
    assert s.loading is None and "cancelled" in s.data_info.text()
    qtbot.waitUntil(lambda: not window.start_btn.isEnabled())
    s.subset.setValue(90)  # any data edit loads again
    assert s.loading is not None
    import workbench.core.setup as setup_module

    def no_second_load(*a, **k):
        raise AssertionError("the loop loaded the data a second time")

    monkeypatch.setattr(setup_module, "load_splits", no_second_load)
    window.start()  # pressed while loading: starts as soon as the data are there, with them
    qtbot.waitUntil(lambda: window.running, timeout=60000)
    assert window.session.data.splits is not None or window.run_dir is not None  # started with the loaded splits
    with qtbot.waitSignal(window.trainingDone, timeout=120000):
        window.stop()
    assert not window.messages or all("load" not in m for m in window.messages)
    assert "3 classes" in s.data_info.text() and "augmentation preset auto -> simclr_cifar" in s.data_info.text()
    from workbench.gui.panels.setup import preset_recipe

    assert s.preset.currentText() == "auto" and s._recipe == preset_recipe("simclr_cifar")  # colour data: the colour recipe
    from workbench.core.config import Config

    saved = Config.load(Path(window.run_dir) / "config.toml").augment
    assert saved.preset == "simclr_cifar" and saved.recipe == preset_recipe("simclr_cifar")  # the run records what it used


def test_augmentation_preview_shows_the_new_dataset_when_it_arrives(window, qtbot, tmp_path, monkeypatch):
    from workbench.gui.widgets import to_pixmap

    colour_folder(tmp_path, ("ants", "bees"), seed=1, monkeypatch=monkeypatch)
    s = window.setup
    loaded(window, qtbot)
    s.root.setText(str(tmp_path / "imgs"))
    with qtbot.waitSignal(s.dataLoaded, timeout=30000) as got:
        s.dataset.setCurrentText("image_folder")
    train = got.args[0][0]
    for col in range(3):  # the "original" row holds the new dataset's first images
        want = to_pixmap(train.images[col].numpy(), s.preview.size).toImage()
        assert s.preview.tiles[(0, col)].pic.pixmap().toImage() == want


def test_root_placeholder_and_augmentation_names_fit_at_1280x800(window, qtbot):
    from workbench.core.augment import AUGMENTS

    s = window.setup
    window.resize(1280, 800)
    loaded(window, qtbot)
    s.root.setText("")
    fm = s.root.fontMetrics()
    assert s.root.width() >= fm.horizontalAdvance(s.root.placeholderText()) + 12  # not "folder (not needed for b…"
    longest = max(AUGMENTS.names(), key=len)
    s.add_op.setCurrentText(longest)
    text_room = s.add_op.width() - s.add_op.iconSize().width() - 30  # less the arrow and frame
    assert text_room >= s.add_op.fontMetrics().horizontalAdvance(longest), longest


def test_what_the_loader_guessed_about_a_folder_is_shown_with_it(window, qtbot, tmp_path):
    """Images of several sizes: the size the loader chose (and why) is in the data line, not only in a log."""
    from PIL import Image

    for c, side in (("a", 40), ("b", 60)):
        for i in range(6):
            (tmp_path / "imgs" / c).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (side + i, side), (40 * i, 90, 200)).save(tmp_path / "imgs" / c / f"{i}.png")
    s = window.setup
    loaded(window, qtbot)
    assert s.dataset.currentText() == "bundled"
    with qtbot.waitSignal(s.dataLoaded, timeout=30000):  # a folder typed while the sample is chosen: that folder
        s.root.setFocus()
        qtbot.keyClicks(s.root, str(tmp_path / "imgs"))
        qtbot.keyClick(s.root, Qt.Key_Return)
    assert s.dataset.currentText() == "image_folder"
    text = s.data_info.text()
    assert "2 classes" in text and "⚠" in text and "resizing all to 40x40 (the median shorter side)" in text, text
    assert "data: data: '" not in window.messages_text() and "resizing all to 40x40" in window.messages_text()
    with qtbot.waitSignal(s.dataLoaded, timeout=30000):  # the bundled data set: nothing guessed, nothing shown
        s.dataset.setCurrentText("bundled")
    assert "⚠" not in s.data_info.text()
    assert s.build_config().data.root == "" and s.valid  # the box's folder is not the sample's


def type_into(qtbot, box, text: str):
    """Select what a number box shows, type ``text`` and leave it with Tab, as a user does."""
    box.setFocus()
    box.selectAll()
    qtbot.keyClicks(box.lineEdit(), text)
    qtbot.keyClick(box.lineEdit(), Qt.Key_Tab)


def test_a_box_of_positive_numbers_takes_no_minus(window, qtbot):
    """Typing -0.01 as a learning rate: the minus is refused as typed, so the box never holds "-0" (which passed as
    0 and was named "got -0.0")."""
    s = window.setup
    loaded(window, qtbot)
    type_into(qtbot, s.lr.spin, "-0.01")
    assert s.lr.spin.text() == "0.01" and s.lr.value() == 0.01 and "-" not in s.lr.spin.text()
    type_into(qtbot, s.lr.spin, "0")
    qtbot.waitUntil(lambda: not window.start_btn.isEnabled())
    assert s.lr.spin.text() == "0" and "got 0.0" in s.error.text() and "-0" not in s.error.text()


@pytest.mark.parametrize("typed, value", [("3e-4", 3e-4), ("0.000001", 1e-6), ("1E-3", 1e-3), (".05", 0.05)])
def test_number_boxes_take_what_people_type(window, qtbot, typed, value):
    s = window.setup
    loaded(window, qtbot)
    type_into(qtbot, s.lr.spin, typed)
    qtbot.waitUntil(lambda: s.cfg.optim.lr == pytest.approx(value))
    assert float(s.lr.spin.text()) == pytest.approx(value)  # shown as entered, not rounded to 0 or cut to "3"


def test_out_of_range_numbers_are_named_not_silently_reverted(window, qtbot):
    s = window.setup
    loaded(window, qtbot)
    s.loss.setCurrentText("hcl")
    type_into(qtbot, s.loss_form.editors["beta"], "1e9")
    qtbot.waitUntil(lambda: "beta" in s.error.text())
    assert not window.start_btn.isEnabled() and s.loss_form.editors["beta"].value() == 1e9
    type_into(qtbot, s.loss_form.editors["beta"], "2")
    qtbot.waitUntil(window.start_btn.isEnabled)
    type_into(qtbot, s.lr.spin, "20")  # past the slider's end: kept and named, not reverted
    qtbot.waitUntil(lambda: "optim.lr" in s.error.text())
    assert s.lr.value() == 20 and not window.start_btn.isEnabled()
    type_into(qtbot, s.lr.spin, "0.002")
    s.unit.setCurrentText("minutes")
    type_into(qtbot, s.minutes, "0")
    qtbot.waitUntil(lambda: "time_budget_s" in s.error.text())
    assert s.minutes.value() == 0 and not window.start_btn.isEnabled() and s.minutes.styleSheet()
    type_into(qtbot, s.minutes, "2")
    qtbot.waitUntil(window.start_btn.isEnabled)
    assert s.build_config().train.time_budget_s == 120


def test_runs_table_keeps_the_selected_run_when_a_new_run_appears(qtbot, tmp_path):
    from workbench.core.config import Config
    from workbench.gui.panels.runs import RunsPanel

    for hour in (10, 11, 12):
        (tmp_path / f"2026-11-22_{hour}0000_bundled-ntxent" / "checkpoints").mkdir(parents=True)  # what a run writes
        Config().save(tmp_path / f"2026-11-22_{hour}0000_bundled-ntxent" / "config.toml")
        (tmp_path / f"2026-11-22_{hour}0000_bundled-ntxent" / "metrics.csv").write_text("time,epoch,step\n")
    panel = RunsPanel(str(tmp_path))
    qtbot.addWidget(panel)
    panel.show()
    with qtbot.waitSignal(panel.refreshed, timeout=10000):
        panel.refresh()
    cell = panel.table.visualRect(panel.table.model().index(1, 2)).center()
    qtbot.mouseClick(panel.table.viewport(), Qt.LeftButton, pos=cell)
    chosen = panel.selected()
    assert len(chosen) == 1
    panel.hide()
    (tmp_path / "2026-11-22_130000_bundled-ntxent" / "checkpoints").mkdir(parents=True)  # a new run: the rows below it move down
    Config().save(tmp_path / "2026-11-22_130000_bundled-ntxent" / "config.toml")
    (tmp_path / "2026-11-22_130000_bundled-ntxent" / "metrics.csv").write_text("time,epoch,step\n")
    with qtbot.waitSignal(panel.refreshed, timeout=10000):
        panel.refresh()
    assert panel.selected() == chosen
    assert panel.table.selectionModel().selectedRows()[0].row() == 2
    panel.set_running(chosen[0])  # while a run trains: no second run resumed, and its folder stays
    assert not panel.buttons["resume"].isEnabled() and "stop the training run first" in panel.buttons["resume"].toolTip()
    assert not panel.buttons["delete"].isEnabled() and panel.buttons["open"].isEnabled()
    panel.set_running(None)
    assert panel.buttons["resume"].isEnabled() and panel.buttons["delete"].isEnabled()


def test_a_long_status_message_ends_in_an_ellipsis_and_is_kept_whole(window, qtbot):
    window.resize(1280, 800)
    qtbot.waitUntil(lambda: window.width() <= 1280)
    long = "data: " + "a decision about the images that needs more room than the status bar has " * 4 + "END"
    window._on_warning(long, note=True)
    QApplication.processEvents()
    shown = QLabel.text(window.status)  # what the bar draws
    assert shown.endswith("…") and "END" not in shown
    assert window.status.fontMetrics().horizontalAdvance(shown) <= window.status.width()
    assert window.status.text() == f"note: {long}" == window.status.toolTip()  # whole where it is read back
    window.resize(3000, 800)  # room enough: nothing cut
    qtbot.waitUntil(lambda: window.status.width() > window.status.fontMetrics().horizontalAdvance(f"note: {long}"), timeout=5000)
    assert QLabel.text(window.status) == f"note: {long}"


def test_every_loss_description_ends_as_a_sentence():
    """The loss box shows a docstring's first paragraph: one leading into a formula ended in ':' or ','."""
    from workbench.core.losses import LOSSES
    from workbench.gui.panels.setup import plain_doc

    for name in LOSSES.names():
        text = plain_doc(LOSSES.get(name).doc)
        assert text.endswith(".") and not text.endswith((":.", ",.")) and len(text) > 20, (name, text)
    assert plain_doc("InfoNCE with K past keys as negatives:\n\n    l = ...") == "InfoNCE with K past keys as negatives."


def test_the_recipe_editor_names_the_selected_step_keeps_its_height_and_its_views(window, qtbot):
    import math

    from workbench.core.augment import AUGMENTS
    from workbench.gui.widgets import LogSlider

    s = window.setup
    loaded(window, qtbot)
    qtbot.waitUntil(lambda: s.preview.shown() == 18, timeout=30000)

    def views():
        return [s.preview.tiles[(r, c)].pic.pixmap().toImage() for r in (1, 2) for c in range(6)]

    before = views()
    s.loss_form.editors["temperature"].setValue(0.3)  # unrelated to the views
    qtbot.waitUntil(lambda: s.cfg.loss.params["temperature"] == pytest.approx(0.3))
    s.minutes.setValue(3)
    s.unit.setCurrentText("minutes")
    qtbot.waitUntil(lambda: s.cfg.train.time_budget_s == 180)
    assert views() == before  # the same views: nothing they depend on changed
    heights = set()
    for row, step in enumerate(s._recipe):
        s.recipe_list.setCurrentRow(row)
        assert s.step_title.text() == f"step {row + 1}, {step['name']}: its parameters"
        heights.add(s.step_form.minimumHeight())
        assert s.step_form.sizeHint().height() <= s.step_form.minimumHeight()
    tallest = max(len(AUGMENTS.get(n).params) for n in AUGMENTS.names())
    assert len(heights) == 1 and tallest >= 1
    s.recipe_list.setCurrentRow(0)
    first = s._recipe[0]["name"]
    s.add_op.setCurrentText("solarize" if first != "solarize" else "hflip")
    assert s.step_title.text().startswith("step 1, " + first)  # the combo above names a new step's type, not this one
    s._move(1)  # an edit of the recipe: new views
    qtbot.waitUntil(lambda: views() != before, timeout=10000)
    t = s.loss_form.editors["temperature"]
    assert isinstance(t, LogSlider) and math.log(t.hi / t.lo) / 100 < 0.06  # 1% of the slider: under 6% of the value


def test_preview_keeps_the_tiles_when_nothing_changed(window, qtbot):
    s = window.setup
    loaded(window, qtbot)
    qtbot.waitUntil(lambda: s.preview.shown() == 18, timeout=30000)
    s._update_preview()
    assert s.preview.shown() == 18 and all(s.preview.tiles[(r, 0)].isVisibleTo(s) for r in range(3))


@pytest.mark.parametrize("size", [(1024, 700), (1920, 1080)])
def test_every_tab_fits_the_window_from_1024x700_to_1920x1080(window, qtbot, size):
    """No button text cut, the sweep's results in view, no tab that widens the window (Pairs > Similarities did)."""
    from PySide6.QtCore import QPoint
    from PySide6.QtWidgets import QAbstractButton

    window.resize(*size)
    qtbot.waitUntil(lambda: (window.width(), window.height()) == size)
    window.sweep.legend.setText("  ".join(f"■ {t:g}" for t in np.linspace(0.01, 1, 30)))  # an opened sweep's colours
    for tab in range(window.tabs.count()):
        window.tabs.setCurrentIndex(tab)
        page = window.tabs.currentWidget()
        inner = getattr(page, "tabs", None)
        for sub in range(inner.count() if inner is not None else 1):
            if inner is not None:
                inner.setCurrentIndex(sub)
            QApplication.processEvents()
            assert (window.width(), window.height()) == size, (window.tabs.tabText(tab), sub)
            for b in page.findChildren(QAbstractButton):
                if b.isVisible() and b.text():
                    assert b.width() >= b.minimumSizeHint().width(), (window.tabs.tabText(tab), b.text(), b.width())
            right = page.mapTo(window, QPoint(page.width(), 0)).x()
            assert right <= window.width(), (window.tabs.tabText(tab), right)
    sweep = window.sweep
    window.tabs.setCurrentWidget(sweep)
    QApplication.processEvents()
    for w in (sweep.table, sweep.metric_plot, sweep.start_btn, sweep.budget):
        left, right = w.mapTo(sweep, QPoint(0, 0)).x(), w.mapTo(sweep, QPoint(w.width(), 0)).x()
        assert w.width() > 50 and left >= 0 and right <= sweep.width(), (w.objectName(), left, right, sweep.width())
    for b in window.findChildren(QAbstractButton):  # toolbar, status bar, set-up panel
        if b.isVisible() and b.text() and b.window() is window:
            assert b.width() >= b.minimumSizeHint().width(), (b.text(), b.width())
    window.tabs.setCurrentWidget(window.runs)
    QApplication.processEvents()
    assert window.progress.label.width() >= 300 and window.status.width() >= 150
