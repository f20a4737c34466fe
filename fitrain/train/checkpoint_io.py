"""Writing a checkpoint of the live run and restoring one into it, in the one layout of
fitrain.train.checkpoint: the HF model's and the optimizer's state dicts keyed by the HF parameter names
(torch.distributed.checkpoint's ``get_state_dict`` / ``set_state_dict``, the same whether the model is
whole, DDP-wrapped or FSDP2-sharded), the schedule's state and the :class:`TrainState` (with every RNG).

Whole weights: global rank 0 writes one file. Sharded weights (``strategy=fsdp``): every rank writes its
shards with ``torch.distributed.checkpoint``, then rank 0 records each file's sha256 in ``meta.pt``.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fitrain.train.checkpoint import LAYOUT, META, TrainState, digest, file_sha256, read_checkpoint


def _is_sharded(lm: torch.nn.Module) -> bool:
    return any(isinstance(p, torch.distributed.tensor.DTensor) for p in lm.parameters())


def save_checkpoint(path: Path, fabric: Any, lm: torch.nn.Module, optimizer: Any, scheduler: Any,
                    state: TrainState) -> None:
    """Write the checkpoint at ``path`` (all ranks take part; the caller renames it into place)."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_sd, optim_sd = get_state_dict(lm, optimizer)
    rest = {"layout": LAYOUT, "scheduler": scheduler.state_dict(), "fitrain": state.to_dict()}
    if _is_sharded(lm):
        import torch.distributed.checkpoint as dcp

        dcp.save({"model": model_sd, "optimizer": optim_sd}, checkpoint_id=path)
        fabric.barrier("fitrain_ckpt_shards")
        if fabric.is_global_zero:
            files = {f.name: file_sha256(f) for f in sorted(path.iterdir()) if f.name != META}
            torch.save({**rest, "checksum": {"payload": digest(rest), "files": files}}, path / META)
    elif fabric.is_global_zero:
        payload = {**rest, "model": model_sd, "optimizer": optim_sd}
        torch.save({**payload, "checksum": {"payload": digest(payload)}}, path)


def load_checkpoint(path: Path, lm: torch.nn.Module, optimizer: Any, scheduler: Any) -> TrainState:
    """Restore the model, the optimizer, the schedule and the RNG states from ``path`` (its checksum
    checked, on every rank); the checkpoint's :class:`TrainState`."""
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    ckpt = read_checkpoint(path)
    if path.is_dir():
        import torch.distributed.checkpoint as dcp

        model_sd, optim_sd = get_state_dict(lm, optimizer)   # this rank's shards, filled in place
        shards = {"model": model_sd, "optimizer": optim_sd}
        dcp.load(shards, checkpoint_id=path)
        model_sd, optim_sd = shards["model"], shards["optimizer"]
    else:
        model_sd, optim_sd = ckpt["model"], ckpt["optimizer"]
    set_state_dict(lm, optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd)
    scheduler.load_state_dict(ckpt["scheduler"])
    state = TrainState.from_dict(ckpt["fitrain"], where=str(path))
    set_rng_states(state.rng or {})
    return state


def rng_states() -> dict[str, Any]:
    # numpy's key array as a tensor (plain tensors and builtins only in a checkpoint)
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_states(rng: dict[str, Any]) -> None:
    if rng.get("torch") is not None:
        torch.set_rng_state(rng["torch"])
    if rng.get("numpy") is not None:
        name, keys, pos, has_gauss, cached = rng["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if rng.get("python") is not None:
        random.setstate(rng["python"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
