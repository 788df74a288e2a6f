"""What may change in a stopped run's config.toml before it is resumed: one policy per field, in one place.

A resumed run compares the config its checkpoint was written with against config.toml now. A change is

- ``REFUSE``: the checkpoint's state, the data or the run's step count depend on it (the encoder, the loss,
  the batch size ...): resuming would train something else under the same name, so it is refused with the
  field, the two values and why;
- ``NOTE``: it takes effect from the checkpoint's step on (a lower learning rate, more epochs, another device,
  other evaluation settings) and is said in one line when the run starts.

A field a section does not list takes the section's default (``SECTION_DEFAULT``); a key the checkpoint's config
lacks (written by a version from before that key) is not a change. docs/run-folders.md shows the table.
"""
from __future__ import annotations

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
    out = []
    for section in sorted(set(saved) | set(now)):
        old, new = saved.get(section), now.get(section)
        if not isinstance(old, dict) or not isinstance(new, dict):
            continue
        keys = sorted(set(old) | set(new)) if section in STATE_SECTIONS else sorted(old)
        out += [(f"{section}.{k}", old.get(k, "(unset)"), new.get(k, "(unset)")) for k in keys if old.get(k) != new.get(k)]
    return out


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
