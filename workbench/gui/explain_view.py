"""Why are these two similar? The window's similarity maps (core/explain.py) and their detail dialog.

``ExplainService`` computes maps in the background (``worker.task``) through the shown run's last checkpoint, the
backbone representation that kNN and retrieval read (not the projection head the loss sees). The Pairs tab's
"similarity maps" toggle draws each pair's maps over its images; a click on a pair, on a retrieval tile, or
Ctrl+click on a second point of the embedding opens ``ExplainDialog``: both images with the strongest location
matches as lines, both maps, the cosine they sum to, and the deletion curve on request.
"""
from __future__ import annotations

import threading

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QGuiApplication, QImage, QPixmap
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QGridLayout, QHBoxLayout, QLabel, QPushButton, QSpinBox,
                               QVBoxLayout, QWidget)

from workbench.core.explain import pair_strip
from workbench.core.runfolder import checkpoint_path
from workbench.gui.worker import EventWorker, task
from workbench.gui.widgets import TileGrid

MAP_SIDE = 64  # pixels a side of each image in a pair tile (explain.pair_strip's default)


def rgb_pixmap(rgb: np.ndarray) -> QPixmap:
    """(H, W, 3) uint8 -> QPixmap at its own size."""
    arr = np.ascontiguousarray(rgb)
    h, w = arr.shape[:2]
    return QPixmap.fromImage(QImage(arr.data, w, h, 3 * w, QImage.Format_RGB888).copy())


class ExplainService(QObject):
    """Similarity maps for the window, off the GUI thread, through ``run_dir()``'s last checkpoint (reloaded when a
    newer one is written). ``explain(a, b, done, failed)``: uint8 (B, C, H, W) pairs -> ``done((maps, strips))``."""

    def __init__(self, run_dir, parent=None):
        super().__init__(parent)
        self.run_dir = run_dir
        self._lock = threading.Lock()
        self._key, self._model = None, None

    def model(self):
        """The run's RunModel, loaded once per checkpoint (called on a worker thread)."""
        from workbench.core.inference import RunModel
        from workbench.core.registry import ConfigError

        run = self.run_dir()
        if not run:
            raise ConfigError("train or open a run first: similarity maps need its encoder")
        ckpt = checkpoint_path(run)
        if not ckpt.is_file():
            raise ConfigError("similarity maps read the run's checkpoint, and none is written yet (one comes at the end of "
                              "each epoch and every train.checkpoint_minutes)")
        key = (str(run), ckpt.stat().st_mtime_ns)
        with self._lock:
            if self._key != key:
                self._model, self._key = RunModel.load(run), key
            return self._model

    def explain(self, a: np.ndarray, b: np.ndarray, done, failed=None, strips: bool = True) -> EventWorker:
        def work():
            import torch

            from workbench.core.explain import explain_run

            maps = explain_run(self.model(), torch.from_numpy(np.asarray(a)), torch.from_numpy(np.asarray(b)))
            return maps, [pair_strip(a[k], b[k], maps, k) for k in range(len(maps))] if strips else []

        return task(work, done, failed)

    def figure(self, a: np.ndarray, b: np.ndarray, lines: int, done, failed=None) -> EventWorker:
        """The detail figure of one pair: done((maps, rgb (H, W, 3)))."""
        def work():
            import torch

            from workbench.core.explain import explain_run

            maps = explain_run(self.model(), torch.from_numpy(np.asarray(a)[None]), torch.from_numpy(np.asarray(b)[None]))
            return maps, maps.figure(0, size=190, lines=lines)

        return task(work, done, failed)

    def deletion(self, a: np.ndarray, b: np.ndarray, done, failed=None) -> EventWorker:
        def work():
            import torch

            from workbench.core.explain import deletion_run

            return deletion_run(self.model(), torch.from_numpy(np.asarray(a)[None]), torch.from_numpy(np.asarray(b)[None]),
                                orders=16)  # one pair: its random baseline averaged over 16 orders

        return task(work, done, failed)


class ExplainDialog(QDialog):
    """One pair in detail: the figure (both images with the strongest matches as lines, both maps on one scale),
    the cosine they explain, the number of lines, and the deletion curve on request. Not modal."""

    shown = Signal(object)  # PairMaps, once the figure is drawn
    deletionShown = Signal(object)  # DeletionCurve
    failed = Signal(str)

    def __init__(self, service: ExplainService, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Why are these two similar?")
        self.service = service
        self.pair = None
        self.maps = None
        lay = QHBoxLayout(self)
        left, right = QVBoxLayout(), QVBoxLayout()
        self.title = QLabel()
        self.title.setWordWrap(True)
        self.title.setObjectName("explain_title")
        self.figure = QLabel("computing the similarity maps…")
        self.figure.setObjectName("explain_figure")
        self.figure.setMinimumSize(420, 400)
        self.figure.setAlignment(Qt.AlignTop | Qt.AlignHCenter)
        left.addWidget(self.title)
        left.addWidget(self.figure, 1)
        self.info = QLabel()
        self.info.setWordWrap(True)
        self.info.setObjectName("explain_info")
        self.info.setFixedWidth(360)
        row = QHBoxLayout()
        self.lines = QSpinBox()
        self.lines.setRange(0, 30)
        self.lines.setValue(5)
        self.lines.setToolTip("how many of the strongest location matches are drawn")
        self.lines.valueChanged.connect(self._redraw)
        self.delete_btn = QPushButton("Deletion curve")
        self.delete_btn.setObjectName("deletion")
        self.delete_btn.setToolTip("black out a's regions one after another, highest map value first and in random orders, "
                                   "and follow the cosine: a faithful map makes it fall sooner")
        self.delete_btn.clicked.connect(self.run_deletion)
        for w in (QLabel("match lines"), self.lines, self.delete_btn):
            row.addWidget(w)
        row.addStretch(1)
        self.curve = pg.PlotWidget(title="deletion curve")
        self.curve.setLabel("bottom", "share of a's locations blacked out")
        self.curve.setLabel("left", "cosine to b")
        self.curve.getAxis("left").enableAutoSIPrefix(False)
        self.curve.addLegend(offset=(10, 10))
        self.curve.setFixedWidth(360)
        self.curve.setMinimumHeight(260)
        self.curve.setVisible(False)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.close)
        right.addWidget(self.info)
        right.addLayout(row)
        right.addWidget(self.curve, 1)
        right.addStretch(0)
        right.addWidget(buttons)
        lay.addLayout(left)
        lay.addLayout(right)

    def show_pair(self, a: np.ndarray, b: np.ndarray, title: str, note: str = ""):
        """Explain images a, b (C, H, W) uint8; ``title`` names them, ``note`` says what else is known (the loss's
        similarity)."""
        self.pair, self.maps, self.note = (a, b), None, note
        self.title.setText(f"<b>{title}</b>")
        self.figure.setText("computing the similarity maps…")
        self.figure.setPixmap(QPixmap())
        self.info.setText("")
        self.curve.clear()
        self.curve.setVisible(False)
        self.delete_btn.setEnabled(True)
        self.resize(self.sizeHint())  # a deletion plot shown for the last pair goes with it
        self._redraw()
        self.show()
        if QGuiApplication.platformName() != "offscreen":  # headless Qt warns it cannot raise a window
            self.raise_()

    def _redraw(self, *_):
        if self.pair is None:
            return
        pair = self.pair
        self.service.figure(*pair, self.lines.value(), lambda out: self._drawn(pair, *out), self._failed)

    def _drawn(self, pair, maps, rgb):
        if pair is not self.pair:  # another pair was asked for meanwhile
            return
        self.maps = maps
        pix = rgb_pixmap(rgb)
        self.figure.setPixmap(pix)
        self.figure.setMinimumSize(pix.size())
        self._fit()
        cos = float(maps.cosine[0])
        self.info.setText(f"cosine {cos:+.4f} of the backbone representation (what kNN and retrieval read), not through the "
                          f"projection head; each map sums to it over its {maps.grid[0]}x{maps.grid[1]} locations "
                          f"({maps.kind}). {self.note}")
        self.shown.emit(maps)

    def _fit(self):
        """Grow to what the contents need (adjustSize would stop at two thirds of the screen)."""
        self.resize(self.sizeHint().expandedTo(self.size()))

    def _failed(self, msg, *_):
        self.figure.setText(f"no similarity maps: {msg}")
        self.failed.emit(msg)

    def run_deletion(self):
        if self.pair is None:
            return
        pair = self.pair
        self.delete_btn.setEnabled(False)
        self.delete_btn.setText("computing…")
        self.service.deletion(*pair, lambda curve: self._deleted(pair, curve), self._deletion_failed)

    def _deletion_failed(self, msg, *_):
        self.delete_btn.setEnabled(True)
        self.delete_btn.setText("Deletion curve")
        self.failed.emit(msg)

    def _deleted(self, pair, curve):
        self.delete_btn.setText("Deletion curve")
        self.delete_btn.setEnabled(True)
        if pair is not self.pair:
            return
        ranked, rand = curve.auc
        self.curve.clear()
        self.curve.plot(curve.fraction, curve.ranked[0], pen=pg.mkPen("#d62728", width=2), symbol="o", symbolSize=5,
                        name=f"highest map first (area {ranked:.3f})")
        self.curve.plot(curve.fraction, curve.random[0], pen=pg.mkPen("#7f7f7f", width=2, style=Qt.DashLine),
                        name=f"random order, mean of 16 (area {rand:.3f})")
        self.curve.setVisible(True)
        self._fit()
        self.deletionShown.emit(curve)


class PairTile(QWidget):
    """A pair's two maps side by side with a caption; a click emits ``clicked``."""

    clicked = Signal()

    def __init__(self):
        super().__init__()
        v = QVBoxLayout(self)
        v.setContentsMargins(2, 2, 2, 2)
        v.setSpacing(0)
        self.pic, self.cap = QLabel(), QLabel()
        self.pic.setFixedSize(2 * MAP_SIDE + 10, MAP_SIDE + 6)
        self.pic.setAlignment(Qt.AlignCenter)
        self.pic.setCursor(Qt.PointingHandCursor)
        self.cap.setAlignment(Qt.AlignCenter)
        self.cap.setStyleSheet("font-size: 10px")
        v.addWidget(self.pic, 0, Qt.AlignHCenter)
        v.addWidget(self.cap, 0, Qt.AlignHCenter)
        v.addStretch(1)
        self.color = None

    def set(self, rgb: np.ndarray, caption: str, color: str, tooltip: str):
        self.pic.setPixmap(rgb_pixmap(rgb))
        self.cap.setText(caption)
        self.pic.setToolTip(tooltip)
        if color != self.color:
            self.pic.setStyleSheet(f"border: 2px solid {color}")
            self.color = color
        self.setVisible(True)

    def mousePressEvent(self, e):  # noqa: N802 - Qt's name
        if e.button() == Qt.LeftButton:
            self.clicked.emit()
        super().mousePressEvent(e)


class PairGrid(TileGrid):
    """PairTiles in a grid layout, kept across redraws (begin, put..., end); a click on one calls ``on_click(r, c)``."""

    def __init__(self, layout: QGridLayout, on_click):
        super().__init__(layout, 0)
        self.on_click = on_click

    def make_tile(self, r: int, c: int) -> PairTile:
        tile = PairTile()
        tile.clicked.connect(lambda r=r, c=c: self.on_click(r, c))
        return tile


def install(window) -> ExplainService:
    """Wire similarity maps into the window: the Pairs tab's toggle and clicks, the retrieval tiles and Ctrl+click in
    the embedding all open one ``ExplainDialog`` (``window.explain_dialog``)."""
    service = ExplainService(lambda: window.run_dir, window)
    dialog = window.explain_dialog = ExplainDialog(service, window)
    dialog.failed.connect(lambda msg: window.set_status(f"similarity maps: {msg}", "error"))

    def open_points(row_a: int, row_b: int):
        if window.held_out is not None:
            dialog.show_pair(window.held_out[row_a], window.held_out[row_b], f"held-out #{row_a} (left) and #{row_b} (right)")

    window.inspector.explain_pairs = service.explain
    window.inspector.pairClicked.connect(lambda p: dialog.show_pair(*p))
    window.embedding.pairSelected.connect(open_points)
    return service
