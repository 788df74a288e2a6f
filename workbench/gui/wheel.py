"""The mouse wheel scrolls panels; it changes a setting only in a control the user has clicked into.

Combo boxes, spin boxes and sliders get ``Qt.StrongFocus`` (the wheel never gives them focus) and an
application-wide event filter hands a wheel event over such a control to the enclosing scroll area
unless the user pressed the mouse in it since it gained focus and the pointer has not left it since: focus
reached with Tab (typing a temperature, Tab, then scrolling over the next combo) and a control clicked a while
ago that the panel now scrolls under the pointer leave the setting as it is. One filter on the
application covers every window, tab and dynamically built form.
"""
from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import (QAbstractScrollArea, QAbstractSlider, QAbstractSpinBox, QApplication, QComboBox,
                               QScrollBar, QWidget)

GUARDED = (QComboBox, QAbstractSpinBox, QAbstractSlider)
CLICKED = "_wheel_clicked"  # dynamic property: pressed with the mouse since it last gained focus
KEEP = (Qt.PopupFocusReason, Qt.ActiveWindowFocusReason)  # back from its own popup or another window: same focus


def _guarded(obj) -> bool:
    return isinstance(obj, GUARDED) and not isinstance(obj, QScrollBar)


def _owner(obj):
    """The guarded control ``obj`` belongs to (a spin box's line edit, a combo's line edit), or None."""
    while isinstance(obj, QWidget):
        if _guarded(obj):
            return obj
        obj = obj.parentWidget()
    return None


class WheelGuard(QObject):
    def eventFilter(self, obj, event):  # noqa: N802 - Qt's name
        t = event.type()
        if t == QEvent.MouseButtonPress:
            owner = _owner(obj)
            if owner is not None:
                owner.setProperty(CLICKED, True)
        elif t == QEvent.Leave and _guarded(obj):  # the pointer left it: a later wheel over it is scrolling past
            obj.setProperty(CLICKED, False)
        elif t == QEvent.FocusIn and _guarded(obj) and event.reason() not in KEEP:
            obj.setProperty(CLICKED, event.reason() == Qt.MouseFocusReason)  # Tab, a shortcut, the program: not a click
        elif t == QEvent.Wheel and _guarded(obj) and not (obj.hasFocus() and obj.property(CLICKED)):
            area = obj.parentWidget()
            while area is not None and not isinstance(area, QAbstractScrollArea):
                area = area.parentWidget()
            if area is not None:
                QApplication.sendEvent(area.viewport(), event)
            return True  # swallowed: the setting stays as it is
        elif t == QEvent.Polish and _guarded(obj):
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
