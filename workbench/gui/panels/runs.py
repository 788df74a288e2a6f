"""Runs browser: run folders with their config summary and final metrics; open, overlay, resume, clone, export."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget

from workbench.core.config import Config
from workbench.core.registry import ConfigError
from workbench.core.runs import read_metrics


def summarise(run: Path) -> str:
    try:
        cfg = Config.load(run / "config.toml")
    except ConfigError as exc:
        return f"{run.name}: unreadable config ({exc})"
    rows = read_metrics(run)
    knn = [r["knn_acc"] for r in rows if r.get("knn_acc") is not None]
    steps = [r["step"] for r in rows if r.get("step") is not None]
    ckpt = "checkpoint" if (run / "checkpoints" / "last.pt").is_file() else "no checkpoint"
    return (f"{run.name}  |  {cfg.data.name}, {cfg.model.encoder}, {cfg.loss.name}"
            f" T={cfg.loss.params.get('temperature', '-')}, batch {cfg.train.batch_size}  |  "
            f"step {int(max(steps)) if steps else 0}, kNN {knn[-1]:.4f}" if knn else
            f"{run.name}  |  {cfg.data.name}, {cfg.model.encoder}, {cfg.loss.name}  |  no evaluation yet") + f"  |  {ckpt}"


class RunsPanel(QWidget):
    openRun = Signal(str)
    overlayRun = Signal(str)
    resumeRun = Signal(str)
    cloneRun = Signal(str)
    exportRun = Signal(str)

    def __init__(self, root: str = "runs"):
        super().__init__()
        self.root = Path(root)
        lay = QVBoxLayout(self)
        self.label = QLabel()
        lay.addWidget(self.label)
        self.list = QListWidget()
        self.list.setObjectName("runs")
        lay.addWidget(self.list, 1)
        row = QHBoxLayout()
        for text, sig in (("Refresh", None), ("Open", self.openRun), ("Overlay curves", self.overlayRun),
                          ("Resume", self.resumeRun), ("Clone and edit", self.cloneRun), ("Export…", self.exportRun)):
            b = QPushButton(text)
            b.setObjectName(f"runs_{text.split()[0].lower().rstrip('…')}")
            b.clicked.connect(self.refresh if sig is None else (lambda _=False, s=sig: self._emit(s)))
            row.addWidget(b)
        lay.addLayout(row)
        self.refresh()

    def set_root(self, root: str):
        self.root = Path(root)
        self.refresh()

    def refresh(self):
        self.list.clear()
        self.label.setText(f"run folders in {self.root.resolve()}")
        runs = sorted((p for p in self.root.glob("*") if (p / "config.toml").is_file()), reverse=True) if self.root.is_dir() else []
        for run in runs:
            item = QListWidgetItem(summarise(run))
            item.setData(256, str(run))
            self.list.addItem(item)

    def selected(self) -> list[str]:
        return [i.data(256) for i in self.list.selectedItems()] or ([self.list.currentItem().data(256)] if self.list.currentItem() else [])

    def _emit(self, sig):
        for run in self.selected():
            sig.emit(run)
