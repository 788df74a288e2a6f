"""Live curves: loss per step (raw and smoothed), learning rate, kNN accuracy per epoch, the loss's own terms.

Data accumulate in lists; a timer redraws twice a second with ``setData`` on existing curves
(never rebuilding items). The step plots keep their view with headroom (``GrowingRange``):
re-rendering an axis's tick labels is most of a plot's paint cost, so the axes change a few
times per run rather than at every redraw.
"""
from __future__ import annotations

import re
import types
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QGridLayout, QWidget

from workbench.core.config import Config
from workbench.core import events as E
from workbench.core.history import read_history
from workbench.core.metrics import metric_label
from workbench.gui.panel import Overlay, Panel, RunEnded

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def ema(values: np.ndarray, alpha: float = 0.2) -> np.ndarray:
    """Bias-corrected exponential moving average (as TensorBoard's smoothing)."""
    out = np.empty(len(values), float)
    acc, weight = 0.0, 0.0
    for i, v in enumerate(values):
        acc = alpha * v + (1 - alpha) * acc
        weight = alpha + (1 - alpha) * weight
        out[i] = acc / weight
    return out


def legend_name(run_name: str) -> str:
    """A run folder's name as a legend shows it: without its date ("2026-12-07_201138_bundled-ntxent" ->
    "201138_bundled-ntxent"), so that names fit a legend on a 1024-pixel window (the Runs tab has the date)."""
    return re.sub(r"^\d{4}-\d{2}-\d{2}_", "", run_name)


def legend_room(plot: pg.PlotWidget) -> float:
    """Headroom above the data, as a fraction of the data's span, that keeps the plot's legend (drawn at the
    top) clear of the curves: its height with a margin, out of the view's height in pixels. The data and
    the 10% below them fill the rest."""
    legend, height = plot.getPlotItem().legend, plot.getViewBox().height()
    if legend is None or not legend.items or height <= 0:
        return 0.0
    legend.layout.activate()  # its size with the rows just added
    share = min(0.6, (legend.boundingRect().height() + 12) / height)
    return 1.1 * share / (1 - share)


def mark_lone_point(curve: pg.PlotDataItem) -> None:
    """A curve of one point draws no line: it gets a marker until a second point joins it."""
    want = "o" if curve.xData is not None and len(curve.xData) == 1 else None
    if curve.opts["symbol"] != want:
        curve.setSymbol(want)
        curve.setSymbolSize(6)
        curve.setSymbolBrush(curve.opts["pen"].color() if want else None)


class GrowingRange:
    """Keeps a plot's view around its data with headroom (at least the legend's room); hands the view to
    the user once they pan or zoom, and takes it back when they press the plot's auto-range ("A") button."""

    def __init__(self, plot: pg.PlotWidget, top: float = 0.1, x0: float = 0.0):
        self.plot, self.vb = plot, plot.getViewBox()
        self.vb.disableAutoRange()
        self.follow = True
        self.top, self.x0 = top, x0  # least headroom above the data (a legend's room can ask for more), x axis start
        self.placed = False  # set once the view was first put around the data
        self.vb.sigRangeChangedManually.connect(self._manual)
        self.vb.sigStateChanged.connect(self._state)

    def _manual(self, *_):
        self.follow = False

    def _state(self, *_):
        if any(self.vb.state["autoRange"]):  # the auto-range button
            self.vb.disableAutoRange()
            self.follow = True

    def update(self, x1: float, y0: float, y1: float):
        if not self.follow or not (np.isfinite(y0) and np.isfinite(y1)):
            return
        (_, vx1), (vy0, vy1) = self.vb.viewRange()
        xr = yr = None
        if x1 > vx1 or x1 < 0.4 * vx1 or not self.placed:
            xr = (self.x0, max(10.0, 1.5 * x1))
        span = max(y1 - y0, 1e-6 * abs(y1), 1e-12)
        room = legend_room(self.plot)
        top = max(self.top, room)
        if y0 < vy0 or y1 + 0.9 * room * span > vy1 or vy1 - vy0 > 2 * (1.1 + top) * span or not self.placed:
            yr = (y0 - 0.1 * span, y1 + top * span)
        self.placed = True
        if xr or yr:
            self.vb.setRange(xRange=xr, yRange=yr, padding=0)


KNN_TITLE = "kNN accuracy, held-out"


def knn_title(config: Config | None) -> str:
    """The kNN plot's title with the run's protocol settings: "kNN (k=20, T=0.07), held-out"; the plain title for a
    run whose config is not known."""
    return KNN_TITLE if config is None else f"{metric_label('knn_acc', config.eval)}, held-out"


class PlotsPanel(Panel, QWidget):
    """Loss, learning rate, loss terms and kNN of the run, live; other runs' curves overlaid."""
    title, shortcut = "Curves", "Alt+1"

    def __init__(self):
        super().__init__()
        pg.setConfigOptions(antialias=False, background="w", foreground="k")
        lay = QGridLayout(self)
        self.loss_plot = pg.PlotWidget(title="loss")
        self.lr_plot = pg.PlotWidget(title="learning rate")
        self.knn_plot = pg.PlotWidget(title=KNN_TITLE)
        self.knn_plot.setToolTip("The field's kNN protocol: a weighted vote of the k nearest training images by cosine "
                                 "on L2-normalised backbone features (no read-out), on the held-out split")
        self.terms_plot = pg.PlotWidget(title="loss terms")
        for p in (self.loss_plot, self.lr_plot, self.knn_plot, self.terms_plot):
            p.showGrid(x=True, y=True, alpha=0.3)
            p.setLabel("bottom", "step")
            p.setDownsampling(auto=True, mode="peak")  # long runs stay cheap to paint
            p.setClipToView(True)
        self.knn_plot.setLabel("bottom", "epoch")
        for p in (self.terms_plot, self.loss_plot):  # top right (curves start high on the left), over headroom kept free
            p.addLegend(offset=(-10, 10), brush=pg.mkBrush(255, 255, 255, 200), labelTextSize="8pt", verSpacing=-6)
        self.knn_plot.getViewBox().setLimits(yMin=-0.02, yMax=1.05)  # an accuracy: never below 0 or past 1
        lay.addWidget(self.loss_plot, 0, 0)
        lay.addWidget(self.knn_plot, 0, 1)
        lay.addWidget(self.lr_plot, 1, 0)
        lay.addWidget(self.terms_plot, 1, 1)
        self.raw = self.loss_plot.plot(pen=pg.mkPen("#aab7c4", width=1), name="loss")
        self.smooth = self.loss_plot.plot(pen=pg.mkPen("#1f77b4", width=1), name="smoothed")
        self.lr_curve = self.lr_plot.plot(pen=pg.mkPen("#2ca02c", width=1))
        self.knn_curve = self.knn_plot.plot(pen=pg.mkPen("#d62728", width=2), symbol="o", symbolSize=6)
        self.term_curves: dict[str, pg.PlotDataItem] = {}
        self.ranges = {p: GrowingRange(p) for p in (self.lr_plot, self.terms_plot)}
        self.ranges[self.loss_plot] = GrowingRange(self.loss_plot)
        self.ranges[self.knn_plot] = GrowingRange(self.knn_plot, top=0.05, x0=0.5)
        self.overlays: list = []
        self.hints = []
        for p in (self.loss_plot, self.lr_plot, self.knn_plot, self.terms_plot):
            hint = pg.TextItem("no data yet: press Start, or open a run", color="#888", anchor=(0.5, 0.5))
            p.addItem(hint, ignoreBounds=True)
            hint.setPos(0.5, 0.5)
            self.hints.append(hint)
        self.reset()
        self.timer = QTimer(self, interval=500)
        self.timer.timeout.connect(self.redraw)
        self.timer.start()

    def reset(self, training: bool = False):
        self._first_step = training  # the first point of a run shows at once, not at the next timer tick
        self.steps, self.losses, self.lrs = [], [], []
        self.epochs, self.knn = [], []
        self.terms: dict[str, list] = {}
        self.knn_dirty = True
        for c in self.term_curves.values():
            self.terms_plot.removeItem(c)
        self.term_curves = {}
        self.dirty = True
        for h in self.hints:
            h.setVisible(True)
        for r in self.ranges.values():
            r.follow, r.placed = True, False
        self.clear_overlays()  # a new run's curves stand alone (the legend lists only them)

    def on_event(self, ev):
        if isinstance(ev, E.StepEvent):
            self.add_step(ev)
            if self._first_step:
                self._first_step = False
                self.redraw()
        elif isinstance(ev, E.EvalEvent):
            self.add_eval(ev)
        elif isinstance(ev, E.RunStarted):
            self.knn_plot.setTitle(knn_title(self._shown().config))
            self._first_step = True
            self.redraw()  # a resumed run's history at once
        elif isinstance(ev, RunEnded):
            self.fit()  # the live view's headroom for steps that never came goes
        elif isinstance(ev, Overlay):
            self.overlay_runs(ev.runs, ev.shown)

    def attach(self, window):
        self._show_tab = lambda: window.show_panel(self)
        self._shown = lambda: window.session.run

    def _shown(self):
        """The run the window shows (the window's session, once attached)."""
        return types.SimpleNamespace(config=None)

    def _show_tab(self):
        """Bring this tab to the front (the window's, once attached)."""

    def overlay_runs(self, runs: list, shown: str | None = None):
        """Other runs' curves over the shown run's (``shown``, already drawn, so not overlaid on itself)."""
        self.clear_overlays()
        shown = Path(shown).resolve() if shown and self.steps else None
        others = [r for r in runs if Path(r).resolve() != shown]
        if shown is not None and others:
            self.name_base(shown.name)  # the shown run named in the legends as the others are
        for i, run in enumerate(others):
            events = read_history(run)
            steps = [e for e in events if isinstance(e, E.StepEvent)]
            evals = [e for e in events if isinstance(e, E.EvalEvent) and "knn_acc" in e.metrics]
            terms: dict = {}
            for e in steps:
                for k, v in e.terms.items():
                    xs, ys = terms.setdefault(k, ([], []))
                    xs.append(e.step)
                    ys.append(v)
            self.overlay(Path(run).name, [e.step for e in steps], [e.loss for e in steps],
                         [e.epoch for e in evals], [e.metrics["knn_acc"] for e in evals], i + 1,
                         lrs=[e.lr for e in steps], terms=terms)
        self._show_tab()

    def run_opened(self, run: str):
        self.knn_plot.setTitle(knn_title(self._shown().config))
        self.redraw()
        self.fit()
        self._show_tab()

    def add_step(self, ev):
        self.steps.append(ev.step)
        self.losses.append(ev.loss)
        self.lrs.append(ev.lr)
        for k, v in ev.terms.items():
            self.terms.setdefault(k, []).append((ev.step, v))
        self.dirty = True

    def add_eval(self, ev):
        self.epochs.append(ev.epoch)
        self.knn.append(ev.metrics.get("knn_acc", np.nan))
        self.dirty = self.knn_dirty = True

    def redraw(self, hidden_too: bool = False):
        if not self.dirty or not (self.isVisible() or hidden_too):
            return  # hidden tabs catch up when shown
        self.dirty = False
        if self.steps or self.epochs:
            for h in self.hints:
                h.setVisible(False)
        if self.steps:
            x, y, lr = np.asarray(self.steps), np.asarray(self.losses, float), np.asarray(self.lrs, float)
            self.raw.setData(x, y)
            self.smooth.setData(x, ema(y))
            self.lr_curve.setData(x, lr)
            for curve in (self.raw, self.smooth, self.lr_curve):
                mark_lone_point(curve)
            self.ranges[self.loss_plot].update(x[-1], np.nanmin(y), np.nanmax(y))
            self.ranges[self.lr_plot].update(x[-1], 0.0, np.nanmax(lr))
        if self.knn_dirty:  # every setData repaints its plot (~10 ms); the kNN curve changes once an epoch
            self.knn_dirty = False
            self.knn_curve.setData(np.asarray(self.epochs, float), np.asarray(self.knn, float))
            if self.epochs:
                self.ranges[self.knn_plot].update(max(self.epochs), 0.0, 1.0)  # x grows with the epochs; y is [0, 1]
        for i, (k, pts) in enumerate(self.terms.items()):
            if k not in self.term_curves:
                self.term_curves[k] = self.terms_plot.plot(pen=pg.mkPen(COLORS[i % len(COLORS)], width=1), name=k)
            arr = np.asarray(pts, float)
            self.term_curves[k].setData(arr[:, 0], arr[:, 1])
            mark_lone_point(self.term_curves[k])
        if self.terms:
            vals = np.concatenate([np.asarray(pts, float)[:, 1] for pts in self.terms.values()])
            self.ranges[self.terms_plot].update(self.steps[-1] if self.steps else 1, np.nanmin(vals), np.nanmax(vals))

    def name_base(self, name: str | None):
        """Name the shown run's curves in the legends (its folder) while other runs are overlaid; None: plain names."""
        for curve, plain in ((self.raw, "loss"), (self.smooth, "smoothed")):
            label = self.loss_plot.getPlotItem().legend.getLabel(curve)
            if label is not None:
                label.setText(f"{legend_name(name)}: {plain}" if name else plain)

    def overlay(self, name: str, steps, losses, epochs, knn, color_index: int, lrs=None, terms: dict | None = None):
        """Add another run's curves (runs table comparison), dashed in its colour: smoothed loss, kNN per epoch,
        learning rate (``lrs``, one per step) and the loss's terms (``terms``: name -> (steps, values))."""
        pen = pg.mkPen(COLORS[color_index % len(COLORS)], width=1.5, style=pg.QtCore.Qt.DashLine)
        name = legend_name(name)
        for h in self.hints:
            h.setVisible(False)
        if len(steps):
            self.overlays.append(self.loss_plot.plot(steps, ema(np.asarray(losses, float)), pen=pen, name=name))
            mark_lone_point(self.overlays[-1])
        if len(epochs):
            self.overlays.append(self.knn_plot.plot(epochs, knn, pen=pen, symbol="t", symbolSize=6, symbolBrush=pen.color()))
        if lrs is not None and len(steps):
            self.overlays.append(self.lr_plot.plot(steps, np.asarray(lrs, float), pen=pen))
        for term, (xs, ys) in (terms or {}).items():
            if len(xs):
                self.overlays.append(self.terms_plot.plot(xs, ys, pen=pen, name=f"{term} ({name})"))
        self.fit()
        for p in (self.loss_plot, self.knn_plot, self.lr_plot, self.terms_plot):
            self.ranges[p].follow = False  # keep the comparison in view

    def fit(self):
        """Each plot's view around all its data (this run's and any overlaid run's) with a little margin: for a run
        that ended or was opened, whose live view kept headroom for steps and epochs that never came."""
        self.redraw(hidden_too=True)
        plots = {self.loss_plot: [self.raw], self.lr_plot: [self.lr_curve], self.knn_plot: [self.knn_curve],
                 self.terms_plot: list(self.term_curves.values())}
        for item in self.overlays:
            plots[next(p for p in plots if item in p.listDataItems())].append(item)
        for plot, items in plots.items():
            xs = [np.asarray(i.xData, float) for i in items if i.xData is not None and len(i.xData)]
            ys = [np.asarray(i.yData, float) for i in items if i.yData is not None and len(i.yData)]
            if not xs:
                continue
            x, y = np.concatenate(xs), np.concatenate(ys)
            lo, hi = (self.ranges[plot].x0, max(x.max(), 1.0)) if plot is not self.knn_plot else (0.5, x.max() + 0.5)
            y0, y1 = (0.0, 1.0) if plot is self.knn_plot else (np.nanmin(y), np.nanmax(y))
            span = max(y1 - y0, 1e-6)
            top = max(0.15, legend_room(plot))
            plot.getViewBox().setRange(xRange=(lo, hi + 0.02 * (hi - lo)), yRange=(y0 - 0.05 * span, y1 + top * span),
                                       padding=0)

    def clear_overlays(self):
        for item in self.overlays:
            for p in (self.loss_plot, self.knn_plot, self.lr_plot, self.terms_plot):
                if item in p.listDataItems():
                    p.removeItem(item)
        self.overlays = []
        self.name_base(None)
