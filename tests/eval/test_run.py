import hashlib
import json
import math

import pytest

from fitrain.core.accounting import Rejects
from fitrain.cli import main
from fitrain.core.errors import FitrainError
from fitrain.core.layout import RunLayout
from fitrain.core.llm import LLMConfig
from fitrain_eval.judges import official
from fitrain_eval.judges.mixeval import MixEvalConfig
from fitrain_eval.run import EvalConfig, evaluate, locate
from tests.eval.conftest import save_tiny_llama
from tests.helpers.eval_clients import DATA
from tests.helpers.llm_server import Reply, ScriptedLLMServer


def test_missing_or_wrong_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["eval", "eval/local", f"model={tmp_path / 'nope'}"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    (tmp_path / "junk").mkdir()
    assert main(["eval", "eval/local", f"model={tmp_path / 'junk'}"]) == 2
    assert "neither an exported HF model" in capsys.readouterr().err
    with pytest.raises(FitrainError, match="nothing to evaluate"):
        evaluate(EvalConfig(model=str(tmp_path / "junk")))
    assert main(["eval", "report"]) == 2 and "usage: fitrain eval report" in capsys.readouterr().err


def test_output_locations_follow_the_run_layout(tmp_path):
    lay = RunLayout.of(tmp_path / "exp")
    (lay.train("fi").hf).mkdir(parents=True)
    (lay.train("fi").hf / "config.json").write_text("{}")
    t = locate(EvalConfig(model=str(lay.train("fi").root)))
    assert (t.hf_dir, t.arm, t.out) == (lay.train("fi").hf.resolve(), "fi", lay.eval("fi").resolve())
    ck = lay.train("standard").checkpoints / "step-00000100"
    ck.mkdir(parents=True)
    (ck / "meta.pt").write_text("")
    t = locate(EvalConfig(model=str(ck)))
    assert t.hf_dir is None and t.checkpoint == ck.resolve() and t.arm == "standard"
    assert t.out == (lay.eval("standard") / "checkpoints" / "step-00000100").resolve()


def test_unreachable_judge_fails_before_generating(tiny_model_dir, tmp_path):
    cfg = EvalConfig(model=str(tiny_model_dir), out=str(tmp_path / "o"))
    cfg.mixeval.enabled, cfg.mixeval.root = True, str(DATA / "mixeval" / "mixeval-2024-08-11")
    cfg.judge.llm.model = "judge"
    cfg.judge.llm.base_url = "http://127.0.0.1:9/v1"
    with pytest.raises(FitrainError, match="not reachable at http://127.0.0.1:9/v1"):
        evaluate(cfg)


def _no_harness(monkeypatch):
    """lm-eval replaced by a recorder: the tests below are about what runs before and after it."""
    import fitrain_eval.harness as harness

    calls = []
    monkeypatch.setattr(harness, "run_harness", lambda *a, **k: calls.append(a) or {"lm_eval/t/acc": 0.25})
    return calls


def test_judge_is_checked_before_lm_eval_runs(tiny_model_dir, tmp_path, monkeypatch):
    """A judge that is not reachable, or a server that does not serve the judge model, fails at once:
    lm-eval never runs and nothing is written."""
    calls = _no_harness(monkeypatch)
    cfg = EvalConfig(model=str(tiny_model_dir), out=str(tmp_path / "o"))
    cfg.lm_eval.tasks = ["fitrain_mixeval_mc"]
    cfg.mtbench101.enabled, cfg.mtbench101.path = True, str(DATA / "mt_bench_101" / "mtbench101.jsonl")
    cfg.judge.llm.model = "judge"
    cfg.judge.llm.base_url = "http://127.0.0.1:9/v1"
    with pytest.raises(FitrainError, match="not reachable at http://127.0.0.1:9/v1"):
        evaluate(cfg)
    with ScriptedLLMServer(lambda kind, body: Reply(text="x"), model="another-model") as srv:
        cfg.judge.llm.base_url = srv.base_url
        with pytest.raises(FitrainError, match="not the one asked for: it serves \\['another-model'\\], not 'judge'"):
            evaluate(cfg)
    assert calls == [] and not (tmp_path / "o" / "results.json").exists()


def test_a_later_failure_keeps_the_earlier_results(tiny_model_dir, tmp_path, monkeypatch):
    """results.json is written after each benchmark: a held-out loss that fails after lm-eval keeps lm-eval's
    metrics (merged over what an earlier job wrote there)."""
    import fitrain_eval.heldout as heldout

    calls = _no_harness(monkeypatch)

    def broken(*a, **k):
        raise FitrainError("held-out data gone")

    monkeypatch.setattr(heldout, "evaluate_heldout", broken)
    out = tmp_path / "o"
    out.mkdir()
    (out / "results.json").write_text(json.dumps({"mixeval/overall": 0.5}))
    cfg = EvalConfig(model=str(tiny_model_dir), out=str(out))
    cfg.lm_eval.tasks = ["fitrain_mixeval_mc"]
    cfg.heldout.enabled = True
    with pytest.raises(FitrainError, match="held-out data gone"):
        evaluate(cfg)
    assert len(calls) == 1
    assert json.loads((out / "results.json").read_text()) == {"mixeval/overall": 0.5, "lm_eval/t/acc": 0.25}


@pytest.mark.parametrize("setting, value, name", [
    ("mtbench101.path", "nowhere/mtbench101.jsonl", "MT-Bench-101"),
    ("mixeval.root", "nowhere/mixeval-2024-08-11", "MixEval"),
    ("pairwise.instructions", "nowhere/example_outputs.json", "AlpacaEval"),
])
def test_missing_benchmark_data_is_a_clear_error_before_any_model_runs(tiny_model_dir, tmp_path, monkeypatch,
                                                                       capsys, setting, value, name):
    calls = _no_harness(monkeypatch)
    bench = setting.split(".")[0]
    args = ["eval", "eval/local", f"model={tiny_model_dir}", f"out={tmp_path / 'o'}", f"{bench}.enabled=true",
            f"{setting}={value}", "lm_eval.tasks=[fitrain_mixeval_mc]", "judge.llm.base_url=http://127.0.0.1:9/v1"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"fitrain eval: error: {name} data not found: {value} ")
    assert f"set {setting} (eval.{setting} in an experiment recipe)" in err[0] and "get it from github.com/" in err[0]
    assert calls == [] and not (tmp_path / "o").exists()


def _h(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def _official_judge(kind, body):
    """A scripted judge speaking each benchmark's official reply format; its verdicts depend on the answer."""
    msgs = body["messages"]
    system, user = msgs[0]["content"], msgs[-1]["content"]
    if system.startswith("In this task, I want you to act as a judge."):
        answer = user.rsplit("Model's Answer: ", 1)[1]
        return Reply(text=f"Reasoning. The correctness score: [[{_h(answer) % 11 / 10}]].")
    if system.startswith("In this task, I want you to act as an option extractor."):
        answer = user.rsplit("Model's Answer: ", 1)[1]
        return Reply(text=f"The option chosen by the model: [[{'ABCD'[_h(answer) % 4]}]].")
    if system.startswith("Please act as an impartial judge"):
        return Reply(text=f"Explanation. Rating: [[{1 + _h(user) % 10}]]")
    if system.startswith("You are a highly efficient assistant"):
        p = 0.05 + 0.9 * (_h(user) % 100) / 100
        return Reply(text="m" if p > 0.5 else "M", top_logprobs={"m": math.log(p), "M": math.log(1 - p)})
    return Reply(status=400)


def _subset(tmp_path, n=3):
    """The first n items of each MixEval and MixEval-Hard file."""
    root = tmp_path / "mix"
    for split in ("mixeval", "mixeval-hard"):
        (root / split).mkdir(parents=True)
        for name in ("free-form", "multiple-choice"):
            d = json.loads((DATA / "mixeval" / "mixeval-2024-08-11" / split / f"{name}.json").read_text())
            (root / split / f"{name}.json").write_text(json.dumps({k: d[k] for k in list(d)[:n]}))
    return root


def test_an_arm_that_only_emits_newlines_is_judged_not_aborted(tiny_model_dir, tmp_path):
    """The standard arm's tiny model writes only "\\n": every benchmark scores it (empty answers as the
    lowest score, head-to-head judged), counts the empty outputs, and writes valid results."""
    root = _subset(tmp_path, 2)
    with ScriptedLLMServer(lambda kind, body: Reply(text="\n") if "messages" not in body or
                           body["messages"][0]["role"] == "user" else _official_judge(kind, body)) as srv:
        cfg = EvalConfig(model=str(tiny_model_dir), out=str(tmp_path / "o"), arm="standard")
        cfg.generation.llm = LLMConfig(backend="openai", model="scripted", base_url=srv.base_url, max_retries=0)
        cfg.generation.prompt_format = "raw"
        cfg.judge.llm = LLMConfig(backend="openai", model="scripted", base_url=srv.base_url, max_retries=0)
        cfg.mixeval = MixEvalConfig(enabled=True, root=str(root), splits=["mixeval"])
        cfg.mtbench101.enabled, cfg.mtbench101.path = True, str(DATA / "mt_bench_101" / "mtbench101.jsonl")
        cfg.mtbench101.limit_per_task, cfg.mtbench101.tasks = 1, ["GR"]
        cfg.pairwise.enabled, cfg.pairwise.limit = True, 3
        cfg.pairwise.instructions = cfg.pairwise.baseline_outputs = str(DATA / "alpaca_eval" / "example_outputs.json")
        res = evaluate(cfg)
    assert res["mixeval/overall"] == 0.0 and res["mixeval/n_failed"] == 0
    assert res["mtbench101/overall"] == 1.0
    assert res["pairwise/example/n"] == 3 and 0 <= res["pairwise/example/win_rate"] <= 1
    rejects = json.loads((tmp_path / "o" / "rejects.json").read_text())["by_reason"]
    assert rejects["mixeval_generation_empty"] == 4 and rejects["alpaca_generation_empty"] == 3
    assert rejects["mtbench101_generation_empty"] == 3
    json.loads((tmp_path / "o" / "results.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))


def test_results_json_never_holds_nan(tiny_model_dir, tmp_path, monkeypatch):
    """A metric that is not a finite number is left out and counted; results.json stays valid JSON."""
    import fitrain_eval.heldout as heldout

    monkeypatch.setattr(heldout, "evaluate_heldout",
                        lambda *a, **k: {"heldout/answer_loss": float("nan"), "heldout/n_items": 3})
    out = tmp_path / "o"
    cfg = EvalConfig(model=str(tiny_model_dir), out=str(out))
    cfg.heldout.enabled = True
    assert evaluate(cfg) == {"heldout/n_items": 3}
    assert json.loads((out / "results.json").read_text()) == {"heldout/n_items": 3}
    assert json.loads((out / "rejects.json").read_text())["by_reason"] == {"metric_not_finite": 1}


@pytest.mark.slow
def test_judged_benchmarks_for_both_quickstart_sized_arms_and_the_report(tmp_path, tokenizer_dir):
    """Both arms at the quickstart's model size (dim 128, 4 layers, 256 positions): MixEval, MixEval-Hard,
    MT-Bench-101 and the head-to-head with the official prompts against a scripted judge, then the report
    with every benchmark and its intervals."""
    lay = RunLayout.of(tmp_path / "exp")
    root = _subset(tmp_path, 3)
    for seed, arm in enumerate(("standard", "fi")):
        save_tiny_llama(lay.train(arm).hf, tokenizer_dir, dim=128, layers=4, ffn=384, max_positions=256, seed=seed)
        lay.train(arm).logs.mkdir(parents=True)
        (lay.train(arm).logs / "metrics.csv").write_text("step,tokens,supervised_tokens,loss,lr,val_loss\n" + "".join(
            f"{s},{s * 512},{s * 200},{7 - s * (0.1 + 0.05 * seed)},0.001,{7.5 - s * 0.1 * (1 + seed)}\n"
            for s in range(1, 11)))
    with ScriptedLLMServer(_official_judge, model="judge") as srv:
        recipe = tmp_path / "e2e.yaml"
        recipe.write_text(f"""
generation: {{max_new_tokens: 8, llm: {{device: cpu, batch_size: 16}}}}
judge: {{llm: {{model: judge, base_url: "{srv.base_url}", max_retries: 1, backoff_s: 0.01}}}}
mixeval: {{enabled: true, root: "{root}"}}
mtbench101: {{enabled: true, path: "{DATA / 'mt_bench_101' / 'mtbench101.jsonl'}", limit_per_task: 1}}
pairwise: {{enabled: true, instructions: "{DATA / 'alpaca_eval' / 'example_outputs.json'}", limit: 50}}
""")
        assert main(["eval", str(recipe), f"model={lay.train('standard').root}"]) == 0
        assert main(["eval", str(recipe), f"model={lay.train('fi').root}",
                     f"pairwise.baselines=[{lay.eval('standard')}]"]) == 0
    res = json.loads((lay.eval("fi") / "results.json").read_text())
    gens = [json.loads(x) for x in (lay.eval("fi") / "mixeval" / "generations.jsonl").read_text().splitlines()[1:]]
    assert gens[0]["prompt"].startswith("Instruction: Question: ") and gens[0]["prompt"].endswith("\n\nAnswer: ")
    assert res["mtbench101/n_tasks"] == 13 and res["pairwise/standard/n"] == 50
    assert 0 <= res["pairwise/standard/lc_win_rate"] <= 1
    rejects = json.loads((lay.eval("fi") / "rejects.json").read_text())["by_reason"]
    assert rejects.get("mtbench101_generation_prompt_turns_dropped", 0) + rejects.get(
        "mtbench101_generation_prompt_cut", 0) > 0  # 256 positions: long dialogues shortened, and counted
    judged = [json.loads(x) for x in (lay.eval("fi") / "mtbench101" / "judgments.jsonl").read_text().splitlines()]
    assert {x.get("prompt_version") for x in judged} - {None} == {official.MTBENCH101_VERSION}

    assert main(["eval", "report", str(lay.root), "--out", str(tmp_path / "report")]) == 0
    md = (tmp_path / "report" / "report.md").read_text()
    head = next(line for line in md.splitlines() if line.startswith("| arm |"))
    assert head == "| arm | MixEval (%) | MixEval-Hard (%) | MT-Bench-101 | fi's win rate vs this arm (%) |"
    lines = md.splitlines()
    std = next(line for line in lines[lines.index(head):] if line.startswith("| standard |")).split(" | ")
    assert all("[" in c and "<br>Δ" in c and "p" in c for c in std[1:4]), std
    assert "[" in std[4] and "LC " in std[4]
    comp = json.loads((tmp_path / "report" / "comparisons.json").read_text())
    assert {m["metric"] for m in comp["metrics"]} >= {"mixeval/overall", "mixeval_hard/overall", "mtbench101/overall"}
    assert comp["head_to_head"][0]["estimate"]["lo"] <= comp["head_to_head"][0]["estimate"]["hi"]
    for png in ("scores.png", "differences.png", "head_to_head.png", "loss_vs_tokens.png"):
        assert (tmp_path / "report" / png).stat().st_size > 10_000


@pytest.mark.slow
def test_fitrain_eval_on_a_saved_training_checkpoint(tmp_path, pairs_shards):
    """The per-checkpoint job: a real trainer checkpoint is exported, then evaluated, into its own folder."""
    from fitrain.train.config import TrainConfig
    from fitrain.train.trainer import train

    lay = RunLayout.of(tmp_path / "exp")
    cfg = TrainConfig(run_dir=str(lay.train("fi").root), max_steps=2, checkpoint_every=1, export_hf=False,
                      progress_bar=False, log_every=1)
    cfg.data.path = str(pairs_shards)
    cfg.data.micro_batch_size, cfg.data.grad_accum = 2, 1
    cfg.wandb.mode = "disabled"
    train(cfg)
    ckpts = sorted(lay.train("fi").checkpoints.glob("step-*"))
    assert ckpts, "the trainer wrote no checkpoint"
    rc = main(["eval", "eval/local", f"model={ckpts[-1]}", "lm_eval.limit=3", "lm_eval.formats=[plain]",
               "lm_eval.tasks=[fitrain_mixeval_hard_mc]", "lm_eval.device=cpu"])
    assert rc == 0
    out = lay.eval("fi") / "checkpoints" / ckpts[-1].stem
    res = json.loads((out / "results.json").read_text())
    assert 0 <= res["lm_eval/fitrain_mixeval_hard_mc/acc"] <= 1
    assert (out / "hf_export" / ckpts[-1].stem / "config.json").is_file()


def test_local_transformers_judge_runs_and_counts_unparsable_replies(tiny_model_dir, tmp_path):
    """A small setup's judge: a local model directory. A random tiny model never writes [[score]]: every
    reply is retried, then counted, never scored."""
    from fitrain.core.llm import LLMConfig, Request
    from fitrain_eval.judges.common import Judge, JudgeConfig
    from fitrain_eval.judges.mtbench101 import parse_score

    judge = Judge(JudgeConfig(llm=LLMConfig(backend="transformers", model=str(tiny_model_dir), max_new_tokens=4,
                                            device="cpu"), max_parse_retries=1), cache_dir=tmp_path)
    r = Rejects()
    out = judge.judge([Request(messages=[{"role": "user", "content": f"Rate {i}"}], meta={"id": i}) for i in range(2)],
                      parse_score, r, "v-test", what="mt_judge")
    assert [o.value for o in out] == [None, None] and r.counts == {"mt_judge_unparsable": 2}
    assert out[0].raw == {"judge_model": str(tiny_model_dir), "judge_backend": "transformers",
                          "prompt_version": "v-test", "decoding": {"temperature": 0.0, "max_new_tokens": 4}}
    assert (tmp_path / "judge_cache.jsonl").is_file()


def test_add_bos_format_needs_a_bos_token(tiny_model_dir):
    from fitrain.data.formatting import FormatConfig
    from fitrain.core.llm import LLMConfig
    from fitrain_eval.generate import GenerationConfig, Generator

    cfg = GenerationConfig(llm=LLMConfig(backend="transformers", model=str(tiny_model_dir), device="cpu"),
                           format=FormatConfig(add_bos=True))
    with pytest.raises(FitrainError, match="has no bos_token"):
        Generator(cfg)
