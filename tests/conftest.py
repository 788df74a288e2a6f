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
