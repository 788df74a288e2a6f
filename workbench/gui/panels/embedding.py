"""Live 2-D embedding of the held-out set, coloured by label; hover shows the image, click selects it.

PCA comes from the training loop (already aligned frame to frame); UMAP and t-SNE are
computed here in a thread pool from the latest embeddings, never on the GUI thread.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from workbench.core.projection import StableProjector
from workbench.gui.panels.plots import COLORS
from workbench.gui.widgets import Task, to_pixmap


class EmbeddingPanel(QWidget):
    pointSelected = Signal(int)  # row of the held-out split

    def __init__(self):
        super().__init__()
        lay = QVBoxLayout(self)
        top = QHBoxLayout()
        self.method = QComboBox()
        self.method.addItems(["pca", "umap", "tsne"])
        self.method.setObjectName("projection")
        self.status = QLabel("")
        top.addWidget(QLabel("projection"))
        top.addWidget(self.method)
        top.addWidget(self.status, 1)
        lay.addLayout(top)
        self.plot = pg.PlotWidget(title="held-out embedding")
        self.plot.addLegend()
        self.items: dict[int, pg.ScatterPlotItem] = {}  # one item per class: a single brush each, fast to update
        lay.addWidget(self.plot, 1)
        self.hover = QLabel()
        self.hover.setObjectName("hover")
        self.hover.setMinimumHeight(70)
        lay.addWidget(self.hover)
        self.images = None  # held-out images (N, C, H, W) uint8
        self.classes: list = []
        self.latest = None
        self.xy = np.zeros((0, 2))
        self.projectors: dict[str, StableProjector] = {}
        self.token = 0
        self.method.currentTextChanged.connect(lambda *_: self.latest is not None and self.show_embedding(self.latest))

    def set_dataset(self, images: np.ndarray | None, classes: list):
        self.images, self.classes = images, classes

    def show_embedding(self, ev):
        self.latest = ev
        m = self.method.currentText()
        if m == "pca":
            self._draw(ev.xy)
            return
        self.token += 1
        token, proj = self.token, self.projectors.setdefault(m, StableProjector(m))
        self.status.setText(f"computing {m}…")
        Task(lambda: proj(ev.embeddings), lambda xy: self._projected(xy, token), self.status.setText).start()

    def _projected(self, xy, token):
        if token == self.token:  # a newer embedding has arrived meanwhile: drop this layout
            self.status.setText("")
            self._draw(xy)

    def _draw(self, xy):
        ev = self.latest
        self.xy = xy
        labels = np.asarray(ev.labels)
        for c in sorted(set(labels.tolist()) | set(self.items)):
            item = self.items.get(c)
            if item is None:
                color = COLORS[c % len(COLORS)] if c >= 0 else "#999999"
                item = pg.ScatterPlotItem(size=6, pen=None, brush=pg.mkBrush(color), hoverable=True, hoverSize=11)
                item.sigHovered.connect(self._hovered)
                item.sigClicked.connect(self._clicked)
                self.plot.addItem(item)
                name = self.classes[c] if 0 <= c < len(self.classes) else "unlabeled"
                self.plot.plotItem.legend.addItem(item, name)
                self.items[c] = item
            rows = np.nonzero(labels == c)[0]
            item.setData(pos=xy[rows], data=rows)

    @property
    def n_points(self) -> int:
        return sum(len(i.data) for i in self.items.values())

    def point_info(self, i: int) -> tuple[int, int]:
        """(held-out row, label) of scatter point i."""
        return int(self.latest.indices[i]), int(self.latest.labels[i])

    def _hovered(self, item, points, ev=None):
        if len(points) == 0:
            return
        row, label = self.point_info(int(points[0].data()))
        name = self.classes[label] if 0 <= label < len(self.classes) else "unlabeled"
        self.hover.setText(f"held-out #{row}: {name}")
        if self.images is not None:
            self.hover.setPixmap(to_pixmap(self.images[row], 64))
            self.hover.setToolTip(name)

    def _clicked(self, item, points, ev=None):
        if len(points):
            self.pointSelected.emit(self.point_info(int(points[0].data()))[0])

    def reset(self):
        self.latest, self.projectors = None, {}
        for item in self.items.values():
            self.plot.plotItem.legend.removeItem(item)
            self.plot.removeItem(item)
        self.items = {}
