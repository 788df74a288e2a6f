"""The mouse wheel scrolls panels; it changes a setting only in a control the user has clicked into.

Combo boxes, spin boxes and sliders get ``Qt.StrongFocus`` (the wheel never gives them focus) and an
application-wide event filter hands a wheel event over an unfocused one to the enclosing scroll
area. One filter on the application covers every window, tab and dynamically built form.
"""
from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import (QAbstractScrollArea, QAbstractSlider, QAbstractSpinBox, QApplication, QComboBox,
                               QScrollBar)

GUARDED = (QComboBox, QAbstractSpinBox, QAbstractSlider)


def _guarded(obj) -> bool:
    return isinstance(obj, GUARDED) and not isinstance(obj, QScrollBar)


class WheelGuard(QObject):
    def eventFilter(self, obj, event):  # noqa: N802 - Qt's name
        t = event.type()
        if t == QEvent.Wheel and _guarded(obj) and not obj.hasFocus():
            area = obj.parentWidget()
            while area is not None and not isinstance(area, QAbstractScrollArea):
                area = area.parentWidget()
            if area is not None:
                QApplication.sendEvent(area.viewport(), event)
            return True  # swallowed: the setting stays as it is
        if t == QEvent.Polish and _guarded(obj):
            obj.setFocusPolicy(Qt.StrongFocus)
        return False


_guard = None


def install(app: QApplication | None = None) -> WheelGuard:
    """Install the guard once per application (idempotent)."""
    global _guard
    app = app or QApplication.instance()
    if _guard is None:
        _guard = WheelGuard(app)
        app.installEventFilter(_guard)
    return _guard
