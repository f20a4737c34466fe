"""A small BPE tokenizer with Llama-3's special tokens, saved by ``transformers`` the way a downloaded
Llama-3 tokenizer directory is laid out (tokenizer.json + tokenizer_config.json; BOS <|begin_of_text|>, EOS
<|end_of_text|>, reserved special tokens, and no pad token), made inside the tests: the stand-in for
``meta-llama/Meta-Llama-3-8B``'s tokenizer (no network in tests)."""
from __future__ import annotations

from pathlib import Path

SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
            "<|reserved_special_token_1|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def save_llama3_style_tokenizer(out: Path, texts: list[str], vocab_size: int = 1000, eos: bool = True) -> Path:
    """Train a byte-level BPE on ``texts`` and save it with ``save_pretrained`` (``eos=False``: no EOS)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>",
                                   eos_token="<|end_of_text|>" if eos else None, clean_up_tokenization_spaces=False)
    fast.save_pretrained(str(out))
    return Path(out)
