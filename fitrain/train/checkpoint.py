"""Training checkpoints: what they hold (:class:`TrainState`), where they live, which one to resume from,
reading and checking them.

One layout (``LAYOUT``), whatever the strategy: a mapping of ``model`` (the HF model's state dict, HF
parameter names), ``optimizer`` (its state dict keyed by the same names, torch.distributed.checkpoint's
``get_state_dict``), ``scheduler``, ``fitrain`` (the typed :class:`TrainState`: counters, the loader
state, RNG states, the W&B run id, the model's shape, the data fingerprint and the run's static facts),
``layout`` and ``checksum``. Stored as one ``torch.save`` file when the weights are whole (single
device, DDP), or, when they are sharded (``strategy=fsdp``), as a ``torch.distributed.checkpoint``
directory of ``model`` and ``optimizer`` (a file per rank) plus ``meta.pt`` with the rest. The checksum is
recorded at save (sha256 over every tensor and value of the file, or of ``meta.pt`` and each shard file)
and checked by every reader: resume, the export and so eval (a flipped byte is a one-line error).
fitrain.train.checkpoint_io writes and restores checkpoints of the live model. Checkpoints are written
under a temporary name and renamed, and ``checkpoints/latest`` names the newest, so a job killed mid-write
resumes from the previous complete one. A checkpoint of fitrain's earlier Lightning loop (no ``layout``)
is refused with its versions named.
"""
from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fitrain.core.errors import FitrainError
from fitrain.core.io import atomic_path

LATEST = "latest"
STATE_VERSION = 1
LAYOUT = 2          # 1: the Lightning loop's checkpoints (before fitrain owned its loop)
META = "meta.pt"    # a sharded checkpoint's non-tensor part


@dataclass
class TrainState:
    """fitrain's part of a checkpoint. The first block changes every step; the second is fixed for a run."""

    step: int = 0
    tokens: int = 0
    supervised_tokens: int = 0
    finished: bool = False
    loader_state: dict | None = None       # fitrain.data.loader.PackedLoader.state_dict() after this step
    last_loss: float | None = None
    last_val_loss: float | None = None
    rng: dict | None = None                # torch / numpy / python / cuda generator states
    # the run's static facts
    arm: str = ""
    wandb_id: str = ""
    tokenizer: str = ""                    # the tokenizer directory the run trained with
    tokenizer_hash: str = ""
    data_fingerprint: str = ""
    data_path: str = ""
    format: dict | None = None             # the prepared data's training format (the export records it)
    config: dict = field(default_factory=dict)   # the run's TrainConfig, secrets redacted
    model_shape: dict = field(default_factory=dict)
    hf_config: dict = field(default_factory=dict)
    version: int = STATE_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "checkpoint") -> "TrainState":
        version = d.get("version", 1)  # checkpoints from before the field existed are version 1
        if version != STATE_VERSION:
            raise FitrainError(f"{where} holds fitrain state version {version}; this fitrain reads {STATE_VERSION}")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}.ckpt"


def latest_checkpoint(ckpt_dir: str | Path) -> Path | None:
    ckpt_dir = Path(ckpt_dir)
    marker = ckpt_dir / LATEST
    if not marker.is_file():
        return None
    path = ckpt_dir / marker.read_text().strip()
    if not path.exists():
        raise FitrainError(f"{marker} names {path.name}, which does not exist; delete {marker} to start over "
                           "or pass resume=<checkpoint path>")
    return path


def publish(ckpt_dir: str | Path, tmp: Path, final: Path, keep: int) -> None:
    """Rename a finished checkpoint into place, point ``latest`` at it, prune old ones (rank 0 only)."""
    if final.exists():
        shutil.rmtree(final) if final.is_dir() else final.unlink()
    tmp.rename(final)
    with atomic_path(Path(ckpt_dir) / LATEST) as t:
        t.write_text(final.name + "\n")
    if keep > 0:
        old = sorted(p for p in Path(ckpt_dir).glob("step-*.ckpt") if p != final)
        for p in old[: max(0, len(old) - (keep - 1))]:
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def is_checkpoint(path: str | Path) -> bool:
    path = Path(path)
    return path.is_file() and path.suffix == ".ckpt" or (path / META).is_file()


def read_checkpoint(path: str | Path, verify: bool = True) -> dict[str, Any]:
    """The checkpoint's mapping (a file) or its ``meta.pt`` (a sharded directory), its layout checked and,
    with ``verify``, its checksum; one-line errors."""
    import torch

    path = Path(path)
    if not path.exists():
        raise FitrainError(f"checkpoint not found: {path}")
    if path.is_dir() and not (path / META).is_file():
        raise FitrainError(f"{path} is a directory but not a sharded checkpoint (no {META})")
    try:
        ckpt = torch.load(path / META if path.is_dir() else path, map_location="cpu", weights_only=False,
                          mmap=not path.is_dir())
    except Exception as e:  # truncated zip, pickle errors, wrong file type
        raise FitrainError(f"cannot read checkpoint {path}: it is corrupt or not a checkpoint ({type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(ckpt, dict) or "fitrain" not in ckpt:
        raise FitrainError(f"{path} is not a fitrain checkpoint (no 'fitrain' entry)")
    layout = ckpt.get("layout", 1)
    if layout != LAYOUT:
        lightning = ckpt.get("pytorch-lightning_version")
        by = f"fitrain's Lightning loop (pytorch-lightning {lightning}), " if lightning else ""
        raise FitrainError(f"{path} is a checkpoint of {by}layout {layout}; this fitrain reads layout {LAYOUT} only: "
                           "export it with the fitrain that wrote it, or train again in a new run_dir")
    if verify:
        verify_checksum(path, ckpt)
    return ckpt


def verify_checksum(path: Path, ckpt: dict) -> None:
    recorded = ckpt.get("checksum") or {}
    if not recorded.get("payload"):
        raise FitrainError(f"checkpoint {path} has no checksum: it was not written completely by fitrain train")
    if digest({k: v for k, v in ckpt.items() if k != "checksum"}) != recorded["payload"]:
        raise FitrainError(f"checkpoint {path} is corrupt: its checksum does not match what was saved "
                           f"({META if path.is_dir() else 'the file'} changed since); resume from an earlier "
                           "checkpoint (resume=<path>)")
    for name, want in (recorded.get("files") or {}).items():
        f = path / name
        if not f.is_file() or file_sha256(f) != want:
            raise FitrainError(f"checkpoint {path} is corrupt: {name} {'changed since it was saved' if f.is_file() else 'is missing'}; "
                               "resume from an earlier checkpoint (resume=<path>)")


def digest(tree: Any) -> str:
    """sha256 over a checkpoint mapping: every key, tensor (dtype, shape, bytes) and value, in a fixed order."""
    import hashlib

    h = hashlib.sha256()
    _digest(tree, h, "")
    return h.hexdigest()


def _digest(tree: Any, h, key: str) -> None:
    import torch

    if isinstance(tree, dict):
        for k in sorted(tree, key=str):
            _digest(tree[k], h, f"{key}/{k}")
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            _digest(v, h, f"{key}/{i}")
    elif isinstance(tree, torch.Tensor):
        t = tree.detach().cpu().contiguous().reshape(-1)
        h.update(f"{key}:{t.dtype}:{tuple(tree.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    else:
        h.update(f"{key}={tree!r}".encode())


def file_sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def read_train_state(path: str | Path, verify: bool = True) -> TrainState:
    return TrainState.from_dict(read_checkpoint(path, verify)["fitrain"], where=str(path))


def resume_point(resume: str, checkpoints: Path) -> Path | None:
    """The checkpoint a run resumes from: ``auto`` = the latest in ``checkpoints``, ``never``, or a path."""
    if resume == "never":
        return None
    if resume == "auto":
        return latest_checkpoint(checkpoints)
    p = Path(resume)
    if not p.exists():
        raise FitrainError(f"resume: checkpoint not found: {p}")
    return p


def check_compatible(state: TrainState, path: Path, shape: dict, data_fingerprint: str | None) -> None:
    """Refuse to resume into a different model shape or onto different training data."""
    saved = state.model_shape
    diff = {k: (saved.get(k), v) for k, v in shape.items() if saved.get(k) != v}
    if diff:
        detail = ", ".join(f"{k}: checkpoint {a} vs config {b}" for k, (a, b) in diff.items())
        raise FitrainError(f"checkpoint {path} does not match the model being trained ({detail})")
    fp = state.data_fingerprint
    if data_fingerprint and fp and fp != data_fingerprint:
        raise FitrainError(f"checkpoint {path} was trained on data with fingerprint {fp}, but data.path has "
                           f"{data_fingerprint}; resuming would not continue the same run (use a new run_dir)")


def model_state_dict(path: str | Path) -> tuple[dict, TrainState]:
    """(HF model state dict, fitrain state) of a checkpoint, its checksum checked; a sharded one is
    consolidated in this process (only the weights are read, not the optimizer state)."""
    path = Path(path)
    ckpt = read_checkpoint(path)
    state = _consolidate_weights(path) if path.is_dir() else ckpt.get("model")
    if not isinstance(state, dict) or not state:
        raise FitrainError(f"checkpoint {path} holds no model weights")
    return state, TrainState.from_dict(ckpt["fitrain"], where=str(path))


def _consolidate_weights(path: Path) -> dict:
    """The full (unsharded) weights of a ``torch.distributed.checkpoint`` directory, read in this one
    process (no process group), on the CPU."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

    out: dict[str, Any] = {}
    try:
        _load_state_dict(out, storage_reader=FileSystemReader(path), no_dist=True,
                         planner=_EmptyStateDictLoadPlanner(keys={"model"}))
    except Exception as e:
        raise FitrainError(f"cannot consolidate sharded checkpoint {path}: {type(e).__name__}: {e}") from None
    return out.get("model")


def find_checkpoints(root: str | Path) -> list[Path]:
    """``root`` itself when it is a checkpoint, else every checkpoint below it (a run's ``checkpoints/``,
    an experiment's ``train/<run>/checkpoints/``)."""
    root = Path(root)
    if is_checkpoint(root):
        return [root]
    found = {p for pattern in ("step-*.ckpt", "checkpoints/step-*.ckpt", "*/checkpoints/step-*.ckpt",
                               "*/*/checkpoints/step-*.ckpt") for p in root.glob(pattern) if is_checkpoint(p)}
    return sorted(found)


def verify_checkpoint(path: Path) -> tuple[bool, str]:
    """(sound, one line) for ``fitrain verify``: the layout, the checksum and the fitrain state."""
    try:
        state = read_train_state(path)
    except FitrainError as e:
        return False, f"FAILED {path}: {e}"
    return True, (f"ok     {path}: step {state.step}, {state.tokens:,} tokens ({state.supervised_tokens:,} "
                  f"supervised){', finished' if state.finished else ''}, layout {LAYOUT}, checksum ok")
