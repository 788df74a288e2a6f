"""The set-up panel's method: its parameters come from the method's typed Params, it follows the loss as the
config does, and a method that cannot feed the loss is the error outlined."""
import pytest

from workbench.core.config import Config


def test_the_method_and_its_parameters_follow_the_loss(window, qtbot):
    s = window.setup
    s.loss.setCurrentText("moco")
    assert s.method.currentText() == "moco"
    assert set(s.method_form.editors) == {"momentum", "queue_size"} and set(s.loss_form.editors) == {"temperature"}
    assert "past keys" in s.method_form.editors["queue_size"].toolTip()  # the Params docstring is the tooltip
    s.method_form.editors["queue_size"].setValue(256)
    qtbot.waitUntil(lambda: s.cfg.method.name == "moco" and s.cfg.method.params.queue_size == 256)

    s.method.setCurrentText("simclr")  # cannot give the keys and the queue the loss reads
    qtbot.waitUntil(lambda: not window.start_btn.isEnabled())
    assert s.error.text().startswith("method.name: loss 'moco' reads t, negatives") and s.method.styleSheet()
    s.loss.setCurrentText("dcl")  # a method chosen on purpose stays while it can feed the loss
    qtbot.waitUntil(window.start_btn.isEnabled)
    assert s.cfg.method.name == "simclr" and s.method_form.editors == {}
    s.loss.setCurrentText("dino")  # the method of the loss before follows the loss
    assert s.method.currentText() == "dino" and "out_dim" in s.method_form.editors
    qtbot.waitUntil(lambda: s.cfg.method.name == "dino")


def test_a_loaded_config_fills_the_method_form(window, qtbot):
    s = window.setup
    s.set_config(Config().with_overrides(["loss.name=byol", "method.momentum=0.9"]))
    assert s.method.currentText() == "byol" and s.method_form.editors["momentum"].value() == pytest.approx(0.9)
    assert s.build_config().method.params.momentum == pytest.approx(0.9)
