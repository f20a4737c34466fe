"""Experiments with several arms and seeds, for real on tiny data (slow): a 3-arm, 2-seed experiment from
the corpus to the report, then an arm added to the finished experiment; and the arms that need no data_gen
(released corpora, generated baselines, a mixture) trained on one reference's tokens, offline."""
from __future__ import annotations

import json
import re

import pyarrow.parquet as pq
import pytest

from fitrain.core.io import read_json
from fitrain.pipeline.run import load_experiment, run_experiment

pytestmark = pytest.mark.slow

QA = {"name": "qa", "kind": "generated", "method": "qa_appended", "llm": {"backend": "extractive"}}
EPOCHS = 3  # train.budget_from_epochs: every arm trains 3 x the reference's prepared tokens
TINY = ["corpus.max_documents=72", "data_gen.num_shards=2", "heldout_shards=0", "tokenizer.vocab_size=1000",
        f"train.budget_from_epochs={EPOCHS}", "train.log_every=4", "train.val_every=0", "train.wandb.mode=disabled",
        "eval.lm_eval.tasks=[fitrain_mixeval_mc]", "eval.lm_eval.formats=[plain]", "eval.lm_eval.limit=8",
        "eval.heldout.enabled=false"]


def _texts(n: int, offset: int = 0) -> list[str]:
    """Real English text every Python carries: paragraphs of the pydoc topics (a few hundred of them)."""
    from pydoc_data.topics import topics

    paragraphs = [" ".join(p.split()) for k in sorted(topics) for p in topics[k].split("\n\n")]
    texts = [p for p in paragraphs if 300 <= len(p) <= 1500 and p.endswith(".")][offset:offset + n]
    assert len(texts) == n
    return texts


def _ran(lines: list[str]) -> list[str]:
    """The steps a run actually ran, in order (their 'finished in' lines; skipped steps print none)."""
    found = [m.group(1) for line in lines for m in [re.match(r"\s+(\S+?)(?: shard \d+)? finished in", line)] if m]
    return list(dict.fromkeys(found))


def write_ipt_shard(root, texts: list[str]) -> str:
    """A corpus in IPT's layout: part-0/shard/00000.txt, JSON lines of document + instruction-response pairs."""
    shard = root / "part-0" / "shard"
    shard.mkdir(parents=True)
    lines = [json.dumps({"text": f"{t}\n\nQuestion: What is this section about?\nAnswer: {t.split('.')[0]}."})
             for t in texts]
    (shard / "00000.txt").write_text("\n".join(lines) + "\n")
    return str(root / "part-*" / "shard" / "*.txt")


def _logger(lines: list[str]):
    def log(msg: str) -> None:  # kept for the assertions, printed for a failure's report (step timings)
        lines.append(msg)
        print(msg, flush=True)
    return log


@pytest.mark.timeout(1800)  # about 2 minutes alone; the CI machine's 2 cores are often shared
def test_three_arms_two_seeds_end_to_end_and_an_arm_added_afterwards(tmp_path):
    cfg = load_experiment("quickstart", [f"run_dir={tmp_path / 'run'}", "name=arms-e2e", "seeds=[0,1]", *TINY])
    cfg.arms = ["fi", "standard", QA]
    lines: list[str] = []
    run_experiment(cfg, log=_logger(lines))
    runs = ["fi.seed0", "fi.seed1", "standard.seed0", "standard.seed1", "qa.seed0", "qa.seed1"]
    summaries = {r: read_json(cfg.root / "train" / r / "summary.json") for r in runs}
    tokens = {r: s["tokens"] for r, s in summaries.items()}
    fi_tokens = read_json(cfg.root / "prepared" / "fi" / "manifest.json")["counts"]["total_tokens"]
    assert set(tokens.values()) == {EPOCHS * fi_tokens}, tokens     # every arm: the fi arm's total tokens
    # seeds: distinct runs (data order and initialisation), identical token counts
    for arm in ("fi", "standard", "qa"):
        a, b = summaries[f"{arm}.seed0"], summaries[f"{arm}.seed1"]
        assert a["tokens"] == b["tokens"] and a["final_loss"] != b["final_loss"], arm
    tm = read_json(cfg.root / "report" / "token_matching.json")
    assert tm["matched_within_one_sequence"] and sorted(tm["runs"]) == sorted(runs)
    for r in runs:
        assert (cfg.root / "eval" / r / "results.json").is_file(), r
    report = (cfg.root / "report" / "report.md").read_text()
    # every arm with its seeds: the headline (mean +- sd over seeds, a 95% interval, the difference to fi), the
    # paired comparisons, and every run in the token table
    # the Arms table: a line per run saying what it trains on, its tokens and passes over its own data
    trains_on = {"fi": "FineInstructions pairs", "standard": "standard pre-training on the source documents of fi",
                 "qa": "a synthetic corpus (qa_appended)"}
    for r in runs:
        assert f"| {r} | {trains_on[r.split('.')[0]]}" in report, r
    for arm in ("fi", "qa", "standard"):
        row = next(line for line in report.splitlines() if line.startswith(f"| {arm} (2 seeds) | "))
        assert " ± " in row and "[" in row and (arm == "fi" or "Δ " in row), row
        assert f"| fitrain_mixeval_mc acc | {arm} | 2 | " in report
    for r in runs:
        assert f"| {r} | {r.split('.')[0]} | {r[-1]} | fi | {tokens[r]:,} |" in report, r
    qa_docs = pq.read_table(next((cfg.root / "arms" / "qa").glob("shard-*/documents.parquet"))).to_pylist()
    assert "\n\nQuestion: " in qa_docs[0]["text"] and "\nAnswer: " in qa_docs[0]["text"]

    # a corpus arm added to the finished experiment: only its steps run, and the report again
    ipt = write_ipt_shard(tmp_path / "ipt", _texts(30, offset=200))
    cfg.arms = ["fi", "standard", QA, {"name": "ipt", "kind": "corpus", "paths": [ipt]}]
    lines = []
    run_experiment(cfg, log=_logger(lines))
    assert _ran(lines) == ["source-ipt", "prepare-ipt", "train-ipt.seed0", "train-ipt.seed1", "eval-ipt.seed0",
                           "eval-ipt.seed1", "report"]
    assert read_json(cfg.root / "train" / "ipt.seed1" / "summary.json")["tokens"] == EPOCHS * fi_tokens
    report = (cfg.root / "report" / "report.md").read_text()
    assert "| ipt.seed0 | a corpus read from files" in report and "| ipt.seed1 | a corpus read from files" in report


@pytest.mark.timeout(1200)
def test_corpus_generated_and_mixture_arms_train_the_reference_tokens_offline(tmp_path):
    """No fi arm: the reference is a released corpus (IPT layout); a rephrase and a QA-appended baseline are
    generated offline from the experiment's documents and mixed 1:2; every arm trains the reference's tokens."""
    from fitrain.data.records import Document  # noqa: F401  (the documents below are plain JSON lines)

    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(_texts(40))))
    ipt = write_ipt_shard(tmp_path / "ipt", _texts(25, offset=100))
    cfg = load_experiment("quickstart", [f"run_dir={tmp_path / 'run'}", "name=no-fi", "corpus.builtin=false",
                                         f"corpus.paths=[{corpus}]", "corpus.id_column=id", *TINY])
    cfg.arms = [{"name": "ipt", "kind": "corpus", "paths": [ipt]},
                {"name": "wrap", "kind": "generated", "method": "rephrase", "llm": {"backend": "extractive"}},
                {**QA, "budget": {"reference": "ipt"}},
                {"name": "mix", "kind": "mixture", "sources": [{"arm": "wrap"}, {"arm": "qa", "weight": 2}]}]
    steps = ["corpus", "tokenizer", "source-ipt", "generate-wrap", "generate-qa", "prepare-ipt", "prepare-wrap",
             "prepare-qa", "source-mix", "prepare-mix", "train-ipt", "train-wrap", "train-qa", "train-mix"]
    lines: list[str] = []
    run_experiment(cfg, only=steps, log=_logger(lines))
    assert sorted(_ran(lines)) == sorted(steps)
    ref = read_json(cfg.root / "prepared" / "ipt" / "manifest.json")["counts"]["total_tokens"]
    for arm in ("ipt", "wrap", "qa", "mix"):
        assert read_json(cfg.root / "train" / arm / "summary.json")["tokens"] == EPOCHS * ref, arm
    mix = read_json(cfg.root / "steps" / "source-mix" / "_SUCCESS")["parts"]
    assert mix["wrap"]["share_tokens"] * 2 == pytest.approx(mix["qa"]["share_tokens"], abs=1)
    assert mix["wrap"]["tokens"] + mix["qa"]["tokens"] >= EPOCHS * ref
    ipt_docs = pq.read_table(cfg.root / "arms" / "ipt" / "part-00000.parquet").to_pylist()
    assert len(ipt_docs) == 25 and ipt_docs[0]["text"].endswith(".") and "\n\nQuestion: " in ipt_docs[0]["text"]
    # the generated arms read data_gen's document shards of the corpus (two shards, none held out)
    wrap_ids = {r["doc_id"] for p in (cfg.root / "arms" / "wrap").glob("shard-*/documents.parquet")
                for r in pq.read_table(p).to_pylist()}
    assert len(wrap_ids) >= 35 and wrap_ids <= {f"d{i}" for i in range(40)}


def test_the_primary_arm_is_judged_against_every_other_arm_seed_by_seed(tmp_path, tokenizer_dir):
    """Head-to-head steps for real (tiny models, a scripted judge behind the OpenAI client): each baseline
    run's outputs against the same seed's FI run, merged into the FI run's results; the baselines' own
    results carry no head-to-head."""
    from fitrain.core.io import mark_done
    from fitrain.pipeline.graph import ExperimentConfig, experiment_steps
    from tests.eval.conftest import save_tiny_llama
    from tests.helpers.eval_clients import DATA
    from tests.helpers.llm_server import Reply, ScriptedLLMServer

    cfg = ExperimentConfig(name="h2h", run_dir=str(tmp_path / "run"), seeds=[0, 1], arms=["fi", "standard", QA])
    e = cfg.eval
    e.generation.max_new_tokens, e.generation.llm.device, e.generation.llm.batch_size = 6, "cpu", 8
    e.pairwise.enabled, e.pairwise.limit = True, 3
    e.pairwise.instructions = str(DATA / "alpaca_eval" / "example_outputs.json")
    steps = experiment_steps(cfg)
    for i, r in enumerate(cfg.runs()):
        save_tiny_llama(cfg.layout.train(r.id).hf, tokenizer_dir, seed=i)
        mark_done(cfg.layout.step_marker_dir(f"train-{r.id}"), {"prepared by": "test fixture"})
    wanted = [s.name for s in steps if s.name.startswith(("eval-", "h2h-"))]
    with ScriptedLLMServer(lambda kind, body: Reply(text="m"), model="judge") as srv:  # AlpacaEval's "m" / "M"
        e.judge.llm.model, e.judge.llm.base_url, e.judge.llm.max_retries = "judge", srv.base_url, 1
        run_experiment(cfg, only=wanted, log=lambda m: None)
    for k in (0, 1):
        res = read_json(cfg.root / "eval" / f"fi.seed{k}" / "results.json")
        for b in ("standard", "qa"):  # a judge that always prefers the first output it is shown
            assert 0 <= res[f"pairwise/{b}/win_rate"] <= 1 and res[f"pairwise/{b}/n"] == 3, (k, b)
            h2h = cfg.root / "eval" / f"fi.seed{k}" / "pairwise" / f"{b}.seed{k}"
            assert (h2h / "results.json").is_file()
            # the eval step's answers were judged, not generated again
            assert not (h2h / "alpaca_eval" / "generations.jsonl").exists()
            assert read_json(h2h / "alpaca_eval" / "model_outputs.json") == read_json(
                cfg.root / "eval" / f"fi.seed{k}" / "alpaca_eval" / "model_outputs.json")
            items = cfg.root / "eval" / f"fi.seed{k}" / "items" / f"pairwise__{b}__win_rate.jsonl"
            assert len(items.read_text().splitlines()) == 1 + 3  # the per-item scores the report compares
        base = read_json(cfg.root / "eval" / f"qa.seed{k}" / "results.json")
        assert not any(key.startswith("pairwise/") for key in base)
        assert (cfg.root / "eval" / f"qa.seed{k}" / "alpaca_eval" / "model_outputs.json").is_file()
