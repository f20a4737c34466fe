"""Held-out answer loss per item: the comparison every arm can have, even offline and without a judge.

The held-out pairs (``prepared/heldout`` of an experiment: data_gen shards no arm trained on, prepared with
the experiment's tokenizer and format) are read exactly as training reads its validation data: shard rows
through :func:`fitrain.data.loader.batch_arrays` (labels masked off the answer, at padding and at every
segment start; ``position_ids`` restarting per pair, so packed pairs never attend to each other), one forward
of the exported model per batch of rows, cross-entropy per supervised target. Every pair is one item
(id ``<row>:<segment>``) with its summed CE and its number of answer tokens; the metric
``heldout/answer_loss`` is sum(CE) / sum(tokens), the training log's ``val_loss`` on the same pairs
(fitrain/docs/engineering.md, "Loss normalisation"). The same pairs and tokens for every arm make the
per-item losses paired across arms.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fitrain.core.checks import NON_NEGATIVE, POSITIVE, check_fields, one_of
from fitrain.core.errors import FitrainError

METRIC = "heldout/answer_loss"


@dataclass
class HeldoutConfig:
    enabled: bool = False
    path: str = ""          # prepared held-out pairs; '' = <experiment>/prepared/heldout of the evaluated run
    batch_size: int = 8     # rows per forward
    max_rows: int = 0       # first N rows; 0 = all
    device: str = "auto"    # auto | cpu | cuda

    def __post_init__(self) -> None:
        check_fields(self, batch_size=POSITIVE, max_rows=NON_NEGATIVE, device=one_of("auto", "cpu", "cuda"))


def resolve_path(cfg: HeldoutConfig, model_path: str | Path | None) -> Path:
    from fitrain.core.layout import TrainDir

    if cfg.path:
        return Path(cfg.path)
    run = TrainDir.containing(model_path) if model_path else None
    exp = run.experiment() if run else None
    if exp is None or not exp.prepared("heldout").is_dir():
        raise FitrainError("heldout.enabled needs the held-out pairs: set heldout.path=<prepared dir> (an experiment "
                           "with heldout_shards > 0 has them at prepared/heldout)")
    return exp.prepared("heldout")


def per_item_losses(model, data, batch_size: int = 8, max_rows: int = 0, device: str = "cpu",
                    pad_id: int | None = None) -> dict[str, tuple[float, int]]:
    """``{"<row>:<segment>": (sum of CE over the pair's answer tokens, answer tokens)}`` over ``data``
    (a :class:`fitrain.data.shards.PreparedData`)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from fitrain.data.loader import IGNORE_INDEX, batch_arrays
    from fitrain.train.model import forward_logits

    n = data.num_rows if not max_rows else min(max_rows, data.num_rows)
    out: dict[str, tuple[float, int]] = {}
    model.eval()
    for start in range(0, n, batch_size):
        rows = np.arange(start, min(n, start + batch_size))
        tokens, mask, seg = data.rows(rows)
        b = {k: torch.from_numpy(v).to(device) for k, v in batch_arrays(tokens, mask, seg, pad_id).items()}
        with torch.no_grad():
            logits = forward_logits(model, b)
        labels = b["labels"][:, 1:]
        ce = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.size(-1)), labels.reshape(-1),
                             ignore_index=IGNORE_INDEX, reduction="none").view(labels.shape).double().cpu().numpy()
        sup = (labels != IGNORE_INDEX).cpu().numpy()
        tseg = seg[:, 1:]  # the segment of each target position
        for j, r in enumerate(rows.tolist()):
            for s in np.unique(tseg[j][sup[j]]).tolist():
                pick = sup[j] & (tseg[j] == s)
                out[f"{r}:{s}"] = (float(ce[j][pick].sum()), int(pick.sum()))
    return out


def evaluate_heldout(cfg: HeldoutConfig, model_dir: str | Path, out_dir: str | Path, model_path=None) -> dict:
    """Per-item held-out answer losses of the model in ``model_dir``; writes the items file, returns
    ``{heldout/answer_loss, heldout/n_items, heldout/tokens}``."""
    import torch
    from transformers import AutoModelForCausalLM

    from fitrain.data.manifest import Manifest
    from fitrain.data.shards import open_prepared
    from fitrain_eval.items import ItemScores

    path = resolve_path(cfg, model_path)
    data = open_prepared(path, "heldout.path")
    if data.manifest.kind != "pairs":
        raise FitrainError(f"heldout.path {path} holds {data.manifest.kind}, not pairs: the answer loss needs "
                           "instruction-answer pairs")
    data.validate()  # the shard files as prepare wrote them (sizes, changed files' checksums, shapes), as training does
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).to(device)
    m: Manifest = data.manifest
    if m.vocab_size and m.vocab_size > model.config.vocab_size:
        raise FitrainError(f"held-out data {path} was tokenized with {m.vocab_size} tokens, more than the model's "
                           f"{model.config.vocab_size}: another tokenizer?")
    if m.seq_len > model.config.max_position_embeddings:
        raise FitrainError(f"held-out rows of {m.seq_len} tokens exceed the model's context "
                           f"({model.config.max_position_embeddings})")
    losses = per_item_losses(model, data, cfg.batch_size, cfg.max_rows, device, m.pad_token_id)
    if not losses:
        raise FitrainError(f"held-out data {path} has no supervised answer tokens")
    scores = {k: ce / n for k, (ce, n) in losses.items()}
    weights = {k: float(n) for k, (_, n) in losses.items()}
    ItemScores(METRIC, scores, weights=weights, higher_is_better=False,
               info={"benchmark": "heldout", "data": str(Path(path).resolve()), "fingerprint": m.fingerprint,
                     "statistic": "sum of CE / answer tokens (token-weighted mean of the per-pair losses)"}
               ).save(out_dir)
    tokens = sum(n for _, n in losses.values())
    return {METRIC: sum(ce for ce, _ in losses.values()) / tokens, "heldout/n_items": len(losses),
            "heldout/tokens": tokens}
