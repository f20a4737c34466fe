"""A kind of arm and a benchmark defined here, each plugged in with one registration: the experiment plans
them (dry run, arm table, by-hand commands), runs the toy arm's own data step and its prepare for real,
evaluates a model with the toy benchmark through ``fitrain eval``'s entry point, and the report shows both."""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field

import pytest

from fitrain.core.errors import FitrainError
from fitrain.core.io import mark_done, read_json
from fitrain.pipeline.arms import ArmKind, ArmSpec, register, unregister
from fitrain.pipeline.experiment import ExperimentStep
from fitrain.pipeline.graph import ExperimentConfig, experiment_steps
from fitrain.pipeline.run import run_experiment
from fitrain_eval.benchmarks import Benchmark
from fitrain_eval.benchmarks import register as register_benchmark
from fitrain_eval.benchmarks import unregister as unregister_benchmark

WORDS = "the cat sat on the mat while a dog slept by the warm fire and the rain fell outside".split()


# ------------------------------------------------------------------------------------------- a toy arm kind
@dataclass
class RepeatSpec(ArmSpec):
    words: int = 5          # words per document
    documents: int = 40


def write_step(cfg, step, shard) -> dict:
    """The toy arm's data: documents of the first `words` words, rotated, as normalised document files."""
    from fitrain.data.corpora import write_documents
    from fitrain.data.records import Document

    a = cfg.arm_set()[step.arm]
    docs = [Document(f"r{i}", " ".join((WORDS[i % len(WORDS):] + WORDS)[:a.words])) for i in range(a.documents)]
    return {"documents": write_documents(cfg.layout.arm_data(a.name) / "part-00000.parquet", docs)}


class RepeatKind(ArmKind):
    name, settings, label = "repeat", RepeatSpec, "rotated toy sentences"

    def check(self, spec, arms) -> None:
        if spec.words < 1:
            raise FitrainError(f"arm '{spec.name}': words must be >= 1, got {spec.words}")

    def steps(self, cfg, arms, spec) -> list[ExperimentStep]:
        return [ExperimentStep(f"write-{spec.name}", ["corpus"], arm=spec.name, role="write", runner=write_step,
                               describe=f"{spec.documents} documents of {spec.words} words")]

    def describe(self, arms, spec) -> str:
        return f"{spec.documents} x {spec.words} words"


# ------------------------------------------------------------------------------------------ a toy benchmark
@dataclass
class VocabSettings:
    enabled: bool = False
    sentences: list[str] = field(default_factory=list)


class VocabBenchmark(Benchmark):
    """Tokens per word of the model's tokenizer on a few sentences (lower is better), one item each."""

    name, settings, prefixes, percent = "vocab", VocabSettings, ("vocab",), False
    labels = {"vocab/tokens_per_word": "Vocab tokens per word"}
    headline = ("vocab/tokens_per_word",)
    sets = {"vocab_sentences": "vocab"}

    def run(self, ctx) -> dict:
        from transformers import AutoTokenizer

        from fitrain_eval.items import ItemScores

        tok = AutoTokenizer.from_pretrained(ctx.model_dir)
        s = self.config(ctx.cfg).sentences
        scores = {str(i): len(tok(t, add_special_tokens=False)["input_ids"]) / len(t.split()) for i, t in enumerate(s)}
        ItemScores("vocab/tokens_per_word", scores, higher_is_better=False).save(ctx.out)
        return {"vocab/tokens_per_word": sum(scores.values()) / len(scores), "vocab/n": len(scores)}

    def load_set(self, cfg, name, rejects):
        return [(str(i), t) for i, t in enumerate(self.config(cfg).sentences)]


@pytest.fixture
def plugged():
    kind, bench = register(RepeatKind()), register_benchmark(VocabBenchmark())
    try:
        yield kind, bench
    finally:
        unregister(kind.name)
        unregister_benchmark(bench.name)


def _cfg(tmp_path, **arm) -> ExperimentConfig:
    cfg = ExperimentConfig(name="plug", run_dir=str(tmp_path / "run"),
                           arms=[{"name": "rep", "kind": "repeat", "words": 6, **arm}])
    cfg.eval.plugins = {"vocab": {"enabled": True, "sentences": ["the cat sat", "a dog slept by the fire"]}}
    return cfg


def test_an_unregistered_kind_is_a_one_line_error(tmp_path):
    with pytest.raises(FitrainError, match="arm 'rep': unknown kind 'repeat'; one of fi, documents, corpus"):
        _cfg(tmp_path)


def test_a_plugged_in_kind_validates_and_plans_its_steps(tmp_path, plugged):
    with pytest.raises(FitrainError, match="arm 'rep': words must be >= 1"):
        _cfg(tmp_path, words=0)
    with pytest.raises(FitrainError, match="arm 'rep': paths: not a setting of a repeat arm .it takes documents, words"):
        _cfg(tmp_path, paths=["x"])
    steps = {s.name: s for s in experiment_steps(_cfg(tmp_path))}
    assert list(steps) == ["corpus", "tokenizer", "write-rep", "prepare-rep", "train-rep", "eval-rep", "report"]
    assert steps["write-rep"].runner is write_step and set(steps["prepare-rep"].deps) == {"tokenizer", "write-rep"}
    lines: list[str] = []
    run_experiment(_cfg(tmp_path), dry_run=True, log=lines.append)
    out = "\n".join(lines)
    assert "rep            repeat     40 x 6 words; trains its own tokens" in out
    assert "fitrain experiment" in out and "--step write-rep" in out and "fitrain prepare" in out


def test_the_experiment_runs_the_plugged_in_arm_and_benchmark_into_the_report(tmp_path, plugged, tokenizer_dir):
    from tests.eval.conftest import save_tiny_llama

    cfg = _cfg(tmp_path)
    shutil.copytree(tokenizer_dir, cfg.layout.tokenizer)
    for done in ("corpus", "tokenizer"):  # (the built-in steps are covered elsewhere; the tokenizer is a fixture's)
        mark_done(cfg.layout.step_marker_dir(done), {"deps": [s.deps for s in experiment_steps(cfg)
                                                              if s.name == done][0]})
    run_experiment(cfg, only=["write-rep", "prepare-rep"], log=lambda m: None)
    assert read_json(cfg.layout.step_marker_dir("write-rep") / "_SUCCESS")["documents"] == 40
    manifest = json.loads((cfg.layout.prepared("rep") / "manifest.json").read_text())
    assert manifest["counts"]["documents"] == 40
    save_tiny_llama(cfg.layout.train("rep").hf, tokenizer_dir)  # a trained model's export
    mark_done(cfg.layout.step_marker_dir("train-rep"), {"deps": ["prepare-rep"]})
    run_experiment(cfg, only=["eval-rep", "report"], log=lambda m: None)
    res = read_json(cfg.layout.eval("rep") / "results.json")
    assert res["vocab/n"] == 2 and res["vocab/tokens_per_word"] > 0
    report = (cfg.layout.report / "report.md").read_text()
    assert "Vocab tokens per word" in report  # the benchmark's label, in the headline
    assert "| rep | repeat: rotated toy sentences | 40 x 6 words | its own tokens |" in report
