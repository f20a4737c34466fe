"""What ``fitrain train`` reads, checked before anything is built (:func:`check_inputs`): the settings, the
prepared data's cheap integrity checks, rows no longer than the model's positions, and the tokenizer's
identity against the one the data was prepared with (not its size: the HF export ships it beside the
weights)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fitrain.core.errors import ConfigError, FitrainError
from fitrain.data.manifest import Manifest, prepared_dir
from fitrain.train.config import TrainConfig


@dataclass
class Inputs:
    """What the run reads, checked: the prepared data and the tokenizer it was prepared with."""

    data_dir: Path
    manifest: Manifest
    tokenizer_path: str
    tokenizer: Any
    vocab_size: int



def check_inputs(cfg: TrainConfig) -> Inputs:
    from fitrain.core.config import validate_config
    from fitrain.data.shards import open_prepared
    from fitrain.data.tokenizer import vocab_size_of

    validate_config(cfg)
    if not cfg.data.path:
        raise ConfigError("data.path is not set: point it at a directory made by `fitrain prepare`")
    data = open_prepared(cfg.data.path, "data.path")
    data.validate()  # sizes, changed files' checksums, shapes
    manifest = data.manifest
    if cfg.data.val_path:
        val = open_prepared(cfg.data.val_path, "data.val_path")
        val.validate()
        if val.seq_len > cfg.model.max_seq_len:
            raise ConfigError(f"model.max_seq_len={cfg.model.max_seq_len} is shorter than the {val.seq_len}-token "
                              f"rows of data.val_path; set model.max_seq_len >= {val.seq_len}")
    if manifest.seq_len > cfg.model.max_seq_len:
        raise ConfigError(f"model.max_seq_len={cfg.model.max_seq_len} is shorter than the {manifest.seq_len}-token "
                          f"rows of data.path {data.directory}: the model has no positions for the rest; set "
                          f"model.max_seq_len >= {manifest.seq_len} or prepare with a shorter pack.seq_len")
    tok_path, tok = _tokenizer(cfg, manifest)
    return Inputs(prepared_dir(cfg.data.path), manifest, str(tok_path), tok, vocab_size_of(tok))


def _tokenizer(cfg: TrainConfig, manifest: Manifest) -> tuple[str, Any]:
    """The run's tokenizer, checked to be the one the data was prepared with: by identity (what maps text to
    ids), not by size, since the HF export ships it beside the weights."""
    from fitrain.data.tokenizer import load_tokenizer, tokenizer_hash, tokenizer_identity, vocab_size_of

    tok_path = cfg.tokenizer or manifest.tokenizer.path
    if not tok_path:
        raise FitrainError("no tokenizer: set `tokenizer` (the data manifest records none)")
    tok = load_tokenizer(tok_path)
    if tok.pad_token_id is None or tok.pad_token_id == tok.eos_token_id:
        raise FitrainError(f"tokenizer {tok_path} needs a pad token distinct from EOS: padding is told apart from "
                           "text by its id when tokens are counted")
    if manifest.pad_token_id is not None and manifest.pad_token_id != tok.pad_token_id:
        raise FitrainError(f"data.path was prepared with pad id {manifest.pad_token_id} but the tokenizer {tok_path} "
                           f"pads with {tok.pad_token_id}: use the tokenizer the data was prepared with")
    vocab = vocab_size_of(tok)
    if manifest.vocab_size > vocab:
        raise FitrainError(f"data.path was prepared with a {manifest.vocab_size}-token vocabulary but the "
                           f"tokenizer {tok_path} has {vocab}: use the tokenizer the data was prepared with")
    recorded = manifest.tokenizer
    if recorded.identity:
        same = tokenizer_identity(tok) == recorded.identity
    else:  # a manifest from before identities: the files' hash
        same = not recorded.hash or tokenizer_hash(tok_path) == recorded.hash
    if not same:
        raise FitrainError(f"the tokenizer {tok_path} is not the one data.path was prepared with "
                           f"({recorded.path or 'recorded in its manifest'}): its ids would not mean the same "
                           "tokens; use that tokenizer (or leave `tokenizer` unset), or re-run prepare with this one")
    return str(tok_path), tok
