"""Training checkpoints: what they hold (:class:`TrainState`), where they live, which one to resume from,
reading them safely.

A checkpoint is what Lightning's ``trainer.save_checkpoint`` writes (model, optimizer, scheduler, loop
state; under ``strategy=fsdp`` a directory of ``torch.distributed.checkpoint`` shards plus ``meta.pt``) plus a ``fitrain`` entry: the typed
:class:`TrainState` (counters, the loader state, RNG states, the W&B run id, the model's shape, the data
fingerprint and the run's static facts), versioned so that a reader refuses a layout it does not know.
Checkpoints are written under a temporary name and renamed, and ``checkpoints/latest`` names the newest,
so a job killed mid-write resumes from the previous complete one.
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


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The full checkpoint dict (single file) or its metadata (FSDP sharded directory); clear errors."""
    import torch

    path = Path(path)
    if not path.exists():
        raise FitrainError(f"checkpoint not found: {path}")
    try:
        if path.is_dir():
            meta = path / "meta.pt"
            if not meta.is_file():
                raise FitrainError(f"{path} is a directory but not a sharded checkpoint (no meta.pt)")
            ckpt = torch.load(meta, map_location="cpu", weights_only=False)
        else:
            ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except FitrainError:
        raise
    except Exception as e:  # truncated zip, pickle errors, wrong file type
        raise FitrainError(f"cannot read checkpoint {path}: it is corrupt or not a checkpoint ({type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(ckpt, dict) or "fitrain" not in ckpt:
        raise FitrainError(f"{path} is not a fitrain checkpoint (no 'fitrain' entry)")
    return ckpt


def read_train_state(path: str | Path) -> TrainState:
    return TrainState.from_dict(read_checkpoint(path)["fitrain"], where=str(path))


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
    """(HF model state dict, fitrain state) of a checkpoint; sharded checkpoints are consolidated (only the
    weights are read, not the optimizer state)."""
    path = Path(path)
    ckpt = read_checkpoint(path)
    if path.is_dir():
        state = _consolidate_weights(path)
    else:
        state = ckpt.get("state_dict")
    if not isinstance(state, dict):
        raise FitrainError(f"checkpoint {path} has no model state_dict")
    prefix = "model."
    model_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not model_state:
        raise FitrainError(f"checkpoint {path} holds no weights under '{prefix}'")
    return model_state, TrainState.from_dict(ckpt["fitrain"], where=str(path))


# where a sharded checkpoint keeps the LightningModule's weights: ModelParallelStrategy (FSDP2, strategy=fsdp)
# saves them under 'state_dict', Lightning's FSDPStrategy under 'model'
_SHARDED_WEIGHT_KEYS = ("state_dict", "model")


def _consolidate_weights(path: Path) -> dict:
    """The full (unsharded) weights of a ``torch.distributed.checkpoint`` directory, read in this one
    process (no process group), on the CPU."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

    out: dict[str, Any] = {}
    try:
        _load_state_dict(out, storage_reader=FileSystemReader(path), no_dist=True,
                         planner=_EmptyStateDictLoadPlanner(keys=set(_SHARDED_WEIGHT_KEYS)))
    except Exception as e:
        raise FitrainError(f"cannot consolidate sharded checkpoint {path}: {type(e).__name__}: {e}") from None
    for key in _SHARDED_WEIGHT_KEYS:
        if isinstance(out.get(key), dict):
            return out[key]
    raise FitrainError(f"sharded checkpoint {path} holds no weights (none of {', '.join(_SHARDED_WEIGHT_KEYS)})")
