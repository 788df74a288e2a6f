"""Where the window keeps things, from Qt's standard locations, and the application icon.

Runs: ``<Documents>/Contrastive Workbench/runs`` (the home folder when there is no documents folder) unless
File > Runs folder… chose another (kept in the settings); never the current folder, which for an app started
from a menu is ``/`` or the home. Settings: the platform's config location (QSettings' native place,
``~/.config/ContrastiveWorkbench/workbench.conf`` on Linux) or ``$WORKBENCH_SETTINGS``. The cache is the core's
(``workbench.core.paths.cache_root``), shared with the command line.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QStandardPaths
from PySide6.QtGui import QIcon

from workbench.core.paths import icon_path

APP_FOLDER = "Contrastive Workbench"


def default_runs_root() -> str:
    """The window's runs folder when none was chosen (not created here: the first run makes it)."""
    docs = (QStandardPaths.writableLocation(QStandardPaths.DocumentsLocation)
            or QStandardPaths.writableLocation(QStandardPaths.HomeLocation))
    return str(Path(docs) / APP_FOLDER / "runs")


def app_icon() -> QIcon:
    """The application icon with every shipped size, so each place (title bar, taskbar, Alt+Tab) gets a sharp one."""
    icon = QIcon()
    for size in (16, 24, 32, 48, 64, 128, 256, 512):
        icon.addFile(str(icon_path(size)))
    return icon
