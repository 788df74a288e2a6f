"""The short guide the window shows on its very first launch (no settings yet): what each tab shows and "press Start".

A card over the top of the tabs, not a modal dialog: the window stays usable behind it. "Start training" starts
the bundled run, "Got it" dismisses it for good (kept in the settings); Help > Getting started shows it again.
"""
from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QFrame, QGraphicsDropShadowEffect, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

DONE_KEY = "first_run_guide_done"
# what each tab shows, in a few words; a tab missing here is simply not described
TAB_WORDS = {
    "Data": "shows the images themselves",
    "Curves": "plots the loss and the kNN accuracy",
    "Embedding": "places the held-out images in 2-D",
    "Pairs": "shows what the loss compares",
    "Runs": "lists every run so far",
    "Sweep": "tries many settings at once",
}
WIDTH = 560


def guide_text(tabs: list[str], runs_root: str) -> str:
    """The guide's sentences (rich text) for the window's tabs in their order and its runs folder."""
    described = [f"<b>{t}</b> {TAB_WORDS[t]}" for t in tabs if t in TAB_WORDS]
    tabs_sentence = ", ".join(described[:-1]) + (f" and {described[-1]}" if len(described) > 1 else "".join(described))
    return (f"<p>The set-up on the left is ready to train a small encoder on the bundled Fashion-MNIST sample: "
            f"press <b>Start</b> (Ctrl+Return) and watch it learn.</p>"
            f"<p>As it trains, {tabs_sentence}.</p>"
            f"<p>Runs are saved in <i>{runs_root}</i> (File &gt; Runs folder… changes it).</p>")


class FirstRunGuide(QFrame):
    """The guide card, a child of the main window kept over the top of its central widget."""

    startRequested = Signal()
    dismissed = Signal()

    def __init__(self, window, tabs: list[str], runs_root: str):
        super().__init__(window)
        self.setObjectName("first_run_guide")
        self.setFrameShape(QFrame.StyledPanel)
        self.setStyleSheet("#first_run_guide { background: palette(base); border: 1px solid #4a6fa5; border-radius: 8px; }")
        shadow = QGraphicsDropShadowEffect(self, blurRadius=24, offset=0)
        shadow.setColor(QColor(0, 0, 0, 90))
        self.setGraphicsEffect(shadow)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(18, 14, 18, 14)
        title = QLabel("<b style='font-size: 13pt'>Welcome to Contrastive Workbench</b>")
        self.text = QLabel(guide_text(tabs, runs_root))
        self.text.setObjectName("guide_text")
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.RichText)
        row = QHBoxLayout()
        row.addStretch(1)
        self.start_btn = QPushButton("Start training")
        self.start_btn.setObjectName("guide_start")
        self.close_btn = QPushButton("Got it")
        self.close_btn.setObjectName("guide_close")
        self.start_btn.clicked.connect(self._start)
        self.close_btn.clicked.connect(self.dismiss)
        row.addWidget(self.start_btn)
        row.addWidget(self.close_btn)
        for item in (title, self.text):
            lay.addWidget(item)
        lay.addLayout(row)
        self._follow = _Follower(self)
        window.installEventFilter(self._follow)
        self.place()

    def set_runs_root(self, tabs: list[str], runs_root: str) -> None:
        self.text.setText(guide_text(tabs, runs_root))
        self.place()

    def place(self) -> None:
        """Centred over the top of the window's central widget (the tabs), clear of the tab bar."""
        win = self.parentWidget()
        area = win.centralWidget().geometry() if win.centralWidget() is not None else win.rect()
        width = min(WIDTH, max(320, area.width() - 40))
        self.setFixedWidth(width)
        self.adjustSize()
        self.move(area.x() + (area.width() - width) // 2, area.y() + 48)
        self.raise_()

    def show_guide(self) -> None:
        self.place()
        self.show()
        self.close_btn.setFocus()

    def _start(self) -> None:
        self.dismiss()
        self.startRequested.emit()

    def dismiss(self) -> None:
        self.hide()
        self.dismissed.emit()

    def keyPressEvent(self, e):  # noqa: N802 - Qt's name
        if e.key() == Qt.Key_Escape:
            self.dismiss()
        else:
            super().keyPressEvent(e)


class _Follower(QObject):
    """Keeps the card in place when the window is resized or its layout changes."""

    def __init__(self, guide: FirstRunGuide):
        super().__init__(guide)
        self.guide = guide

    def eventFilter(self, obj, event):  # noqa: N802 - Qt's name
        if event.type() in (QEvent.Resize, QEvent.LayoutRequest, QEvent.Show) and self.guide.isVisible():
            self.guide.place()
        return False
