"""A tiny exported checkpoint for the eval tests: a random-init 2-layer Llama (dim 64) saved with the
session tokenizer (tests/conftest.py ``tokenizer_dir``), in the layout `fitrain export` writes."""
from __future__ import annotations

import pytest


def save_tiny_llama(out, tokenizer_dir, dim: int = 64, layers: int = 2, seed: int = 0, max_positions: int = 1024,
                    ffn: int = 0):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=dim, intermediate_size=ffn or 2 * dim, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=max_positions,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                      tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer_dir):
    return save_tiny_llama(tmp_path_factory.mktemp("tiny_hf") / "hf", tokenizer_dir)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models gain nothing from a second thread, and on a shared 2-core machine torch's per-core threads
    wait on busy cores (a forward measured 80x slower with 2 threads than 1 under load). Restored after."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
