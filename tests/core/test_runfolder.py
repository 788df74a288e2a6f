"""The run folder's owner (core/runfolder.py) and the helpers every front end shares: the export's place and overwrite
rule, configs as dotted keys, cosine neighbours, durations, the thread count."""
import json
import time

import numpy as np
import pytest
import torch

from workbench.core import runfolder as rf
from workbench.core.config import Config
from workbench.core.registry import ConfigError


def test_every_file_of_a_run_folder_has_its_place(tmp_path):
    run = tmp_path / "2026-11-22_143015_bundled-ntxent"
    assert rf.config_path(run) == run / "config.toml" and rf.metrics_path(run) == run / "metrics.csv"
    assert rf.log_path(run) == run / "run.log" and rf.status_path(run) == run / "status.json"
    assert rf.checkpoint_path(run) == run / "checkpoints" / "last.pt"
    assert rf.checkpoint_path(run, "prev") == rf.previous_checkpoint(rf.checkpoint_path(run)) == run / "checkpoints" / "prev.pt"
    assert rf.export_dir(run, "onnx") == run / "export" / "onnx" and rf.checks_dir(run) == run / "checks"
    assert rf.view_path(run) == run / "embedding_view.npz" and rf.tensorboard_dir(run) == run / "tensorboard"


def test_a_new_run_folder_is_a_run_folder_listed_found_and_dated(tmp_path, monkeypatch):
    run = rf.new_run_dir(tmp_path, Config())
    assert run.name.endswith("_bundled-ntxent") and rf.checkpoints_dir(run).is_dir()
    Config().save(rf.config_path(run))
    assert not rf.is_run_folder(run)  # nothing the run itself writes yet
    rf.write_status(run, "running")
    assert rf.is_run_folder(run) and rf.find_run(run) == run and rf.run_folders(tmp_path) == [run]
    trial = tmp_path / "sweeps" / "s1" / "2026-01-01_000000_bundled-dcl"
    rf.checkpoints_dir(trial).mkdir(parents=True)
    Config().save(rf.config_path(trial))
    rf.metrics_path(trial).write_text("time,epoch,step\n")
    assert rf.run_folders(tmp_path) == [run, trial]  # newest first by name
    assert rf.run_date(trial) == "2026-01-01 00:00:00"  # from its name: no status.json
    rf.write_status(trial, "running")
    assert rf.run_date(trial) != "2026-01-01 00:00:00"
    first = json.loads(rf.status_path(trial).read_text())["created"]
    rf.write_status(trial, "finished", 9)
    assert json.loads(rf.status_path(trial).read_text())["created"] == first  # kept: the run started once
    assert rf.run_date(trial) == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(first))


def test_a_folder_holding_only_a_config_is_not_a_run(tmp_path):
    Config().save(tmp_path / "config.toml")
    assert not rf.is_run_folder(tmp_path) and rf.run_folders(tmp_path.parent) == []
    with pytest.raises(ConfigError, match="holds a config.toml but is not a run folder"):
        rf.find_run(tmp_path)
    rf.check_runs_root(tmp_path)  # runs may go there: it is not a run folder


def test_a_status_from_before_created_keeps_the_name_s_date(tmp_path):
    run = tmp_path / "2026-11-22_143015_bundled-ntxent"
    run.mkdir()
    rf.status_path(run).write_text(json.dumps({"state": "stopped", "step": 4, "elapsed_s": 1.0, "updated": 1.0}))
    rf.write_status(run, "running", 4)  # resumed by today's version
    assert "created" not in json.loads(rf.status_path(run).read_text())
    assert rf.run_date(run) == "2026-11-22 14:30:15"


def test_the_state_is_the_recorded_one_and_old_folders_are_read_as_before(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    Config().save(rf.config_path(run))
    assert rf.run_state(run, ended=True) == "finished"  # no status.json: by its metrics
    assert rf.run_state(run) == "running"  # files just written
    import os

    os.utime(rf.config_path(run), (1, 1))
    assert rf.run_state(run) == "stopped"
    rf.append_log(run, "Traceback (most recent call last):\n  ...\nValueError: x")
    assert rf.run_state(run, ended=True) == "failed"
    line = rf.log_path(run).read_text().splitlines()[0]
    assert line.endswith(" ERROR Traceback (most recent call last):") and line[:4].isdigit()
    rf.write_status(run, "stopped", 3)
    assert rf.run_state(run) == "stopped"  # the record wins over what run.log holds


def test_export_goes_to_the_run_s_own_folder_and_never_replaces_a_file_unasked(tmp_path):
    from workbench.core.export import destination, refuse_overwrite, would_replace

    run = tmp_path / "run"
    out = destination(run, "npz")
    assert out == run / "export" / "npz"
    (out).mkdir(parents=True)
    (out / "embeddings.npz").write_bytes(b"x")
    assert would_replace("npz", out) == [out / "embeddings.npz"]
    with pytest.raises(ConfigError, match="embeddings.npz' already exists; add --force to overwrite it or choose another --out"):
        destination(run, "npz", None, False, "--out", "add --force")
    assert destination(run, "npz", force=True) == out
    with pytest.raises(ConfigError, match=r"'.*a.txt' \(and 1 more\) already exists; pass force=True"):
        (tmp_path / "a.txt").write_text("")
        (tmp_path / "b.txt").write_text("")
        refuse_overwrite([tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"])


def test_configs_as_dotted_keys():
    from workbench.core import keys

    a = Config().to_dict() | {"meta": {"seed": 1}}
    b = keys.apply(Config(), {"loss.temperature": 0.3, "loss.name": "dcl"}).to_dict()  # the name first: its parameters stay
    assert b["loss"]["name"] == "dcl" and b["loss"]["temperature"] == 0.3
    diff = dict(keys.differences([a, b]))
    assert diff["loss.name"] == ["ntxent", "dcl"] and "meta.seed" not in diff
    assert keys.differences([{"a": {"x": (1, 2)}}, {"a": {"x": [1, 2]}}]) == []  # a tuple and its TOML list are one value
    assert keys.differences([{"a": {"x": 1}}, {"a": {}}], keys.UNSET) == [("a.x", [1, "(unset)"])]
    assert keys.name_keys_first([("loss.temperature", 1), ("loss.name", "dcl")])[0][0] == "loss.name"


def test_nearest_neighbours_by_cosine_match_a_plain_search():
    from workbench.core.inference import neighbours
    from workbench.core.inspector import retrieve
    from workbench.core.metrics import nearest

    g = torch.Generator().manual_seed(0)
    bank, query = torch.randn(50, 8, generator=g).numpy(), torch.randn(3, 8, generator=g).numpy()
    b = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    q = query / np.linalg.norm(query, axis=1, keepdims=True)
    want = np.argsort(-(q @ b.T), axis=1)[:, :5]
    idx, sim = nearest(query, bank, 5)
    assert np.array_equal(idx, want) and np.allclose(sim, np.take_along_axis(q @ b.T, want, 1), atol=1e-6)
    assert np.array_equal(neighbours(query, bank, 5)[0], want)
    self_idx, _ = retrieve(bank[7], bank, 4, exclude=7)  # a bank image's neighbours leave itself out
    full = np.argsort(-(b @ b[7]))
    assert self_idx.tolist() == [i for i in full if i != 7][:4]


def test_durations_read_one_way():
    from workbench.core.timefmt import clock, short

    assert [clock(5), clock(75.4), clock(3725), clock(None), clock(float("inf"))] == ["0:05", "1:15", "1:02:05", "", "--:--"]
    assert short(1.25) == "1.2 s" and short(0.035) == "35 ms"


def test_the_thread_count_rule():
    from workbench.core.threads import cores, set_threads

    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1
        assert set_threads(0, leave_free=1) == max(1, cores() - 1)
        assert set_threads(0) == max(1, cores() - 1)  # 0 and nothing to leave: torch's count stays as it is
    finally:
        torch.set_num_threads(before)


def test_the_projector_s_sprite_fits_tensorboard_s_limit():
    from workbench.core.projector import SPRITE_PX, sprite_cell

    assert sprite_cell(100, 28) == 28 and sprite_cell(10000, 96) == SPRITE_PX // 100
