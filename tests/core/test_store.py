"""The decoded store: written once and atomically, shared by processes, streamed in the same batches as memory."""
import multiprocessing
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from workbench.core import store
from workbench.core.config import DataConfig
from workbench.core.data import load_splits, place
from workbench.core.events import StepEvent
from workbench.core.train import train


def noise_folder(root, n=40, size=16, classes=("a", "b", "c")):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / c / f"{i:03d}.png")
    return root


def cfg(root, **kw):
    return DataConfig(name="image_folder", root=str(root), **kw)


def test_streamed_and_in_memory_give_the_same_batches(tmp_path):
    root = noise_folder(tmp_path / "imgs")
    mem_train, mem_test = load_splits(cfg(root, in_memory=True))
    str_train, str_test = load_splits(cfg(root, in_memory=False))
    assert mem_train.in_memory and not str_train.in_memory
    assert torch.equal(mem_train.indices, str_train.indices) and torch.equal(mem_test.labels, str_test.labels)
    reference = {int(i): np.asarray(Image.open(root / "abc"[int(i) // 40] / f"{int(i) % 40:03d}.png")).transpose(2, 0, 1)
                 for i in mem_train.indices}  # decoded independently, by PIL
    for seed in (0, 1):
        idx = torch.randperm(len(mem_train), generator=torch.Generator().manual_seed(seed)).split(16)
        a = list(mem_train.batches(idx, "cpu"))
        b = list(str_train.batches(idx, "cpu"))
        assert len(a) == len(b) == len(idx)
        for x, y, i in zip(a, b, idx, strict=True):
            assert torch.equal(x, y)
            assert np.array_equal(x[0].numpy(), reference[int(mem_train.indices[i[0]])])


def test_prefetch_thread_ends_when_the_consumer_stops_early_and_passes_errors_on(tmp_path):
    train_data, _ = load_splits(cfg(noise_folder(tmp_path / "imgs"), in_memory=False))
    gen = train_data.batches(iter(torch.arange(len(train_data)).split(4)), "cpu", prefetch=2)
    next(gen), next(gen)
    gen.close()
    assert not [t for t in threading.enumerate() if t.name == "workbench-prefetch"]
    bad = train_data.batches([torch.tensor([0, 1]), torch.tensor([len(train_data) + 10**6])], "cpu")
    assert next(bad).shape == (2, 3, 16, 16)
    with pytest.raises(OSError, match="shorter than its meta.json"):
        next(bad)


def test_in_memory_auto_streams_what_does_not_fit(tmp_path, monkeypatch, caplog):
    from workbench.core import data

    root = noise_folder(tmp_path / "imgs")
    monkeypatch.setattr(data, "available_ram", lambda: 10_000)  # bytes
    train_data, test_data = load_splits(cfg(root))
    assert not train_data.in_memory and not test_data.in_memory
    assert "of decoded images (more than 50% of the 0.0 GB of free memory): streaming batches from" in caplog.text
    assert place(train_data, "cpu", "auto") is train_data  # stays streamed
    assert place(train_data, "cpu", True).in_memory


def test_training_on_the_streamed_path_repeats_the_in_memory_run(tmp_path, quick_cfg):
    root = noise_folder(tmp_path / "imgs", n=60, size=16)
    losses = {}
    for mode in ("true", "false"):
        c = quick_cfg("data.name=image_folder", f"data.root={root}", f"data.in_memory={mode}", "data.subset=0",
                      "augment.preset=simclr_small_grey", "train.batch_size=32", "train.epochs=2", "train.max_steps=6", "train.log_every=1",
                      "eval.bank_size=100", "eval.test_size=18", "eval.embed_points=18")
        losses[mode] = [e.loss for e in train(c, runs_root=tmp_path / mode) if isinstance(e, StepEvent)]
    assert len(losses["true"]) == 6 and losses["true"] == losses["false"]


def test_streamed_run_stopped_and_resumed_repeats_the_straight_run(tmp_path, quick_cfg):
    from workbench.core.events import RunStarted
    from workbench.core.control import Control

    root = noise_folder(tmp_path / "imgs", n=60, size=16)
    c = quick_cfg("data.name=image_folder", f"data.root={root}", "data.in_memory=false", "data.subset=0",
                  "train.batch_size=32", "train.epochs=2", "train.log_every=1", "eval.bank_size=100", "eval.test_size=18",
                  "eval.embed_points=18")
    straight = [e.loss for e in train(c, runs_root=tmp_path / "straight") if isinstance(e, StepEvent)]
    control, first, run_dir = Control(), [], None
    for ev in train(c, control, runs_root=tmp_path / "split"):
        if isinstance(ev, RunStarted):
            run_dir = ev.run_dir
        if isinstance(ev, StepEvent):
            first.append(ev.loss)
            if ev.step == 7:  # inside the second epoch (5 steps an epoch)
                control.stop()
    rest = [e.loss for e in train(None, runs_root=tmp_path, resume=run_dir) if isinstance(e, StepEvent)]
    assert len(straight) == 10 and first + rest == straight


def _load_in_child(root, cache, out):
    import os

    os.environ["WORKBENCH_CACHE"] = cache
    train_data, test_data = load_splits(cfg(root, in_memory=False))
    out.put((str(train_data.store.path), train_data.read(torch.arange(len(train_data))).numpy().tobytes()))


def test_processes_share_one_store(tmp_path):
    root = noise_folder(tmp_path / "imgs", n=30)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_load_in_child, args=(str(root), str(tmp_path / "cache"), out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert results[0] == results[1]  # same store, same bytes
    stores = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    assert len(stores) == 1 and stores[0].name.startswith("store-") and ".tmp-" not in stores[0].name


def test_writer_is_atomic_and_cleans_up_after_a_killed_builder(tmp_path):
    final = tmp_path / "store-x"
    w = store.Writer(final, (5, 1, 2, 2))
    np.memmap(w.images_path, dtype=np.uint8, mode="r+", shape=(5, 1, 2, 2))[:] = np.arange(5).reshape(5, 1, 1, 1)
    assert store.open_store(final) is None  # nothing visible until finish
    w2 = store.Writer(final, (5, 1, 2, 2))  # a new builder (holding the lock) removes the dead one's folder
    assert not w.tmp.exists()
    np.memmap(w2.images_path, dtype=np.uint8, mode="r+", shape=(5, 1, 2, 2))[:] = np.arange(5).reshape(5, 1, 1, 1)
    st = w2.finish(np.array([0, 2, 3]), np.array([7, 8, 9]), np.array([0, 2, 3]), {"classes": []})
    assert st.shape == (3, 1, 2, 2) and st.images[:, 0, 0, 0].tolist() == [0, 2, 3] and st.labels.tolist() == [7, 8, 9]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store-x"]
    (final / "meta.json").write_text("{broken")
    assert store.open_store(final) is None


def test_key_covers_every_file_path_size_and_mtime(tmp_path):
    files = [("a/1.png", 100, 5), ("b/2.png", 200, 6)]
    base = store.key(tmp_path, files, channels="auto")
    assert store.key(tmp_path, files, channels="auto") == base
    for changed in ([("a/1.png", 100, 4), files[1]], [("a/1.png", 101, 5), files[1]], [("a/3.png", 100, 5), files[1]], files[:1]):
        assert store.key(tmp_path, changed, channels="auto") != base
    assert store.key(tmp_path, files, channels=3) != base


def test_process_workers_decode_the_same_store_as_threads(tmp_path, monkeypatch):
    from workbench.core import folder

    root = noise_folder(tmp_path / "imgs", n=20)
    got = {}
    for workers in ("processes", "threads"):
        monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / workers))
        got[workers] = folder.load_folder(root, "auto", 0, workers=workers)
    assert np.array_equal(np.asarray(got["processes"].images), np.asarray(got["threads"].images))
    assert np.array_equal(got["processes"].labels, got["threads"].labels) and got["threads"].shape == (60, 3, 16, 16)


def test_read_gathers_any_rows_in_the_order_asked(tmp_path):
    w = store.Writer(tmp_path / "store-r", (50, 1, 3, 3))
    np.memmap(w.images_path, dtype=np.uint8, mode="r+", shape=(50, 1, 3, 3))[:] = np.arange(50).reshape(50, 1, 1, 1)
    st = w.finish(np.arange(50), np.zeros(50), np.arange(50), {"classes": []})
    for rows in ([7, 8, 9, 10], [10, 9, 8, 7], [3, 40, 3, 0], list(range(50)), [49]):
        out = st.read(np.asarray(rows), np.empty((len(rows), 1, 3, 3), np.uint8))
        assert out[:, 0, 0, 0].tolist() == rows and (out == out[:, :, :1, :1]).all()


def test_waiting_for_another_builder_can_be_cancelled(tmp_path):
    from workbench.core import folder
    from workbench.core.data import Cancelled

    class Cancel:  # a cancel event that says when the loader first polls it: only the lock's wait loop does
        def __init__(self):
            self.polled, self.flag = threading.Event(), False

        def is_set(self):
            self.polled.set()
            return self.flag

    root = noise_folder(tmp_path / "imgs", n=5, classes=("a",))
    listing = folder.list_images(root)
    final = folder.store_path(root, listing, 'auto', 0)
    cancel, seen = Cancel(), []

    def load():
        try:
            folder.load_folder(root, "auto", 0, cancel=cancel)
        except Cancelled as exc:
            seen.append(exc)

    with store.locked(final):  # another builder holds the lock
        t = threading.Thread(target=load)
        t.start()
        assert cancel.polled.wait(10)  # waiting on the lock, not decoding a second copy
        cancel.flag = True
        t.join(timeout=10)
    assert not t.is_alive() and len(seen) == 1 and store.open_store(final) is None


def test_a_cache_disk_without_room_is_one_clear_error_before_decoding(tmp_path, monkeypatch):
    """Without the blocks reserved up front, a full disk surfaced as SIGBUS from the memory map mid-decoding."""
    import errno

    from workbench.core.files import DiskFullError

    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.os, "posix_fallocate", full)
    with pytest.raises(DiskFullError, match=r"disk full writing .*store-.*it needs about .*WORKBENCH_CACHE"):
        load_splits(cfg(noise_folder(tmp_path / "imgs", n=10)))
    assert [p.name for p in (tmp_path / "cache").iterdir() if ".tmp-" in p.name] == []  # nothing left holding the disk


def test_a_cache_that_cannot_be_written_names_it_and_workbench_cache(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "file" / "cache"))
    from workbench.core.registry import ConfigError

    with pytest.raises(ConfigError, match=r"cannot write the decoded-image cache .*set WORKBENCH_CACHE to a folder you can write"):
        load_splits(cfg(noise_folder(tmp_path / "imgs", n=10)))


@pytest.mark.parametrize("how", ["cp -p", "rsync -a / tar x"])
def test_a_file_rewritten_with_the_same_size_and_mtime_is_decoded_again(tmp_path, how):
    """cp -p, rsync -a and tar x keep size and mtime: the old store was served (stale pixels, no word)."""
    import os

    from workbench.core import folder

    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for c in "ab":
        (root / c).mkdir(parents=True)
        for i in range(3):  # uncompressed PNGs: every 16x16 RGB image has the same file size
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / c / f"{i}.png", compress_level=0)
    first = folder.load_folder(root, "auto", 0, workers="serial")
    target = root / "a" / "0.png"
    st = target.stat()
    new = tmp_path / "new.png"
    Image.fromarray(np.full((16, 16, 3), 7, np.uint8)).save(new, compress_level=0)
    assert new.stat().st_size == st.st_size
    if how == "cp -p":  # rewritten in place (the same inode), its times put back
        with open(target, "r+b") as f:
            f.write(new.read_bytes())
    else:  # a new file renamed over the old one, its times put back
        os.replace(new, target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    second = folder.load_folder(root, "auto", 0, workers="serial")
    assert second.path != first.path  # a new store, with the new pixels
    assert any((np.asarray(img) == 7).all() for img in second.images)
    assert not any((np.asarray(img) == 7).all() for img in first.images)
