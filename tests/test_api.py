"""The Python API: configs from dicts / TOML / keywords, the user's own images, fit, events, runs, and the README example."""
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import workbench as wb
from workbench.core.api import as_image_data
from workbench.core.data import BUNDLED, read_idx

from .conftest import ROOT

SMALL = {"train": {"epochs": 1, "batch_size": 64, "log_every": 2}, "model": {"width": 8},
         "eval": {"embed_points": 100}}


@pytest.fixture(scope="module")
def fmnist():
    """600 real Fashion-MNIST images (uint8 (N, 1, 28, 28)) and labels from the bundled sample."""
    x = torch.from_numpy(read_idx(BUNDLED / "t10k-images-idx3-ubyte.gz")[:600].copy()).unsqueeze(1)
    y = torch.from_numpy(read_idx(BUNDLED / "t10k-labels-idx1-ubyte.gz")[:600].astype(np.int64))
    return x, y


def test_config_from_a_dict_a_toml_file_and_keywords(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[loss]\nname = "dcl"\ntemperature = 0.3\n[train]\nepochs = 7\n')
    cfg = wb.config(toml, train={"batch_size": 32}, **{"loss.temperature": 0.2})
    assert (cfg.loss.name, cfg.loss.params["temperature"], cfg.train.epochs, cfg.train.batch_size) == ("dcl", 0.2, 7, 32)
    cfg = wb.config({"loss": {"name": "ntxent"}, "loss.temperature": 0.1, "model.width": 16})
    assert cfg.loss.params["temperature"] == 0.1 and cfg.model.params["width"] == 16
    # a new loss is applied before its parameters, whatever the order they were given in
    cfg = wb.config(**{"loss.beta": 0.25, "loss.name": "hcl"})
    assert cfg.loss.name == "hcl" and cfg.loss.params["beta"] == 0.25
    recipe = [{"name": "horizontal_flip", "p": 0.5}]
    assert wb.config(augment={"recipe": recipe}).augment.recipe == recipe
    assert wb.config(cfg) is cfg


@pytest.mark.parametrize("args,kwargs,needle", [
    ((), {"train": {"epochs": 0}}, "train.epochs"),
    ((), {"losses.temperature": 0.1}, "unknown section"),
    ((), {"epochs": 3}, "dotted key"),
    (({"loss.name": "nope"},), {}, "unknown loss 'nope'"),
    ((), {"loss.temperature": None}, "loss.temperature"),
])
def test_bad_configs_name_the_field(args, kwargs, needle):
    with pytest.raises(wb.ConfigError, match=needle):
        wb.config(*args, **kwargs)


class PILDataset(torch.utils.data.Dataset):
    classes = ["dark", "light"]

    def __init__(self, mode="L", labelled=True):
        self.mode, self.labelled = mode, labelled

    def __len__(self):
        return 5

    def __getitem__(self, i):
        img = Image.new(self.mode, (6, 6), 40 * i if self.mode == "L" else (40 * i, 0, 255))
        return (img, i % 2) if self.labelled else img


def test_images_from_tensors_arrays_and_datasets():
    x = torch.randint(0, 256, (5, 3, 6, 6), dtype=torch.uint8)
    d = as_image_data(x, labels=[0, 1, 2, 1, 0])
    assert torch.equal(d.images, x) and d.labels.tolist() == [0, 1, 2, 1, 0] and d.classes == ["0", "1", "2"]
    assert torch.equal(as_image_data(x.float() / 255).images, x)  # floats in [0, 1], as ToTensor gives
    assert as_image_data((x, np.zeros(5))).labels.tolist() == [0] * 5
    grey = as_image_data(PILDataset())
    assert grey.images.shape == (5, 1, 6, 6) and grey.images[3, 0, 0, 0] == 120
    assert grey.labels.tolist() == [0, 1, 0, 1, 0] and grey.classes == ["dark", "light"]
    rgb = as_image_data(PILDataset("RGBA", labelled=False))
    assert rgb.images.shape == (5, 3, 6, 6) and rgb.images[2, :, 0, 0].tolist() == [80, 0, 255]
    assert rgb.labels.tolist() == [-1] * 5
    hwc = [np.full((6, 6, 3), i, np.uint8) for i in range(4)]  # (H, W, C) arrays, as numpy and PIL give them
    assert as_image_data(hwc).images.shape == (4, 3, 6, 6)
    named = as_image_data(x, labels=["owl", "cat", "owl", "dog", "cat"])  # class names, numbered in sorted order
    assert named.classes == ["cat", "dog", "owl"] and named.labels.tolist() == [2, 0, 2, 1, 0]
    assert as_image_data(x, labels=np.array([0.0, 1.0, 2.0, 1.0, -1.0])).labels.tolist() == [0, 1, 2, 1, -1]


def test_pil_images_are_decoded_as_a_folder_would_be():
    wide = Image.new("RGB", (12, 6), (255, 0, 0))
    wide.paste((0, 0, 255), (3, 0, 9, 6))  # the centre square is blue
    with pytest.warns(UserWarning, match="1 of 2 PIL images are not square; the centre square of each is used"):
        got = as_image_data([wide, Image.new("RGB", (6, 6))]).images
    assert got[0].float().mean((1, 2)).tolist() == [0.0, 0.0, 255.0]
    with pytest.warns(UserWarning, match="greyscale and colour images are mixed"):
        mixed = as_image_data([Image.new("L", (6, 6), 90), Image.new("RGB", (6, 6), (1, 2, 3))])
    assert mixed.images.shape == (2, 3, 6, 6) and mixed.images[0, :, 0, 0].tolist() == [90, 90, 90]


@pytest.mark.parametrize("data,labels,needle", [
    (torch.zeros(4, 3, 6, 6, dtype=torch.uint8), [0, 1], "4 images need 4 labels"),
    (torch.zeros(4, 3, 6, 6, dtype=torch.uint8), torch.zeros(4, 2), "got shape \\(4, 2\\)"),
    (torch.zeros(4, 3, 6, 6, dtype=torch.uint8), torch.tensor([0.2, 0.7, 0.1, 0.9]), "labels must be class numbers"),
    (torch.zeros(4, 3, 6, 6, dtype=torch.uint8), [0, -5, 1, 1], "labels must be >= 0 \\(or -1 = unknown\\), got -5"),
    (torch.zeros(4, 2, 6, 6, dtype=torch.uint8), None, "1 \\(grey\\) or 3 \\(RGB\\) channels"),
    (torch.zeros(4, 1, 6, 8, dtype=torch.uint8), None, "6x8"),
    (torch.full((4, 1, 6, 6), 3.0), None, "floats in \\[0, 1\\]"),
    ([np.zeros((6, 6), np.uint8), np.zeros((7, 7), np.uint8)], None, "data\\[1\\]: image is \\(1, 7, 7\\)"),
    ("images/", None, "data\\[0\\]"),
])
def test_bad_images_are_one_clear_error(data, labels, needle):
    with pytest.raises(wb.ConfigError, match=needle):
        as_image_data(data, labels)


def test_a_truncated_image_file_is_one_clear_error(tmp_path):
    import io

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[:len(buf.getvalue()) // 2])  # the header whole, half the pixels
    good = Image.new("RGB", (64, 64), (30, 30, 200))
    with Image.open(tmp_path / "cut.jpg") as cut, pytest.raises(wb.ConfigError, match="data\\[1\\]: the image cannot be decoded"):
        as_image_data([good, cut])


def test_fit_on_own_images_gives_a_usable_run_and_leaves_torch_as_it_was(tmp_path, fmnist):
    x, y = fmnist
    torch.manual_seed(123)
    torch.set_flush_denormal(False)
    rng, threads = torch.get_rng_state(), torch.get_num_threads()
    seen = []

    def on_event(ev):  # runs between the loop's steps, with the caller's settings in force
        seen.append((type(ev).__name__, torch.get_num_threads()))

    cfg = wb.config(SMALL, **{"train.threads": threads + 1})
    run = wb.fit(cfg, data=x, labels=y, on_event=on_event, runs_root=tmp_path)
    assert torch.equal(torch.get_rng_state(), rng) and torch.get_num_threads() == threads
    assert float(torch.tensor([1e-39]) * 1.0) != 0.0  # the loop flushes denormals on the CPU; the caller does not
    assert seen[0][0] == "RunStarted" and seen[-1][0] == "DoneEvent" and {t for _, t in seen} == {threads}
    assert run.reason == "finished" and run.run_dir.parent == tmp_path and run.config.data.name == "python"
    evals = [r for r in run.metrics if r["knn_acc"] is not None]
    steps = [r for r in run.metrics if r["loss"] is not None]
    assert len(evals) == 1 and evals[0]["knn_acc"] == pytest.approx(run.final["knn_acc"], abs=1e-5)
    assert [r["step"] for r in steps] == [1, 2, 4, 6, 8]  # 540 training images (10% held out), batch 64: 8 steps; step 1 logged too
    emb = run.embed(x[:7])
    assert emb.shape == (7, 4 * 8 * 4 * 4) and emb.dtype == np.float32 and np.isfinite(emb).all()
    for one in (x[3], x[3].numpy(), x[3, 0].numpy(), Image.fromarray(x[3, 0].numpy())):  # one image in any form
        np.testing.assert_allclose(run.embed(one), emb[3:4], rtol=1e-5, atol=1e-6)
    with pytest.warns(UserWarning, match="images are 32x32 with 3 channel\\(s\\); this encoder was trained on 28x28 with 1"):
        assert run.embed(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape == emb[:2].shape
    np.testing.assert_allclose(wb.load_run(run.run_dir).embed(x[:7]), emb, rtol=1e-5, atol=1e-5)
    for i in (3, 4):  # image files, as a folder's are decoded for training
        Image.fromarray(x[i, 0].numpy()).save(tmp_path / f"{i}.png")
    np.testing.assert_allclose(run.embed(tmp_path / "3.png"), emb[3:4], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(run.embed([str(tmp_path / "3.png"), tmp_path / "4.png"]), emb[3:5], rtol=1e-5, atol=1e-5)
    with pytest.raises(wb.ConfigError, match="nope.png' does not exist"):
        run.embed(tmp_path / "nope.png")
    paths = run.export("safetensors")
    assert [p.name for p in paths] == ["encoder.safetensors", "model_card.json"] and all(p.is_file() for p in paths)
    assert paths[0].parent == run.run_dir / "export" / "safetensors"  # the window's layout: one folder per format
    first = paths[0].read_bytes()
    paths[0].write_bytes(b"edited by the user")
    with pytest.raises(wb.ConfigError, match=re.escape(f"'{paths[0]}' already exists; pass force=True")):
        run.export("safetensors")
    assert paths[0].read_bytes() == b"edited by the user"  # nothing saved is replaced without force
    assert run.export("safetensors", force=True) == paths and paths[0].read_bytes() == first
    from workbench.core.inference import RunModel

    with pytest.raises(wb.ConfigError, match="workbench.fit"):  # the CLI cannot silently embed another dataset
        RunModel.load(run.run_dir).splits()
    with pytest.raises(wb.ConfigError, match="workbench.fit"):  # npz embeds the held-out split, which is not on disk
        run.export("npz")
    assert not (run.run_dir / "export" / "npz").exists()  # and a failed export leaves no folder behind


def test_stream_iterates_events_and_fit_uses_a_given_held_out_split(tmp_path, fmnist):
    x, y = fmnist
    s = wb.stream(SMALL, data=x[:300], labels=y[:300], test=x[300:400], test_labels=y[300:400], runs_root=tmp_path)
    events = list(s)
    assert isinstance(events[0], wb.RunStarted) and (events[0].n_train, events[0].n_test) == (300, 100)
    assert isinstance(events[-1], wb.DoneEvent) and s.run.run_dir.name == events[-1].run_dir.split("/")[-1]


def test_a_stopped_run_resumes_on_the_same_in_memory_images(tmp_path, fmnist):
    x, y = fmnist
    control = wb.Control()

    def stop_at_step_4(ev):
        if isinstance(ev, wb.StepEvent) and ev.step >= 4:
            control.stop()

    cfg = wb.config(SMALL, **{"train.epochs": 2})
    run = wb.fit(cfg, data=x, labels=y, runs_root=tmp_path, control=control, on_event=stop_at_step_4)
    assert run.reason == "stopped"
    done = wb.fit(resume=run.run_dir, data=x, labels=y)
    assert done.reason == "finished" and done.run_dir == run.run_dir
    assert max(r["step"] for r in done.metrics) == 16  # 2 epochs of 8 steps, continued from step 4


def test_set_up_problems_and_training_failures_raise(tmp_path, fmnist):
    x, _ = fmnist
    with pytest.raises(wb.ConfigError, match="needs labels"):
        wb.fit({"loss": {"name": "supcon"}, **SMALL}, data=x, runs_root=tmp_path)
    diverge = wb.config(SMALL, **{"optim.name": "sgd", "optim.lr": 10.0, "optim.warmup_epochs": 0.0, "train.log_every": 1,
                                  "loss.similarity": "dot", "loss.temperature": 0.001})
    with pytest.raises(FloatingPointError, match="non-finite"):  # the exception itself, not an event
        wb.fit(diverge, data=x, runs_root=tmp_path)
    (log,) = tmp_path.glob("*/run.log")
    assert "FloatingPointError" in log.read_text() and "Traceback" in log.read_text()


def test_fit_on_an_image_folder_path(tmp_path, fmnist, monkeypatch):
    """data="/a/folder" trains on it as data.root (the run's config says so and can be resumed from it)."""
    x, y = fmnist
    for i in range(120):
        path = tmp_path / "photos" / f"class{int(y[i])}" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i, 0].numpy()).save(path)
    monkeypatch.setenv("HOME", str(tmp_path))
    run = wb.fit(wb.config(SMALL, **{"train.batch_size": 32}), data="~/photos", runs_root=tmp_path / "runs")
    assert run.reason == "finished" and run.config.data.name == "image_folder"
    assert run.config.data.root == str(tmp_path / "photos") and 0 <= run.final["knn_acc"] <= 1


def test_wrong_argument_types_are_config_errors_and_make_no_run_folder(tmp_path, fmnist):
    x, y = fmnist
    with pytest.raises(wb.ConfigError, match="on_event: expected a function called with each event, got int"):
        wb.fit(SMALL, data=x, labels=y, on_event=5, runs_root=tmp_path / "runs")
    with pytest.raises(wb.ConfigError, match="is not a folder; give an image folder"):
        wb.fit(SMALL, data=str(tmp_path / "nowhere"), runs_root=tmp_path / "runs")
    with pytest.raises(wb.ConfigError, match="an image folder's labels are its class sub-folders"):
        wb.fit(SMALL, data=str(tmp_path), labels=[0, 1], runs_root=tmp_path / "runs")
    with pytest.raises(wb.ConfigError, match="a resumed run reads the data its config names"):
        wb.fit(resume=tmp_path, data=str(tmp_path), runs_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()
    with pytest.raises(wb.ConfigError, match="load_run: expected a run folder's path, got int"):
        wb.load_run(42)
    run = wb.Run(tmp_path)
    with pytest.raises(wb.ConfigError, match="unknown export format 3; choose from: safetensors"):
        run.export(3)
    (tmp_path / "afile").write_text("keep me")
    with pytest.raises(wb.ConfigError, match="is a file, not a folder"):
        run.export("npz", out=tmp_path / "afile")


def test_readme_example_runs(tmp_path):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    code = re.search(r"## Python API.*?```python\n(.*?)```", text, re.S).group(1)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "knn_acc" in res.stdout and "(1, 2048)" in res.stdout and "encoder.safetensors" in res.stdout
    assert list((tmp_path / "runs").glob("*_python-hcl/export/safetensors/model_card.json"))


def test_run_check_returns_the_tables_the_cli_writes(tmp_path, fmnist):
    x, y = fmnist
    run = wb.fit({**SMALL, "train": {**SMALL["train"], "max_steps": 3}}, data=x[:500], labels=y[:500], test=x[500:],
                 test_labels=y[500:], runs_root=tmp_path)
    x_dup = torch.cat([x[:500], x[500:503]])  # three held-out images copied into the training split
    leaky = wb.fit({**SMALL, "train": {**SMALL["train"], "max_steps": 3}}, data=x_dup, labels=torch.cat([y[:500], y[500:503]]),
                   test=x[500:], test_labels=y[500:], runs_root=tmp_path / "leaky")
    report = leaky.check(data=x_dup, labels=torch.cat([y[:500], y[500:503]]), test=x[500:], test_labels=y[500:])
    assert set(report.tables) >= {"duplicates", "leaks", "outliers", "label_issues", "confusion"}
    assert {int(i) for i in report.leaks["index"][report.leaks["exact"]]} == {0, 1, 2}  # found by their pixels
    assert any("held-out" in f for f in report.findings)
    assert report.tables["confusion"]["given"].tolist() == [str(c) for c in range(10)]
    rows = report.label_issues.rows()
    assert all({"given_label", "suggested", "confidence"} <= set(r) for r in rows)
    assert len(run.check(split="train", data=x[:500], labels=y[:500], test=x[500:]).items) == 500
