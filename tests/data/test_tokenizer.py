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


def test_a_pretrained_tokenizer_gets_a_pad_distinct_from_eos_and_keeps_its_vocabulary(tmp_path, corpus_texts):
    import json

    from tests.helpers.llama3_tokenizer import save_llama3_style_tokenizer

    src = save_llama3_style_tokenizer(tmp_path / "llama3", corpus_texts[:50])
    n = len(load_tokenizer_raw(src))
    # a reserved token of the vocabulary as the pad (Llama-3's 128,256 ids stay 128,256)
    out = train_tokenizer(TokenizerConfig(pretrained=str(src), pad_token="<|reserved_special_token_0|>",
                                          out=str(tmp_path / "a")))
    tok = load_tokenizer(out)
    assert (tok.eos_token, tok.bos_token, tok.pad_token) == ("<|end_of_text|>", "<|begin_of_text|>",
                                                            "<|reserved_special_token_0|>")
    assert len(tok) == n and tok.pad_token_id != tok.eos_token_id
    rec = json.loads((out / "fitrain_tokenizer.json").read_text())
    assert rec["pretrained"] == str(src) and rec["added_tokens"] == [] and rec["vocab_size"] == n
    # a pad token it does not have is added as a special token, and recorded
    out = train_tokenizer(TokenizerConfig(pretrained=str(src), out=str(tmp_path / "b")))
    tok = load_tokenizer(out)
    assert tok.pad_token == "<|pad|>" and len(tok) == n + 1
    assert json.loads((out / "fitrain_tokenizer.json").read_text())["added_tokens"] == ["<|pad|>"]
    text = "Answer: the <|end_of_text|> stays text only when asked"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def load_tokenizer_raw(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def test_a_pretrained_tokenizer_that_cannot_serve_the_format_is_a_one_line_error(tmp_path, corpus_texts):
    from tests.helpers.llama3_tokenizer import save_llama3_style_tokenizer

    no_eos = save_llama3_style_tokenizer(tmp_path / "noeos", corpus_texts[:20], eos=False)
    with pytest.raises(FitrainError, match=r"has no eos_token") as e:
        train_tokenizer(TokenizerConfig(pretrained=str(no_eos), out=str(tmp_path / "x")))
    assert "\n" not in str(e.value)
    src = save_llama3_style_tokenizer(tmp_path / "ok", corpus_texts[:20])
    with pytest.raises(FitrainError, match=r"no pad token distinct from its EOS"):
        train_tokenizer(TokenizerConfig(pretrained=str(src), pad_token="<|end_of_text|>", out=str(tmp_path / "y")))
    with pytest.raises(FitrainError, match=r"tokenizer.pretrained '.*missing': cannot load it") as e:
        train_tokenizer(TokenizerConfig(pretrained=str(tmp_path / "missing"), out=str(tmp_path / "z")))
    assert "\n" not in str(e.value) and not (tmp_path / "z").exists()
