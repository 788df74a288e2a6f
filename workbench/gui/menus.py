"""The window's menu bar: File (open and save configs, the examples, open a run folder, recent runs and dataset
folders, the runs folder, Quit) and Help (the first-run guide again, About).

Recent lists live in the settings (newest first, at most ``RECENT_MAX``); an entry whose folder has gone is dropped
when the menu opens. The window's own actions (Open config, Save config, Quit) are shared with its toolbar and
shortcuts, so each key has one action.
"""
from __future__ import annotations

import html
import platform
from importlib import metadata
from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFileDialog, QHBoxLayout, QLabel, QMenu, QPlainTextEdit,
                               QVBoxLayout)

from workbench import __version__
from workbench.core.config import Config
from workbench.core.paths import cache_root, examples_dir, resources_dir
from workbench.core.registry import ConfigError

RECENT_MAX = 10
RECENT_RUNS, RECENT_FOLDERS = "recent_runs", "recent_folders"


def recent(settings, key: str) -> list[str]:
    """The settings' list under ``key`` (QSettings gives a str for one entry and None for none)."""
    value = settings.value(key) or []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def remember(settings, key: str, entry: str) -> list[str]:
    """Put ``entry`` first in the recent list ``key`` (once), keeping at most RECENT_MAX; returns the new list."""
    items = [entry] + [e for e in recent(settings, key) if e != entry]
    settings.setValue(key, items[:RECENT_MAX])
    return items[:RECENT_MAX]


def folder_entry(name: str, root: str) -> str:
    """A recent dataset folder as one string: ``"image_folder:/data/birds"`` (dataset name, its folder)."""
    return f"{name}:{root}"


class Menus:
    """Builds the menu bar of ``win`` (a MainWindow) and keeps its recent lists."""

    def __init__(self, win):
        self.win = win
        bar = win.menuBar()
        self.file = bar.addMenu("&File")
        self.file.setObjectName("file_menu")
        self.file.addAction(win.open_config_action)
        self.examples = self.file.addMenu("Examples")
        self.examples.setObjectName("examples_menu")
        for path in sorted(examples_dir().glob("*.toml")):
            self.examples.addAction(path.stem, lambda p=str(path): self.open_example(p))
        self.file.addAction(win.save_config_action)
        self.file.addSeparator()
        self.file.addAction("Open run folder…", self.open_run_folder)
        self.recent_runs = self.file.addMenu("Recent runs")
        self.recent_runs.setObjectName("recent_runs_menu")
        self.recent_folders = self.file.addMenu("Recent folders")
        self.recent_folders.setObjectName("recent_folders_menu")
        self.recent_runs.aboutToShow.connect(self._fill_runs)
        self.recent_folders.aboutToShow.connect(self._fill_folders)
        self.file.addSeparator()
        self.runs_folder_action = self.file.addAction("Runs folder…", self.choose_runs_root)
        self.file.addSeparator()
        self.file.addAction(win.quit_action)
        self.help = bar.addMenu("&Help")
        self.help.setObjectName("help_menu")
        self.help.addAction("Getting started", win.show_guide)
        self.help.addAction("About Contrastive Workbench", self.about)
        self._fill_runs()
        self._fill_folders()
        win.runOpened.connect(self.add_run)  # opened (from the Runs tab, this menu or a sweep) and shown
        win.trainingDone.connect(lambda ev: self.add_run(str(ev.run_dir)) if getattr(ev, "run_dir", None) else None)
        win.setup.dataLoaded.connect(lambda _splits: self.add_folder())

    # ----- recent lists -----
    def add_run(self, run: str) -> None:
        remember(self.win.settings, RECENT_RUNS, str(Path(run).resolve()))
        self._fill_runs()

    def add_folder(self) -> None:
        """The set-up's dataset folder, once its data loaded (the built-in sample reads none)."""
        name, root = self.win.setup.dataset.currentText(), self.win.setup.root_text()
        if root:
            remember(self.win.settings, RECENT_FOLDERS, folder_entry(name, str(Path(root).resolve())))
            self._fill_folders()

    def _fill(self, menu: QMenu, key: str, label, slot) -> None:
        menu.clear()
        items = recent(self.win.settings, key)
        alive = [e for e in items if Path(e.split(":", 1)[-1] if key == RECENT_FOLDERS else e).is_dir()]
        if alive != items:
            self.win.settings.setValue(key, alive)
        for entry in alive:
            action = menu.addAction(label(entry), lambda e=entry: slot(e))
            action.setToolTip(entry)
        menu.setToolTipsVisible(True)
        if not alive:
            menu.addAction("(none yet)").setEnabled(False)
            return
        menu.addSeparator()
        menu.addAction("Clear this list", lambda: (self.win.settings.setValue(key, []), self._fill(menu, key, label, slot)))

    def _fill_runs(self) -> None:
        self._fill(self.recent_runs, RECENT_RUNS, lambda e: Path(e).name, self.win.open_run)

    def _fill_folders(self) -> None:
        def label(entry: str) -> str:
            name, root = entry.split(":", 1)
            return f"{root}  ({name})"

        self._fill(self.recent_folders, RECENT_FOLDERS, label, self.open_folder)

    # ----- actions -----
    def _current_config(self) -> Config:
        try:
            return self.win.setup.build_config()
        except ConfigError:
            return self.win.setup.cfg  # the form is mid-edit and invalid: start from the config it was given

    def open_folder(self, entry: str) -> None:
        """Train on a recent dataset folder: the set-up gets its dataset and folder, the rest of the form stays."""
        name, root = entry.split(":", 1)
        d = self._current_config().to_dict()
        d["data"].update(name=name, root=root)
        try:
            self.win.setup.set_config(Config.from_dict(d))
        except ConfigError as exc:
            self.win.show_error(str(exc))

    def open_example(self, path: str) -> None:
        try:
            self.win.setup.set_config(Config.load(path))
        except ConfigError as exc:
            self.win.show_error(f"{Path(path).name}: {exc}")
            return
        self.win.set_status(f"loaded the example {Path(path).name}")

    def open_run_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.win, "Open a run folder", self.win.runs_root)
        if folder:
            self.win.open_run(folder)

    def choose_runs_root(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.win, "Folder for new runs", self.win.runs_root)
        if folder:
            self.win.set_runs_root(folder)

    def about(self) -> AboutDialog:
        box = AboutDialog(self.win)
        box.show()
        return box


def _versions() -> str:
    def v(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "?"

    return (f"Python {platform.python_version()}, PyTorch {v('torch')}, torchvision {v('torchvision')}, "
            f"Qt (PySide6) {v('PySide6-Essentials') if v('PySide6-Essentials') != '?' else v('PySide6')}")


def _folder_link(path) -> str:
    return f"<a href='{QUrl.fromLocalFile(str(path)).toString()}'>{html.escape(str(path))}</a>"


class AboutDialog(QDialog):
    """Version, the bundled data's licence, and where runs, the cache and the settings are kept."""

    def __init__(self, win):
        super().__init__(win)
        self.setObjectName("about")
        self.setWindowTitle("About Contrastive Workbench")
        self.setAttribute(Qt.WA_DeleteOnClose)
        lay = QVBoxLayout(self)
        head = QHBoxLayout()
        icon = QLabel()
        icon.setPixmap(win.windowIcon().pixmap(64, 64))
        head.addWidget(icon)
        runs = Path(win.runs_root).expanduser().resolve()
        self.text = QLabel(
            f"<h3>Contrastive Workbench {__version__}</h3>"
            f"<p>Contrastive self-supervised learning you can see. MIT licence.<br>{_versions()}</p>"
            f"<p><b>Runs</b>: {_folder_link(runs)}<br>"
            f"<b>Cache</b> (decoded images; WORKBENCH_CACHE moves it): {_folder_link(cache_root())}<br>"
            f"<b>Settings</b>: {html.escape(win.settings.fileName())}</p>"
            f"<p><b>Bundled data</b>: 10,000 Fashion-MNIST images (Zalando Research), MIT licence:</p>")
        self.text.setObjectName("about_text")
        self.text.setWordWrap(True)
        self.text.setOpenExternalLinks(False)
        self.text.linkActivated.connect(lambda url: QDesktopServices.openUrl(QUrl(url)))
        self.text.setTextInteractionFlags(Qt.TextSelectableByMouse | Qt.LinksAccessibleByMouse)
        head.addWidget(self.text, 1)
        lay.addLayout(head)
        self.licence = QPlainTextEdit((resources_dir() / "fashion-mnist" / "LICENSE").read_text(encoding="utf-8"))
        self.licence.setObjectName("about_licence")
        self.licence.setReadOnly(True)
        lay.addWidget(self.licence, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.close)
        lay.addWidget(buttons)
        self.resize(640, 480)
