"""Bad input is counted by reason, never fatal for the batch: template banks, queries and documents."""
import json

import pyarrow.parquet as pq
import pytest

from data_gen import index, match, templatize
from data_gen.config import DataGenConfig
from data_gen.templatize import TemplateError, parse_templatizer, validate_template
from fitrain.core.errors import FitrainError


def test_validate_template_reasons():
    assert validate_template("Is <fi>x</fi> bigger than <fi>y</fi>?", "d", 12) == 2
    for tpl, desc, reason in [("no slots here", "d", "no_slots"), ("<fi>open only", "d", "unbalanced_slot_tags"),
                              ("<fi>a <fi>b</fi></fi>", "d", "unbalanced_slot_tags"), ("x</fi>", "d", "unbalanced_slot_tags"),
                              ("<fi> </fi>?", "d", "empty_slot"), ("<fi>a</fi>", "  ", "empty_description"),
                              (None, "d", "empty_template"), ("<fi>a</fi>" * 3, "d", "too_many_slots")]:
        with pytest.raises(TemplateError) as e:
            validate_template(tpl, desc, 2)
        assert e.value.reason == reason, tpl


def test_parse_templatizer_is_robust():
    obj = {"template": "Is <fi>x</fi> ok?", "compatible_document_description": "d"}
    assert parse_templatizer(json.dumps(obj)) == obj
    assert parse_templatizer("Here you go:\n```json\n" + json.dumps(obj) + "\n```") == obj
    assert parse_templatizer("prefix " + json.dumps(obj) + " trailing {") == obj
    for bad in ["no json", "[1, 2]", '{"template": "x"}', "{broken"]:
        with pytest.raises(ValueError):
            parse_templatizer(bad)


def test_bank_and_documents_bad_rows_counted_by_reason(tmp_path, encoder):
    good = [{"template": f"How do I use <fi>function</fi> number {i}?", "compatible_document_description":
             "Python documentation about a function."} for i in range(3)]
    bank = tmp_path / "bank.jsonl"
    lines = [json.dumps(r).encode() for r in good]
    lines += [json.dumps(good[0]).encode(),                                   # duplicate
              json.dumps({"template": "No slots at all?", "compatible_document_description": "x"}).encode(),
              json.dumps({"template": "<fi>a</fi>", "compatible_document_description": ""}).encode(),
              b'{"template": "broken json',                                     # malformed JSON
              b'{"template": "caf\xe9 <fi>x</fi>", "compatible_document_description": "d"}',  # invalid UTF-8
              json.dumps({"template": None, "compatible_document_description": None}).encode()]
    bank.write_bytes(b"\n".join(lines) + b"\n")
    cfg = DataGenConfig(run_dir=str(tmp_path), progress=False)
    cfg.templatize.source, cfg.templatize.bank = "bank", [str(bank)]
    st = templatize.run(cfg, tmp_path / "templates", None, log=lambda s: None)["stats"]
    assert st["rejected"]["by_reason"] == {"no_slots": 1, "empty_description": 1, "malformed_json": 1,
                                           "invalid_utf8": 1, "empty_template": 1}
    assert st["filtered"]["by_reason"] == {"duplicate_template": 1} and st["out"] == 3
    assert st["counters"]["slot_counts"] == {"1": 3}

    index.run(cfg, tmp_path / "index", tmp_path / "templates", lambda: encoder, log=lambda s: None)
    docs = tmp_path / "docs.jsonl"
    rows = [json.dumps({"id": "ok", "text": "The function returns a value. Use it to compute things."}).encode(),
            json.dumps({"id": "empty", "text": "   "}).encode(),
            json.dumps({"id": "null", "text": None}).encode(),
            json.dumps({"id": "huge", "text": "x " * 150_000}).encode(),
            json.dumps({"id": "long", "text": "Python function documentation. " * 400}).encode(),
            b'{"id": "bad", "text": "\xff\xfe"}',
            json.dumps({"id": "ok", "text": "Another document that reuses the id."}).encode()]
    docs.write_bytes(b"\n".join(rows) + b"\n")
    cfg.match.documents, cfg.match.id_column, cfg.match.threshold = [str(docs)], "id", 0.1
    st = match.run(cfg, tmp_path / "matches", tmp_path / "index", lambda: encoder, log=lambda s: None)["stats"]
    assert st["rejected"]["by_reason"] == {"empty_document": 2, "document_huge": 1, "invalid_utf8": 1,
                                           "duplicate_doc_id": 1}
    assert st["counters"]["truncated_for_encoder"] == 1 and st["out"] == 2
    m = pq.read_table(tmp_path / "matches" / "shard-00000" / "matches.parquet").to_pylist()
    assert {r["doc_id"] for r in m} == {"ok", "long"}
    assert len([r for r in m if r["doc_id"] == "ok"]) == 3  # fewer candidates than 6: all of them, once


def test_queries_reader_and_missing_inputs(tmp_path):
    from fitrain.core.accounting import Rejects

    q = tmp_path / "q.jsonl"
    q.write_bytes(b'{"prompt": "### Instruction:\\nWhat is X?\\n\\n### Response:"}\n{"prompt": ""}\n'
                  b'{"prompt": "no marker"}\n{"prompt": "\xff"}\n')
    rej = Rejects()
    got = list(templatize.iter_queries([str(q)], "prompt", rej, r"### Instruction:\n(.*?)\n\n###"))
    assert [x[1] for x in got] == ["What is X?"]
    assert dict(rej.counts) == {"empty_query": 1, "query_pattern_mismatch": 1, "invalid_utf8": 1}
    with pytest.raises(FitrainError, match="no column 'instruction'"):
        list(templatize.iter_queries([str(q)], "instruction", Rejects()))
    cfg = DataGenConfig(run_dir=str(tmp_path))
    with pytest.raises(FitrainError, match="templatize.queries is empty"):
        templatize.run(cfg, tmp_path / "t", None)
    with pytest.raises(FitrainError, match="not finished"):
        index.run(cfg, tmp_path / "i", tmp_path / "t", None)


def test_json_list_files_are_read_as_lists():
    from fitrain.core.accounting import Rejects
    from tests.data_gen.conftest import DOLLY

    rej = Rejects()
    got = list(templatize.iter_queries([str(DOLLY / "litgpt_fixture_dolly.json")], "instruction", rej))
    assert len(got) == 12 and got[0][1] == "When did Virgin Australia start operating?" and not rej.counts
