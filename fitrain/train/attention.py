"""Which attention kernel a model runs on packed rows, and torch's own varlen kernel behind transformers.

Packed rows hold several documents that must not attend to each other (fitrain/docs/engineering.md,
"Packed documents"). Three kernels keep them apart:

* ``flash_attention_2`` (CUDA, the flash-attn package): the varlen kernel over ``cu_seq_lens``;
* ``torch_varlen`` (CUDA, a torch with ``torch.nn.attention.varlen``): torch's own varlen flash attention over
  the same ``cu_seq_lens``, no extra package. Its signature changed between releases: 2.10 takes
  ``is_causal`` positionally and no ``scale``; 2.11 takes keywords ``return_aux, scale, window_size``;
  2.13 adds ``enable_gqa``. :func:`varlen_signature` reads the installed one, and where ``enable_gqa`` is
  missing K/V heads are repeated for grouped-query attention;
* ``sdpa`` (CPU, or the fallback): per-document ``position_ids`` without a 2D mask; transformers then builds a
  dense block-diagonal mask, so SDPA cannot use its flash kernel and computes the full ``T^2`` (about 12% of
  it useful on 4 x 4096 rows of ~700-token documents) and keeps the bf16 masks for backward (about 3 GiB for
  the 1.8b shape). ``auto`` on CUDA warns once when it has to fall back to it.

``select_attention`` returns the kernel's name; :func:`attention_kernel` names what a built model runs (with
the varlen signature it detected), for the training log and summary.json.
"""
from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass

from fitrain.core.errors import ConfigError, FitrainError

ATTENTION = ("auto", "sdpa", "flash_attention_2", "torch_varlen")
VARLEN = ("flash_attention_2", "torch_varlen")   # attention that takes cu_seq_lens / max_length
_POSITIONAL = ("query", "key", "value", "cu_seq_q", "cu_seq_k", "max_q", "max_k")
SDPA_COST = ("packed rows on sdpa get a dense block-diagonal mask: attention computes the full T^2 (about 12% "
             "useful on 4 x 4096 rows of ~700-token documents) and keeps bf16 masks for backward (~3 GiB for "
             "1.8b); install flash-attn (pip install 'fitrain[gpu]') or a torch with torch.nn.attention.varlen")
_warned: set[str] = set()


@dataclass(frozen=True)
class VarlenSignature:
    """What the installed ``varlen_attn`` accepts. ``causal``: ``"window_size"`` (2.11+: ``(-1, 0)`` is
    causal) or ``"is_causal"`` (2.10); ``scale``: takes a softmax scale; ``gqa``: takes ``enable_gqa``."""

    causal: str
    scale: bool
    gqa: bool

    def describe(self) -> str:
        return (f"torch.nn.attention.varlen.varlen_attn({self.causal}"
                + (", scale" if self.scale else "") + (", enable_gqa" if self.gqa else ", K/V repeated for GQA") + ")")


def varlen_signature(fn=None) -> VarlenSignature | None:
    """The calling convention of ``fn`` (default: the installed ``torch.nn.attention.varlen.varlen_attn``),
    or None when there is none fitrain can call (no such module, or an unknown signature)."""
    if fn is None:
        try:
            from torch.nn.attention import varlen
        except ImportError:
            return None
        fn = getattr(varlen, "varlen_attn", None)
        if fn is None:
            return None
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None
    names = list(params)
    if names[:len(_POSITIONAL)] != list(_POSITIONAL):
        return None
    causal = "window_size" if "window_size" in params else "is_causal" if "is_causal" in params else None
    if causal is None:
        return None
    return VarlenSignature(causal=causal, scale="scale" in params, gqa="enable_gqa" in params)


def torch_varlen_available() -> bool:
    """A ``torch.nn.attention.varlen.varlen_attn`` whose signature fitrain can call."""
    return varlen_signature() is not None


def select_attention(requested: str = "auto", device_type: str | None = None) -> str:
    """The kernel for ``model.attention``: on CUDA ``auto`` takes flash-attn, else torch's varlen kernel,
    else sdpa with one warning naming the cost; on CPU sdpa. An explicit choice is checked."""
    import torch
    from transformers.utils import is_flash_attn_2_available

    if requested not in ATTENTION:
        raise ConfigError(f"model.attention must be one of {ATTENTION}, got '{requested}' (eager attention "
                          "leaks across packed documents, so it is not offered)")
    on_gpu = (device_type or ("cuda" if torch.cuda.is_available() else "cpu")) == "cuda"
    if requested == "auto":
        if not on_gpu:
            return "sdpa"
        if is_flash_attn_2_available():
            return "flash_attention_2"
        if torch_varlen_available():
            return "torch_varlen"
        if "sdpa" not in _warned:
            _warned.add("sdpa")
            warnings.warn(f"model.attention=auto fell back to sdpa: {SDPA_COST}", stacklevel=2)
        return "sdpa"
    if requested == "flash_attention_2" and not (on_gpu and is_flash_attn_2_available()):
        raise FitrainError("model.attention=flash_attention_2 needs a CUDA GPU and the flash-attn package "
                           "(pip install 'fitrain[gpu]'); use model.attention=sdpa or auto")
    if requested == "torch_varlen" and not (on_gpu and torch_varlen_available()):
        raise FitrainError("model.attention=torch_varlen needs a CUDA GPU and a torch whose "
                           "torch.nn.attention.varlen.varlen_attn fitrain can call; use model.attention=sdpa or auto")
    return requested


def attention_kernel(model) -> str:
    """What a built model's attention runs, for the log and summary.json: ``sdpa``, ``flash_attention_2``, or
    ``torch_varlen`` with the detected ``varlen_attn`` signature."""
    name = getattr(model.config, "_attn_implementation", None) or "sdpa"
    if name == "torch_varlen":
        sig = varlen_signature()
        return f"torch_varlen: {sig.describe() if sig else 'no usable varlen_attn'}"
    return name


def _kernel():
    from torch.nn.attention import varlen

    fn = getattr(varlen, "varlen_attn", None)
    sig = varlen_signature(fn) if fn is not None else None
    if sig is None:
        raise FitrainError("model.attention=torch_varlen: this torch's varlen_attn has a signature fitrain does "
                           "not know; use model.attention=sdpa or auto")
    return fn, sig


def torch_varlen_attention(module, query, key, value, attention_mask=None, dropout: float = 0.0,
                           scaling: float | None = None, kernel=None, **kwargs):
    """transformers attention function over torch's varlen flash attention: ``query/key/value``
    ``[B, heads, T, head_dim]`` are flattened to ``[B*T, heads, head_dim]`` and attend causally within each
    ``cu_seq_lens`` segment (every row starts one, so rows stay apart too). Returns ``[B, T, heads, head_dim]``.
    ``kernel``: ``(varlen_attn, its VarlenSignature)`` read once at registration (None: read now)."""
    import torch

    if dropout:
        raise FitrainError("model.attention=torch_varlen has no attention dropout")
    fn, sig = kernel or _kernel()
    b, heads, t, d = query.shape
    kv_heads = key.shape[1]
    q = query.transpose(1, 2).reshape(b * t, heads, d)
    k = key.transpose(1, 2).reshape(b * t, kv_heads, d)
    v = value.transpose(1, 2).reshape(b * t, kv_heads, d)
    extra: dict = {}
    if kv_heads != heads:
        if sig.gqa:
            extra["enable_gqa"] = True
        else:   # query head h reads K/V head h // (heads / kv_heads), as transformers' repeat_kv
            k, v = k.repeat_interleave(heads // kv_heads, dim=1), v.repeat_interleave(heads // kv_heads, dim=1)
    if sig.scale:
        extra["scale"] = scaling
    elif scaling is not None and abs(scaling - d ** -0.5) > 1e-12 * d ** -0.5:
        raise FitrainError(f"model.attention=torch_varlen: this torch's varlen_attn has no scale argument and "
                           f"the model's attention scale {scaling} is not 1/sqrt(head_dim)")
    dtype = q.dtype
    if q.is_cuda and dtype not in (torch.float16, torch.bfloat16):   # the flash kernel takes 16-bit inputs
        q, k, v = q.to(torch.bfloat16), k.to(torch.bfloat16), v.to(torch.bfloat16)   # (as transformers' casts)
    args = (q, k, v, kwargs["cu_seq_lens_q"], kwargs["cu_seq_lens_k"], kwargs["max_length_q"], kwargs["max_length_k"])
    if sig.causal == "window_size":
        out = fn(*args, window_size=(-1, 0), **extra)
    else:
        out = fn(*args, True, **extra)
    return out.to(dtype).reshape(b, t, heads, d), None


def register_attention(attention: str) -> None:
    """Make ``attention`` known to transformers (``torch_varlen`` is fitrain's own attention function)."""
    if attention == "torch_varlen":
        from transformers import AttentionInterface

        kernel = _kernel()     # the signature is read here, once, not inside every (compiled) forward

        def torch_varlen(module, query, key, value, attention_mask=None, **kwargs):
            return torch_varlen_attention(module, query, key, value, attention_mask, kernel=kernel, **kwargs)

        AttentionInterface.register("torch_varlen", torch_varlen)


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


def attention_kwargs(model, batch: dict) -> dict:
    """The extra forward arguments of the model's attention for a packed batch (none for sdpa)."""
    if getattr(model.config, "_attn_implementation", "sdpa") in VARLEN:
        return varlen_kwargs(batch["position_ids"])
    return {}
