"""Exports reload in a separate process that does not import workbench, and agree with the trained model."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from workbench.core.config import Config
from workbench.core.export import export_run
from workbench.core.inference import RunModel
from workbench.core.registry import ConfigError
from workbench.core.train import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    cfg = Config().with_overrides(["model.encoder=resnet18_cifar", "data.subset=256", "train.batch_size=32",
                                   "train.max_steps=3", "eval.test_size=100", "eval.bank_size=256", "eval.embed_points=50",
                                   "train.log_every=1"])
    events = list(train(cfg, runs_root=root))
    return events[0].run_dir


@pytest.fixture(scope="module")
def reference(run_dir, tmp_path_factory):
    rm = RunModel.load(run_dir)
    _, test = rm.splits()
    images = test.images[:16]
    x = rm.preprocess(images).numpy().astype(np.float32)
    with torch.no_grad():
        h, z, _ = rm.net(torch.from_numpy(x))
    folder = tmp_path_factory.mktemp("ref")
    np.save(folder / "x.npy", x)
    np.save(folder / "h.npy", h.numpy())
    np.save(folder / "z.npy", z.numpy())
    return folder


def run_isolated(code: str):
    """Run code in a fresh interpreter that cannot import workbench."""
    guard = "import sys\nsys.modules['workbench'] = None\n"
    res = subprocess.run([sys.executable, "-c", guard + textwrap.dedent(code)], capture_output=True, text=True, timeout=300, cwd="/")
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_safetensors_loads_into_the_torchvision_class(run_dir, reference, tmp_path):
    paths = export_run(run_dir, "safetensors", tmp_path)
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert card["input"]["channels"] == 1 and card["input"]["image_size"] == 28 and card["output"]["embedding_dim"] == 512
    assert card["training_config"]["model"]["encoder"] == "resnet18_cifar" and "knn_acc" in card["metrics"]
    out = run_isolated(f"""
        import numpy as np, torch, torchvision
        from safetensors.torch import load_file
        net = torchvision.models.resnet18(weights=None)
        net.conv1 = torch.nn.Conv2d(1, 64, 3, 1, 1, bias=False)
        net.maxpool = torch.nn.Identity()
        net.fc = torch.nn.Identity()
        net.load_state_dict(load_file("{paths[0]}"))
        net.eval()
        with torch.no_grad():
            y = net(torch.from_numpy(np.load("{reference}/x.npy")))
        print(float(np.abs(y.numpy() - np.load("{reference}/h.npy")).max()))
    """)
    assert float(out) < 1e-4


def test_torchscript_and_onnx_agree_with_the_trained_model(run_dir, reference, tmp_path):
    ts = export_run(run_dir, "torchscript", tmp_path / "ts")[0]
    onnx = export_run(run_dir, "onnx", tmp_path / "onnx")[0]
    out = run_isolated(f"""
        import numpy as np, torch, onnxruntime as ort
        x = np.load("{reference}/x.npy")
        h = np.load("{reference}/h.npy")
        m = torch.jit.load("{ts}")
        with torch.no_grad():
            a = float(np.abs(m(torch.from_numpy(x)).numpy() - h).max())
        sess = ort.InferenceSession("{onnx}", providers=["CPUExecutionProvider"])
        b = float(np.abs(sess.run(None, {{"images": x[:5]}})[0] - h[:5]).max())
        print(a, b)
    """)
    a, b = map(float, out.split())
    assert a < 1e-4 and b < 1e-4


def test_export_with_projection_head(run_dir, reference, tmp_path):
    ts = export_run(run_dir, "torchscript", tmp_path, include_head=True)[0]
    m = torch.jit.load(str(ts))
    z = m(torch.from_numpy(np.load(reference / "x.npy")))
    assert np.abs(z.detach().numpy() - np.load(reference / "z.npy")).max() < 1e-4
    assert json.loads((tmp_path / "model_card.json").read_text())["includes_projection_head"] is True


def test_embeddings_npz_and_projector_files(run_dir, tmp_path):
    npz = export_run(run_dir, "npz", tmp_path / "e.npz")[0]
    z = np.load(npz)
    assert z["embeddings"].shape == (1000, 512) and z["embeddings"].dtype == np.float32
    files = export_run(run_dir, "projector", tmp_path / "proj", max_points=200)
    names = {p.name for p in files}
    assert names == {"vectors.tsv", "metadata.tsv", "sprite.png", "projector_config.pbtxt"}
    vec = (tmp_path / "proj" / "vectors.tsv").read_text().strip().splitlines()
    meta = (tmp_path / "proj" / "metadata.tsv").read_text().strip().splitlines()
    assert len(vec) == 200 and len(meta) == 201 and len(vec[0].split("\t")) == 512
    from PIL import Image

    with Image.open(tmp_path / "proj" / "sprite.png") as im:
        assert im.size[0] == im.size[1] and im.size[0] >= 15 * 28


def test_checkpoints_never_unpickle_arbitrary_objects(run_dir, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(run_dir, bad)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"model": Evil()}, bad / "checkpoints" / "last.pt")
    with pytest.raises(ConfigError, match="cannot be loaded safely|corrupted"):
        RunModel.load(bad)
    (bad / "checkpoints" / "last.pt").write_bytes(b"\x00" * 100)
    with pytest.raises(ConfigError, match="corrupted"):
        export_run(bad, "onnx", tmp_path / "x")


def test_linear_probe_and_metrics_on_known_features():
    from workbench.core.metrics import alignment, effective_rank, knn_accuracy, linear_probe, uniformity

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (400,), generator=g)
    centers = torch.randn(4, 16, generator=g) * 3
    x = centers[y] + torch.randn(400, 16, generator=g) * 0.5
    assert linear_probe(x[:300], y[:300], x[300:], y[300:], epochs=20) > 0.95
    assert knn_accuracy(x[:300], y[:300], x[300:], y[300:]) > 0.95
    z = torch.nn.functional.normalize(torch.randn(500, 8, generator=g), dim=1)
    assert alignment(z, z) == pytest.approx(0.0, abs=1e-6) and alignment(z, -z) == pytest.approx(4.0, rel=1e-5)
    assert uniformity(z) < uniformity(z[:1].expand(500, 8) + 1e-3 * z)
    assert effective_rank(torch.randn(1000, 8, generator=g)) > 7 and effective_rank(torch.ones(50, 8)) == 1.0
