"""fitrain.data.records: the released FineInstructions layout, judge-score filters, generic columns, bad input."""
import json

import pytest

from fitrain.core.accounting import Rejects
from fitrain.core.errors import FitrainError
from fitrain.data.records import InputConfig, iter_document_pairs, iter_documents


def released_table(with_scores=True):
    import pyarrow as pa

    rows = [  # two documents; text/token_count only on each document's first row
        ("<urn:uuid:a>", "Doc A text about owls.", "t1", "What do owls eat?", "Mice.", 7, 12, 4.5),
        ("<urn:uuid:a>", None, "t2", "Where do owls live?", "Forests.", None, 11, 3.0),
        ("<urn:uuid:a>", None, "t3", "Are owls nocturnal?", "Mostly.", None, 10, 4.0),
        ("<urn:uuid:b>", "Doc B on tea.", "t1", "How is tea made?", "From leaves.", 5, 13, 5.0),
        ("<urn:uuid:b>", None, "t4", "Is tea hot?", "Often.", None, 9, 1.0),
    ]
    cols = ["warc_record_id", "text", "template_id", "instantiated_instruction", "answer", "token_count",
            "synthetic_token_count", "judge_score"]
    data = {c: [r[i] for r in rows] for i, c in enumerate(cols)}
    if not with_scores:
        data.pop("judge_score")
    return pa.table(data)


def write(table, path):
    import pyarrow.parquet as pq

    pq.write_table(table, path)
    return str(path)


def test_released_layout_groups_documents(tmp_path):
    path = write(released_table(with_scores=False), tmp_path / "fi.parquet")
    rejects = Rejects()
    groups = list(iter_document_pairs(InputConfig(paths=[path]), rejects))
    assert [g.document.doc_id for g in groups] == ["<urn:uuid:a>", "<urn:uuid:b>"]
    assert groups[0].document.text == "Doc A text about owls." and groups[0].document.token_count == 7
    assert [p.instruction for p in groups[0].pairs] == ["What do owls eat?", "Where do owls live?", "Are owls nocturnal?"]
    assert groups[1].pairs[0].answer == "From leaves." and groups[1].pairs[0].template_id == "t1"
    assert groups[1].pairs[0].synthetic_token_count == 13 and rejects.total == 0


def test_judge_score_column_filter(tmp_path):
    path = write(released_table(), tmp_path / "fi.parquet")
    rejects, filtered = Rejects(), Rejects()
    groups = list(iter_document_pairs(InputConfig(paths=[path], min_judge_score=4), rejects, filtered))
    kept = [p.instruction for g in groups for p in g.pairs]
    assert kept == ["What do owls eat?", "Are owls nocturnal?", "How is tea made?"]
    assert filtered.counts == {"below_min_judge_score": 2} and rejects.total == 0


def test_row_aligned_score_files(tmp_path):
    import pyarrow as pa

    a = write(released_table(with_scores=False), tmp_path / "a.parquet")
    b = write(released_table(with_scores=False).slice(3), tmp_path / "b.parquet")
    write(pa.table({"score": [1.0, 4.0, 4.0, 2.0, 5.0]}), tmp_path / "a.scores.parquet")
    (tmp_path / "b.scores.jsonl").write_text('{"judge_score": 4}\n{"judge_score": null}\n')
    cfg = InputConfig(paths=[a, b], judge_score_paths=[str(tmp_path / "a.scores.parquet"),
                                                         str(tmp_path / "b.scores.jsonl")], min_judge_score=4)
    rejects, filtered = Rejects(), Rejects()
    kept = [(p.instruction, p.judge_score) for g in iter_document_pairs(cfg, rejects, filtered) for p in g.pairs]
    assert kept == [("Where do owls live?", 4.0), ("Are owls nocturnal?", 4.0), ("Is tea hot?", 5.0),
                    ("How is tea made?", 4.0)]
    assert filtered.counts["below_min_judge_score"] == 2 and rejects.counts == {"missing_judge_score": 1}
    # misaligned side files are refused
    (tmp_path / "short.jsonl").write_text('{"score": 4}\n')
    cfg.judge_score_paths = [str(tmp_path / "short.jsonl"), str(tmp_path / "b.scores.jsonl")]
    with pytest.raises(FitrainError, match="fewer rows"):
        list(iter_document_pairs(cfg, Rejects()))


def test_generic_columns_and_documents(tmp_path):
    p = tmp_path / "pairs.jsonl"
    p.write_text("".join(json.dumps({"id": f"d{i // 2}", "doc": f"document {i // 2}", "q": f"q{i}", "a": f"a{i}"}) + "\n"
                         for i in range(4)))
    cfg = InputConfig(paths=[str(p)])
    cfg.columns.doc_id, cfg.columns.text, cfg.columns.instruction, cfg.columns.answer = "id", "doc", "q", "a"
    groups = list(iter_document_pairs(cfg, Rejects()))
    assert [(g.document.doc_id, g.document.text, len(g.pairs)) for g in groups] == [("d0", "document 0", 2),
                                                                                   ("d1", "document 1", 2)]
    d = tmp_path / "docs.jsonl"
    d.write_text('{"body": "one"}\n{"body": ""}\n{"body": "two"}\n')
    rejects = Rejects()
    docs = list(iter_documents(InputConfig(paths=[str(d)], kind="documents", text_column="body"), rejects))
    assert [x.text for x in docs] == ["one", "two"] and rejects.counts == {"empty_document": 1}


def test_bad_rows_are_counted_rejects(tmp_path):
    p = tmp_path / "bad.jsonl"
    lines = [json.dumps({"warc_record_id": "d", "text": "t", "instantiated_instruction": "ok?", "answer": "ok"}),
             json.dumps({"warc_record_id": "d", "instantiated_instruction": None, "answer": "x"}),
             json.dumps({"warc_record_id": "d", "instantiated_instruction": "  ", "answer": "x"}),
             json.dumps({"warc_record_id": "d", "instantiated_instruction": "q", "answer": ""}),
             json.dumps({"warc_record_id": None, "instantiated_instruction": "q", "answer": "a"}),
             "{not json", "[1, 2]"]
    p.write_bytes(("\n".join(lines) + "\n").encode() + b'{"warc_record_id": "d", "answer": "\xff\xfe"}\n')
    rejects = Rejects()
    groups = list(iter_document_pairs(InputConfig(paths=[str(p)]), rejects))
    assert sum(len(g.pairs) for g in groups) == 1
    assert rejects.counts == {"empty_instruction": 2, "empty_answer": 1, "missing_doc_id": 1,
                              "malformed_json": 1, "not_an_object": 1, "invalid_utf8": 1}


def test_invalid_utf8_in_a_binary_parquet_column(tmp_path):
    import pyarrow as pa

    t = pa.table({"warc_record_id": ["d", "d"], "instantiated_instruction": ["q1", "q2"],
                  "answer": pa.array([b"fine", b"\xff\xfebad"], type=pa.binary())})
    rejects = Rejects()
    pairs = [p for g in iter_document_pairs(InputConfig(paths=[write(t, tmp_path / "b.parquet")]), rejects)
             for p in g.pairs]
    assert [p.answer for p in pairs] == ["fine"] and rejects.counts == {"invalid_utf8": 1}


def test_bad_files_raise_clear_errors(tmp_path):
    import pyarrow as pa

    t = write(pa.table({"warc_record_id": ["d"], "question": ["q"], "answer": ["a"]}), tmp_path / "cols.parquet")
    with pytest.raises(FitrainError, match=r"missing column\(s\) \['instantiated_instruction'\]"):
        list(iter_document_pairs(InputConfig(paths=[t]), Rejects()))
    (tmp_path / "corrupt.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(FitrainError, match="cannot read parquet"):
        list(iter_document_pairs(InputConfig(paths=[str(tmp_path / "corrupt.parquet")]), Rejects()))
    with pytest.raises(FitrainError, match="matches no file"):
        list(iter_document_pairs(InputConfig(paths=[str(tmp_path / "none*.parquet")]), Rejects()))
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(FitrainError, match="unsupported file type"):
        list(iter_documents(InputConfig(paths=[str(tmp_path / "x.csv")], kind="documents"), Rejects()))


def test_document_split_across_files_stays_one_group(tmp_path):
    """Released layout: text/token_count only on a document's first row; a document whose rows straddle two
    parquet files (the hub splits files by row count) is still one document with its text."""
    from fitrain.data.records import Document, DocumentPairs, Pair, write_pairs_parquet

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
