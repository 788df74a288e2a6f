"""Contrastive Workbench: run contrastive self-supervised learning experiments and see what the model learns.

The Python API (names load on first use, so ``import workbench`` stays cheap)::

    import workbench as wb
    cfg = wb.config("examples/bundled_quick.toml", train={"epochs": 1})
    run = wb.fit(cfg, data=images, labels=labels)   # uint8 (N, C, H, W), or a torch Dataset
    run.embed(images[:10]); run.export("safetensors"); run.metrics

See ``workbench.core.api`` for the details.
"""

__version__ = "0.1.0"

_API = {
    "config": "workbench.core.api", "fit": "workbench.core.api", "stream": "workbench.core.api",
    "load_run": "workbench.core.api", "Run": "workbench.core.api", "Stream": "workbench.core.api",
    "Config": "workbench.core.config", "ConfigError": "workbench.core.registry",
    "Control": "workbench.core.control", "ImageData": "workbench.core.data",
    "RunStarted": "workbench.core.events", "StepEvent": "workbench.core.events", "EvalEvent": "workbench.core.events",
    "EmbeddingEvent": "workbench.core.events", "BatchEvent": "workbench.core.events",
    "CheckpointEvent": "workbench.core.events", "PausedEvent": "workbench.core.events",
    "WarningEvent": "workbench.core.events", "DoneEvent": "workbench.core.events", "ErrorEvent": "workbench.core.events",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'workbench' has no attribute '{name}'")
    import importlib

    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
