"""Verified data: the manifest's own checksum, the shard files' sizes and checksums (cheap on open, complete in
``fitrain verify``), the tokenizer identity."""
import json
import os
import shutil

import numpy as np
import pytest

from fitrain.core.errors import FitrainError
from fitrain.data.integrity import find_prepared, verify_prepared
from fitrain.data.manifest import REBUILD, Manifest, checksum
from fitrain.data.shards import open_prepared


@pytest.fixture
def data(tmp_path, pairs_shards):
    d = tmp_path / "fi"
    shutil.copytree(pairs_shards, d)
    return d


def _open(d):
    p = open_prepared(d)
    p.validate()
    return p


def test_a_fresh_directory_verifies_and_records_every_file(data):
    m = Manifest.read(data)
    assert m.checksum == checksum(json.loads((data / "manifest.json").read_text()))
    assert m.tokenizer.identity and all(set(s.files) == {"tokens", "mask", "seg"} for s in m.shards)
    v = verify_prepared(data)
    assert v.ok, v.problems
    assert v.line().startswith(f"ok     {data}: {len(m.shards)} shard(s)")


def test_any_change_to_the_manifest_is_refused(data):
    d = json.loads((data / "manifest.json").read_text())
    d["budget"] = {"document_tokens": 1}
    (data / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(FitrainError, match="changed after prepare wrote it"):
        Manifest.read(data)


def test_open_checks_sizes_and_changed_files_cheaply(data):
    p = data / "shard_00000.tokens.npy"
    st = p.stat()
    raw = bytearray(p.read_bytes())
    raw[-1] ^= 0xFF
    p.write_bytes(bytes(raw))
    with pytest.raises(FitrainError, match="bytes of shard_00000.tokens.npy changed"):
        _open(data)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # the same change with the old mtime: only verify sees it
    _open(data)
    v = verify_prepared(data)
    assert not v.ok and "shard_00000.tokens.npy changed" in v.problems[0]


def _damage(kind: str, d) -> None:
    if kind == "manifest":
        m = json.loads((d / "manifest.json").read_text())
        m["counts"]["rows"] += 1
        (d / "manifest.json").write_text(json.dumps(m))
    elif kind == "json":
        (d / "manifest.json").write_text("{not json")
    else:  # the bytes of a shard, its size and mtime kept as they were (only verify's full hash sees it)
        p = d / "shard_00000.seg.npy"
        st = p.stat()
        raw = bytearray(p.read_bytes())
        raw[-1] ^= 0xFF
        p.write_bytes(bytes(raw))
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("kind", ["manifest", "json", "shard"])
def test_verify_says_its_advice_once(data, kind):
    _damage(kind, data)
    v = verify_prepared(data)
    line = v.line()
    assert not v.ok and line.startswith(f"FAILED {data}: ")
    assert line.count("re-run") == 1 and line.endswith(f"; {REBUILD}"), line
    assert "fitrain verify" not in line and f"prepared data {data}" not in line
    assert all("re-run" not in p for p in v.problems)


def test_a_manifest_without_its_checksum_is_refused(data):
    d = json.loads((data / "manifest.json").read_text())
    d.pop("checksum")
    d["counts"]["total_tokens"] += 2651  # the edit the checksum would have caught
    (data / "manifest.json").write_text(json.dumps(d))  # hand-edited, or as an older fitrain wrote it
    v = verify_prepared(data)
    assert not v.ok and "has no checksum" in v.line() and v.line().endswith(REBUILD)
    with pytest.raises(FitrainError, match="has no checksum"):
        Manifest.read(data, "budget_from")


def test_verify_checks_the_tokenizer_and_finds_prepared_dirs(data, tmp_path, corpus_texts):
    from fitrain.data.tokenizer import TokenizerConfig, train_tokenizer_from_texts

    assert find_prepared(tmp_path) == [data] and find_prepared(data) == [data]
    m = json.loads((data / "manifest.json").read_text())
    other = train_tokenizer_from_texts(corpus_texts[::3], TokenizerConfig(out=str(tmp_path / "tok2"), vocab_size=1000))
    m["tokenizer"]["path"] = str(other)
    m["checksum"] = checksum(m)
    (data / "manifest.json").write_text(json.dumps(m))
    v = verify_prepared(data)
    assert not v.ok and "is not the one the data was prepared with" in v.problems[0]


def test_tokenizer_identity_survives_a_resave_and_tells_tokenizers_apart(tokenizer_dir, tmp_path):
    from fitrain.data.tokenizer import load_tokenizer, tokenizer_hash, tokenizer_identity

    tok = load_tokenizer(tokenizer_dir)
    tok.save_pretrained(tmp_path / "copy")
    copy = load_tokenizer(tmp_path / "copy")
    assert tokenizer_identity(copy) == tokenizer_identity(tok)
    assert tokenizer_hash(tmp_path / "copy") != tokenizer_hash(tokenizer_dir)  # files differ, ids do not
    tok("some text", truncation=True, max_length=2)  # runtime settings are not identity
    assert tokenizer_identity(tok) == tokenizer_identity(copy)
