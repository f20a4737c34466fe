"""Llama-style models for from-scratch pre-training: named presets, random init, attention selection.

Models are transformers' ``LlamaForCausalLM`` (RMSNorm, SwiGLU, RoPE, optional GQA, tied or untied
embeddings) built from a :class:`ModelConfig`: a preset name plus any field overridden. The vocabulary
comes from the tokenizer (``vocab_size: 0``), rounded up to ``vocab_multiple``.

Packed rows hold several documents that must not attend to each other: fitrain.train.attention picks
the kernel (flash-attn, torch's varlen kernel, or sdpa with per-document position ids) and passes it the
segment boundaries. Weights are built on the meta device and materialised with name-keyed generators
(fitrain.train.init), so a seed gives the same weights on one process or sharded over many.

:func:`forward_hidden` (training: the loss runs the head) and :func:`forward_logits` (evaluation) are the
places that call the model on a packed batch, for both.
"""
from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass
from typing import Any

from fitrain.core.errors import ConfigError, FitrainError
# re-exported: the trainer and benchmarks select attention and count FLOPs through fitrain.train.model
from fitrain.train.attention import (ATTENTION, VARLEN, attention_kernel, attention_kwargs,  # noqa: F401
                                     register_attention, select_attention, torch_varlen_available, varlen_kwargs)
from fitrain.train.flops import FlopsModel, count_parameters, flops_model  # noqa: F401

# name -> (dim, n_layers, n_heads, n_kv_heads, ffn_dim, tie_embeddings). Sizes are approximate totals with a
# 32k vocabulary (60m..300m) or the 128,256-token Llama-3 vocabulary (1.8b, 7b).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=176, tie_embeddings=True),
    "60m": dict(dim=512, n_layers=8, n_heads=8, n_kv_heads=8, ffn_dim=1536, tie_embeddings=False),
    "150m": dict(dim=768, n_layers=12, n_heads=12, n_kv_heads=12, ffn_dim=2304, tie_embeddings=False),
    "300m": dict(dim=1024, n_layers=20, n_heads=16, n_kv_heads=16, ffn_dim=2816, tie_embeddings=False),
    # Meta Lingua's llama_1B shape (fitrain/docs/method.md, "Model sizes and optimiser"): dim 2048, 25 layers, 16 heads, FFN 5632, untied.
    "1.8b": dict(dim=2048, n_layers=25, n_heads=16, n_kv_heads=16, ffn_dim=5632, tie_embeddings=False),
    "7b": dict(dim=4096, n_layers=32, n_heads=32, n_kv_heads=32, ffn_dim=11008, tie_embeddings=False),
}

@dataclass
class ModelConfig:
    """A preset plus overrides. ``None`` / ``0`` fields take the preset's value (or the tokenizer's vocab)."""

    preset: str = "tiny"
    dim: int | None = None
    n_layers: int | None = None
    n_heads: int | None = None
    n_kv_heads: int | None = None
    ffn_dim: int | None = None
    tie_embeddings: bool | None = None
    vocab_size: int = 0              # 0 = the tokenizer's vocabulary (rounded up to vocab_multiple)
    vocab_multiple: int = 64         # pad the embedding to a multiple of this (GPU-friendly shapes)
    max_seq_len: int = 4096          # RoPE positions the model is configured for
    rope_theta: float = 500000.0
    norm_eps: float = 1e-5
    init_std: float = 0.02
    attention: str = "auto"          # auto | sdpa | flash_attention_2 | torch_varlen (ATTENTION)
    activation_checkpointing: bool = False

    FIELD_CHECKS = {"dim": ">= 1", "n_layers": ">= 1", "n_heads": ">= 1", "n_kv_heads": ">= 1", "ffn_dim": ">= 1",
                    "vocab_size": ">= 0", "vocab_multiple": ">= 1", "max_seq_len": ">= 2", "rope_theta": "> 0",
                    "norm_eps": "> 0", "init_std": "(0, 1]", "attention": ATTENTION}  # fitrain.core.config


def resolve_shape(cfg: ModelConfig) -> dict[str, Any]:
    """The preset's shape with the config's overrides applied; unknown preset -> nearest name."""
    if cfg.preset not in PRESETS:
        close = difflib.get_close_matches(cfg.preset, PRESETS, n=1, cutoff=0.3)
        raise ConfigError(f"unknown model preset '{cfg.preset}'" + (f"; did you mean '{close[0]}'?" if close else "")
                          + f" Known presets: {', '.join(PRESETS)}")
    shape = dict(PRESETS[cfg.preset])
    for k in shape:
        v = getattr(cfg, k)
        if v is not None:
            shape[k] = v
    if shape["dim"] % shape["n_heads"]:
        raise ConfigError(f"model.dim={shape['dim']} is not divisible by model.n_heads={shape['n_heads']}")
    if shape["n_heads"] % shape["n_kv_heads"]:
        raise ConfigError(f"model.n_heads={shape['n_heads']} is not divisible by model.n_kv_heads={shape['n_kv_heads']}")
    return shape


def resolve_vocab(cfg: ModelConfig, tokenizer_vocab: int) -> int:
    """The model's vocabulary: the tokenizer's (rounded up), or the configured one if it is large enough."""
    if tokenizer_vocab <= 0:
        raise FitrainError(f"tokenizer vocabulary size must be positive, got {tokenizer_vocab}")
    if cfg.vocab_size:
        if cfg.vocab_size < tokenizer_vocab:
            raise FitrainError(f"the tokenizer has {tokenizer_vocab} tokens but model.vocab_size={cfg.vocab_size}: "
                               "token ids would index past the embedding. Raise model.vocab_size or set it to 0 "
                               "(= the tokenizer's size)")
        return cfg.vocab_size
    m = max(1, cfg.vocab_multiple)
    return -(-tokenizer_vocab // m) * m


def llama_config(cfg: ModelConfig, vocab_size: int, attention: str = "sdpa", bos_token_id: int | None = None,
                 eos_token_id: int | None = None, pad_token_id: int | None = None):
    from transformers import LlamaConfig

    s = resolve_shape(cfg)
    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=s["dim"], intermediate_size=s["ffn_dim"],
        num_hidden_layers=s["n_layers"], num_attention_heads=s["n_heads"], num_key_value_heads=s["n_kv_heads"],
        max_position_embeddings=cfg.max_seq_len, rms_norm_eps=cfg.norm_eps, initializer_range=cfg.init_std,
        tie_word_embeddings=bool(s["tie_embeddings"]), rope_parameters={"rope_type": "default",
                                                                         "rope_theta": cfg.rope_theta},
        attention_bias=False, mlp_bias=False, use_cache=False, hidden_act="silu",
        bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=pad_token_id,
        attn_implementation=attention)


def build_model(cfg: ModelConfig, tokenizer_vocab: int, attention: str = "sdpa", seed: int | None = None,
                token_ids: dict | None = None, verbose: bool = True, device=None):
    """A randomly initialised ``LlamaForCausalLM`` (``use_cache=False``); prints the parameter count.

    Built on the meta device, then materialised on ``device`` (default: torch's current default device) with
    fitrain.train.init's name-keyed generators of ``seed`` (None: a seed drawn from torch's global generator).
    ``device="meta"`` returns it unmaterialised, to shard first (``fully_shard``) and then fill each rank's
    shards with ``to_empty`` + :func:`fitrain.train.init.init_weights`."""
    import torch
    from transformers import LlamaForCausalLM

    from fitrain.train.init import materialize

    register_attention(attention)
    hf_cfg = llama_config(cfg, resolve_vocab(cfg, tokenizer_vocab), attention, **(token_ids or {}))
    target = torch.device(device) if device is not None else torch.get_default_device()
    if seed is None:
        seed = int(torch.randint(0, 2**62, (), device="cpu"))
    with torch.device("meta"):
        model = LlamaForCausalLM(hf_cfg)
    model.config.use_cache = False
    if cfg.activation_checkpointing:
        set_activation_checkpointing(model, True)
    if target.type != "meta":
        materialize(model, target, seed)
    if verbose:
        n, emb = count_parameters(model)
        print(f"model: preset={cfg.preset} {describe(cfg)} vocab={hf_cfg.vocab_size} attention={attention} "
              f"params={n / 1e6:.2f}M (non-embedding {(n - emb) / 1e6:.2f}M)", file=sys.stderr, flush=True)
    return model


def set_activation_checkpointing(model, on: bool) -> None:
    """transformers' own (non-reentrant) activation checkpointing of every decoder layer, on or off, under the
    name this transformers has (``activation_checkpointing_*`` from 5.2x, ``gradient_checkpointing_*``
    before; the old names warn in the new versions)."""
    if on:
        new = getattr(model, "activation_checkpointing_enable", None)
        if new is not None:
            new(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        (getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable)()


def activation_checkpointing(model) -> bool:
    """Whether transformers' activation checkpointing is on (any layer checkpoints)."""
    return any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())


def describe(cfg: ModelConfig) -> str:
    s = resolve_shape(cfg)
    return (f"dim={s['dim']} layers={s['n_layers']} heads={s['n_heads']} kv_heads={s['n_kv_heads']} "
            f"ffn={s['ffn_dim']} tied={s['tie_embeddings']}")


def forward_logits(model, batch: dict):
    """Logits of a packed batch (``input_ids``/``position_ids`` [B, T]); documents never see each other."""
    out = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], attention_mask=None,
                use_cache=False, **attention_kwargs(model, batch))
    return out.logits


def forward_hidden(model, batch: dict):
    """The final hidden states ``[B, T, D]`` (after the last norm) of a packed batch, for a loss that runs
    the output head itself (fitrain.train.loss); same attention as :func:`forward_logits`."""
    out = model.model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], attention_mask=None,
                      use_cache=False, **attention_kwargs(model, batch))
    return out.last_hidden_state


def parameter_count(cfg: ModelConfig, vocab_size: int) -> int:
    """The parameters of the model ``cfg`` builds with this (rounded) vocabulary, from its shape alone."""
    s = resolve_shape(cfg)
    d, f, L = s["dim"], s["ffn_dim"], s["n_layers"]
    kv = d // s["n_heads"] * s["n_kv_heads"]
    per_layer = 2 * d * d + 2 * d * kv + 3 * d * f + 2 * d        # q, o; k, v; SwiGLU; two norms
    return L * per_layer + vocab_size * d * (1 if s["tie_embeddings"] else 2) + d


def checkpoint_bytes(cfg: ModelConfig, tokenizer_vocab: int) -> int:
    """About what a training checkpoint of this model writes: fp32 weights and AdamW's two fp32 moments,
    12 bytes per parameter (fitrain.train.optim); sizes the Slurm warning ahead of the time limit."""
    return 12 * parameter_count(cfg, resolve_vocab(cfg, tokenizer_vocab))


def shape_fingerprint(model) -> dict:
    """What must match between a checkpoint and the model it is loaded into."""
    c = model.config
    return {k: getattr(c, k) for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                       "num_attention_heads", "num_key_value_heads", "tie_word_embeddings")}

