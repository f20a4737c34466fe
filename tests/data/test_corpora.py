"""Released corpora in their native layouts (IPT's instruction-augmented shards, Nemotron-CC's JSONL /
.jsonl.zstd and parquet), normalisation that resumes file by file, and weighted mixtures drawn by tokens."""
import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fitrain.core.accounting import Rejects
from fitrain.core.errors import FitrainError
from fitrain.data.corpora import MixturePart, ReaderConfig, draw_mixture, iter_corpus, normalise
from fitrain.data.records import Document

IPT_TEXT = ("Genetically susceptible workers. The likelihood of an individual becoming ill ...\n\n"
            "Question: What influences the likelihood of becoming ill?\nAnswer: Genetic makeup and health.")


def write_ipt(root):
    """IPT's hub layout: part-*/shard/*.txt shards of JSON lines with a `text` field (document + its
    instruction-response pairs), listed by part-*/json/train.json."""
    shard = root / "part-0" / "shard"
    shard.mkdir(parents=True)
    lines = [json.dumps({"text": IPT_TEXT}), "", json.dumps({"text": "Second document.\n\nQ: a?\nA: b."}),
             "{not json", json.dumps("A bare string line is one document."),
             json.dumps(["a list line: one document", "and another"]), json.dumps({"text": "   "})]
    (shard / "00000.txt").write_text("\n".join(lines) + "\n")
    (root / "part-0" / "json").mkdir()
    (root / "part-0" / "json" / "train.json").write_text(json.dumps([{"source": "part-0/shard/00000.txt",
                                                                      "source_lang": "en", "weight": 1.0}]))
    return str(root / "part-*" / "shard" / "*.txt")


def write_nemotron(root):
    """Nemotron-CC's release: .jsonl.zstd files with a `text` field per row (plus ids and labels)."""
    root.mkdir(parents=True)
    rows = [{"warc_record_id": f"<urn:uuid:{i}>", "text": f"Document {i}. Question: q{i}? Answer: a{i}.",
             "label": "diverse_qa_pairs"} for i in range(5)]
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    with pa.output_stream(str(root / "CC-MAIN-2024-10-part-00000.jsonl.zstd"), compression="zstd") as f:
        f.write(body)
    with gzip.open(root / "part-00001.jsonl.gz", "wb") as f:
        f.write(json.dumps({"warc_record_id": "<urn:uuid:9>", "text": "Gzipped document."}).encode() + b"\n")
    return [str(root / "*.jsonl.zstd"), str(root / "*.jsonl.gz")]


def test_ipt_instruction_augmented_shards(tmp_path):
    rejects = Rejects()
    docs = list(iter_corpus([write_ipt(tmp_path / "ipt")], ReaderConfig(), rejects))
    assert [d.text for d in docs] == [IPT_TEXT, "Second document.\n\nQ: a?\nA: b.",
                                      "A bare string line is one document.", "a list line: one document",
                                      "and another"]
    assert docs[0].doc_id.endswith("00000.txt:1") and docs[4].doc_id.endswith("00000.txt:6.1")
    assert rejects.counts == {"malformed_json": 1, "empty_document": 1}


def test_nemotron_cc_jsonl_zstd_and_gzip_with_ids(tmp_path):
    rejects = Rejects()
    docs = list(iter_corpus(write_nemotron(tmp_path / "nemo"), ReaderConfig(id_column="warc_record_id"), rejects))
    assert [d.doc_id for d in docs] == [f"<urn:uuid:{i}>" for i in (0, 1, 2, 3, 4, 9)]
    assert docs[2].text == "Document 2. Question: q2? Answer: a2." and not rejects.total


def test_parquet_with_a_text_column_or_joined_columns(tmp_path):
    p = tmp_path / "v2.parquet"  # Nemotron-CC-v2 on the hub is parquet with `text`; here also a separate QA column
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["Doc A.", "Doc B."], "qa": ["Q: x?\nA: y.", None]}), p)
    plain = list(iter_corpus([str(p)], ReaderConfig(id_column="id"), Rejects()))
    assert [(d.doc_id, d.text) for d in plain] == [("a", "Doc A."), ("b", "Doc B.")]
    joined = list(iter_corpus([str(p)], ReaderConfig(join_columns=["text", "qa"]), Rejects()))
    assert [d.text for d in joined] == ["Doc A.\n\nQ: x?\nA: y.", "Doc B."]  # a missing column part is left out


def test_bad_corpora_are_clear_errors(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"content": "x"}) + "\n")
    with pytest.raises(FitrainError, match=r"a.jsonl: missing column\(s\) \['text'\]; the rows have \['content'\]"):
        list(iter_corpus([str(tmp_path / "a.jsonl")], ReaderConfig(), Rejects()))
    (tmp_path / "b.bin").write_text("x")
    with pytest.raises(FitrainError, match="cannot tell the format from the name 'b.bin'; set reader.format"):
        list(iter_corpus([str(tmp_path / "b.bin")], ReaderConfig(), Rejects()))
    good = gzip.compress(b'{"text": "x"}\n' * 2000)
    (tmp_path / "cut.jsonl.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(FitrainError, match="cut.jsonl.gz: the gzip data is cut short or corrupt"):
        list(iter_corpus([str(tmp_path / "cut.jsonl.gz")], ReaderConfig(), Rejects()))
    with pytest.raises(FitrainError, match="matches no file"):
        list(iter_corpus([str(tmp_path / "none" / "*.txt")], ReaderConfig(), Rejects()))
    with pytest.raises(FitrainError, match="format must be one of"):
        ReaderConfig(format="csv")


def test_normalise_writes_one_part_per_file_and_keeps_finished_parts(tmp_path):
    src = write_nemotron(tmp_path / "nemo")
    out = tmp_path / "norm"
    stats = normalise(src, ReaderConfig(), out, log=lambda m: None)
    assert (stats["files"], stats["documents"], stats["parts_kept"]) == (2, 6, 0)
    rows = pq.read_table(out / "part-00000.parquet").to_pylist()
    assert rows[0]["text"] == "Document 0. Question: q0? Answer: a0." and len(rows) == 5
    before = (out / "part-00000.parquet").stat().st_mtime_ns
    again = normalise(src, ReaderConfig(), out, log=lambda m: None)
    assert again["parts_kept"] == 2 and (out / "part-00000.parquet").stat().st_mtime_ns == before
    changed = normalise(src, ReaderConfig(id_column="warc_record_id"), out, log=lambda m: None)
    assert changed["parts_kept"] == 0  # other reader settings: rewritten
    with pytest.raises(FitrainError, match="no documents in"):
        (tmp_path / "empty.jsonl").write_text("\n")
        normalise([str(tmp_path / "empty.jsonl")], ReaderConfig(), tmp_path / "e", log=lambda m: None)


def test_a_mixture_draws_each_source_in_proportion_to_its_weight_in_tokens(tmp_path):
    big = [Document(f"b{i}", "x " * 10) for i in range(100)]      # 10 "tokens" each
    small = [Document(f"s{i}", "y " * 5) for i in range(3)]       # 15 tokens in all: read several times
    count = lambda texts: [len(t.split()) for t in texts]  # noqa: E731
    stats = draw_mixture([MixturePart("big", lambda: iter(big), 3.0), MixturePart("small", lambda: iter(small), 1.0)],
                         400, count, tmp_path / "mix", batch=7)
    assert stats["parts"]["big"]["share_tokens"] == 300 and stats["parts"]["small"]["share_tokens"] == 100
    assert stats["parts"]["big"]["tokens"] == 300 and stats["parts"]["big"]["passes"] == 1
    assert stats["parts"]["small"]["tokens"] == 100 and stats["parts"]["small"]["passes"] == 7  # 20 docs of 5
    ids = [r["doc_id"] for r in pq.read_table(tmp_path / "mix" / "part-00001.parquet").to_pylist()]
    assert ids[:4] == ["small:1:s0", "small:1:s1", "small:1:s2", "small:2:s0"] and len(ids) == 20
    with pytest.raises(FitrainError, match="mixture source 'none' holds no documents"):
        draw_mixture([MixturePart("none", lambda: iter([]), 1.0)], 10, count, tmp_path / "m2")
