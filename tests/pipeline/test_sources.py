"""The steps that write an arm's own data, for real on small files (the data_gen shards are written by
hand): an fi variant's re-written pairs (no judge) against the fi arm, a released corpus normalised and
prepared, and a mixture drawn to the reference's tokens with the experiment's tokenizer."""
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq

from fitrain.core.io import mark_done, read_json
from fitrain.pipeline.graph import ExperimentConfig
from fitrain.pipeline.run import run_experiment

SCORES = (2.0, 3.0, 4.0, 5.0)


def _texts():
    from pydoc_data.topics import topics

    paragraphs = [" ".join(p.split()) for k in sorted(topics) for p in topics[k].split("\n\n")]
    return [p for p in paragraphs if 300 <= len(p) <= 1200 and p.endswith(".")]


def _data_gen_output(cfg: ExperimentConfig, texts: list[str]) -> None:
    """matches/ and judged/ of two shards as data_gen leaves them, then data_gen's own write stage (>= 4)."""
    from data_gen.judge import judged_schema
    from data_gen.match import doc_schema
    from data_gen.shards import shard_dir
    from data_gen.write import run as write
    from fitrain.pipeline.configs import data_gen_config

    layout = cfg.layout
    for i in range(2):
        docs = [{"doc_id": f"d{j}", "text": t} for j, t in enumerate(texts[:20]) if j % 2 == i]
        rows = [{"doc_id": d["doc_id"], "template_id": f"t{k}", "instruction": f"What does part {k} say?",
                 "answer": d["text"].split(". ")[k % 2][:200], "excerpt_fraction": 1.0, "chunk_index": 0,
                 "slot_count": 1, "similarity": 0.9, "judge_score": s, "judge_feedback": ""}
                for d in docs for k, s in enumerate(SCORES)]
        for stage, name, schema, data in (("matches", "documents.parquet", doc_schema(), docs),
                                          ("judged", "judged.parquet", judged_schema(), rows)):
            d = shard_dir(layout.data_gen(stage), i)
            d.mkdir(parents=True)
            pq.write_table(pa.Table.from_pylist(data, schema=schema), d / name)
            mark_done(d)
    dg = data_gen_config(cfg, check=False)
    write(dg, layout.data_gen("final"), layout.data_gen("judged"), layout.data_gen("matches"), log=lambda m: None)
    for step, shard in (("corpus", None), ("tokenizer", None), ("data_gen-templates", None), ("data_gen", 0),
                        ("data_gen", 1)):
        mark_done(layout.step_marker_dir(step, shard), {"prepared by": "test fixture"})


def test_fi_variant_corpus_and_mixture_data_steps(tmp_path, tokenizer_dir):
    texts = _texts()
    ipt = tmp_path / "ipt" / "part-0" / "shard"
    ipt.mkdir(parents=True)
    (ipt / "00000.txt").write_text("".join(json.dumps({"text": t + "\n\nQuestion: Why?\nAnswer: Because."}) + "\n"
                                           for t in texts[40:60]))
    nemo = tmp_path / "nemo.jsonl.zstd"
    with pa.output_stream(str(nemo), compression="zstd") as f:
        f.write("".join(json.dumps({"text": t}) + "\n" for t in texts[60:70]).encode())
    cfg = ExperimentConfig(name="sources", run_dir=str(tmp_path / "run"), seed=3)
    cfg.data_gen.num_shards = 2
    cfg.prepare.pack.seq_len, cfg.prepare.progress = 256, False
    cfg.train.budget_from_epochs = 1.5
    cfg.arms = ["fi", {"name": "fi_nojudge", "kind": "fi", "min_judge_score": 0}, "standard",
                {"name": "ipt", "kind": "corpus", "paths": [str(tmp_path / "ipt" / "part-*" / "shard" / "*.txt")]},
                {"name": "mix", "kind": "mixture", "sources": [{"arm": "ipt"}, {"paths": [str(nemo)], "weight": 3}]}]
    shutil.copytree(tokenizer_dir, cfg.layout.tokenizer)
    _data_gen_output(cfg, texts)
    steps = ["pairs-fi_nojudge", "prepare-fi", "prepare-fi_nojudge", "prepare-standard", "source-ipt", "prepare-ipt",
             "source-mix", "prepare-mix"]
    run_experiment(cfg, only=steps, log=lambda m: None)

    manifest = {a: read_json(cfg.root / "prepared" / a / "manifest.json") for a in ("fi", "fi_nojudge", "ipt", "mix")}
    fi, nj = manifest["fi"], manifest["fi_nojudge"]
    assert fi["budget"]["pairs_in"] == 20 * 2 and nj["budget"]["pairs_in"] == 20 * 4  # >= 4 only, or every score
    assert fi["budget"]["seed"] == nj["budget"]["seed"] == 3                         # both budgeted, one seed
    assert fi["budget"]["document_tokens"] == nj["budget"]["document_tokens"]       # the same 20 documents
    rewritten = pq.read_table(cfg.root / "arms" / "fi_nojudge" / "shard-00000" / "pairs.parquet").to_pylist()
    assert sorted({r["judge_score"] for r in rewritten}) == list(SCORES)
    assert read_json(cfg.root / "prepared" / "standard" / "manifest.json")["matched_budget"]["from"].endswith("fi")
    assert manifest["ipt"]["counts"]["documents"] == 20 and manifest["ipt"]["kind"] == "documents"
    drawn = read_json(cfg.root / "steps" / "source-mix" / "_SUCCESS")
    target = round(fi["counts"]["total_tokens"] * 1.5)
    assert drawn["target_tokens"] == target and drawn["tokens"] >= target
    parts = drawn["parts"]
    assert abs(parts["ipt"]["share_tokens"] * 3 - parts["paths1"]["share_tokens"]) <= 3  # weights 1 : 3, rounded
    assert parts["paths1"]["passes"] >= 1 and manifest["mix"]["counts"]["total_tokens"] == drawn["tokens"]
