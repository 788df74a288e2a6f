"""The one registry contract: factory(**context, **params), params typed from defaults, choices and help declared once."""
from typing import Literal

import pytest

from workbench.core.registry import ConfigError, Registry, coerce, parse_help


def make_registry():
    reg = Registry("widget", context=("size",))

    @reg.register("plain", colour="blue")
    def plain(size, mode: Literal["fast", "exact"] = "fast", gain: float = 1.0, steps: int = 3, box: list = (0.2, 1.0)):
        """A plain widget.

        Args:
            mode: how to compute it; ``exact`` is slower.
            gain (float): multiplies the output,
                before clipping.
        size: not a user parameter, so not listed.
        """
        return {"size": size, "mode": mode, "gain": gain, "steps": steps, "box": box}

    @reg.register("secret", hidden=True)
    class Secret:
        """A widget users do not pick."""

        def __init__(self, size, level: int = 2):
            """level: how secret."""
            self.size, self.level = size, level

    return reg


def test_params_come_from_the_signature_and_the_docstring():
    entry = make_registry().get("plain")
    params = {p.name: p for p in entry.params}
    assert list(params) == ["mode", "gain", "steps", "box"]  # the context argument is not a user parameter
    assert params["mode"].choices == ("fast", "exact") and params["mode"].kind is str
    assert params["gain"].kind is float and params["steps"].kind is int and params["box"].kind is tuple
    assert params["mode"].help == "how to compute it; ``exact`` is slower."
    assert params["gain"].help == "multiplies the output, before clipping."
    assert params["steps"].help == "" and params["steps"].choices == ()
    assert entry.summary == "A plain widget." and entry.meta == {"colour": "blue"}


def test_classes_read_their_init_docstring_and_hidden_entries_are_not_offered():
    reg = make_registry()
    assert reg.names() == ["plain"] and "secret" in reg
    assert [(p.name, p.help) for p in reg.get("secret").params] == [("level", "how secret.")]
    assert reg.build("secret", {"level": 5}, size=3).level == 5
    assert "secret" not in reg.describe() and "one of: fast, exact" in reg.describe()


def test_build_needs_the_context_and_turns_factory_errors_into_config_errors():
    reg = make_registry()
    assert reg.build("plain", {"gain": 2.0}, size=4) == {"size": 4, "mode": "fast", "gain": 2.0, "steps": 3, "box": (0.2, 1.0)}
    with pytest.raises(TypeError, match="needs size"):
        reg.build("plain", {})
    with pytest.raises(ConfigError, match="widget 'plain'"):
        reg.build("plain", {"nope": 1}, size=1)
    with pytest.raises(ConfigError, match="unknown widget 'other'; choose from: plain"):
        reg.get("other")


def test_check_params_coerces_and_rejects_what_is_not_allowed():
    reg = make_registry()
    assert reg.check_params("plain", {"gain": "2", "steps": 4.0, "box": "0.1, 0.9", "mode": "exact"}, "w") == {
        "gain": 2.0, "steps": 4, "box": (0.1, 0.9), "mode": "exact"}
    with pytest.raises(ConfigError, match="w.mode: choose from: fast, exact; got 'slow'"):
        reg.check_params("plain", {"mode": "slow"}, "w")
    with pytest.raises(ConfigError, match="w.size: unknown parameter of widget 'plain'; choose from: mode, gain, steps, box"):
        reg.check_params("plain", {"size": 3}, "w")


def test_select_picks_an_entrys_parameters_from_a_config_section():
    class Section:
        gain, steps, unrelated = 0.5, 7, "x"

    reg = make_registry()
    assert reg.select("plain", Section()) == {"gain": 0.5, "steps": 7}
    assert reg.select("plain", {"mode": "exact", "other": 1}) == {"mode": "exact"}


@pytest.mark.parametrize("value,kind,expected", [
    ("yes", bool, True), ("0", bool, False), (3.0, int, 3), ("12", int, 12), ("1e-3", float, 0.001), (2, float, 2.0),
    ([1, "0.5"], tuple, (1, 0.5)), ("[0.2, 1]", tuple, (0.2, 1.0)), ("abc", str, "abc"),
])
def test_coerce_accepts_what_toml_the_cli_and_the_window_give(value, kind, expected):
    out = coerce(value, kind, "x")
    assert out == expected and type(out) is type(expected)


@pytest.mark.parametrize("value,kind,needle", [
    ("maybe", bool, "true or false"), (True, int, "an integer"), (2.5, int, "an integer"), ("a", float, "a number"),
    (["a"], tuple, "a list of numbers"), (5, tuple, "a list such as"), (3, str, "a string"),
])
def test_coerce_names_the_field_and_what_it_expected(value, kind, needle):
    with pytest.raises(ConfigError, match=f"^x: expected {needle}"):
        coerce(value, kind, "x")


def test_parse_help_stops_at_unindented_or_unknown_lines():
    doc = "Intro.\n\n  a: first\n     more\n  b: second\n  c: not a parameter\n  trailing"
    assert parse_help(doc, {"a", "b"}) == {"a": "first more", "b": "second"}


def test_the_real_registries_follow_the_contract():
    from workbench.core.augment import AUGMENTS
    from workbench.core.data import DATASETS
    from workbench.core.losses import LOSSES
    from workbench.core.models import ENCODERS
    from workbench.core.optim import OPTIMIZERS

    for reg in (AUGMENTS, DATASETS, LOSSES, ENCODERS, OPTIMIZERS):
        for name in reg.names():
            entry = reg.get(name)
            assert entry.summary, f"{reg.kind} '{name}' has no docstring"
            assert not set(reg.context) & {p.name for p in entry.params}
    assert [p.name for p in OPTIMIZERS.get("sgd").params] == ["lr", "weight_decay", "momentum"]
    assert all(p.help for p in LOSSES.get("hcl").params)
