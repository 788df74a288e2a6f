"""What may change in a stopped run's config.toml before it is resumed: one policy per field, in one place.

A resumed run compares the config its checkpoint was written with against config.toml now. A change is

- ``REFUSE``: the checkpoint's state, the data or the run's step count depend on it (the encoder, the loss,
  the batch size ...): resuming would train something else under the same name, so it is refused with the
  field, the two values and why;
- ``NOTE``: it takes effect from the checkpoint's step on (a lower learning rate, more epochs, another device,
  other evaluation settings) and is said in one line when the run starts.

A field a section does not list takes the section's default (``SECTION_DEFAULT``); a key the checkpoint's config
lacks (written by a version from before that key) is not a change. docs/run-folders.md shows the table.

``check_resume(run)`` applies it, with everything else a resume needs, before anything is written: the folder's
owner, its checkpoint, the model's tensors and metrics.csv. Embed and export ask ``checkpoint_mismatch`` the same
question about the network alone.
"""
from __future__ import annotations

import csv
import os
import shlex
from pathlib import Path

import torch

from workbench.core import keys
from workbench.core import runfolder as layout
from workbench.core import runlock
from workbench.core.methods import build_network
from workbench.core.registry import ConfigError
from workbench.core.runfolder import find_run
from workbench.core.runs import is_metrics_header, load_checkpoint, load_run_config, previous_advice

REFUSE, NOTE = "refuse", "note"

# field -> (policy, why a change is refused / what it does)
POLICY: dict[str, tuple[str, str]] = {
    "data.name": (REFUSE, "the run would go on with other images"),
    "data.root": (NOTE, "the images are read from the new folder (a moved data set)"),
    "data.image_size": (REFUSE, "the network was built for the images' size"),
    "data.channels": (REFUSE, "the network was built for the images' channels"),
    "data.holdout": (REFUSE, "the held-out split would differ, so evaluations before and after could not be compared"),
    "data.subset": (REFUSE, "the training images and the steps in an epoch would differ"),
    "data.download": (NOTE, ""),
    "data.in_memory": (NOTE, ""),
    "model.sync_bn": (NOTE, ""),
    "optim.name": (REFUSE, "the optimiser's saved state belongs to the old one"),
    "train.batch_size": (REFUSE, "the steps in an epoch, the epoch counter and the learning-rate schedule depend on it"),
    "train.seed": (REFUSE, "the data order and the random views depend on it"),
}
SECTION_DEFAULT = {"data": REFUSE, "model": REFUSE, "loss": REFUSE, "method": REFUSE, "augment": NOTE, "optim": NOTE,
                   "train": NOTE, "eval": NOTE}
NAMED = {"loss.name": "the loss", "method.name": "the method", "model.encoder": "the encoder", "optim.name": "the optimiser"}
STATE_SECTIONS = ("model", "loss", "method")  # every key compared, present in the checkpoint's config or not


def policy(field: str) -> tuple[str, str]:
    """(REFUSE | NOTE, why) for a dotted field such as ``train.batch_size``."""
    section = field.split(".", 1)[0]
    return POLICY.get(field, (SECTION_DEFAULT.get(section, REFUSE), "the checkpoint's state depends on it"
                              if section in STATE_SECTIONS else ""))


def changes(saved: dict, now: dict) -> list[tuple[str, object, object]]:
    """(field, value in the checkpoint's config, value in config.toml) for each field that differs."""
    shared = [s for s in saved if isinstance(saved[s], dict) and isinstance(now.get(s), dict)]
    old, new = {s: saved[s] for s in shared}, {s: now[s] for s in shared}
    known = keys.flat(old)  # a key the checkpoint's config lacks is a change only where every key counts
    return [(k, a, b) for k, (a, b) in keys.differences([old, new], keys.UNSET)
            if k in known or k.split(".", 1)[0] in STATE_SECTIONS]


def refused(saved: dict, now: dict, sections: tuple[str, ...] | None = None) -> str:
    """The first change resume refuses, in words ("the loss was changed from ntxent to dcl"), or "". ``sections``:
    only those (embed and export read the network alone: ``STATE_SECTIONS``)."""
    found = [c for c in changes(saved, now) if policy(c[0])[0] == REFUSE
             and (sections is None or c[0].split(".", 1)[0] in sections)]
    found.sort(key=lambda c: c[0] not in NAMED)  # a changed loss or encoder explains the rest
    if not found:
        return ""
    field, old, new = found[0]
    if field in NAMED:
        return f"{NAMED[field]} was changed from {old} to {new}"
    why = policy(field)[1] if field.split(".", 1)[0] not in STATE_SECTIONS else ""  # the network's own: plain
    return f"{field} was changed from {old!r} to {new!r}" + (f" ({why})" if why else "")


def allowed(saved: dict, now: dict, step: int) -> list[str]:
    """The one line that states the changes resume allows (none: [])."""
    found = [c for c in changes(saved, now) if policy(c[0])[0] == NOTE]
    if not found:
        return []
    said = ", ".join(f"{field} {old!r} -> {new!r}" for field, old, new in found)
    return [f"resume: config.toml was changed since the checkpoint of step {step}: {said}; the new values apply from "
            f"step {step} on"]


# ----- a resume checked before anything is written -----
def config_change(saved: dict, now: dict, network_only: bool = False) -> str:
    """The first change between a checkpoint's config and config.toml that resume refuses (``core/resume.py`` has
    the policy of every field), in words ("the loss was changed from ntxent to dcl"), or "" when there is none.
    ``network_only``: changes to what the network's state depends on only (embed, export)."""
    return refused(saved, now, STATE_SECTIONS if network_only else None)


def saved_config(state: dict) -> dict | None:
    """The config a checkpoint was written with, as a dict brought up to date (``config.upgrade``), or None."""
    from workbench.core.config import upgrade

    saved = state.get("config")
    return upgrade(saved)[0] if isinstance(saved, dict) else None


def resume_notes(state: dict, cfg) -> list[str]:
    """The lines that state what reading the checkpoint's config brought up to date (a run from an older version)
    and what config.toml changed since the checkpoint and resume allows (none: [])."""
    from workbench.core.config import upgrade

    saved = state.get("config")
    if not isinstance(saved, dict):
        return []
    notes = [f"resume: this run was written by an older version: {n}; config.toml is written so" for n in upgrade(saved)[1]]
    return notes + allowed(saved_config(state), cfg.to_dict(), int(state.get("step", 0)))


def state_mismatch(expected: dict, found: dict) -> str:
    """What differs between a freshly built state dict's tensors and a checkpoint's, in a few words."""
    missing = [k for k in expected if k not in found]
    extra = [k for k in found if k not in expected]
    shapes = [k for k in expected if k in found and hasattr(found[k], "shape") and tuple(found[k].shape) != tuple(expected[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} tensor(s) the config needs are missing (e.g. {missing[0]})")
    if extra:
        parts.append(f"{len(extra)} tensor(s) the config does not have (e.g. {extra[0]})")
    if shapes:
        k = shapes[0]
        parts.append(f"{k} has shape {tuple(found[k].shape)} in the checkpoint but {tuple(expected[k].shape)} for config.toml")
    return "; ".join(parts)


def checkpoint_mismatch(run: Path, cfg, state: dict, verb: str) -> str:
    """Why ``state`` (a run's checkpoint) does not fit ``cfg`` (its config.toml), as the one message resume, embed and
    export give ("cannot VERB 'RUN': ...; what to do"), or "" when it fits. ``verb``: resume | embed | export."""
    saved = saved_config(state)
    change = config_change(saved, cfg.to_dict(), network_only=verb != "resume") if saved is not None else ""
    if not change:
        expected = _model_shapes(cfg, state)
        diff = state_mismatch(expected, state["model"]) if expected is not None else ""
        change = f"the checkpoint does not fit config.toml's model ({diff})" if diff else ""
    else:
        change += " in config.toml after the checkpoint was written"
    if not change:
        return ""
    advice = "restore config.toml as it was" + (f", or start a new run from it (workbench train {layout.config_path(run)})"
                                                  if verb == "resume" else " (the checkpoint was written with the other value)")
    return f"cannot {verb} '{run}': {change}; {advice}"


def check_metrics(run: Path) -> None:
    """A resumed run appends to metrics.csv: refuse one whose first line is not its header (a damaged or foreign
    file), naming the command that moves it aside, before anything is written."""
    path = layout.metrics_path(run)
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            first = f.readline()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"cannot resume '{run}': metrics.csv cannot be read ({exc.strerror or exc})") from None
    cols = next(csv.reader([first]), []) if first.strip() else []
    if first and not is_metrics_header(cols):
        aside = layout.damaged_metrics_path(run)
        raise ConfigError(f"cannot resume '{run}': metrics.csv is damaged (its first line is not the metrics header: "
                          f"{first.strip()[:40]!r}); move it aside to resume with a new one: "
                          f"mv {shlex.quote(str(path))} {shlex.quote(str(aside))}")


def check_resume(run_dir: str | Path):
    """Validate a resume completely before anything is written: nobody else owns the run folder (``runlock``), its
    config.toml, its checkpoint (a workbench checkpoint dict, finite weights), the config the checkpoint was written
    with against config.toml (``core/resume.py``), the model's tensors (names and shapes, built on the meta device,
    so no memory and no data) and metrics.csv. Returns ``(Config, state)``; raises ConfigError naming what differs
    and what to do."""
    run = find_run(run_dir)
    holder = runlock.owner(run)
    if holder and holder.get("pid") != os.getpid():
        raise ConfigError(f"cannot resume: {runlock.busy_message(run, holder)}")
    cfg = load_run_config(run)
    ckpt = layout.checkpoint_path(run)
    state = load_checkpoint(ckpt)
    for key in ("step", "epoch", "images_in_epoch"):
        if not isinstance(state[key], int) or state[key] < 0:
            raise ConfigError(f"checkpoint '{ckpt}': '{key}' is {state[key]!r}, not a step count; {previous_advice(ckpt)}")
    saved = state.get("config")
    if isinstance(saved, dict) and isinstance(saved.get("augment"), dict) and "start_size" not in saved["augment"]:
        cfg = cfg.replace("augment", start_size=1.0)  # a run from before progressive resolution: full-size views throughout
    mismatch = checkpoint_mismatch(run, cfg, state, "resume")
    if mismatch:
        raise ConfigError(mismatch)
    check_metrics(run)
    return cfg, state


def _model_shapes(cfg, state: dict) -> dict | None:
    """The model's state dict for ``cfg`` built on the meta device (shapes only), or None when the
    network cannot be built from the checkpoint's recorded input (left to the loader to report)."""
    try:
        with torch.device("meta"):
            net = build_network(cfg, int(state["channels"]), int(state["image_size"]))
    except (ConfigError, TypeError, ValueError, RuntimeError, NotImplementedError):
        return None
    return net.state_dict()
