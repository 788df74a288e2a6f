"""The window as a desktop app: the first launch (bundled data, the guide, runs in the documents folder), the File
and Help menus (configs, examples, run folders, recent runs and folders, the runs folder, About), and the installed
app's self-check."""
import gc
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QFileDialog

from workbench.core.config import tomllib

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh(qtbot, monkeypatch, tmp_path):
    """Windows as launched from a menu: no config, no runs folder given, the settings of this test (empty at first)."""
    monkeypatch.setenv("WORKBENCH_NO_DIALOGS", "1")
    monkeypatch.chdir(tmp_path)
    from workbench.gui.main_window import MainWindow

    made = []

    def make():
        w = MainWindow()
        qtbot.addWidget(w)
        w.show()
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()
    gc.collect()
    gc.enable()


def test_the_first_launch_opens_on_the_bundled_data_with_a_guide_once(fresh, qtbot, tmp_path):
    w = fresh()
    docs_runs = Path(os.environ["HOME"]) / "Documents" / "Contrastive Workbench" / "runs"  # XDG's default documents
    assert w.runs_root == str(docs_runs)
    assert w.setup.dataset.currentText() == "bundled" and w.setup.valid
    assert w.guide is not None and w.guide.isVisible()
    text = w.guide.text.text()
    assert "Start" in text and str(docs_runs) in text
    for i in range(w.tabs.count()):  # every tab it knows is named, in the window's order
        if w.tabs.tabText(i) in ("Curves", "Embedding", "Pairs", "Runs", "Sweep"):
            assert f"<b>{w.tabs.tabText(i)}</b>" in text
    assert w.guide.geometry().intersects(w.tabs.geometry()) and not w.guide.geometry().intersects(w.tabs.tabBar().geometry())
    assert str(docs_runs) in w.runs.label.text()  # where runs go is shown in the window
    qtbot.mouseClick(w.guide.close_btn, qtbot_button())
    assert not w.guide.isVisible()
    w.close()
    again = fresh()  # same settings: not the first launch any more
    assert again.guide is None or not again.guide.isVisible()
    assert not (tmp_path / "runs").exists()  # never the current folder


def qtbot_button():
    from PySide6.QtCore import Qt

    return Qt.LeftButton


def test_getting_started_shows_the_guide_again_and_its_start_trains(window, qtbot):
    window.show_guide()
    assert window.guide.isVisible()
    qtbot.waitUntil(lambda: window.setup.data.splits is not None, timeout=30000)
    with qtbot.waitSignal(window.trainingDone, timeout=120000) as done:
        qtbot.mouseClick(window.guide.start_btn, qtbot_button())
        assert not window.guide.isVisible()
        qtbot.waitUntil(lambda: window.run_dir is not None, timeout=60000)
        window.stop()
    assert Path(done.args[0].run_dir).parent == Path(window.runs_root)


def test_the_file_menu_shares_the_toolbar_actions_and_opens_examples(window, qtbot):
    names = [a.text() for a in window.menus.file.actions() if a.text()]
    assert names == ["Open config…", "Examples", "Save config…", "Open run folder…", "Recent runs", "Recent folders",
                     "Runs folder…", "Quit"]
    assert [a.text() for a in window.menus.help.actions()] == ["Getting started", "About Contrastive Workbench"]
    from PySide6.QtGui import QAction

    for keys in ("Ctrl+O", "Ctrl+S", "Ctrl+Q"):  # one action a key, or Qt calls the key ambiguous and does nothing
        owners = {id(a) for a in window.findChildren(QAction) if a.shortcut() == QKeySequence(keys)}
        assert len(owners) == 1, keys
    examples = {a.text(): a for a in window.menus.examples.actions()}
    assert set(examples) == {p.stem for p in (ROOT / "examples").glob("*.toml")}
    examples["bundled_quick"].trigger()
    expected = tomllib.loads((ROOT / "examples" / "bundled_quick.toml").read_text())
    cfg = window.setup.build_config()
    assert cfg.train.epochs == expected["train"]["epochs"] and cfg.train.batch_size == expected["train"]["batch_size"]


def _labels(menu):
    menu.aboutToShow.emit()
    return [a.text() for a in menu.actions() if a.isEnabled() and a.text() and a.text() != "Clear this list"]


def test_recent_runs_newest_first_gone_ones_dropped(window, tmp_path, monkeypatch):
    from workbench.core.events import DoneEvent

    runs = [tmp_path / f"2026-12-0{i}_run" for i in range(1, 4)]
    for r in runs:
        r.mkdir()
    window.runOpened.emit(str(runs[0]))  # opened from the Runs tab
    window.trainingDone.emit(DoneEvent("finished", str(runs[1]), {}))  # trained here
    window.runOpened.emit(str(runs[2]))
    window.runOpened.emit(str(runs[0]))  # again: moves to the top, once
    assert _labels(window.menus.recent_runs) == [runs[0].name, runs[2].name, runs[1].name]
    runs[2].rmdir()
    assert _labels(window.menus.recent_runs) == [runs[0].name, runs[1].name]
    opened = []
    monkeypatch.setattr(window, "open_run", opened.append)
    window.menus.recent_runs.aboutToShow.emit()
    window.menus.recent_runs.actions()[1].trigger()
    assert opened == [str(runs[1].resolve())]
    for i in range(15):
        (tmp_path / f"r{i}").mkdir()
        window.runOpened.emit(str(tmp_path / f"r{i}"))
    assert len(_labels(window.menus.recent_runs)) == 10
    [clear] = [a for a in window.menus.recent_runs.actions() if a.text() == "Clear this list"]
    clear.trigger()
    assert _labels(window.menus.recent_runs) == []


def test_a_recent_dataset_folder_loads_again(window, qtbot, tmp_path, monkeypatch):
    from PIL import Image

    for c in ("ants", "bees"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(12):
            Image.new("RGB", (32, 32), (20 * i, 90 if c == "ants" else 200, 40)).save(tmp_path / "imgs" / c / f"{i}.png")
    s = window.setup
    qtbot.waitUntil(lambda: s.data.splits is not None, timeout=30000)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(tmp_path / "imgs"))
    with qtbot.waitSignal(s.dataLoaded, timeout=30000):
        qtbot.mouseClick(s.findChild(type(s.findChild(object, "browse")), "browse"), qtbot_button())
    assert _labels(window.menus.recent_folders) == [f"{tmp_path / 'imgs'}  (image_folder)"]
    with qtbot.waitSignal(s.dataLoaded, timeout=30000):
        s.dataset.setCurrentText("bundled")
    with qtbot.waitSignal(s.dataLoaded, timeout=30000) as got:
        window.menus.recent_folders.actions()[0].trigger()
    assert s.dataset.currentText() == "image_folder" and s.root.text() == str(tmp_path / "imgs")
    assert got.args[0][0].classes == ["ants", "bees"]


def test_open_run_folder_and_the_runs_folder_are_chosen_in_dialogs(window, qtbot, tmp_path, monkeypatch):
    from workbench.gui.main_window import MainWindow

    chosen = tmp_path / "elsewhere"
    chosen.mkdir()
    asked = []
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda parent, title, start: asked.append(start) or str(chosen))
    opened = []
    monkeypatch.setattr(window, "open_run", opened.append)
    window.menus.open_run_folder()
    assert opened == [str(chosen)] and asked == [window.runs_root]  # the dialog starts in the runs folder
    window.menus.runs_folder_action.trigger()
    assert window.runs_root == str(chosen) and window.runs.root == chosen
    qtbot.waitUntil(lambda: str(chosen) in window.runs.label.text())
    window.settings.sync()
    later = MainWindow()  # the next launch keeps it
    qtbot.addWidget(later)
    assert later.runs_root == str(chosen)
    later.close()


def test_about_says_the_version_the_data_licence_and_where_things_are_kept(window):
    box = window.menus.about()
    text = box.text.text()
    assert f"Contrastive Workbench {version('contrastive-workbench')}" in text
    assert str(Path(window.runs_root).resolve()) in text
    assert os.environ["WORKBENCH_CACHE"] in text and os.environ["WORKBENCH_SETTINGS"] in text
    licence = (ROOT / "resources" / "fashion-mnist" / "LICENSE").read_text(encoding="utf-8")
    assert box.licence.toPlainText() == licence and "MIT License" in licence
    box.close()


def test_the_window_check_says_what_an_installation_found(tmp_path):
    """``workbench gui --check``: the window opens on the bundled data, prints what it found and ends, writing nothing."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", WORKBENCH_SETTINGS=str(tmp_path / "s.ini"), PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-m", "workbench", "gui", "--check"], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    line = res.stdout.strip()
    assert "desktop file: contrastive-workbench;" in line and "icon sizes: [16, 24, 32, 48, 64, 128, 256, 512]" in line
    assert "data: 9,000 training / 1,000 held-out images, 1x28x28, 10 classes" in line
    assert "first-run guide: shown" in line and f"runs: {Path(env['HOME']) / 'Documents'}" in line
    assert not (tmp_path / "s.ini").exists() and list(tmp_path.iterdir()) == []  # settings untouched, nothing in the cwd
