"""The write stage fills token_count and synthetic_token_count when a tokenizer is named, else leaves them
null; the counts are those of the named tokenizer on the plain texts."""
import pyarrow.parquet as pq
import pytest

from data_gen import write
from data_gen.config import DataGenConfig
from data_gen.judge import judged_schema
from data_gen.match import doc_schema
from data_gen.shards import parquet_sink, shard_dir
from fitrain.core.io import mark_done


@pytest.fixture()
def judged(tmp_path, dolly_contexts):
    docs = dolly_contexts[:3]
    d = shard_dir(tmp_path / "matches", 0)
    with parquet_sink(d / "documents.parquet", doc_schema()) as w:
        w([{"doc_id": x["id"], "text": x["text"]} for x in docs])
    mark_done(d)
    j = shard_dir(tmp_path / "judged", 0)
    rows = [{"doc_id": x["id"], "template_id": f"t{k}", "instruction": f"Question {k} about {x['id']}?",
             "answer": x["text"].split(". ")[0], "excerpt_fraction": 1.0, "chunk_index": 0, "slot_count": 1,
             "similarity": 0.9, "judge_score": 5.0 - k, "judge_feedback": ""} for x in docs for k in range(3)]
    with parquet_sink(j / "judged.parquet", judged_schema()) as w:
        w(rows)
    mark_done(j)
    return tmp_path, docs


def test_token_counts_with_a_tokenizer_and_null_without(judged, tmp_path_factory):
    from fitrain.data.tokenizer import TokenizerConfig, load_tokenizer, train_tokenizer_from_texts

    root, docs = judged
    tok_dir = train_tokenizer_from_texts([d["text"] for d in docs] * 3, TokenizerConfig(
        vocab_size=300, out=str(tmp_path_factory.mktemp("tok"))))
    tok = load_tokenizer(tok_dir)
    n = lambda s: len(tok(s, add_special_tokens=False)["input_ids"])  # noqa: E731

    cfg = DataGenConfig(run_dir=str(root), progress=False)
    write.run(cfg, root / "final_plain", root / "judged", root / "matches", log=lambda s: None)
    plain = pq.read_table(write.final_paths(root / "final_plain")[0]).to_pylist()
    assert plain and all(r["token_count"] is None and r["synthetic_token_count"] is None for r in plain)

    cfg.write.tokenizer = str(tok_dir)
    write.run(cfg, root / "final", root / "judged", root / "matches", log=lambda s: None)
    rows = pq.read_table(write.final_paths(root / "final")[0]).to_pylist()
    assert len(rows) == len(plain) == 6  # scores 5 and 4 of each document kept
    for r in rows:
        doc = next(d for d in docs if d["id"] == r["warc_record_id"])
        if r["text"] is not None:  # the first row of a document
            assert r["token_count"] == n(doc["text"]) > 0
        else:
            assert r["token_count"] is None
        assert r["synthetic_token_count"] == n(r["instantiated_instruction"]) + n(r["answer"])
