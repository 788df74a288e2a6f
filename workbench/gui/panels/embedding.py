"""Live 2-D embedding of the held-out set: coloured by class or by kNN correctness, a legend beside the
plot that toggles classes, a tooltip with the image, its class and index, and a click that retrieves
its neighbours.

PCA comes from the training loop (already aligned frame to frame). UMAP and t-SNE run in a child
process at low priority (cancelled when a newer embedding arrives or the window closes); until they
return, the title says the plot still shows PCA. A reference layout (a run's saved view) keeps the
orientation of an opened or resumed run the same as when it was trained.
"""
from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtGui import QColor, QCursor, QGuiApplication, QIcon, QPixmap
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QSizePolicy, QSplitter,
                               QVBoxLayout, QWidget)

from workbench.core import events as E
from workbench.gui import jobs
from workbench.gui.panel import EvaluationEnded, HeldOut, Panel, Retrieve, RunEnded
from workbench.gui.panels.plots import COLORS
from workbench.gui.worker import EventWorker, in_child, task
from workbench.gui.widgets import to_pixmap

NAMES = {"pca": "PCA", "umap": "UMAP", "tsne": "t-SNE"}
IDLE_HINT = "Press Start (or open a run) to see the held-out embedding"
TRAINING_HINT = "training: the held-out embedding appears after the first evaluation"
WRONG, RIGHT = "#d62728", "#2ca02c"


def class_colour(c: int) -> str:
    return COLORS[c % len(COLORS)] if c >= 0 else "#999999"


def _swatch(colour: str) -> QIcon:
    pix = QPixmap(12, 12)
    pix.fill(QColor(colour))
    return QIcon(pix)


class ImageTip(QWidget):
    """A tooltip-style popup with an image and a caption (QToolTip shows text only)."""

    def __init__(self):
        super().__init__(None, Qt.ToolTip | Qt.FramelessWindowHint)
        self.setAttribute(Qt.WA_ShowWithoutActivating)
        self.setStyleSheet("background: #ffffe8; border: 1px solid #888")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        self.pic, self.text = QLabel(), QLabel()
        self.text.setObjectName("tip_text")
        lay.addWidget(self.pic)
        lay.addWidget(self.text)

    def show_at(self, pos: QPoint, pixmap: QPixmap | None, text: str):
        self.pic.setVisible(pixmap is not None)
        if pixmap is not None:
            self.pic.setPixmap(pixmap)
        self.text.setText(text)
        self.adjustSize()
        at = pos + QPoint(16, 16)
        screen = QGuiApplication.screenAt(pos) or QGuiApplication.primaryScreen()
        if screen is not None:  # kept on the screen: left of / above the cursor near the right / bottom edge
            room = screen.availableGeometry()
            if at.x() + self.width() > room.right():
                at.setX(pos.x() - 16 - self.width())
            if at.y() + self.height() > room.bottom():
                at.setY(pos.y() - 16 - self.height())
        self.move(at)
        self.show()


class EmbeddingPanel(Panel, QWidget):
    """The held-out set's embedding, live; a click retrieves a point's neighbours (``Retrieve``), Ctrl+click
    explains a pair."""
    title, shortcut = "Embedding", "Alt+2"
    pointSelected = Signal(int)  # row of the held-out split
    pairSelected = Signal(int, int)  # Ctrl+click: the point clicked before and this one (held-out rows): why similar?
    drawn = Signal()

    def __init__(self):
        super().__init__()
        lay = QVBoxLayout(self)
        top = QHBoxLayout()
        self.method = QComboBox()
        self.method.addItems(list(NAMES))
        self.method.setObjectName("projection")
        self.colour_by = QComboBox()
        self.colour_by.addItems(["class", "kNN correct"])
        self.colour_by.setObjectName("colour_by")
        self.status = QLabel("")
        self.status.setObjectName("embedding_status")
        self.status.setWordWrap(True)
        self.status.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)  # long text wraps, never widens the window
        for w in (QLabel("projection"), self.method, QLabel("colour by"), self.colour_by):
            top.addWidget(w)
        top.addWidget(self.status, 1)
        lay.addLayout(top)
        self.plot = pg.PlotWidget()
        self.plot.setTitle("held-out embedding")
        self.hint = pg.TextItem(IDLE_HINT, color="#666", anchor=(0.5, 0.5))
        self.plot.addItem(self.hint)
        self.hint.setPos(0.5, 0.5)
        self.legend = QListWidget()
        self.legend.setObjectName("legend")
        self.legend.setToolTip("tick or untick a class to show or hide it")
        self.legend.itemChanged.connect(self._legend_toggled)
        split = QSplitter(Qt.Horizontal)
        split.addWidget(self.plot)
        split.addWidget(self.legend)
        split.setStretchFactor(0, 5)
        split.setStretchFactor(1, 1)
        split.setSizes([800, 160])
        lay.addWidget(split, 1)
        self.tip = ImageTip()
        self.items: dict[int, pg.ScatterPlotItem] = {}  # one item per class: a single brush each, fast to update
        self.images = None  # held-out images (N, C, H, W) uint8
        self.files: list[str] | None = None  # their files, for a folder (set_files)
        self.classes: list = []
        self.latest = None
        self.xy = np.zeros((0, 2))
        self.shown_method = "pca"
        self.prev: dict[str, np.ndarray] = {}
        self.reference = None  # (xy, indices) a saved layout to keep the orientation of
        self.correct = None
        self.pca_xy = None
        self.job: EventWorker | None = None
        self.selected: int | None = None  # the held-out row clicked last
        self.method.currentTextChanged.connect(lambda *_: self.latest is not None and self.show_embedding(self.latest))
        self.colour_by.currentTextChanged.connect(lambda *_: self._colour())

    def attach(self, window):
        self.pointSelected.connect(lambda row: self._retrieve(window, row))

    def _retrieve(self, window, row: int):
        if self.latest is not None and self.images is not None:
            window.broadcast(Retrieve(row, self.latest, self.images, self.classes, self.files))

    def on_event(self, ev):
        if isinstance(ev, HeldOut):
            if ev.files is not None and ev.images is self.images:  # the file names, listed in the background
                self.set_files(ev.images, ev.files)
                return
            self.set_dataset(ev.images, ev.classes)
            self.set_files(ev.images, ev.files)
            self.set_reference(ev.reference)
        elif isinstance(ev, E.EmbeddingEvent):
            self.show_embedding(ev)
        elif isinstance(ev, E.EvalProgressEvent):
            self.show_activity(ev.text)
        elif isinstance(ev, EvaluationEnded):
            self.show_activity(training=True)
        elif isinstance(ev, RunEnded):
            self.show_activity()  # no longer "training: ..." where no embedding came

    def show_activity(self, text: str = "", training: bool = False):
        """What the run is doing while no new embedding is drawn: an evaluation under way (``text``, e.g. "evaluation
        at step 190: kNN 3,000 / 10,000"), or training towards the first evaluation; "" and not ``training``: idle."""
        if self.latest is None:
            hint = (f"{text}\nthe held-out embedding appears when it ends" if text else
                    TRAINING_HINT if training else IDLE_HINT)
            self.hint.setText(hint)
            self.hint.setVisible(True)
        elif not (self.job is not None and not text):  # a projection being computed says so itself
            self.status.setText(f"{text}: the embedding is redrawn when it ends" if text else "")

    def set_dataset(self, images: np.ndarray | None, classes: list):
        self.images, self.classes, self.files = images, classes, None

    def set_files(self, images: np.ndarray | None, files: list[str] | None):
        """The file of each held-out row (an image folder's), shown in the tooltip; for ``images`` only (names
        arriving after another run replaced them are dropped)."""
        if images is self.images:
            self.files = files

    def set_reference(self, view):
        """(xy, indices) of a saved layout; PCA frames are turned to match it."""
        self.reference = view

    # ----- projection -----
    def show_embedding(self, ev):
        self.latest = ev
        self.correct = None
        m = self.method.currentText()
        if self.job is not None:
            self.job.cancel()
            self.job = None
        xy = ev.xy
        if self.reference is not None:
            xy = jobs.align_shared(self.reference[0], self.reference[1], xy, ev.indices)
        self.pca_xy = xy
        if m == "pca" or not len(self.xy) or self.shown_method == "pca":
            self._draw(xy, "pca")
        if m != "pca":
            self.status.setText(f"computing {NAMES[m]}…")
            self._title(f"{NAMES[self.shown_method]} (computing {NAMES[m]}…)")
            prev = self.prev.get(m)
            prev = prev if prev is not None and len(prev) == len(ev.embeddings) else None
            self.job = task(in_child(jobs.project, m, ev.embeddings, prev), lambda out: self._projected(out, m, ev), self._failed)
        if self.colour_by.currentText() != "class":
            self._start_knn()

    def pca_view(self):
        """(xy (N, 2), held-out rows (N,)) of the PCA layout last shown, or None."""
        if self.latest is None or self.pca_xy is None:
            return None
        return self.pca_xy, np.asarray(self.latest.indices)

    def _failed(self, msg, *_):
        self.job = None
        self.status.setText(msg)
        self._title(NAMES[self.shown_method])

    def _projected(self, xy, method, ev):
        self.job = None
        if ev is self.latest and xy is not None:  # a newer embedding has arrived meanwhile: its own job is running
            self.prev[method] = xy
            self.status.setText("")
            self._draw(xy, method)

    def _title(self, what: str):
        ev = self.latest
        when = f", epoch {ev.epoch}" if ev is not None and ev.epoch >= 0 else ""
        self.plot.setTitle(f"held-out embedding: {what}{when}")

    def _draw(self, xy, method: str):
        ev = self.latest
        self.xy, self.shown_method = xy, method
        self.hint.setVisible(False)
        labels = np.asarray(ev.labels)
        for c in sorted(set(labels.tolist()) | set(self.items)):
            item = self.items.get(c) or self._new_item(c)
            rows = np.nonzero(labels == c)[0]
            item.setData(pos=xy[rows], data=rows)
        self._colour()
        self._title(NAMES[method] if self.job is None else f"{NAMES[method]} (computing {NAMES[self.method.currentText()]}…)")
        self.plot.getViewBox().autoRange(padding=0.05)
        self.drawn.emit()

    def _new_item(self, c: int) -> pg.ScatterPlotItem:
        item = pg.ScatterPlotItem(size=6, pen=None, brush=pg.mkBrush(class_colour(c)), hoverable=True, hoverSize=11, tip=None)
        item.sigHovered.connect(self._hovered)
        item.sigClicked.connect(self._clicked)
        self.plot.addItem(item)
        self.items[c] = item
        name = self.classes[c] if 0 <= c < len(self.classes) else "unlabeled"
        entry = QListWidgetItem(_swatch(class_colour(c)), name)
        entry.setFlags(entry.flags() | Qt.ItemIsUserCheckable)
        entry.setCheckState(Qt.Checked)
        entry.setData(Qt.UserRole, c)
        self.legend.addItem(entry)
        return item

    def _legend_toggled(self, entry: QListWidgetItem):
        item = self.items.get(entry.data(Qt.UserRole))
        if item is not None:
            item.setVisible(entry.checkState() == Qt.Checked)

    # ----- colouring -----
    def _start_knn(self):
        ev = self.latest
        if ev is None:
            return
        task(lambda: jobs.knn_correct(ev.embeddings, np.asarray(ev.labels)), lambda ok: self._knn_done(ev, ok))

    def _knn_done(self, ev, ok):
        if ev is self.latest:
            self.correct = ok
            self._colour()

    def _colour(self):
        by_knn = self.colour_by.currentText() != "class"
        if by_knn and self.correct is None:
            self._start_knn()
        for i in range(self.legend.count()):  # the legend's swatches are class colours only when the points are
            entry = self.legend.item(i)
            entry.setIcon(_swatch("#bbbbbb" if by_knn else class_colour(entry.data(Qt.UserRole))))
        for c, item in self.items.items():
            rows = item.data["data"] if len(item.data) else np.zeros(0, int)
            if by_knn and self.correct is not None and len(rows):
                brushes = [pg.mkBrush(RIGHT if self.correct[int(r)] else WRONG) for r in rows]
                item.setBrush(brushes)
            else:  # one brush a point: a single one would leave the per-point kNN brushes in place
                item.setBrush([pg.mkBrush(class_colour(c))] * len(rows) if len(rows) else pg.mkBrush(class_colour(c)))
        if by_knn and self.correct is not None:
            self.status.setText(f"kNN (k=20, leave-one-out) correct for {self.correct.mean():.1%} of the points shown "
                                "(green: correct, red: wrong)")
        elif self.status.text().startswith("kNN (k="):
            self.status.setText("")

    # ----- pointing -----
    @property
    def n_points(self) -> int:
        return sum(len(i.data) for i in self.items.values())

    def point_info(self, i: int) -> tuple[int, int]:
        """(held-out row, label) of scatter point i."""
        return int(self.latest.indices[i]), int(self.latest.labels[i])

    def tip_text(self, i: int) -> str:
        row, label = self.point_info(i)
        name = self.classes[label] if 0 <= label < len(self.classes) else "unlabeled"
        extra = ""
        if self.correct is not None:
            extra = "<br>kNN: " + ("correct" if self.correct[i] else "wrong")
        file = self.files[row] if self.files is not None and row < len(self.files) and self.files[row] else ""
        where = f"<br>{html.escape(file)}" if file else ""
        return (f"<b>{html.escape(name)}</b><br>held-out #{row}{where}{extra}<br><i>click: nearest neighbours; "
                "Ctrl+click: why it is similar to the point clicked before</i>")

    def _hovered(self, item, points, ev=None):
        over_plot = self.isVisible() and self.plot.rect().contains(self.plot.mapFromGlobal(QCursor.pos()))
        if len(points) == 0 or not over_plot:  # a hover that arrives after a click switched tabs shows nothing
            self.tip.hide()
            return
        i = int(points[0].data())
        row, _ = self.point_info(i)
        pix = to_pixmap(self.images[row], 64) if self.images is not None and row < len(self.images) else None
        self.tip.show_at(QCursor.pos(), pix, self.tip_text(i))

    def _clicked(self, item, points, ev=None):
        if len(points):
            self.tip.hide()
            row = self.point_info(int(points[0].data()))[0]
            ctrl = ev is not None and bool(ev.modifiers() & Qt.ControlModifier)
            if ctrl and self.selected is not None and self.selected != row:
                self.pairSelected.emit(self.selected, row)
                return
            self.selected = row
            self.pointSelected.emit(row)

    def leaveEvent(self, e):  # noqa: N802 - Qt's name
        self.tip.hide()
        super().leaveEvent(e)

    def hideEvent(self, e):  # noqa: N802 - Qt's name (another tab, or a click that opened the retrieval)
        self.tip.hide()
        super().hideEvent(e)

    def reset(self, training: bool = False):
        self._reset()
        if training:
            self.show_activity(training=True)

    def _reset(self):
        if self.job is not None:
            self.job.cancel()
            self.job = None
        self.latest, self.prev, self.correct, self.reference, self.pca_xy = None, {}, None, None, None
        self.selected = None
        self.xy = np.zeros((0, 2))
        self.shown_method = "pca"
        for item in self.items.values():
            self.plot.removeItem(item)
        self.items = {}
        self.legend.clear()
        self.hint.setText(IDLE_HINT)
        self.hint.setVisible(True)
        self.status.setText("")
        self.plot.setTitle("held-out embedding")
