"""QApplication set-up only."""
from __future__ import annotations

import logging
import os
import signal
import sys


def run(config_path: str | None = None, fast_exit: bool = True, check: bool = False) -> int:
    """Open the window and run the event loop; ``check`` closes it again once its dataset has loaded, after printing
    what it found (``workbench gui --check``: does this installation work?)."""
    from PySide6.QtWidgets import QApplication

    from workbench.core.config import Config
    from workbench.gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    brand(app)
    cfg = Config.load(config_path) if config_path else None
    win = MainWindow(cfg)
    win.show()
    stop_on_signals(win)
    if check:
        check_then_close(win)
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


CHECK_TIMEOUT_MS = 300_000


def check_then_close(win) -> None:
    """Print one line saying what the window found (title, icon sizes, desktop file name, the data loaded, the runs
    folder, whether the first-run guide shows) once the set-up's dataset has loaded, then end; a dataset that
    fails to load, or none within CHECK_TIMEOUT_MS, ends it with exit status 1."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()

    def report(_splits):
        sizes = sorted({s.width() for s in app.windowIcon().availableSizes()})
        guide = "shown" if win.guide is not None and win.guide.isVisible() else "not shown"
        print(f"window: {win.windowTitle()}; icon sizes: {sizes}; desktop file: {app.desktopFileName()}; "
              f"data: {win.setup.data_info.text()}; runs: {win.runs_root}; first-run guide: {guide}", flush=True)
        app.exit(0)  # not a close: the check leaves the settings as they were (a first launch stays first)

    def failed():
        print(f"check failed: the dataset did not load: {win.setup.data_info.text()}", flush=True)
        app.exit(1)

    def poll():  # neither loading nor loaded: the loader said why in the set-up
        if win.setup.loading is None and win.session.data.splits is None:
            failed()

    win.setup.dataLoaded.connect(report)
    QTimer.singleShot(CHECK_TIMEOUT_MS, failed)
    timer = QTimer(win, interval=200)
    timer.timeout.connect(poll)
    timer.start()


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
