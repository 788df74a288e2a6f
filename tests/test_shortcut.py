"""The current user's menu entry: freedesktop (validated by desktop-file-validate), a macOS app bundle, a Windows
Start Menu shortcut; uninstalling leaves the folders as they were."""
import os
import plistlib
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workbench import shortcut
from workbench.core.registry import ConfigError


def tree(root: Path) -> dict[str, bytes | None]:
    """Every file (with its bytes) and folder under ``root``."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def fake_entry_point(folder: Path, name: str = "workbench-gui") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / name
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    return exe


def desktop_keys(text: str) -> dict[str, str]:
    lines = text.splitlines()
    assert lines[0] == "[Desktop Entry]"
    return dict(line.split("=", 1) for line in lines[1:] if line)


@pytest.mark.parametrize("folder", ["bin", "My Apps/bin", "100% done/bin"])
def test_the_linux_entry_starts_the_entry_point_and_installs_its_icons(tmp_path, folder):
    home = tmp_path / "home"
    env = {"HOME": str(home), "XDG_DATA_HOME": str(home / "share")}
    exe = fake_entry_point(tmp_path / folder)
    files = shortcut.install("linux", env, exe=exe)
    entry = home / "share" / "applications" / "contrastive-workbench.desktop"
    assert files[0] == entry and all(f.is_file() for f in files)
    keys = desktop_keys(entry.read_text())
    # the Exec value as a shell would split it (for these paths the spec's quoting is the shell's), %% back to %
    assert shlex.split(keys["Exec"].replace("%%", "%")) == [str(exe)]
    assert keys["TryExec"] == str(exe) and keys["Type"] == "Application" and keys["Terminal"] == "false"
    assert keys["Icon"] == "contrastive-workbench"  # a theme name: the hicolor files below
    for size in (16, 48, 256):
        png = home / "share" / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "contrastive-workbench.png"
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (home / "share" / "icons" / "hicolor" / "scalable" / "apps" / "contrastive-workbench.svg").is_file()
    if shutil.which("desktop-file-validate") is None:
        pytest.skip("desktop-file-validate (Debian: desktop-file-utils) is not installed")
    res = subprocess.run(["desktop-file-validate", str(entry)], capture_output=True, text=True)
    assert res.returncode == 0 and not res.stdout.strip(), res.stdout + res.stderr


def test_the_entry_matches_the_desktop_file_name_the_window_gives_qt():
    from workbench.core.paths import APP_ID

    assert shortcut._linux_files({"HOME": "/h"}) and APP_ID == "contrastive-workbench"
    # the taskbar pairs a window with <desktopFileName>.desktop; gui/app.py's brand() sets APP_ID
    from PySide6.QtWidgets import QApplication

    from workbench.gui.app import brand

    app = QApplication.instance() or QApplication([])
    brand(app)
    assert app.desktopFileName() + ".desktop" == "contrastive-workbench.desktop"
    assert not app.windowIcon().isNull() and 256 in {s.width() for s in app.windowIcon().availableSizes()}


def test_uninstall_leaves_the_data_folder_as_it_was(tmp_path):
    home = tmp_path / "home"
    env = {"HOME": str(home), "XDG_DATA_HOME": str(home / "share")}
    other = home / "share" / "applications" / "editor.desktop"  # someone else's entry stays
    other.parent.mkdir(parents=True)
    other.write_text("[Desktop Entry]\n")
    (home / "share" / "icons" / "hicolor" / "48x48" / "apps").mkdir(parents=True)
    before = tree(home)
    exe = fake_entry_point(tmp_path / "bin")
    shortcut.install("linux", env, exe=exe)
    shortcut.install("linux", env, exe=exe)  # again: replaces, adds nothing
    assert tree(home) != before
    removed = shortcut.uninstall("linux", env)
    assert len(removed) == 1 + len(shortcut.LINUX_ICON_SIZES) + 1
    assert tree(home) == before
    assert shortcut.uninstall("linux", env) == []  # nothing left to remove


def test_the_macos_bundle_starts_the_entry_point(tmp_path):
    env = {"HOME": str(tmp_path / "Users" / "ada")}
    (tmp_path / "Users" / "ada").mkdir(parents=True)
    exe = fake_entry_point(tmp_path / "venv" / "bin")
    [bundle] = shortcut.install("darwin", env, exe=exe)
    assert bundle == tmp_path / "Users" / "ada" / "Applications" / "Contrastive Workbench.app"
    info = plistlib.loads((bundle / "Contents" / "Info.plist").read_bytes())
    launcher = bundle / "Contents" / "MacOS" / info["CFBundleExecutable"]
    assert os.access(launcher, os.X_OK)
    assert shlex.split(launcher.read_text().splitlines()[1]) == ["exec", str(exe), "$@"]
    icns = bundle / "Contents" / "Resources" / info["CFBundleIconFile"]
    assert icns.read_bytes()[:4] == b"icns"
    assert shortcut.uninstall("darwin", env) == [bundle]
    assert list((tmp_path / "Users" / "ada").iterdir()) == []  # ~/Applications was made for it: gone too


def test_the_windows_shortcut_is_written_by_powershell_with_the_ico(tmp_path):
    calls = []

    def run(cmd, **kw):
        calls.append(cmd)
        Path(tmp_path / "AppData" / "Microsoft" / "Windows" / "Start Menu" / "Programs" / "Contrastive Workbench.lnk").write_bytes(b"L")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    env = {"USERPROFILE": str(tmp_path / "O'Brien"), "APPDATA": str(tmp_path / "AppData")}
    exe = tmp_path / "O'Brien" / "pipx" / "Scripts" / "workbench-gui.exe"
    [link] = shortcut.install("win32", env, exe=exe, run=run)
    assert link.name == "Contrastive Workbench.lnk" and link.parent.name == "Programs"
    cmd = calls[0]
    assert cmd[:2] == ["powershell", "-NoProfile"]
    script = cmd[-1]
    assert f"$s.TargetPath = '{str(exe).replace(chr(39), chr(39) * 2)}'" in script  # ' doubled inside a '...' string
    assert "contrastive-workbench.ico" in script and script.endswith("$s.Save()")
    assert shortcut.uninstall("win32", env) == [link] and not link.exists()


def test_a_powershell_failure_is_said(tmp_path):
    def run(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, "", "Access denied")

    with pytest.raises(OSError, match="Access denied"):
        shortcut.install("win32", {"APPDATA": str(tmp_path)}, exe=tmp_path / "w.exe", run=run)


def test_the_entry_point_is_the_installed_one_beside_the_interpreter(tmp_path):
    exe = fake_entry_point(tmp_path / "bin")
    assert shortcut.launcher("linux", bindir=tmp_path / "bin") == exe
    with pytest.raises(ConfigError, match="no 'workbench-gui.exe'"):
        shortcut.launcher("win32", bindir=tmp_path / "bin")


def test_a_source_checkout_gets_no_menu_entry_pointing_into_it(tmp_path, capsys):
    from workbench.cli import main

    assert shortcut.from_source_checkout() is not None  # these tests run from the checkout
    assert main(["install-shortcut"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: this workbench runs from the source checkout") and "pipx install" in err
    assert not (Path(os.environ["XDG_DATA_HOME"]) / "applications" / "contrastive-workbench.desktop").exists()


def test_version_is_one_line_without_loading_torch():
    res = subprocess.run([sys.executable, "-c", "import sys; from workbench.cli import main; code = main(['--version']); "
                          "print('torch' in sys.modules); sys.exit(code)"], capture_output=True, text=True, timeout=60)
    from importlib.metadata import version

    assert res.returncode == 0, res.stderr
    first, loaded = res.stdout.splitlines()
    assert first == f"workbench {version('contrastive-workbench')}" and loaded == "False"
