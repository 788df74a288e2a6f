import pytest

from workbench.core.config import Config
from workbench.core.registry import ConfigError


def test_defaults_round_trip_through_toml(tmp_path):
    cfg = Config().with_overrides(["loss.temperature=0.3", "train.batch_size=96", "augment.preset=simclr_cifar"])
    path = tmp_path / "c.toml"
    cfg.save(path, meta={"seed": 0})
    again = Config.load(path)
    assert again.to_dict() == cfg.to_dict()
    text = path.read_text()
    assert "temperature = 0.3" in text and "[augment]" in text and "random_resized_crop" in text


def test_every_default_is_written_out():
    d = Config().to_dict()
    assert d["loss"]["temperature"] == 0.1 and d["loss"]["similarity"] == "cosine"
    # the preset is resolved from the data when training starts
    assert d["augment"] == {"preset": "auto", "recipe": [], "start_size": 0.0, "full_size_at": 0.5}
    chosen = Config().with_overrides(["augment.preset=simclr_cifar"]).to_dict()["augment"]["recipe"]
    assert chosen[0]["scale"] == [0.2, 1.0] and chosen[0]["ratio"] == [0.75, 1.3333]  # a chosen preset: every parameter
    assert d["model"]["width"] == 32


def test_set_parses_toml_literals_and_types():
    cfg = Config().with_overrides(["optim.lr=3e-4", "train.epochs=2", "data.name=bundled", "train.bf16=false"])
    assert cfg.optim.lr == pytest.approx(3e-4) and cfg.train.epochs == 2 and cfg.train.bf16 is False


@pytest.mark.parametrize("override, needle", [
    (["loss.temperature=0"], "temperature"),
    (["loss.temperature=-1"], "temperature"),
    (["train.batch_size=1"], "train.batch_size"),
    (["train.epochs=0"], "train.epochs"),
    (["optim.lr=-1"], "optim.lr"),
    (["loss.name=nope"], "choose from"),
    (["model.encoder=vgg"], "unknown encoder 'vgg'"),
    (["data.name=imagenet"], "unknown dataset 'imagenet'"),
    (["optim.name=rmsprop"], "unknown optimizer"),
    (["train.batch_sise=4"], "train.batch_sise"),
    (["loss.temprature=0.1"], "loss.temprature"),
    (["train.epochs=many"], "train.epochs: expected an integer"),
    (["nonsense"], "section.key=value"),
    (["trian.epochs=1"], "unknown section 'trian'"),
])
def test_bad_values_name_the_field(override, needle):
    with pytest.raises(ConfigError) as info:
        Config().with_overrides(override)
    assert needle in str(info.value)


@pytest.mark.parametrize("scale", [[0.0, 1.0], [0.5, 1.5], [0.9, 0.2]])
def test_crop_scale_outside_unit_interval_is_rejected(scale):
    with pytest.raises(ConfigError, match=r"augment.recipe\[0\].*scale"):
        Config.from_dict({"augment": {"recipe": [{"name": "random_resized_crop", "scale": scale}]}})


def test_unknown_augmentation_parameter_and_probability():
    with pytest.raises(ConfigError, match="unknown parameter"):
        Config.from_dict({"augment": {"recipe": [{"name": "horizontal_flip", "prob": 0.5}]}})
    with pytest.raises(ConfigError, match="probability"):
        Config.from_dict({"augment": {"recipe": [{"name": "horizontal_flip", "p": 1.5}]}})


def test_load_reports_bad_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nepochs = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Config.load(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        Config.load(tmp_path / "missing.toml")
    unknown = tmp_path / "u.toml"
    unknown.write_text("[trainer]\nepochs = 3\n")
    with pytest.raises(ConfigError, match="unknown section"):
        Config.load(unknown)


def test_saving_over_a_run_config_keeps_when_it_was_created(tmp_path):
    from workbench.core.config import tomllib

    path = tmp_path / "config.toml"
    Config().save(path, meta={"created": "2026-01-01T10:00:00", "seed": 0})
    Config().save(path, meta={"created": "2026-02-02T12:00:00", "seed": 0})
    meta = tomllib.loads(path.read_text())["meta"]
    assert meta["created"] == "2026-01-01T10:00:00" and meta["resumed"] == "2026-02-02T12:00:00"


@pytest.mark.parametrize("section", ["data", "train", "loss", "augment"])
def test_a_section_that_is_not_a_table_is_named(section):
    with pytest.raises(ConfigError, match=f"^{section}: expected a table"):
        Config.from_dict({section: "bundled"})


def test_threads_are_bounded_by_the_core_count():
    import os

    from workbench.core.config import max_threads

    assert max_threads() == 4 * (os.cpu_count() or 1)
    assert Config().with_overrides([f"train.threads={max_threads()}"]).train.threads == max_threads()
    with pytest.raises(ConfigError, match="train.threads"):
        Config().with_overrides([f"train.threads={max_threads() + 1}"])
