"""Bad input, tried as a new user would: every case ends with one line on stderr that names the
field, file or value, the right exit code, and no traceback. Run in-process through
``workbench.cli.main`` (fast); tests/test_cli.py runs a few of the same through a real process."""
from __future__ import annotations

import errno
import re
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import ROOT
from workbench.cli import main
from workbench.core.config import Config
from workbench.core.methods import build_network
from workbench.core.registry import ConfigError
from workbench.core.resume import check_resume
from workbench.core.runfolder import check_runs_root, new_run_dir
from workbench.core.runs import CHECKPOINT_KEYS

CFG = str(ROOT / "examples" / "bundled_quick.toml")


def run_cli(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.err


def assert_one_line(err: str, needle: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert lines[0].startswith("error: "), err
    assert needle.lower() in lines[0].lower(), f"{needle!r} not in {lines[0]!r}"


# ----- config values through --set: (override, what the line must name) -----
SET_CASES = [
    ("train.epochs=0", "train.epochs"),
    ("train.epochs=-3", "train.epochs"),
    ("train.epochs=1e9", "train.epochs"),
    ("train.epochs=2.5", "train.epochs: expected an integer"),
    ("train.epochs=ten", "train.epochs: expected an integer"),
    ("train.epochs=[1]", "train.epochs"),
    ("train.batch_size=1", "train.batch_size"),
    ("train.batch_size=0", "train.batch_size"),
    ("train.batch_size=-64", "train.batch_size"),
    ("train.batch_size=1000000", "train.batch_size"),
    ("train.device=tpu", "train.device"),
    ("train.device=cuda:x", "train.device"),
    ("train.device=3", "train.device"),
    ("train.seed=-1", "train.seed"),
    ("train.seed=99999999999", "train.seed"),
    ("train.seed=0.5", "train.seed"),
    ("train.max_steps=-1", "train.max_steps"),
    ("train.time_budget_s=-5", "train.time_budget_s"),
    ("train.time_budget_s=inf", "train.time_budget_s"),
    ("train.time_budget_s=nan", "train.time_budget_s"),
    ("data.root=/tmp", "data.root: '/tmp' is set but data.name is 'bundled'"),  # a folder given, the sample trained on
    ("train.log_every=0", "train.log_every"),
    ("train.log_every=-10", "train.log_every"),
    ("train.checkpoint_every=0", "train.checkpoint_every"),
    ("train.checkpoint_every=-1", "train.checkpoint_every"),
    ("train.checkpoint_minutes=0", "train.checkpoint_minutes"),
    ("train.checkpoint_minutes=-1", "train.checkpoint_minutes"),
    ("train.checkpoint_minutes=inf", "train.checkpoint_minutes"),
    ("train.checkpoint_minutes=nan", "train.checkpoint_minutes"),
    ("train.threads=100000", "train.threads"),
    ("train.threads=2000", "train.threads"),
    ("train.threads=-1", "train.threads"),
    ("train.bf16=maybe", "train.bf16: expected true or false"),
    ("train.compile=2", "train.compile"),
    ("train.channels_last='yes please'", "train.channels_last"),
    ("train.epoch=3", "train.epoch"),
    ("optim.lr=0", "optim.lr"),
    ("optim.lr=-1", "optim.lr"),
    ("optim.lr=inf", "optim.lr"),
    ("optim.lr=nan", "optim.lr"),
    ("optim.lr=100", "optim.lr"),
    ("optim.lr=fast", "optim.lr: expected a number"),
    ("optim.weight_decay=inf", "optim.weight_decay"),
    ("optim.weight_decay=-0.1", "optim.weight_decay"),
    ("optim.weight_decay=nan", "optim.weight_decay"),
    ("optim.momentum=1", "optim.momentum"),
    ("optim.momentum=-0.5", "optim.momentum"),
    ("optim.momentum=nan", "optim.momentum"),
    ("optim.warmup_epochs=-1", "optim.warmup_epochs"),
    ("optim.warmup_epochs=inf", "optim.warmup_epochs"),
    ("optim.schedule=linear", "optim.schedule"),
    ("optim.min_lr_ratio=2", "optim.min_lr_ratio"),
    ("optim.min_lr_ratio=-0.1", "optim.min_lr_ratio"),
    ("optim.name=rmsprop", "rmsprop"),
    ("optim.betas=[0.9, 0.99]", "optim.betas"),
    ("data.name=imagenet", "imagenet"),
    ("data.image_size=4", "data.image_size"),
    ("data.image_size=5000", "data.image_size"),
    ("data.image_size=-28", "data.image_size"),
    ("data.holdout=0", "data.holdout"),
    ("data.holdout=1", "data.holdout"),
    ("data.holdout=nan", "data.holdout"),
    ("data.holdout=inf", "data.holdout"),
    ("data.subset=-1", "data.subset"),
    ("data.download=perhaps", "data.download"),
    ("data.in_memory=3", "data.in_memory"),
    ("data.rooot=/tmp", "data.rooot"),
    ("model.encoder=vgg", "vgg"),
    ("model.head_layers=-1", "model.head_layers"),
    ("model.head_layers=100", "model.head_layers"),
    ("model.head_hidden=-1", "model.head_hidden"),
    ("model.head_out=0", "model.head_out"),
    ("model.head_out=10000000", "model.head_out"),
    ("model.predictor_hidden=0", "model.predictor_hidden"),
    ("model.head_bn=2", "model.head_bn"),
    ("model.width=inf", "model.width"),
    ("model.width=wide", "model.width"),
    ("model.depth=9", "depth"),
    ("model.depth=two", "depth"),
    ("model.stages=0", "stages"),
    ("model.dept=3", "model.dept"),
    ("loss.temperature=0", "temperature"),
    ("loss.temperature=-1", "temperature"),
    ("loss.temperature=inf", "temperature"),
    ("loss.temperature=nan", "temperature"),
    ("loss.temperature=hot", "temperature"),
    ("loss.name=infonce", "infonce"),
    ("loss.temprature=0.1", "loss.temprature"),
    ("loss.similarity=euclid", "similarity"),
    ("loss.learnable_temperature=sometimes", "learnable_temperature"),
    ("augment.preset=nope", "augment.preset"),
    ("augment.start_size=0.1", "augment.start_size"),
    ("augment.start_size=2", "augment.start_size"),
    ("augment.full_size_at=0", "augment.full_size_at"),
    ("augment.full_size_at=soon", "augment.full_size_at"),
    ("eval.max_share=0", "eval.max_share"),
    ("eval.max_share=1.5", "eval.max_share"),
    ("eval.max_share=nan", "eval.max_share"),
    ("augment.recipe=3", "augment.recipe"),
    ("augment.recipe=[3]", "augment.recipe[0]"),
    ("augment.recipe=['flip']", "augment.recipe[0]"),
    ("augment.recipe=[{name='blur'}]", "blur"),
    ("augment.recipe=[{name='horizontal_flip', p=1.5}]", "augment.recipe[0]"),
    ("augment.recipe=[{name='horizontal_flip', p=nan}]", "augment.recipe[0]"),
    ("augment.recipe=[{name='horizontal_flip', prob=0.5}]", "prob"),
    ("augment.recipe=[{name='random_resized_crop', scale=[0.9, 0.2]}]", "scale"),
    ("augment.recipe=[{name='random_resized_crop', scale=[0.2, inf]}]", "augment.recipe[0]"),
    ("augment.recipe=[{p=0.5}]", "augment.recipe[0]"),
    ("eval.every=0", "eval.every"),
    ("eval.every=-2", "eval.every"),
    ("eval.knn_k=0", "eval.knn_k"),
    ("eval.knn_k=-5", "eval.knn_k"),
    ("eval.knn_temperature=0", "eval.knn_temperature"),
    ("eval.knn_temperature=inf", "eval.knn_temperature"),
    ("eval.knn_temperature=nan", "eval.knn_temperature"),
    ("eval.bank_size=-1", "eval.bank_size"),
    ("eval.test_size=-1", "eval.test_size"),
    ("eval.embed_points=-1", "eval.embed_points"),
    ("eval.embed_every_steps=-1", "eval.embed_every_steps"),
    ("eval.linear_probe_epochs=0", "eval.linear_probe_epochs"),
    ("eval.linear_probe=maybe", "eval.linear_probe"),
    ("eval.tensorboard=7", "eval.tensorboard"),
    ("nonsense", "section.key=value"),
    ("trian.epochs=1", "unknown section 'trian'"),
    ("=1", "section.key=value"),
    (".epochs=1", "unknown section"),
    ("train.=1", "train."),
]


@pytest.mark.parametrize("override, needle", SET_CASES, ids=[c[0][:40] for c in SET_CASES])
def test_bad_set_value(override, needle, capsys, tmp_path):
    code, err = run_cli(capsys, "train", CFG, "--set", override, "--out", tmp_path)
    assert code == 2
    assert_one_line(err, needle)
    assert not any(tmp_path.iterdir()), "a rejected config must not create a run folder"


# ----- config files: (TOML text, what the line must name) -----
FILE_CASES = [
    ('data = "bundled"\n', "data: expected a table"),
    ("train = 3\n", "train: expected a table"),
    ("loss = [1, 2]\n", "loss: expected a table"),
    ("model = true\n", "model: expected a table"),
    ('augment = "simclr"\n', "augment: expected a table"),
    ("optim = 0.1\n", "optim: expected a table"),
    ('eval = "every"\n', "eval: expected a table"),
    ("[trainer]\nepochs = 3\n", "unknown section"),
    ("[train\nepochs = 3\n", "not valid TOML"),
    ("[train]\nepochs = \n", "not valid TOML"),
    ("[train]\nepochs = 1.5\n", "train.epochs"),
    ("[train]\nepochs = [1]\n", "train.epochs"),
    ("[train]\nepochs = {a = 1}\n", "train.epochs"),
    ("[train]\nthreads = 100000\n", "train.threads"),
    ("[train]\ncheckpoint_every = 0\n", "train.checkpoint_every"),
    ("[optim]\nlr = inf\n", "optim.lr"),
    ("[optim]\nweight_decay = inf\n", "optim.weight_decay"),
    ("[optim]\nweight_decay = -inf\n", "optim.weight_decay"),
    ("[loss]\ntemperature = nan\n", "temperature"),
    ("[loss]\nname = 3\n", "loss.name"),
    ('[augment]\nrecipe = "flip"\n', "augment.recipe"),
    ('[augment]\nrecipe = ["flip"]\n', "augment.recipe[0]"),
    ("[[augment.recipe]]\np = 0.5\n", "augment.recipe[0]"),
    ("[model]\nhead_out = -1\n", "model.head_out"),
    ("[eval]\nknn_k = 0\n", "eval.knn_k"),
    ("[data]\nholdout = 1.5\n", "data.holdout"),
]


@pytest.mark.parametrize("text, needle", FILE_CASES, ids=[f"file{i}" for i in range(len(FILE_CASES))])
def test_bad_config_file(text, needle, capsys, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(text)
    code, err = run_cli(capsys, "train", path, "--out", tmp_path / "runs")
    assert code == 2
    assert_one_line(err, needle)
    assert not (tmp_path / "runs").exists()


def test_config_that_is_not_utf8_or_a_folder(capsys, tmp_path):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"[train]\n# caf\xe9\nepochs = 3\n")
    code, err = run_cli(capsys, "train", bad, "--out", tmp_path)
    assert code == 2
    assert_one_line(err, str(bad))
    code, err = run_cli(capsys, "train", tmp_path, "--out", tmp_path)
    assert code == 2
    assert_one_line(err, "folder")


# ----- command-line usage: (argv, exit code, what the line must name) -----
USAGE_CASES = [
    (["train"], 2, "CONFIG.toml"),
    (["train", "missing.toml"], 2, "missing.toml"),
    (["train", "CFG", "--resume", "RUNS"], 2, "drop CONFIG"),
    (["train", "--resume", "RUNS", "--set", "train.epochs=2"], 2, "drop CONFIG"),
    (["train", "--bogus"], 2, "--bogus"),
    (["train", "CFG", "--set"], 2, "--set"),
    (["frobnicate"], 2, "frobnicate"),
    (["embed"], 2, "run_dir"),
    (["embed", "RUN"], 2, "--out"),
    (["embed", "RUN", "--split", "val", "--out", "x.npz"], 2, "val"),
    (["neighbours", "RUN"], 2, "--image"),
    (["neighbours", "RUN", "--image", "IMG", "-k", "0"], 2, "-k"),
    (["neighbours", "RUN", "--image", "IMG", "-k", "-5"], 2, "-k"),
    (["neighbours", "RUN", "--image", "IMG", "-k", "ten"], 2, "ten"),
    (["export", "RUN", "--format", "pdf", "--out", "x"], 2, "pdf"),
    (["export", "RUN", "--format", "safetensors", "--out", "precious.txt"], 2, "a safetensors file ends in .safetensors"),
    (["export", "RUN", "--format", "onnx_uint8", "--out", "m.onnx"], 2, "ends in .uint8.onnx"),
    (["embed", "RUN", "--out", "e.npz", "--set", "loss.name=dcl"], 2, "only data.KEY=VALUE"),
    (["-v", "train", "missing.toml"], 2, "missing.toml"),
    (["train", "-v", "CFG", "--set", "train.epochs=0"], 2, "train.epochs"),
    (["losses", "--what"], 2, "--what"),
]


def test_export_without_out_writes_into_the_run_folder_and_never_over_an_earlier_export(tmp_path, capsys):
    run = make_run(tmp_path)
    code, _ = run_cli(capsys, "export", run, "--format", "safetensors")
    assert code == 0 and (run / "export" / "safetensors" / "encoder.safetensors").is_file()
    code, err = run_cli(capsys, "export", run, "--format", "safetensors")
    assert code == 2 and "already exists; add --force" in err


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    """A run folder with a valid, finite checkpoint of the default small network (no training)."""
    return make_run(tmp_path_factory.mktemp("good"))


def make_run(folder, mutate=None, cfg=None, channels=1, size=28):
    cfg = cfg or Config().with_overrides(["data.subset=512", "train.batch_size=64"])
    run = folder / "run"
    (run / "checkpoints").mkdir(parents=True)
    cfg.save(run / "config.toml", meta={"seed": 0})
    torch.manual_seed(0)
    net = build_network(cfg, channels, size)
    state = {k: 0 for k in CHECKPOINT_KEYS} | {"model": net.state_dict(), "loss": {}, "optim": {}, "elapsed": 0.0,
                                                "mean": [0.5] * channels, "std": [0.25] * channels, "channels": channels,
                                                "image_size": size, "config": cfg.to_dict()}
    if mutate:
        state = mutate(state)
    torch.save(state, run / "checkpoints" / "last.pt")
    return run


def _fill(argv, good_run, tmp_path):
    img = tmp_path / "q.png"
    if not img.exists():
        from PIL import Image

        Image.new("L", (28, 28), 128).save(img)
    sub = {"CFG": CFG, "RUN": str(good_run), "RUNS": str(good_run), "IMG": str(img)}
    return [sub.get(a, a) for a in argv]


@pytest.mark.parametrize("argv, code, needle", USAGE_CASES, ids=[" ".join(c[0])[:40] for c in USAGE_CASES])
def test_bad_command_line(argv, code, needle, capsys, tmp_path, good_run, monkeypatch):
    monkeypatch.chdir(tmp_path)
    got, err = run_cli(capsys, *_fill(argv, good_run, tmp_path))
    assert got == code
    assert_one_line(err, needle)


# ----- run folders and checkpoints that cannot be used -----
def _nan(state):
    key = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][key] = state["model"][key].clone().fill_(math.nan)
    return state


def _inf(state):
    key = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][key] = state["model"][key].clone().fill_(math.inf)
    return state


BROKEN_CHECKPOINTS = [
    ("tensor", lambda s: torch.ones(3), "not a workbench checkpoint"),
    ("list", lambda s: [1, 2, 3], "not a workbench checkpoint"),
    ("missing model", lambda s: {k: v for k, v in s.items() if k != "model"}, "'model'"),
    ("missing step", lambda s: {k: v for k, v in s.items() if k != "step"}, "'step'"),
    ("model not a dict", lambda s: s | {"model": torch.ones(2)}, "'model'"),
    ("nan weights", _nan, "non-finite"),
    ("inf weights", _inf, "non-finite"),
    ("negative step", lambda s: s | {"step": -4}, "'step'"),
    ("step as text", lambda s: s | {"step": "ten"}, "'step'"),
    ("wrong shape", lambda s: s | {"model": {k: (v[:1] if v.ndim else v) for k, v in s["model"].items()}}, "shape"),
    ("extra tensors", lambda s: s | {"model": s["model"] | {"extra.weight": torch.ones(2)}}, "extra.weight"),
    ("loss changed", lambda s: s | {"config": s["config"] | {"loss": {"name": "dcl", "temperature": 0.1}}},
     "the loss was changed from dcl to ntxent"),
    ("encoder width changed", lambda s: s | {"config": s["config"] | {"model": s["config"]["model"] | {"width": 64}}},
     "model.width was changed from 64 to 32"),
]


@pytest.mark.parametrize("name, mutate, needle", BROKEN_CHECKPOINTS, ids=[c[0] for c in BROKEN_CHECKPOINTS])
def test_resume_refuses_an_unusable_checkpoint_and_writes_nothing(name, mutate, needle, capsys, tmp_path):
    run = make_run(tmp_path, mutate)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    code, err = run_cli(capsys, "train", "--resume", run)
    assert code == 2
    assert_one_line(err, needle)
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before, "a refused resume must leave the run folder exactly as it was"


@pytest.mark.parametrize("name, mutate, needle", [c for c in BROKEN_CHECKPOINTS if c[0] in
                                                  ("tensor", "nan weights", "inf weights", "missing model")],
                         ids=["tensor", "nan", "inf", "missing"])
@pytest.mark.parametrize("command", ["embed", "export"])
def test_embed_and_export_refuse_an_unusable_checkpoint(command, name, mutate, needle, capsys, tmp_path):
    run = make_run(tmp_path, mutate)
    out = tmp_path / ("out.npz" if command == "embed" else "out")  # export: a folder
    code, err = run_cli(capsys, command, run, "--out", out)
    assert code == 2
    assert_one_line(err, needle)
    assert not out.exists()


def test_damaged_checkpoint_bytes_and_missing_checkpoint(capsys, tmp_path):
    run = make_run(tmp_path)
    ckpt = run / "checkpoints" / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    code, err = run_cli(capsys, "train", "--resume", run)
    assert code == 2
    assert_one_line(err, "corrupted or truncated; start a new run")
    assert "PytorchStreamReader" not in err and "miniz" not in err  # torch's own sentences stay out of the line
    ckpt.unlink()
    code, err = run_cli(capsys, "train", "--resume", run)
    assert code == 2
    assert_one_line(err, str(ckpt))


def _damage_last_keep_prev(run):
    """last.pt truncated, prev.pt a whole checkpoint of step 7 with other weights; returns prev's state."""
    last = run / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)
    state["step"] = 7
    state["model"] = {k: (v + 1 if v.is_floating_point() else v) for k, v in state["model"].items()}
    torch.save(state, last.with_name("prev.pt"))
    last.write_bytes(last.read_bytes()[:1000])
    return state


def test_a_damaged_last_checkpoint_names_the_command_that_goes_back_to_prev(capsys, tmp_path):
    run = make_run(tmp_path)
    _damage_last_keep_prev(run)
    code, err = run_cli(capsys, "train", "--resume", run)
    assert code == 2
    ckpt = run / "checkpoints"
    assert_one_line(err, f"corrupted or truncated; go back to the previous checkpoint with: mv {ckpt / 'prev.pt'} {ckpt / 'last.pt'}")
    command = err.strip().split("with: ", 1)[1].split()
    assert command[0] == "mv"
    Path(command[2]).unlink()  # the user's `mv`
    Path(command[1]).rename(command[2])
    assert check_resume(run)[1]["step"] == 7


def test_embed_and_export_fall_back_to_a_whole_prev_checkpoint_with_a_warning(capsys, tmp_path):
    from safetensors.torch import load_file

    run = make_run(tmp_path)
    prev = _damage_last_keep_prev(run)
    code, err = run_cli(capsys, "export", run, "--format", "safetensors", "--out", tmp_path / "x")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "last.pt' is unusable" in warnings[0] and "prev.pt" in warnings[0] and "step 7" in warnings[0]
    exported = load_file(tmp_path / "x" / "encoder.safetensors")
    enc = {k[len("encoder."):]: v for k, v in prev["model"].items() if k.startswith("encoder.")}
    assert exported.keys() == enc.keys() and all(torch.equal(exported[k], enc[k]) for k in enc)
    assert len((run / "checkpoints" / "last.pt").read_bytes()) == 1000  # reading never repairs or rewrites


# ----- --out of train: a file, inside a file, not writable -----
def test_train_out_that_is_a_file_or_inside_one(capsys, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    for out, needle in ((afile, f"--out '{afile}' is a file, not a folder"),
                        (afile / "sub", f"--out '{afile / 'sub'}': '{afile}' is a file, not a folder")):
        code, err = run_cli(capsys, "train", CFG, "--out", out)
        assert code == 2
        assert_one_line(err, needle)
    assert afile.read_text() == "keep me"
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    code, err = run_cli(capsys, "train", CFG, "--out", tmp_path / "dangling")
    assert code == 2
    assert_one_line(err, f"--out '{tmp_path / 'dangling'}' is a broken link; give a folder")


def test_train_out_that_is_a_run_folder_is_refused(capsys, tmp_path):
    """A new run is not nested inside an existing run folder: the line says to give the folder above or --resume."""
    from workbench.core.runfolder import write_status

    run = make_run(tmp_path)
    write_status(run, "stopped")
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    code, err = run_cli(capsys, "train", CFG, "--out", run)
    assert code == 2
    assert_one_line(err, f"--out '{run}' is a run folder; give the folder that holds runs (such as '{tmp_path}')")
    assert "--resume" in err
    code, err = run_cli(capsys, "train", CFG, "--out", run / "checkpoints")  # nor anywhere inside one
    assert code == 2
    assert_one_line(err, f"--out '{run / 'checkpoints'}' is inside the run folder '{run}'")
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    project = tmp_path / "project"  # a folder that merely holds a config.toml and a checkpoints/ folder of its own
    (project / "checkpoints").mkdir(parents=True)
    (project / "config.toml").write_text("[train]\nepochs = 1\n")
    assert check_runs_root(project, "--out") == project


def test_embed_and_export_out_inside_a_file(capsys, tmp_path):
    """An --out whose path runs through a file is one line naming the file, exit 2, before anything loads."""
    run = make_run(tmp_path)
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    for argv, shown in ((["embed", run, "--out", afile / "x.npz"], afile / "x.npz"),
                        (["export", run, "--format", "safetensors", "--out", afile / "sub"], afile / "sub"),
                        (["export", run, "--format", "npz", "--out", afile / "e.npz"], afile / "e.npz"),
                        (["neighbours", run, "--image", CFG, "--out", afile / "n.csv"], afile / "n.csv")):
        code, err = run_cli(capsys, *argv)
        assert code == 2, argv
        assert_one_line(err, f"--out '{shown}': '{afile}' is a file, not a folder; ")
        advice = "give a folder" if shown.suffix == "" else "choose another path for --out"  # a folder, or a file's name
        assert advice in err
    code, err = run_cli(capsys, "export", run, "--format", "safetensors", "--out", afile)
    assert code == 2
    assert_one_line(err, f"--out '{afile}' is a file, not a folder")
    assert afile.read_text() == "keep me"


def test_a_run_whose_data_folder_is_gone_says_how_to_point_at_it(capsys, tmp_path):
    cfg = Config().with_overrides(["data.name=image_folder", f"data.root={tmp_path / 'photos'}"])
    run = make_run(tmp_path, cfg=cfg)
    for argv in (["embed", run, "--out", tmp_path / "e.npz"], ["neighbours", run, "--image", CFG]):
        code, err = run_cli(capsys, *argv)
        assert code == 2
        assert_one_line(err, f"the folder this run trained on, '{tmp_path / 'photos'}', is not there any more")
        assert "--set data.root=FOLDER" in err


def test_an_image_that_is_a_folder_says_so(capsys, tmp_path):
    run = make_run(tmp_path)
    code, err = run_cli(capsys, "neighbours", run, "--image", tmp_path)
    assert code == 2
    assert_one_line(err, f"image '{tmp_path}' is a folder; give an image file")


def test_sweep_out_inside_a_file(capsys, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    code, err = run_cli(capsys, "sweep", ROOT / "examples" / "sweep_temperature.toml", "--out", afile / "sub")
    assert code == 2
    assert_one_line(err, f"sweep folder '{afile / 'sub'}': '{afile}' is a file, not a folder")
    assert afile.read_text() == "keep me"


def test_train_out_that_cannot_be_written(capsys, tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):  # root ignores permissions: answer as the system answers any other user
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == ro else real(p, mode, **kw))
    code, err = run_cli(capsys, "train", CFG, "--out", ro / "runs")
    assert code == 2
    assert_one_line(err, f"--out '{ro / 'runs'}': cannot create folders in '{ro}' (permission denied)")
    assert not any(ro.iterdir())


def test_a_refused_run_folder_is_one_line(tmp_path, monkeypatch):
    """What the operating system refuses while the run folder is made (read-only file system, a race) is named."""
    def refuse(self, *a, **kw):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(ConfigError, match="runs_root '.*': cannot create the run folder '.*' \\(Read-only file system\\)"):
        new_run_dir(tmp_path, Config())


def test_not_a_run_folder(capsys, tmp_path):
    for argv in (["train", "--resume", tmp_path], ["embed", tmp_path, "--out", tmp_path / "e.npz"],
                 ["export", tmp_path, "--out", tmp_path / "x"], ["neighbours", tmp_path / "nope", "--image", CFG]):
        code, err = run_cli(capsys, *argv)
        assert code == 2
        assert_one_line(err, "not a run folder")


def test_resume_with_a_broken_config_names_the_file(capsys, tmp_path):
    run = make_run(tmp_path)
    (run / "config.toml").write_text("[train]\nepochs = 0\n")
    code, err = run_cli(capsys, "train", "--resume", run)
    assert code == 2
    assert_one_line(err, "train.epochs")


# ----- nothing overwritten without --force -----
@pytest.mark.parametrize("argv, target", [
    (["embed", "RUN", "--out", "T"], "T"),
    (["export", "RUN", "--format", "safetensors", "--out", "T"], "T"),
    (["export", "RUN", "--format", "npz", "--out", "T"], "T"),
    (["neighbours", "RUN", "--image", "IMG", "--out", "T"], "T"),
], ids=["embed", "export-safetensors", "export-npz", "neighbours"])
def test_existing_output_is_never_overwritten_without_force(argv, target, capsys, tmp_path, good_run):
    suffix = {"embed": ".npz", "export": ".safetensors" if "safetensors" in argv else ".npz", "neighbours": ".csv"}[argv[0]]
    path = tmp_path / f"existing{suffix}"
    path.write_bytes(b"keep me")
    code, err = run_cli(capsys, *[str(path) if a == "T" else a for a in _fill(argv, good_run, tmp_path)])
    assert code == 2
    assert_one_line(err, str(path))
    assert "--force" in err
    assert path.read_bytes() == b"keep me"


def test_output_that_is_a_folder_is_named(capsys, tmp_path, good_run):
    code, err = run_cli(capsys, "embed", good_run, "--out", tmp_path)
    assert code == 2
    assert_one_line(err, str(tmp_path))


def test_embed_out_dash_writes_the_npz_to_stdout_and_no_file(capsysbinary, tmp_path, good_run, monkeypatch):
    import io

    import numpy as np

    monkeypatch.chdir(tmp_path)
    assert main(["embed", str(good_run), "--out", "-"]) == 0
    cap = capsysbinary.readouterr()
    z = np.load(io.BytesIO(cap.out))
    assert z["embeddings"].dtype == np.float32 and z["embeddings"].shape[0] == len(z["labels"]) == len(z["indices"]) > 0
    assert b"to stdout" in cap.err and not (tmp_path / "-").exists()


def test_out_dash_to_a_terminal_or_for_export_is_refused(capsys, tmp_path, good_run, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    code, err = run_cli(capsys, "embed", good_run, "--out", "-")
    assert code == 2
    assert_one_line(err, "stdout is a terminal; redirect it")
    code, err = run_cli(capsys, "export", good_run, "--out", "-")
    assert code == 2
    assert_one_line(err, "--out -: an export is one or more files")
    assert not (tmp_path / "-").exists()


def test_unreadable_image_names_the_file(capsys, tmp_path, good_run):
    bad = tmp_path / "q.png"
    bad.write_text("not an image")
    code, err = run_cli(capsys, "neighbours", good_run, "--image", bad)
    assert code == 2
    assert_one_line(err, str(bad))


def test_the_table_is_at_least_150_cases():
    """The tables above (each case a parametrised test) are the project's list of bad inputs."""
    assert len(SET_CASES) + len(FILE_CASES) + len(USAGE_CASES) + len(BROKEN_CHECKPOINTS) >= 150


def _tiny_folder(root, n: int):
    from PIL import Image

    for i in range(n):
        (root / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 20), ((60 * i) % 255, 200 * (i % 2), 90)).save(root / "ab"[i % 2] / f"{i}.png")
    return root


def test_a_held_out_split_of_one_image_trains_and_evaluates(capsys, tmp_path):
    data = _tiny_folder(tmp_path / "ten", 10)  # 10% held out: one image, no pair for uniformity
    sets = ["data.name=image_folder", f"data.root={data}", "train.batch_size=8", "train.epochs=1"]
    code, err = run_cli(capsys, "train", CFG, *[a for s in sets for a in ("--set", s)], "--out", tmp_path / "runs")
    assert code == 0 and "Traceback" not in err and "error" not in err.lower(), err
    assert "embedding collapse" not in err  # one point has no spread to judge


def test_a_holdout_that_leaves_nothing_to_train_names_the_holdout(capsys, tmp_path):
    data = _tiny_folder(tmp_path / "forty", 40)
    sets = ["data.name=image_folder", f"data.root={data}", "data.holdout=0.99"]
    code, err = run_cli(capsys, "train", CFG, *[a for s in sets for a in ("--set", s)], "--out", tmp_path / "runs")
    assert code != 0
    assert_one_line(err, "data.holdout: 0.99 of 40 images leaves 0 to train on")


def test_a_relative_data_root_is_recorded_whole_so_the_run_resumes_from_any_folder(capsys, tmp_path, monkeypatch):
    _tiny_folder(tmp_path / "mine", 40)
    monkeypatch.chdir(tmp_path)
    sets = ["data.name=image_folder", "data.root=mine", "train.batch_size=16", "train.epochs=1"]
    assert run_cli(capsys, "train", CFG, *[a for s in sets for a in ("--set", s)], "--out", tmp_path / "runs")[0] == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert Config.load(run / "config.toml").data.root == str(tmp_path / "mine")
    monkeypatch.chdir(tmp_path / "runs")
    code, err = run_cli(capsys, "train", "--resume", run)
    assert code == 0 and "error" not in err, err


def test_a_folder_of_images_given_to_a_torchvision_dataset_points_to_image_folder(capsys, tmp_path):
    data = _tiny_folder(tmp_path / "pics", 10)
    code, err = run_cli(capsys, "train", CFG, "--set", "data.name=cifar10", "--set", f"data.root={data}")
    assert_one_line(err, 'for a folder of images choose data.name = "image_folder"')
    code, err = run_cli(capsys, "train", CFG, "--set", "data.name=image_folder", "--set", f"data.root={tmp_path / 'nope'}")
    assert_one_line(err, "does not exist")
    assert "download" not in err  # a folder of images cannot be downloaded


def test_what_the_loader_said_is_kept_in_run_log_and_the_decided_shape_in_config(capsys, tmp_path):
    from PIL import Image

    from workbench.core.config import read_toml

    for i in range(40):
        (tmp_path / "mixed" / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20 + i, 20 + i), (6 * i, 90, 200)).save(tmp_path / "mixed" / "ab"[i % 2] / f"{i}.png")
    sets = ["data.name=image_folder", f"data.root={tmp_path / 'mixed'}", "train.batch_size=16", "train.epochs=1"]
    code, err = run_cli(capsys, "train", CFG, *[a for s in sets for a in ("--set", s)], "--out", tmp_path / "runs")
    assert code == 0 and "resizing all to" in err  # said on the console while decoding ...
    (run,) = (tmp_path / "runs").iterdir()
    log = (run / "run.log").read_text()
    assert "WARNING data (when loaded): " in log and "resizing all to" in log  # a warning there as on the console
    notes = [line[len("note: "):] for line in err.splitlines() if line.startswith("note: ")]
    assert notes and all(f"NOTE {n}" in log for n in notes)  # a stated decision reads NOTE there too
    meta = read_toml(run / "config.toml")["meta"]  # ... and what was decided is kept with the run
    assert meta["data"].startswith("3x39x39: 36 training, 4 held-out images"), meta["data"]


def test_a_resumed_run_whose_folder_changed_says_so(capsys, tmp_path):
    data = _tiny_folder(tmp_path / "grows", 40)
    sets = ["data.name=image_folder", f"data.root={data}", "train.batch_size=16", "train.epochs=1"]
    assert run_cli(capsys, "train", CFG, *[a for s in sets for a in ("--set", s)], "--out", tmp_path / "runs")[0] == 0
    (run,) = (tmp_path / "runs").iterdir()
    _tiny_folder(tmp_path / "more", 20)
    for f in (tmp_path / "more" / "a").iterdir():
        f.rename(data / "a" / f"new_{f.name}")
    text = (run / "config.toml").read_text().replace("epochs = 1\n", "epochs = 2\n")
    (run / "config.toml").write_text(text)
    code, err = run_cli(capsys, "train", "--resume", run)
    assert code == 0 and "this run trained on 3x20x20: 36 training, 4 held-out images; it resumes on 3x20x20: 45" in err, err


# ----- second round: the classes of issue 32 (each test fails on the code before it) -----
def _const_images(values, size=16):
    """uint8 (N, 1, size, size) images, image i all ``values[i]`` (identical images within a class)."""
    return torch.tensor(values, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, size, size).contiguous()


TINY = {"train": {"epochs": 1, "batch_size": 16, "log_every": 1, "max_steps": 1}, "model": {"width": 8}, "optim": {"warmup_epochs": 0},
        "eval": {"embed_points": 10, "knn_k": 5}}


def test_string_labels_of_a_held_out_split_with_some_classes_keep_their_names(tmp_path):
    """Each split's names were numbered from its own sorted set: held-out 'c' became 'a' (kNN 0 instead of 1)."""
    import workbench as wb

    names = ["a", "b", "c"] * 16
    x = _const_images([{"a": 0, "b": 120, "c": 250}[n] for n in names])
    run = wb.fit(TINY, data=x, labels=names, test=x[2::3][:6], test_labels=["c"] * 6, runs_root=tmp_path)
    assert run.final["knn_acc"] == 1.0  # each held-out image is identical to its class's training images
    numbered = wb.fit(TINY, data=x, labels=[ord(n) - 97 for n in names], test=x[2::3][:6], test_labels=[2] * 6,
                      runs_root=tmp_path)
    assert numbered.final["knn_acc"] == run.final["knn_acc"]


def test_held_out_names_training_lacks_are_unlabeled_and_said(tmp_path):
    from workbench.core.api import as_image_data, matched_classes

    train = as_image_data(_const_images([0, 1, 2, 3]), ["cat", "dog", "cat", "dog"])
    test = as_image_data(_const_images([0, 1, 2]), ["dog", "emu", "cat"], where="test")
    with pytest.warns(UserWarning, match="test: classes emu are not among the training labels"):
        got = matched_classes(train, test)
    assert got.labels.tolist() == [1, -1, 0] and got.classes == ["cat", "dog"]


def _rgba(size=28):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (size, size, 4), dtype=np.uint8)
    img[..., 3] = np.linspace(0, 255, size, dtype=np.uint8)[None, :]  # transparent at the left, opaque at the right
    return img


def test_an_rgba_array_reads_as_the_same_image_saved_as_png(tmp_path):
    """One conversion rule: transparency on white for arrays and tensors too (they kept only their first 3 channels)."""
    from PIL import Image

    import workbench as wb
    from workbench.core import decode
    from workbench.core.convert import batch, one_image

    img = _rgba()
    Image.fromarray(img, "RGBA").save(tmp_path / "a.png")
    reference = decode.decode(str(tmp_path / "a.png"), 28, 3)  # what training on the file would see
    assert np.array_equal(one_image(img, "x").numpy(), reference)  # (H, W, 4) array
    assert np.array_equal(one_image(torch.from_numpy(img).permute(2, 0, 1), "x").numpy(), reference)  # (4, H, W)
    assert np.array_equal(batch(img[None], "x")[0].numpy(), reference)  # (N, H, W, 4)
    run = wb.load_run(make_run(tmp_path, channels=3))
    from_file, from_array = run.embed(str(tmp_path / "a.png")), run.embed(img)
    cos = (from_file * from_array).sum() / np.linalg.norm(from_file) / np.linalg.norm(from_array)
    assert cos > 0.9999


@pytest.mark.parametrize("shape, needle", [
    ((5, 28, 28), "for 5 greyscale images give (5, 1, 28, 28)"),
    ((3, 4, 3), "reads as 3 channel(s) of 4x3 and as 4x3 with 3 channel(s)"),
    ((2, 28, 28, 5), "has no channel axis of 1, 3 or 4"),
    ((2, 3, 28, 3), "reads as channels first and as channels last"),
])
def test_an_ambiguous_array_is_refused_with_the_shape_to_use(shape, needle, good_run):
    import workbench as wb

    with pytest.raises(ConfigError, match=re.escape(needle)):
        wb.load_run(good_run).embed(np.zeros(shape, np.uint8))


def test_images_with_channels_last_are_read_as_channels_first(good_run):
    import workbench as wb

    x = np.random.default_rng(1).integers(0, 256, (4, 28, 28, 1), dtype=np.uint8)
    run = wb.load_run(good_run)
    assert np.allclose(run.embed(x), run.embed(x.transpose(0, 3, 1, 2)), atol=1e-5)


def _edit_config(run, old, new):
    path = run / "config.toml"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize("old, new, needle", [
    ("batch_size = 64", "batch_size = 128", "train.batch_size was changed from 64 to 128 (the steps in an epoch"),
    ('name = "bundled"', 'name = "mnist"', "data.name was changed from 'bundled' to 'mnist' (the run would go on with "
                                         "other images)"),
    ("seed = 0", "seed = 3", "train.seed was changed from 0 to 3"),
    ("subset = 512", "subset = 256", "data.subset was changed from 512 to 256"),
])
def test_resume_refuses_an_edit_its_state_or_step_count_depends_on(old, new, needle, capsys, tmp_path):
    run = make_run(tmp_path)
    _edit_config(run, old, new)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    code, err = run_cli(capsys, "train", "--resume", run)
    assert code == 2
    assert_one_line(err, needle)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_resume_states_the_edits_it_allows_in_one_line(tmp_path):
    from workbench.core.resume import resume_notes

    run = make_run(tmp_path)
    _edit_config(run, "lr = 0.002", "lr = 0.001")
    _edit_config(run, "epochs = 10", "epochs = 12")
    cfg, state = check_resume(run)  # allowed: no error
    (line,) = resume_notes(state, cfg)
    assert line == ("resume: config.toml was changed since the checkpoint of step 0: optim.lr 0.002 -> 0.001, "
                    "train.epochs 10 -> 12; the new values apply from step 0 on")


def test_every_config_field_has_a_resume_policy():
    """The policy is stated for every field there is: a new field falls under its section's rule."""
    from workbench.core import resume
    from workbench.core.config import SECTIONS

    fields = [f"{name}.{f}" for name, klass in SECTIONS.items() for f in klass.__dataclass_fields__]
    assert all(resume.policy(f)[0] in (resume.REFUSE, resume.NOTE) for f in fields)
    assert resume.policy("train.batch_size")[0] == resume.REFUSE and resume.policy("optim.lr")[0] == resume.NOTE
    assert set(resume.SECTION_DEFAULT) == set(SECTIONS)


def test_a_garbled_metrics_csv_is_refused_on_resume_and_named_by_load_run(capsys, tmp_path):
    import workbench as wb

    run = make_run(tmp_path)
    (run / "metrics.csv").write_text("\x00\x01garbage;;\nmore garbage\n")
    code, err = run_cli(capsys, "train", "--resume", run)
    assert code == 2
    assert_one_line(err, "metrics.csv is damaged (its first line is not the metrics header")
    assert "mv " in err and "metrics.damaged.csv" in err
    assert (run / "metrics.csv").read_text() == "\x00\x01garbage;;\nmore garbage\n"
    with pytest.raises(ConfigError, match=re.escape(str(run / "metrics.csv"))):
        wb.load_run(run)


def test_metrics_rows_that_do_not_parse_are_left_out_with_a_warning_naming_the_line(tmp_path, caplog):
    from workbench.core.runs import read_metrics

    (tmp_path / "metrics.csv").write_text("time,epoch,step,loss\n1.0,1,1,0.5\n2.0,1,2,oops\n3.0,1,3,0.4\n")
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [1.0, 3.0]
    assert "left out 1 line(s) that do not parse as metrics (first: line 3)" in caplog.text


def test_a_held_out_split_of_other_channels_and_size_is_converted_before_the_first_step(tmp_path):
    import workbench as wb

    x = _const_images(list(range(0, 240, 5)), size=28)
    test = torch.zeros(8, 3, 32, 32, dtype=torch.uint8)
    with pytest.warns(UserWarning, match="held-out images are 3-channel 32x32, the training images 1-channel 28x28"):
        s = wb.stream(TINY, data=x, test=test, runs_root=tmp_path)
    events = list(s)
    started = events[0]
    assert started.held_out_images.shape == (8, 1, 28, 28)
    assert isinstance(events[-1], wb.DoneEvent) and events[-1].reason == "finished"


def test_the_same_mismatch_message_for_resume_embed_and_export(capsys, tmp_path):
    """A checkpoint written with another encoder: resume named it; embed and export printed load_state_dict text."""
    run = make_run(tmp_path)
    other = make_run(tmp_path / "resnet", cfg=Config().with_overrides(["model.encoder=resnet18", "train.batch_size=64"]))
    (other / "checkpoints" / "last.pt").replace(run / "checkpoints" / "last.pt")
    said = {}
    for argv in (["train", "--resume", run], ["embed", run, "--out", tmp_path / "e.npz"],
                 ["export", run, "--out", tmp_path / "x"]):
        code, err = run_cli(capsys, *argv)
        assert code == 2
        assert_one_line(err, "the encoder was changed from resnet18 to small_cnn in config.toml after the checkpoint "
                             "was written; restore config.toml as it was")
        said[argv[0]] = err.split(": ", 2)[2]
    assert said["train"].split(";")[0] == said["embed"].split(";")[0] == said["export"].split(";")[0]
    assert not (tmp_path / "e.npz").exists() and not (tmp_path / "x").exists()


def test_a_missing_labels_file_is_named_as_the_labels(capsys, tmp_path):
    import shutil

    from workbench.core.data import BUNDLED

    shutil.copy(BUNDLED / "t10k-images-idx3-ubyte.gz", tmp_path / "train-images-idx3-ubyte.gz")
    code, err = run_cli(capsys, "train", CFG, "--set", "data.name=fashion_mnist", "--set", f"data.root={tmp_path}")
    assert code == 2
    assert_one_line(err, "no FashionMNIST train file train-labels-idx1-ubyte[.gz]")
    assert "images-idx3" not in err


def test_a_dataset_that_raises_names_the_item(tmp_path):
    import workbench as wb

    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 10

        def __getitem__(self, i):
            if i == 7:
                raise KeyError("no such file: img_7.png")
            return torch.zeros(1, 8, 8, dtype=torch.uint8)

    with pytest.raises(ConfigError, match=r"data\[7\]: the dataset raised KeyError: 'no such file: img_7.png'") as info:
        wb.fit(TINY, data=Broken(), runs_root=tmp_path)
    assert isinstance(info.value.__cause__, KeyError)  # the user's traceback is kept


@pytest.mark.parametrize("top", [10**9, 2 * 10**7])
def test_a_huge_sparse_class_number_is_refused_at_once(top):
    from workbench.core.api import as_image_data

    import time

    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=f"labels run up to {top:,} for 2 classes.*np.unique"):
        as_image_data(_const_images([0, 1, 2, 3]), [0, top, 0, top])
    assert time.perf_counter() - t0 < 2


def test_export_force_into_another_runs_export_keeps_its_card(capsys, tmp_path):
    import json

    first, second = make_run(tmp_path / "one"), make_run(tmp_path / "two")
    second = second.rename(tmp_path / "two" / "other-run")
    out = tmp_path / "shared"
    assert run_cli(capsys, "export", first, "--format", "safetensors", "--out", out)[0] == 0
    card = json.loads((out / "model_card.json").read_text())
    code, err = run_cli(capsys, "export", second, "--format", "torchscript", "--out", out, "--force")
    assert code == 2
    assert_one_line(err, "holds an export of another run ('run': encoder.safetensors)")
    assert json.loads((out / "model_card.json").read_text()) == card and not (out / "encoder.ts").exists()
    # replacing every file of that export is fine: the card then describes the new one
    assert run_cli(capsys, "export", second, "--format", "safetensors", "--out", out, "--force")[0] == 0
    assert json.loads((out / "model_card.json").read_text())["run"] == "other-run"


def test_a_file_inside_a_run_folder_names_the_run_folder(capsys, tmp_path, good_run):
    code, err = run_cli(capsys, "embed", good_run / "config.toml", "--out", tmp_path / "e.npz")
    assert code == 2
    assert_one_line(err, f"is not a run folder but a file inside one; give the run folder that holds it: {good_run}")
    code, err = run_cli(capsys, "export", good_run / "checkpoints", "--out", tmp_path / "x")
    assert_one_line(err, f"give the run folder that holds it: {good_run}")


def test_resuming_a_run_trained_from_python_says_how_to_resume_it(capsys, tmp_path):
    import workbench as wb

    run = make_run(tmp_path, cfg=Config().with_overrides(['data.name="python"', "train.batch_size=64"]))
    code, err = run_cli(capsys, "train", "--resume", run)
    assert code == 2
    assert_one_line(err, "it was trained on images passed to workbench.fit() from python")
    assert "workbench.fit(resume=" in err and "embed" not in err
    with pytest.raises(ConfigError, match=r"resume it from Python with the same images: workbench.fit\(resume="):
        wb.fit(resume=run)


@pytest.mark.parametrize("fmt, needle", [
    ("npz", "--out '/dev/null' is a file, not a folder (nor a file name ending in .npz); give a folder or a file name "
            "ending in .npz"),
    ("onnx", "(nor a file name ending in .onnx)"),
    ("projector", "give a folder (the projector writes several files)"),
])
def test_export_to_an_existing_file_of_another_kind_says_what_to_give(fmt, needle, capsys, good_run):
    code, err = run_cli(capsys, "export", good_run, "--format", fmt, "--out", "/dev/null", "--force")
    assert code == 2
    assert_one_line(err, needle)


def test_the_second_round_grows_the_list():
    """Issue 32's classes joined the list: conversion, resume policy, mismatch, outputs."""
    assert len(SET_CASES) + len(FILE_CASES) + len(USAGE_CASES) + len(BROKEN_CHECKPOINTS) + len(ROUND_TWO) >= 160


ROUND_TWO = [
    ("train", "--resume", "RUN/config.toml"),
    ("embed", "RUN/config.toml", "--out", "e.npz"),
    ("export", "RUN/checkpoints", "--out", "x"),
    ("export", "RUN", "--format", "npz", "--out", "/dev/null", "--force"),
    ("export", "RUN", "--format", "pt2", "--out", "/dev/null"),
    ("neighbours", "RUN/config.toml", "--image", "IMG"),
    ("train", "--resume", "NOWHERE"),
    ("embed", "NOWHERE", "--out", "e.npz"),
]


@pytest.mark.parametrize("argv", ROUND_TWO, ids=[" ".join(a)[:40] for a in ROUND_TWO])
def test_round_two_paths_are_one_line(argv, capsys, tmp_path, good_run, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sub = {"RUN/config.toml": good_run / "config.toml", "RUN/checkpoints": good_run / "checkpoints", "RUN": good_run,
           "NOWHERE": tmp_path / "nowhere"}
    argv = [str(sub.get(a, a)) for a in _fill(list(argv), good_run, tmp_path)]
    code, err = run_cli(capsys, *argv)
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert not (good_run / "run.log").exists()


# ----- found by the second audit -----
@pytest.mark.parametrize("argv, needle", [
    (["embed", "RUN", "--out", "emb.txt"], "--out 'emb.txt': this writes NPZ data; give a file name ending in .npz"),
    (["neighbours", "RUN", "--image", "IMG", "--out", "n.npz"], "give a file name ending in .csv"),
])
def test_an_out_file_of_another_kind_is_refused(argv, needle, capsys, tmp_path, good_run, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(capsys, *_fill(argv, good_run, tmp_path))
    assert code == 2
    assert_one_line(err, needle)
    assert not (tmp_path / argv[-1]).exists()


def test_none_in_labels_means_unknown_not_a_class_named_none():
    from workbench.core.api import as_image_data

    d = as_image_data(_const_images([0, 1, 2, 3]), [0, 2, None, 2])
    assert d.labels.tolist() == [0, 2, -1, 2] and d.classes == ["0", "1", "2"]
    d = as_image_data(_const_images([0, 1, 2]), ["cat", None, "dog"])
    assert d.labels.tolist() == [0, -1, 1] and d.classes == ["cat", "dog"]


def test_test_labels_without_test_images_are_refused(tmp_path):
    import workbench as wb

    with pytest.raises(ConfigError, match="test_labels: given without test"):
        wb.fit(TINY, data=_const_images(list(range(48))), test_labels=[0] * 5, runs_root=tmp_path)
    assert not any(tmp_path.iterdir())


def test_resuming_on_images_of_another_shape_than_trained_says_so(tmp_path):
    import workbench as wb

    run = wb.fit(TINY, data=_const_images(list(range(48))), runs_root=tmp_path)
    with pytest.raises(ConfigError, match="trained on 1-channel 16x16 images and the images given are 3-channel 20x20"):
        wb.fit(resume=run.run_dir, data=torch.zeros(48, 3, 20, 20, dtype=torch.uint8))


def test_an_empty_out_is_refused_not_read_as_the_current_folder(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(capsys, "train", CFG, "--out", "")
    assert code == 2
    assert_one_line(err, "--out is empty (an unset variable?)")
    assert not any(tmp_path.iterdir())


def test_a_checkpoint_whose_loss_state_does_not_fit_is_named_not_torch_text(capsys, tmp_path):
    run = make_run(tmp_path)  # its loss state is empty; the config's loss has a state of its own
    code, err = run_cli(capsys, "train", "--resume", run)
    if code == 0:
        pytest.skip("this loss has no state of its own")
    assert_one_line(err, "the checkpoint does not fit config.toml (the loss's state: ")
    assert "Error(s) in loading state_dict" not in err
