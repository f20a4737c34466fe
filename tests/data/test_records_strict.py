"""Inputs are taken at their word or rejected with a reason: non-string text, non-numeric scores, empty files
(by name), files matched twice (read once), repeated rows (counted), and what prepare records of them."""
import gzip
import json

import pytest

from fitrain.core.accounting import Rejects
from fitrain.core.errors import FitrainError
from fitrain.data.records import DuplicateCounter, InputConfig, expand_paths, iter_document_pairs, iter_documents
from tests.helpers.cli import pair, write_jsonl


def _pairs(paths, rejects, **kw):
    return [p for g in iter_document_pairs(InputConfig(paths=[str(p) for p in paths], **kw), rejects) for p in g.pairs]


def test_non_string_fields_are_rejected_not_trained_as_their_repr(tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", [pair("d1"), pair("d2", answer=["a", "b"]), pair("d3", instruction={"q": 1}),
                                           pair("d4", answer=3.5), pair("d5")])
    rejects = Rejects()
    kept = _pairs([f], rejects)
    assert [p.doc_id for p in kept] == ["d1", "d5"]
    assert dict(rejects.counts) == {"non_string_answer": 2, "non_string_instruction": 1}
    assert rejects.examples["non_string_answer"][0].endswith("p.jsonl:2: answer is a list: ['a', 'b']")
    assert all("[" not in p.answer for p in kept)


def test_numeric_document_ids_are_fine_other_types_are_not(tmp_path):
    f = write_jsonl(tmp_path / "d.jsonl", [{"id": 7, "text": "seven"}, {"id": [1], "text": "list id"},
                                           {"id": None, "text": "no id"}, {"id": "x", "text": ["not", "text"]}])
    rejects = Rejects()
    docs = list(iter_documents(InputConfig(paths=[str(f)], kind="documents", id_column="id"), rejects))
    assert [(d.doc_id, d.text) for d in docs] == [("7", "seven")]
    assert dict(rejects.counts) == {"non_string_doc_id": 1, "missing_doc_id": 1, "non_string_text": 1}


def test_non_numeric_judge_scores_are_counted_rejects(tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", [pair("d1", judge_score=5), pair("d2", judge_score="high"),
                                           pair("d3", judge_score="4.5"), pair("d4", judge_score=None)])
    rejects, filtered = Rejects(), Rejects()
    groups = iter_document_pairs(InputConfig(paths=[str(f)], min_judge_score=4.6), rejects, filtered)
    kept = [p for g in groups for p in g.pairs]
    assert [p.doc_id for p in kept] == ["d1"]
    assert dict(rejects.counts) == {"non_numeric_judge_score": 1, "missing_judge_score": 1}
    assert dict(filtered.counts) == {"below_min_judge_score": 1}


def test_an_empty_file_beside_a_good_one_is_reported_by_name(tmp_path):
    good = write_jsonl(tmp_path / "good.jsonl", [pair("d1")])
    (tmp_path / "empty.jsonl").write_text("")
    rejects = Rejects()
    assert len(_pairs([good, tmp_path / "empty.jsonl"], rejects)) == 1
    assert dict(rejects.counts) == {"empty_file": 1}
    assert rejects.examples["empty_file"] == [str(tmp_path / "empty.jsonl")]
    assert "empty.jsonl" in rejects.describe()


def test_files_matched_twice_are_read_once_unless_asked(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [pair("d1")])
    write_jsonl(tmp_path / "b.jsonl", [pair("d2")])
    repeated = []
    files = expand_paths([str(tmp_path / "*.jsonl"), str(tmp_path / "a*"), str(tmp_path / "a.jsonl")],
                         duplicates=repeated)
    assert [f.rsplit("/", 1)[1] for f in files] == ["a.jsonl", "b.jsonl"] and len(repeated) == 2
    patterns = [str(tmp_path / "*.jsonl"), str(tmp_path / "a*")]
    assert len(_pairs(patterns, Rejects())) == 2
    assert len(_pairs(patterns, Rejects(), dedupe_files=False)) == 3  # listed twice on purpose: upsampled


def test_truncated_gzip_and_missing_id_column_are_errors_naming_the_place(tmp_path):
    blob = gzip.compress("".join(json.dumps(pair(f"d{i}")) + "\n" for i in range(300)).encode())
    (tmp_path / "p.jsonl.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(FitrainError, match=r"p.jsonl.gz: the gzip data is cut short or corrupt after line \d+"):
        _pairs([tmp_path / "p.jsonl.gz"], Rejects())
    f = write_jsonl(tmp_path / "d.jsonl", [{"id": "a", "text": "t"}, {"id": "b", "text": "t"}, {"text": "t"}])
    with pytest.raises(FitrainError, match=r"d.jsonl:3: the row has no 'id' field \(input.id_column\)"):
        list(iter_documents(InputConfig(paths=[str(f)], kind="documents", id_column="id"), Rejects()))


def test_duplicate_counter():
    c = DuplicateCounter()
    for parts in [("a", "b"), ("a", "b"), ("a", "c"), ("ab",), ("a", "b")]:
        c.add(*parts)
    assert c.rows == 5 and c.duplicates() == 2
    assert DuplicateCounter().duplicates() == 0


def test_prepare_records_repeated_rows_and_files(tmp_path, tokenizer_dir):
    from fitrain.data.prepare import PrepareConfig, prepare

    f = write_jsonl(tmp_path / "in" / "p.jsonl", [pair("d1"), pair("d1"), pair("d2"), pair("d1")])
    cfg = PrepareConfig(input=InputConfig(paths=[str(f), str(tmp_path / "in" / "*.jsonl")]),
                        tokenizer=str(tokenizer_dir), out=str(tmp_path / "out"), progress=False)
    cfg.pack.seq_len = 64
    m = prepare(cfg)
    assert m.duplicates == {"rows": 2, "files": [str(tmp_path / "in" / "p.jsonl")]}
    assert m.counts.pairs == 4  # counted, not removed: the user decides
