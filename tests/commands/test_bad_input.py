"""Bad configs and bad input data through the CLI (``fitrain.cli.main``): every case exits 2 with one
``error:`` line naming the thing, prints no traceback and leaves nothing a later command would trust (no
manifest, no run directory, no tokenizer). Inputs are built in tmp dirs; shared fixtures from conftest."""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from tests.helpers.cli import assert_clean_error, pair, run_main, write_jsonl


@dataclass
class Ctx:
    tmp: Path
    tok: Path
    shards: Path
    dolly: Path

    @property
    def out(self) -> Path:
        return self.tmp / "out"

    def prepare(self, *extra: str, inputs: list | None = None) -> list[str]:
        paths = ",".join(str(p) for p in (inputs or [self.dolly]))
        return ["prepare", f"input.paths=[{paths}]", f"tokenizer={self.tok}", "pack.seq_len=64", "progress=false",
                f"out={self.out}", *extra]

    def train(self, *extra: str, data: Path | None = None) -> list[str]:
        return ["train", "train/fi-tiny", f"data.path={data or self.shards}", f"run_dir={self.tmp / 'run'}",
                "max_steps=2", "progress_bar=false", "wandb.mode=disabled", "export_hf=false", *extra]


def nothing_prepared(ctx: Ctx) -> bool:
    return not (ctx.out / "manifest.json").exists()


def no_run(ctx: Ctx) -> bool:
    return not (ctx.tmp / "run").exists()


def nothing(ctx: Ctx) -> bool:
    return not any(p for p in ctx.tmp.iterdir() if p.name not in ("in", "inputs"))


Case = tuple[Callable[[Ctx], list[str]], tuple[str, ...], Callable[[Ctx], bool]]
CASES: dict[str, Case] = {}


def case(name: str, *names: str, left: Callable[[Ctx], bool] = nothing):
    def register(fn):
        CASES[name] = (fn, names, left)
        return fn
    return register


# --------------------------------------------------------------------------------------------- config
@case("override-yaml-syntax", "pack.seq_len=[1", "not valid YAML")
def _(c): return c.prepare("pack.seq_len=[1")


@case("unknown-key-nearest", "pack.seq_lenn", "did you mean 'pack.seq_len'")
def _(c): return c.prepare("pack.seq_lenn=5")


@case("wrong-type", "pack.seq_len", "expected int")
def _(c): return c.prepare("pack.seq_len=abc")


@case("seq-len-too-small", "pack.seq_len must be in [2, 2**20], got 1")
def _(c): return c.prepare("pack.seq_len=1")


@case("negative-lr", "optim.lr must be > 0", left=no_run)
def _(c): return c.train("optim.lr=-1")


@case("beta1-above-one", "optim.beta1 must be in [0, 1)", "1.5", left=no_run)
def _(c): return c.train("optim.beta1=1.5")


@case("micro-batch-zero", "data.micro_batch_size must be >= 1", left=no_run)
def _(c): return c.train("data.micro_batch_size=0")


@case("unknown-strategy", "strategy must be one of", left=no_run)
def _(c): return c.train("strategy=fast")


@case("bad-interpolation", "optim.lr", "nope", left=no_run)
def _(c): return c.train("optim.lr=${nope}")


@case("scalar-over-section", "override 'optim=3'", left=no_run)
def _(c): return c.train("optim=3")


@case("override-without-equals", "key=value", "foo", left=no_run)
def _(c): return c.train("foo")


@case("unknown-option", "unrecognized arguments: --slurmm", left=no_run)
def _(c): return ["experiment", "tiny-cpu", f"run_dir={c.tmp / 'run'}", "--slurmm"]


@case("unknown-recipe", "unknown recipe 'train/fi-tinyy'", "did you mean 'train/fi-tiny'", left=no_run)
def _(c): return ["train", "train/fi-tinyy", f"run_dir={c.tmp / 'run'}"]


@case("recipe-bad-yaml", "broken.yaml", "not valid YAML", "line 2", left=no_run)
def _(c):
    (c.tmp / "broken.yaml").write_text("max_steps: 3\n  lr: 1\n")
    return ["train", str(c.tmp / "broken.yaml"), f"run_dir={c.tmp / 'run'}"]


@case("invalid-regex", "templatize.query_pattern must be a valid regular expression", "(abc")
def _(c): return ["data-gen", "templatize", "data_gen/quickstart", f"run_dir={c.tmp / 'run'}",
                  "templatize.query_pattern=(abc"]


@case("experiment-nested-range", "train.optim.beta2 must be in [0, 1)", left=no_run)
def _(c): return ["experiment", "tiny-cpu", f"run_dir={c.tmp / 'run'}", "train.optim.beta2=2"]


@case("experiment-bad-slurm-time", "slurm.train.time 'soon' is not a Slurm time", left=no_run)
def _(c): return ["experiment", "tiny-cpu", f"run_dir={c.tmp / 'run'}", "slurm.train.time=soon"]


@case("both-budgets", "max_tokens or budget_from", "not both", left=no_run)
def _(c): return c.train("max_steps=0", "max_tokens=100", f"budget_from={c.shards}")


@case("no-budget", "no budget", left=no_run)
def _(c): return c.train("max_steps=0", "data.max_epochs=0")


@case("budget-cannot-be-met", "the budget cannot be met", "data.max_epochs=1", left=no_run)
def _(c): return c.train("max_steps=0", "max_tokens=1e12")


@case("max-seq-len-shorter-than-rows", "model.max_seq_len=128", "256-token rows", left=no_run)
def _(c): return c.train("model.max_seq_len=128")


@case("negative-model-size", "model.n_layers must be >= 1", left=no_run)
def _(c): return c.train("model.n_layers=-1")


@case("negative-rope-theta", "model.rope_theta must be > 0", left=no_run)
def _(c): return c.train("model.rope_theta=-5")


@case("bad-template", "format.template must contain {answer}")
def _(c): return c.prepare("format.template='Q: {instruction}'")


@case("bad-input-kind", "input.kind must be one of")
def _(c): return c.prepare("input.kind=rows")


@case("split-for-pairs", "pack.overlong=split is for raw documents")
def _(c): return c.prepare("pack.overlong=split")


# ----------------------------------------------------------------------------------------------- data
@case("input-not-found", "input not found", "nope/*.parquet")
def _(c): return c.prepare(inputs=[c.tmp / "nope" / "*.parquet"])


@case("empty-file", "nothing to write", "empty_file", "empty.jsonl", left=nothing_prepared)
def _(c):
    (c.tmp / "in").mkdir()
    (c.tmp / "in" / "empty.jsonl").write_text("")
    return c.prepare(inputs=[c.tmp / "in" / "empty.jsonl"])


@case("list-valued-answer", "non_string_answer", "answer is a list", left=nothing_prepared)
def _(c): return c.prepare(inputs=[write_jsonl(c.tmp / "in" / "p.jsonl", [pair("d1", answer=["a", "b"])])])


@case("number-as-instruction", "non_string_instruction", left=nothing_prepared)
def _(c): return c.prepare(inputs=[write_jsonl(c.tmp / "in" / "p.jsonl", [pair("d1", instruction=42)])])


@case("non-numeric-judge-score", "non_numeric_judge_score", "'high'", left=nothing_prepared)
def _(c): return c.prepare("input.min_judge_score=4", inputs=[
    write_jsonl(c.tmp / "in" / "p.jsonl", [pair("d1", judge_score="high"), pair("d2", judge_score=[5])])])


@case("gzip-cut-in-half", "p.jsonl.gz", "cut short or corrupt", left=nothing_prepared)
def _(c):
    (c.tmp / "in").mkdir()
    blob = gzip.compress("".join(json.dumps(pair(f"d{i}")) + "\n" for i in range(200)).encode())
    (c.tmp / "in" / "p.jsonl.gz").write_bytes(blob[: len(blob) // 2])
    return c.prepare(inputs=[c.tmp / "in" / "p.jsonl.gz"])


@case("document-row-without-id", "docs.jsonl:2", "no 'id' field", "input.id_column", left=nothing_prepared)
def _(c): return c.prepare("input.kind=documents", "input.id_column=id", inputs=[write_jsonl(
    c.tmp / "in" / "docs.jsonl", [{"id": "a", "text": "First document text."}, {"text": "No id here."}])])


@case("missing-columns", "missing column(s)", "instantiated_instruction", left=nothing_prepared)
def _(c): return c.prepare(inputs=[write_jsonl(c.tmp / "in" / "p.jsonl", [{"warc_record_id": "d", "answer": "x"}])])


@case("corrupt-parquet", "cannot read parquet file", "bad.parquet", left=nothing_prepared)
def _(c):
    (c.tmp / "in").mkdir()
    (c.tmp / "in" / "bad.parquet").write_bytes(b"PAR1 this is not parquet")
    return c.prepare(inputs=[c.tmp / "in" / "bad.parquet"])


@case("unsupported-type", "unsupported file type '.csv'", left=nothing_prepared)
def _(c):
    (c.tmp / "in").mkdir()
    (c.tmp / "in" / "p.csv").write_text("a,b\n")
    return c.prepare(inputs=[c.tmp / "in" / "p.csv"])


@case("tokenizer-not-found", "tokenizer not found", "no-tok", left=nothing_prepared)
def _(c): return [*c.prepare()[:2], f"tokenizer={c.tmp / 'no-tok'}", *c.prepare()[3:]]


@case("judge-scores-misaligned", "judge_score_paths: 2 files for 1 pair files", left=nothing_prepared)
def _(c):
    a = write_jsonl(c.tmp / "in" / "s1.jsonl", [{"score": 5}])
    b = write_jsonl(c.tmp / "in" / "s2.jsonl", [{"score": 5}])
    return c.prepare(f"input.judge_score_paths=[{a},{b}]")


@case("all-rejected-by-reason", "nothing to write", "empty_answer", "p.jsonl:1", left=nothing_prepared)
def _(c): return c.prepare(inputs=[write_jsonl(c.tmp / "in" / "p.jsonl", [pair("d", answer="  "), "{broken"])])


@case("budget-from-edited-manifest", "budget_from", "changed after prepare wrote it", left=nothing_prepared)
def _(c):
    import shutil

    fi = c.tmp / "inputs" / "fi"
    shutil.copytree(c.shards, fi)
    m = json.loads((fi / "manifest.json").read_text())
    m["counts"]["total_tokens"] = int(m["counts"]["total_tokens"] * 1.5)
    (fi / "manifest.json").write_text(json.dumps(m))
    return c.prepare("documents_from_pairs=true", f"budget_from={fi}")


@pytest.fixture
def ctx(tmp_path, tokenizer_dir, pairs_shards, dolly_pairs_file) -> Ctx:
    return Ctx(tmp_path, tokenizer_dir, pairs_shards, dolly_pairs_file)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_clean_line(name, ctx, capsys):
    build, names, left = CASES[name]
    argv = build(ctx)
    r = run_main(argv, capsys)
    assert_clean_error(r, *names)
    assert left(ctx), f"{name}: left output behind: {sorted(str(p) for p in ctx.tmp.rglob('*'))[:20]}"
