"""A tab is one file plus one entry in ``main_window.PANELS``: a tab defined here, added to the list and nothing
else, is shown with its title and shortcut, and told what every tab is told."""
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from workbench.core import events as E
from workbench.gui.panel import Panel, RunEnded


class NotesPanel(Panel, QWidget):
    """A throwaway tab: it notes what the window tells it."""

    title, shortcut = "Notes", "Alt+9"

    def __init__(self):
        super().__init__()
        self.label = QLabel("no run yet")
        QVBoxLayout(self).addWidget(self.label)
        self.told: list = []

    def reset(self, training=False):
        self.told.append(("reset", training))

    def on_event(self, ev):
        self.told.append(type(ev).__name__)
        if isinstance(ev, E.EvalEvent):
            self.label.setText(f"kNN {ev.metrics['knn_acc']:.3f}")

    def run_opened(self, run):
        self.told.append(("opened", run))


def test_a_new_tab_needs_only_its_entry_in_the_list(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_SETTINGS", str(tmp_path / "settings.ini"))
    monkeypatch.setenv("WORKBENCH_NO_DIALOGS", "1")
    monkeypatch.chdir(tmp_path)
    from workbench.core.config import Config
    from workbench.gui import main_window

    monkeypatch.setattr(main_window, "PANELS", [*main_window.PANELS, NotesPanel])
    cfg = Config().with_overrides(["data.subset=256", "train.batch_size=64", "train.max_steps=4", "eval.test_size=100",
                                   "eval.bank_size=256", "eval.embed_points=50", "train.log_every=2"])
    window = main_window.MainWindow(cfg, runs_root=str(tmp_path / "runs"))
    window.confirm_close = lambda: True
    qtbot.addWidget(window)
    window.show()
    notes = window.notes
    assert window.tabs.tabText(window.tabs.count() - 1) == "Notes"
    keys = [a for a in window.findChildren(QAction) if a.shortcut() == QKeySequence("Alt+9")]
    assert len(keys) == 1  # one action a key, or Qt calls the key ambiguous and does nothing
    keys[0].trigger()  # its shortcut shows it
    assert window.tabs.currentWidget() is notes

    qtbot.waitUntil(window.start_btn.isEnabled, timeout=60000)
    with qtbot.waitSignal(window.trainingDone, timeout=300000) as done:
        window.start_btn.trigger()
    qtbot.waitUntil(lambda: not window.running, timeout=60000)
    assert notes.told[0] == ("reset", True)  # a run starts
    for seen in ("RunStarted", "StepEvent", "EvalEvent", "DoneEvent"):
        assert seen in notes.told, notes.told
    assert notes.told[-1] == RunEnded.__name__ and notes.label.text().startswith("kNN ")

    notes.told.clear()
    window.open_run(done.args[0].run_dir)  # opened again from its folder
    assert notes.told[0] == ("reset", False) and notes.told[-1][0] == "opened"
    assert "StepEvent" in notes.told  # its history came through on_event first
    window.close()
