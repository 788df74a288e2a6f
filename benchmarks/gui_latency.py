"""What the user waits for in the window: Start to the first curve point on the bundled dataset, and
Pause / Stop from the click to the loop's answer, on an idle machine and with every core busy.

    python benchmarks/gui_latency.py [--repeats 3]

Baseline in the same run: Start with nothing loaded beforehand (the loop loads the data itself, as
before the set-up panel loaded it in the background). "Busy" runs one spinning process per core
beside the window, as a laptop compiling or browsing would.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["WORKBENCH_SETTINGS"] = str(Path(tempfile.mkdtemp()) / "settings.ini")
os.environ["WORKBENCH_NO_DIALOGS"] = "1"


def spin(stop):
    x = 0
    while not stop.is_set():
        for _ in range(10000):
            x += 1


def wait_for(app, cond, timeout=120.0):
    end = time.perf_counter() + timeout
    while not cond():
        if time.perf_counter() > end:
            raise TimeoutError("gave up waiting")
        app.processEvents()
        time.sleep(0.001)
    return time.perf_counter()


def one_run(app, win, preload: bool) -> dict:
    """Start -> first curve point, then Pause -> paused, Resume, Stop -> finished (seconds)."""
    if preload:
        wait_for(app, lambda: win.session.data.splits is not None and win.setup.valid)
    else:
        win.session.data.failed()  # as if nothing had been loaded: the loop loads the data itself
    paused = []
    win.pauseChanged.connect(paused.append)
    t0 = time.perf_counter()
    win.start()
    t_first = wait_for(app, lambda: bool(win.plots.steps)) - t0
    wait_for(app, lambda: len(win.plots.steps) >= 3)
    t0 = time.perf_counter()
    win.pause()
    t_pause = wait_for(app, lambda: paused and paused[-1] is True) - t0
    win.resume()
    wait_for(app, lambda: paused[-1] is False)
    wait_for(app, lambda: len(win.plots.steps) >= 5)
    t0 = time.perf_counter()
    win.stop()
    t_stop = wait_for(app, lambda: not win.running) - t0
    win.pauseChanged.disconnect(paused.append)
    return {"first point": t_first, "pause": t_pause, "stop": t_stop}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    from PySide6.QtWidgets import QApplication

    from workbench.core.config import Config
    from workbench.gui.main_window import MainWindow

    app = QApplication([])
    cfg = Config().with_overrides(["train.epochs=20"])  # the default set-up (first curve point at step log_every=10)
    win = MainWindow(cfg, runs_root=tempfile.mkdtemp())
    win.resize(1280, 800)
    win.show()
    rows = {}
    for load in ("idle", "busy"):
        stop, procs = mp.Event(), []
        if load == "busy":
            procs = [mp.Process(target=spin, args=(stop,), daemon=True) for _ in range(os.cpu_count() or 2)]
            for p in procs:
                p.start()
        try:
            for preload in (False, True):
                runs = [one_run(app, win, preload) for _ in range(a.repeats)]
                rows[(load, preload)] = {k: np.median([r[k] for r in runs]) for k in runs[0]}
                win.setup._load_data()  # load again for the next preloaded run
        finally:
            stop.set()
            for p in procs:
                p.join()
    print(f"bundled dataset (9,000 train images), default set-up, {os.cpu_count()} cores, median of {a.repeats}")
    print(f"{'machine':<6} {'data at Start':<32} {'Start->first point':>19} {'Pause':>8} {'Stop':>8}")
    for (load, preload), r in rows.items():
        how = "loaded by the panel beforehand" if preload else "loaded by the loop (baseline)"
        print(f"{load:<6} {how:<32} {r['first point']:>17.2f} s {r['pause']:>6.2f} s {r['stop']:>6.2f} s")
    win.close()


if __name__ == "__main__":
    main()
