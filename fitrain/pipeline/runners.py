"""The work of each experiment step: one component's config derived from the experiment's
(fitrain.pipeline.configs) and that component's entry point.

Nothing here re-implements a component (fitrain/INTERFACES.md lists the functions called). Because every
step is "a component's config + its entry point", :func:`step_command` can print the one ``fitrain``
command that does the same by hand (nanochat's ``speedrun.sh`` makes a pipeline readable this way). The
steps that write an arm's own data (``source-``, ``generate-``, ``pairs-``) are in their kind's module
(fitrain.pipeline.arms).
"""
from __future__ import annotations

import copy
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fitrain.core.errors import FitrainError
from fitrain.core.io import read_json
from fitrain.pipeline.arms import Run
from fitrain.pipeline.configs import (corpus_sizes, corpus_files, data_gen_config, eval_config,
                                      head_to_head_config, prepare_config, tokenizer_config, train_config)
from fitrain.pipeline.experiment import ExperimentConfig, ExperimentStep


# ------------------------------------------------------------------------------------------------- steps
def corpus_step(cfg: ExperimentConfig, step: ExperimentStep, shard: int | None) -> dict:
    from fitrain.core.accounting import Rejects
    from fitrain.data.corpus import write_builtin_corpus
    from fitrain.data.records import InputConfig, iter_documents

    if cfg.corpus.builtin:
        return write_builtin_corpus(cfg.corpus, cfg.layout.corpus)
    files = corpus_files(cfg)  # a missing corpus fails here, naming the pattern
    rejects = Rejects()
    docs = sum(1 for _ in iter_documents(InputConfig(paths=files, kind="documents", text_column=cfg.corpus.text_column,
                                                     id_column=cfg.corpus.id_column), rejects))
    if not docs:
        raise FitrainError(f"the corpus {cfg.corpus.paths} holds no readable documents ({rejects.summary()})")
    return {"documents": docs, "files": files, "sizes": corpus_sizes(files), "rejects": rejects.to_dict()}


def tokenizer_step(cfg: ExperimentConfig, step: ExperimentStep, shard: int | None) -> dict:
    from fitrain.data.tokenizer import train_tokenizer

    return {"tokenizer": str(train_tokenizer(tokenizer_config(cfg)))}


def data_gen_stages(step: ExperimentStep) -> list[str]:
    return ["templatize", "index"] if step.name == "data_gen-templates" else ["match", "instantiate", "judge", "write"]


def data_gen_step(cfg: ExperimentConfig, step: ExperimentStep, shard: int | None) -> dict:
    from data_gen.pipeline import run

    status = run(data_gen_config(cfg), stages=data_gen_stages(step), task=shard)  # an array index is a task
    out = {s: {k: v for k, v in st.items() if k in ("complete", "ran", "skipped", "wall_s")} for s, st in status.items()}
    if step.name == "data_gen" and status.get("write", {}).get("complete"):
        stats = status["write"].get("stats", {})
        out["pairs"] = stats.get("out", stats.get("outputs"))
        if not out["pairs"]:
            raise FitrainError("data_gen kept no pairs (every match/instantiation/judgment was rejected); see "
                               f"{cfg.layout.data_gen_report} and lower data_gen.match.threshold or "
                               "raise corpus.max_documents")
    return out


def _arm_of(step: ExperimentStep) -> str:
    return step.arm or "heldout"  # (prepare-heldout belongs to no arm)


def prepare_step(cfg: ExperimentConfig, step: ExperimentStep, shard: int | None) -> dict:
    from fitrain.data.prepare import prepare

    m = prepare(prepare_config(cfg, _arm_of(step)))
    return {"counts": m.counts.to_dict(), "budget": m.budget, "matched_budget": m.matched_budget,
            "fingerprint": m.fingerprint}


def _step_run(step: ExperimentStep) -> Run:
    return Run(_arm_of(step), step.seed if step.seed is not None else 0, step.run or _arm_of(step))


def train_step(cfg: ExperimentConfig, step: ExperimentStep, shard: int | None) -> dict:
    from fitrain.train.trainer import train

    run = _step_run(step)
    s = train(train_config(cfg, run.arm, run))
    if s.get("status") not in (None, "finished"):
        # preempted: the job was requeued (or must be rerun); no completion marker
        raise SystemExit(f"{step.name}: training stopped with status '{s.get('status')}'; it resumes from "
                         f"{s.get('checkpoint')} when the step runs again")
    return {k: s.get(k) for k in ("steps", "tokens", "supervised_tokens", "final_loss", "val_loss", "hf_dir")}


def eval_step(cfg: ExperimentConfig, step: ExperimentStep, shard: int | None) -> dict:
    from fitrain_eval.run import evaluate

    run = _step_run(step)
    results = evaluate(eval_config(cfg, run.arm, run=run))
    return {"metrics": len(results)}


def head_to_head_step(cfg: ExperimentConfig, step: ExperimentStep, shard: int | None) -> dict:
    """The judging into ``eval/<run>/pairwise/<baseline>``, then its metrics and per-item scores merged into
    ``eval/<run>`` (results.json, items/), where the report reads every metric of the run."""
    import shutil

    from fitrain.core.io import atomic_path
    from fitrain_eval.items import ITEMS_DIR
    from fitrain_eval.run import evaluate, merge_results

    ec = head_to_head_config(cfg, step)
    results = evaluate(ec)
    pairwise = {k: v for k, v in results.items() if k.startswith(f"pairwise/{ec.pairwise.baseline_name}/")}
    run_dir = cfg.layout.eval(step.run)
    for item in sorted((Path(ec.out) / ITEMS_DIR).glob("pairwise__*.jsonl")):
        with atomic_path(run_dir / ITEMS_DIR / item.name) as tmp:
            shutil.copyfile(item, tmp)
    merge_results(run_dir, pairwise)
    return {"metrics": sorted(pairwise)}


def token_matching(cfg: ExperimentConfig) -> dict:
    """The trained tokens of each run and whether each agrees with its reference arm's within one sequence."""
    arms = cfg.arm_set()
    runs: dict[str, dict] = {}
    for r in cfg.runs():
        p = cfg.layout.train(r.id).summary
        if p.is_file():
            s = read_json(p)
            runs[r.id] = {"arm": r.arm, "seed": r.seed, "reference": arms.root(r.arm),
                          "tokens": int(s.get("tokens") or 0), "supervised_tokens": int(s.get("supervised_tokens") or 0)}
            own = _prepared_tokens(cfg, r.arm)  # epochs: passes over the arm's own prepared data
            runs[r.id]["epochs"] = round(runs[r.id]["tokens"] / own, 3) if own else None
    seq_len = cfg.prepare.pack.seq_len
    out: dict[str, Any] = {"runs": runs, "seq_len": seq_len}
    diffs = []
    for v in runs.values():
        ref = [w["tokens"] for w in runs.values() if w["arm"] == v["reference"]]
        if ref:
            v["difference"] = abs(v["tokens"] - ref[0])
            diffs.append(v["difference"])
    if len(runs) >= 2 and diffs:
        out["difference"] = max(diffs)
        out["matched_within_one_sequence"] = out["difference"] <= seq_len
    return out


def _prepared_tokens(cfg: ExperimentConfig, arm: str) -> int:
    p = cfg.layout.prepared(arm) / "manifest.json"
    return int(read_json(p).get("counts", {}).get("total_tokens") or 0) if p.is_file() else 0


@dataclass(frozen=True)
class ArmRow:
    name: str
    kind: str
    label: str      # the kind's label (what such an arm trains on)
    data: str       # where this arm's data comes from
    budget: str     # whose tokens it trains
    beyond_paper: bool = False  # not a row of the paper's Table 1 (its kind says so)


def arm_rows(cfg: ExperimentConfig) -> list[ArmRow]:
    """Each arm as the plan and the report show it (its kind's label and description, its budget)."""
    from fitrain.pipeline.blocks import tokens_text

    arms = cfg.arm_set()
    rows = []
    for a in arms.specs:
        kind, root = arms.kind(a.name), arms.root(a.name)
        fixed = f"{tokens_text(cfg.train.max_tokens)} tokens" if cfg.train.max_tokens else "train.* budget"
        budget = (fixed if cfg.explicit_budget else "its own tokens" if root == a.name else f"{root}'s tokens")
        rows.append(ArmRow(a.name, a.kind, kind.label, kind.describe(arms, a),
                           budget + ("" if a.budget.epochs_allowed else " (one pass at most)"), kind.beyond_paper))
    return rows


BEYOND = " (beyond the paper)"


def judges_lines(cfg: ExperimentConfig) -> list[str]:
    """Each judged benchmark's judge, and whether it is the paper's (fitrain/docs/method.md, "Evaluation")."""
    from fitrain_eval.benchmarks import enabled
    from fitrain_eval.judges.common import judge_config_for

    rows = []
    for b in (b for b in enabled(cfg.eval) if b.judged):
        jc = judge_config_for(cfg.eval, b.name)
        model = jc.llm.model or "-"
        same = b.paper_judge and b.paper_judge in model.lower().replace("_", "-").rsplit("/", 1)[-1]
        where = "started by the eval job" if jc.serve.enabled else jc.llm.base_url
        note = "the paper's judge" if same else "NOT the paper's judge: scores are not on its scale"
        rows.append(f"| {b.name} | {model} ({where}) | {b.paper_judge or '-'} | {note} |")
    if not rows:
        return []
    return ["", "## Judges", "", "| benchmark | judge | the paper's judge | |", "|---|---|---|---|", *rows]


def report_step(cfg: ExperimentConfig, step: ExperimentStep, shard: int | None) -> dict:
    from fitrain.core.io import write_json
    from fitrain_eval.report import make_report

    out = cfg.layout.report
    rc = copy.deepcopy(cfg.report)
    arms = cfg.arm_set()
    rc.reference = rc.reference if rc.reference in arms.names else arms.primary  # every arm against the primary
    md = make_report([cfg.root], out, rc)
    tm = token_matching(cfg)
    write_json(out / "token_matching.json", tm)
    lines = ["", "## Arms", "", "| arm | kind | data | trains |", "|---|---|---|---|"]
    lines += [f"| {r.name}{BEYOND if r.beyond_paper else ''} | {r.kind}: {r.label} | {r.data} | {r.budget} |"
              for r in arm_rows(cfg)]
    lines += judges_lines(cfg)
    budget = (f"the same {cfg.train.max_tokens:,.0f} tokens" if cfg.train.max_tokens else
              "the total tokens of its reference arm")
    lines += ["", "## Token budget", "",
             f"Every arm trains on {budget} (the FineInstructions pairs are selected token-for-token against their "
             f"source documents; sequence length {tm['seq_len']}); epochs: passes over the arm's own prepared data.",
             "", "| run | arm | seed | reference | total tokens | supervised tokens | epochs |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r} | {v['arm']} | {v['seed']} | {v['reference']} | {v['tokens']:,} | {v['supervised_tokens']:,} | "
              f"{'-' if v.get('epochs') is None else format(v['epochs'], 'g')} |" for r, v in tm["runs"].items()]
    if "difference" in tm:
        lines += ["", f"Largest difference to the reference: {tm['difference']:,} tokens "
                      f"({'matched within one sequence' if tm['matched_within_one_sequence'] else 'NOT MATCHED'})."]
    with open(md, "a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    if tm.get("matched_within_one_sequence") is False:
        raise FitrainError(f"the runs' token counts differ from their references by up to {tm['difference']} "
                           f"(> one sequence of {tm['seq_len']}): {tm['runs']}; the report is at {md}")
    return {"report": str(md), "token_matching": tm}


# ----------------------------------------------------------------------------------- the same, by hand
def step_command(cfg: ExperimentConfig, step: ExperimentStep) -> list[str]:
    """The single ``fitrain`` command that does what ``step`` does (derived settings as ``key=value``
    overrides of the defaults; ``{shard}`` stands for the array task's shard). The corpus, report, an arm's
    own data (source-, generate-, pairs-) and the head-to-head judgings do a little more than one component
    (a check, a merge, data_gen's shard runner around the baseline generator): the experiment's own step."""
    if step.block and step.local.command is not None:
        from fitrain.pipeline.blocks import for_step

        return step.local.command(*for_step(cfg, step))
    if step.command is not None:
        return step.command(cfg, step)
    cmd = ["fitrain", "experiment", str(cfg.layout.config), "--step", step.name]
    return cmd + (["--shard", "{shard}"] if step.shards else [])


def tokenizer_command(cfg: ExperimentConfig, step: ExperimentStep) -> list[str]:
    from fitrain.core.config import overrides_from_defaults

    return ["fitrain", "tokenizer", "train", *overrides_from_defaults(tokenizer_config(cfg, check=False))]


def data_gen_command(cfg: ExperimentConfig, step: ExperimentStep) -> list[str]:
    from fitrain.core.config import overrides_from_defaults

    cmd = ["fitrain", "data-gen", "run", "--stages", ",".join(data_gen_stages(step))]
    cmd += ["--task", "{shard}"] if step.shards else []
    return cmd + overrides_from_defaults(data_gen_config(cfg, check=False))


def prepare_command(cfg: ExperimentConfig, step: ExperimentStep) -> list[str]:
    from fitrain.core.config import overrides_from_defaults

    return ["fitrain", "prepare", *overrides_from_defaults(prepare_config(cfg, _arm_of(step), check=False))]


def train_command(cfg: ExperimentConfig, step: ExperimentStep) -> list[str]:
    from fitrain.core.config import overrides_from_defaults

    run = _step_run(step)
    return ["fitrain", "train", *overrides_from_defaults(train_config(cfg, run.arm, run))]


def eval_command(cfg: ExperimentConfig, step: ExperimentStep) -> list[str]:
    from fitrain.core.config import overrides_from_defaults

    run = _step_run(step)
    ec = eval_config(cfg, run.arm, check=False, run=run)
    ec.arm, ec.out = "", ""  # (eval's defaults for a model at <run_dir>/train/<run>: that run, <run_dir>/eval/<run>)
    return ["fitrain", "eval", *overrides_from_defaults(ec)]


def shell_line(argv: list[str]) -> str:
    return " ".join(a if a == "{shard}" else shlex.quote(a) for a in argv)
