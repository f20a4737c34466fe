"""Llama-style models for from-scratch pre-training: named presets, random init, attention selection.

Models are transformers' ``LlamaForCausalLM`` (RMSNorm, SwiGLU, RoPE, optional GQA, tied or untied
embeddings) built from a :class:`ModelConfig`: a preset name plus any field overridden. The vocabulary
comes from the tokenizer (``vocab_size: 0``), rounded up to ``vocab_multiple``.

Packed rows hold several documents. They must not attend to each other (fitrain/docs/engineering.md, "Packed documents"):

* ``sdpa`` (CPU, or GPU without flash-attn): per-document ``position_ids``, **no** 2D attention mask and
  ``use_cache=False``; transformers then builds a block-diagonal causal mask from the position ids.
* ``flash_attention_2`` (GPU with flash-attn installed): the varlen kernel with ``cu_seq_lens_q/k`` and
  ``max_length_q/k`` passed explicitly (transformers infers them from position ids only for batch size 1).
* ``torch_varlen`` (GPU, bf16, a torch with ``torch.nn.attention.varlen``): torch's own varlen flash
  attention over the same ``cu_seq_lens``, no flash-attn package needed; chosen explicitly (not by
  ``auto``) until the GPU suite (benchmarks/gpu_suite.py) has measured it.

:func:`forward_hidden` (training: the loss runs the head) and :func:`forward_logits` (evaluation) are the
places that call the model on a packed batch, for both.
"""
from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass
from typing import Any

from fitrain.core.checks import NON_NEGATIVE, POSITIVE, above, check_fields, fail, interval, one_of, seq_len
from fitrain.core.errors import FitrainError

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

ATTENTION = ("auto", "sdpa", "flash_attention_2", "torch_varlen")
VARLEN = ("flash_attention_2", "torch_varlen")   # attention that takes cu_seq_lens / max_length


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

    def __post_init__(self) -> None:
        if self.attention == "eager":
            fail("attention", f"eager leaks across packed documents, so it is not offered; one of {list(ATTENTION)}")
        check_fields(self, dim=POSITIVE, n_layers=POSITIVE, n_heads=POSITIVE, n_kv_heads=POSITIVE, ffn_dim=POSITIVE,
                     vocab_size=NON_NEGATIVE, vocab_multiple=POSITIVE, max_seq_len=seq_len, rope_theta=above(0),
                     norm_eps=above(0), init_std=interval("(0, 1]"), attention=one_of(*ATTENTION))
        if self.preset not in PRESETS:
            close = difflib.get_close_matches(self.preset, PRESETS, n=1, cutoff=0.3)
            fail("preset", f"'{self.preset}' is unknown" + (f"; did you mean '{close[0]}'?" if close else "")
                 + f" Known presets: {', '.join(PRESETS)}")
        s = resolve_shape(self)
        if s["dim"] % s["n_heads"]:
            fail("dim", f"({s['dim']}) is not divisible by n_heads ({s['n_heads']})")
        if s["n_heads"] % s["n_kv_heads"]:
            fail("n_heads", f"({s['n_heads']}) is not divisible by n_kv_heads ({s['n_kv_heads']})")


def resolve_shape(cfg: ModelConfig) -> dict[str, Any]:
    """The preset's shape with the config's overrides applied (the preset and the divisibility of the heads
    are checked when the ModelConfig is built)."""
    shape = dict(PRESETS[cfg.preset])
    for k in shape:
        v = getattr(cfg, k)
        if v is not None:
            shape[k] = v
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


def select_attention(requested: str = "auto", device_type: str | None = None) -> str:
    """flash_attention_2 on a GPU when flash-attn is installed, else sdpa; an explicit choice is checked."""
    import torch
    from transformers.utils import is_flash_attn_2_available

    on_gpu = (device_type or ("cuda" if torch.cuda.is_available() else "cpu")) == "cuda"
    if requested == "auto":
        return "flash_attention_2" if on_gpu and is_flash_attn_2_available() else "sdpa"
    if requested == "flash_attention_2" and not (on_gpu and is_flash_attn_2_available()):
        raise FitrainError("model.attention=flash_attention_2 needs a CUDA GPU and the flash-attn package "
                           "(pip install 'fitrain[gpu]'); use model.attention=sdpa or auto")
    if requested == "torch_varlen" and not (on_gpu and torch_varlen_available()):
        raise FitrainError("model.attention=torch_varlen needs a CUDA GPU and a torch with "
                           "torch.nn.attention.varlen; use model.attention=sdpa or auto")
    return requested


def torch_varlen_available() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("torch.nn.attention.varlen") is not None
    except ModuleNotFoundError:
        return False


def torch_varlen_attention(module, query, key, value, attention_mask=None, dropout: float = 0.0,
                           scaling: float | None = None, **kwargs):
    """transformers attention function over torch's varlen flash attention: ``query/key/value``
    ``[B, heads, T, head_dim]`` are flattened to ``[B*T, heads, head_dim]`` and attend causally within each
    ``cu_seq_lens`` segment (every row starts one, so rows stay apart too). Returns ``[B, T, heads, head_dim]``."""
    from torch.nn.attention import varlen

    if dropout:
        raise FitrainError("model.attention=torch_varlen has no attention dropout")
    b, heads, t, d = query.shape
    q = query.transpose(1, 2).reshape(b * t, heads, d)
    k = key.transpose(1, 2).reshape(b * t, key.shape[1], d)
    v = value.transpose(1, 2).reshape(b * t, value.shape[1], d)
    out = varlen.varlen_attn(q, k, v, kwargs["cu_seq_lens_q"], kwargs["cu_seq_lens_k"], kwargs["max_length_q"],
                             kwargs["max_length_k"], scale=scaling, window_size=(-1, 0),
                             enable_gqa=key.shape[1] != heads)
    return out.view(b, t, heads, d), None


def _register_attention(attention: str) -> None:
    if attention == "torch_varlen":
        from transformers import AttentionInterface

        AttentionInterface.register("torch_varlen", torch_varlen_attention)


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
                token_ids: dict | None = None, verbose: bool = True):
    """A randomly initialised ``LlamaForCausalLM`` (``use_cache=False``); prints the parameter count."""
    import torch
    from transformers import LlamaForCausalLM

    _register_attention(attention)
    hf_cfg = llama_config(cfg, resolve_vocab(cfg, tokenizer_vocab), attention, **(token_ids or {}))
    if seed is not None:
        torch.manual_seed(seed)
    model = LlamaForCausalLM(hf_cfg)
    model.config.use_cache = False
    if cfg.activation_checkpointing:
        set_activation_checkpointing(model, True)
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


def count_parameters(model) -> tuple[int, int]:
    """(total unique parameters, embedding parameters: input embedding + untied output head)."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    emb = model.get_input_embeddings().weight.numel()
    out = model.get_output_embeddings()
    if out is not None and out.weight is not model.get_input_embeddings().weight:
        emb += out.weight.numel()
    return total, emb


@dataclass(frozen=True)
class FlopsModel:
    """Training FLOPs (forward + backward) of the model, the usual MFU convention (PaLM appendix B; the
    attention term without a causal discount, as llm-foundry and Megatron count it):

    * ``6 x`` the decoder's parameters per token read,
    * ``6 x vocab x dim`` per position through the output head (fitrain runs the head only on positions
      with a target: fitrain.train.objective.head_cross_entropy),
    * ``12 x layers x dim x l`` per token of a document of length ``l``, i.e. ``12 x layers x dim x sum(l^2)``
      over the documents of a batch. Packed documents attend only within themselves, so a row of short
      documents does ``sum(l^2) / T`` of the attention work of one ``T``-token document: counting ``T^2``
      overstates MFU on packed data (by 15-22% for the 1.8b shape at 4096)."""

    body_per_token: float
    head_per_target: float
    attention_per_sq: float

    def step(self, tokens: int, head_positions: int, sum_sq_lengths: int) -> float:
        return (self.body_per_token * tokens + self.head_per_target * head_positions
                + self.attention_per_sq * sum_sq_lengths)


def flops_model(model) -> FlopsModel:
    c = model.config
    total, emb = count_parameters(model)
    return FlopsModel(body_per_token=6.0 * (total - emb), head_per_target=6.0 * c.vocab_size * c.hidden_size,
                      attention_per_sq=12.0 * c.num_hidden_layers * c.hidden_size)


def varlen_kwargs(position_ids) -> dict:
    """``cu_seq_lens_q/k`` and ``max_length_q/k`` for varlen attention over the flattened [B*T] batch.

    Every row starts a segment (position 0), so flattening rows keeps segments apart."""
    import torch

    flat = position_ids.reshape(-1)
    starts = (flat == 0).nonzero().view(-1).to(torch.int32)
    if starts.numel() == 0 or int(starts[0]) != 0:
        raise FitrainError("position_ids must start at 0 at the start of every row and every segment")
    cu = torch.cat([starts, torch.tensor([flat.numel()], dtype=torch.int32, device=flat.device)])
    max_len = int(cu.diff().max())
    return {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": max_len, "max_length_k": max_len}


def _attention_kwargs(model, batch: dict) -> dict:
    if getattr(model.config, "_attn_implementation", "sdpa") in VARLEN:
        return varlen_kwargs(batch["position_ids"])
    return {}


def forward_logits(model, batch: dict):
    """Logits of a packed batch (``input_ids``/``position_ids`` [B, T]); documents never see each other."""
    out = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], attention_mask=None,
                use_cache=False, **_attention_kwargs(model, batch))
    return out.logits


def forward_hidden(model, batch: dict):
    """The final hidden states ``[B, T, D]`` (after the last norm) of a packed batch, for a loss that runs
    the output head itself (fitrain.train.loss); same attention as :func:`forward_logits`."""
    out = model.model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], attention_mask=None,
                      use_cache=False, **_attention_kwargs(model, batch))
    return out.last_hidden_state


def shape_fingerprint(model) -> dict:
    """What must match between a checkpoint and the model it is loaded into."""
    c = model.config
    return {k: getattr(c, k) for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                       "num_attention_heads", "num_key_value_heads", "tie_word_embeddings")}

