"""Where the workbench finds what it ships and where it keeps what it makes, the same from a source checkout and
from an installed wheel.

- **Shipped files** (the bundled dataset and its licence, icons, example configs): ``resources/`` and ``examples/``
  at the top of a source checkout; the wheel carries them inside the package as ``workbench/resources/`` and
  ``workbench/examples/`` (pyproject maps them there), and :func:`resources_dir` / :func:`examples_dir` look in
  the package first.
- **Cache** (decoded images, the error log of commands that failed outside a run): ``$WORKBENCH_CACHE``, else the
  platform's cache folder: ``$XDG_CACHE_HOME/workbench`` (``~/.cache/workbench``) on Linux,
  ``~/Library/Caches/workbench`` on macOS, ``%LOCALAPPDATA%\\workbench\\Cache`` on Windows.
- **Runs**: the command line and the Python API write under ``runs/`` in the current folder unless given another
  (``--out``, ``runs_root=``); the window keeps its runs in the user's documents (``workbench/gui/paths.py``).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]  # .../workbench
APP_ID = "contrastive-workbench"  # the desktop file's name and the icon's, matched by the taskbar


def _shipped(name: str) -> Path:
    """``workbench/<name>`` in an installed wheel, ``<checkout>/<name>`` in a source checkout (or an editable install)."""
    inside = PACKAGE / name
    return inside if inside.is_dir() else PACKAGE.parent / name


def resources_dir() -> Path:
    """The folder holding ``fashion-mnist/`` (the bundled sample and its LICENSE) and ``icons/``."""
    return _shipped("resources")


def examples_dir() -> Path:
    """The example configs (``*.toml``)."""
    return _shipped("examples")


def icon_path(size: int | None = None, ext: str = "png") -> Path:
    """The application icon: the SVG (``size=None, ext="svg"``), a square PNG of ``size`` px, or the .ico / .icns."""
    icons = resources_dir() / "icons"
    if ext in ("svg", "ico", "icns"):
        return icons / f"{APP_ID}.{ext}"
    return icons / f"{APP_ID}-{size or 256}.png"


def cache_root(platform: str | None = None, env: dict | None = None) -> Path:
    """The cache folder: ``$WORKBENCH_CACHE`` or the platform's user cache location (see the module's docstring)."""
    env = os.environ if env is None else env
    platform = platform or sys.platform
    if env.get("WORKBENCH_CACHE"):
        return Path(env["WORKBENCH_CACHE"]).expanduser()
    home = Path(env.get("HOME") or env.get("USERPROFILE") or Path.home())
    if platform.startswith("win"):
        return Path(env.get("LOCALAPPDATA") or home / "AppData" / "Local") / "workbench" / "Cache"
    if platform == "darwin":
        return home / "Library" / "Caches" / "workbench"
    return Path(env.get("XDG_CACHE_HOME") or home / ".cache") / "workbench"
