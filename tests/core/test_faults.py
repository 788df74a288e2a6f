"""Faults a run must survive without losing what was saved, each ending in one clear line:
non-finite weights, kill -9 at random moments, a full disk, Ctrl-C twice, files others must read."""
from __future__ import annotations

import errno
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from tests.conftest import ROOT
from workbench.cli import main
from workbench.core import runfolder, runs
from workbench.core.resume import check_resume
from workbench.core.events import CheckpointEvent, DoneEvent, ErrorEvent, StepEvent, explain
from workbench.core.registry import ConfigError
from workbench.core.train import train

CFG = str(ROOT / "examples" / "bundled_quick.toml")
ENV = dict(os.environ, QT_QPA_PLATFORM="offscreen", OMP_NUM_THREADS="1")


def small_state(step: int, value: float = 1.0) -> dict:
    state = {k: 0 for k in runs.CHECKPOINT_KEYS}
    return state | {"model": {"w": torch.full((4, 3), value), "b": torch.zeros(4)}, "loss": {}, "optim": {},
                    "step": step, "elapsed": 0.0, "mean": [0.5], "std": [0.25], "channels": 1, "image_size": 28}


# ----- checkpoints: prev.pt, never non-finite, atomic under interruption -----
def test_each_checkpoint_keeps_the_one_before_as_prev(tmp_path):
    path = tmp_path / "checkpoints" / "last.pt"
    for step in (4, 8, 12):
        runs.save_checkpoint(path, small_state(step))
    assert runs.load_checkpoint(path)["step"] == 12
    assert runs.load_checkpoint(path.with_name("prev.pt"))["step"] == 8
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt", "prev.pt"]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_weights_are_never_written(tmp_path, bad):
    path = tmp_path / "last.pt"
    runs.save_checkpoint(path, small_state(4))
    before = path.read_bytes()
    state = small_state(9)
    state["model"]["w"][2, 1] = bad
    with pytest.raises(FloatingPointError, match=r"non-finite \(e\.g\. w\) by step 9.*not overwritten"):
        runs.save_checkpoint(path, state)
    assert path.read_bytes() == before
    assert not (tmp_path / "prev.pt").exists()


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_an_interrupt_during_a_save_leaves_last_pt_whole(tmp_path, monkeypatch, where):
    """What a second Ctrl-C does mid-save: KeyboardInterrupt at any point of the write."""
    path = tmp_path / "last.pt"
    runs.save_checkpoint(path, small_state(4))
    before = path.read_bytes()

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    target = {"write": "fdopen", "fsync": "fsync", "replace": "replace"}[where]
    if where == "replace":
        real = os.replace
        monkeypatch.setattr(os, "replace", lambda a, b: interrupt() if str(b) == str(path) else real(a, b))
    else:
        monkeypatch.setattr(os, target, interrupt)
    with pytest.raises(KeyboardInterrupt):
        runs.save_checkpoint(path, small_state(8))
    monkeypatch.undo()
    assert runs.load_checkpoint(path)["step"] == 4 and path.read_bytes() == before
    assert not list(tmp_path.glob(".last.pt.*.tmp"))


def test_orphans_are_cleaned_and_replayed_metrics_rows_dropped(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    for name in ("checkpoints/.last.pt.x1y2.tmp", "checkpoints/.prev.pt.123.tmp", ".config.toml.abc.tmp"):
        (tmp_path / name).write_bytes(b"partial")
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"keep")
    gone = runs.clean_orphans(tmp_path)
    assert len(gone) == 3 and [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["last.pt"]
    header = "time,epoch,step,loss,knn_acc\n"
    rows = ["1,0,2,0.9,\n", "2,0,4,0.8,\n", "3,0,4,,0.5\n", "4,1,6,0.7,\n", "5,1,8,0.6,\n"]
    (tmp_path / "metrics.csv").write_text(header + "".join(rows) + "6,1,1")  # a torn last row
    assert runs.truncate_metrics(tmp_path, 4) == 3
    assert (tmp_path / "metrics.csv").read_text() == header + "".join(rows[:3])
    assert [r["step"] for r in runs.read_metrics(tmp_path)] == [2, 4, 4]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        runs.atomic_write_text(tmp_path / "a.txt", "x")
        runs.save_checkpoint(tmp_path / "last.pt", small_state(1))
        runs.save_checkpoint(tmp_path / "last.pt", small_state(2))
    finally:
        os.umask(old)
    for name in ("a.txt", "last.pt", "prev.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name


# ----- disk full -----
def enospc(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_names_the_target_and_the_size(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.pt"
    runs.save_checkpoint(path, small_state(4))
    monkeypatch.setattr(os, "fsync", enospc)
    with pytest.raises(runs.DiskFullError) as info:
        runs.save_checkpoint(path, small_state(8))
    monkeypatch.undo()
    msg = str(info.value)
    assert f"'{path}'" in msg and "needs about" in msg and " MB" in msg and "free" in msg and ".tmp" not in msg
    assert info.value.errno == errno.ENOSPC
    assert runs.load_checkpoint(path)["step"] == 4
    assert not list(path.parent.glob(".*.tmp"))


def test_other_write_errors_name_the_target_not_the_temporary_file(tmp_path):
    (tmp_path / "plain_file").write_text("x")
    target = tmp_path / "plain_file" / "emb.npz"  # its folder is a file
    with pytest.raises(OSError, match=f"cannot write '{target}'"):
        runs.atomic_write_bytes(target, b"x")


def test_training_on_a_full_disk_stops_with_one_line_and_keeps_the_checkpoint(tmp_path, monkeypatch, capsys):
    """The disk fills after the first checkpoint: the run ends with the advice line, last.pt stays loadable."""
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if any(p.name == "last.pt" for p in tmp_path.rglob("last.pt")):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    code = main(["train", CFG, "--out", str(tmp_path), "--set", "data.subset=256", "--set", "train.batch_size=64",
                 "--set", "train.epochs=3", "--set", "eval.every=5", "--set", "eval.test_size=100",
                 "--set", "eval.embed_points=20", "--set", "eval.bank_size=256"])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    line = next(x for x in err.splitlines() if x.startswith("error:"))
    assert "disk full writing" in line and "last.pt" in line and "needs about" in line
    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    assert runs.load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 4
    assert "No space left on device" in (run / "run.log").read_text()


# ----- errors: one line with advice, the traceback kept -----
@pytest.mark.parametrize("exc, needle", [
    (MemoryError(), "out of CPU memory; lower train.batch_size"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to "
                  "allocate 98304000000 bytes"), "out of CPU memory"),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "out of GPU memory; lower train.batch_size"),
    (FloatingPointError("the loss became non-finite at step 7"), "the loss became non-finite at step 7"),
    (ConfigError("train.epochs: must be >= 1"), "train.epochs: must be >= 1"),
    (PermissionError(13, "Permission denied", "/srv/out/model.onnx"),
     "[Errno 13] Permission denied: '/srv/out/model.onnx'; check its permissions, or use a folder you can write to"),
    (OSError(30, "Read-only file system", "/mnt/cd/runs"), "[Errno 30] Read-only file system: '/mnt/cd/runs'; check"),
])
def test_expected_failures_get_advice(exc, needle):
    assert explain(exc).startswith(needle)


def test_a_real_bug_names_its_file_and_line():
    try:
        torch.ones(3) @ torch.ones(4)
    except RuntimeError as exc:
        text = explain(exc)
    assert text.startswith("unexpected RuntimeError: ") and "test_faults.py:" in text


def test_an_unexpected_error_in_the_cli_keeps_its_traceback(tmp_path, monkeypatch, capsys):
    import workbench.core.data as data

    def broken(*a, **k):
        raise KeyError("labels")  # a bug, not a user mistake

    monkeypatch.setattr(data, "load_splits", broken)
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    code = main(["train", CFG, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    first, second = err.strip().splitlines()
    assert first.startswith("error: unexpected KeyError: 'labels' (at ") and "test_faults.py:" in first
    log = tmp_path / "cache" / "error.log"
    assert second.startswith(f"full traceback in {log}") and "Traceback (most recent call last)" in log.read_text()
    code = main(["-v", "train", CFG, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback (most recent call last)" in err and err.strip().splitlines()[-1].startswith("error:")


def test_out_of_memory_while_decoding_is_one_line(tmp_path, monkeypatch, capsys):
    import workbench.core.data as data

    def oom(*a, **k):
        raise MemoryError

    monkeypatch.setattr(data, "load_splits", oom)
    code = main(["embed", str(make_finished_run(tmp_path)), "--out", str(tmp_path / "e.npz")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert err.startswith("error: out of CPU memory; lower train.batch_size or data.subset")


def make_finished_run(tmp_path: Path) -> Path:
    from tests.test_bad_inputs import make_run

    return make_run(tmp_path)


# ----- the training loop: NaN between log steps, checkpoints before the first epoch ends -----
def test_nan_between_log_steps_never_reaches_a_checkpoint(tmp_path, quick_cfg):
    """eval.every > 1 and log_every larger than the run: only the guard sees the weights go NaN."""
    cfg = quick_cfg("data.subset=256", "train.batch_size=32", "train.epochs=3", "eval.every=5", "train.log_every=1000",
                    "train.checkpoint_every=1", "eval.bank_size=256", "eval.test_size=100")
    nan_at = 12  # in epoch 2 of 8 steps each; no log step, no evaluation before the epoch-end checkpoint

    def poison(opt, args, kwargs):
        poison.n += 1
        if poison.n == nan_at:
            with torch.no_grad():
                opt.param_groups[0]["params"][0].fill_(math.nan)

    poison.n = 0
    handle = register_optimizer_step_post_hook(poison)
    try:
        events = list(train(cfg, runs_root=tmp_path))
    finally:
        handle.remove()
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert len(errors) == 1 and not any(isinstance(e, DoneEvent) for e in events)
    msg = errors[0].message
    assert ("step 12" in msg or "step 13" in msg) and "optim.lr" in msg and "step 8 is kept" in msg
    assert "FloatingPointError" in errors[0].traceback
    assert [e.step for e in events if isinstance(e, CheckpointEvent)] == [8]
    run = Path(errors[0].run_dir)
    assert runs.load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 8
    assert "FloatingPointError" in (run / "run.log").read_text()


def test_a_checkpoint_is_written_before_the_first_epoch_ends(tmp_path, quick_cfg):
    from tests.core.fakes import FakeClock

    clock = FakeClock(monotonic_tick=10.0)  # each reading 10 s after the last: a machine fast enough to finish the
    # epoch in the first 0.6 s still gets its checkpoint
    cfg = quick_cfg("data.subset=2048", "train.batch_size=32", "train.checkpoint_minutes=0.01", "train.log_every=1")
    saved = []
    for ev in train(cfg, runs_root=tmp_path, clock=clock):
        if isinstance(ev, CheckpointEvent):
            saved.append(ev.step)
        if isinstance(ev, StepEvent) and saved:
            break
    assert saved and saved[0] < 64  # 64 steps an epoch


# ----- kill -9 and Ctrl-C in a real process -----
KILL_SET = ["--set", "data.subset=512", "--set", "train.batch_size=64", "--set", "train.epochs=4",
            "--set", "train.log_every=1", "--set", "train.checkpoint_minutes=0.01", "--set", "eval.test_size=200",
            "--set", "eval.bank_size=512", "--set", "eval.embed_points=50", "--set", "train.threads=1"]


def wb(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "workbench", *map(str, args)], env=ENV, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, **kw)


def loss_rows(run: Path) -> list[tuple[int, float]]:
    return [(int(r["step"]), r["loss"]) for r in runs.read_metrics(run) if r["loss"] is not None]


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_is_exact(tmp_path):
    ref_root, run_root = tmp_path / "ref", tmp_path / "killed"
    with wb("train", CFG, *KILL_SET, "--out", ref_root) as ref:
        _, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err
    ref_run = next(ref_root.iterdir())
    rng = random.Random(11)
    proc = wb("train", CFG, *KILL_SET, "--out", run_root)
    run = None
    for _ in range(3):  # kill it up to three times
        deadline = time.monotonic() + 120
        while run is None or not (run / "checkpoints" / "last.pt").exists():
            run = next(run_root.iterdir(), None) if run_root.exists() else None
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.5))
        if proc.poll() is not None:
            break
        proc.kill()  # SIGKILL: no handler runs, nothing is flushed
        proc.wait()
        proc.stderr.close()
        proc = wb("train", "--resume", run)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert not [p for p in run.rglob("*.tmp")]
    got, want = loss_rows(run), loss_rows(ref_run)
    assert [s for s, _ in got] == sorted({s for s, _ in got}), "resume replayed metrics rows"
    assert got == want
    a = runs.load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    b = runs.load_checkpoint(ref_run / "checkpoints" / "last.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ctrl_c_twice_aborts_without_breaking_the_checkpoint(tmp_path):
    proc = wb("train", CFG, *KILL_SET, "--set", "train.epochs=50", "--out", tmp_path)
    watchdog = threading.Timer(240, proc.kill)  # a hang fails the test instead of blocking the suite
    watchdog.start()
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "img/s" in line and list(tmp_path.glob("*/checkpoints/last.pt")):
            break
    proc.send_signal(signal.SIGINT)
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("stopping"):
            break
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    code = proc.wait(timeout=120)
    watchdog.cancel()
    proc.stderr.close()
    text = "".join(lines) + rest
    assert "press Ctrl-C again to abort without saving" in text and "Traceback" not in text
    assert code in (0, 130)  # 0 when the save had already finished
    if code == 130:
        assert "interrupted: stopped without saving; the last checkpoint in" in rest
    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    assert runs.load_checkpoint(run / "checkpoints" / "last.pt")["step"] > 0
    check_resume(run)


def test_ctrl_c_while_loading_cancels_it_and_writes_nothing(tmp_path, monkeypatch, capsys):
    import workbench.core.data as data

    def load(cfg, progress=None, cancel=None):
        os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C while images decode
        assert cancel is not None and cancel.is_set()
        raise data.Cancelled("loading cancelled")

    monkeypatch.setattr(data, "load_splits", load)
    handler = signal.getsignal(signal.SIGINT)
    code = main(["train", CFG, "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 130 and "Traceback" not in err
    assert "stopping: cancelling the loading; nothing has been written yet" in err
    assert err.strip().endswith("interrupted: nothing was written")
    assert not (tmp_path / "runs").exists()
    assert signal.getsignal(signal.SIGINT) is handler  # the CLI put the previous handler back


# ----- one owner per run folder (issue 32): the lock, atomic creation, a reader that stops -----
HOLD = ("import sys; from workbench.core.runlock import RunLock; lock = RunLock.acquire(sys.argv[1]); "
        "print('held', flush=True); sys.stdin.read()")


def holder(folder: Path) -> subprocess.Popen:
    """Another process that owns ``folder`` until its stdin closes (or it is killed)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], env=ENV, cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def small_run(tmp_path: Path) -> Path:
    from tests.test_bad_inputs import make_run

    return make_run(tmp_path)


def test_a_run_trained_by_another_process_is_not_resumed_a_second_time(tmp_path, capsys):
    """Two `train --resume` of one run wrote last.pt and metrics.csv together; the second deleted the first's files."""
    import workbench as wb_api

    run = small_run(tmp_path)
    (run / "checkpoints" / ".last.pt.999999.abcdefgh.tmp").write_bytes(b"the owner's checkpoint being written")
    proc = holder(run)
    try:
        before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "owner.lock"}
        code = main(["train", "--resume", str(run)])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert f"is in use by process {proc.pid} on this machine (training since" in err and f"kill {proc.pid}" in err
        with pytest.raises(ConfigError, match=f"in use by process {proc.pid}"):  # the API (and the window) alike
            wb_api.fit(resume=run)
        after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "owner.lock"}
        assert after == before  # nothing written, not even the temp file removed as an orphan
    finally:
        proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()
    # killed without a word: its lock is stale, and the next owner takes it over
    from workbench.core.runlock import RunLock, owner

    assert owner(run) == {}
    lock = RunLock.acquire(run)
    assert f"process {proc.pid} on this machine" in lock.stale
    lock.release()
    assert not (run / "owner.lock").exists()


TINY_X = torch.randint(0, 256, (128, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
TINY_CFG = {"train": {"epochs": 2, "batch_size": 32, "log_every": 1}, "model": {"width": 8},
            "optim": {"warmup_epochs": 0}, "eval": {"embed_points": 10}}


def test_a_training_run_owns_its_folder_and_gives_it_up_at_the_end(tmp_path):
    import workbench as wb_api
    from workbench.core.runlock import owner

    held = []
    for ev in wb_api.stream(wb_api.config(TINY_CFG, **{"train.max_steps": 2}), data=TINY_X, runs_root=tmp_path):
        if isinstance(ev, StepEvent):
            held.append(owner(next(tmp_path.iterdir())).get("pid"))
    run = next(tmp_path.iterdir())
    assert held and set(held) == {os.getpid()}
    assert owner(run) == {} and not (run / "owner.lock").exists()


def test_a_lock_left_by_a_dead_process_is_stale(tmp_path, capsys):
    """Without flock (Windows) the process id decides; with it the kernel does: both see a dead owner as none."""
    import json
    import socket

    from workbench.core import runlock

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "owner.lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "since": 1.0}))
    assert runlock.owner(tmp_path) == {}
    lock = runlock.RunLock.acquire(tmp_path)
    assert f"process {dead.pid}" in lock.stale
    with pytest.raises(ConfigError, match=f"in use by process {os.getpid()}"):  # a second owner in the same process
        runlock.RunLock.acquire(tmp_path)
    lock.release()


def test_run_folders_made_at_the_same_second_never_collide(tmp_path, monkeypatch):
    """The folder's existence was checked, then it was made: 9 of 480 job-array starts failed with FileExistsError."""
    from workbench.core.config import Config

    cfg = Config()
    monkeypatch.setattr(runfolder.time, "strftime", lambda fmt, *a: "2026-12-07_120000")
    first = runfolder.new_run_dir(tmp_path, cfg)
    real_exists = Path.exists
    # another process makes the next name between a check and the mkdir: only mkdir itself can tell
    monkeypatch.setattr(Path, "exists", lambda p: False if p.name.startswith("2026-12-07") else real_exists(p))
    made = [first]
    errors = []

    def make():
        try:
            for _ in range(10):
                made.append(runfolder.new_run_dir(tmp_path, cfg))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(made)) == 81 == len(list(tmp_path.iterdir()))
    assert all((p / "checkpoints").is_dir() for p in made)


def test_leaving_the_loop_over_a_stream_stops_the_run_with_a_checkpoint(tmp_path):
    """Breaking out of wb.stream left status.json at "running", step 0, and the run folder locked."""
    import workbench as wb_api
    from workbench.core.runlock import owner

    x = TINY_X
    for ev in wb_api.stream(TINY_CFG, data=x, runs_root=tmp_path):
        if isinstance(ev, StepEvent) and ev.step == 3:
            break
    run = next(tmp_path.iterdir())
    status = runfolder.read_status(run)
    assert (status["state"], status["step"]) == ("stopped", 3)
    assert runs.load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 3
    assert owner(run) == {}
    done = wb_api.fit(resume=run, data=x)  # and it resumes from there
    assert done.reason == "finished" and runfolder.read_status(run)["state"] == "finished"


def test_a_temp_file_a_killed_export_left_is_removed_by_the_next_export(tmp_path):
    from workbench.core.export import export_run

    run = small_run(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = out / f".encoder.safetensors.{dead.pid}.k1ll3d00.tmp"
    left.write_bytes(b"x" * 1000)
    live = out / f".encoder.onnx.{os.getppid()}.w0rk1ng0.tmp"  # another export under way: left alone
    live.write_bytes(b"y")
    export_run(run, "safetensors", out)
    assert not left.exists() and live.exists()
    assert (out / "encoder.safetensors").is_file()


def test_a_closed_or_broken_output_pipe_is_the_outputs_failure_not_the_runs(tmp_path):
    run = small_run(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "embed", str(run), "--out", "-"], env=ENV, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=False)
    assert len(proc.stdout.read(100)) == 100
    proc.stdout.close()  # the reader goes away (as `| head -c 100` does)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1
    assert "error: the reader of standard output closed it after" in err and "wrote" not in err, err
    proc.stderr.close()
    closed = subprocess.run([sys.executable, "-m", "workbench", "embed", str(run), "--out", "-"], env=ENV, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120,
                            preexec_fn=lambda: os.close(1))
    assert closed.returncode == 1 and closed.stderr.strip() == "error: standard output is closed; give a file with --out FILE"
    assert not (run / "run.log").exists()  # the healthy run's log keeps no traceback of the output's failure


def test_embed_says_which_step_it_read_of_a_run_being_trained(tmp_path, capsys):
    run = small_run(tmp_path)
    proc = holder(run)
    try:
        code = main(["embed", str(run), "--out", str(tmp_path / "e.npz")])
    finally:
        proc.stdin.close()
        proc.wait()
        proc.stdout.close()
    err = capsys.readouterr().err
    assert code == 0
    assert f"note: run '{run}' is being trained meanwhile (process {proc.pid}); embed reads its checkpoint of step 0" in err
