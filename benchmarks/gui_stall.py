"""Responsiveness of the window while training: longest stalls of the GUI event loop.

    python benchmarks/gui_stall.py [--seconds 30]

A 10 ms QTimer records when it actually fires; the stall is the lateness of each tick. The
same measurement on the idle window (no training) in the same run is the baseline. The window
is 1280x800 and shows the Curves tab, then the Embedding and Pairs tabs in turn. Target: 99th
percentile under 30 ms while training.

    python benchmarks/gui_stall.py --evaluation --set data.name=image_folder \
        --set data.root=../shared/data/cifar10-jpg --set eval.bank_size=50000 --set train.max_steps=2

measures during the run's evaluations instead: from the first progress event an evaluation yields to its result
(the window shows it in the status bar, the bar and the Embedding tab), on the Embedding tab. Target: the same.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("WORKBENCH_SETTINGS", "/tmp/wb-stall-settings.ini")
os.environ["WORKBENCH_NO_DIALOGS"] = "1"


def measure(app, seconds: float, until=None) -> np.ndarray:
    from PySide6.QtCore import QElapsedTimer, QTimer

    ticks, clock = [], QElapsedTimer()
    clock.start()
    timer = QTimer(interval=10)
    timer.timeout.connect(lambda: ticks.append(clock.nsecsElapsed() / 1e6))
    timer.start()
    end = time.monotonic() + seconds
    while not until() if until is not None else time.monotonic() < end:
        app.processEvents()
        time.sleep(0.001)
    timer.stop()
    return np.clip(np.diff(ticks) - 10.0, 0, None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="config overrides, e.g. a CIFAR-10 ResNet-18 run on a GPU")
    ap.add_argument("--decode", metavar="FOLDER", help="measure while the set-up panel decodes this image folder "
                    "(with an empty cache) instead of while training, e.g. ../shared/data/cifar10-jpg")
    ap.add_argument("--evaluation", action="store_true", help="measure during the run's evaluations only")
    a = ap.parse_args()
    if a.decode:
        import tempfile

        os.environ["WORKBENCH_CACHE"] = tempfile.mkdtemp(prefix="wb-stall-cache-")  # decode for real, not from a cache
    from PySide6.QtWidgets import QApplication

    from workbench.core.config import Config
    from workbench.gui.main_window import MainWindow

    app = QApplication([])
    cfg = Config().with_overrides(["train.epochs=50", "train.batch_size=128", "train.log_every=5", *a.set])
    win = MainWindow(cfg, runs_root="/tmp/wb-stall-runs")
    win.resize(1280, 800)
    win.show()
    while win.session.data.splits is None or not win.setup.valid:
        app.processEvents()
        time.sleep(0.01)
    idle = measure(app, a.seconds / 3)
    if a.decode:
        import shutil

        decode_stalls(app, win, a.decode, idle)
        shutil.rmtree(os.environ["WORKBENCH_CACHE"], ignore_errors=True)
        return
    if a.evaluation:
        evaluation_stalls(app, win, idle)
        return
    win.start()
    while not win.plots.steps:
        app.processEvents()
        time.sleep(0.01)
    busy = []
    for tab in (win.plots, win.embedding, win.inspector):  # each tab repaints what it shows
        win.tabs.setCurrentWidget(tab)
        busy.append(measure(app, a.seconds / 3))
    busy = np.concatenate(busy)
    steps = win.plots.steps[-1]
    win.stop()
    win.thread.wait(60000)
    for name, s in (("idle window (baseline)", idle), ("while training", busy)):
        p50, p99 = np.percentile(s, 50), np.percentile(s, 99)
        print(f"{name:<24} ticks {len(s):>5}  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  max {s.max():6.1f} ms")
    ratio = np.percentile(busy, 99) / max(np.percentile(idle, 99), 0.1)
    print(f"training reached step {steps}; p99 stall ratio training/idle: {ratio:.1f}x")


def evaluation_stalls(app, win, idle: np.ndarray) -> None:
    """Stalls from the first EvalProgressEvent the window shows to the end of the run's last evaluation."""
    shown, results, done = [], [], []
    win.evaluationShown.connect(shown.append)
    win.epochEvaluated.connect(results.append)
    win.trainingDone.connect(done.append)
    win.tabs.setCurrentWidget(win.embedding)
    win.start()
    while not shown and not done:
        app.processEvents()
        time.sleep(0.001)
    t0 = time.perf_counter()
    hint = win.embedding.hint.textItem.toPlainText().splitlines()[0] if win.embedding.hint.isVisible() else ""
    busy = measure(app, 0, until=lambda: bool(done))
    took = time.perf_counter() - t0
    win.thread.wait(60000)
    for name, s in (("idle window (baseline)", idle), ("during evaluations", busy)):
        p50, p99 = np.percentile(s, 50), np.percentile(s, 99)
        print(f"{name:<24} ticks {len(s):>5}  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  max {s.max():6.1f} ms")
    stages = list(dict.fromkeys(e.stage for e in shown))
    print(f"{len(results)} evaluation(s), {took:.1f} s from the first progress event to the run's end; the window showed "
          f"{len(shown)} progress updates (stages {', '.join(stages)}), e.g. '{shown[0].text if shown else ''}', "
          f"'{shown[-1].text if shown else ''}'; the Embedding tab said '{hint}'")


def decode_stalls(app, win, folder: str, idle: np.ndarray) -> None:
    t0 = time.perf_counter()
    win.setup.root.setText(str(Path(folder).resolve()))
    win.setup.dataset.setCurrentText("image_folder")  # what a user does: the panel starts loading in the background
    busy = measure(app, 0, until=lambda: win.session.data.splits is not None or win.setup.loading is None)
    took = time.perf_counter() - t0
    for name, s in (("idle window (baseline)", idle), ("while decoding", busy)):
        p50, p99 = np.percentile(s, 50), np.percentile(s, 99)
        print(f"{name:<24} ticks {len(s):>5}  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  max {s.max():6.1f} ms")
    print(f"panel loaded {win.setup.data_info.text()} in {took:.1f} s")


if __name__ == "__main__":
    main()
