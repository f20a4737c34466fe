import json

import pytest

from fitrain.data.corpus import CorpusConfig, _split, corpus_paths, write_builtin_corpus
from fitrain.core.errors import FitrainError


def _read(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_full_corpus_has_both_sources_unique_ids_and_bounded_parts(tmp_path):
    stats = write_builtin_corpus(CorpusConfig(), tmp_path)
    docs = _read(tmp_path / "documents.jsonl")
    assert stats["documents"] == len(docs) > 300
    assert stats["characters"] > 1_000_000          # ~1.7M characters of real documentation
    assert set(stats["by_source"]) == {"topics", "modules"}
    ids = [d["id"] for d in docs]
    assert len(set(ids)) == len(ids)
    assert all(200 <= len(d["text"]) <= 4000 for d in docs)
    assert any(i == "stdlib:json" for i in ids) and any(i.startswith("topic:") for i in ids)


def test_deterministic_and_prefix_sample(tmp_path):
    cfg = CorpusConfig(sources=["topics"], max_chars=1500)
    a = write_builtin_corpus(cfg, tmp_path / "a")
    b = write_builtin_corpus(cfg, tmp_path / "b")
    assert (tmp_path / "a/documents.jsonl").read_bytes() == (tmp_path / "b/documents.jsonl").read_bytes()
    assert a["sha256_16"] == b["sha256_16"]
    cfg.max_documents = 7
    write_builtin_corpus(cfg, tmp_path / "c")
    full = _read(tmp_path / "a/documents.jsonl")
    assert _read(tmp_path / "c/documents.jsonl") == full[:7]
    # the hash order mixes topics instead of listing them alphabetically
    assert [d["id"] for d in full[:7]] != sorted(d["id"] for d in full[:7])


def test_split_keeps_all_text_within_limit():
    text = "\n\n".join(f"para {i} " + "x" * (i * 37 % 900) for i in range(60)) + "\n\n" + "y" * 2500
    parts = _split(text, 1000)
    assert all(len(p) <= 1000 for p in parts)
    assert "".join(parts).replace("\n", "") == text.replace("\n", "")


def test_bad_corpus_settings_are_clear(tmp_path):
    with pytest.raises(FitrainError, match=r"sources\[0\] must be one of \['topics', 'modules'\], got 'wiki'"):
        write_builtin_corpus(CorpusConfig(sources=["wiki"]), tmp_path)
    with pytest.raises(FitrainError, match="paths is empty and builtin is false"):
        CorpusConfig(builtin=False)
    with pytest.raises(FitrainError, match="not found"):
        corpus_paths(CorpusConfig(builtin=False, paths=[str(tmp_path / "missing/*.jsonl")]), tmp_path)
