import json

import pytest

from fitrain.core.accounting import Rejects
from fitrain.cli import main
from fitrain.core.errors import FitrainError
from fitrain.core.layout import RunLayout
from fitrain_eval.run import EvalConfig, evaluate, locate
from tests.eval.conftest import save_tiny_llama
from tests.helpers.eval_clients import DATA, generator_for
from tests.helpers.llm_server import Reply, ScriptedLLMServer, last_user_message


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
    cfg.mixeval.enabled = True
    cfg.judge.llm.model = "judge"
    cfg.judge.llm.base_url = "http://127.0.0.1:9/v1"
    with pytest.raises(FitrainError, match="not reachable at http://127.0.0.1:9/v1"):
        evaluate(cfg)


def test_empty_generations_are_a_clear_error():
    with ScriptedLLMServer(lambda kind, body: Reply(text="  ")) as srv:
        g = generator_for(srv)
        with pytest.raises(FitrainError, match="all 3 generations from 'scripted' are empty"):
            g.generate([(str(i), [{"role": "user", "content": f"q{i}"}]) for i in range(3)], Rejects())


def _judge(kind, body):
    msg = last_user_message(body)
    if msg.startswith("You grade"):
        return Reply(text="[[0.5]]")
    if msg.startswith("You read a model's answer"):
        return Reply(text="[[A]]")
    if msg.startswith("You evaluate one assistant turn"):
        return Reply(text="[[5]]")
    if msg.startswith("You compare two"):
        return Reply(text="[[A]]")  # a position-biased judge: every instruction is a tie overall
    return Reply(status=400)


@pytest.mark.slow
def test_fitrain_eval_end_to_end_two_arms_and_report(tmp_path, tokenizer_dir, capsys):
    lay = RunLayout.of(tmp_path / "exp")
    mix = tmp_path / "mix" / "mixeval"
    mix.mkdir(parents=True)
    for name in ("free-form", "multiple-choice"):
        d = json.loads((DATA / "mixeval" / "mixeval-2024-08-11" / "mixeval-hard" / f"{name}.json").read_text())
        (mix / f"{name}.json").write_text(json.dumps({k: d[k] for k in list(d)[:3]}))
    for seed, arm in enumerate(("standard", "fi")):
        save_tiny_llama(lay.train(arm).hf, tokenizer_dir, seed=seed)
        lay.train(arm).logs.mkdir(parents=True)
        (lay.train(arm).logs / "metrics.csv").write_text("step,tokens,supervised_tokens,loss,lr\n" + "".join(
            f"{s},{s * 512},{s * 200},{7 - s * (0.1 + 0.05 * seed)},0.001\n" for s in range(1, 11)))
    with ScriptedLLMServer(_judge, model="judge") as srv:
        recipe = tmp_path / "e2e.yaml"
        recipe.write_text(f"""
generation: {{max_new_tokens: 6, llm: {{device: cpu, batch_size: 8}}}}
judge: {{llm: {{model: judge, base_url: "{srv.base_url}", max_retries: 1, backoff_s: 0.01}}}}
lm_eval: {{tasks: [fitrain_mixeval_mc], formats: [plain, instruction], limit: 4, bootstrap_iters: 0, device: cpu}}
mixeval: {{enabled: true, root: "{tmp_path / 'mix'}", splits: [mixeval]}}
mtbench101: {{enabled: true, path: "{DATA / 'mt_bench_101' / 'mtbench101.jsonl'}", limit_per_task: 1, tasks: [GR]}}
pairwise: {{enabled: true, instructions: "{DATA / 'alpaca_eval' / 'example_outputs.json'}", limit: 3}}
""")
        assert main(["eval", str(recipe), f"model={lay.train('standard').root}"]) == 0
        assert main(["eval", str(recipe), f"model={lay.train('fi').root}",
                     f"pairwise.baseline_outputs={lay.eval('standard')}"]) == 0
    res = json.loads((lay.eval("fi") / "results.json").read_text())
    gens = [json.loads(x) for x in (lay.eval("fi") / "mixeval" / "generations.jsonl").read_text().splitlines()[1:]]
    assert gens[0]["prompt"].startswith("Instruction: ") and gens[0]["prompt"].endswith("\n\nAnswer: ")
    ff = [0.5 if g["output"] else 0.0 for g in gens if g["id"].endswith(":free_form")]
    assert res["mixeval/free_form"] == pytest.approx(sum(ff) / 3)
    assert 0 <= res["lm_eval/fitrain_mixeval_mc/acc"] <= 1 and 0 <= res["lm_eval_instruction/fitrain_mixeval_mc/acc"] <= 1
    assert res["mtbench101/task/GR"] in (5.0, 1.0) and res["mtbench101/n_tasks"] == 1
    assert res["pairwise/standard/win_rate"] == 0.5 and res["pairwise/standard/n"] == 3
    assert res["pairwise/standard/inconsistent"] == 3 and res["pairwise/standard/win_rate_se"] == 0.0
    assert "pairwise/standard/win_rate" not in json.loads((lay.eval("standard") / "results.json").read_text())
    assert (lay.eval("fi") / "lm_eval" / "plain.json").is_file() and (lay.eval("fi") / "eval_config.yaml").is_file()

    assert main(["eval", "report", str(lay.root), "--out", str(tmp_path / "report")]) == 0
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| fi | standard | 50.0% |" in md and "mixeval/overall" in md
    for png in ("loss_vs_tokens.png", "eval_bars.png", "head_to_head.png"):
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
