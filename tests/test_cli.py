import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT
from workbench.core.inference import RunModel


def wb(*args, cwd=None, timeout=300):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


QUICK = ["--set", "data.subset=512", "--set", "train.batch_size=64", "--set", "train.epochs=1",
         "--set", "eval.test_size=300", "--set", "eval.embed_points=100"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    res = wb("train", str(ROOT / "examples" / "bundled_quick.toml"), *QUICK, "--out", str(out))
    assert res.returncode == 0, res.stderr
    runs = list(out.iterdir())
    assert len(runs) == 1
    return runs[0], res


def test_train_writes_a_reproducible_run_folder(trained_run):
    run, res = trained_run
    assert "kNN (k=20, T=0.07)" in res.stderr and "img/s" in res.stderr and "finished" in res.stderr
    assert (run / "config.toml").is_file() and (run / "metrics.csv").is_file()
    assert (run / "checkpoints" / "last.pt").is_file()
    text = (run / "config.toml").read_text()
    assert "[meta]" in text and "torch" in text and "subset = 512" in text


def test_embed_writes_npz(trained_run, tmp_path):
    run, _ = trained_run
    out = tmp_path / "emb.npz"
    res = wb("embed", str(run), "--split", "test", "--out", str(out))
    assert res.returncode == 0, res.stderr
    z = np.load(out)
    dim = RunModel.load(run).net.encoder.out_dim
    assert z["embeddings"].dtype == np.float32 and z["embeddings"].shape == (1000, dim)
    assert z["labels"].dtype == np.int64 and z["indices"].shape == (1000,)


def test_resume_a_finished_run_is_a_no_op_that_still_reports(trained_run):
    run, _ = trained_run
    res = wb("train", "--resume", str(run))
    assert res.returncode == 0, res.stderr
    assert "finished" in res.stderr


@pytest.mark.parametrize("args, needle", [
    (["train", "missing.toml"], "does not exist"),
    (["train", "CFG", "--set", "loss.temperature=0"], "temperature"),
    (["train", "CFG", "--set", "train.batch_size=1"], "train.batch_size"),
    (["train", "CFG", "--set", "loss.name=infonse"], "choose from"),
    (["train", "CFG", "--set", "data.name=image_folder", "--set", "data.root=/nonexistent"], "does not exist"),
    (["embed", "/nonexistent", "--out", "x.npz"], "not a run folder"),
])
def test_bad_input_gives_one_line_error_and_nonzero_exit(args, needle, tmp_path):
    args = [str(ROOT / "examples" / "bundled_quick.toml") if a == "CFG" else a for a in args]
    res = wb(*args, "--out", str(tmp_path)) if args[0] == "train" else wb(*args, cwd=tmp_path)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    assert needle in res.stderr and res.stderr.strip().startswith("error:")


def test_registry_listings():
    for name, needle in (("losses", "ntxent"), ("datasets", "image_folder"), ("models", "resnet18_cifar"),
                         ("augmentations", "random_resized_crop"), ("methods", "queue_size = 4096")):
        res = wb(name)
        assert res.returncode == 0 and needle in res.stdout
    assert "temperature = 0.2" in wb("losses").stdout and "queue_size" not in wb("losses").stdout.split("\n\n")[0]
    assert "  moco               moco" in wb("methods").stdout  # the method each loss trains with by default
    assert "in_memory = 'auto'" in wb("datasets").stdout  # the [data] settings every dataset shares
    assert "augment.start_size" in wb("augmentations").stdout  # progressive resolution, beside the presets


def test_neighbours_returns_the_image_itself_first(trained_run, tmp_path):
    from PIL import Image

    from workbench.core.config import Config
    from workbench.core.data import load_splits

    run, _ = trained_run
    train, _ = load_splits(Config.load(run / "config.toml").data)
    Image.fromarray(train.images[7, 0].numpy()).save(tmp_path / "q.png")
    res = wb("neighbours", str(run), "--image", str(tmp_path / "q.png"), "-k", "5")
    assert res.returncode == 0, res.stderr
    first = res.stdout.splitlines()[1].split()
    assert int(first[1]) == int(train.indices[7]) and float(first[2]) > 0.999
    bad = wb("neighbours", str(run), "--image", str(tmp_path / "nope.png"))
    assert bad.returncode != 0 and "does not exist" in bad.stderr


def test_training_a_config_from_before_the_method_section_says_what_moved_once(tmp_path):
    from tests.core.test_method_config import OLD_MOCO_TOML

    (tmp_path / "old.toml").write_text(OLD_MOCO_TOML, encoding="utf-8")
    res = wb("train", str(tmp_path / "old.toml"), *QUICK, "--set", "train.max_steps=2", "--out", str(tmp_path / "runs"))
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("note: ") >= 1 and res.stderr.count("moved from [loss] to [method] (method 'moco')") == 1
    (run,) = (tmp_path / "runs").iterdir()
    assert '[method]\nname = "moco"\nmomentum = 0.9\nqueue_size = 64\n' in (run / "config.toml").read_text(encoding="utf-8")


def test_neighbours_of_an_image_folder_run_name_the_files(tmp_path, capsys):
    """Each neighbour's file is printed beside its index; the query, a file of the folder, is its own first neighbour."""
    from PIL import Image

    from tests.test_bad_inputs import make_run
    from workbench.cli import main
    from workbench.core.config import Config
    from workbench.core.data import load_splits

    rng = np.random.default_rng(0)
    for c, cls in enumerate(("cats", "dogs", "owls")):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(12):
            pixels = rng.normal(60 + 70 * c, 40, (16, 16, 3)).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "imgs" / cls / f"{cls}_{i:02d}.png")
    cfg = Config().with_overrides(['data.name="image_folder"', f'data.root="{tmp_path / "imgs"}"', "data.image_size=16",
                                   "data.holdout=0.25"])
    run = make_run(tmp_path, cfg=cfg, channels=3, size=16)
    query = tmp_path / "imgs" / "dogs" / "dogs_05.png"
    assert main(["neighbours", str(run), "--image", str(query), "-k", "4", "--out", str(tmp_path / "n.csv")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["rank", "index", "similarity", "label", "path"]
    rows = [line.split() for line in lines[1:]]
    assert len(rows) == 4 and rows[0][4] == str(query) and float(rows[0][2]) > 0.9999
    train, _ = load_splits(cfg.data)
    for _, index, _, label, path in rows:  # the file is in its label's folder and holds the training image of that index
        assert Path(path).parent.name == label
        (row,) = (train.indices == int(index)).nonzero()[:, 0].tolist()
        assert np.array_equal(np.asarray(Image.open(path)), train.images[row].permute(1, 2, 0).numpy())
    csv = (tmp_path / "n.csv").read_text().splitlines()
    assert csv[0] == "rank,index,similarity,label,path" and csv[1].endswith("," + str(query))
    assert main(["neighbours", str(run), "--image", str(query), "-k", "4", "--out", "-"]) == 0  # the CSV on stdout
    assert capsys.readouterr().out.splitlines() == csv


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])  # Ctrl-C; kill, timeout or a job scheduler's end of time
def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path, signame):
    import signal

    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    with subprocess.Popen([sys.executable, "-m", "workbench", "train", str(ROOT / "examples" / "bundled_quick.toml"),
                           "--set", "train.epochs=50", "--set", "train.log_every=1", "--out", str(tmp_path)],
                          stderr=subprocess.PIPE, text=True, env=env) as proc:
        for line in proc.stderr:
            if "img/s" in line:
                break
        proc.send_signal(getattr(signal, signame))
        rest = proc.stderr.read()
        assert proc.wait(timeout=120) == 130  # a script tells a stop from a finish
    assert "stopped" in rest and "resume with: workbench train --resume" in rest and "Traceback" not in rest
    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    assert (run / "checkpoints" / "last.pt").is_file()


@pytest.mark.parametrize("argv", [["-v", "train", "x.toml"], ["train", "-v", "x.toml"], ["train", "x.toml", "--verbose"]])
def test_verbose_works_before_or_after_the_command(argv):
    from workbench.cli import build_parser

    assert build_parser().parse_args(argv).verbose is True
    assert build_parser().parse_args(["train", "x.toml"]).verbose is False


def test_the_window_without_a_display_or_its_libraries_is_one_line(tmp_path, monkeypatch):
    from workbench.cli import check_display
    from workbench.core.registry import ConfigError

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    res = subprocess.run([sys.executable, "-m", "workbench", "gui"], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith("error: no display to open the window on") and "workbench train" in res.stderr
    monkeypatch.delenv("QT_QPA_PLATFORM")
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("workbench.cli.missing_x11_libraries", lambda: ["libxcb-cursor.so.0", "libxcb-icccm.so.4"])
    with pytest.raises(ConfigError, match="sudo apt install libxcb-cursor0 libxcb-icccm4"):
        check_display()


def test_a_usage_mistake_is_one_line_in_a_real_process(tmp_path):
    res = wb("neighbours", str(tmp_path), "--image", "q.png", "-k", "0", cwd=tmp_path)
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert res.stderr.startswith("error: workbench neighbours: argument -k: must be >= 1, got 0")


def test_embed_overwrites_only_with_force(trained_run, tmp_path):
    run, _ = trained_run
    out = tmp_path / "emb.npz"
    out.write_bytes(b"old")
    res = wb("embed", str(run), "--out", str(out))
    assert res.returncode == 2 and "already exists; add --force" in res.stderr and out.read_bytes() == b"old"
    res = wb("embed", str(run), "--out", str(out), "--force")
    assert res.returncode == 0, res.stderr
    assert np.load(out)["embeddings"].shape[0] == 1000
    assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def test_progress_line_of_a_time_boxed_run_follows_its_clock():
    import io

    from workbench.cli import TerminalProgress
    from workbench.core.events import StepEvent

    buf = io.StringIO()
    out = TerminalProgress(10**6, buf)
    out.boxed = True  # a time budget ends the run long before its million steps
    out.update(StepEvent(1, 50, 1.0, 1e-3, 100.0, 30.0, {}, 0.5))
    assert "step 50 [" + "#" * 15 + " " * 15 + "]" in buf.getvalue()


def test_a_query_image_is_prepared_as_the_training_images_were(tmp_path, capsys):
    """Non-square, transparent, 16-bit and EXIF-rotated files find themselves: the query goes through the loader's
    decoding (centre square, white background, scaled depth, orientation), not a plain convert and stretch."""
    from PIL import Image

    from tests.test_bad_inputs import make_run
    from workbench.cli import main
    from workbench.core.config import Config

    rng = np.random.default_rng(1)
    root = tmp_path / "imgs"
    folder = root / "train"  # beside test/: every file below is in the training split
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            for i in range(10):
                Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / split / cls / f"{i}.png")
    odd = {"wide.png": Image.fromarray(rng.integers(0, 255, (16, 40, 3), dtype=np.uint8)),
           "alpha.png": Image.fromarray(rng.integers(0, 255, (16, 16, 4), dtype=np.uint8), "RGBA"),
           "deep.png": Image.fromarray(rng.integers(0, 65535, (16, 16), dtype=np.uint16))}
    for name, im in odd.items():
        im.save(folder / "a" / name)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees
    Image.fromarray(rng.integers(0, 255, (24, 40, 3), dtype=np.uint8)).save(folder / "b" / "turned.jpg", exif=exif, quality=95)
    cfg = Config().with_overrides(['data.name="image_folder"', f'data.root="{root}"', "data.image_size=16"])
    run = make_run(tmp_path, cfg=cfg, channels=3, size=16)
    for query in [folder / "a" / n for n in odd] + [folder / "b" / "turned.jpg"]:
        capsys.readouterr()
        assert main(["neighbours", str(run), "--image", str(query), "-k", "1"]) == 0
        row = capsys.readouterr().out.splitlines()[1].split()
        assert row[4] == str(query) and float(row[2]) > 0.9999, (query, row)


def test_other_data_to_embed_are_decoded_at_the_size_the_run_was_trained_at(tmp_path):
    from types import SimpleNamespace

    from workbench.cli import run_data
    from workbench.core.config import Config

    (tmp_path / "a").mkdir()
    rm = SimpleNamespace(cfg=Config().with_overrides(["data.name=image_folder", f"data.root={tmp_path / 'a'}"]),
                         image_size=64)
    assert run_data(rm, []).data.image_size == 0  # its own data, as trained (the decoded store is reused)
    assert run_data(rm, [f"data.root={tmp_path / 'b'}"]).data.image_size == 64  # not a size chosen for the new folder
    assert run_data(rm, [f"data.root={tmp_path / 'b'}", "data.image_size=32"]).data.image_size == 32  # said: kept


def test_check_writes_one_csv_per_list_and_says_what_is_worth_a_look(trained_run, tmp_path):
    import csv
    import json

    run, _ = trained_run
    out = tmp_path / "checks"
    res = wb("check", str(run), "--out", str(out), "--subset", "25")
    assert res.returncode == 0, res.stderr
    assert "median nearest-neighbour distance" in res.stdout and "wrote" in res.stdout
    for name in ("duplicates", "leaks", "outliers", "label_issues", "confusion", "subset"):
        assert (out / f"{name}.csv").is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 512 + 1000 and summary["k"] == 10
    for line in summary["findings"]:  # every finding is on the terminal
        assert line in res.stdout
    rows = list(csv.DictReader((out / "label_issues.csv").read_text().splitlines()))
    assert len(rows) == summary["label_issues"] and set(rows[0]) >= {"file", "class", "suggested", "confidence"}
    assert len((out / "subset.txt").read_text().splitlines()) == 25
    res = wb("check", str(run), "--split", "train", "--out", str(tmp_path / "train"))
    assert res.returncode == 0 and not (tmp_path / "train" / "leaks.csv").exists()
    assert json.loads((tmp_path / "train" / "summary.json").read_text())["images"] == 512


def test_check_refuses_bad_input_in_one_line(trained_run, tmp_path):
    run, _ = trained_run
    res = wb("check", str(tmp_path / "nope"))
    assert res.returncode == 2 and res.stderr.startswith("error:") and len(res.stderr.strip().splitlines()) == 1
    res = wb("check", str(run), "--split", "val")
    assert res.returncode == 2 and "--split" in res.stderr
