"""Small reusable widgets: registry parameter forms, a log-scale temperature control, image conversion,
image tiles in a grid that is updated in place."""
from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QObject, Qt, QThreadPool, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (QCheckBox, QDoubleSpinBox, QFormLayout, QGridLayout, QHBoxLayout, QLabel, QLineEdit,
                               QSlider, QSpinBox, QVBoxLayout, QWidget)


def to_pixmap(img: np.ndarray, size: int = 64) -> QPixmap:
    """(C, H, W) uint8 -> QPixmap scaled to ``size`` pixels."""
    arr = np.ascontiguousarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0))
    h, w = arr.shape[:2]
    if arr.ndim == 2:
        q = QImage(arr.data, w, h, w, QImage.Format_Grayscale8)
    else:
        q = QImage(arr.data, w, h, 3 * w, QImage.Format_RGB888)
    return QPixmap.fromImage(q.copy()).scaled(size, size, Qt.KeepAspectRatio, Qt.FastTransformation)


class LogSlider(QWidget):
    """A spin box with a log-scale slider, for temperatures and learning rates."""

    valueChanged = Signal(float)

    def __init__(self, value: float, lo: float, hi: float, decimals: int = 4):
        super().__init__()
        self.lo, self.hi = lo, hi
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setRange(0, 1000)
        self.spin = QDoubleSpinBox()
        self.spin.setDecimals(decimals)
        self.spin.setRange(0.0, hi)  # values below lo are shown and then rejected by validation
        self.spin.setSingleStep(lo)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.slider, 2)
        lay.addWidget(self.spin, 1)
        self.slider.valueChanged.connect(self._from_slider)
        self.spin.valueChanged.connect(self._from_spin)
        self.setValue(value)

    def _from_slider(self, pos: int):
        v = math.exp(math.log(self.lo) + pos / 1000 * (math.log(self.hi) - math.log(self.lo)))
        self.spin.blockSignals(True)
        self.spin.setValue(round(v, self.spin.decimals()))
        self.spin.blockSignals(False)
        self.valueChanged.emit(self.spin.value())

    def _from_spin(self, v: float):
        self.slider.blockSignals(True)
        if v > 0:
            self.slider.setValue(int(round((math.log(max(v, self.lo)) - math.log(self.lo)) / (math.log(self.hi) - math.log(self.lo)) * 1000)))
        self.slider.blockSignals(False)
        self.valueChanged.emit(v)

    def value(self) -> float:
        return self.spin.value()

    def setValue(self, v: float):
        self.spin.setValue(v)
        self._from_spin(v)


class ParamForm(QWidget):
    """Editors for a registry entry's parameters; ``values()`` returns what the user set."""

    changed = Signal()

    def __init__(self):
        super().__init__()
        self.form = QFormLayout(self)
        self.form.setContentsMargins(0, 0, 0, 0)
        self.editors: dict[str, QWidget] = {}
        self.kinds: dict[str, type] = {}

    def set_params(self, params, values: dict | None = None):
        while self.form.rowCount():
            self.form.removeRow(0)
        self.editors, self.kinds = {}, {}
        values = values or {}
        for p in params:
            v = values.get(p.name, p.default)
            ed = self._editor(p.name, p.kind, v)
            self.editors[p.name], self.kinds[p.name] = ed, p.kind
            self.form.addRow(p.name.replace("_", " "), ed)

    def _editor(self, name, kind, v):
        if name == "temperature":
            ed = LogSlider(float(v), 0.001, 10.0)
            ed.valueChanged.connect(lambda *_: self.changed.emit())
        elif kind is bool:
            ed = QCheckBox()
            ed.setChecked(bool(v))
            ed.toggled.connect(lambda *_: self.changed.emit())
        elif kind is int:
            ed = QSpinBox()
            ed.setRange(-1, 10_000_000)
            ed.setValue(int(v))
            ed.valueChanged.connect(lambda *_: self.changed.emit())
        elif kind is float:
            ed = QDoubleSpinBox()
            ed.setDecimals(4)
            ed.setRange(-1e6, 1e6)
            ed.setSingleStep(0.05)
            ed.setValue(float(v))
            ed.valueChanged.connect(lambda *_: self.changed.emit())
        else:
            ed = QLineEdit(", ".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v))
            ed.textChanged.connect(lambda *_: self.changed.emit())
        ed.setObjectName(f"param_{name}")
        return ed

    def values(self) -> dict:
        out = {}
        for name, ed in self.editors.items():
            kind = self.kinds[name]
            if isinstance(ed, (LogSlider, QDoubleSpinBox, QSpinBox)):
                out[name] = ed.value()
            elif isinstance(ed, QCheckBox):
                out[name] = ed.isChecked()
            elif kind is tuple:
                out[name] = [t.strip() for t in ed.text().split(",") if t.strip()]
            else:
                out[name] = ed.text()
        return out


class Task(QObject):
    """Run ``fn()`` in the global thread pool; ``on_done(result)`` / ``on_failed(message)`` run on the GUI thread.

    The signals are connected to this object's own methods and the object lives on the GUI
    thread, so Qt queues the callbacks there whatever thread emits.
    """

    done = Signal(object)
    failed = Signal(str)
    running: set = set()  # keeps tasks alive until they report

    def __init__(self, fn, on_done, on_failed):
        super().__init__()
        self.fn, self.on_done, self.on_failed = fn, on_done, on_failed
        self.done.connect(self._finish)
        self.failed.connect(self._fail)

    def start(self) -> "Task":
        Task.running.add(self)
        QThreadPool.globalInstance().start(self._run)
        return self

    def _run(self):
        try:
            self.done.emit(self.fn())
        except Exception as exc:  # noqa: BLE001 - reported in the window, never a crash
            self.failed.emit(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    def _finish(self, result):
        Task.running.discard(self)
        self.on_done(result)

    def _fail(self, message):
        Task.running.discard(self)
        self.on_failed(message)


class Tile(QWidget):
    """An image with an optional caption under it, coloured border and tooltip, updated in place."""

    def __init__(self, size: int):
        super().__init__()
        v = QVBoxLayout(self)
        v.setContentsMargins(2, 2, 2, 2)
        self.size, self.color = size, None
        self.pic, self.cap = QLabel(), QLabel()
        self.pic.setFixedSize(size + 6, size + 6)
        self.pic.setAlignment(Qt.AlignCenter)
        self.cap.setAlignment(Qt.AlignCenter)
        self.cap.setStyleSheet("font-size: 10px")
        v.addWidget(self.pic)
        v.addWidget(self.cap)

    def set(self, img, caption: str = "", color: str | None = None, tooltip: str = ""):
        self.pic.setPixmap(to_pixmap(img, self.size))
        self.cap.setText(caption)
        self.cap.setVisible(bool(caption))
        self.pic.setToolTip(tooltip)
        if color != self.color:  # restyling is the expensive part; most tiles keep their colour
            self.pic.setStyleSheet(f"border: 3px solid {color}" if color else "")
            self.color = color
        self.setVisible(True)


class TileGrid:
    """Tiles in a grid layout that live across redraws (begin, put..., end): building a few hundred
    widgets for every inspector batch stalled the window for ~120 ms; updating them in place does not."""

    def __init__(self, layout: QGridLayout, size: int):
        self.layout, self.size, self.tiles, self.used = layout, size, {}, set()

    def begin(self):
        self.used = set()

    def put(self, r: int, c: int, img, caption: str = "", color: str | None = None, tooltip: str = ""):
        tile = self.tiles.get((r, c))
        if tile is None:
            tile = self.tiles[(r, c)] = Tile(self.size)
            self.layout.addWidget(tile, r, c)
        tile.set(img, caption, color, tooltip)
        self.used.add((r, c))

    def end(self):
        for key, tile in self.tiles.items():
            if key not in self.used:
                tile.setVisible(False)

    def shown(self) -> int:
        return len(self.used)
