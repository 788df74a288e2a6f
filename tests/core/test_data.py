import pytest
import torch
from PIL import Image

from tests.conftest import FMNIST, need
from workbench.core.config import DataConfig
from workbench.core.data import load_splits
from workbench.core.registry import ConfigError


def test_bundled_default_is_real_fashion_mnist_split_into_train_and_holdout():
    train, test = load_splits(DataConfig())
    assert len(train) + len(test) == 10000 and len(test) == 1000
    assert train.images.dtype == torch.uint8 and train.images.shape[1:] == (1, 28, 28)
    assert set(train.labels.tolist()) == set(range(10))
    assert len(set(train.indices.tolist()) & set(test.indices.tolist())) == 0
    assert train.classes[0] == "T-shirt/top"


@need(FMNIST)
def test_fashion_mnist_from_shared_data():
    train, test = load_splits(DataConfig(name="fashion_mnist", root=str(FMNIST)))
    assert (len(train), len(test)) == (60000, 10000)
    assert torch.bincount(test.labels).tolist() == [1000] * 10


def test_missing_root_and_missing_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_splits(DataConfig(name="fashion_mnist", root=str(tmp_path / "nope")))
    with pytest.raises(ConfigError, match="data.download=true"):
        load_splits(DataConfig(name="fashion_mnist", root=str(tmp_path)))
    with pytest.raises(ConfigError, match="needs a root"):
        load_splits(DataConfig(name="cifar10"))


def _write(path, size, color, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def test_image_folder_labels_resizes_and_skips_corrupt_files(tmp_path, caplog):
    for i in range(6):
        _write(tmp_path / "cats" / f"{i}.png", (40, 30), (200, 10, 10))
        _write(tmp_path / "dogs" / f"{i}.jpg", (64, 64), (10, 10, 200))
    (tmp_path / "dogs" / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("ignored")
    train, test = load_splits(DataConfig(name="image_folder", root=str(tmp_path), image_size=16, holdout=0.25))
    assert train.classes == ["cats", "dogs"] and len(train) + len(test) == 12
    assert train.images.shape[1:] == (3, 16, 16)
    assert any("broken.jpg" in s for s in train.skipped)
    assert "skipped 1 unreadable" in caplog.text
    reds = train.images[train.labels == 0].float()
    assert reds[:, 0].mean() > 150 and reds[:, 2].mean() < 50


def test_image_folder_unlabeled_and_train_test_layout(tmp_path):
    for i in range(8):
        _write(tmp_path / "flat" / f"{i}.png", (20, 20), i * 20, mode="L")
    train, test = load_splits(DataConfig(name="image_folder", root=str(tmp_path / "flat"), holdout=0.25))
    assert (train.labels == -1).all() and train.images.shape[1] == 1 and not train.has_labels
    for split, n in (("train", 4), ("test", 2)):
        for c in ("a", "b"):
            for i in range(n):
                _write(tmp_path / "split" / split / c / f"{i}.png", (8, 8), (i, i, i))
    train, test = load_splits(DataConfig(name="image_folder", root=str(tmp_path / "split")))
    assert (len(train), len(test)) == (8, 4)


def test_image_folder_with_no_images_or_only_corrupt_ones(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no images"):
        load_splits(DataConfig(name="image_folder", root=str(tmp_path / "empty")))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="could be read"):
        load_splits(DataConfig(name="image_folder", root=str(tmp_path / "bad")))


def test_subset_is_reproducible():
    a, _ = load_splits(DataConfig(subset=500))
    b, _ = load_splits(DataConfig(subset=500))
    assert len(a) == 500 and torch.equal(a.indices, b.indices)
