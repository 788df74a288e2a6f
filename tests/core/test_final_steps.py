"""The end of a run: its checkpoint is on disk before the final evaluation, and the live projection never stops training."""
import numpy as np

from workbench.core import train as T
from workbench.core.events import CheckpointEvent, DoneEvent, EmbeddingEvent, ErrorEvent
from workbench.core.projection import StableProjector, pca_2d
from workbench.core.runs import load_checkpoint
from workbench.core.sinks import Sink


def test_pca_of_rows_with_nan_places_them_at_the_origin_and_fits_the_rest():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6)) * np.array([5.0, 1, 0.1, 0.1, 0.1, 0.1])
    bad = x.copy()
    bad[[3, 7]] = np.nan
    bad[9, 2] = np.inf
    out = pca_2d(bad)
    assert np.isfinite(out).all() and (out[[3, 7, 9]] == 0).all()
    keep = np.setdiff1d(np.arange(50), [3, 7, 9])
    first = x[keep, 0] - x[keep, 0].mean()  # the dominant axis is feature 0 (independent of our SVD call)
    assert abs(np.corrcoef(out[keep, 0], first)[0, 1]) > 0.99


def test_pca_of_degenerate_input_never_raises(monkeypatch):
    assert (pca_2d(np.full((4, 3), np.nan)) == 0).all()
    assert pca_2d(np.zeros((0, 5))).shape == (0, 2)
    assert (pca_2d(np.ones((5, 3))) == 0).all()

    def fails(*a, **k):
        raise np.linalg.LinAlgError("SVD did not converge")

    monkeypatch.setattr(np.linalg, "svd", fails)
    x = np.arange(12.0).reshape(4, 3)
    np.testing.assert_allclose(pca_2d(x), (x - x.mean(0))[:, :2])
    proj = StableProjector("pca")
    proj(x)
    assert np.isfinite(proj(x + 1)).all()  # the Procrustes alignment falls back too


def test_final_checkpoint_is_written_before_a_failing_final_evaluation(tmp_path, quick_cfg):
    class Broken(Sink):  # the final evaluation fails as its row is written
        def write(self, row):
            if "knn_acc" in row:
                raise RuntimeError("evaluation broke")

    events = list(T.train(quick_cfg("train.max_steps=1"), runs_root=tmp_path, sinks=[Broken()]))
    kinds = [type(e) for e in events]
    assert kinds.index(CheckpointEvent) < kinds.index(ErrorEvent) and DoneEvent not in kinds
    state = load_checkpoint(events[kinds.index(CheckpointEvent)].path)
    assert state["step"] == 1


def test_non_finite_features_with_finite_weights_are_explained_and_drawn(tmp_path, quick_cfg, monkeypatch, caplog):
    import workbench.core.evaluation as E

    real = E.embedding_steps

    def half_nan(s, images, *a, **k):
        out = yield from real(s, images, *a, **k)
        out[::2] = float("nan")
        return out

    monkeypatch.setattr(E, "embedding_steps", half_nan)
    events = list(T.train(quick_cfg("train.max_steps=1"), runs_root=tmp_path))
    emb = next(e for e in events if isinstance(e, EmbeddingEvent))
    assert np.isfinite(emb.xy).all() and isinstance(events[-1], DoneEvent)
    assert "points are not finite although the weights are: the encoder overflows on these 28x28 inputs" in caplog.text


def _files(run_dir):
    return {p: p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_resuming_a_finished_run_changes_nothing_and_says_how_to_train_longer(tmp_path, quick_cfg, capsys):
    from workbench import cli

    events = list(T.train(quick_cfg("train.max_steps=2"), runs_root=tmp_path))
    run_dir = tmp_path / next(p.name for p in tmp_path.iterdir())
    assert events[-1].reason == "finished"
    before = _files(run_dir)
    again = list(T.train(None, resume=run_dir))
    assert [type(e) for e in again] == [DoneEvent] and again[0].reason == "already finished"
    assert "already finished at step 2 (train.epochs = 1, train.max_steps = 2); nothing was changed" in again[0].message
    assert f"raise train.epochs (or train.max_steps / train.time_budget_s) in {run_dir / 'config.toml'}" in again[0].message
    assert cli.main(["train", "--resume", str(run_dir)]) == 0
    out = capsys.readouterr()
    assert "already finished at step 2" in out.out + out.err and "\nfinished;" not in out.out + out.err
    assert _files(run_dir) == before
