"""Settings out of range, checked when the config is built (each config dataclass's ``__post_init__``,
fitrain.core.config): through the CLI every case exits 2 with one ``error:`` line naming the full key, no
traceback and nothing written; the rest as unit tests on the dataclasses. Also: a rerun of a finished
experiment whose ``run_dir`` is spelled otherwise is the same experiment."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fitrain.core.config import from_dict, load_config, validate_config
from fitrain.core.errors import ConfigError
from tests.helpers.cli import assert_clean_error, run_main

MIX = "{name: mix, kind: mixture, sources: [{arm: standard, weight: %s}], budget: {reference: fi}}"


def experiment(tmp: Path, *extra: str) -> list[str]:
    return ["experiment", "tiny-cpu", f"run_dir={tmp / 'run'}", *extra]


def train(tmp: Path, *extra: str) -> list[str]:
    return ["train", "train/fi-tiny", f"data.path={tmp / 'none'}", f"run_dir={tmp / 'run'}", "wandb.mode=disabled",
            *extra]


def prepare(tmp: Path, *extra: str) -> list[str]:
    return ["prepare", f"input.paths=[{tmp / 'none.jsonl'}]", f"out={tmp / 'run'}", *extra]


def data_gen(tmp: Path, *extra: str) -> list[str]:
    return ["data-gen", "templatize", "data_gen/quickstart", f"run_dir={tmp / 'run'}", *extra]


CLI_CASES = {  # name: (argv, what the one error line must hold)
    # seeds
    "experiment-negative-seed": (lambda t: experiment(t, "seed=-1"), "seed must be in [0, 2**32), got -1"),
    "experiment-seed-past-2**32": (lambda t: experiment(t, "seed=4294967296"), "seed must be in [0, 2**32)"),
    "experiment-negative-seed-in-list": (lambda t: experiment(t, "seeds=[0,-5]"), "seeds[1] must be in [0, 2**32)"),
    "train-negative-seed": (lambda t: train(t, "seed=-3"), "seed must be in [0, 2**32), got -3"),
    "data-gen-seed-past-2**32": (lambda t: data_gen(t, "seed=5000000000"), "seed must be in [0, 2**32)"),
    "prepare-negative-budget-seed": (lambda t: prepare(t, "budget.seed=-1"), "budget.seed must be in [0, 2**32)"),
    # mixture weights and thresholds
    "mixture-weight-nan": (lambda t: experiment(t, f"arms=[fi,standard,{MIX % '.nan'}]"),
                           "arms[2] 'mix': sources[0].weight must be > 0, got nan"),
    "mixture-weight-inf": (lambda t: experiment(t, f"arms=[fi,standard,{MIX % '.inf'}]"),
                           "sources[0].weight must be > 0, got inf"),
    "mixture-weight-negative": (lambda t: experiment(t, f"arms=[fi,standard,{MIX % '-2'}]"),
                                "sources[0].weight must be > 0, got -2"),
    "arm-min-judge-score-nan": (lambda t: experiment(t, "arms=[{name: fi, kind: fi, min_judge_score: .nan},standard]"),
                                "arms[0] 'fi': min_judge_score must be a finite number, got nan"),
    "prepare-min-judge-score-nan": (lambda t: prepare(t, "input.min_judge_score=.nan"),
                                    "input.min_judge_score must be a finite number, got nan"),
    "data-gen-judge-min-score-nan": (lambda t: experiment(t, "data_gen.judge.min_score=.nan"),
                                     "data_gen.judge.min_score must be a finite number"),
    "match-threshold-above-one": (lambda t: data_gen(t, "match.threshold=1.5"), "match.threshold must be in [0, 1]"),
    # sequence lengths, before anything is allocated
    "max-seq-len-a-billion": (lambda t: train(t, "model.max_seq_len=1000000000"),
                              "model.max_seq_len must be in [2, 2**20]"),
    "pack-seq-len-two-billion": (lambda t: prepare(t, "pack.seq_len=2000000000"), "pack.seq_len must be in [2, 2**20]"),
    "experiment-seq-len-millions": (lambda t: experiment(t, "prepare.pack.seq_len=5000000"),
                                    "prepare.pack.seq_len must be in [2, 2**20]"),
    "arm-prepare-setting-out-of-range": (  # before any step runs (was: at the prepare step, after data_gen)
        lambda t: experiment(t, "arms=[{name: fi, kind: fi, prepare: {pack: {seq_len: 0}}},standard]"),
        "arm 'fi': prepare: pack.seq_len must be in [2, 2**20], got 0"),
    # their numeric siblings
    "lr-inf": (lambda t: train(t, "optim.lr=.inf"), "optim.lr must be > 0, got inf"),
    "max-tokens-nan": (lambda t: train(t, "max_tokens=.nan"), "max_tokens must be >= 0, got nan"),
    "grad-accum-negative": (lambda t: train(t, "data.grad_accum=-1"), "data.grad_accum must be >= 0, got -1"),
    "wandb-mode-typo": (lambda t: train(t, "wandb.mode=onlne"), "wandb.mode must be one of"),
    "loss-chunk-zero": (lambda t: train(t, "loss.chunk_tokens=0"), "loss.chunk_tokens must be >= 1"),
    "heldout-shards-negative": (lambda t: experiment(t, "heldout_shards=-1"), "heldout_shards must be >= 0, got -1"),
    "corpus-min-above-max": (lambda t: experiment(t, "corpus.min_chars=5000", "corpus.max_chars=2000"),
                             "corpus.min_chars (5000) must be <= max_chars (2000)"),
    "slot-weight-negative": (lambda t: experiment(t, "data_gen.match.slot_count_target={3: -1}"),
                             "data_gen.match.slot_count_target.3 must be >= 0, got -1"),
    "llm-concurrency-zero": (lambda t: experiment(t, "data_gen.instantiate.llm.max_concurrency=0"),
                             "data_gen.instantiate.llm.max_concurrency must be >= 1"),
    "serve-port-out-of-range": (lambda t: data_gen(t, "serve.port=70000"), "serve.port must be in [0, 65535]"),
    "experiment-report-confidence": (lambda t: experiment(t, "report.confidence=1"), "report.confidence must be in (0, 1)"),
    "eval-max-new-tokens-zero": (lambda t: ["eval", "generation.max_new_tokens=0"],
                                 "generation.max_new_tokens must be >= 1, got 0"),
    "eval-decontamination-threshold": (lambda t: ["eval", "decontamination.threshold=2"],
                                       "decontamination.threshold must be in [0, 1]"),
    "eval-judge-timeout-zero": (lambda t: ["eval", "judge.llm.timeout_s=0"], "judge.llm.timeout_s must be > 0"),
    "eval-lm-eval-negative-seed": (lambda t: ["eval", "lm_eval.seed=-1"], "lm_eval.seed must be in [0, 2**32)"),
    "eval-unknown-benchmark": (lambda t: ["eval", "decontamination.benchmarks=[mixeval,mmlu]"],
                               "decontamination.benchmarks[1] must be one of"),
    # found in review after the merges
    "train-accelerator-typo": (lambda t: train(t, "accelerator=gpux"), "accelerator must be one of"),
    "pairwise-lc-glm-typo": (lambda t: experiment(t, "eval.pairwise.lc.glm=nonsense"), "eval.pairwise.lc.glm must be one of"),
    "pairwise-negative-logprobs": (lambda t: experiment(t, "eval.pairwise.logprobs=-3"), "eval.pairwise.logprobs must be >= 0"),
    "eval-judges-typo": (lambda t: experiment(t, "eval.judges={pairwse: {llm: {model: x}}}"), "not judged benchmarks"),
    "list-item-override": (lambda t: experiment(t, "arms.0=standard"), "a list setting cannot be changed item by item"),
}


@pytest.mark.parametrize("name", list(CLI_CASES))
def test_a_setting_out_of_range_is_one_clean_line(name, tmp_path, capsys):
    build, message = CLI_CASES[name]
    assert_clean_error(run_main(build(tmp_path), capsys), message)
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------- eval report
@pytest.fixture
def exp(tmp_path):
    from tests.eval.test_report import _experiment

    return _experiment(tmp_path).root


@pytest.mark.parametrize("settings, message", [
    (["bootstrap=0"], "bootstrap must be >= 1, got 0"),
    (["bootstrap=-5"], "bootstrap must be >= 1, got -5"),
    (["confidence=0"], "confidence must be in (0, 1), got 0.0"),
    (["confidence=1.5"], "confidence must be in (0, 1), got 1.5"),
    (["confidence=.nan"], "confidence must be in (0, 1), got nan"),
    (["seed=-1"], "seed must be in [0, 2**32), got -1"),
    (["wandb_mode=loud"], "wandb_mode must be one of"),
    (["reference=fii"], "the reference arm 'fii' is not among the arms ['fi', 'standard']; did you mean 'fi'?"),
    (["headline=[mixeval/overal]"], "headline metric 'mixeval/overal' is in no run; did you mean 'mixeval/overall'?"),
])
def test_report_options_are_checked_before_anything_is_written(exp, tmp_path, capsys, settings, message):
    out = tmp_path / "report"
    assert_clean_error(run_main(["eval", "report", exp, "--out", out, *settings], capsys), message)
    assert not out.exists()


def test_the_same_run_directory_twice_is_refused(exp, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(exp.parent)
    out = tmp_path / "report"
    line = assert_clean_error(run_main(["eval", "report", exp, f"{exp.name}/", "--out", out], capsys),
                              "run_dirs name one directory twice")
    assert f"'{exp}'" in line and f"'{exp.name}/'" in line and not out.exists()


def test_a_known_headline_metric_is_accepted(exp, tmp_path, capsys):
    assert run_main(["eval", "report", exp, "--out", tmp_path / "r", "headline=[mixeval/overall]", "bootstrap=50"],
                    capsys).rc == 0


# -------------------------------------------------------------------------------------- the dataclasses
def _cases():
    from data_gen.baselines import GenerateOptions
    from data_gen.config import EncoderConfig, IndexConfig, PoolingConfig, TemplatizeConfig
    from fitrain.core.llm import LLMConfig
    from fitrain.data.corpora import ReaderConfig
    from fitrain.data.tokenizer import TokenizerConfig
    from fitrain.pipeline.slurm import SlurmConfig
    from fitrain.train.config import DataConfig, TrainConfig
    from fitrain.train.model import ModelConfig
    from fitrain.train.optim import OptimConfig
    from fitrain_eval.harness import HarnessConfig
    from fitrain_eval.heldout import HeldoutConfig
    from fitrain_eval.judges.mixeval import MixEvalConfig
    from fitrain_eval.judges.pairwise import PairwiseConfig

    return [
        (lambda: OptimConfig(beta2=1.0), "beta2 must be in [0, 1), got 1.0"),
        (lambda: OptimConfig(weight_decay=float("nan")), "weight_decay must be >= 0, got nan"),
        (lambda: OptimConfig(min_lr_ratio=1.5), "min_lr_ratio must be in [0, 1], got 1.5"),
        (lambda: OptimConfig(warmup_steps=2.5), "warmup_steps must be a whole number, got 2.5"),
        (lambda: OptimConfig(schedule="cosin"), "schedule must be one of"),
        (lambda: ModelConfig(init_std=0), "init_std must be in (0, 1], got 0"),
        (lambda: ModelConfig(max_seq_len=1 << 21), "max_seq_len must be in [2, 2**20]"),
        (lambda: ModelConfig(attention="eager"), "attention eager leaks across packed documents, so it is not offered"),
        (lambda: DataConfig(remainder="keep"), "remainder must be one of ['wrap', 'drop'], got 'keep'"),
        (lambda: TrainConfig(budget_from_epochs=float("inf")), "budget_from_epochs must be > 0, got inf"),
        (lambda: TrainConfig(seed=True), "seed must be a number, got True"),
        (lambda: TrainConfig(precision="fp8"), "precision must be one of"),
        (lambda: TokenizerConfig(vocab_size=100), "vocab_size must be in [259, 2**31), got 100"),
        (lambda: LLMConfig(backend="ollama"), "backend must be one of ['openai', 'transformers', 'extractive']"),
        (lambda: LLMConfig(temperature=-0.1), "temperature must be >= 0, got -0.1"),
        (lambda: LLMConfig(max_retries=-1), "max_retries must be >= 0"),
        (lambda: EncoderConfig(dtype="int8"), "dtype must be one of"),
        (lambda: PoolingConfig(alpha=float("nan")), "alpha must be a finite number, got nan"),
        (lambda: IndexConfig(kind="annoy"), "kind must be one of"),
        (lambda: TemplatizeConfig(source="web"), "source must be one of ['queries', 'bank']"),
        (lambda: GenerateOptions(min_rephrase_ratio=2), "min_rephrase_ratio must be in [0, 1], got 2"),
        (lambda: GenerateOptions(max_pairs=0), "max_pairs must be >= 1"),
        (lambda: ReaderConfig(text_column=""), "text_column is empty"),
        (lambda: SlurmConfig(nodes=0), "nodes must be >= 1, got 0"),
        (lambda: SlurmConfig(mem="lots"), "mem 'lots' is not a Slurm size"),
        (lambda: SlurmConfig(signal="KILL"), "signal must be one of"),
        (lambda: HarnessConfig(formats=["chat"]), "formats[0] must be one of ['plain', 'instruction'], got 'chat'"),
        (lambda: HarnessConfig(limit=-1), "limit must be >= 0"),
        (lambda: HeldoutConfig(batch_size=0), "batch_size must be >= 1"),
        (lambda: MixEvalConfig(splits=["mixeval_easy"]), "splits[0] must be one of"),
        (lambda: PairwiseConfig(prompts="mine"), "prompts must be one of ['official', 'paraphrased']"),
    ]


@pytest.mark.parametrize("i", range(31))
def test_each_dataclass_checks_itself_on_construction(i):
    cases = _cases()
    assert len(cases) == 31
    build, message = cases[i]
    with pytest.raises(ConfigError) as e:
        build()
    assert str(e.value).startswith(message.split(" must")[0].split(" is")[0]) and message in str(e.value)


def test_nested_and_listed_errors_carry_their_full_path():
    from fitrain.pipeline.arms.mixture import MixtureSpec
    from fitrain.pipeline.graph import ExperimentConfig
    from fitrain.train.config import TrainConfig

    with pytest.raises(ConfigError, match=r"^sources\[1\]\.reader\.format must be one of"):
        from_dict(MixtureSpec, {"name": "m", "kind": "mixture", "sources": [{"arm": "a"}, {"paths": ["x"],
                                                                                        "reader": {"format": "csv"}}]})
    with pytest.raises(ConfigError, match=r"^eval\.generation\.llm\.batch_size must be >= 1, got 0$"):
        load_config(ExperimentConfig, None, ["eval.generation.llm.batch_size=0"])
    cfg = load_config(TrainConfig)
    with pytest.raises(ConfigError, match=r"^eps must be > 0, got 0$"):  # built in Python: the key within its class
        dataclasses.replace(cfg.optim, eps=0)
    cfg.model.norm_eps = -1.0   # assigned after construction: validate_config re-runs the checks, full key
    with pytest.raises(ConfigError, match=r"^model\.norm_eps must be > 0, got -1\.0$"):
        validate_config(cfg)


def test_defaults_and_shipped_values_pass():
    from fitrain.pipeline.graph import ExperimentConfig
    from fitrain_eval.report import ReportConfig

    cfg = load_config(ExperimentConfig, None, ["seeds=[0,4294967295]", "report.confidence=0.99", "report.bootstrap=1",
                                               "train.model.max_seq_len=1048576", "data_gen.match.threshold=0"])
    assert cfg.seeds == [0, 2**32 - 1] and cfg.train.model.max_seq_len == 2**20
    assert ReportConfig(run_dirs=["a", "b"]).run_dirs == ["a", "b"]


# ----------------------------------------------------------------------------- a finished experiment rerun
def _runners(calls: list):
    def run(cfg, step, shard):
        calls.append(step.name)
        return {"ok": True}
    return {k: run for k in ("corpus", "tokenizer", "data_gen", "source", "generate", "pairs", "prepare", "train",
                             "eval", "h2h", "report")}


def test_a_rerun_with_run_dir_spelled_otherwise_is_the_same_experiment(tmp_path, monkeypatch):
    from fitrain.core.errors import FitrainError
    from fitrain.pipeline.run import load_experiment, run_experiment

    monkeypatch.chdir(tmp_path)
    calls: list = []
    first = load_experiment("tiny-cpu", [f"run_dir={tmp_path / 'run'}"])
    run_experiment(first, runners=_runners(calls), only=["corpus"], log=lambda m: None)
    frozen = first.layout.config.read_text()
    for spelled in (f"{tmp_path / 'run'}/", "run", "./run/", f"{tmp_path}/./run"):
        calls.clear()
        run_experiment(load_experiment("tiny-cpu", [f"run_dir={spelled}"]), runners=_runners(calls), only=["corpus"],
                       log=lambda m: None)
        assert calls == []  # found done, not refused as "a different config"
    assert first.layout.config.read_text() == frozen
    with pytest.raises(FitrainError, match="holds a different config"):  # a real change is still refused
        run_experiment(load_experiment("tiny-cpu", ["run_dir=run/", "seed=7"]), runners=_runners(calls),
                       log=lambda m: None)


def test_a_block_arms_own_prepare_settings_are_checked_when_the_experiment_loads(tmp_path):
    from fitrain.core.errors import FitrainError
    from fitrain.pipeline.run import load_experiment

    block = "[{name: a, arms: [fi, {name: s, kind: documents, prepare: {bogus_key: 1}}]}]"
    with pytest.raises(FitrainError, match="bogus_key"):
        load_experiment("tiny-cpu", [f"run_dir={tmp_path / 'run'}", f"blocks={block}"])
