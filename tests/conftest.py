import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("WORKBENCH_CACHE", str(Path(__file__).resolve().parent / ".cache"))

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
FMNIST = SHARED / "fashion-mnist"
CIFAR = SHARED / "cifar10-jpg"


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Nothing a test runs writes into the real home: HOME and the XDG folders (menu entries, icons, Qt's standard
    locations such as the window's default runs folder) point into the session's temp folder, and each test gets
    settings of its own (a fresh file: the window's first launch)."""
    home = tmp_path_factory.getbasetemp() / "home"
    monkeypatch.setenv("HOME", str(home))
    for var, sub in (("XDG_CONFIG_HOME", ".config"), ("XDG_DATA_HOME", ".local/share"), ("XDG_CACHE_HOME", ".cache")):
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("WORKBENCH_SETTINGS", str(tmp_path_factory.mktemp("settings") / "settings.ini"))


def need(path: Path):
    return pytest.mark.skipif(not path.exists(), reason=f"{path} not present")


@pytest.fixture
def quick_cfg():
    from workbench.core.config import Config

    def make(*overrides):
        base = ["data.subset=1024", "train.batch_size=64", "train.epochs=1", "eval.bank_size=1024",
                "eval.test_size=500", "eval.embed_points=200", "train.log_every=4"]
        return Config().with_overrides(base + list(overrides))

    return make
