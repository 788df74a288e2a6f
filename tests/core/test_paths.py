"""Where shipped files are found (a checkout and an installed wheel) and where the cache goes on each platform."""
from pathlib import Path

import pytest

from workbench.core import paths

ROOT = Path(__file__).resolve().parents[2]


def test_a_checkout_finds_the_shipped_files_at_its_top():
    assert paths.resources_dir() == ROOT / "resources"
    assert (paths.resources_dir() / "fashion-mnist" / "LICENSE").is_file()
    assert (paths.examples_dir() / "bundled_quick.toml").is_file()
    for size in (16, 32, 48, 256, 512):
        assert paths.icon_path(size).is_file()
    for ext in ("svg", "ico", "icns"):
        assert paths.icon_path(ext=ext).is_file()


def test_an_installed_wheel_finds_them_inside_the_package(tmp_path, monkeypatch):
    """A wheel holds workbench/resources and workbench/examples (and no checkout around it)."""
    package = tmp_path / "site-packages" / "workbench"
    (package / "resources" / "fashion-mnist").mkdir(parents=True)
    (package / "examples").mkdir()
    monkeypatch.setattr(paths, "PACKAGE", package)
    assert paths.resources_dir() == package / "resources"
    assert paths.examples_dir() == package / "examples"
    assert paths.icon_path(32) == package / "resources" / "icons" / "contrastive-workbench-32.png"


@pytest.mark.parametrize("platform, env, expected", [
    ("linux", {"HOME": "/home/ada"}, "/home/ada/.cache/workbench"),  # XDG base directory spec's default
    ("linux", {"HOME": "/home/ada", "XDG_CACHE_HOME": "/scratch/c"}, "/scratch/c/workbench"),
    ("darwin", {"HOME": "/Users/ada"}, "/Users/ada/Library/Caches/workbench"),
    ("win32", {"USERPROFILE": "C:/Users/ada", "LOCALAPPDATA": "C:/Users/ada/AppData/Local"},
     "C:/Users/ada/AppData/Local/workbench/Cache"),
    ("linux", {"HOME": "/home/ada", "WORKBENCH_CACHE": "/big/disk/wb"}, "/big/disk/wb"),  # the variable wins everywhere
    ("win32", {"LOCALAPPDATA": "C:/x", "WORKBENCH_CACHE": "D:/wb"}, "D:/wb"),
])
def test_the_cache_is_in_the_platforms_cache_folder_unless_workbench_cache_says(platform, env, expected):
    assert paths.cache_root(platform, env) == Path(expected)


def test_the_store_and_the_error_log_use_that_cache(monkeypatch, tmp_path):
    from workbench.cli import _crash_log
    from workbench.core import store

    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "c"))
    assert store.cache_root() == tmp_path / "c"
    assert _crash_log(None) == tmp_path / "c" / "error.log"
