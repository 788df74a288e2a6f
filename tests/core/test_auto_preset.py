"""augment.preset = "auto": the recipe follows the data (channels and size), says so once and is recorded in the run."""
import logging

import numpy as np
import pytest
from PIL import Image

from workbench.core import setup as S
from workbench.core import train as T
from workbench.core.augment import PRESET_HELP, PRESETS
from workbench.core.config import Config
from workbench.core.events import DoneEvent, WarningEvent


@pytest.mark.parametrize(("channels", "size", "name"), [(1, 28, "simclr_small_grey"), (1, 200, "simclr_small_grey"),
                                                        (3, 32, "simclr_cifar"), (3, 64, "simclr_cifar"),
                                                        (3, 96, "simclr_imagenet")])
def test_auto_resolves_from_channels_and_size(channels, size, name):
    changes, notes = S.resolve_augment(Config(), channels, size)
    assert Config().augment.preset == "auto" and Config().augment.recipe == []
    assert changes == {"preset": name, "recipe": []}
    cfg = S.resolved(Config(), {"augment": changes})
    assert cfg.augment.preset == name and cfg.augment.recipe == Config.from_dict({"augment": {"preset": name}}).augment.recipe
    assert notes == [f"augment.preset auto -> {name} ({channels}-channel {size}x{size} images)"]


def test_a_chosen_preset_or_recipe_is_never_changed():
    grey = Config().with_overrides(["augment.preset=simclr_small_grey"])
    assert S.resolve_augment(grey, 3, 32) == ({}, [])
    own = Config.from_dict({"augment": {"recipe": [{"name": "vertical_flip", "p": 0.5}]}})
    changes, notes = S.resolve_augment(own, 3, 32)
    cfg = S.resolved(own, {"augment": changes})
    assert cfg is own and notes == [] and [s["name"] for s in cfg.augment.recipe] == ["vertical_flip"]


def test_presets_fit_what_they_are_for():
    names = {k: [s["name"] for s in v] for k, v in PRESETS.items()}
    assert "horizontal_flip" not in names["simclr_small_grey"]  # a mirrored 2 or R is another symbol
    large = {s["name"]: s for s in PRESETS["simclr_imagenet"]}
    assert large["random_resized_crop"]["scale"] == [0.08, 1.0] and "gaussian_blur" in large
    assert set(PRESET_HELP) == {"auto", *PRESETS}


def test_colour_folder_trains_with_the_colour_preset_and_the_run_records_it(tmp_path, caplog):
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "data" / c).mkdir(parents=True)
        for i in range(40):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(tmp_path / "data" / c / f"{i}.png")
    cfg = Config().with_overrides(["data.name=image_folder", f"data.root={tmp_path / 'data'}", "train.batch_size=16",
                                   "train.max_steps=1", "eval.embed_points=10"])
    caplog.set_level(logging.WARNING, logger="workbench")
    events = list(T.train(cfg, runs_root=tmp_path / "runs"))
    line = "augment.preset auto -> simclr_cifar (3-channel 20x20 images)"
    assert isinstance(events[-1], DoneEvent) and [e.message for e in events if isinstance(e, WarningEvent)][0] == line
    assert [e.note for e in events if isinstance(e, WarningEvent) and e.message == line] == [True]
    assert caplog.text.count(line) == 1  # said once (the CLI prints the log)
    run_dir = next((tmp_path / "runs").iterdir())
    saved = Config.load(run_dir / "config.toml")
    assert saved.augment.preset == "simclr_cifar" and saved.augment.recipe == Config.from_dict(
        {"augment": {"preset": "simclr_cifar"}}).augment.recipe
    assert line in (run_dir / "run.log").read_text()
