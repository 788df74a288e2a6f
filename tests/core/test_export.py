"""Exports reload in a separate process that does not import workbench, and agree with the trained model."""
import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench.core.config import Config
import workbench
from workbench.core.export import export_run, export_targets
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
        h, z, _ = rm.net(torch.from_numpy(x))  # h: the backbone's own output, what an export gives
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
    assert card["input"]["channels"] == 1 and card["input"]["image_size"] == 28
    assert card["files"]["encoder.safetensors"]["output"]["embedding_dim"] == 512
    assert card["training_config"]["model"]["encoder"] == "resnet18_cifar" and "knn_acc" in card["metrics"]
    out = run_isolated(f"""
        import numpy as np, torch, torchvision
        from safetensors.torch import load_file
        net = torchvision.models.resnet18(weights=None)
        net.conv1 = torch.nn.Conv2d(1, 64, 3, 1, 1, bias=False)
        net.maxpool = torch.nn.Identity()
        net.fc = torch.nn.Identity()  # the plain backbone: nothing else to set
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
    assert json.loads((tmp_path / "model_card.json").read_text())["files"]["encoder.ts"]["includes_projection_head"] is True


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


# ---------------- the model card is a complete spec; pt2 and uint8 ONNX ----------------
@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs_small")
    cfg = Config().with_overrides(["data.subset=256", "train.batch_size=32", "train.max_steps=3", "eval.test_size=100",
                                   "eval.bank_size=256", "eval.embed_points=50", "train.log_every=1"])
    return list(train(cfg, runs_root=root))[0].run_dir


REBUILD = """
import gzip, json, sys
from collections import OrderedDict
from importlib import import_module
import numpy as np, torch
from safetensors.torch import load_file

card_path, weights, idx_file, emb_file = sys.argv[1:5]
card = json.load(open(card_path))
arch = card["files"]["encoder.safetensors"]["architecture"]

def build(spec):  # the card's module-tree format, read as its documentation says
    path, _, name = spec["module"].rpartition(".")
    ctor = getattr(import_module(path), name)
    if "children" in spec:
        m = ctor(OrderedDict((n, build(c)) for n, c in spec["children"]))
    else:
        m = ctor(*spec.get("args", []), **spec.get("kwargs", {}))
    for attr, sub in spec.get("set", {}).items():
        setattr(m, attr, build(sub))
    return m

net = build(arch["modules"])
net.load_state_dict(load_file(weights), strict=True)
net.eval()
ns = {}
exec("\\n".join(arch["imports"] + arch["python"]), ns)  # the same network from the card's Python lines
ns["net"].load_state_dict(load_file(weights), strict=True)
ns["net"].eval()

raw = np.frombuffer(gzip.open(idx_file).read(), np.uint8, offset=16).reshape(-1, 28, 28)  # IDX: 16-byte header
ref = np.load(emb_file)
steps = {s["step"]: s for s in card["preprocessing"]}
assert "divided by 255" in steps["to_tensor"]["how"]
x = torch.from_numpy(raw[ref["indices"][:200]].copy()).float()[:, None] / 255
mean = torch.tensor(steps["normalize"]["mean"]).view(1, -1, 1, 1)
std = torch.tensor(steps["normalize"]["std"]).view(1, -1, 1, 1)
x = (x - mean) / std
with torch.no_grad():
    a, b = net(x).numpy(), ns["net"](x).numpy()
print(float(np.abs(a - ref["embeddings"][:200]).max()), float(np.abs(b - ref["embeddings"][:200]).max()))
"""


@pytest.mark.parametrize("which", ["small_run", "run_dir"])  # the small CNN (padding) and the ResNet CIFAR stem
def test_card_and_safetensors_alone_reproduce_workbench_embed(which, request, tmp_path):
    run = request.getfixturevalue(which)
    export_run(run, "safetensors", tmp_path)
    emb = tmp_path / "emb.npz"
    res = subprocess.run([sys.executable, "-m", "workbench", "embed", str(run), "--split", "test", "--out", str(emb)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    idx_file = Path(workbench.__file__).parent.parent / "resources" / "fashion-mnist" / "t10k-images-idx3-ubyte.gz"
    script = tmp_path / "rebuild.py"
    script.write_text(REBUILD)
    out = run_isolated(f"""
        import runpy, sys
        sys.argv = ["rebuild", "{tmp_path / 'model_card.json'}", "{tmp_path / 'encoder.safetensors'}", "{idx_file}", "{emb}"]
        runpy.run_path("{script}", run_name="__main__")
    """)
    a, b = map(float, out.split())
    assert a < 1e-4 and b < 1e-4


def test_card_is_complete_and_names_no_local_path(small_run, tmp_path):
    export_run(small_run, "safetensors", tmp_path)
    text = (tmp_path / "model_card.json").read_text()
    card = json.loads(text)
    assert str(Path(small_run).parent) not in text and str(Path.home()) not in text and "/tmp" not in text
    assert card["data"]["dataset"] == "bundled" and card["data"]["licence"] == "MIT" and "zalandoresearch" in card["data"]["source"]
    assert card["versions"]["export"]["torch"] == torch.__version__ and card["versions"]["training"]["torch"] == torch.__version__
    steps = [s["step"] for s in card["preprocessing"]]
    assert steps == ["decode", "to_mode", "square_resize", "to_tensor", "normalize", "batch"]
    assert "convert('L')" in card["preprocessing"][1]["how"] and "Resampling.BILINEAR" in card["preprocessing"][2]["how"]
    assert "at least 56 px is opened with im.draft('L', (28, 28))" in card["preprocessing"][0]["jpeg"]  # as folders decode
    conv = card["files"]["encoder.safetensors"]["architecture"]["modules"]["children"][0][1]["children"][0][1]
    assert conv["kwargs"]["padding"] == [1, 1] and conv["kwargs"]["stride"] == [2, 2] and conv["kwargs"]["bias"] is False


def test_a_second_format_extends_the_card_instead_of_replacing_it(small_run, run_dir, tmp_path):
    export_run(small_run, "safetensors", tmp_path)
    assert export_targets("onnx", tmp_path, small_run) == [tmp_path / "encoder.onnx"]  # the card is extended, not lost
    export_run(small_run, "onnx", tmp_path)
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert set(card["files"]) == {"encoder.safetensors", "encoder.onnx"}
    assert card["files"]["encoder.safetensors"]["sha256"] == hashlib.sha256((tmp_path / "encoder.safetensors").read_bytes()).hexdigest()
    # a card of another run would be replaced: it is listed so the caller can refuse or ask
    assert tmp_path / "model_card.json" in export_targets("pt2", tmp_path, run_dir)


def test_pt2_and_uint8_onnx_agree_with_the_trained_model_and_onnx_carries_the_preprocessing(run_dir, reference, tmp_path):
    pt2 = export_run(run_dir, "pt2", tmp_path)[0]
    u8 = export_run(run_dir, "onnx_uint8", tmp_path)[0]
    rm = RunModel.load(run_dir)
    _, test = rm.splits()
    np.save(tmp_path / "u8.npy", test.images[:16].numpy())
    out = run_isolated(f"""
        import json
        import numpy as np, onnx, onnxruntime as ort, torch
        x, h = np.load("{reference}/x.npy"), np.load("{reference}/h.npy")
        m = torch.export.load("{pt2}").module()
        with torch.no_grad():
            a = float(np.abs(m(torch.from_numpy(x[:5])).numpy() - h[:5]).max())
        sess = ort.InferenceSession("{u8}", providers=["CPUExecutionProvider"])
        b = float(np.abs(sess.run(None, {{"images": np.load("{tmp_path}/u8.npy")}})[0] - h).max())
        props = {{p.key: p.value for p in onnx.load("{u8}").metadata_props}}
        inp = json.loads(props["workbench.input"])
        print(a, b, inp["dtype"], inp["channels"], inp["image_size"], inp["mean"][0], inp["std"][0])
    """).split()
    assert float(out[0]) < 1e-4 and float(out[1]) < 1e-4
    assert out[2:5] == ["uint8", "1", "28"] and float(out[5]) == pytest.approx(rm.mean[0]) and float(out[6]) == pytest.approx(rm.std[0])
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert card["files"]["encoder.pt2"]["load"].startswith("torch.export.load")


def test_an_export_that_does_not_reload_to_the_same_network_is_reported(small_run, tmp_path, monkeypatch):
    real = torch.export.load

    class Off(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(x) + 1e-3

    monkeypatch.setattr(torch.export, "load", lambda p: type("P", (), {"module": lambda self: Off(real(p).module())})())
    with pytest.raises(ConfigError, match="reloaded gives outputs 0.001 away"):
        export_run(small_run, "pt2", tmp_path)


def test_torchscript_export_says_once_that_it_is_deprecated_instead_of_torch_warnings(small_run, tmp_path, caplog, recwarn):
    import logging
    import warnings

    warnings.simplefilter("always")  # torch's FutureWarnings would all be recorded here
    with caplog.at_level(logging.WARNING, logger="workbench"):
        export_run(small_run, "torchscript", tmp_path)
    assert [w for w in recwarn if issubclass(w.category, FutureWarning)] == []
    notes = [r.getMessage() for r in caplog.records if "TorchScript" in r.getMessage()]
    assert notes == ["TorchScript is deprecated in torch; prefer the pt2 format (--format pt2, loaded with torch.export.load)"]


@pytest.mark.parametrize("h, w, out", [(7, 7, 2), (5, 9, 3), (3, 3, 2), (10, 6, 4)])
def test_fixed_adaptive_pool_averages_the_windows_torch_does(h, w, out):
    from workbench.core.export import FixedAdaptivePool

    x = torch.randn(2, 3, h, w)
    want = torch.nn.AdaptiveAvgPool2d(out)(x)
    assert torch.allclose(FixedAdaptivePool(h, w, (out, out))(x), want, atol=1e-6)


@pytest.mark.parametrize("fmt", ["onnx", "onnx_uint8"])
def test_onnx_export_of_an_image_size_the_pool_does_not_divide(fmt, tmp_path):
    """20 px -> 10 -> 5 -> 3x3 maps pooled to 2x2: torch's ONNX exporter refuses adaptive pooling there."""
    cfg = Config().with_overrides(["data.subset=256", "data.image_size=20", "train.batch_size=32", "train.max_steps=2",
                                   "eval.test_size=100", "eval.bank_size=256", "eval.embed_points=50"])
    run = list(train(cfg, runs_root=tmp_path / "runs"))[0].run_dir
    path = export_run(run, fmt, tmp_path / "out")[0]  # reloaded in onnxruntime and compared inside: raises if off
    rm = RunModel.load(run)
    _, test = rm.splits()
    images = test.images[:8]
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = images.numpy() if fmt == "onnx_uint8" else rm.preprocess(images).numpy()
    got = sess.run(None, {"images": feed})[0]
    want = rm.embed(images)
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-4


def test_a_read_out_ships_as_its_own_named_layer_only_when_asked(tmp_path, quick_cfg):
    """--readout adds the run's fitted read-out beside the plain backbone's weights ('readout.mean',
    'readout.projection'), described in the card and the ONNX metadata; a run that fitted none refuses it."""
    from safetensors.torch import load_file

    events = list(train(quick_cfg("train.max_steps=2", "eval.readout=whitened"), runs_root=tmp_path / "runs"))
    run = events[0].run_dir
    rm = RunModel.load(run)
    _, test = rm.splits()
    images = test.images[:8]
    plain = export_run(run, "safetensors", tmp_path / "plain")[0]
    assert not any(k.startswith("readout.") for k in load_file(plain))
    path = export_run(run, "safetensors", tmp_path / "ro", readout=True)[0]
    state = load_file(path)
    card = json.loads((tmp_path / "ro" / "model_card.json").read_text())["files"]["encoder.safetensors"]
    assert card["readout"]["kind"] == "whitened" and card["readout"]["keys"] == {"mean": "readout.mean", "projection": "readout.projection"}
    h = torch.from_numpy(rm.embed(images))
    got = (h - state["readout.mean"]) @ state["readout.projection"]
    assert torch.allclose(got, torch.from_numpy(rm.embed(images, readout=True)), atol=1e-4)
    onnx = export_run(run, "onnx", tmp_path / "onnx", readout=True)[0]
    import onnx as onnx_lib

    props = {p.key: p.value for p in onnx_lib.load(str(onnx)).metadata_props}
    assert json.loads(props["workbench.readout"])["kind"] == "whitened"
    none_run = list(train(quick_cfg("train.max_steps=1"), runs_root=tmp_path / "none"))[0].run_dir
    with pytest.raises(ConfigError, match="fitted no read-out"):
        export_run(none_run, "safetensors", tmp_path / "x", readout=True)
    assert not (tmp_path / "x").exists()
    with pytest.raises(ConfigError, match="choose one"):
        export_run(run, "safetensors", tmp_path / "y", readout=True, include_head=True)
