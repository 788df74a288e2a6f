"""Pair inspector: anchors with their positive, hardest negatives and false negatives (as images,
with cosine similarities and the anchor's loss), the batch similarity heatmap, positive/negative
similarity histograms, the softmax the temperature makes of them, and retrieval. With "similarity maps" on, each
pair is drawn as its two maps (explain_view.py); a click on a pair or a retrieval tile asks for its detail."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QGridLayout, QHBoxLayout, QLabel, QPushButton, QScrollArea, QSizePolicy, QSpinBox,
                               QSplitter, QTabWidget, QVBoxLayout, QWidget)

from workbench.core.inspector import anchor_rows, pos_neg_similarities, positive_probability, retrieve, view_image, view_labels
from workbench.core import events as E
from workbench.gui.explain_view import PairGrid
from workbench.gui.panel import Panel, Retrieve
from workbench.gui.widgets import FlowLayout, LogSlider, TileGrid



def similarity_bins(*values, n: int = 40) -> np.ndarray:
    """Bin edges over [-1, 1] (cosine), widened to the data's range for unnormalised (dot product) similarities."""
    finite = [v[np.isfinite(v)] for v in (np.asarray(x, float).ravel() for x in values)]
    lo = min([-1.0, *(float(v.min()) for v in finite if v.size)])
    hi = max([1.0, *(float(v.max()) for v in finite if v.size)])
    return np.linspace(lo, hi, n + 1)


def density_histogram(values, bins: np.ndarray) -> np.ndarray:
    """np.histogram(values, bins, density=True)[0] (len(bins) - 1,), but zeros where it would divide by zero
    (no values, none inside the bins, or non-finite ones only) instead of NaN and a RuntimeWarning."""
    v = np.asarray(values, float).ravel()
    counts = np.histogram(v[np.isfinite(v)], bins)[0].astype(float)
    total = counts.sum()
    return counts / (total * np.diff(bins)) if total > 0 else counts

POS, NEG = "#2ca02c", "#d62728"  # positives green, negatives red, in every view


class InspectorPanel(Panel, QWidget):
    """The pairs the loss sees in a batch, their similarities over the run, and retrieval."""
    title, shortcut = "Pairs", "Alt+3"

    captureRequested = Signal()
    pairClicked = Signal(object)  # (image a, image b (C, H, W) uint8, title, note): explain this pair
    mapsShown = Signal(object)  # PairMaps of the pairs the grid shows

    def __init__(self):
        super().__init__()
        lay = QVBoxLayout(self)
        top = FlowLayout()  # wraps onto a second line on a narrow window (the window fits 1024 px wide)
        self.capture = QPushButton("Capture a training batch")
        self.capture.setObjectName("capture")
        self.capture.clicked.connect(self.captureRequested)
        self.k = QSpinBox()
        self.k.setRange(1, 16)
        self.k.setValue(5)
        self.sort = QCheckBox("hardest anchors first")
        self.sort.setChecked(True)
        self.info = QLabel("Start training (or open a run), then capture a batch to see the pairs the loss sees.")
        self.info.setWordWrap(True)
        self.info.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.maps = QCheckBox("similarity maps")
        self.maps.setObjectName("maps_toggle")
        self.maps.setToolTip("draw each pair as its two similarity maps: where in each image the backbone similarity of the "
                             "pair comes from (each map sums to the cosine shown); computed in the background through the "
                             "run's last checkpoint")
        for w in (self.capture, QLabel("negatives shown"), self.k, self.sort, self.maps):
            top.addWidget(w)
        lay.addLayout(top)
        lay.addWidget(self.info)
        self.tabs = QTabWidget()
        lay.addWidget(self.tabs, 1)
        # pairs grid
        self.grid_host = QWidget()
        self.grid = TileGrid(QGridLayout(self.grid_host), 56)
        self.grid.layout.setRowStretch(100, 1)
        self.grid.layout.setColumnStretch(100, 1)
        self.maps_host = QWidget()  # the same pairs as their similarity maps
        self.map_grid = PairGrid(QGridLayout(self.maps_host), self._map_clicked)
        self.map_grid.layout.setRowStretch(100, 1)
        self.map_grid.layout.setColumnStretch(100, 1)
        self.maps_host.setVisible(False)
        self.maps_note = QLabel("")
        self.maps_note.setObjectName("maps_note")
        self.maps_note.setWordWrap(True)
        self.maps_note.setVisible(False)
        pairs_page = QWidget()
        pv = QVBoxLayout(pairs_page)
        pv.setContentsMargins(0, 0, 0, 0)
        for w in (self.maps_note, self.grid_host, self.maps_host):
            pv.addWidget(w)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(pairs_page)
        self.tabs.addTab(scroll, "Pairs")
        # similarity views: a 2 x 2 grid of splitters, each view with a minimum size so none is crushed
        self.heat = pg.GraphicsLayoutWidget()
        self.heat.setMinimumSize(320, 280)
        heat_plot = self.heat.addPlot(title="batch cosine similarity<br>rows: view 1 then view 2")
        self.heat_img = pg.ImageItem()
        heat_plot.addItem(self.heat_img)
        heat_plot.invertY(True)
        heat_plot.setAspectLocked(True)  # square cells: a square heatmap
        heat_plot.setLabel("left", "anchor")
        heat_plot.setLabel("bottom", "candidate")
        self.heat_bar = pg.ColorBarItem(values=(-1, 1), colorMap=pg.colormap.get("viridis"), interactive=False, label="cosine")
        self.heat_bar.setImageItem(self.heat_img, insert_in=heat_plot)
        self.hist = pg.PlotWidget(title="similarity of positives and negatives")
        self.hist.setMinimumSize(280, 220)
        self.hist.setLabel("bottom", "cosine similarity")
        self.hist.setLabel("left", "density")
        self.hist.addLegend(offset=(10, 10))
        self.hist_pos = self.hist.plot(stepMode="center", fillLevel=0, brush=(44, 160, 44, 120), pen=POS, name="positives")
        self.hist_neg = self.hist.plot(stepMode="center", fillLevel=0, brush=(214, 39, 40, 120), pen=NEG, name="negatives")
        self.trend = pg.PlotWidget(title="mean similarity over training")
        self.trend.setMinimumSize(280, 200)
        self.trend.setLabel("bottom", "step")
        self.trend.addLegend(offset=(10, 10))
        # the markers in their line's colour (pyqtgraph's default marker is navy for both, and so is the legend's)
        self.trend_pos = self.trend.plot(pen=POS, symbol="o", symbolBrush=POS, symbolPen=POS, name="positive")
        self.trend_neg = self.trend.plot(pen=NEG, symbol="o", symbolBrush=NEG, symbolPen=NEG, name="negative")
        for curve, colour in ((self.trend_pos, POS), (self.trend_neg, NEG)):  # the legend draws the markers from
            curve.scatter.setBrush(pg.mkBrush(colour))  # the scatter's own brush, which the curve sets only with data
            curve.scatter.setPen(pg.mkPen(colour))
        soft = QWidget()
        soft.setMinimumSize(280, 200)
        sv = QVBoxLayout(soft)
        sv.setContentsMargins(0, 0, 0, 0)
        self.temp = LogSlider(0.5, 0.01, 5.0)
        self.prob_plot = pg.PlotWidget(title="softmax probability of the positive")
        self.prob_plot.setLabel("bottom", "probability")
        self.prob_plot.setLabel("left", "anchors")
        self.prob_curve = self.prob_plot.plot(stepMode="center", fillLevel=0, brush=(31, 119, 180, 120))
        self.prob_label = QLabel("")
        self.prob_label.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(QLabel("temperature (what-if)"))
        row.addWidget(self.temp, 1)
        sv.addLayout(row)
        sv.addWidget(self.prob_plot, 1)
        sv.addWidget(self.prob_label)
        sims = QSplitter(Qt.Horizontal)
        left, right = QSplitter(Qt.Vertical), QSplitter(Qt.Vertical)
        left.addWidget(self.heat)
        left.addWidget(self.hist)
        right.addWidget(soft)
        right.addWidget(self.trend)
        for sp in (left, right):
            sp.setChildrenCollapsible(False)
        sims.addWidget(left)
        sims.addWidget(right)
        sims.setChildrenCollapsible(False)
        scroll_sims = QScrollArea()
        scroll_sims.setWidgetResizable(True)
        scroll_sims.setWidget(sims)
        self.tabs.addTab(scroll_sims, "Similarities")
        # retrieval
        self.retrieval_host = QWidget()
        rv = QVBoxLayout(self.retrieval_host)
        self.retrieval_info = QLabel("Click a point in the Embedding tab, or drop an image file on the window, "
                                     "to see its nearest neighbours.")
        self.retrieval_info.setWordWrap(True)
        rv.addWidget(self.retrieval_info)
        tiles = QWidget()
        grid = QGridLayout(tiles)
        self.retrieval = TileGrid(grid, 72)
        grid.setRowStretch(20, 1)  # tiles (image with its caption right under it) pack at the top left
        grid.setColumnStretch(20, 1)
        rv.addWidget(tiles, 1)
        self.tabs.addTab(self.retrieval_host, "Retrieval")
        self.batch = None
        self.explain_pairs = None  # fn(a, b, on_done, on_failed): the window's ExplainService.explain
        self.pairs: list[tuple] = []  # (row, column, anchor column, partner column, kind, loss similarity, colour) shown
        self.pair_maps = None  # PairMaps of self.pairs, once computed
        self._maps_for = None  # what the latest maps request was for (step, pairs), and its batch
        self._maps_batch = None
        self.retrieval_pairs: dict = {}  # tile (row, column) -> (query image, neighbour image, title, note)
        self.history: list[tuple[int, float, float]] = []
        self.classes: list = []
        self.k.valueChanged.connect(self.redraw)
        self.sort.toggled.connect(self.redraw)
        self.maps.toggled.connect(self._maps_toggled)
        self.temp.valueChanged.connect(self._softmax)
        self.intro = self.info.text()

    def reset(self, training: bool = False):
        """Forget the last run's batches: a new or opened run starts its own similarity history."""
        self.batch, self.history, self.pairs, self.pair_maps, self._maps_for, self._maps_batch = None, [], [], None, None, None
        for grid in (self.grid, self.retrieval, self.map_grid):
            grid.begin()
            grid.end()
        self.retrieval_pairs = {}
        self._show_maps(False)
        self.heat_img.clear()
        for curve in (self.hist_pos, self.hist_neg, self.trend_pos, self.trend_neg, self.prob_curve):
            curve.clear()
        for plot, x, y in ((self.hist, (-1, 1), (0, 1)), (self.trend, (0, 1), (-1, 1)), (self.prob_plot, (0, 1), (0, 1))):
            plot.setRange(xRange=x, yRange=y, padding=0)  # empty axes, not the last run's ranges
            plot.enableAutoRange()  # the next capture's data set them again
        self.info.setText("training: capture a batch, or wait for the end of the epoch, to see the pairs the loss sees"
                          if training else self.intro)
        self.prob_label.setText("")

    def _show_tab(self):
        """Bring this tab to the front (the window's, once attached)."""

    def attach(self, window):
        self.captureRequested.connect(window.capture_batch)
        self._show_tab = lambda: window.show_panel(self)

    def on_event(self, ev):
        if isinstance(ev, E.BatchEvent):
            self.show_batch(ev)
        elif isinstance(ev, Retrieve):
            self._show_tab()
            if ev.vector is None:
                self.show_retrieval(ev.row, ev.embedding, ev.images, ev.classes, files=ev.files)
            else:
                self.show_query(ev.vector, ev.image, -1, ev.embedding, ev.images, ev.classes, files=ev.files,
                                query_file=ev.query_file)

    def show_batch(self, ev):
        if ev.similarity is None:
            self.info.setText(f"loss '{ev.loss_name}' reported no similarities")
            return
        self.batch = ev
        pos, neg = pos_neg_similarities(ev)
        if ev.step >= 0:  # a checkpoint batch has no place on the training timeline
            self.history.append((ev.step, float(pos.mean()), float(neg.mean())))
        if ev.temperature:
            self.temp.setValue(ev.temperature)
        mined = "".join(f", {len(v)} mined {k}" for k, v in ev.mined.items())
        where = f"batch at step {ev.step}" if ev.step >= 0 else "batch through the saved checkpoint"
        self.info.setText(f"{where}: {len(ev.views1)} images, {2 * len(ev.views1)} views, loss '{ev.loss_name}'{mined}")
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
        pairs = []
        for r, row in enumerate(self.rows()[:24]):
            self.grid.put(r, 0, view_image(ev, row.row), f"anchor\nloss {row.loss:.3f}", "#1f77b4")
            self.grid.put(r, 1, view_image(ev, row.positive), f"positive\n{row.positive_sim:+.3f}", "#2ca02c",
                          "click: why are the anchor and its positive similar?")
            pairs.append((r, 1, row.row, row.positive, "positive", row.positive_sim, "#2ca02c"))
            for j, (c, s) in enumerate(row.hardest):
                false_neg = labels[c] == labels[row.row] and labels[c] >= 0
                kind = ("mined " if (row.row, c) in mined_neg else "") + ("false neg" if false_neg else "negative")
                colour = "#ff7f0e" if false_neg else "#d62728"
                self.grid.put(r, 2 + j, view_image(ev, c), f"{kind}\n{s:+.3f}", colour,
                              f"click: why are the anchor and this {kind} similar?")
                pairs.append((r, 2 + j, row.row, c, kind, s, colour))
        self.grid.end()
        self.pairs = pairs
        self._clickable(self.grid, "pairs")
        if self.maps.isChecked():
            self._request_maps()
        self.heat_img.setImage(ev.similarity.T, levels=(-1, 1))
        pos, neg = pos_neg_similarities(ev)
        bins = similarity_bins(pos, neg)
        self.hist_pos.setData(bins, density_histogram(pos, bins))
        self.hist_neg.setData(bins, density_histogram(neg, bins))
        if self.history:
            h = np.asarray(self.history)
            self.trend_pos.setData(h[:, 0], h[:, 1])
            self.trend_neg.setData(h[:, 0], h[:, 2])
        self._softmax()

    # ----- similarity maps -----
    def _maps_toggled(self, on: bool):
        if on and self.batch is not None:
            self._request_maps()
        elif not on:
            self._show_maps(False)

    def _show_maps(self, on: bool):
        self.maps_host.setVisible(on)
        self.grid_host.setVisible(not on)
        self.maps_note.setVisible(self.maps.isChecked())

    def _request_maps(self):
        if self.explain_pairs is None or not self.pairs:
            return
        ev, pairs = self.batch, list(self.pairs)
        key = (ev.step, tuple(p[:4] for p in pairs))
        if key == self._maps_for and self.pair_maps is not None and self._maps_batch is ev:
            self._draw_maps()
            return
        self._maps_for, self._maps_batch, self.pair_maps = key, ev, None
        a = np.stack([view_image(ev, p[2]) for p in pairs])
        b = np.stack([view_image(ev, p[3]) for p in pairs])
        self.maps_note.setText(f"computing the similarity maps of {len(pairs)} pairs through the run's last checkpoint…")
        self.maps_note.setVisible(True)
        self.explain_pairs(a, b, lambda out: self._maps_done(key, out), lambda msg, *_: self._maps_failed(key, msg))

    def _maps_failed(self, key, msg: str):
        if key == self._maps_for:
            self._maps_for = None
            self.maps_note.setText(f"no similarity maps: {msg}")

    def _maps_done(self, key, out):
        if key != self._maps_for or self._maps_batch is not self.batch:  # another batch, or other rows, asked for since
            return
        self.pair_maps, self.map_strips = out
        self._draw_maps()
        self.mapsShown.emit(self.pair_maps)

    def _draw_maps(self):
        if not self.maps.isChecked():
            return
        maps = self.pair_maps
        self.map_grid.begin()
        for k, (r, c, _, _, kind, s, colour) in enumerate(self.pairs):
            cos = float(maps.cosine[k])
            tip = (f"{kind}: backbone cosine {cos:+.3f}, the sum of each map (what kNN and retrieval read); the loss saw "
                   f"{s:+.3f} through the projection head. Left: the anchor, right: the {kind}. Click for the detail.")
            self.map_grid.put(r, c - 1, self.map_strips[k], f"{kind}  cos {cos:+.3f}\nloss saw {s:+.3f}", colour, tip)
        self.map_grid.end()
        self.maps_note.setText("Each pair as its two similarity maps (anchor left): where the backbone similarity in the caption "
                               "comes from; the maps of a pair share one colour scale and each sums to the cosine (warmer = "
                               "more). The backbone is what kNN and retrieval read; the loss saw its own similarity through the "
                               "projection head. Click a pair for its detail.")
        self._show_maps(True)

    def _pair(self, k: int):
        r, c, a, b, kind, s, _ = self.pairs[k]
        note = f"The loss saw {s:+.3f} between these views through the projection head."
        return view_image(self.batch, a), view_image(self.batch, b), f"the anchor (left) and its {kind} (right)", note

    def _map_clicked(self, r: int, c: int):
        for k, p in enumerate(self.pairs):
            if (p[0], p[1] - 1) == (r, c):
                self.pairClicked.emit(self._pair(k))
                return

    def _clickable(self, grid: TileGrid, which: str):
        """Tiles of ``grid`` report a mouse press to eventFilter, tagged (which, row, column)."""
        for (r, c), tile in grid.tiles.items():
            if tile.pic.property("pair_key") is None:
                tile.pic.installEventFilter(self)
            tile.pic.setProperty("pair_key", f"{which},{r},{c}")

    def eventFilter(self, obj, ev):  # noqa: N802 - Qt's name
        key = obj.property("pair_key") if ev.type() == QEvent.MouseButtonPress else None
        if key:
            which, r, c = key.split(",")
            if which == "pairs":
                for k, p in enumerate(self.pairs):
                    if (p[0], p[1]) == (int(r), int(c)):
                        self.pairClicked.emit(self._pair(k))
            elif (int(r), int(c)) in self.retrieval_pairs:
                self.pairClicked.emit(self.retrieval_pairs[(int(r), int(c))])
        return super().eventFilter(obj, ev)

    def _softmax(self, *_):
        if self.batch is None:
            return
        p = positive_probability(self.batch.similarity, self.batch.positive, self.temp.value())
        bins = np.linspace(0, 1, 26)
        self.prob_curve.setData(bins, np.histogram(p, bins)[0])
        self.prob_label.setText(f"mean probability of the positive at T={self.temp.value():.3f}: {p.mean():.3f} "
                                f"(uniform would be {1 / max(1, len(p) - 1):.4f})")

    def show_retrieval(self, query_row: int, emb_event, images, classes, k: int = 10, files: list[str] | None = None):
        """Nearest held-out neighbours of held-out row ``query_row`` in the latest embedding; ``files`` names each
        held-out row's file (an image folder's) in the tiles' tooltips."""
        pos = np.nonzero(emb_event.indices == query_row)[0]
        if len(pos) == 0:
            return []
        label = int(emb_event.labels[pos[0]])
        return self.show_query(emb_event.embeddings[pos[0]], images[query_row], label, emb_event, images, classes, k,
                               exclude=int(pos[0]), files=files, query_file=_name(files, query_row))

    def show_query(self, vector, image, label, emb_event, images, classes, k: int = 10, exclude: int | None = None,
                   files: list[str] | None = None, query_file: str = ""):
        """The ``k`` nearest held-out images of ``vector`` (D,), leaving out embedding row ``exclude`` (the query)."""
        self.retrieval.begin()
        idx, sims = retrieve(vector, emb_event.embeddings, k, exclude)
        name = classes[label] if 0 <= label < len(classes) else "?"
        self.retrieval.put(0, 0, image, f"query\n{name}", "#1f77b4", query_file)
        self.retrieval_pairs = {}
        known = 0 <= label < len(classes)  # a dropped image has no class: nothing to agree or disagree with
        out = []
        for j, (i, s) in enumerate(zip(idx, sims, strict=True)):
            row, lab = int(emb_event.indices[i]), int(emb_event.labels[i])
            agree = lab == label
            cname = classes[lab] if 0 <= lab < len(classes) else "?"
            mark, colour = ("✓ " if agree else "✗ ", "#2ca02c" if agree else "#d62728") if known else ("", "#7f7f7f")
            self.retrieval.put(1 + j // 5, j % 5, images[row], f"{mark}{cname}\n#{row}  {s:+.3f}", colour,
                               _name(files, row) or "click: why is it similar to the query?")
            self.retrieval_pairs[(1 + j // 5, j % 5)] = (image, images[row], f"the query ({name}, left) and its neighbour "
                                                         f"#{row} ({cname}, right)",
                                                         f"The retrieval list shows {s:+.3f} (the embedding the window holds).")
            out.append((row, float(s), lab))
        self.retrieval.end()
        self._clickable(self.retrieval, "retrieval")
        self.retrieval_info.setText(f"query: {name}; its {len(idx)} nearest held-out images by cosine similarity"
                                    + (" (green: same class)" if known else " (the query has no class: no marks)")
                                    + "; click one to see why it is similar")
        self.tabs.setCurrentIndex(2)
        return out


def _name(files: list[str] | None, row: int) -> str:
    return files[row] if files is not None and 0 <= row < len(files) else ""
