import gc

import pytest


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_SETTINGS", str(tmp_path / "settings.ini"))
    monkeypatch.setenv("WORKBENCH_NO_DIALOGS", "1")
    monkeypatch.setenv("WORKBENCH_NO_TRASH", "1")  # tests delete for real, never into the desktop trash
    monkeypatch.chdir(tmp_path)
    from workbench.core.config import Config
    from workbench.gui.main_window import MainWindow

    cfg = Config().with_overrides(["data.subset=1024", "train.batch_size=64", "train.epochs=2", "eval.test_size=300",
                                   "eval.bank_size=1024", "eval.embed_points=150", "train.log_every=2"])
    w = MainWindow(cfg, runs_root=str(tmp_path / "runs"))
    w.confirm_close = lambda: True
    qtbot.addWidget(w)
    w.show()
    yield w
    if w.running:
        w.stop()
        w.thread.wait(60000)
    w.close()
    gc.collect()  # the window's cycles are freed here, in the GUI thread, not later in some training thread
    gc.enable()  # the window's collector turned automatic collection off
