"""The session model's changes as Qt signals: the one place the window's state meets Qt.

    signals = SessionSignals(session)
    signals.status.connect(show_status)     # Messages: its status (a Message) changed
"""
from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from workbench.gui.session import Session


class SessionSignals(QObject):
    """Re-emits each change of ``session`` (on the thread that made it: the GUI's) as the signal of its topic."""

    run = Signal(object)  # Run
    data = Signal(object)  # LoadedData
    status = Signal(object)  # Messages (its status changed)
    log = Signal(object)  # Messages (a message was added to the log)
    progress = Signal(object)  # Progress

    def __init__(self, session: Session, parent: QObject | None = None):
        super().__init__(parent)
        session.listen(lambda topic, part: getattr(self, topic).emit(part))
