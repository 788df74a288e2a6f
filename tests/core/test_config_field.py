"""A ConfigError names the config key it is about in ``field``, so a form outlines its editor without reading the
message."""
import pytest

from workbench.core.config import Config
from workbench.core.registry import ConfigError


@pytest.mark.parametrize("override, field", [
    ("train.batch_size=abc", "train.batch_size"),  # a value of the wrong type
    ("optim.lr=-1", "optim.lr"),  # out of its range
    ("loss.temperature=nan", "loss.temperature"),  # a registry parameter that is not finite
    ("loss.temperature=-1", "loss.temperature"),  # refused by the loss itself
    ("loss.nonsense=1", "loss.nonsense"),  # an unknown parameter
    ("train.batch_size=63 loss.name=margin_contrastive", "train.batch_size"),  # a pairwise loss with an odd batch
])
def test_a_config_error_names_its_key(override, field):
    with pytest.raises(ConfigError) as err:
        Config().with_overrides(override.split())
    assert err.value.field == field


def test_a_recipe_step_error_names_the_step_and_its_parameter():
    with pytest.raises(ConfigError) as err:
        Config.from_dict({"augment": {"recipe": [{"name": "horizontal_flip", "p": 0.5}, {"name": "horizontal_flip", "p": 2}]}})
    assert err.value.field == "augment.recipe[1].p"


def test_an_error_about_no_key_has_no_field(tmp_path):
    with pytest.raises(ConfigError) as err:
        Config.load(tmp_path / "missing.toml")
    assert err.value.field is None
