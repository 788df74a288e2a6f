"""QApplication set-up only."""
from __future__ import annotations

import logging
import os
import signal
import sys


def run(config_path: str | None = None, fast_exit: bool = True) -> int:
    from PySide6.QtWidgets import QApplication

    from workbench.core.config import Config
    from workbench.gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    brand(app)
    cfg = Config.load(config_path) if config_path else None
    win = MainWindow(cfg)
    win.show()
    stop_on_signals(win)
    code = app.exec()
    win.wait_for_worker()  # closed during training: the worker is writing its checkpoint
    if fast_exit:
        # Everything is saved (settings, checkpoint, run.log) and background jobs are cancelled. Tearing down
        # torch, Qt and pyqtgraph object by object takes 2-5 s on a busy 2-core machine, during which the
        # process lingers after its window has gone; end it now instead.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def brand(app) -> None:
    """Name and icon: the title bar's and taskbar's icon, and the desktop file name that lets a Linux taskbar match
    the window to the menu entry ``workbench install-shortcut`` writes (``contrastive-workbench.desktop``)."""
    from workbench.core.paths import APP_ID
    from workbench.gui.paths import app_icon

    app.setApplicationName("Contrastive Workbench")
    app.setDesktopFileName(APP_ID)
    app.setWindowIcon(app_icon())


def stop_on_signals(win):
    """SIGTERM (``kill``, a logout, a job scheduler) and Ctrl-C in the launching terminal close ``win`` without
    asking, a running training keeping its checkpoint; returns the timer that lets Python see the signals
    while Qt's event loop waits (handlers run only between Python bytecodes)."""
    from PySide6.QtCore import QTimer

    def handle(signum, frame):
        QTimer.singleShot(0, win.terminate)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handle)
    timer = QTimer(win, interval=200)
    timer.timeout.connect(lambda: None)
    timer.start()
    return timer
