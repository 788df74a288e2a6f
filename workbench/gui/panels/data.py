"""The Data tab: what the run's encoder says about its data (core/checks.py). A histogram of nearest-neighbour
distances with the near-duplicate threshold to drag; lists of duplicate groups, leaks, outliers and likely label
errors (image, file, class, score; a click shows the image's neighbours); the kNN vote's confusion matrix, a click
on a cell listing the images behind it; any list exported as CSV. The checks run in the background with progress:
on a run's final evaluation and, for an opened run, on request."""
from __future__ import annotations

import contextlib
import html
from pathlib import Path

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QFileDialog, QHBoxLayout, QHeaderView, QLabel, QListWidget,
                               QListWidgetItem, QProgressBar, QPushButton, QSizePolicy, QSpinBox, QSplitter, QTableWidget,
                               QTableWidgetItem, QTabWidget, QVBoxLayout, QWidget)

from workbench.core import checks
from workbench.core import events as E
from workbench.gui.panel import Panel
from workbench.gui.worker import EventWorker, task
from workbench.gui.widgets import to_pixmap

SHOWN = 300  # rows a list shows (the CSV export has all of them)
THUMB = 48
LISTS = {  # list name -> its tab title and the columns shown after image, file and class
    "label_issues": ("Label issues", ["suggested", "confidence", "quality"]),
    "leaks": ("Leaks", ["kind", "distance", "pixel_distance", "train_file", "train_class"]),
    "duplicates": ("Duplicates", ["group", "size", "kind", "distance"]),
    "outliers": ("Outliers", ["score", "nearest"]),
    "cell": ("Confusion cell", ["vote", "quality"]),
}
WORTH_A_LOOK = "#b35900"


class Loaded:
    """The checked images: the report plus the split data its rows come from (training rows first)."""

    def __init__(self, run_dir: str, report: checks.Report, splits: list):
        self.run_dir, self.report, self.splits = run_dir, report, splits

    def image(self, row: int) -> np.ndarray:
        """(C, H, W) uint8 of graph row ``row``."""
        for data in self.splits:
            if row < len(data):
                return data.read(torch.tensor([row]))[0].cpu().numpy()
            row -= len(data)
        raise IndexError(row)


def _check(run_dir: str, split: str, k: int, report, cancel) -> Loaded:
    """The background work: features, graph, checks (and their files in the run's checks/ folder)."""
    from workbench.core.inference import RunModel
    from workbench.core.runfolder import checks_dir, find_run

    rm = RunModel.load(run_dir)
    report(0, 0, "loading the data")
    train, test = rm.splits()
    result = checks.check_run(rm, split, k, splits=(train, test), progress=report, cancel=cancel)
    splits = [train, test] if split == "both" else [train if split == "train" else test]
    with contextlib.suppress(OSError):  # a read-only run folder: the lists are still shown (and can be exported)
        result.save(checks_dir(find_run(run_dir)))
    return Loaded(run_dir, result, splits)


class ListView(QWidget):
    """One list of a report as a table with thumbnails, and Export CSV."""

    rowClicked = Signal(int)  # graph row

    def __init__(self, name: str):
        super().__init__()
        self.name, self.table_data = name, None
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        self.note = QLabel("")
        self.note.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.export = QPushButton("Export CSV…")
        self.export.setObjectName(f"export_{name}")
        self.export.setEnabled(False)
        self.export.clicked.connect(lambda: self.save_csv())
        top.addWidget(self.note, 1)
        top.addWidget(self.export)
        lay.addLayout(top)
        self.table = QTableWidget()
        self.table.setObjectName(f"list_{name}")
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setIconSize(QSize(THUMB, THUMB))
        self.table.verticalHeader().setDefaultSectionSize(THUMB + 4)
        self.table.verticalHeader().setVisible(False)
        self.table.cellClicked.connect(self._clicked)
        lay.addWidget(self.table, 1)

    def show_table(self, table: checks.Table | None, loaded: Loaded | None, note: str = ""):
        self.table_data = table
        self.export.setEnabled(table is not None and len(table) > 0)
        self.table.setRowCount(0)
        if table is None:
            self.note.setText(note or "not checked")
            return
        extra = [c for c in LISTS[self.name][1] if c in table.columns]
        headers = ["image", "file", "split", "class"] + extra
        self.table.setColumnCount(len(headers))
        self.table.setHorizontalHeaderLabels(headers)
        n = min(len(table), SHOWN)
        self.table.setRowCount(n)
        for r in range(n):
            row = int(table["row"][r])
            pic = QTableWidgetItem()
            pic.setIcon(QIcon(to_pixmap(loaded.image(row), THUMB)))
            pic.setData(Qt.UserRole, row)
            self.table.setItem(r, 0, pic)
            name = str(table["file"][r]) or f"#{int(table['index'][r])}"
            values = [Path(name).name if table["file"][r] else name, str(table["split"][r]), str(table["class"][r])]
            values += [_cell(table[c][r]) for c in extra]
            for c, v in enumerate(values, 1):
                item = QTableWidgetItem(v)
                item.setToolTip(str(table["file"][r]) if c == 1 else v)
                self.table.setItem(r, c, item)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        more = f"; the first {SHOWN} shown, Export CSV has all" if len(table) > SHOWN else ""
        self.note.setText((note + " " if note else "") + f"{len(table):,} images{more}")

    def _clicked(self, r: int, _c: int):
        item = self.table.item(r, 0)
        if item is not None:
            self.rowClicked.emit(int(item.data(Qt.UserRole)))

    def save_csv(self, path: str | None = None) -> str | None:
        if self.table_data is None:
            return None
        if not path:
            path, _ = QFileDialog.getSaveFileName(self, "Export the list", f"{self.name}.csv", "CSV (*.csv)")
        if path:
            self.table_data.to_csv(path)
        return path or None


def _cell(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.4f}"
    return str(v)


class DataPanel(Panel, QWidget):
    """Checks of a run's data (duplicates, leaks, outliers, label issues) from one kNN graph."""
    title, shortcut = "Data", "Alt+6"

    checked = Signal(object)  # Loaded, once shown
    rethresholded = Signal(float)  # the near-duplicate distance a drag set, once the lists show it

    def __init__(self):
        super().__init__()
        self.run_dir: str | None = None
        self.loaded: Loaded | None = None
        self.task: EventWorker | None = None
        lay = QVBoxLayout(self)
        top = QHBoxLayout()
        self.run_label = QLabel("no run yet: train one, or open one from the Runs tab")
        self.run_label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.run_label.setWordWrap(True)  # a long run name wraps instead of being cut (on its own line: full width)
        self.split = QComboBox()
        self.split.addItems(list(checks.SPLITS))
        self.split.setObjectName("check_split")
        self.k = QSpinBox()
        self.k.setRange(1, 100)
        self.k.setValue(checks.K)
        self.run_btn = QPushButton("Check the data")
        self.run_btn.setObjectName("check_run")
        self.run_btn.setEnabled(False)
        self.run_btn.setToolTip("find near-duplicates, train/test leaks, outliers and likely label errors with this run's encoder")
        self.run_btn.clicked.connect(lambda: self.start())
        self.progress = QProgressBar()
        self.progress.setMinimumWidth(230)
        self.progress.setMaximumWidth(320)
        self.progress.setFormat("")
        lay.addWidget(self.run_label)
        for w in (QLabel("split"), self.split, QLabel("k"), self.k, self.run_btn, self.progress):
            top.addWidget(w)
        top.addStretch(1)
        lay.addLayout(top)
        self.summary = QLabel("")
        self.summary.setObjectName("check_summary")
        self.summary.setWordWrap(True)
        self.summary.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        lay.addWidget(self.summary)
        split = QSplitter(Qt.Horizontal)
        left = QSplitter(Qt.Vertical)
        self.hist = pg.PlotWidget(title="nearest-neighbour distance")
        self.hist.setToolTip("each image's cosine distance to its nearest neighbour; drag the red line to set the "
                             "near-duplicate threshold (the lists follow)")
        self.hist.setLabel("bottom", "cosine distance")
        self.hist.getAxis("bottom").enableAutoSIPrefix(False)
        self.hist.setLabel("left", "images")
        self.hist_curve = pg.PlotDataItem(stepMode="center", fillLevel=0, brush=(70, 130, 180, 120), pen="#4682b4")
        self.hist.addItem(self.hist_curve)
        self.line = pg.InfiniteLine(0, movable=True, pen=pg.mkPen("#c0392b", width=2), label="{value:.4f}",
                                    labelOpts={"position": 0.9, "color": "#c0392b", "anchors": [(0, 0), (0, 0)]})
        self.line.sigPositionChangeFinished.connect(self._dragged)
        self.hist.addItem(self.line)
        self.hist.setMinimumSize(300, 200)
        left.addWidget(self.hist)
        self.conf = pg.PlotWidget(title="kNN vote: label (rows) by vote")
        self.conf.setToolTip("share of each class's images (rows: given label) the neighbours' vote puts in each class "
                             "(columns); click a cell to list its images")
        self.conf.setMinimumSize(300, 240)
        self.conf.invertY(True)
        self.conf_img = pg.ImageItem()
        self.conf.addItem(self.conf_img)
        self.conf.scene().sigMouseClicked.connect(self._conf_clicked)
        self.conf_text: list = []
        left.addWidget(self.conf)
        split.addWidget(left)
        right = QSplitter(Qt.Vertical)
        self.lists = QTabWidget()
        self.views: dict[str, ListView] = {}
        for name, (title, _) in LISTS.items():
            view = self.views[name] = ListView(name)
            view.rowClicked.connect(self.show_neighbours)
            self.lists.addTab(view, title)
        right.addWidget(self.lists)
        self.nbrs = QListWidget()
        self.nbrs.setObjectName("neighbours")
        self.nbrs.setViewMode(QListWidget.IconMode)
        self.nbrs.setFlow(QListWidget.LeftToRight)
        self.nbrs.setWrapping(False)
        self.nbrs.setIconSize(QSize(64, 64))
        self.nbrs.setMinimumHeight(130)
        self.nbrs.setMovement(QListWidget.Static)
        right.addWidget(self.nbrs)
        right.setStretchFactor(0, 4)
        right.setStretchFactor(1, 1)
        split.addWidget(right)
        split.setSizes([380, 440])
        lay.addWidget(split, 1)

    # ----- what starts a check -----
    def set_run(self, run_dir: str):
        """A run was opened: its data can be checked on request."""
        self.run_dir = str(run_dir)
        self.run_btn.setEnabled(True)
        shown = self.loaded is not None and self.loaded.run_dir == self.run_dir
        self.run_label.setText(f"run {Path(run_dir).name}" + ("" if shown else ": press Check the data"))

    def attach(self, window):
        self.checked.connect(lambda got: [window.log("data", line) for line in got.report.findings])

    def on_event(self, ev):
        if isinstance(ev, E.DoneEvent):
            self.run_finished(ev)  # checked on its final evaluation

    def run_opened(self, run: str):
        self.set_run(run)  # checked on request

    def run_finished(self, ev):
        """A DoneEvent: a run that reached its final evaluation is checked at once."""
        self.set_run(ev.run_dir)
        if ev.reason in ("finished", "budget"):
            self.start()

    def start(self, run_dir: str | None = None):
        run = run_dir or self.run_dir
        if not run:
            return
        self.run_dir = run
        if self.task is not None:
            self.task.cancel()
        self.run_label.setText(f"run {Path(run).name}: checking…")
        self.progress.setRange(0, 0)
        self.progress.setFormat("starting…")
        self.run_btn.setEnabled(False)
        split, k = self.split.currentText(), self.k.value()
        self.task = task(lambda report, cancel: _check(run, split, k, report, cancel), self._done, self._failed,
                         progress=self._progress)

    def _progress(self, done: int, total: int, message: str):
        self.progress.setRange(0, max(total, 0))
        self.progress.setValue(done)
        self.progress.setFormat(f"{message} {done:,}/{total:,}" if total else message)

    def _failed(self, message: str, _tb: str = ""):
        self.task = None
        self.run_btn.setEnabled(True)
        self.progress.setRange(0, 1)
        self.progress.setFormat("failed")
        self.summary.setText(f"the check failed: {html.escape(message)}")
        self.summary.setStyleSheet("color: #c0392b")

    def _done(self, loaded: Loaded):
        self.task = None
        self.run_btn.setEnabled(True)
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.progress.setFormat("checked")
        self.run_label.setText(f"run {Path(loaded.run_dir).name}")
        self.show_loaded(loaded)
        self.checked.emit(loaded)

    # ----- showing a report -----
    def show_loaded(self, loaded: Loaded):
        self.loaded = loaded
        r = loaded.report
        near = r.graph.nearest
        top = float(np.percentile(near, 99.5)) or 1e-3
        counts, edges = np.histogram(near, bins=120, range=(0.0, max(top, r.radius * 1.5)))
        self.hist_curve.setData(edges, counts)
        self.line.setValue(r.radius)  # sigPositionChangeFinished comes from a drag only
        self._show_lists(r)
        self._show_confusion(r)

    def _show_lists(self, r: checks.Report):
        findings = r.findings
        s = r.summary()
        head = (f"{s['images']:,} images, k {s['k']}, median nearest-neighbour distance {s['median_nn_distance']:.4f}; "
                f"near-duplicates closer than {r.radius:.4f} ({r.factor:.3g} of it)"
                + (f"; the kNN vote agrees with {r.vote_agreement:.1%} of the labels" if r.vote_agreement is not None else ""))
        self.summary.setText(head + ("<br><b>" + "<br>".join(html.escape(f) for f in findings) + "</b>" if findings
                                     else "<br>nothing worth a look"))
        self.summary.setStyleSheet(f"color: {WORTH_A_LOOK}" if findings else "")
        notes = {"leaks": "checked with both splits only", "label_issues": "the data has no labels"}
        for name, view in self.views.items():
            if name == "cell":
                continue
            table = getattr(r, name)
            view.show_table(table, self.loaded, "" if table is not None else notes.get(name, ""))
            title = LISTS[name][0]
            self.lists.setTabText(self.lists.indexOf(view), f"{title} ({len(table):,})" if table is not None else title)

    def _show_confusion(self, r: checks.Report):
        for t in self.conf_text:
            self.conf.removeItem(t)
        self.conf_text = []
        if r.confusion is None:
            self.conf_img.clear()
            return
        cm = r.confusion.astype(float)
        share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        self.conf_img.setImage(share.T, levels=(0, 1))  # ImageItem's first axis is x: columns are the vote
        self.conf_img.setColorMap(pg.colormap.get("viridis"))
        names = list(r.items.class_names(np.arange(len(cm))))
        self.conf.getAxis("bottom").setTicks([[(i + 0.5, n[:3]) for i, n in enumerate(names)]])
        self.conf.getAxis("left").setTicks([[(i + 0.5, n[:10]) for i, n in enumerate(names)]])
        self.conf.setRange(xRange=(0, len(cm)), yRange=(0, len(cm)), padding=0)
        if len(cm) <= 12:
            for i in range(len(cm)):
                for j in range(len(cm)):
                    t = pg.TextItem(f"{int(cm[i, j])}", color="w" if share[i, j] < 0.5 else "k", anchor=(0.5, 0.5))
                    t.setPos(j + 0.5, i + 0.5)
                    self.conf.addItem(t)
                    self.conf_text.append(t)

    def _conf_clicked(self, ev):
        if self.loaded is None or self.loaded.report.confusion is None:
            return
        p = self.conf.getViewBox().mapSceneToView(ev.scenePos())
        self.show_cell(int(np.floor(p.y())), int(np.floor(p.x())))

    def show_cell(self, given: int, vote: int):
        """List the images labelled ``given`` whose neighbours' vote is ``vote``."""
        r = self.loaded.report
        n = len(r.confusion)
        if not (0 <= given < n and 0 <= vote < n):
            return
        labels = r.items.labels
        votes = r.probs.argmax(1)
        rows = np.flatnonzero((labels == given) & (votes == vote))
        quality = r.probs[rows, given]
        rows, quality = rows[np.argsort(quality, kind="stable")], np.sort(quality, kind="stable")
        table = checks.Table(**r.items.describe(rows), vote=r.items.class_names(votes[rows]), quality=quality)
        names = r.items.class_names([given, vote])
        view = self.views["cell"]
        view.show_table(table, self.loaded, f"labelled {names[0]}, voted {names[1]}:")
        self.lists.setTabText(self.lists.indexOf(view), f"{names[0]} → {names[1]} ({len(rows):,})")
        self.lists.setCurrentWidget(view)

    def _dragged(self):
        if self.loaded is None:
            return
        r = self.loaded.report
        radius = max(float(self.line.value()), 0.0)
        factor = radius / max(float(np.median(r.graph.nearest)), 1e-12)
        loaded = self.loaded
        task(lambda: r.with_factor(factor), lambda new: self._rethresholded(loaded, new))

    def _rethresholded(self, loaded: Loaded, report: checks.Report):
        if loaded is not self.loaded:
            return
        loaded.report = report
        self._show_lists(report)
        self.rethresholded.emit(report.radius)

    def show_neighbours(self, row: int):
        """The image of graph row ``row`` and its k neighbours, with their distance, split and class."""
        r, loaded = self.loaded.report, self.loaded
        self.nbrs.clear()
        rows = [row] + r.graph.indices[row].tolist()
        dists = [0.0] + r.graph.distances[row].tolist()
        for i, (j, d) in enumerate(zip(rows, dists, strict=True)):
            desc = r.items.describe([j])
            name = Path(str(desc["file"][0])).name or f"#{int(desc['index'][0])}"
            text = f"{'this' if i == 0 else f'{d:.4f}'}\n{desc['split'][0]} {desc['class'][0]}"
            item = QListWidgetItem(QIcon(to_pixmap(loaded.image(j), 64)), text)
            item.setToolTip(f"{desc['file'][0] or name}\n{desc['split'][0]} image {int(desc['index'][0])}, class {desc['class'][0]}"
                            + ("" if i == 0 else f"\ncosine distance {d:.4f}"))
            self.nbrs.addItem(item)
