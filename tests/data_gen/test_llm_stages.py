"""instantiate / judge / write / templatize through the real llm client layer: the OpenAI-compatible backend
against the scripted local server (well-formed, malformed, slow, failing replies) and the transformers
backend with a tiny randomly initialised model (its garbage exercises parsing and rejects)."""
import json

import pyarrow.parquet as pq
import pytest

from data_gen import instantiate, judge, templatize, write
from data_gen.config import DataGenConfig
from data_gen.match import doc_schema, match_schema
from data_gen.shards import parquet_sink, shard_dir
from data_gen.templatize import template_id
from fitrain.core.errors import FitrainError
from fitrain.core.io import mark_done
from fitrain.core.llm import LLMConfig, make_backend
from fitrain.data.records import RELEASED_COLUMNS, EXTRA_COLUMNS
from tests.helpers.llm_server import Reply, ScriptedLLMServer, last_user_message

KINDS = ["good", "null", "malformed", "missing", "short", "unfilled", "fail", "slow", "nullanswer", "fenced"]


def setup_matches(root, docs):
    """templates/ and matches/ as the earlier stages leave them: every document x every template kind."""
    tdir, mdir = root / "templates", root / "matches"
    tpls = [{"template_id": template_id(f"{k} question about <fi>topic</fi>?"), "template": f"{k} question about <fi>topic</fi>?",
             "compatible_document_description": "any", "slot_count": 1, "query": None, "source": "test"} for k in KINDS]
    with parquet_sink(tdir / "templates.parquet", templatize._schema()) as w:
        w(tpls)
    mark_done(tdir)
    d = shard_dir(mdir, 0)
    with parquet_sink(d / "documents.parquet", doc_schema()) as w:
        w([{"doc_id": x["id"], "text": x["text"]} for x in docs])
    with parquet_sink(d / "matches.parquet", match_schema()) as w:
        w([{"doc_id": x["id"], "template_id": t["template_id"], "similarity": 0.9, "chunk_index": j % 6,
            "slot_count": 1} for x in docs for j, t in enumerate(tpls)])
    mark_done(d)
    return tdir, mdir


def first_sentence(doc):
    return doc.split(". ")[0].strip() + "."


def instantiator(calls):
    def respond(kind, body):
        msg = json.loads(last_user_message(body))
        tpl, doc = msg["instruction_template"], msg["document"]
        k = tpl.split()[0]
        calls[(k, doc[:20])] = calls.get((k, doc[:20]), 0) + 1
        words = first_sentence(doc).split()
        quote = f"<excerpt>{' '.join(words[:4])} <...> {' '.join(words[-4:])}</excerpt>"
        ins = tpl.replace("<fi>topic</fi>", words[0])
        good = json.dumps({"instantiated_instruction": ins, "answer": quote})
        return {"good": Reply(text=good),
                "null": Reply(text="null"),
                "malformed": Reply(text="Sure! Here is the instruction: {broken"),
                "missing": Reply(text=json.dumps({"instantiated_instruction": ins,
                                                  "answer": "<excerpt>zzz qqq <...> not in it</excerpt>"})),
                "short": Reply(text=json.dumps({"instantiated_instruction": ins, "answer":
                                                "In my own long words that are not quoted at all, " * 3
                                                + f"<excerpt>{words[0]} {words[1]}</excerpt>"})),
                "unfilled": Reply(text=json.dumps({"instantiated_instruction": tpl, "answer": quote})),
                "fail": Reply(status=500),
                "slow": Reply(text=good, delay_s=6.0 if calls[(k, doc[:20])] == 1 else 0.0),  # times out once
                "nullanswer": Reply(text=json.dumps({"instantiated_instruction": ins, "answer": None})),
                "fenced": Reply(text=f"```json\n{good}\n```"),
                }[k]
    return respond


def judge_reply(calls):
    def respond(kind, body):
        msg = last_user_message(body)
        ins = msg.split("<instruction>\n", 1)[1].split("\n</instruction>", 1)[0]
        k = ins.split()[0]
        calls[ins] = calls.get(ins, 0) + 1
        if k == "good":
            return Reply(text="<feedback>Quotes the document and answers.</feedback>\n<score>5</score>")
        if k == "slow":
            return Reply(text="The answer is partial. Score: 3")
        return Reply(text="no verdict" if calls[ins] == 1 else "<feedback>ok</feedback> <score> 4 </score>")
    return respond


def test_openai_backend_instantiate_judge_write(tmp_path, dolly_contexts):
    docs = dolly_contexts[:2]
    tdir, mdir = setup_matches(tmp_path, docs)
    cfg = DataGenConfig(run_dir=str(tmp_path), progress=False)
    calls: dict = {}
    with ScriptedLLMServer(instantiator(calls)) as srv:
        cfg.instantiate.llm = LLMConfig(model="scripted", base_url=srv.base_url, max_retries=2, backoff_s=0.01,
                                        timeout_s=3.0)  # generous: the cores are shared
        st = instantiate.run(cfg, tmp_path / "pairs", mdir, tdir, lambda d: make_backend(cfg.instantiate.llm),
                             log=lambda s: None)
    by = st["stats"]["rejected"]["by_reason"]
    assert by == {"template_not_applicable": 2, "instantiator_unparsable": 2, "excerpt_not_found": 2,
                  "excerpt_fraction_low": 2, "unfilled_slot": 2, "instantiator_failed": 2, "null_answer": 2}
    assert st["stats"]["in"] == 20 and st["stats"]["out"] == 6
    assert calls[("malformed", docs[0]["text"][:20])] == 3   # asked again twice, then counted
    assert calls[("slow", docs[0]["text"][:20])] == 2        # timed out once, then answered
    assert calls[("fail", docs[0]["text"][:20])] == 3        # 500 three times (2 retries), then counted
    pairs = pq.read_table(shard_dir(tmp_path / "pairs", 0) / "pairs.parquet").to_pylist()
    for p in pairs:
        doc = next(d["text"] for d in docs if d["id"] == p["doc_id"])
        assert p["answer"] == first_sentence(doc) and p["answer"] in doc and p["excerpt_fraction"] == 1.0

    jcalls: dict = {}
    with ScriptedLLMServer(judge_reply(jcalls)) as srv:
        cfg.judge.llm = LLMConfig(model="scripted", base_url=srv.base_url, max_retries=2, backoff_s=0.01, timeout_s=10.0)
        st = judge.run(cfg, tmp_path / "judged", tmp_path / "pairs", mdir, lambda d: make_backend(cfg.judge.llm),
                       log=lambda s: None)
    assert st["stats"]["counters"]["score_histogram"] == {"5": 2, "3": 2, "4": 2}
    st = write.run(cfg, tmp_path / "final", tmp_path / "judged", mdir, log=lambda s: None)
    assert st["stats"]["filtered"]["by_reason"] == {"below_min_judge_score": 2}
    table = pq.read_table(write.final_paths(tmp_path / "final")[0])
    assert table.column_names == list(RELEASED_COLUMNS) + list(EXTRA_COLUMNS)
    rows = table.to_pylist()
    assert len(rows) == 4 and sorted(r["judge_score"] for r in rows) == [4, 4, 5, 5]
    assert [r["text"] is not None for r in rows] == [True, False, True, False]  # text on each first row only


def tiny_model_dir(tmp_path):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from data_gen.encoder import default_model_path

    # any tokenizer will do (the model is random); a causal LM takes no token_type_ids
    tok = AutoTokenizer.from_pretrained(default_model_path(), model_input_names=["input_ids", "attention_mask"])
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                         max_position_embeddings=1024))
    out = tmp_path / "tiny"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def test_transformers_backend_garbage_is_counted_never_fatal(tmp_path, dolly_contexts):
    model = tiny_model_dir(tmp_path)
    llm = LLMConfig(backend="transformers", model=model, max_new_tokens=12, batch_size=4, device="cpu")
    queries = tmp_path / "q.jsonl"
    queries.write_text("".join(json.dumps({"instruction": d["instruction"]}) + "\n" for d in dolly_contexts[:5]))
    cfg = DataGenConfig(run_dir=str(tmp_path), progress=False)
    cfg.templatize.queries, cfg.templatize.llm, cfg.templatize.max_new_tokens = [str(queries)], llm, 12
    with pytest.raises(FitrainError, match="no valid template"):
        templatize.run(cfg, tmp_path / "templates_t", lambda d: make_backend(llm), log=lambda s: None)
    stats = json.loads((shard_dir(tmp_path / "templates_t", 0) / "stats.json").read_text())
    assert stats["rejected"]["by_reason"] == {"templatizer_unparsable": 5}

    tdir, mdir = setup_matches(tmp_path, dolly_contexts[:1])
    cfg.instantiate.llm, cfg.instantiate.max_new_tokens, cfg.instantiate.max_document_chars = llm, 12, 300
    st = instantiate.run(cfg, tmp_path / "pairs", mdir, tdir, lambda d: make_backend(llm), log=lambda s: None)
    assert st["complete"] and st["stats"]["out"] == 0
    assert st["stats"]["rejected"]["by_reason"] == {"instantiator_unparsable": 10}


def test_openai_backend_templatize_validates_and_deduplicates(tmp_path):
    queries = ["Is sorted() stable?", "Is sorted() stable ?", "no slots please", "garbage", "broken tags",
               "server error", "  "]
    q = tmp_path / "q.jsonl"
    q.write_text("".join(json.dumps({"instruction": x}) + "\n" for x in queries))

    def respond(kind, body):
        x = last_user_message(body)
        desc = "Python documentation of a built-in function."
        if x.startswith("Is sorted()"):  # two queries, one template (deduplicated)
            return Reply(text=json.dumps({"template": "Is <fi>function</fi> stable?", "compatible_document_description": desc}))
        if x == "no slots please":
            return Reply(text=json.dumps({"template": "Is it stable?", "compatible_document_description": desc}))
        if x == "broken tags":
            return Reply(text=json.dumps({"template": "Is <fi>function stable?", "compatible_document_description": desc}))
        if x == "server error":
            return Reply(status=503)
        return Reply(text="I'd rather chat.")

    with ScriptedLLMServer(respond) as srv:
        # 1 of 6 requests fails at the server: below this share it is a counted reject, not a failed shard
        cfg = DataGenConfig(run_dir=str(tmp_path), progress=False, max_failed_share=0.2)
        cfg.templatize.queries = [str(q)]
        cfg.templatize.llm = LLMConfig(model="scripted", base_url=srv.base_url, max_retries=1, backoff_s=0.01)
        st = templatize.run(cfg, tmp_path / "templates", lambda d: make_backend(cfg.templatize.llm),
                            log=lambda s: None)["stats"]
        # the released contract: the bare query is the whole user message (requests arrive concurrently)
        assert [{"role": "user", "content": "Is sorted() stable?"}] in [body["messages"] for _, body in srv.requests]
    assert st["rejected"]["by_reason"] == {"no_slots": 1, "unbalanced_slot_tags": 1, "templatizer_unparsable": 1,
                                           "templatizer_failed": 1, "empty_query": 1}
    assert st["filtered"]["by_reason"] == {"duplicate_template": 1} and st["out"] == 1
    rows = pq.read_table(tmp_path / "templates" / "templates.parquet").to_pylist()
    assert [(r["template"], r["slot_count"], r["query"]) for r in rows] == [("Is <fi>function</fi> stable?", 1, "Is sorted() stable?")]
