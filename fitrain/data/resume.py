"""Resume state that lets a killed ``prepare`` continue without re-tokenizing what it already packed.

(Called *resume state*, not checkpoint: "checkpoint" in fitrain means a training checkpoint.)

After each input batch that completed at least one shard, prepare saves the ``state_dict()`` of each
component of its pipeline at that batch boundary -- the packer (buffered items, open rows), the shard
writer (the partly filled shard, the finished shards) and the run (counts, the token-for-token budget).
Array values go to ``_resume_<batches>.npz`` and the rest into ``_progress.json`` (both written atomically,
the json last, so it always names a complete state). A rerun with the same settings re-reads the input
(rejects are counted while reading, so they are recounted, not restored), skips the batches the state
covers without tokenizing them, loads the states and carries on; the shards come out byte-identical to an
uninterrupted run (tests/data/test_prepare_kill.py kills a real subprocess to check). This module knows
nothing of what a component's state holds.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fitrain.core.io import atomic_path, read_json, write_json

PROGRESS = "_progress.json"
STATE_VERSION = 2


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def read_progress(out: Path, settings: str) -> dict:
    """The progress record of an interrupted run with these settings, else a fresh one."""
    p = out / PROGRESS
    try:
        prog = read_json(p) if p.is_file() else {}
    except ValueError:
        prog = {}
    if prog.get("settings") != settings:
        return {"settings": settings, "shards": {}, "state": None}
    st = prog.get("state")
    ok = st and st.get("version") == STATE_VERSION and (out / st["npz"]).is_file()
    prog["state"] = st if ok else None
    prog.setdefault("shards", {})
    return prog


def save_state(out: Path, progress: dict, batches: int, components: dict[str, Stateful]) -> None:
    """Save every component's state after ``batches`` input batches into ``progress`` (and to disk)."""
    arrays: dict[str, np.ndarray] = {}
    plain: dict[str, dict] = {}
    for name, comp in components.items():
        plain[name] = {}
        for key, value in comp.state_dict().items():
            if isinstance(value, np.ndarray):
                arrays[f"{name}.{key}"] = value
            else:
                plain[name][key] = value
    npz = f"_resume_{batches:08d}.npz"
    with atomic_path(out / npz) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    old = progress.get("state")
    progress["state"] = {"version": STATE_VERSION, "npz": npz, "batches": batches, "components": plain}
    write_json(out / PROGRESS, progress)
    if old and old.get("npz") != npz:
        (out / old["npz"]).unlink(missing_ok=True)


def load_state(out: Path, progress: dict, components: dict[str, Stateful],
               files_present: Any = lambda state: True) -> int:
    """Load the saved state into fresh components; returns how many input batches it covers (0 when there
    is none). ``files_present(plain_state)`` may veto a state whose outputs are gone from disk."""
    st = progress.get("state")
    if st is None or set(st["components"]) != set(components) or not files_present(st["components"]):
        return 0
    with np.load(out / st["npz"], allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for name, comp in components.items():
        state = dict(st["components"][name])
        prefix = f"{name}."
        state.update({k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
        comp.load_state_dict(state)
    return int(st["batches"])


def remove_states(out: Path) -> None:
    for p in Path(out).glob("_resume_*.npz"):
        p.unlink(missing_ok=True)
