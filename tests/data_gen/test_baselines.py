"""Generated baseline arms (data_gen/baselines.py): reply parsing, the QA-appended layout, the offline
fallback, and both methods end to end over data_gen's document shards, offline and through a local
OpenAI-compatible server (the real client layer, cache and rejects)."""
import pyarrow.parquet as pq
import pytest

from data_gen.baselines import (GenerateOptions, offline_handlers, offline_question, offline_rephrase_text, parse_qa,
                                parse_rephrase, qa_appended, run)
from data_gen.config import DataGenConfig
from fitrain.core.llm import LLMConfig, Request
from tests.data_gen.conftest import write_jsonl
from tests.helpers.llm_server import Reply, ScriptedLLMServer, last_user_message


def test_qa_replies_parse_tolerantly_and_nothing_is_an_error():
    text = ("Here are the pairs:\n1. **Question:** What is a list?\n**Answer:** A mutable sequence.\nIt grows.\n\n"
            "- Q: Who wrote it?\n  A: Guido.\nQuestion 3: dangling question without answer")
    assert parse_qa(text) == [("What is a list?", "A mutable sequence.\nIt grows."), ("Who wrote it?", "Guido.")]
    with pytest.raises(ValueError, match="no 'Question:' / 'Answer:' pairs"):
        parse_qa("I cannot help with that.")
    assert parse_rephrase('Here is the rewritten text:\n"The text, rewritten."') == "The text, rewritten."
    with pytest.raises(ValueError):
        parse_rephrase("Here is a paraphrased version:\n  ")


def test_qa_appended_samples_pairs_by_document_length_seeded_per_document():
    pairs = [(f"q{i}?", f"a{i}.") for i in range(8)]
    doc = " ".join(["word"] * 130)
    opts = GenerateOptions(words_per_pair=60, max_pairs=8)
    text, k = qa_appended(doc, pairs, "d1", 0, opts)
    assert k == 2 and text.startswith(doc + "\n\nQuestion: q") and text.count("\nAnswer: a") == 2
    assert qa_appended(doc, pairs, "d1", 0, opts) == (text, 2)               # seeded: the same again
    assert {qa_appended(doc, pairs, f"d{i}", 0, opts)[0] for i in range(6)} != {text}  # per document
    assert qa_appended("short doc", pairs, "d", 0, opts)[1] == 1              # at least one pair
    assert qa_appended(" ".join(["w"] * 5000), pairs[:3], "d", 0, opts)[1] == 3  # at most what was generated


def test_offline_fallback_answers_in_the_parsed_forms():
    doc = ("A list is a mutable sequence type that holds any objects.\n\n## Navigation\n\nStrings support slicing "
           "and methods such as str.split() in every version. You can't change a string in place, it's immutable.")
    qa = offline_handlers()["baseline_qa"](Request(messages=[], task="baseline_qa",
                                                   meta={"inputs": {"document": doc, "max_pairs": 8}}))
    pairs = parse_qa(qa)
    assert pairs[0] == ("What is a list?", "A list is a mutable sequence type that holds any objects.")
    assert pairs[1][0] == "What is stated about str.split()?" and pairs[1][1].startswith("Strings support")
    assert all(a in " ".join(doc.split()) for _, a in pairs)                   # answers are the document's sentences
    assert offline_question("The Python Software Foundation was founded in 2001 in Delaware.") == \
        "What was the Python Software Foundation?"
    assert offline_rephrase_text(doc) == ("A list is a mutable sequence type that holds any objects.\n\nStrings "
                                          "support slicing and methods such as str.split() in every version. You "
                                          "cannot change a string in place, it's immutable.")


def _corpus(tmp_path, docs=12):
    texts = [f"Topic {i} is a subject that the documentation covers in detail. It explains how topic {i} relates "
             f"to the others and why it matters in practice. Readers learn the rules of topic {i} step by step."
             for i in range(docs)]
    path = write_jsonl(tmp_path / "corpus.jsonl", [{"id": f"doc{i}", "text": t} for i, t in enumerate(texts)])
    dg = DataGenConfig(run_dir=str(tmp_path), num_shards=3, progress=False)
    dg.match.documents, dg.match.id_column = [str(path)], "id"
    return dg, texts


@pytest.mark.parametrize("method", ["qa_appended", "rephrase"])
def test_both_methods_run_offline_over_the_training_shards(tmp_path, method):
    dg, texts = _corpus(tmp_path)
    out = tmp_path / "arm"
    st = run(method, LLMConfig(backend="extractive"), GenerateOptions(batch_size=3), dg, out, shards=2, log=lambda m: None)
    assert st["complete"] and st["ran"] == [0, 1]
    rows = [r for i in (0, 1) for r in pq.read_table(out / f"shard-{i:05d}" / "documents.parquet").to_pylist()]
    # shards 0 and 1 of 3: documents j with j % 3 in (0, 1); shard 2 (held out) is never read
    assert sorted(r["doc_id"] for r in rows) == sorted(f"doc{j}" for j in range(12) if j % 3 != 2)
    by_id = {r["doc_id"]: r["text"] for r in rows}
    if method == "qa_appended":
        assert by_id["doc4"].startswith(texts[4] + "\n\nQuestion: ") and "\nAnswer: " in by_id["doc4"]
        assert st["stats"]["counters"]["pairs_appended"] == 8  # one per document (about 40 words each)
    else:
        assert by_id["doc4"] == texts[4]  # the normalising fallback has nothing to change in clean prose
    again = run(method, LLMConfig(backend="extractive"), GenerateOptions(), dg, out, shards=2, log=lambda m: None)
    assert again["ran"] == [] and again["skipped"] == [0, 1]


def test_generation_through_a_served_model_with_rejects_counted_and_replies_cached(tmp_path):
    dg, texts = _corpus(tmp_path, docs=6)
    seen = []

    def respond(kind, body):
        msg = last_user_message(body)
        seen.append(msg)
        if "Topic 3 " in msg:
            return Reply("Sorry, I can only summarise.")  # no pairs: retried, then counted
        topic = msg.split("Document:\n", 1)[1].split(" is a subject", 1)[0]
        return Reply(f"Question: What is {topic}?\nAnswer: A subject the documentation covers.\n\n"
                     f"Question: Why does {topic} matter?\nAnswer: It matters in practice.")

    with ScriptedLLMServer(respond) as srv:
        llm = LLMConfig(model="scripted", base_url=srv.base_url, max_retries=1, backoff_s=0.01, timeout_s=10.0)
        st = run("qa_appended", llm, GenerateOptions(), dg, tmp_path / "arm", shards=3, log=lambda m: None)
    assert all("up to 8 question-and-answer pairs" in m for m in seen)  # the prompt file, filled in
    assert all(any(t in m for m in seen) for t in texts)
    assert st["stats"]["rejected"]["by_reason"] == {"baseline_qa_unparsable": 1}
    assert st["stats"]["in"] == 6 and st["stats"]["out"] == 5
    rows = pq.read_table(tmp_path / "arm" / "shard-00001" / "documents.parquet").to_pylist()
    assert rows[0]["text"].startswith(texts[1] + "\n\nQuestion: ") and "Topic 1" in rows[0]["text"].split("\n\n", 1)[1]
    cache = (tmp_path / "arm" / "shard-00000" / "llm_cache.jsonl").read_text().splitlines()
    assert len(cache) == 2  # shard 0 holds documents 0 and 3; only the good reply is cached
