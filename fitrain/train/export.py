"""Export a training checkpoint as a Hugging Face model directory.

The directory is a plain ``save_pretrained`` directory (safetensors weights, config.json,
generation_config.json) plus the tokenizer, so ``AutoModelForCausalLM.from_pretrained(dir)`` and lm-eval's
``hf`` model load it with no conversion. ``fitrain_export.json`` records where it came from and the training
format (fitrain_eval prompts the model in it); the tokenizer carries a chat template that renders a user
turn as that format's training prefix (fitrain.train.chat_template), so chat endpoints prompt it as trained.
The generation config holds the special tokens (generation stops at EOS) and greedy decoding only: the generation length is the caller's (a ``max_new_tokens`` written here would override
lm-eval's ``max_gen_toks`` and every evaluator's own limit).
"""
from __future__ import annotations

from pathlib import Path
from fitrain.core.errors import FitrainError
from fitrain.core.io import as_os_error, atomic_path, write_json
from fitrain.train.chat_template import add_chat_template, format_of
from fitrain.train.checkpoint import TrainState


def export(checkpoint: str | Path, out_dir: str | Path, tokenizer: str | Path | None = None) -> Path:
    """Write ``out_dir`` from ``checkpoint`` (a .ckpt file, a sharded checkpoint directory, or a run's
    ``checkpoints/`` folder: its latest). ``tokenizer`` defaults to the one the run trained with."""
    from fitrain.train.checkpoint import latest_checkpoint, model_state_dict

    checkpoint = Path(checkpoint)
    if checkpoint.is_dir() and not (checkpoint / "meta.pt").exists():
        latest = latest_checkpoint(checkpoint)
        if latest is None:
            raise FitrainError(f"{checkpoint} holds no checkpoint (no 'latest' marker)")
        checkpoint = latest
    weights, state = model_state_dict(checkpoint)
    return export_state(weights, state, out_dir, tokenizer, source=str(checkpoint))


def export_state(weights: dict, state: TrainState, out_dir: str | Path, tokenizer: str | Path | None = None,
                 source: str = "") -> Path:
    """Export model ``weights`` (HF names) with the run's :class:`TrainState` (config, tokenizer, counters)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from fitrain.data.tokenizer import load_tokenizer, vocab_size_of

    out_dir = Path(out_dir)
    hf_cfg = state.hf_config
    if not isinstance(hf_cfg, dict) or not hf_cfg:
        raise FitrainError("checkpoint metadata has no model config (hf_config); was it written by fitrain train?")
    tok_path = tokenizer or state.tokenizer
    if not tok_path or not Path(tok_path).is_dir():
        raise FitrainError(f"tokenizer directory not found: {tok_path!r}; pass the tokenizer explicitly")
    tok = load_tokenizer(tok_path)
    add_chat_template(tok, format_of(state.format))  # prompted through a chat endpoint exactly as trained
    config = LlamaConfig.from_dict(dict(hf_cfg))
    if vocab_size_of(tok) > config.vocab_size:
        raise FitrainError(f"tokenizer {tok_path} has {vocab_size_of(tok)} tokens, more than the model's "
                           f"{config.vocab_size}")
    config.use_cache = True          # inference: generation wants the KV cache
    config._attn_implementation = "sdpa"
    config.architectures = ["LlamaForCausalLM"]
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False, assign=True)
    except RuntimeError as e:
        raise FitrainError(f"checkpoint weights do not fit the model config: {str(e).splitlines()[0]}") from None
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise FitrainError(f"checkpoint weights do not match the model: missing {sorted(set(missing) - tied)[:5]}, "
                           f"unexpected {sorted(unexpected)[:5]}")
    if config.tie_word_embeddings:
        model.tie_weights()
    model.eval()
    gen = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                           pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
                           do_sample=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "_SUCCESS").unlink(missing_ok=True)  # an export overwritten halfway is not a finished one
    model.generation_config = gen
    try:
        model.save_pretrained(out_dir, safe_serialization=True)
        tok.save_pretrained(out_dir)
    except Exception as e:  # safetensors reports a full disk as its own error type
        raise as_os_error(e, out_dir) from None
    write_json(out_dir / "fitrain_export.json",
               {"source": source, "step": state.step, "tokens": state.tokens,
                "supervised_tokens": state.supervised_tokens, "arm": state.arm,
                "tokenizer": str(tok_path), "format": state.format})
    with atomic_path(out_dir / "_SUCCESS") as t:
        t.write_text("{}\n")
    return out_dir
