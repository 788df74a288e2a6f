"""Pair inspector: anchors with their positive, hardest negatives and false negatives (as images,
with cosine similarities and the anchor's loss), the batch similarity heatmap, positive/negative
similarity histograms, the softmax the temperature makes of them, and retrieval."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QGridLayout, QHBoxLayout, QLabel, QPushButton, QScrollArea, QSpinBox,
                               QSplitter, QTabWidget, QVBoxLayout, QWidget)

from workbench.core.inspect import anchor_rows, pos_neg_similarities, positive_probability, retrieve, view_image, view_labels
from workbench.gui.widgets import LogSlider, TileGrid


class InspectorPanel(QWidget):
    captureRequested = Signal()

    def __init__(self):
        super().__init__()
        lay = QVBoxLayout(self)
        top = QHBoxLayout()
        self.capture = QPushButton("Capture a training batch")
        self.capture.setObjectName("capture")
        self.capture.clicked.connect(self.captureRequested)
        self.k = QSpinBox()
        self.k.setRange(1, 16)
        self.k.setValue(5)
        self.sort = QCheckBox("hardest anchors first")
        self.sort.setChecked(True)
        self.info = QLabel("Start training, then capture a batch to see the pairs the loss sees.")
        for w in (self.capture, QLabel("negatives shown"), self.k, self.sort, self.info):
            top.addWidget(w)
        top.addStretch(1)
        lay.addLayout(top)
        self.tabs = QTabWidget()
        lay.addWidget(self.tabs, 1)
        # pairs grid
        self.grid_host = QWidget()
        self.grid = TileGrid(QGridLayout(self.grid_host), 56)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.grid_host)
        self.tabs.addTab(scroll, "Pairs")
        # similarity views
        sims = QSplitter(Qt.Horizontal)
        self.heat = pg.PlotWidget(title="batch cosine similarity [view 1; view 2]")
        self.heat_img = pg.ImageItem()
        self.heat_img.setColorMap(pg.colormap.get("viridis"))
        self.heat.addItem(self.heat_img)
        self.heat.invertY(True)
        self.hist = pg.PlotWidget(title="similarities: positives (green), negatives (red)")
        self.hist.addLegend()
        self.hist_pos = self.hist.plot(stepMode="center", fillLevel=0, brush=(44, 160, 44, 120), pen="g", name="positives")
        self.hist_neg = self.hist.plot(stepMode="center", fillLevel=0, brush=(214, 39, 40, 120), pen="r", name="negatives")
        self.trend = pg.PlotWidget(title="mean similarity over training")
        self.trend.addLegend()
        self.trend_pos = self.trend.plot(pen="g", symbol="o", name="positive")
        self.trend_neg = self.trend.plot(pen="r", symbol="o", name="negative")
        soft = QWidget()
        sv = QVBoxLayout(soft)
        self.temp = LogSlider(0.5, 0.01, 5.0)
        self.prob_plot = pg.PlotWidget(title="probability the softmax gives the positive")
        self.prob_curve = self.prob_plot.plot(stepMode="center", fillLevel=0, brush=(31, 119, 180, 120))
        self.prob_label = QLabel("")
        sv.addWidget(QLabel("temperature (what-if)"))
        sv.addWidget(self.temp)
        sv.addWidget(self.prob_plot)
        sv.addWidget(self.prob_label)
        for w in (self.heat, self.hist, self.trend, soft):
            sims.addWidget(w)
        self.tabs.addTab(sims, "Similarities")
        # retrieval
        self.retrieval_host = QWidget()
        self.retrieval = TileGrid(QGridLayout(self.retrieval_host), 72)
        self.tabs.addTab(self.retrieval_host, "Retrieval")
        self.batch = None
        self.history: list[tuple[int, float, float]] = []
        self.classes: list = []
        self.k.valueChanged.connect(self.redraw)
        self.sort.toggled.connect(self.redraw)
        self.temp.valueChanged.connect(self._softmax)

    def show_batch(self, ev):
        if ev.similarity is None:
            self.info.setText(f"loss '{ev.loss_name}' reported no similarities")
            return
        self.batch = ev
        pos, neg = pos_neg_similarities(ev)
        self.history.append((ev.step, float(pos.mean()), float(neg.mean())))
        if ev.temperature:
            self.temp.setValue(ev.temperature)
        mined = "".join(f", {len(v)} mined {k}" for k, v in ev.mined.items())
        self.info.setText(f"batch at step {ev.step}: {len(ev.views1)} images, {2 * len(ev.views1)} views, loss '{ev.loss_name}'{mined}")
        self.redraw()

    def rows(self):
        return anchor_rows(self.batch, self.k.value(), self.sort.isChecked())

    def redraw(self):
        if self.batch is None:
            return
        ev = self.batch
        self.grid.begin()
        labels = view_labels(ev)
        mined_neg = set()
        if "triplets" in ev.mined:
            mined_neg = {(int(a), int(n)) for a, _, n in ev.mined["triplets"]}
        elif "pairs" in ev.mined:
            mined_neg = {(int(a), int(b)) for a, b, y in ev.mined["pairs"] if y == 0}
        for r, row in enumerate(self.rows()[:24]):
            self.grid.put(r, 0, view_image(ev, row.row), f"anchor\nloss {row.loss:.3f}", "#1f77b4")
            self.grid.put(r, 1, view_image(ev, row.positive), f"positive\n{row.positive_sim:+.3f}", "#2ca02c")
            for j, (c, s) in enumerate(row.hardest):
                false_neg = labels[c] == labels[row.row] and labels[c] >= 0
                kind = ("mined " if (row.row, c) in mined_neg else "") + ("false neg" if false_neg else "negative")
                self.grid.put(r, 2 + j, view_image(ev, c), f"{kind}\n{s:+.3f}", "#ff7f0e" if false_neg else "#d62728")
        self.grid.end()
        self.heat_img.setImage(ev.similarity.T, levels=(-1, 1))
        pos, neg = pos_neg_similarities(ev)
        bins = np.linspace(-1, 1, 41)
        self.hist_pos.setData(bins, np.histogram(pos, bins, density=True)[0])
        self.hist_neg.setData(bins, np.histogram(neg, bins, density=True)[0])
        h = np.asarray(self.history)
        self.trend_pos.setData(h[:, 0], h[:, 1])
        self.trend_neg.setData(h[:, 0], h[:, 2])
        self._softmax()

    def _softmax(self, *_):
        if self.batch is None:
            return
        p = positive_probability(self.batch.similarity, self.batch.positive, self.temp.value())
        bins = np.linspace(0, 1, 26)
        self.prob_curve.setData(bins, np.histogram(p, bins)[0])
        self.prob_label.setText(f"mean probability of the positive at T={self.temp.value():.3f}: {p.mean():.3f} "
                                f"(uniform would be {1 / (len(p) - 1):.4f})")

    def show_retrieval(self, query_row: int, emb_event, images, classes, k: int = 10):
        """Nearest held-out neighbours of held-out row ``query_row`` in the latest embedding."""
        pos = np.nonzero(emb_event.indices == query_row)[0]
        if len(pos) == 0:
            return []
        return self.show_query(emb_event.embeddings[pos[0]], images[query_row], int(emb_event.labels[pos[0]]), emb_event, images, classes, k)

    def show_query(self, vector, image, label, emb_event, images, classes, k: int = 10):
        self.retrieval.begin()
        idx, sims = retrieve(vector, emb_event.embeddings, k)
        name = classes[label] if 0 <= label < len(classes) else "?"
        self.retrieval.put(0, 0, image, f"query\n{name}", "#1f77b4")
        out = []
        for j, (i, s) in enumerate(zip(idx, sims)):
            row, lab = int(emb_event.indices[i]), int(emb_event.labels[i])
            agree = lab == label
            self.retrieval.put(1 + j // 5, j % 5, images[row], f"{'✓' if agree else '✗'} {classes[lab] if 0 <= lab < len(classes) else '?'}\n{s:+.3f}",
                               "#2ca02c" if agree else "#d62728")
            out.append((row, float(s), lab))
        self.retrieval.end()
        self.tabs.setCurrentIndex(2)
        return out
