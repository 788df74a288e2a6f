"""Small reusable widgets: registry parameter forms, a log-scale temperature control, image conversion,
image tiles in a grid that is updated in place."""
from __future__ import annotations

import math
import re

import numpy as np
from PySide6.QtCore import QPoint, QRect, QSize, Qt, Signal
from PySide6.QtGui import QImage, QPixmap, QValidator
from PySide6.QtWidgets import (QApplication, QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFormLayout,
                               QGridLayout, QHBoxLayout, QLabel, QLayout, QLineEdit, QPlainTextEdit, QProgressBar, QSlider,
                               QSpinBox, QVBoxLayout, QWidget)

from workbench.core.timefmt import clock  # noqa: F401 - re-exported: the one way durations read


def to_pixmap(img: np.ndarray, size: int = 64) -> QPixmap:
    """(C, H, W) uint8 -> QPixmap scaled to ``size`` pixels."""
    arr = np.ascontiguousarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0))
    h, w = arr.shape[:2]
    fmt, stride = (QImage.Format_Grayscale8, w) if arr.ndim == 2 else (QImage.Format_RGB888, 3 * w)
    q = QImage(arr.data, w, h, stride, fmt)
    return QPixmap.fromImage(q.copy()).scaled(size, size, Qt.KeepAspectRatio, Qt.FastTransformation)


class ElidedLabel(QLabel):
    """One line cut to its width with an ellipsis; ``text()`` and the tooltip keep it whole."""

    def __init__(self, text: str = ""):
        super().__init__()
        self._full = ""
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name
        self._full = text
        self._elide()

    def text(self) -> str:
        return self._full

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        super().setText(self.fontMetrics().elidedText(self._full, Qt.ElideRight, max(self.width(), 1)))


class FlowLayout(QLayout):
    """Widgets left to right, wrapping onto the next line when the width runs out (Qt's flow layout example): a row
    of buttons that never cuts their text on a narrow window and takes one line on a wide one."""

    def __init__(self, parent=None, spacing: int = 6):
        super().__init__(parent)
        self._items: list = []
        self.setSpacing(spacing)
        self.setContentsMargins(0, 0, 0, 0)

    def addItem(self, item):  # noqa: N802 - Qt's name
        self._items.append(item)

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, i: int):  # noqa: N802 - Qt's name
        return self._items[i] if 0 <= i < len(self._items) else None

    def takeAt(self, i: int):  # noqa: N802 - Qt's name
        return self._items.pop(i) if 0 <= i < len(self._items) else None

    def expandingDirections(self):  # noqa: N802 - Qt's name
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt's name
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802 - Qt's name
        return self._place(QRect(0, 0, width, 0), move=False)

    def setGeometry(self, rect):  # noqa: N802 - Qt's name
        super().setGeometry(rect)
        self._place(rect, move=True)

    def sizeHint(self):  # noqa: N802 - Qt's name
        width = sum(i.sizeHint().width() for i in self._items) + self.spacing() * max(0, len(self._items) - 1)
        return QSize(width, max((i.sizeHint().height() for i in self._items), default=0))

    def minimumSize(self):  # noqa: N802 - Qt's name
        size = QSize()
        for item in self._items:
            size = size.expandedTo(item.minimumSize())
        return size

    def _place(self, rect, move: bool) -> int:
        """Lay the items out in ``rect`` (or only measure); returns the height they take."""
        x, y, line = rect.x(), rect.y(), 0
        for item in self._items:
            if not item.widget() or not item.widget().isVisibleTo(item.widget().parentWidget()):
                continue
            hint = item.sizeHint()
            if x > rect.x() and x + hint.width() > rect.right() + 1:
                x, y, line = rect.x(), y + line + self.spacing(), 0
            if move:
                item.setGeometry(QRect(QPoint(x, y), hint))
            x += hint.width() + self.spacing()
            line = max(line, hint.height())
        return y + line - rect.y()


class TextBar(QProgressBar):
    """A progress bar whose text (``setFormat``) is shown beside it in ``label``, not drawn over it: a long text
    drawn on the bar crosses the filled part's edge (half white on blue, half black on white)."""

    def __init__(self):
        super().__init__()
        self.setTextVisible(False)
        self.label = ElidedLabel()
        self.label.setObjectName("progress_text")

    def setFormat(self, text: str) -> None:  # noqa: N802 - Qt's name
        super().setFormat(text)
        self.label.setText(text)
        self.label.setToolTip(text)


class FloatBox(QDoubleSpinBox):
    """A number box that takes numbers as people type them (0.0003, 3e-4, 1E-6, .5) and shows six significant
    digits, so a learning rate of 1e-6 is neither rounded to 0 nor cut to "3" when typed as 3e-4.
    Text that is not yet a number in range ("3e-", "-") is let through while typing (Qt reverts it on leaving)."""

    PARTIAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d*)?([eE][+-]?\d*)?")

    def __init__(self, lo: float = -1e6, hi: float = 1e6, step: float = 0.05):
        super().__init__()
        self.setDecimals(12)  # what is kept; textFromValue decides what is shown
        self.setRange(lo, hi)
        self.setSingleStep(step)

    def textFromValue(self, v: float) -> str:
        return f"{v + 0.0:.6g}"  # + 0.0: never "-0"

    def valueFromText(self, text: str) -> float:
        try:
            return float(text.strip())
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):
        s = text.strip()
        if s.startswith("-") and self.minimum() >= 0:  # a box of positive numbers takes no minus ("-0" would pass as 0)
            return QValidator.Invalid, text, pos
        try:
            v = float(s)
        except ValueError:
            return (QValidator.Intermediate if self.PARTIAL.fullmatch(s) else QValidator.Invalid), text, pos
        if not math.isfinite(v) or not self.PARTIAL.fullmatch(s):  # "inf", "nan", "1_0" parse in Python, not here
            return QValidator.Invalid, text, pos
        return (QValidator.Acceptable if self.minimum() <= v <= self.maximum() else QValidator.Intermediate), text, pos


TEMPERATURE_SPAN = (0.01, 2.0)  # a contrastive temperature's slider: 0.05-0.5 in common use; the box takes any value


class LogSlider(QWidget):
    """A number box with a log-scale slider beside it, for temperatures and learning rates: the box is the exact
    control (typed, arrows, wheel; values beyond the slider's ends are kept); the slider a coarse one, with 2,000
    positions so that a drag moves the value smoothly."""

    valueChanged = Signal(float)
    POSITIONS = 2000

    def __init__(self, value: float, lo: float, hi: float):
        super().__init__()
        self.lo, self.hi = lo, hi
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setRange(0, self.POSITIONS)
        self.slider.setToolTip(f"{lo:g} to {hi:g} on a log scale; type an exact value in the box")
        self.spin = FloatBox(0.0, 1e12, lo)  # values outside lo..hi are shown (the slider stops at its end) and named by validation
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.slider, 2)
        lay.addWidget(self.spin, 1)
        self.slider.valueChanged.connect(self._from_slider)
        self.spin.valueChanged.connect(self._from_spin)
        self.setValue(value)

    def _from_slider(self, pos: int):
        v = math.exp(math.log(self.lo) + pos / self.POSITIONS * (math.log(self.hi) - math.log(self.lo)))
        self.spin.blockSignals(True)
        self.spin.setValue(float(f"{v:.3g}"))  # a slider position is a round number, not 0.0123456
        self.spin.blockSignals(False)
        self.valueChanged.emit(self.spin.value())

    def _from_spin(self, v: float):
        self.slider.blockSignals(True)
        if v > 0:
            span = math.log(self.hi) - math.log(self.lo)
            self.slider.setValue(int(round((math.log(max(v, self.lo)) - math.log(self.lo)) / span * self.POSITIONS)))
        self.slider.blockSignals(False)
        self.valueChanged.emit(v)

    def value(self) -> float:
        return self.spin.value()

    def setValue(self, v: float):
        self.spin.setValue(v)
        self._from_spin(v)


class RangeEdit(QWidget):
    """Two (or more) number boxes for a (low, high) pair such as a crop scale or a blur sigma range."""

    valueChanged = Signal()

    def __init__(self, values):
        super().__init__()
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.boxes = []
        for v in values:
            b = FloatBox()
            b.setValue(float(v))
            b.valueChanged.connect(lambda *_: self.valueChanged.emit())
            lay.addWidget(b)
            self.boxes.append(b)

    def value(self) -> list[float]:
        return [b.value() for b in self.boxes]


class ParamForm(QWidget):
    """Typed editors for a registry entry's parameters (combo boxes for choices, spin boxes for numbers,
    a check box for flags, a pair of boxes for ranges), with the parameter's doc as tooltip;
    ``values()`` returns what the user set, typed."""

    changed = Signal()

    def __init__(self):
        super().__init__()
        self.form = QFormLayout(self)
        self.form.setContentsMargins(0, 0, 0, 0)
        self.form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        self.editors: dict[str, QWidget] = {}
        self.kinds: dict[str, type] = {}

    def set_params(self, params, values: dict | None = None):
        while self.form.rowCount():
            self.form.removeRow(0)
        self.editors, self.kinds = {}, {}
        values = values or {}
        for p in params:
            ed = self._editor(p, values.get(p.name, p.default))
            ed.setToolTip(getattr(p, "help", "") or "")
            self.editors[p.name], self.kinds[p.name] = ed, p.kind
            label = QLabel(p.name.replace("_", " "))
            label.setToolTip(ed.toolTip())
            self.form.addRow(label, ed)

    def _editor(self, p, v):
        name, kind, choices = p.name, p.kind, tuple(getattr(p, "choices", ()) or ())
        lo, hi = getattr(p, "minimum", None), getattr(p, "maximum", None)
        if choices:
            ed = QComboBox()
            ed.addItems([str(c) for c in choices])
            ed.setCurrentText(str(v))
            sig = ed.currentTextChanged
        elif name == "temperature":
            ed = LogSlider(float(v), *TEMPERATURE_SPAN)
            sig = ed.valueChanged
        elif kind is bool:
            ed = QCheckBox()
            ed.setChecked(bool(v))
            sig = ed.toggled
        elif kind is int:
            ed = QSpinBox()
            ed.setRange(int(lo) if lo is not None else -1, int(hi) if hi is not None else 10_000_000)
            zero = re.search(r"\b0 (?:=|means) ([^;,.)]+)", getattr(p, "help", "") or "")
            if zero and ed.minimum() <= 0:
                ed.setMinimum(0)
                ed.setSpecialValueText(f"0 ({zero.group(1).strip()})")  # size=0 reads as what it means
            ed.setValue(int(v))
            sig = ed.valueChanged
        elif kind is float:
            small = 0 < abs(float(v)) < 1e-2
            ed = FloatBox(-1e12, 1e12, abs(float(v)) / 2 if small else 0.05)  # out of range: validation names it
            ed.setValue(float(v))
            sig = ed.valueChanged
        elif kind is tuple and isinstance(v, (list, tuple)) and 1 <= len(v) <= 4 and all(isinstance(x, (int, float)) for x in v):
            ed = RangeEdit(v)
            sig = ed.valueChanged
        else:
            ed = QLineEdit(", ".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v))
            sig = ed.textChanged
        sig.connect(lambda *_: self.changed.emit())
        ed.setObjectName(f"param_{name}")
        return ed

    def values(self) -> dict:
        out = {}
        for name, ed in self.editors.items():
            if isinstance(ed, (LogSlider, FloatBox, QSpinBox, RangeEdit)):
                out[name] = ed.value()
            elif isinstance(ed, QCheckBox):
                out[name] = ed.isChecked()
            elif isinstance(ed, QComboBox):
                out[name] = ed.currentText()
            elif self.kinds[name] is tuple:
                out[name] = [_number(t.strip()) for t in ed.text().split(",") if t.strip()]
            else:
                out[name] = ed.text()
        return out


def _number(text: str):
    """'0.1' -> 0.1, '3' -> 3; anything else stays text for the config's validation to name."""
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


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
        v.setSpacing(0)
        v.addWidget(self.pic, 0, Qt.AlignHCenter)
        v.addWidget(self.cap, 0, Qt.AlignHCenter)
        v.addStretch(1)  # the caption stays right under its image however tall the row

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

    def make_tile(self, r: int, c: int) -> QWidget:
        """A new tile for cell (r, c); a subclass makes its own kind (any widget with ``set(img, caption, color, tip)``)."""
        return Tile(self.size)

    def put(self, r: int, c: int, img, caption: str = "", color: str | None = None, tooltip: str = ""):
        tile = self.tiles.get((r, c))
        if tile is None:
            tile = self.tiles[(r, c)] = self.make_tile(r, c)
            self.layout.addWidget(tile, r, c)
        tile.set(img, caption, color, tooltip)
        self.used.add((r, c))

    def end(self):
        for key, tile in self.tiles.items():
            if key not in self.used:
                tile.setVisible(False)

    def shown(self) -> int:
        return len(self.used)


class MessagesDialog(QDialog):
    """Every note, warning and error of the session, whole, one a line, in a resizable window that stays open beside
    the main one and grows as messages come (``add``); Copy puts them all on the clipboard."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Messages")
        self.resize(820, 420)
        lay = QVBoxLayout(self)
        self.header = QLabel()
        self.text = QPlainTextEdit()
        self.text.setObjectName("messages_text")
        self.text.setReadOnly(True)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        copy = buttons.addButton("Copy all", QDialogButtonBox.ActionRole)
        copy.clicked.connect(lambda: QApplication.clipboard().setText(self.text.toPlainText()))
        buttons.rejected.connect(self.close)
        for w in (self.header, self.text, buttons):
            lay.addWidget(w)

    def set_lines(self, lines: list[str]) -> None:
        self.text.setPlainText("\n".join(lines))
        self.count(len(lines))

    def add(self, line: str, n: int) -> None:
        """One more message; ``n``: how many the session has now (as the messages button says)."""
        self.text.appendPlainText(line)
        self.count(n)

    def count(self, n: int) -> None:
        self.header.setText(f"{n} notes, warnings and errors this session" if n else "no messages yet")
