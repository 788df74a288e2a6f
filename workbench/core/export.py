"""Export a trained encoder and embeddings, atomically, with a model card.

Formats (``core/formats.py``):
- safetensors: ``encoder.safetensors``, the state dict of the network the model card describes in
  plain PyTorch (encoder, or encoder + head), for ``safetensors.torch.load_file``;
- pt2: ``encoder.pt2`` (``torch.export``, dynamic batch) for ``torch.export.load(path).module()``;
- torchscript: ``encoder.ts`` for ``torch.jit.load`` (deprecated by torch; kept while it loads);
- onnx: ``encoder.onnx`` (dynamic batch) for onnxruntime, the preprocessing in its metadata_props;
  onnx_uint8: ``encoder.uint8.onnx`` takes uint8 images (B, C, S, S) and normalises inside the graph;
- npz / projector: embeddings of a split, as .npz or TensorBoard-projector TSV + sprite.
Every model export writes ``model_card.json`` beside it (``core/modelcard.py``): one card per folder
and run, describing every file exported there (a second format adds its entry, it does not replace the card).
"""
from __future__ import annotations

import contextlib
import copy
import errno
import hashlib
import io
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from workbench.core.inference import RunModel
from workbench.core.files import orphans, temp_prefix
from workbench.core.registry import ConfigError
from workbench.core.files import DiskFullError, atomic_write_bytes, atomic_write_text, file_mode
from workbench.core.runfolder import check_folder, config_path, export_dir, make_folder
from workbench.core.runs import read_metrics

from workbench.core import modelcard, projector
from workbench.core.formats import FORMATS  # noqa: F401  (the one list of formats; re-exported)
from workbench.core.formats import MODEL as SUFFIX

log = logging.getLogger("workbench")


class Exported(nn.Module):
    """What is exported: images (B, C, S, S), normalised -> (B, D) representations (or projections)."""

    def __init__(self, encoder: nn.Module, head: nn.Module | None):
        super().__init__()
        self.encoder = encoder
        self.head = head if head is not None else nn.Identity()

    def forward(self, x):
        return self.head(self.encoder(x))


class ReadoutLayer(nn.Module):
    """The optional read-out as its own named layer after the plain backbone: (B, D) -> (B, D),
    ``(h - mean) @ projection``; buffers ``mean`` (D,) and ``projection`` (D, D) (the identity when centred)."""

    def __init__(self, mean: torch.Tensor, projection: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.float().contiguous())
        self.register_buffer("projection", projection.float().contiguous())

    def forward(self, h):
        return (h - self.mean) @ self.projection

    @classmethod
    def of(cls, readout: nn.Module) -> ReadoutLayer:
        """From the network's ``Readout`` (weight = P^T, bias = -mean @ P)."""
        p = readout.weight.detach().double().T
        mean = -torch.linalg.solve(p.T, readout.bias.detach().double())
        return cls(mean, p)


def readout_card(rm: RunModel) -> dict:
    """What the model card and the ONNX metadata say of an exported read-out."""
    from workbench.core.models import Readout

    e = rm.cfg.eval
    return {"kind": e.readout, "keys": {"mean": "readout.mean", "projection": "readout.projection"},
            "formula": "embedding = (backbone_output - mean) @ projection",
            "fitted_on": f"un-augmented training-split representations (the kNN bank: eval.bank_size = {e.bank_size or 'all'}), "
                         "at the run's last evaluation",
            "eps": Readout.EPS if e.readout == "whitened" else None,
            "note": "optional; the plain backbone's output is the representation the field's kNN protocol reads"}


def check_readout(rm: RunModel, readout: bool, include_head: bool) -> None:
    """A read-out is exported only when the run fitted one, and never with the head (trained on the plain output)."""
    if not readout:
        return
    if include_head:
        raise ConfigError("export: --readout applies to the representation and --include-head exports the head's output; "
                          "choose one")
    if rm.cfg.eval.readout == "none":
        raise ConfigError(f"export: run '{rm.run_dir.name}' fitted no read-out (eval.readout = none); export the plain backbone, "
                          "or train with --set eval.readout=whitened (or centred)")


class Uint8Input(nn.Module):
    """uint8 images (B, C, S, S) -> the float input of ``net``: x / 255, then (x - mean) / std per channel."""

    def __init__(self, net: nn.Module, mean: list, std: list):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return self.net((x.float() / 255 - self.mean) / self.std)


class FixedAdaptivePool(nn.Module):
    """``nn.AdaptiveAvgPool2d`` for one input size as two averaging matrices: (B, C, h, w) -> (B, C, oh, ow).

    Averages the same windows as torch's adaptive pooling (rows floor(i h / oh) to ceil((i + 1) h / oh)), so the
    output matches it to float rounding. The ONNX exporter refuses adaptive pooling whose output size does not
    divide its input (a 50-px image gives 7x7 maps, pooled to 2x2): this form exports as two matrix products."""

    def __init__(self, h: int, w: int, out: tuple[int, int]):
        super().__init__()
        self.register_buffer("rows", _window_means(h, out[0]))
        self.register_buffer("cols", _window_means(w, out[1]))

    def forward(self, x):
        return self.rows @ x @ self.cols.T


def _window_means(n: int, m: int) -> torch.Tensor:
    """(m, n): row i averages inputs floor(i n / m) .. ceil((i + 1) n / m) - 1."""
    a = torch.zeros(m, n)
    for i in range(m):
        lo, hi = i * n // m, -(-(i + 1) * n // m)
        a[i, lo:hi] = 1.0 / (hi - lo)
    return a


def onnx_friendly(module: nn.Module, example: torch.Tensor) -> nn.Module:
    """A copy of ``module`` whose adaptive average pools that ONNX cannot express, at the sizes ``example`` gives
    them, are ``FixedAdaptivePool``; the module itself when it has none."""
    sizes = {}

    def record(name):
        def hook(_module, args):
            sizes[name] = tuple(args[0].shape[-2:])  # returns None: the input goes on unchanged
        return hook

    pools = {name: m for name, m in module.named_modules() if isinstance(m, nn.AdaptiveAvgPool2d)}
    hooks = [m.register_forward_pre_hook(record(name)) for name, m in pools.items()]
    with torch.no_grad():
        module(example)
    for h in hooks:
        h.remove()
    outs = {}
    for name, (h, w) in sizes.items():
        size = pools[name].output_size
        oh, ow = (size, size) if isinstance(size, int) else (size[0] or h, size[1] or w)
        if h % oh or w % ow:
            outs[name] = (h, w, (oh, ow))
    if not outs:
        return module
    module = copy.deepcopy(module)
    for name, (h, w, out) in outs.items():
        parent, _, child = name.rpartition(".")
        setattr(module.get_submodule(parent) if parent else module, child, FixedAdaptivePool(h, w, out))
    return module


def _final_metrics(run_dir) -> dict:
    final = {}
    for r in read_metrics(run_dir):
        final.update({k: v for k, v in r.items() if v is not None and k not in ("time", "step", "epoch")})
    return final


def _train_meta(run_dir: Path) -> dict:
    from workbench.core.config import tomllib

    try:
        return tomllib.loads(config_path(run_dir).read_text(encoding="utf-8")).get("meta", {})
    except (OSError, ValueError):
        return {}


def _architecture(rm: RunModel, module: nn.Module, include_head: bool) -> dict:
    """The card's plain-PyTorch recipe, verified here: rebuilt from the spec alone, loaded, same outputs."""
    enc, head = module.encoder, module.head if include_head else None
    try:
        arch = modelcard.architecture(enc, head, rm.cfg.model.encoder)
        rebuilt = modelcard.build(arch["modules"]).eval()
        rebuilt.load_state_dict(module.state_dict() if include_head else enc.state_dict(), strict=True)
        x = torch.randn(3, rm.channels, rm.image_size, rm.image_size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            if not torch.allclose(rebuilt(x), module(x) if include_head else enc(x), atol=1e-5):
                raise modelcard.NotDescribable("the rebuilt network's outputs differ")
        return arch
    except (modelcard.NotDescribable, RuntimeError) as exc:
        return {"describable": False, "why": str(exc).splitlines()[0], "class": type(enc).__module__ + "." + type(enc).__name__}


LOADERS = {"safetensors": "safetensors.torch.load_file(path) -> state dict; build architecture.python, load_state_dict, eval()",
           "pt2": "torch.export.load(path).module() -> callable on float images",
           "torchscript": "torch.jit.load(path).eval()",
           "onnx": "onnxruntime.InferenceSession(path): input 'images' float32, output 'embeddings'",
           "onnx_uint8": "onnxruntime.InferenceSession(path): input 'images' uint8 (B, C, S, S), output 'embeddings'; "
                         "steps to_tensor and normalize happen inside the graph"}


OUTPUT_WHAT = {
    "head": "projection-head output (the head is trained on the backbone's own output)",
    "readout": "representation (before the projection head) through the run's read-out, a separate last layer: "
               "(backbone_output - mean) @ projection (see 'readout'); compare embeddings by cosine similarity",
    "plain": "representation: the backbone's own output, before the projection head, as the field's kNN protocol reads "
             "it; compare embeddings by cosine similarity",
}


def model_card(rm: RunModel, fmt: str, include_head: bool, out_dim: int, path: Path, module: nn.Module,
               readout: bool = False) -> dict:
    """The card of one export (see ``core/modelcard.py``); ``merge_card`` folds it into the folder's card."""
    cfg = modelcard.strip_paths(rm.cfg.to_dict())
    entry = {"format": fmt, "load": LOADERS[fmt], "includes_projection_head": include_head,
             "readout": readout_card(rm) if readout else None,
             "output": {"shape": ["batch", out_dim], "embedding_dim": out_dim,
                        "what": OUTPUT_WHAT["head" if include_head else "readout" if readout else "plain"]},
             "input_dtype": "uint8" if fmt == "onnx_uint8" else "float32",
             "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
             "architecture": _architecture(rm, module, include_head)}
    return {
        "schema": modelcard.SCHEMA,
        "run": rm.run_dir.name,
        "encoder": rm.cfg.model.encoder,
        "input": {"shape": ["batch", rm.channels, rm.image_size, rm.image_size], "dtype": "float32", "layout": "NCHW",
                  "value_range": "pixels / 255, then (x - mean) / std per channel",
                  "mean": rm.mean, "std": rm.std, "channels": rm.channels, "image_size": rm.image_size},
        "preprocessing": modelcard.preprocessing(rm.channels, rm.image_size, rm.mean, rm.std, rm.cfg.data.name),
        "similarity": "cosine (L2-normalise embeddings before comparing)",
        "files": {path.name: entry},
        "data": modelcard.data_provenance(cfg.get("data", {})),
        "versions": modelcard.versions(_train_meta(rm.run_dir)),
        "training_config": cfg,
        "metrics": _final_metrics(rm.run_dir),
    }


def card_path(model_path: Path) -> Path:
    """model_card.json for encoder.*; <stem>.model_card.json for a file named otherwise."""
    stem = model_path.name.split(".")[0]
    return model_path.with_name("model_card.json" if stem == "encoder" else f"{stem}.model_card.json")


def _same_run_card(path: Path, run: str) -> dict | None:
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return old if isinstance(old, dict) and old.get("schema") == modelcard.SCHEMA and old.get("run") == run else None


def check_other_card(model: Path, run: str, what: str = "out") -> None:
    """Refuse (ConfigError) an export into a folder whose model card describes another run's files that this export
    would not replace: one card per folder describes one run, and replacing it would leave them undescribed."""
    path = card_path(model)
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(old, dict) or old.get("run") in (None, run):
        return
    kept = [name for name in old.get("files", {}) if (path.parent / name).is_file() and path.parent / name != model]
    if kept:
        raise ConfigError(f"{what} '{path.parent}' holds an export of another run ('{old['run']}': {', '.join(kept)}) "
                          f"that {path.name} describes; this export would leave it undescribed: choose another "
                          f"{what}, or move those files away first")


def merge_card(path: Path, card: dict) -> dict:
    """The folder's card with this export's entry added: files exported earlier from the same run stay described."""
    old = _same_run_card(path, card["run"])
    if old is not None:
        card["files"] = {**{k: v for k, v in old.get("files", {}).items() if (path.parent / k).is_file()}, **card["files"]}
    return card


def _atomic_via_tmp(path: Path, writer) -> None:
    """Call writer(tmp_path) and rename the result into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".tmp")
    os.close(fd)
    try:
        writer(tmp)
        os.chmod(tmp, file_mode())  # mkstemp made it 0600; give it the umask's mode like every other file
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise DiskFullError(path, 0) from exc
        if isinstance(exc, OSError) and not isinstance(exc, DiskFullError):
            raise OSError(exc.errno, f"cannot write '{path}': {exc.strerror or exc}") from exc
        raise


def export_model(rm: RunModel, fmt: str, out: Path, include_head: bool = False, what: str = "out",
                 readout: bool = False) -> list[Path]:
    """The plain backbone (torchvision's ResNet with ``fc = Identity()``, small_cnn as its card says); with the
    projection head (``include_head``) or with the run's read-out as a separate layer (``readout``)."""
    check_readout(rm, readout, include_head)
    rm.net.cpu()
    last = rm.net.head if include_head else ReadoutLayer.of(rm.net.readout) if readout else None
    module = Exported(rm.net.encoder, last).eval().cpu()
    example = torch.zeros(2, rm.channels, rm.image_size, rm.image_size)
    with torch.no_grad():
        out_dim = module(example).shape[1]
    out = model_path(fmt, out)
    make_folder(out.parent, what)
    if fmt == "safetensors":
        from safetensors.torch import save

        state = {k: v.contiguous() for k, v in module.encoder.state_dict().items()}
        if last is not None:
            state |= {f"{'head' if include_head else 'readout'}.{k}": v.contiguous() for k, v in last.state_dict().items()}
        if include_head:
            state = {k: v.contiguous() for k, v in module.state_dict().items()}
        atomic_write_bytes(out, save(state, metadata={"encoder": rm.cfg.model.encoder}))
    elif fmt == "torchscript":
        log.warning(TORCHSCRIPT_NOTE)
        buf = io.BytesIO()
        with torch.no_grad(), _quiet_jit():
            torch.jit.save(torch.jit.trace(module, example), buf)
        atomic_write_bytes(out, buf.getvalue())
    elif fmt == "pt2":
        batch = torch.export.Dim("batch", min=1, max=65536)
        with torch.no_grad():
            program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
        buf = io.BytesIO()
        torch.export.save(program, buf)
        atomic_write_bytes(out, buf.getvalue())
    elif fmt in ("onnx", "onnx_uint8"):
        _export_onnx(rm, module, example, out, fmt == "onnx_uint8")
    verify_reload(fmt, out, module, rm)
    card = merge_card(card_path(out), model_card(rm, fmt, include_head, out_dim, out, module, readout))
    atomic_write_text(card_path(out), json.dumps(card, indent=2))
    return [out, card_path(out)]


TORCHSCRIPT_NOTE = "TorchScript is deprecated in torch; prefer the pt2 format (--format pt2, loaded with torch.export.load)"


@contextlib.contextmanager
def _quiet_jit():
    """torch.jit's FutureWarnings (trace, save and load are deprecated) silenced: TORCHSCRIPT_NOTE says it once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def verify_reload(fmt: str, path: Path, module: nn.Module, rm: RunModel) -> float:
    """Reload the written file as a user would and compare it with the trained network on random images;
    returns the max abs difference, raises ConfigError above 1e-4 (the file stays, named in the message)."""
    g = torch.Generator().manual_seed(0)
    u8 = torch.randint(0, 256, (3, rm.channels, rm.image_size, rm.image_size), generator=g, dtype=torch.uint8)
    x = rm.preprocess(u8).cpu()
    with torch.no_grad():
        want = module(x)
        if fmt == "safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
            ref = module.state_dict() if any(k.startswith("head.") for k in state) else module.encoder.state_dict()
            if isinstance(module.head, ReadoutLayer):
                ref = ref | {f"readout.{k}": v for k, v in module.head.state_dict().items()}
            return max((float((state[k].float() - v.float()).abs().max()) for k, v in ref.items() if v.numel()), default=0.0)
        if fmt == "pt2":
            got = torch.export.load(str(path)).module()(x)
        elif fmt == "torchscript":
            with _quiet_jit():
                got = torch.jit.load(str(path))(x)
        else:
            import onnxruntime as ort

            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            got = torch.from_numpy(sess.run(None, {"images": (u8 if fmt == "onnx_uint8" else x).numpy()})[0])
    diff = float((got - want).abs().max())
    if not diff < 1e-4:
        raise ConfigError(f"export: '{path}' reloaded gives outputs {diff:.3g} away from the trained network; do not use it")
    return diff


def _export_onnx(rm: RunModel, module: nn.Module, example: torch.Tensor, out: Path, uint8: bool) -> None:
    """ONNX with dynamic batch; the preprocessing in the model's metadata_props (uint8: inside the graph)."""
    if uint8:
        module, example = Uint8Input(module, rm.mean, rm.std).eval(), example.to(torch.uint8)
    props = {"workbench.input": json.dumps({"dtype": "uint8" if uint8 else "float32", "layout": "NCHW", "channels": rm.channels,
                                            "image_size": rm.image_size, "mean": rm.mean, "std": rm.std}),
             "workbench.preprocessing": json.dumps(modelcard.preprocessing(rm.channels, rm.image_size, rm.mean, rm.std,
                                                                           rm.cfg.data.name)[:4 if uint8 else None]),
             "workbench.encoder": rm.cfg.model.encoder, "workbench.run": rm.run_dir.name}
    if isinstance(getattr(module, "head", None), ReadoutLayer):
        props["workbench.readout"] = json.dumps(readout_card(rm))

    module = onnx_friendly(module, example)

    def write(tmp):
        import onnx

        with torch.no_grad():
            torch.onnx.export(module, (example,), tmp, input_names=["images"], output_names=["embeddings"],
                              dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}}, dynamo=False)
        model = onnx.load(tmp)
        onnx.helper.set_model_props(model, props)
        onnx.save(model, tmp)
    try:
        _atomic_via_tmp(out, write)
    except ImportError as exc:
        raise ConfigError(f"ONNX export needs the onnx package ({exc}); pip install 'contrastive-workbench[onnx]'") from None
    except (RuntimeError, TypeError, ValueError) as exc:  # the exporter's messages carry whole graphs: the log has them
        log.debug("ONNX export failed", exc_info=True)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError(f"export: ONNX cannot express this network ({first}); the pt2 or safetensors formats can") from exc


def npz_bytes(**arrays) -> bytes:
    """The bytes of an uncompressed .npz holding ``arrays`` (``numpy.load`` reads them back by name)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def write_npz(path: Path, **arrays) -> None:
    atomic_write_bytes(path, npz_bytes(**arrays))


def write_projector(folder: Path, embeddings: np.ndarray, labels: np.ndarray, classes: list, images: np.ndarray) -> list[Path]:
    """TensorBoard projector files (``core/projector.py``): vectors.tsv, metadata.tsv (with header), sprite.png,
    projector_config.pbtxt."""
    cell = projector.write_entry(folder, embeddings, labels, classes, images)
    return [folder / f for f in projector.FILES] + [projector.write_config(folder, [projector.ProjectorEntry("", "", cell)])]


def model_path(fmt: str, out: Path) -> Path:
    """The model file ``out`` names: ``encoder<suffix>`` inside a folder, or ``out`` itself when it ends in the
    format's suffix; any other file name is refused (safetensors bytes in 'notes.txt' help nobody)."""
    if out.suffix == "" or out.is_dir():
        return out / f"encoder{SUFFIX[fmt]}"
    if not out.name.endswith(SUFFIX[fmt]):
        raise ConfigError(f"'{out}': a {fmt} file ends in {SUFFIX[fmt]}; give a folder or a file name ending in "
                          f"{SUFFIX[fmt]}")
    return out


def export_targets(fmt: str, out, run_dir=None) -> list[Path]:
    """The files ``export_run(run_dir, fmt, out)`` would replace, so a caller can refuse (or ask) before
    overwriting any of them. The folder's model card of the same run is extended, not replaced: it is
    listed only when it belongs to another run (or ``run_dir`` is not given)."""
    out = Path(out)
    if fmt in SUFFIX:
        model = model_path(fmt, out)
        card = card_path(model)
        extended = run_dir is not None and _same_run_card(card, Path(run_dir).resolve().name) is not None
        return [model] + ([] if extended else [card])
    if fmt == "npz":
        return [npz_path(out)]
    return [out / n for n in (*projector.FILES, projector.CONFIG)]


def refuse_overwrite(paths, force: bool = False, what: str = "out", hint: str = "pass force=True") -> None:
    """The rule every front end keeps for the files it writes: an existing file is replaced only when ``force``;
    otherwise ConfigError naming it (and how many more) with ``hint`` ("add --force") and ``what`` ("--out")."""
    existing = [Path(p) for p in paths if Path(p).exists()]
    if existing and not force:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise ConfigError(f"'{existing[0]}'{more} already exists; {hint} to overwrite it or choose another {what}")


def would_replace(fmt: str, out, run_dir=None) -> list[Path]:
    """The files an export of ``fmt`` into ``out`` would overwrite (a model card of the same run is extended, not
    replaced): what the window names before it exports."""
    return [p for p in export_targets(fmt, out, run_dir) if p.exists()]


def destination(run_dir, fmt: str, out=None, force: bool = False, what: str = "out", hint: str = "pass force=True") -> Path:
    """Where an export of ``run_dir`` goes: ``out``, or the run's own ``export/FORMAT/`` (``runfolder.export_dir``),
    checked (``check_out``) and refused when it would replace a file unless ``force`` (``refuse_overwrite``)."""
    out = check_out(fmt, out if out is not None else export_dir(run_dir, fmt), what)
    refuse_overwrite(export_targets(fmt, out, run_dir), force, what, hint)
    return out


def check_out(fmt, out, what: str = "out") -> Path:
    """``out`` as a Path; ConfigError for an unknown format or an ``out`` that cannot be written (a file on the
    way, no permission), before anything is loaded or written. ``what`` names it (``--out`` on the command line)."""
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose from: {', '.join(FORMATS)}")
    if not isinstance(out, (str, os.PathLike)):
        raise ConfigError(f"{what}: expected a folder path, got {type(out).__name__}")
    out = Path(out)
    suffix = SUFFIX.get(fmt, ".npz" if fmt == "npz" else "")
    if (out.exists() or out.is_symlink()) and not out.is_dir() and not (suffix and out.name.endswith(suffix)):
        kind = "a folder" + (f" or a file name ending in {suffix}" if suffix else " (the projector writes several files)")
        raise ConfigError(f"{what} '{out}' is a file, not a folder{' (nor a file name ending in ' + suffix + ')' if suffix else ''}; "
                          f"give {kind}")
    check_folder(out_folder(fmt, out), what, file=out)
    return out


def out_folder(fmt: str, out: Path) -> Path:
    """The folder an export writes into: ``out``, or the one holding the file ``out`` names."""
    return (model_path(fmt, out) if fmt in SUFFIX else npz_path(out) if fmt == "npz" else out / "x").parent


def npz_path(out: Path) -> Path:
    """The npz file ``out`` names: ``out`` itself when it ends in .npz (and is not a folder), else embeddings.npz in it."""
    return out if out.suffix == ".npz" and not out.is_dir() else out / "embeddings.npz"


def export_run(run_dir, fmt: str, out, include_head: bool = False, split: str = "test", max_points: int = 10000,
               what: str = "out", readout: bool = False) -> list[Path]:
    """Write the export; ``what`` names ``out`` in errors. Nothing is made before the export can be written (an unusable
    checkpoint, a run whose images are not on disk), and a folder the system will not create is one line."""
    out = check_out(fmt, out, what)
    rm = RunModel.load(run_dir, verb="export")
    check_readout(rm, readout, include_head)
    for old in orphans(out_folder(fmt, out)):  # hidden temporary files a killed export left (often the model's size)
        old.unlink(missing_ok=True)
    if fmt in SUFFIX:
        check_other_card(model_path(fmt, out), rm.run_dir.name, what)
        return export_model(rm, fmt, out, include_head, what, readout)
    train, test = rm.splits()
    data = test if split == "test" else train
    if fmt == "npz":
        emb = rm.embed(data.images, readout=readout)
        path = npz_path(out)
        make_folder(path.parent, what)
        write_npz(path, embeddings=emb.astype(np.float32), labels=data.labels.numpy(), indices=data.indices.numpy())
        return [path]
    data = data.take(torch.arange(min(max_points, len(data))))
    emb = rm.embed(data.images, readout=readout)
    make_folder(out, what)
    return write_projector(out, emb, data.labels.numpy(), data.classes, data.images.numpy())
