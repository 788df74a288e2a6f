"""QApplication set-up only."""
from __future__ import annotations

import sys


def run(config_path: str | None = None) -> int:
    from PySide6.QtWidgets import QApplication

    from workbench.core.config import Config
    from workbench.gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Contrastive Workbench")
    cfg = Config.load(config_path) if config_path else None
    win = MainWindow(cfg)
    win.show()
    code = app.exec()
    win.wait_for_worker()  # closed during training: the worker is writing its checkpoint
    return code
