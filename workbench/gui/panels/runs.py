"""Runs table: one row per run folder (status, date, dataset, loss, temperature, encoder, batch, epochs,
final and best kNN, duration), sortable and filterable. Select one run to open, resume, clone, export
or delete it; select two or more to overlay their curves or see how their configs differ.

Run folders are read in a background task (``refreshed`` fires when the table is filled).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from PySide6.QtCore import QFile, QItemSelection, QItemSelectionModel, Qt, QTimer, Signal
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QMessageBox, QPlainTextEdit,
                               QPushButton, QSplitter, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from workbench.core.history import run_summary
from workbench.core.runfolder import config_path, run_folders
from workbench.core import events as E
from workbench.gui.panel import Panel, RunEnded, RunsRoot
from workbench.gui.worker import task
from workbench.gui.widgets import FlowLayout, clock

COLUMNS = [("status", "status"), ("date", "date"), ("dataset", "dataset"), ("loss", "loss"), ("T", "temperature"),
           ("encoder", "encoder"), ("batch", "batch"), ("epochs", "epochs"), ("final kNN", "final_knn"),
           ("best kNN", "best_knn"), ("kNN, read-out", "final_knn_acc_readout"), ("mAP@R", "final_map_at_r"),
           ("linear", "final_linear_acc"), ("data checks", "findings"), ("duration", "duration_s")]
COLUMN_TIPS = {  # what a figure column is, for its header
    "final_knn": "the field's kNN protocol: weighted kNN on L2-normalised backbone features (k and T: the cell's tooltip)",
    "final_knn_acc_readout": "the same kNN through the run's read-out (eval.readout: centred or whitened); runs from before "
                             "the field's protocol became the headline have their old whitened kNN here",
    "final_map_at_r": "MAP@R on the held-out split (eval.retrieval)",
    "final_linear_acc": "linear probe on all the bank's labels (eval.linear_probe)",
    "findings": "what the run's last data check found (workbench check, the Data tab): duplicates, leaks, outliers, labels",
}
STATUS_COLOURS = {"running": "#1f77b4", "finished": "#2ca02c", "budget": "#2ca02c", "stopped": "#ff7f0e", "interrupted": "#ff7f0e",
                  "failed": "#d62728", "unreadable": "#d62728"}
STATUS_TIPS = {"interrupted": "its process ended while training (killed or crashed): Resume continues from the last checkpoint",
               "stopped": "stopped before the end: Resume continues from the last checkpoint",
               "budget": "finished on its time budget (train.time_budget_s)"}
STATUS_TEXT = {"budget": "finished"}  # how a state reads in the table, where it differs
ENDED = ("finished", "budget")  # nothing left to resume


def epochs_text(r: dict) -> str:
    """What a run did: "2/3" epochs, "15 steps" for a run cut short by train.max_steps, or "4 in 10 min" for
    one boxed by train.time_budget_s."""
    if r.get("epochs") is None:
        return ""
    if r.get("time_budget_s"):
        budget = budget_text(r["time_budget_s"])
        done = r.get("epochs_done", 0)
        return f"{done} in {budget}" if r.get("status") in ENDED else f"{done} (of a {budget} run)"
    if r.get("max_steps"):  # its epochs are a ceiling (100,000 for a run given in steps in the window)
        step = r.get("step") or 0
        return f"{step} steps" if r.get("status") in ENDED or step >= r["max_steps"] else f"{step}/{r['max_steps']} steps"
    return f"{r.get('epochs_done', r['epochs'])}/{r['epochs']}"


def knn_text(r: dict) -> tuple[str, str]:
    """(cell text, tooltip) of the "final kNN" column: the kNN of the run's end, or of its last evaluation with the
    step it came from, for an ended run whose final evaluation did not run (e.g. one closed while it ran)."""
    v = r.get("final_knn")
    if v is None:
        return "", ""
    if r.get("status") in ENDED and r.get("knn_step") is not None and not r.get("knn_at_end", True):
        return (f"{v:.4f} (step {r['knn_step']})",
                f"the run ended at step {r.get('end_step')} before its final evaluation: this kNN is from step "
                f"{r['knn_step']}")
    return f"{v:.4f}", ""


def cell_text(key: str, r: dict) -> tuple[str, str, object]:
    """(text, tooltip, the value it sorts by) of the runs table's cell ``key`` for the summary row ``r``."""
    v, tip = r.get(key), ""
    if key == "final_knn":
        text, tip = knn_text(r)
        tip = "; ".join(t for t in (r.get("knn_protocol", ""), tip) if t)
    elif key == "best_knn" or key.startswith("final_"):
        text = f"{v:.4f}" if isinstance(v, float) else ""
        tip = f"kNN, {r.get('readout')} read-out" if key == "final_knn_acc_readout" and text else ""
    elif key == "findings":
        text, tip, v = (f"{len(v)} to look at" if v else ""), "\n".join(v or []), len(v or [])
    elif key == "temperature":
        text = f"{v:g}" if v is not None else ""
    elif key == "duration_s":
        text = clock(v)
    elif key == "epochs":
        text, v = epochs_text(r), r.get("epochs_done", v)
    else:
        text = "" if v is None else STATUS_TEXT.get(v, str(v)) if key == "status" else str(v)
    return text, tip, v


def budget_text(seconds: float) -> str:
    """A time budget in words: "45 s", "10 min", "2.5 min"."""
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f}".removesuffix(".0") + " min"


class Item(QTableWidgetItem):
    """A cell that sorts by its value (numbers as numbers, empty last) and shows it formatted."""

    def __init__(self, value, text: str):
        super().__init__(text)
        self.value = value
        self.setFlags(Qt.ItemIsSelectable | Qt.ItemIsEnabled)

    def __lt__(self, other):
        a, b = self.value, getattr(other, "value", None)
        if a is None or b is None:
            return a is not None  # empty cells sort after every value
        try:
            return a < b
        except TypeError:
            return str(a) < str(b)


def config_diff(runs: list[str]) -> list[tuple[str, list]]:
    """[(key, [value per run])] for every config key whose value differs between ``runs``."""
    from workbench.core.config import Config
    from workbench.core.keys import differences
    from workbench.core.registry import ConfigError

    trees = []
    for run in runs:
        try:
            trees.append(Config.load(config_path(run)).to_dict())
        except ConfigError as exc:
            trees.append({"error": {"config": str(exc)}})
    return differences(trees)


class RunsPanel(Panel, QWidget):
    """The run folders under the runs folder: open, overlay, resume, clone, export, delete."""
    title, shortcut = "Runs", "Alt+4"

    openRun = Signal(str)
    overlayRuns = Signal(list)
    resumeRun = Signal(str)
    cloneRun = Signal(str)
    exportRun = Signal(str)
    refreshed = Signal()

    def __init__(self, root: str = "runs"):
        super().__init__()
        self.root = Path(root)
        self.running_run: str | None = None
        self.rows: list[dict] = []
        lay = QVBoxLayout(self)
        top = QHBoxLayout()
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.filter = QLineEdit()
        self.filter.setObjectName("runs_filter")
        self.filter.setPlaceholderText("filter: any text in a row (e.g. ntxent, finished, cifar10)")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self._apply_filter)
        top.addWidget(self.filter, 2)
        top.addWidget(self.label, 3)
        lay.addLayout(top)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("runs")
        self.table.setHorizontalHeaderLabels([c for c, _ in COLUMNS])
        for j, (_, key) in enumerate(COLUMNS):
            if key in COLUMN_TIPS:
                self.table.horizontalHeaderItem(j).setToolTip(COLUMN_TIPS[key])
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.table.setSortingEnabled(True)
        self.table.sortItems(1, Qt.DescendingOrder)  # newest first
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.table.doubleClicked.connect(lambda *_: self._emit(self.openRun))
        self.diff = QPlainTextEdit()
        self.diff.setObjectName("runs_diff")
        self.diff.setReadOnly(True)
        self.diff.setPlaceholderText("Select two or more runs to see how their configs differ.")
        split = QSplitter(Qt.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.diff)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        lay.addWidget(split, 1)
        row = FlowLayout()  # wraps onto a second line on a narrow window instead of cutting the buttons' text
        self.buttons = {}
        for text, slot in (("Refresh", self.refresh), ("Open", lambda: self._emit(self.openRun)),
                           ("Overlay curves", lambda: self.overlayRuns.emit(self.selected())),
                           ("Resume", lambda: self._emit(self.resumeRun)), ("Clone and edit", lambda: self._emit(self.cloneRun)),
                           ("Export…", lambda: self._emit(self.exportRun)), ("Delete…", self.delete_selected)):
            b = QPushButton(text)
            b.setObjectName(f"runs_{text.split()[0].lower().rstrip('…')}")
            b.clicked.connect(lambda _=False, s=slot: s())
            row.addWidget(b)
            self.buttons[text.split()[0].rstrip("…").lower()] = b
        lay.addLayout(row)
        self._task = None
        self._ticker = QTimer(self)  # a run given in minutes may evaluate rarely: its row still moves on
        self._ticker.setInterval(self.LIVE_MS)
        self._ticker.timeout.connect(self._tick)
        self._ticker.start()
        self._selection_changed()
        self.refresh()

    LIVE_MS = 10_000  # while a run trains and the table is in view, it is read again this often (in the background)

    def _tick(self):
        if self.running_run and self.isVisible() and self._task is None:
            self.refresh()

    @classmethod
    def create(cls, window):
        return cls(window.runs_root)

    def attach(self, window):
        self.openRun.connect(window.open_run)
        self.overlayRuns.connect(window.overlay_runs)
        self.resumeRun.connect(lambda r: window.start(resume=r))
        self.cloneRun.connect(window.clone_run)
        self.exportRun.connect(window.export_dialog)

    def on_event(self, ev):
        if isinstance(ev, E.RunStarted):
            self.set_running(ev.run_dir)
        elif isinstance(ev, RunEnded):
            self.set_running(None)
        elif isinstance(ev, RunsRoot):
            self.root = Path(ev.folder)
            self.refresh()
        elif isinstance(ev, E.EvalEvent) and self.running_run and self.isVisible():
            self.refresh()  # the running run's kNN (read in the background)

    def set_running(self, run_dir: str | None):
        self.running_run = run_dir
        self._selection_changed()
        self.refresh()

    # ----- filling -----
    def refresh(self):
        root = self.root
        self.label.setText(f"run folders in {root.resolve()}")

        def scan():
            return [run_summary(r) for r in run_folders(root)]

        if self._task is not None:
            self._task.cancel()
        self._task = task(scan, self._fill, lambda msg, *_: self.label.setText(f"cannot read {root}: {msg}"))

    def _fill(self, rows: list[dict]):
        self._task = None
        selected = set(self.selected())
        for r in rows:
            if self.running_run and Path(r["run"]) == Path(self.running_run):
                r["status"] = "running"
        self.rows = rows
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            for j, (_, key) in enumerate(COLUMNS):
                self.table.setItem(i, j, self._cell(key, r))
        self.table.setSortingEnabled(True)
        self.select(selected)  # by run folder: the rows moved, and a row number would now name another run
        self._apply_filter(self.filter.text())
        self._selection_changed()  # a selected run may have finished since: Resume follows its state
        self.refreshed.emit()

    def _cell(self, key: str, r: dict) -> Item:
        text, tip, v = cell_text(key, r)
        item = Item(v, text)
        item.setData(Qt.UserRole, r["run"])
        if tip:
            item.setToolTip(tip)
        if key == "status":
            item.setForeground(Qt.white)
            item.setBackground(_colour(STATUS_COLOURS.get(str(v), "#7f7f7f")))
            item.setTextAlignment(Qt.AlignCenter)
            if r.get("error") or v in STATUS_TIPS:
                item.setToolTip(r.get("error") or STATUS_TIPS[v])
            if knn_text(r)[1]:
                item.setToolTip(f"{item.toolTip() or 'finished'}; {knn_text(r)[1]}")
        if key == "date":
            item.setToolTip(r["run"])  # the run folder
            if Path(r["run"]).parent.parent == self.root / "sweeps":  # a sweep's trial
                item.setText(f"{text}  (sweep {Path(r['run']).parent.name})")
        return item

    def _apply_filter(self, text: str):
        words = text.lower().split()
        for i in range(self.table.rowCount()):
            cells = [self.table.item(i, j).text() for j in range(self.table.columnCount())]
            row_text = " ".join(cells + [Path(self.table.item(i, 0).data(Qt.UserRole)).name]).lower()
            self.table.setRowHidden(i, not all(w in row_text for w in words))

    def visible_runs(self) -> list[str]:
        return [self.table.item(i, 0).data(Qt.UserRole) for i in range(self.table.rowCount()) if not self.table.isRowHidden(i)]

    # ----- selection and actions -----
    def status_of(self, run: str) -> str:
        return next((r["status"] for r in self.rows if Path(r["run"]) == Path(run)), "")

    def selected(self) -> list[str]:
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        return [self.table.item(r, 0).data(Qt.UserRole) for r in rows if not self.table.isRowHidden(r)]

    def select(self, runs):
        """Select exactly the rows of these run folders (whatever keys are held down)."""
        model, rows, last = self.table.model(), QItemSelection(), self.table.columnCount() - 1
        for i in range(self.table.rowCount()):
            if self.table.item(i, 0).data(Qt.UserRole) in runs:
                rows.select(model.index(i, 0), model.index(i, last))
        self.table.selectionModel().select(rows, QItemSelectionModel.ClearAndSelect | QItemSelectionModel.Rows)

    def _selection_changed(self):
        sel = self.selected()
        for name in ("open", "resume", "clone", "export", "delete"):
            self.buttons[name].setEnabled(len(sel) == 1 if name != "delete" else bool(sel))
        busy = self.running_run is not None  # one run trains at a time, and the training one's folder stays
        ended = len(sel) == 1 and self.status_of(sel[0]) in ENDED
        if busy or ended:
            self.buttons["resume"].setEnabled(False)
        if busy:
            self.buttons["delete"].setEnabled(bool(sel) and all(Path(r) != Path(self.running_run) for r in sel))
        self.buttons["resume"].setToolTip(
            "stop the training run first: one run trains at a time" if busy else
            "this run finished: nothing is left to resume; Clone and edit starts a new run from its set-up" if ended else
            "continue the selected run from its last checkpoint")
        self.buttons["delete"].setToolTip("the training run cannot be deleted while it trains" if busy else
                                          "move the selected run folders to the trash")
        self.buttons["overlay"].setEnabled(len(sel) >= 1)
        if len(sel) >= 2:
            diff = config_diff(sel)
            names = [Path(r).name for r in sel]
            lines = ["  |  ".join(names)] + [f"{k}: " + "  |  ".join(repr(v) for v in vals) for k, vals in diff]
            self.diff.setPlainText("\n".join(lines) if diff else "The selected runs have the same config.")
        else:
            self.diff.setPlainText("")

    def _emit(self, sig):
        sel = self.selected()
        if len(sel) == 1:
            sig.emit(sel[0])

    def confirm_delete(self, runs: list[str]) -> bool:
        names = "\n".join(Path(r).name for r in runs)
        text = f"Move these run folders to the trash (or delete them)?\n\n{names}"
        return QMessageBox.question(self, "Delete runs", text) == QMessageBox.Yes

    def delete_selected(self):
        from workbench.core.runlock import owner

        runs = [r for r in self.selected() if not (self.running_run and Path(r) == Path(self.running_run))]
        busy = [(r, owner(r)) for r in runs if owner(r)]  # trained by another process (a CLI, a sweep): not deleted
        if busy:
            runs = [r for r in runs if r not in dict(busy)]
            QMessageBox.information(self, "Delete runs", "Not deleted, being trained by another process:\n\n" + "\n".join(
                f"{Path(r).name} (process {who.get('pid', '?')})" for r, who in busy))
        if not runs or not self.confirm_delete(runs):
            return
        for run in runs:
            trashed = QFile.moveToTrash(run) if not os.environ.get("WORKBENCH_NO_TRASH") else False
            if not (trashed[0] if isinstance(trashed, tuple) else trashed):
                shutil.rmtree(run, ignore_errors=True)
        self.refresh()


def _colour(hex_: str):
    from PySide6.QtGui import QColor

    return QColor(hex_)
