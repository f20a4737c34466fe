import pytest

from fitrain.core.errors import FitrainError
from fitrain.data.tokenizer import TokenizerConfig, load_tokenizer, tokenizer_hash, train_tokenizer


def test_fixture_tokenizer_loads_offline_with_eos_and_pad(tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token == "<|pad|>" and tok.bos_token is None
    assert len(tok) == 1000
    text = "Ünïcode ✓ and  double  spaces\n\ttabs 😀"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text  # byte-level BPE round-trips exactly
    assert len(ids) < len(text.encode())  # merges were learned


def test_train_from_files_and_records(tmp_path, corpus_texts):
    import json

    (tmp_path / "a.txt").write_text("\n".join(corpus_texts[:20]))
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe not utf8")
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": t}) + "\n" for t in corpus_texts[20:40]))
    cfg = TokenizerConfig(files=[str(tmp_path / "*.txt")], out=str(tmp_path / "tok"), vocab_size=600,
                          bos_token="<|bos|>")
    cfg.input.paths = [str(docs)]
    cfg.input.kind = "documents"
    out = train_tokenizer(cfg)
    tok = load_tokenizer(out)
    assert tok.bos_token == "<|bos|>" and len(tok) == 600
    rejects = json.loads((out / "fitrain_rejects.json").read_text())
    assert rejects["by_reason"] == {"invalid_utf8": 1}
    h = tokenizer_hash(out)
    assert h == tokenizer_hash(out) and len(h) == 16


def test_errors(tmp_path):
    with pytest.raises(FitrainError, match="tokenizer not found"):
        load_tokenizer(tmp_path / "nope")
    with pytest.raises(FitrainError, match="no training text"):
        train_tokenizer(TokenizerConfig(out=str(tmp_path / "t")))
    with pytest.raises(FitrainError, match="matches no file"):
        train_tokenizer(TokenizerConfig(files=[str(tmp_path / "missing*.txt")], out=str(tmp_path / "t")))
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(FitrainError, match="no text"):
        train_tokenizer(TokenizerConfig(files=[str(tmp_path / "empty.txt")], out=str(tmp_path / "t")))


def test_train_from_pair_records(tmp_path, dolly_pairs_file):
    cfg = TokenizerConfig(out=str(tmp_path / "tok"), vocab_size=400, max_chars=50_000)
    cfg.input.paths = [str(dolly_pairs_file)]
    tok = load_tokenizer(train_tokenizer(cfg))
    # documents, instructions and answers all fed the merges: a frequent Dolly word is one token
    assert len(tok(" the", add_special_tokens=False)["input_ids"]) == 1
    assert tok.decode(tok("Virgin Australia", add_special_tokens=False)["input_ids"]) == "Virgin Australia"
