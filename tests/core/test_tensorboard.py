"""TensorBoard output read back with TensorBoard's own readers: grouped scalar tags, hparams with final
metrics, and a projector entry (labels and sprite) per evaluation."""
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorboard")
from google.protobuf import text_format  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig  # noqa: E402

from workbench.core.config import Config  # noqa: E402
from workbench.core.data import FASHION_CLASSES  # noqa: E402
from workbench.core.runs import read_metrics  # noqa: E402
from workbench.core.tensorboard import TensorBoardLog, tag  # noqa: E402
from workbench.core.train import train  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = Config().with_overrides(["data.subset=128", "train.batch_size=32", "train.epochs=2", "train.log_every=2",
                                   "eval.test_size=100", "eval.bank_size=256", "eval.embed_points=60",
                                   "eval.tensorboard=true"])
    events = list(train(cfg, runs_root=tmp_path_factory.mktemp("runs")))
    return Path(events[0].run_dir), events


def accumulator(run_dir):
    ea = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    return ea


def test_scalars_are_grouped_and_equal_metrics_csv(run):
    run_dir, _ = run
    ea = accumulator(run_dir)
    tags = set(ea.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/images_per_s", "eval/knn_acc", "eval/alignment", "eval/eff_rank"} <= tags
    assert all("/" in t for t in tags)
    rows = read_metrics(run_dir)
    loss_rows = [(int(r["step"]), r["loss"]) for r in rows if r.get("loss") is not None]
    assert [(e.step, pytest.approx(e.value, rel=1e-4)) for e in ea.Scalars("train/loss")] == loss_rows
    knn_rows = [(int(r["step"]), r["knn_acc"]) for r in rows if r.get("knn_acc") is not None]
    assert len(knn_rows) >= 2 and [(e.step, pytest.approx(e.value, rel=1e-4)) for e in ea.Scalars("eval/knn_acc")] == knn_rows


def test_hparams_hold_the_config_and_the_final_metrics(run):
    run_dir, _ = run
    ea = accumulator(run_dir)
    content = ea.PluginTagToContent("hparams")
    data = {k: plugin_data_pb2.HParamsPluginData.FromString(v) for k, v in content.items()}
    start = next(d.session_start_info for d in data.values() if d.HasField("session_start_info"))
    assert start.hparams["loss.name"].string_value == "ntxent"
    assert start.hparams["train.batch_size"].number_value == 32
    exp = next(d.experiment for d in data.values() if d.HasField("experiment"))
    assert {"eval/knn_acc", "train/loss"} <= {m.name.tag for m in exp.metric_infos}
    final_knn = [r["knn_acc"] for r in read_metrics(run_dir) if r.get("knn_acc") is not None][-1]
    assert ea.Scalars("eval/knn_acc")[-1].value == pytest.approx(final_knn, rel=1e-4)


def test_projector_has_an_embedding_with_labels_and_sprite_per_evaluation(run):
    run_dir, events = run
    logdir = run_dir / "tensorboard"
    cfg = text_format.Parse((logdir / "projector_config.pbtxt").read_text(), ProjectorConfig())
    evals = [e for e in events if type(e).__name__ == "EmbeddingEvent"]
    assert len(cfg.embeddings) == len({e.step for e in evals}) >= 2
    last = evals[-1]
    entry = cfg.embeddings[-1]
    assert entry.tensor_name == f"eval/embedding@{last.step}"
    vec = np.loadtxt(logdir / entry.tensor_path, delimiter="\t", ndmin=2)
    np.testing.assert_allclose(vec, last.embeddings[: len(vec)], rtol=1e-4, atol=1e-5)
    meta = (logdir / entry.metadata_path).read_text().splitlines()
    assert meta[0] == "label\tclass" and [int(m.split("\t")[0]) for m in meta[1:]] == last.labels[: len(vec)].tolist()
    assert [m.split("\t")[1] for m in meta[1:]] == [FASHION_CLASSES[y] for y in last.labels[: len(vec)]]
    from PIL import Image

    with Image.open(logdir / entry.sprite.image_path) as im:
        side = int(np.ceil(np.sqrt(len(vec))))
        assert im.size == (side * entry.sprite.single_image_dim[0],) * 2


def test_tags_and_a_resumed_log_keeps_earlier_projector_entries(tmp_path):
    assert tag("loss") == "train/loss" and tag("term_pos_sim") == "train/term/pos_sim" and tag("knn_acc") == "eval/knn_acc"
    assert tag("step") is None and tag("time") is None
    imgs = np.zeros((5, 1, 8, 8), np.uint8)
    first = TensorBoardLog(tmp_path)
    first.embedding(10, np.ones((5, 3), np.float32), np.arange(5), imgs, ["a", "b", "c", "d", "e"])
    first.close()
    second = TensorBoardLog(tmp_path)
    second.embedding(20, np.ones((5, 3), np.float32), np.arange(5), imgs, list("abcde"))
    second.close()
    cfg = text_format.Parse((tmp_path / "tensorboard" / "projector_config.pbtxt").read_text(), ProjectorConfig())
    assert [e.tensor_name for e in cfg.embeddings] == ["eval/embedding@10", "eval/embedding@20"]
