"""Image folders as users bring them: odd files, odd layouts, and what the loader says about them."""
import logging
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile

from workbench.core import decode, folder
from workbench.core.config import DataConfig
from workbench.core.data import Cancelled, load_splits
from workbench.core.registry import ConfigError

RED, BLUE = (220, 20, 20), (20, 20, 220)


@pytest.fixture(autouse=True)
def _info(caplog):
    caplog.set_level(logging.INFO, logger="workbench")


def save(path, im, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **kw)
    return path


def fill(root, n=6, size=(40, 30), color=RED, classes=("a", "b")):
    for c in classes:
        for i in range(n):
            save(root / c / f"img{i}.png", Image.new("RGB", size, color))


def load(root, **kw):
    kw.setdefault("holdout", 0.25)
    return load_splits(DataConfig(name="image_folder", root=str(root), **kw))


def pixels(train, test):
    return torch.cat([train.images, test.images]), torch.cat([train.indices, test.indices])


def test_greyscale_file_first_does_not_make_a_colour_folder_greyscale(tmp_path, caplog):
    save(tmp_path / "a" / "0000.png", Image.new("L", (32, 32), 90))
    fill(tmp_path, size=(32, 32))
    train, test = load(tmp_path)
    assert train.channels == 3
    assert "mixes 12 colour and 1 greyscale files: using 3 channels" in caplog.text
    images, indices = pixels(train, test)
    grey = images[indices == 0][0]
    assert (grey == 90).all()  # repeated in R, G and B
    assert (images[indices == 1][0][0] == RED[0]).all()
    caplog.clear()
    load(tmp_path)  # from the store: the decision is said again
    assert "mixes 12 colour and 1 greyscale files" in caplog.text and "stored in" not in caplog.text


def test_channels_can_be_forced(tmp_path):
    fill(tmp_path, size=(16, 16))
    train, _ = load(tmp_path, channels=1)
    expected = round(0.299 * RED[0] + 0.587 * RED[1] + 0.114 * RED[2])  # ITU-R 601-2 luma
    assert train.channels == 1 and (train.images.int() - expected).abs().max() <= 1


def test_huge_image_first_sets_neither_the_size_nor_the_memory(tmp_path, caplog, monkeypatch):
    save(tmp_path / "a" / "0000.jpg", Image.new("RGB", (4000, 3000), BLUE), quality=95)
    fill(tmp_path, size=(40, 30))
    opened = []
    real = JpegImageFile.draft
    monkeypatch.setattr(JpegImageFile, "draft", lambda self, mode, size: opened.append(real(self, mode, size)) or opened[-1])
    train, test = load(tmp_path)
    assert train.size == 30 and len(train) + len(test) == 13 and not train.skipped
    assert "range from 30 to 3000 px on their shorter side: resizing all to 30x30 (the median shorter side)" in caplog.text
    assert any(r is not None and r[1][2] <= 500 for r in opened)  # libjpeg scaled the 4000 px file down (1/8) while decoding
    images, indices = pixels(train, test)
    assert (images[indices == 0][0].float().mean((1, 2)) - torch.tensor(BLUE)).abs().max() < 4


def test_auto_size_is_capped(tmp_path, caplog):
    for i in range(3):
        save(tmp_path / f"{i}.jpg", Image.new("RGB", (600, 400), RED))
    train, test = load(tmp_path, holdout=0.34)
    assert train.size == folder.auto_cap() and f"capped at {folder.auto_cap()}" in caplog.text
    assert folder.auto_cap() == (folder.MAX_AUTO_SIZE if torch.cuda.is_available() else folder.MAX_AUTO_SIZE_CPU)


def test_the_cpu_cap_is_part_of_the_store_key(tmp_path, monkeypatch):
    """A store sized with a GPU (256) is not reused on the same folder without one (96), and back."""
    for i in range(3):
        save(tmp_path / f"{i}.jpg", Image.new("RGB", (600, 400), RED))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert load(tmp_path, holdout=0.34)[0].size == 256
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert load(tmp_path, holdout=0.34)[0].size == 96
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert load(tmp_path, holdout=0.34)[0].size == 256


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257 * 64, 32768, 65535]], dtype=np.uint16).repeat(16, 0).repeat(4, 1)  # 16x16, four bands
    for i in range(4):
        save(tmp_path / f"{i}.png", Image.fromarray(values))
    with Image.open(tmp_path / "0.png") as im:
        assert im.mode.startswith("I")
    train, test = load(tmp_path)
    assert train.channels == 1
    expected = np.rint(values.astype(np.float64) * 255 / 65535)  # 0, 64, 128, 255
    assert np.array_equal(train.images[0, 0].numpy(), expected.astype(np.uint8))


def test_transparency_is_composited_on_white_the_same_way_for_every_mode(tmp_path):
    pal = Image.new("P", (8, 8), 1)
    pal.putpalette([0, 0, 0, *RED] + [0] * 762)
    pal.paste(0, (0, 0, 8, 4))  # top half: index 0, transparent
    save(tmp_path / "p.png", pal, transparency=0)
    rgba = Image.new("RGBA", (8, 8), (*RED, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 8, 4))
    save(tmp_path / "rgba.png", rgba)
    la = Image.new("LA", (8, 8), (80, 255))
    la.paste((0, 0), (0, 0, 8, 4))
    save(tmp_path / "la.png", la)
    for name in ("p.png", "rgba.png", "la.png"):
        arr = decode.decode(str(tmp_path / name), 8, 3)
        assert (arr[:, :4] == 255).all(), name  # transparent: white, not the hidden black
    assert np.array_equal(decode.decode(str(tmp_path / "p.png"), 8, 3)[:, 4:], decode.decode(str(tmp_path / "rgba.png"), 8, 3)[:, 4:])
    assert (decode.decode(str(tmp_path / "la.png"), 8, 1)[:, 4:] == 80).all()


def test_cmyk_jpeg_becomes_the_right_rgb(tmp_path):
    save(tmp_path / "c.jpg", Image.new("CMYK", (16, 16), (0, 255, 255, 0)), quality=95)  # full magenta + yellow = red
    arr = decode.decode(str(tmp_path / "c.jpg"), 16, 3).reshape(3, -1).mean(1)
    assert arr[0] > 240 and arr[1] < 15 and arr[2] < 15


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (40, 20), RED)
    im.paste(BLUE, (20, 0, 40, 20))  # stored: left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise: left becomes top
    save(tmp_path / "r.jpg", im, exif=exif, quality=95)
    assert decode.probe(str(tmp_path / "r.jpg"))[:2] == (20, 40)
    arr = decode.decode(str(tmp_path / "r.jpg"), 20, 3).astype(int)
    assert abs(arr[0, 1, 10] - RED[0]) < 12 and abs(arr[2, 18, 10] - BLUE[2]) < 12  # top row red, bottom row blue


def test_unreadable_sub_folder_is_named(tmp_path, caplog, monkeypatch):
    fill(tmp_path, classes=("cats", "dogs", "owls"))
    locked = str(tmp_path / "dogs")
    real = os.scandir

    def scandir(path="."):
        if str(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real(path)

    monkeypatch.setattr(folder.os, "scandir", scandir)  # root reads anything, so chmod alone cannot show it
    train, test = load(tmp_path)
    assert train.classes == ["cats", "owls"] and len(train) + len(test) == 12
    assert f"could not read or follow 1 entr(ies) under '{tmp_path}'; left out: {locked} (Permission denied)" in caplog.text
    assert "hold no images" not in caplog.text  # named once, as what it is


def test_links_are_followed_once_and_what_is_left_out_is_named(tmp_path, caplog):
    root = tmp_path / "data"
    fill(root, n=4, classes=("a", "b"))
    (root / "zloop").symlink_to(root)  # a link back to the root: the whole data set again as a class "zloop"
    (root / "a" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (root / "b" / "more").symlink_to(tmp_path)  # a link to a folder inside a class folder is not followed
    (root / "b" / "x.jpg").symlink_to(root / "b" / "y.jpg")  # two links to each other: a loop
    (root / "b" / "y.jpg").symlink_to(root / "b" / "x.jpg")
    save(root / "stray.png", Image.new("RGB", (40, 30), RED))
    train, test = load(root)
    assert train.classes == ["a", "b"] and len(train) + len(test) == 9
    assert "x.jpg (a link loop)" in caplog.text and "y.jpg (a link loop)" in caplog.text
    assert "left out zloop/ under" in caplog.text and "link(s) back to this folder" in caplog.text
    assert "gone.png (a broken link)" in caplog.text and "more (a link to a folder" in caplog.text
    assert "1 image(s) lie in" in caplog.text and "used unlabeled" in caplog.text


def test_class_folders_with_sub_folders_are_merged_with_a_note(tmp_path, caplog):
    fill(tmp_path / "animals", classes=("cat", "dog"))
    fill(tmp_path / "vehicles", classes=("ship",))
    save(tmp_path / "vehicles" / "truck.png", Image.new("RGB", (40, 30), RED))
    train, test = load(tmp_path)
    assert train.classes == ["animals", "vehicles"] and len(train) + len(test) == 19
    assert "2 class folder(s) under" in caplog.text and "animals (cat, dog); vehicles (ship)" in caplog.text
    caplog.clear()
    fill(tmp_path / "flat")  # class folders holding their images directly: nothing to say
    load(tmp_path / "flat")
    assert "sub-folders of their own" not in caplog.text


def test_more_than_five_unreadable_files_are_all_listed_in_the_store(tmp_path, caplog):
    import json

    fill(tmp_path)
    for i in range(7):
        (tmp_path / "b" / f"broken{i}.png").write_bytes(b"not an image")
    train, _ = load(tmp_path)
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped 7 unreadable"))
    listed = line.split(' are listed under "failures" in ')[1].rstrip(")")
    assert line.count("broken") == 5 and "(all 7" in line
    assert sorted(json.loads(Path(listed).read_text())["failures"]) == sorted(str(tmp_path / "b" / f"broken{i}.png") for i in range(7))


def test_memory_and_permission_errors_are_reported_as_what_they_are(tmp_path, caplog, monkeypatch):
    fill(tmp_path)
    (tmp_path / "b" / "broken.png").write_bytes(b"not an image")
    real = decode.decode

    def flaky(path, size, channels):
        if path.endswith("a/img1.png"):
            raise MemoryError
        if path.endswith("a/img2.png"):
            raise PermissionError(13, "Permission denied", path)
        return real(path, size, channels)

    monkeypatch.setattr(decode, "decode", flaky)
    train, test = load(tmp_path)
    assert len(train) + len(test) == 10
    limit = "too large to decode in memory (the limit is 1,000 megapixels)"
    assert f"skipped 1 file(s) {limit} in {tmp_path}: {tmp_path / 'a' / 'img1.png'}" in caplog.text
    assert f"could not be opened (permission denied) in {tmp_path}: {tmp_path / 'a' / 'img2.png'}" in caplog.text
    assert f"skipped 1 unreadable image file(s) (decoder failed) in {tmp_path}: {tmp_path / 'b' / 'broken.png'}" in caplog.text
    assert caplog.text.count("broken.png") == 1  # the decoder's reason does not repeat the path
    assert sorted(train.skipped) == sorted(test.skipped) == sorted(str(tmp_path / p) for p in ("a/img1.png", "a/img2.png", "b/broken.png"))


def test_rows_follow_their_files_when_some_fail(tmp_path, monkeypatch):
    for i in range(30):
        save(tmp_path / f"{i:02d}.png", Image.new("L", (8, 8), i * 8))
    for i in (3, 4, 17):
        (tmp_path / f"{i:02d}.png").write_bytes(b"broken")
    train, test = load(tmp_path)
    images, indices = pixels(train, test)
    assert len(images) == 27 and sorted(indices.tolist()) == [i for i in range(30) if i not in (3, 4, 17)]
    assert all(int(im[0, 0, 0]) == int(i) * 8 for im, i in zip(images, indices, strict=True))


def test_replaced_file_with_an_older_mtime_is_decoded_again(tmp_path):
    fill(tmp_path, size=(16, 16))
    target = tmp_path / "a" / "img0.png"
    first, _ = load(tmp_path, holdout=0.5, in_memory=False)
    st = target.stat()
    save(target, Image.new("RGB", (16, 16), BLUE))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns - 10**10))  # older than before
    train, test = load(tmp_path, holdout=0.5, in_memory=False)
    images, indices = pixels(train, test)
    assert tuple(images[indices == 0][0][:, 0, 0].tolist()) == BLUE
    assert not first.store.path.exists() and train.store.path.exists()  # the superseded store is removed...
    assert first.read(torch.arange(len(first))).shape == (len(first), 3, 16, 16)  # ...yet a run still reading it can


def test_train_val_layout_is_split_not_two_classes(tmp_path, caplog):
    fill(tmp_path / "train", n=4)
    fill(tmp_path / "val", n=2)
    train, test = load(tmp_path)
    assert (len(train), len(test)) == (8, 4) and train.classes == ["a", "b"]
    assert "train/ is the training split, val/ the held-out split" in caplog.text


def test_root_with_only_split_folders_is_never_taken_as_classes(tmp_path, caplog):
    fill(tmp_path / "validation", n=3)
    with pytest.raises(ConfigError, match="holds only validation/ and no train/"):
        load(tmp_path)
    fill(tmp_path / "only" / "train", n=6)
    train, test = load(tmp_path / "only")
    assert train.classes == ["a", "b"] and len(train) + len(test) == 12
    carved = "has train/ but no val/, valid/, validation/, test/, testing/, holdout/, eval/: the held-out split is carved from train/"
    assert carved in caplog.text


def test_split_name_among_classes_is_a_class_with_a_warning(tmp_path, caplog):
    fill(tmp_path, classes=("cats", "test"))
    train, _ = load(tmp_path)
    assert train.classes == ["cats", "test"] and "has no train/ folder, so test/ taken as class(es)" in caplog.text


def test_progress_counts_every_file_and_cancel_leaves_nothing(tmp_path, monkeypatch):
    fill(tmp_path, n=300, size=(8, 8))
    monkeypatch.setattr(folder, "CHUNK", 50)
    seen = []
    train, test = load_splits(DataConfig(name="image_folder", root=str(tmp_path), holdout=0.25),
                              progress=lambda d, n, m: seen.append((d, n, m)))
    decoding = [(d, n) for d, n, m in seen if m.startswith("decoding")]
    assert decoding[-1] == (600, 600) and [d for d, _ in decoding] == sorted(d for d, _ in decoding)
    assert any(m.startswith("reading headers") for _, _, m in seen)

    cancel = threading.Event()
    (tmp_path / "a" / "new.png").write_bytes((tmp_path / "a" / "img0.png").read_bytes())  # a new key: decoded again

    def progress(done, total, message):
        if message.startswith("decoding") and done >= 100:
            cancel.set()

    cache = folder.store.cache_root()
    before = set(cache.iterdir())
    with pytest.raises(Cancelled):
        load_splits(DataConfig(name="image_folder", root=str(tmp_path)), progress=progress, cancel=cancel)
    assert {p for p in cache.iterdir() if p.is_dir()} == {p for p in before if p.is_dir()}  # no store, no temporary left


def test_progress_counts_both_splits_of_a_train_and_test_folder(tmp_path, monkeypatch):
    """train/ (2 x 30 files) beside test/ (2 x 10): the bar ends at 80 / 80, not at the held-out split's 20 / 20."""
    fill(tmp_path / "train", n=30, size=(8, 8))
    fill(tmp_path / "test", n=10, size=(8, 8))
    monkeypatch.setattr(folder, "CHUNK", 8)
    seen = []
    train, test = load_splits(DataConfig(name="image_folder", root=str(tmp_path)), progress=lambda d, n, m: seen.append((d, n, m)))
    assert (len(train), len(test)) == (60, 20)
    decoding = [(d, n) for d, n, m in seen if m.startswith("decoding")]
    assert decoding[-1] == (80, 80) and (60, 60) in decoding
    assert [d for d, _ in decoding] == sorted(d for d, _ in decoding)  # never back to 0 for the second split
    assert all(n in (0, 60, 80) and d <= max(n, 60) for d, n, _ in seen), seen


def test_thumbnails_cover_every_class(tmp_path):
    for ci, c in enumerate("abc"):
        for i in range(10):
            save(tmp_path / c / f"{i}.png", Image.new("L", (8, 8), ci * 100))
    train, _ = load(tmp_path)
    images, labels = train.thumbnails(3)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert (images[:, 0, 0, 0] == labels * 100).all()


@pytest.mark.parametrize("name,make", [
    ("rgb.jpg", lambda: Image.new("RGB", (40, 30))), ("l.jpg", lambda: Image.new("L", (40, 30))),
    ("cmyk.jpg", lambda: Image.new("CMYK", (40, 30))), ("rgb.png", lambda: Image.new("RGB", (41, 31))),
    ("la.png", lambda: Image.new("LA", (41, 31))), ("i16.png", lambda: Image.fromarray(np.zeros((5, 7), np.uint16))),
    ("grey-palette.png", lambda: Image.new("L", (9, 9)).convert("P")),
    ("colour-palette.png", lambda: Image.new("RGB", (9, 9), RED).convert("P")),
])
def test_header_probe_agrees_with_pil(tmp_path, name, make):
    path = tmp_path / name
    make().save(path, **({"progressive": True} if name == "rgb.jpg" else {}))
    with Image.open(path) as im:
        expected = (*im.size, im.mode not in ("L", "LA", "I;16", "I") and not (im.mode == "P" and name.startswith("grey")))
    assert decode.probe(str(path)) == expected


def test_small_jpegs_decode_as_pil_does(tmp_path):
    arr = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    save(tmp_path / "c.jpg", Image.fromarray(arr), quality=90)
    save(tmp_path / "g.jpg", Image.fromarray(arr[..., 0]), quality=90)
    for name, mode in (("c.jpg", "RGB"), ("g.jpg", "L"), ("g.jpg", "RGB"), ("c.jpg", "L")):
        with Image.open(tmp_path / name) as im:
            im.draft(mode, im.size)  # greyscale from a colour JPEG: the decoder's luminance (Y), as PIL gives it
            ref = np.asarray(im.convert(mode))
        got = decode.decode(str(tmp_path / name), 32, 1 if mode == "L" else 3)
        assert np.array_equal(got, ref[None] if mode == "L" else ref.transpose(2, 0, 1)), (name, mode)


def test_folder_whose_files_all_fail_to_decode_says_so(tmp_path):
    good = tmp_path / "x.jpg"
    save(good, Image.new("RGB", (64, 64), RED))
    for i in range(3):
        (tmp_path / f"{i}.jpg").write_bytes(good.read_bytes()[:300])  # header intact, image data cut off
    good.unlink()
    with pytest.raises(ConfigError, match="none of the 3 image files .* could be read"):
        load(tmp_path)


def test_held_out_split_takes_the_training_split_shape(tmp_path):
    fill(tmp_path / "train", n=4, size=(32, 32))
    for i in range(3):
        save(tmp_path / "val" / "a" / f"{i}.png", Image.new("L", (16, 16), 50))  # smaller and greyscale
    train, test = load(tmp_path)
    assert train.images.shape[1:] == test.images.shape[1:] == (3, 32, 32) and (test.images == 50).all()
    folder_cfg = DataConfig(name="image_folder", root=str(tmp_path))
    from workbench.core import data

    data._TRAIN_SHAPE.clear()  # a new process asking for the held-out split alone
    assert data.DATASETS.build("image_folder", None, cfg=folder_cfg, split="test", progress=None, cancel=None).size == 32


def test_empty_class_folder_is_named(tmp_path, caplog):
    fill(tmp_path, size=(20, 20))
    (tmp_path / "odd" / "empty").mkdir(parents=True)
    train, _ = load(tmp_path)
    assert train.classes == ["a", "b"]
    assert f"1 class folder(s) under '{tmp_path}' hold no images and are left out (no class made for them): odd" in caplog.text


def test_tiny_images_are_never_resized_below_16_and_the_root_is_named(tmp_path, caplog):
    fill(tmp_path, size=(8, 8))
    save(tmp_path / "a" / "big.jpg", Image.new("RGB", (300, 200), BLUE))
    train, _ = load(tmp_path)
    assert train.size == folder.MIN_AUTO_SIZE == 16
    assert f"the images in '{tmp_path}' are tiny (median shorter side 8 px, 13 files): resizing them up to 16x16" in caplog.text
    assert "check data.root" in caplog.text


def test_size_set_in_the_config_is_kept_even_if_tiny(tmp_path, caplog):
    fill(tmp_path, size=(8, 8))
    train, _ = load(tmp_path, image_size=8)
    assert train.size == 8 and "tiny" not in caplog.text


def test_general_folder_tree_is_called_out(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(folder, "IRREGULAR_CLASSES", 5)
    for i in range(7):
        save(tmp_path / f"dir{i}" / "x.png", Image.new("L", (20, 20), 9))
    for j in range(60):
        save(tmp_path / "photos" / f"{j}.png", Image.new("L", (20, 20), j))
    load(tmp_path)
    assert f"'{tmp_path}' has 8 sub-folders holding 1 to 60 images each: this looks like a general folder" in caplog.text


def test_held_out_classes_are_matched_to_the_training_classes_by_name(tmp_path, caplog):
    colours = {"a": RED, "b": BLUE, "c": (20, 200, 20), "z": (200, 200, 20)}
    for split, names in (("Training", "abc"), ("Testing", "bcz")):  # test/ lacks a, and holds a class train/ lacks
        for name in names:
            fill(tmp_path / split, n=3, color=colours[name], classes=(name,))
    train, test = load(tmp_path)
    assert train.classes == test.classes == ["a", "b", "c"] and len(train) == 9
    assert "Training/ is the training split, Testing/ the held-out split" in caplog.text
    for i in range(len(test)):  # every held-out image carries the number its colour has in the training split
        colour = tuple(test.images[i, :, 0, 0].tolist())
        expect = {v: k for k, v in colours.items()}[colour]
        assert test.labels[i] == (train.classes.index(expect) if expect in train.classes else -1)
    assert (test.labels == -1).sum() == 3 and "holds class folder(s) that the training split has not: z" in caplog.text


def test_images_past_pils_bomb_limit_decode_and_past_ours_are_named_too_large(tmp_path, caplog, monkeypatch):
    """PIL refuses over 179 megapixels (warns over 89); a user's scans reach that. Ours is 1 gigapixel, scaled down
    here to 2,000 pixels."""
    assert Image.MAX_IMAGE_PIXELS >= decode.MAX_PIXELS >= 10**9  # PIL's own limit lifted when decode is imported
    monkeypatch.setattr(decode, "MAX_PIXELS", 2000)
    fill(tmp_path, n=4, size=(40, 30))
    save(tmp_path / "a" / "huge.png", Image.new("RGB", (60, 40), RED))  # 2,400 pixels
    train, test = load(tmp_path)
    assert len(train) + len(test) == 8
    assert "skipped 1 file(s) too large to decode in memory (the limit is 1,000 megapixels)" in caplog.text and "huge.png" in caplog.text


@pytest.mark.parametrize("layout", ["carved", "test_folder"])
def test_every_row_names_the_file_it_was_decoded_from(tmp_path, caplog, layout):
    """file_names(): each row's file, whether the held-out split is carved from the folder or is its test/ folder,
    through a subset and a read into memory; said nothing when it lists the folder again."""
    rng = np.random.default_rng(0)
    root = tmp_path / "f"
    for split in ("train", "test") if layout == "test_folder" else ("",):
        for c in ("a", "b"):
            for i in range(7):
                save(root / split / c / f"{i}.png", Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)))
    train, test = load(root, subset=9, image_size=16)
    caplog.clear()
    for data, split in ((train, "train"), (test, "test")):
        names = data.file_names()
        assert len(names) == len(data) and len(set(names)) == len(names)
        base = root / split if layout == "test_folder" else root
        for row, name in enumerate(names):
            assert np.array_equal(data.images[row].numpy(), decode.decode(str(base / name), 16, 3)), name  # that file's image
            assert data.classes[int(data.labels[row])] == Path(name).parts[0]
    assert "data:" not in caplog.text  # listing again says nothing new
    assert load_splits(DataConfig(name="bundled"))[1].file_names() is None
