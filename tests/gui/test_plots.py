import numpy as np

from workbench.core.events import StepEvent
from workbench.gui.panels.plots import PlotsPanel


def feed(panel, steps, loss=lambda s: 5.0 / (1 + s / 50)):
    for s in steps:
        panel.add_step(StepEvent(0, s, loss(s), 1e-3, 1000.0, 1.0, {"pos": -0.5 * loss(s), "neg": loss(s)}))
    panel.redraw()


def test_step_plots_keep_their_view_with_headroom_and_respect_the_user(qtbot):
    panel = PlotsPanel()
    qtbot.addWidget(panel)
    panel.show()
    vb = panel.loss_plot.getViewBox()
    feed(panel, range(0, 100, 5))
    (x0, x1), (y0, y1) = vb.viewRange()
    ys = np.asarray(panel.losses)
    assert x0 <= 0 and x1 >= 95 and y0 <= ys.min() and y1 >= ys.max()  # all data in view
    feed(panel, range(100, 120, 5))  # a little more data: the view (and its axis labels) stays
    assert vb.viewRange() == [[x0, x1], [y0, y1]]
    feed(panel, range(120, 400, 5))  # past the headroom: the view grows to hold it all
    (_, x1b), (y0b, _) = vb.viewRange()
    assert x1b >= 395 and y0b <= min(panel.losses)
    lr_vb = panel.lr_plot.getViewBox()
    assert lr_vb.viewRange()[1][1] >= 1e-3
    terms = np.concatenate([np.asarray(v)[:, 1] for v in panel.terms.values()])
    t_range = panel.terms_plot.getViewBox().viewRange()[1]
    assert t_range[0] <= terms.min() and t_range[1] >= terms.max()

    vb.setRange(xRange=(10, 20), yRange=(1, 2), padding=0)
    vb.sigRangeChangedManually.emit(vb.state["mouseEnabled"])  # what a pan or zoom with the mouse emits
    feed(panel, range(400, 900, 5))
    assert np.allclose(vb.viewRange(), [[10, 20], [1, 2]])  # the user's zoom is kept
    vb.enableAutoRange()  # the plot's "A" button
    feed(panel, range(900, 905, 5))
    (x0c, x1c), _ = vb.viewRange()
    assert x1c >= 900 and panel.ranges[panel.loss_plot].follow


def test_overlays_go_on_a_new_run_and_the_knn_plot_follows_the_epochs_within_0_1(qtbot):
    from workbench.core.events import EvalEvent

    panel = PlotsPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.overlay("2026-11-22_140000_bundled-dcl", [1, 10, 20], [5.0, 4.0, 3.5], [1, 2], [0.5, 0.6], 1)
    legend = panel.loss_plot.plotItem.legend
    assert "140000_bundled-dcl" in [label.text for _, label in legend.items]
    panel.reset()  # Start: a new run
    assert [label.text for _, label in legend.items] == ["loss", "smoothed"]
    assert not any(i.name() and "bundled" in i.name() for i in panel.loss_plot.listDataItems())
    assert len(panel.knn_plot.listDataItems()) == 1  # the live kNN curve only
    for epoch in range(1, 23):
        panel.add_eval(EvalEvent(epoch, 10 * epoch, {"knn_acc": min(0.99, 0.3 + 0.05 * epoch)}))
        panel.redraw()
    (x0, x1), (y0, y1) = panel.knn_plot.getViewBox().viewRange()
    assert x0 <= 1 and x1 >= 22  # epoch 22 is in view, not stuck at 1-10
    assert -0.03 <= y0 <= 0 and 1.0 <= y1 <= 1.06  # an accuracy: [0, 1] with a little headroom
    feed(panel, range(0, 100, 5))
    (_, _), (ly0, ly1) = panel.loss_plot.getViewBox().viewRange()
    ys = np.asarray(panel.losses)
    assert ly1 - ys.max() >= 0.25 * (ys.max() - ys.min())  # headroom above the curve: the legend's place


def test_a_curve_of_one_point_is_drawn_as_a_marker_until_a_second_joins_it(qtbot):
    panel = PlotsPanel()
    qtbot.addWidget(panel)
    panel.show()
    feed(panel, [0])
    curves = [panel.raw, panel.smooth, panel.lr_curve, *panel.term_curves.values()]
    assert len(curves) == 5 and all(c.opts["symbol"] == "o" for c in curves)
    feed(panel, [5])
    assert all(c.opts["symbol"] is None for c in curves)


def points_under_legend(plot) -> int:
    """How many of the plot's data points the legend covers, in scene coordinates."""
    from PySide6.QtCore import QPointF

    box, vb = plot.plotItem.legend.sceneBoundingRect(), plot.getViewBox()
    return sum(box.contains(vb.mapViewToScene(QPointF(float(x), float(y))))
               for item in plot.listDataItems() for x, y in zip(item.xData, item.yData, strict=True))


def test_legends_stay_clear_of_the_curves_live_after_fitting_and_with_overlays(qtbot):
    panel = PlotsPanel()
    qtbot.addWidget(panel)
    panel.resize(1000, 560)
    panel.show()
    qtbot.waitExposed(panel)
    feed(panel, range(0, 300, 5))  # the "pos" term rises to its highest at the right, where the legend is
    assert points_under_legend(panel.terms_plot) == 0 and points_under_legend(panel.loss_plot) == 0
    for i in range(3):  # three compared runs: a legend five rows high over the loss plot
        panel.overlay(f"2026-11-2{i}_140000_bundled-run", [1, 150, 300], [5.0, 4.9, 4.8 + 0.1 * i], [], [], i)
    assert len(panel.loss_plot.plotItem.legend.items) == 5
    assert points_under_legend(panel.loss_plot) == 0
    panel.fit()
    assert points_under_legend(panel.loss_plot) == 0 and points_under_legend(panel.terms_plot) == 0


def test_similarity_histograms_never_divide_by_zero():
    import warnings

    from workbench.gui.panels.inspector import density_histogram, similarity_bins

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "invalid value encountered in divide" would raise here
        bins = similarity_bins(np.array([]), np.array([np.nan]))
        assert bins[0] == -1 and bins[-1] == 1
        assert not density_histogram(np.array([]), bins).any()  # an empty batch: no bars, no NaN
        assert not density_histogram(np.array([np.nan, np.inf]), bins).any()
        dot = np.array([3.5, 7.0, -2.0])  # dot-product similarities leave [-1, 1]
        wide = similarity_bins(dot)
        assert wide[0] <= -2 and wide[-1] >= 7
        ref = np.histogram(dot, wide, density=True)[0]  # numpy's own density where it is defined
        assert np.allclose(density_histogram(dot, wide), ref)


def test_mean_similarity_over_training_tells_positives_from_negatives_and_a_new_run_starts_clean(qtbot):
    import pyqtgraph as pg

    from workbench.core.events import BatchEvent
    from workbench.gui.panels.inspector import InspectorPanel

    from PySide6.QtWidgets import QApplication

    insp = InspectorPanel()
    qtbot.addWidget(insp)
    insp.show()
    insp.tabs.setCurrentIndex(1)
    brushes = [pg.mkBrush(c.opts["symbolBrush"]).color().name() for c in (insp.trend_pos, insp.trend_neg)]
    pens = [pg.mkPen(c.opts["pen"]).color().name() for c in (insp.trend_pos, insp.trend_neg)]
    assert brushes == pens and brushes[0] != brushes[1]  # markers (and legend swatches) in their line's colour
    drawn = [c.scatter.opts["brush"].color().name() for c in (insp.trend_pos, insp.trend_neg)]
    assert drawn == brushes  # what the legend draws its markers with, before any data
    rng = np.random.default_rng(0)
    n = 16
    z = rng.normal(size=(2 * n, 4)).astype(np.float32)
    sim = 5 * z @ z.T  # unnormalised: the histogram's axis widens beyond [-1, 1]
    np.fill_diagonal(sim, -2)
    pos = np.r_[np.arange(n, 2 * n), np.arange(n)]
    views = rng.integers(0, 255, (n, 1, 8, 8), dtype=np.uint8)
    for step in (100, 200):
        insp.show_batch(BatchEvent(step, views, views, np.arange(n), np.arange(n) % 4, sim, np.ones(2 * n), pos, pos, 0.5, "x"))
    QApplication.processEvents()
    assert insp.trend.getViewBox().viewRange()[0][1] >= 200 and insp.hist.getViewBox().viewRange()[0][1] > 2
    insp.reset()  # another run opened: no stale axes from the last capture
    QApplication.processEvents()
    assert insp.trend.getViewBox().viewRange()[0] == [0, 1] and insp.hist.getViewBox().viewRange()[0] == [-1, 1]
    insp.show_batch(BatchEvent(7, views, views, np.arange(n), np.arange(n) % 4, sim, np.ones(2 * n), pos, pos, 0.5, "x"))
    QApplication.processEvents()
    assert insp.hist.getViewBox().viewRange()[0][1] > 2  # the next capture sets them again


def test_an_overlay_names_the_shown_run_and_covers_the_learning_rate_and_the_loss_terms(qtbot):
    panel = PlotsPanel()
    qtbot.addWidget(panel)
    panel.show()
    feed(panel, range(0, 50, 5))
    panel.name_base("2026-11-22_130000_bundled-ntxent")
    panel.overlay("2026-11-22_140000_bundled-dcl", [1, 10, 20], [5.0, 4.0, 3.5], [1, 2], [0.5, 0.6], 1,
                  lrs=[1e-4, 5e-4, 1e-3], terms={"pos": ([1, 10, 20], [-1.0, -2.0, -2.5])})
    legend = [label.text for _, label in panel.loss_plot.plotItem.legend.items]
    assert legend == ["130000_bundled-ntxent: loss", "130000_bundled-ntxent: smoothed",
                      "140000_bundled-dcl"]
    lr = [c for c in panel.lr_plot.listDataItems() if c is not panel.lr_curve]
    assert len(lr) == 1 and list(lr[0].yData) == [1e-4, 5e-4, 1e-3]
    terms = [label.text for _, label in panel.terms_plot.plotItem.legend.items]
    assert "pos (140000_bundled-dcl)" in terms and "pos" in terms
    assert panel.lr_plot.getViewBox().viewRange()[1][1] >= 1e-3  # the overlaid run's peak in view
    panel.clear_overlays()
    assert [label.text for _, label in panel.loss_plot.plotItem.legend.items] == ["loss", "smoothed"]
    assert panel.lr_plot.listDataItems() == [panel.lr_curve] and "pos (140000_bundled-dcl)" not in [
        label.text for _, label in panel.terms_plot.plotItem.legend.items]


def test_the_knn_plot_names_the_protocol_of_the_run_it_shows(qtbot):
    """The kNN plot's title gives the shown run's k and T (lightly's k=200, T=0.1 reads differently from the
    default), for a run that starts and for a run folder opened; short enough for the 1024-pixel window."""
    import types

    from workbench.core.config import Config
    from workbench.core.events import RunStarted
    from workbench.gui.session import Session

    panel = PlotsPanel()
    qtbot.addWidget(panel)
    session = Session()
    panel.attach(types.SimpleNamespace(show_panel=lambda p: None, session=session))
    cfg = Config().with_overrides(["eval.knn_k=200", "eval.knn_temperature=0.1"])
    session.run.started("run", cfg.to_dict())
    panel.on_event(RunStarted("run", cfg.to_dict(), 100, 10, 10, 40, "cpu", ["a", "b"]))
    title = panel.knn_plot.plotItem.titleLabel.text
    assert "k=200" in title and "T=0.1" in title and len(title) <= 32
    session.run.opened("other", Config())
    panel.run_opened("other")
    assert panel.knn_plot.plotItem.titleLabel.text == "kNN (k=20, T=0.07), held-out"
    session.run.started("run", {"eval": {"knn_k": "twenty"}})  # a config this version cannot read
    panel.on_event(RunStarted("run", {}, 100, 10, 10, 40, "cpu", ["a", "b"]))
    assert panel.knn_plot.plotItem.titleLabel.text == "kNN accuracy, held-out"
