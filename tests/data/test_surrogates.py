"""Lone UTF-16 surrogates (a JSON ``"\\ud83d"`` without its pair, a file name that is not UTF-8 read with
``surrogateescape``) are not text: a row, corpus document, query, template or LLM reply holding one is a
counted ``lone_surrogate`` reject (or an unparsable reply), never a traceback in the tokenizer or the parquet
writer; ids made from a non-UTF-8 file name are escaped (fitrain.data.records)."""
import json
import os

import pyarrow as pa
import pytest

from fitrain.core.accounting import Rejects
from fitrain.data.corpora import ReaderConfig, iter_corpus
from fitrain.data.records import InputConfig, iter_documents, lone_surrogate, utf8_safe
from tests.helpers.cli import run_main


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))  # json.dumps writes "\ud83d" as an escape
    return path


@pytest.mark.parametrize("text,found", [("ok 😀", None), ("half \ud83d emoji", "U+D83D"), ("\udc80", "U+DC80"),
                                        ("", None), ("\ud83d\ude00", "U+D83D")])
def test_lone_surrogate_finds_the_first_one(text, found):
    assert lone_surrogate(text) == found


def test_prepare_counts_pairs_with_a_lone_surrogate(tmp_path, capsys, tokenizer_dir):
    rows = [{"warc_record_id": f"d{i}", "text": f"Document {i} about Python.", "template_id": "t",
             "instantiated_instruction": f"What is item {i}?", "answer": f"It is item {i}."} for i in range(8)]
    rows[3]["instantiated_instruction"] = "What is \ud83d?"
    rows[5]["answer"] = "A lone \udc80 low one."
    r = run_main(["prepare", f"input.paths=[{_jsonl(tmp_path / 'p.jsonl', rows)}]", f"tokenizer={tokenizer_dir}",
                  f"out={tmp_path}/prep", "progress=false", "pack.seq_len=128"], capsys)
    assert r.rc == 0, r.err
    m = json.loads((tmp_path / "prep" / "manifest.json").read_text())
    assert m["rejects"]["by_reason"]["lone_surrogate"] == 2 and m["counts"]["pairs"] == 6


def test_documents_from_a_non_utf8_file_name_get_escaped_ids(tmp_path):
    name = os.fsdecode(os.fsencode(str(tmp_path)) + b"/docs\xff.jsonl")
    _jsonl(tmp_path / "x.jsonl", [{"text": "first"}, {"text": "half \ud83d"}, {"text": "third"}])
    os.rename(tmp_path / "x.jsonl", name)
    rejects = Rejects()
    docs = list(iter_documents(InputConfig(paths=[name], kind="documents"), rejects))
    assert [d.text for d in docs] == ["first", "third"] and rejects.counts == {"lone_surrogate": 1}
    assert docs[0].doc_id.endswith("docs\\xff.jsonl:1")
    pa.array([d.doc_id for d in docs])  # storable (parquet refuses surrogates)


def test_corpus_normalisation_counts_lone_surrogates(tmp_path):
    p = _jsonl(tmp_path / "c.jsonl", [{"text": "fine"}, {"text": "bad \ud83d"}, {"text": ["a", "b \udc80"]}])
    rejects = Rejects()
    docs = list(iter_corpus([str(p)], ReaderConfig(), rejects))
    assert [d.text for d in docs] == ["fine"] and rejects.counts["lone_surrogate"] == 2


def test_utf8_safe_leaves_text_alone_and_escapes_the_rest():
    assert utf8_safe("plain ü") == "plain ü"
    assert utf8_safe(os.fsdecode(b"a\xffb")) == "a\\xffb"
    assert utf8_safe("x\ud83dy") == "x\\ud83dy"


def test_queries_and_templates_with_a_lone_surrogate_are_counted(tmp_path):
    from data_gen.templatize import TemplateError, iter_queries, validate_template

    p = _jsonl(tmp_path / "q.jsonl", [{"instruction": "good one?"}, {"instruction": "bad \ud83d?"}])
    rejects = Rejects()
    assert [q for _, q in iter_queries([str(p)], "instruction", rejects)] == ["good one?"]
    assert rejects.counts == {"lone_surrogate": 1}
    with pytest.raises(TemplateError, match="lone_surrogate"):
        validate_template("What is <fi>x</fi> \ud83d?", "any", 4)


@pytest.mark.parametrize("reply", ['{"instantiated_instruction": "Q \\ud83d?", "answer": "<excerpt>a</excerpt>"}',
                                   'Sure: {"instantiated_instruction": "Q?", "answer": "\udc80"}'])
def test_an_instantiator_reply_with_a_lone_surrogate_is_unparsable(reply):
    from data_gen.instantiate import parse_instantiation

    with pytest.raises(ValueError, match="lone surrogate"):
        parse_instantiation(reply)


def test_a_judge_reply_with_a_lone_surrogate_is_unparsable():
    from data_gen.judge import parse_judgement

    assert parse_judgement("<feedback>fine</feedback>\n<score>4</score>")[0] == 4
    with pytest.raises(ValueError, match="lone surrogate"):
        parse_judgement("<feedback>half \ud83d</feedback>\n<score>4</score>")
