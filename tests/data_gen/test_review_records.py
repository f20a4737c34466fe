"""Released layout: text/token_count only on a document's first row. A document whose rows straddle two
parquet files (the hub splits files by row count) is still one document with its text."""
from fitrain.accounting import Rejects
from fitrain.records import Document, DocumentPairs, InputConfig, Pair, iter_document_pairs, write_pairs_parquet


def test_document_split_across_files_stays_one_group(tmp_path):
    d1 = Document("d1", "TEXT ONE", 11)
    write_pairs_parquet(tmp_path / "a.parquet", [DocumentPairs(d1, [Pair("d1", "i1", "a1"), Pair("d1", "i2", "a2")])])
    # the continuation rows of d1 (no text, as in the released files), then d2
    import pyarrow as pa
    import pyarrow.parquet as pq
    t = pq.read_table(tmp_path / "a.parquet")
    rows = [{**t.to_pylist()[1], "instantiated_instruction": "i3", "answer": "a3"}]
    rows += [{**rows[0], "warc_record_id": "d2", "text": "TEXT TWO", "token_count": 5, "instantiated_instruction": "i4"}]
    pq.write_table(pa.Table.from_pylist(rows, schema=t.schema), tmp_path / "b.parquet")
    r = Rejects()
    groups = list(iter_document_pairs(InputConfig(paths=[str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")]), r))
    assert [(g.document.doc_id, g.document.text, g.document.token_count, [p.instruction for p in g.pairs])
            for g in groups] == [("d1", "TEXT ONE", 11, ["i1", "i2", "i3"]), ("d2", "TEXT TWO", 5, ["i4"])]
    assert r.total == 0
