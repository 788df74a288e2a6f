"""The [method] section: methods as a registry of their own with typed parameters, configs and run folders
written before it existed (method settings under [loss]) brought up to date, and a method and a loss added
from outside the package (one class and its registration line each)."""
from pathlib import Path

import pytest
import torch

from workbench.core.config import Config, upgrade
from workbench.core.events import DoneEvent, StepEvent, WarningEvent
from workbench.core.methods import METHODS, build_method
from workbench.core.registry import ConfigError
from workbench.core.train import train

# config.toml of a moco run as the version before [method] wrote it (its main: Config.to_toml with the run's meta)
OLD_MOCO_TOML = """\
[data]
name = "bundled"
root = ""
image_size = 0
holdout = 0.1
subset = 1024
download = false
in_memory = "auto"
channels = "auto"

[augment]
preset = "auto"
recipe = []
start_size = 0.0
full_size_at = 0.5

[model]
encoder = "small_cnn"
head_layers = 2
head_hidden = 0
head_out = 128
head_bn = true
predictor_hidden = 512
sync_bn = false
width = 32
pool = 4
stages = 3
depth = 1

[loss]
name = "moco"
temperature = 0.1
queue_size = 64
momentum = 0.9

[optim]
name = "adamw"
lr = 0.002
weight_decay = 0.0001
momentum = 0.9
warmup_epochs = 1.0
schedule = "cosine"
min_lr_ratio = 0.0

[train]
epochs = 10
batch_size = 64
device = "auto"
seed = 0
bf16 = true
channels_last = true
compile = false
max_steps = 2
time_budget_s = 0.0
log_every = 10
checkpoint_every = 1
checkpoint_minutes = 5.0
threads = 0

[eval]
every = 1
max_share = 0.2
knn_k = 20
knn_temperature = 0.07
bank_size = 0
test_size = 0
embed_points = 2000
embed_every_steps = 0
linear_probe = false
linear_probe_epochs = 50
label_efficiency = false
readout = "none"
retrieval = true
recall_k = 5
quick_size = 0
tensorboard = false

[meta]
workbench = "0.1.0"
torch = "2.14.1+cu130"
torchvision = "0.29.1+cu130"
numpy = "2.4.6"
python = "3.11.7"
seed = 0
created = "2026-12-07T23:34:35"
"""

OLD_DINO_LOSS = {"name": "dino", "student_temp": 0.1, "teacher_temp": 0.05, "warmup_teacher_temp": 0.04,
                 "warmup_teacher_temp_frac": 0.2, "out_dim": 64, "momentum": 0.99, "center_momentum": 0.8,
                 "local_crops": 1, "local_scale": [0.1, 0.3]}


def old_style(d: dict) -> dict:
    """A config dict as the version before [method] wrote it: the method's settings among the loss's, no [method]."""
    d = {k: dict(v) if isinstance(v, dict) else v for k, v in d.items()}
    method = d.pop("method")
    method.pop("name")
    d["loss"].update(method)
    return d


# ---------------- the section ----------------
def test_the_method_section_is_typed_and_round_trips():
    cfg = Config().with_overrides(["loss.name=moco", "method.queue_size=128", "method.momentum=0.9"])
    assert cfg.method.name == "moco" and cfg.method.params.queue_size == 128 and cfg.method.params.momentum == 0.9
    assert "queue_size" not in cfg.loss.params and set(cfg.loss.params) == {"temperature"}  # the loss is maths only
    text = cfg.to_toml()
    assert '[method]\nname = "moco"\nmomentum = 0.9\nqueue_size = 128\n' in text
    assert Config.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("overrides, message", [
    (["loss.name=moco", "method.queue_size=0"], "method.queue_size: must be >= 1, got 0"),
    (["loss.name=moco", "method.queue_size=many"], "method.queue_size: expected an integer, got 'many'"),
    (["loss.name=byol", "method.momentum=1"], r"method.momentum: must be in \[0, 1\), got 1.0"),
    (["loss.name=moco", "method.queue=5"], "method.queue: unknown parameter of method 'moco'; choose from: momentum, queue_size"),
    (["method.name=mocov9"], "unknown method 'mocov9'; choose from: simclr, simsiam, byol, moco, dino"),
    (["loss.name=moco", "method.name=simclr"], "method.name: loss 'moco' reads t, negatives, which method 'simclr' does not "
                                               "give; choose method 'moco'"),
])
def test_bad_method_settings_name_their_field(overrides, message):
    with pytest.raises(ConfigError, match=message):
        Config().with_overrides(overrides)


def test_each_loss_keeps_the_method_it_trained_with_and_a_method_may_take_another_loss():
    assert [Config().with_overrides([f"loss.name={n}"]).method.name for n in ("ntxent", "moco", "byol", "simsiam", "dino")] \
        == ["simclr", "moco", "byol", "simsiam", "dino"]
    both = Config().with_overrides(["method.name=moco", "method.queue_size=64", "loss.name=dcl"])
    assert (both.loss.name, both.method.name, both.method.params.queue_size) == ("dcl", "moco", 64)  # a chosen method stays
    assert Config().with_overrides(["loss.name=moco", "loss.name=dcl"]).method.name == "simclr"  # the loss's own follows it
    assert Config().with_overrides(["loss.name=byol", "method.name=byol", "loss.name=moco"]).method.name == "moco"  # cannot feed it


def test_the_python_api_takes_the_method_and_its_parameters_in_any_order():
    import workbench

    cfg = workbench.config(**{"method.queue_size": 64, "method.name": "moco", "loss.name": "dcl"})
    assert (cfg.loss.name, cfg.method.name, cfg.method.params.queue_size) == ("dcl", "moco", 64)
    assert workbench.config({"loss": {"name": "byol"}, "method": {"momentum": 0.9}}).method.params.momentum == 0.9


def test_typed_params_are_checked_on_construction():
    params = METHODS.get("moco").typed
    assert params(queue_size="16").queue_size == 16  # coerced like a value from --set
    with pytest.raises(ConfigError, match="method.queue_size: must be >= 1"):
        params(queue_size=0)
    assert [p.name for p in METHODS.get("dino").params][:3] == ["momentum", "out_dim", "center_momentum"]
    assert "number of past keys" in METHODS.get("moco").params[1].help  # the form's tooltip, from the docstring


# ---------------- configs from before [method] ----------------
def test_an_old_config_toml_loads_with_the_method_settings_moved(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(OLD_MOCO_TOML, encoding="utf-8")
    cfg, notes = Config.load_noted(path)
    assert cfg.loss.params == {"temperature": 0.1}
    assert (cfg.method.name, cfg.method.params.queue_size, cfg.method.params.momentum) == ("moco", 64, 0.9)
    assert notes == [f"'{path}': the method's settings (queue_size, momentum) moved from [loss] to [method] (method 'moco'); "
                     "saving the config writes them there"]
    assert Config.load(path) == cfg
    cfg.save(path)
    assert Config.load_noted(path) == (cfg, [])  # saved once, it reads without a note


def test_every_dino_setting_finds_its_place():
    raw, notes = upgrade({"loss": dict(OLD_DINO_LOSS)})
    assert raw["loss"] == {"name": "dino", "student_temp": 0.1, "teacher_temp": 0.05} and len(notes) == 1
    cfg = Config.from_dict(raw)
    p = cfg.method.params
    assert (p.out_dim, p.momentum, p.center_momentum, p.local_crops, p.local_scale) == (64, 0.99, 0.8, 1, (0.1, 0.3))
    assert (p.warmup_teacher_temp, p.warmup_teacher_temp_frac) == (0.04, 0.2)
    assert build_method(cfg).teacher_temp_at(1.0) == pytest.approx(0.05)  # the warm-up ends at the loss's temperature
    assert upgrade(cfg.to_dict()) == (cfg.to_dict(), [])  # nothing to do for a config of this version


def test_the_old_spelling_on_the_command_line_still_works():
    cfg = Config().with_overrides(["loss.name=moco", "loss.queue_size=32", "loss.momentum=0.5"])
    assert (cfg.method.params.queue_size, cfg.method.params.momentum) == (32, 0.5)


def test_a_run_folder_written_before_the_method_section_resumes_and_exports(tmp_path, quick_cfg):
    from workbench.core.config import tomli_w
    from workbench.core.inference import RunModel
    from workbench.core.resume import check_resume
    from workbench.core.runs import load_checkpoint
    from workbench.core.control import Control

    cfg = quick_cfg("loss.name=moco", "method.queue_size=128", "method.momentum=0.9", "train.max_steps=3",
                    "train.log_every=1")
    control = Control()
    first = []
    for ev in train(cfg, control, runs_root=tmp_path):
        first.append(ev)
        if isinstance(ev, StepEvent) and ev.step == 2:
            control.stop()
    run_dir = first[0].run_dir
    assert isinstance(first[-1], DoneEvent) and first[-1].reason == "stopped"
    # the run folder as the version before [method] wrote it: config.toml and the checkpoint's config
    path = f"{run_dir}/config.toml"
    written = Config.load(path)
    ckpt = f"{run_dir}/checkpoints/last.pt"
    state = load_checkpoint(ckpt)
    state["config"] = old_style(state["config"])
    torch.save(state, ckpt)
    old = tomli_w.dumps(old_style(written.to_dict()))
    assert "[method]" not in old and "queue_size = 128" in old
    with open(path, "w", encoding="utf-8") as f:
        f.write(old)

    assert check_resume(run_dir)[0] == written  # read with the settings moved; the checkpoint's config agrees
    assert RunModel.load(run_dir, verb="export").cfg.method.params.queue_size == 128  # what embed and export read
    resumed = list(train(None, runs_root=tmp_path, resume=run_dir))
    notes = [e.message for e in resumed if isinstance(e, WarningEvent) and e.note]
    assert sum("moved from [loss] to [method]" in n for n in notes) == 1, notes
    assert [e.step for e in resumed if isinstance(e, StepEvent)] == [3]
    assert isinstance(resumed[-1], DoneEvent) and resumed[-1].reason != "failed"
    assert "[method]" in Path(path).read_text(encoding="utf-8")  # config.toml written in today's form
    assert Config.load(path) == written
