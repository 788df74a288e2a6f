"""A menu entry for the installed app, for the current user only: ``workbench install-shortcut`` / ``uninstall-shortcut``.

- Linux (freedesktop): ``$XDG_DATA_HOME/applications/contrastive-workbench.desktop`` (``~/.local/share/...``) and the
  icon in the user's hicolor theme (PNG sizes and the SVG); the file name is the one the window gives
  ``QGuiApplication.setDesktopFileName``, so the taskbar matches the running window to the entry.
  Spec: https://specifications.freedesktop.org/desktop-entry-spec/latest/ (Exec quoting, keys).
- Windows: ``%APPDATA%\\Microsoft\\Windows\\Start Menu\\Programs\\Contrastive Workbench.lnk``, made by PowerShell's
  ``WScript.Shell`` (no extra package), with the .ico.
- macOS: ``~/Applications/Contrastive Workbench.app``, a bundle whose executable starts the entry point, with the .icns.

Every entry starts ``workbench-gui``, the installed entry point beside the interpreter running this (a pipx, uv tool
or venv install), never a path inside a source checkout. Nothing needs administrator rights; uninstalling removes
exactly what installing wrote, and the folders it made that are left empty.
"""
from __future__ import annotations

import contextlib
import os
import plistlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

from workbench import __version__
from workbench.core.paths import APP_ID, PACKAGE, icon_path
from workbench.core.registry import ConfigError

APP_NAME = "Contrastive Workbench"
COMMENT = "Train contrastive self-supervised models and see what they learn"
LINUX_ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def _kind(platform: str) -> str:
    return "windows" if platform.startswith("win") else "macos" if platform == "darwin" else "linux"


def from_source_checkout() -> Path | None:
    """The checkout this workbench runs from (its ``resources/`` beside the package, not inside it), or None."""
    root = PACKAGE.parent
    if not (PACKAGE / "resources").is_dir() and (root / "pyproject.toml").is_file():
        return root
    return None


def launcher(platform: str | None = None, bindir: Path | None = None) -> Path:
    """The installed entry point that opens the window: ``workbench-gui`` (``.exe`` on Windows) beside the interpreter."""
    platform = platform or sys.platform
    checkout = from_source_checkout()
    if checkout is not None and bindir is None:
        raise ConfigError(f"this workbench runs from the source checkout {checkout}; a menu entry would point into it. "
                          "Install the app first (pipx install .) and run the installed 'workbench install-shortcut'")
    bindir = Path(bindir or Path(sys.executable).parent)
    name = "workbench-gui.exe" if _kind(platform) == "windows" else "workbench-gui"
    path = bindir / name
    if not path.is_file():
        raise ConfigError(f"no '{name}' beside {sys.executable} (looked for {path}); install the app with pipx or "
                          "'uv tool install' and run the installed 'workbench install-shortcut'")
    return path


def _home(env) -> Path:
    return Path(env.get("HOME") or env.get("USERPROFILE") or Path.home())


def _data_home(env) -> Path:
    return Path(env.get("XDG_DATA_HOME") or _home(env) / ".local" / "share")


def desktop_quote(path: str) -> str:
    """``path`` as one argument of a desktop entry's Exec key: quoted when it holds a reserved character, with
    ``"``, `` ` ``, ``$`` and ``\\`` escaped inside the quotes, and ``%`` doubled (the spec's field codes)."""
    path = path.replace("%", "%%")
    if not re.search(r"[\s\"'\\><~|&;$*?#()`]", path):
        return path
    return '"' + re.sub(r'(["`$\\])', r"\\\1", path) + '"'


MADE_KEY = "X-Contrastive-Workbench-Made"  # the folders installing made, so uninstalling removes those and no others


def desktop_entry(exe: Path, made: list[Path] = ()) -> str:
    """The .desktop file's text for the entry point ``exe``; ``made``: the folders the install created."""
    escaped = str(exe).replace("\\", "\\\\")  # the Exec key is a string value: its backslashes escaped once more
    return "\n".join([
        "[Desktop Entry]",
        "Type=Application",
        "Version=1.4",  # the newest version desktop-file-validate of Debian 12 knows
        f"Name={APP_NAME}",
        "GenericName=Self-supervised learning workbench",
        f"Comment={COMMENT}",
        f"Exec={desktop_quote(escaped)}",
        f"TryExec={exe}",
        f"Icon={APP_ID}",
        "Terminal=false",
        "StartupNotify=true",
        f"StartupWMClass={APP_NAME}",
        "Categories=Science;ArtificialIntelligence;",
        "Keywords=machine learning;self-supervised;contrastive;SimCLR;embedding;",
        f"X-Contrastive-Workbench-Version={__version__}",
        *([f"{MADE_KEY}={';'.join(str(m).replace(';', '%3B') for m in made)};"] if made else []),
        "",
    ])


def _linux_files(env) -> dict[Path, Path | str]:
    """Each file the Linux entry writes, with its source (a shipped icon) or text (the desktop entry)."""
    data = _data_home(env)
    icons = data / "icons" / "hicolor"
    files: dict[Path, Path | str] = {icons / f"{s}x{s}" / "apps" / f"{APP_ID}.png": icon_path(s) for s in LINUX_ICON_SIZES}
    files[icons / "scalable" / "apps" / f"{APP_ID}.svg"] = icon_path(ext="svg")
    return files


def _macos_bundle(env) -> Path:
    return _home(env) / "Applications" / f"{APP_NAME}.app"


def _windows_link(env) -> Path:
    appdata = Path(env.get("APPDATA") or _home(env) / "AppData" / "Roaming")
    return appdata / "Microsoft" / "Windows" / "Start Menu" / "Programs" / f"{APP_NAME}.lnk"


def install(platform: str | None = None, env=None, exe: Path | None = None, run=subprocess.run) -> list[Path]:
    """Make the current user's menu entry; returns the files written. ``exe``: the entry point (default
    :func:`launcher`); ``run`` runs PowerShell on Windows (replaceable in tests)."""
    platform, env = platform or sys.platform, os.environ if env is None else env
    exe = Path(exe) if exe is not None else launcher(platform)
    kind = _kind(platform)
    if kind == "windows":
        return [_install_windows(env, exe, run)]
    if kind == "macos":
        return _install_macos(env, exe)
    files = _linux_files(env)
    entry = _data_home(env) / "applications" / f"{APP_ID}.desktop"
    made = _made(entry)  # a second install keeps what the first one made
    for target, source in [*files.items(), (entry, None)]:
        made += _mkdirs(target.parent)
        if source is not None:
            shutil.copyfile(source, target)
    entry.write_text(desktop_entry(exe, sorted(set(made))), encoding="utf-8")
    return [entry, *files]


def _mkdirs(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; returns the ones it created."""
    missing = [p for p in [folder, *folder.parents] if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _made(entry: Path) -> list[Path]:
    """The folders an installed entry says its install made (none when there is no entry)."""
    if not entry.is_file():
        return []
    for line in entry.read_text(encoding="utf-8").splitlines():
        if line.startswith(MADE_KEY + "="):
            return [Path(p.replace("%3B", ";")) for p in line.split("=", 1)[1].split(";") if p]
    return []


def uninstall(platform: str | None = None, env=None, run=subprocess.run) -> list[Path]:
    """Remove what :func:`install` wrote (and the folders it made that are left empty); returns what was removed."""
    platform, env = platform or sys.platform, os.environ if env is None else env
    kind = _kind(platform)
    if kind == "windows":
        targets, stop = [_windows_link(env)], _windows_link(env).parent
    elif kind == "macos":
        bundle = _macos_bundle(env)
        if bundle.is_dir():
            shutil.rmtree(bundle)
            _prune(bundle.parent, _home(env))
            return [bundle]
        return []
    else:
        entry = _data_home(env) / "applications" / f"{APP_ID}.desktop"
        made = _made(entry)
        removed = [p for p in [entry, *_linux_files(env)] if p.is_file()]
        for path in removed:
            path.unlink()
        for folder in sorted(made, key=lambda p: len(p.parts), reverse=True):  # deepest first; only when empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        return removed
    removed = []
    for path in targets:
        if path.is_file():
            path.unlink()
            removed.append(path)
            _prune(path.parent, stop)
    return removed


def _prune(folder: Path, stop: Path) -> None:
    """Remove ``folder`` and its parents while they are empty, up to (not including) ``stop``."""
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()  # only when empty
        except OSError:
            return
        folder = folder.parent


def _install_macos(env, exe: Path) -> list[Path]:
    bundle = _macos_bundle(env)
    contents = bundle / "Contents"
    (contents / "MacOS").mkdir(parents=True, exist_ok=True)
    (contents / "Resources").mkdir(parents=True, exist_ok=True)
    script = contents / "MacOS" / APP_ID
    script.write_text(f'#!/bin/sh\nexec "{exe}" "$@"\n', encoding="utf-8")
    script.chmod(0o755)
    shutil.copyfile(icon_path(ext="icns"), contents / "Resources" / f"{APP_ID}.icns")
    info = {"CFBundleName": APP_NAME, "CFBundleDisplayName": APP_NAME, "CFBundleIdentifier": f"org.{APP_ID.replace('-', '')}.app",
            "CFBundleExecutable": APP_ID, "CFBundleIconFile": f"{APP_ID}.icns", "CFBundlePackageType": "APPL",
            "CFBundleShortVersionString": __version__, "CFBundleVersion": __version__, "NSHighResolutionCapable": True,
            "LSMinimumSystemVersion": "11.0"}
    with open(contents / "Info.plist", "wb") as f:
        plistlib.dump(info, f)
    return [bundle]


def powershell_script(link: Path, exe: Path, icon: Path, workdir: Path) -> str:
    """The PowerShell that writes the Start Menu shortcut ``link`` to ``exe`` (single quotes doubled inside strings)."""
    def q(p) -> str:
        return "'" + str(p).replace("'", "''") + "'"

    return (f"$s = (New-Object -ComObject WScript.Shell).CreateShortcut({q(link)}); $s.TargetPath = {q(exe)}; "
            f"$s.WorkingDirectory = {q(workdir)}; $s.IconLocation = {q(icon)} + ',0'; $s.Description = {q(COMMENT)}; $s.Save()")


def _install_windows(env, exe: Path, run) -> Path:
    link = _windows_link(env)
    link.parent.mkdir(parents=True, exist_ok=True)
    script = powershell_script(link, exe, icon_path(ext="ico"), _home(env))
    res = run(["powershell", "-NoProfile", "-NonInteractive", "-Command", script], capture_output=True, text=True)
    if res.returncode != 0:
        raise OSError(f"PowerShell could not write the shortcut {link}: {(res.stderr or res.stdout).strip()}")
    return link
