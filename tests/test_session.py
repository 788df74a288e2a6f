"""The window's session model, without Qt (gui/session.py imports none): the status line's rule, the messages log,
the loaded data, the run and the training progress bar."""
import subprocess
import sys
from types import SimpleNamespace

from workbench.core.config import Config, DataConfig
from workbench.core.events import DoneEvent, EvalProgressEvent, StepEvent
from workbench.gui.session import BOXED_RANGE, LOG_LIMIT, Session


def heard(session):
    got = []
    session.listen(lambda topic, part: got.append(topic))
    return got


def test_the_model_imports_no_qt():
    code = ("import sys, workbench.gui.session; "
            "sys.exit(any(m.split('.')[0] in ('PySide6', 'shiboken6', 'pyqtgraph') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_a_recheck_of_the_setup_replaces_the_status_only_when_its_verdict_is_news():
    s = Session()
    got = heard(s)
    assert s.messages.verdict(True, "") and s.messages.status.text == "ready"
    s.messages.say("run failed: queue_size 100000 is larger than the dataset", "error")
    assert not s.messages.verdict(True, "")  # the same verdict (the data load ended): the error stays
    assert s.messages.status.kind == "error" and s.messages.status.text.startswith("run failed")
    assert s.messages.verdict(False, "train.batch_size: must be >= 1")  # news
    assert s.messages.status.text == "set-up invalid: train.batch_size: must be >= 1"
    assert not s.messages.verdict(True, "", quiet=True)  # while a run trains: noted, not said ...
    assert s.messages.status.text.startswith("set-up invalid")
    assert not s.messages.verdict(True, "")  # ... and no longer news afterwards
    assert got == ["status"] * 3


def test_the_log_keeps_every_message_whole_and_counts_the_problems():
    s = Session()
    got = heard(s)
    s.messages.add("note", "augment.preset auto -> simclr_small_grey")
    s.messages.add("warning", "loss is rising")
    assert s.messages.status.text == "ready"  # logging leaves the status line alone
    assert s.messages.run == ["augment.preset auto -> simclr_small_grey", "loss is rising"] and s.messages.problems == 1
    assert s.messages.text().splitlines()[1].endswith("  warning: loss is rising")
    s.messages.new_run()
    assert s.messages.run == [] and len(s.messages.log) == 2  # the session's log outlives a run
    for i in range(LOG_LIMIT + 5):
        s.messages.add("data", str(i))
    assert len(s.messages.log) == LOG_LIMIT and s.messages.log[-1].text == str(LOG_LIMIT + 4)
    assert got[:2] == ["log", "log"]


def test_loaded_data_are_found_for_the_config_they_were_loaded_for():
    s = Session()
    cfg = Config()
    splits = (list(range(10)), list(range(4)))
    s.data.start_loading(cfg.data)
    assert s.data.for_config(cfg) is None and s.data.loading == cfg.data and s.data.train_size is None
    s.data.loaded(cfg.data, splits)
    assert s.data.for_config(cfg) is splits and s.data.train_size == 10 and s.data.loading is None
    assert s.data.for_config(cfg.with_overrides(["data.subset=5"])) is None  # other data: not these
    assert s.data.holds(DataConfig(**vars(cfg.data)))
    s.data.failed()
    assert s.data.for_config(cfg) is None


def test_the_run_is_busy_from_start_to_end():
    s = Session()
    assert not s.run.busy
    s.run.starting()
    assert s.run.busy and s.run.folder is None
    s.run.started("runs/a", {"train": {}}, held_out="images", classes=("a", "b"))
    assert s.run.busy and (s.run.folder, s.run.classes, s.run.files) == ("runs/a", ["a", "b"], None)
    s.run.set_state("ended")
    assert not s.run.busy
    s.run.opened("runs/b")
    assert not s.run.busy and s.run.folder == "runs/b" and s.run.held_out is None


def step(n: int, progress: float = 0.0) -> StepEvent:
    return StepEvent(1, n, 1.0, 0.1, 1234.0, 65.0, {}, progress)


def test_the_training_bar_counts_steps_returns_after_an_evaluation_and_ends_full():
    p = Session().progress
    p.run_started(total_steps=40, start_step=0, budget_s=0.0)
    assert (p.value, p.maximum, p.text) == (0, 40, "step 0/40")
    p.stepped(step(10))
    assert (p.value, p.text) == (10, "epoch 1  step 10/40  1,234 img/s  ETA 1:05")
    p.evaluation(EvalProgressEvent(10, "knn", 3000, 10000))
    assert p.evaluating and (p.value, p.maximum, p.text) == (3000, 10000, "evaluation at step 10: kNN 3,000 / 10,000")
    p.stopping()
    assert p.text == "stopping: ending the evaluation…"
    assert p.end_evaluation() and not p.end_evaluation()
    assert (p.value, p.maximum, p.text) == (10, 40, "epoch 1  step 10/40  1,234 img/s  ETA 1:05")
    p.stepped(step(12), quiet=True)  # paused: no rate, no ETA
    assert p.text == "epoch 1  step 12/40"
    p.run_done(DoneEvent("finished", "runs/a", {}, step=39))
    assert (p.value, p.maximum, p.text) == (40, 40, "finished: step 39/40")


def test_a_run_given_in_minutes_fills_its_bar_with_its_clock():
    p = Session().progress
    p.run_started(total_steps=10_000, start_step=0, budget_s=120.0)
    assert p.boxed and p.maximum == BOXED_RANGE and p.tip
    p.stepped(step(50, progress=0.25))
    assert p.value == 250 and "step 50  " in p.text and "trained 0:30 of 2:00" in p.text
    p.run_done(DoneEvent("stopped", "runs/a", {}, step=60))
    assert (p.value, p.text) == (250, "stopped: step 60")


def test_a_resumed_run_with_nothing_left_leaves_the_busy_state():
    p = Session().progress
    p.busy("starting…")
    assert (p.value, p.maximum) == (0, 0)
    p.run_done(SimpleNamespace(reason="already finished", step=-1))
    assert (p.value, p.maximum, p.text) == (1, 1, "already finished")
