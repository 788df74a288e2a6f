"""Live curves: loss per step (raw and smoothed), learning rate, kNN accuracy per epoch, the loss's own terms.

Data accumulate in lists; a timer redraws at most a few times a second with ``setData`` on
existing curves (never rebuilding items).
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QGridLayout, QWidget

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


class PlotsPanel(QWidget):
    def __init__(self):
        super().__init__()
        pg.setConfigOptions(antialias=False, background="w", foreground="k")
        lay = QGridLayout(self)
        self.loss_plot = pg.PlotWidget(title="loss")
        self.lr_plot = pg.PlotWidget(title="learning rate")
        self.knn_plot = pg.PlotWidget(title="kNN accuracy (held-out)")
        self.terms_plot = pg.PlotWidget(title="loss terms")
        for p in (self.loss_plot, self.lr_plot, self.knn_plot, self.terms_plot):
            p.showGrid(x=True, y=True, alpha=0.3)
            p.setLabel("bottom", "step")
            p.setDownsampling(auto=True, mode="peak")  # long runs stay cheap to paint
            p.setClipToView(True)
        self.knn_plot.setLabel("bottom", "epoch")
        self.terms_plot.addLegend()
        self.loss_plot.addLegend()
        lay.addWidget(self.loss_plot, 0, 0)
        lay.addWidget(self.knn_plot, 0, 1)
        lay.addWidget(self.lr_plot, 1, 0)
        lay.addWidget(self.terms_plot, 1, 1)
        self.raw = self.loss_plot.plot(pen=pg.mkPen("#aab7c4", width=1), name="loss")
        self.smooth = self.loss_plot.plot(pen=pg.mkPen("#1f77b4", width=1), name="smoothed")
        self.lr_curve = self.lr_plot.plot(pen=pg.mkPen("#2ca02c", width=1))
        self.knn_curve = self.knn_plot.plot(pen=pg.mkPen("#d62728", width=2), symbol="o", symbolSize=6)
        self.term_curves: dict[str, pg.PlotDataItem] = {}
        self.overlays: list = []
        self.reset()
        self.timer = QTimer(self, interval=500)
        self.timer.timeout.connect(self.redraw)
        self.timer.start()

    def reset(self):
        self.steps, self.losses, self.lrs = [], [], []
        self.epochs, self.knn = [], []
        self.terms: dict[str, list] = {}
        for c in self.term_curves.values():
            self.terms_plot.removeItem(c)
        self.term_curves = {}
        self.dirty = True

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
        self.dirty = True

    def redraw(self):
        if not self.dirty or not self.isVisible():
            return  # hidden tabs catch up when shown
        self.dirty = False
        if self.steps:
            x, y = np.asarray(self.steps), np.asarray(self.losses, float)
            self.raw.setData(x, y)
            self.smooth.setData(x, ema(y))
            self.lr_curve.setData(x, np.asarray(self.lrs))
        self.knn_curve.setData(np.asarray(self.epochs, float), np.asarray(self.knn, float))
        for i, (k, pts) in enumerate(self.terms.items()):
            if k not in self.term_curves:
                self.term_curves[k] = self.terms_plot.plot(pen=pg.mkPen(COLORS[i % len(COLORS)], width=1), name=k)
            arr = np.asarray(pts, float)
            self.term_curves[k].setData(arr[:, 0], arr[:, 1])

    def overlay(self, name: str, steps, losses, epochs, knn, color_index: int):
        """Add another run's curves (runs browser comparison)."""
        pen = pg.mkPen(COLORS[color_index % len(COLORS)], width=1.5, style=pg.QtCore.Qt.DashLine)
        self.overlays.append(self.loss_plot.plot(steps, ema(np.asarray(losses, float)), pen=pen, name=name))
        self.overlays.append(self.knn_plot.plot(epochs, knn, pen=pen, symbol="t", symbolSize=6))

    def clear_overlays(self):
        for item in self.overlays:
            item.getViewBox().removeItem(item) if item.getViewBox() else None
        self.overlays = []
