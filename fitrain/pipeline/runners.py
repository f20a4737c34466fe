"""The work of each experiment step: derive one component's config from the experiment's (paths from the
run layout, the shared seed, the matched budget) and call that component's entry point.

Nothing here re-implements a component (fitrain/INTERFACES.md lists the functions called). Because every
step is "a component's config + its entry point", :func:`step_command` can print the one ``fitrain``
command that does the same by hand (nanochat's ``speedrun.sh`` makes a pipeline readable this way).
"""
from __future__ import annotations

import copy
import os
import shlex
from typing import Any, Callable

from fitrain.core.errors import FitrainError
from fitrain.core.io import read_json
from fitrain.pipeline.graph import ExperimentConfig, ExperimentStep, run_name


# --------------------------------------------------------------------------------------- derived configs
def corpus_files(cfg: ExperimentConfig, check: bool = True) -> list[str]:
    """The document files the experiment reads (``check=False``: the patterns, unexpanded, for a dry run)."""
    from fitrain.data.corpus import corpus_paths

    if not check and not cfg.corpus.builtin:
        return list(cfg.corpus.paths)
    return corpus_paths(cfg.corpus, cfg.layout.corpus)


def final_pairs(cfg: ExperimentConfig, heldout: bool = False, check: bool = True) -> list[str]:
    """The data_gen output files of the training shards (or of the held-out shards)."""
    from data_gen.shards import shard_dir

    n, h = max(1, cfg.data_gen.num_shards), cfg.heldout_shards
    ids = range(n - h, n) if heldout else range(n - h)
    final = cfg.layout.data_gen("final")
    files = [shard_dir(final, i) / "pairs.parquet" for i in ids]
    missing = [str(f) for f in files if not f.is_file()]
    if check and missing:
        raise FitrainError(f"data_gen wrote no pairs file for {missing}; rerun the data_gen step")
    return [str(f) for f in files]


def tokenizer_config(cfg: ExperimentConfig, check: bool = True):
    from fitrain.data.records import InputConfig

    tc = copy.deepcopy(cfg.tokenizer)
    tc.files = []
    tc.input = InputConfig(paths=corpus_files(cfg, check), kind="documents", text_column=cfg.corpus.text_column,
                           id_column=cfg.corpus.id_column)
    tc.out = str(cfg.layout.tokenizer)
    return tc


def data_gen_config(cfg: ExperimentConfig, check: bool = True):
    from fitrain.core.recipes import packaged_path

    dg = copy.deepcopy(cfg.data_gen)
    dg.run_dir = str(cfg.root)
    dg.seed = cfg.seed
    dg.match.documents = corpus_files(cfg, check)
    dg.match.builtin_corpus = False
    dg.match.text_column = cfg.corpus.text_column
    dg.match.id_column = cfg.corpus.id_column
    dg.templatize.bank = [packaged_path(b) for b in dg.templatize.bank]
    return dg


def prepare_config(cfg: ExperimentConfig, arm: str, check: bool = True):
    pc = copy.deepcopy(cfg.prepare)
    layout = cfg.layout
    pc.tokenizer = str(layout.tokenizer)
    pc.out = str(layout.prepared(arm))
    pc.input.kind = "pairs"
    pc.input.paths = final_pairs(cfg, heldout=arm == "heldout", check=check)
    pc.budget.seed = cfg.seed
    pc.budget.enabled = arm == "fi"
    pc.documents_from_pairs = arm == "standard"
    pc.budget_from = str(layout.prepared("fi")) if arm == "standard" else ""
    return pc


def train_config(cfg: ExperimentConfig, arm: str):
    """Both arms: the same model, optimiser, seed and total-token budget (the FI arm's prepared tokens)."""
    tc = copy.deepcopy(cfg.train)
    layout = cfg.layout
    tc.arm = arm
    tc.seed = cfg.seed
    tc.run_dir = str(layout.train(arm).root)
    tc.tokenizer = str(layout.tokenizer)
    tc.data.path = str(layout.prepared(arm))
    if cfg.heldout_shards:
        tc.data.val_path = str(layout.prepared("heldout"))
    if not (tc.max_tokens or tc.max_supervised_tokens or tc.max_steps):
        tc.budget_from = str(layout.prepared("fi"))  # matched total tokens, exact cut for both arms
    tc.wandb.group = tc.wandb.group or cfg.name
    tc.wandb.name = run_name(cfg, arm)
    tags = [cfg.name, arm, cfg.size or tc.model.preset]
    tc.wandb.tags = list(dict.fromkeys(list(tc.wandb.tags) + tags))
    nodes, per_node = os.environ.get("SLURM_NNODES", ""), os.environ.get("SLURM_NTASKS_PER_NODE", "")
    if os.environ.get("SLURM_JOB_ID") and nodes.isdigit() and per_node:
        # under srun: Lightning's devices x num_nodes must equal the tasks Slurm started
        tc.num_nodes = int(nodes)
        tc.devices = int(per_node.split("(")[0])
        if tc.strategy == "auto" and tc.num_nodes * tc.devices > 1:
            tc.strategy = "ddp"
    return tc


def eval_config(cfg: ExperimentConfig, arm: str, check: bool = True):
    layout = cfg.layout
    ec = copy.deepcopy(cfg.eval)
    ec.model = str(layout.train(arm).root)
    ec.arm = arm
    ec.out = str(layout.eval(arm))
    if ec.pairwise.enabled and arm == "fi" and "standard" in cfg.arms and not ec.pairwise.baseline_outputs:
        ec.pairwise.baseline_outputs = str(layout.eval("standard"))
    if ec.decontamination.enabled and not ec.decontamination.train.paths:
        ec.decontamination.train.paths = final_pairs(cfg, check=check)
    return ec


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
    return {"documents": docs, "files": files, "rejects": rejects.to_dict()}


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


def prepare_step(cfg: ExperimentConfig, step: ExperimentStep, shard: int | None) -> dict:
    from fitrain.data.prepare import prepare

    m = prepare(prepare_config(cfg, step.name.split("-", 1)[1]))
    return {"counts": m.counts.to_dict(), "budget": m.budget, "matched_budget": m.matched_budget,
            "fingerprint": m.fingerprint}


def train_step(cfg: ExperimentConfig, step: ExperimentStep, shard: int | None) -> dict:
    from fitrain.train.trainer import train

    s = train(train_config(cfg, step.name.split("-", 1)[1]))
    if s.get("status") not in (None, "finished"):
        # preempted: the job was requeued (or must be rerun); no completion marker
        raise SystemExit(f"{step.name}: training stopped with status '{s.get('status')}'; it resumes from "
                         f"{s.get('checkpoint')} when the step runs again")
    return {k: s.get(k) for k in ("steps", "tokens", "supervised_tokens", "final_loss", "val_loss", "hf_dir")}


def eval_step(cfg: ExperimentConfig, step: ExperimentStep, shard: int | None) -> dict:
    from fitrain_eval.run import evaluate

    results = evaluate(eval_config(cfg, step.name.split("-", 1)[1]))
    return {"metrics": len(results)}


def token_matching(cfg: ExperimentConfig) -> dict:
    """The trained tokens of each arm and whether they agree within one sequence."""
    arms = {}
    for arm in cfg.arms:
        p = cfg.layout.train(arm).summary
        if p.is_file():
            s = read_json(p)
            arms[arm] = {"tokens": int(s.get("tokens") or 0), "supervised_tokens": int(s.get("supervised_tokens") or 0)}
    seq_len = cfg.prepare.pack.seq_len
    out: dict[str, Any] = {"arms": arms, "seq_len": seq_len}
    if len(arms) >= 2:
        t = [a["tokens"] for a in arms.values()]
        out["difference"] = max(t) - min(t)
        out["matched_within_one_sequence"] = out["difference"] <= seq_len
    return out


def report_step(cfg: ExperimentConfig, step: ExperimentStep, shard: int | None) -> dict:
    from fitrain.core.io import write_json
    from fitrain_eval.report import make_report

    out = cfg.layout.report
    md = make_report([cfg.root], out, cfg.report)
    tm = token_matching(cfg)
    write_json(out / "token_matching.json", tm)
    lines = ["", "## Token budget", "",
             f"Both arms train on the same number of total tokens (the FineInstructions pairs selected "
             f"token-for-token against their source documents; sequence length {tm['seq_len']}).", "",
             "| arm | total tokens | supervised tokens |", "|---|---|---|"]
    lines += [f"| {a} | {v['tokens']:,} | {v['supervised_tokens']:,} |" for a, v in tm["arms"].items()]
    if "difference" in tm:
        lines += ["", f"Difference: {tm['difference']:,} tokens "
                      f"({'matched within one sequence' if tm['matched_within_one_sequence'] else 'NOT MATCHED'})."]
    with open(md, "a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    if tm.get("matched_within_one_sequence") is False:
        raise FitrainError(f"the arms' token counts differ by {tm['difference']} (> one sequence of {tm['seq_len']}): "
                           f"{tm['arms']}; the report is at {md}")
    return {"report": str(md), "token_matching": tm}


Runner = Callable[[ExperimentConfig, ExperimentStep, "int | None"], dict]
RUNNERS: dict[str, Runner] = {"corpus": corpus_step, "tokenizer": tokenizer_step, "data_gen": data_gen_step,
                              "prepare": prepare_step, "train": train_step, "eval": eval_step,
                              "report": report_step}


def runner_for(name: str, runners: dict[str, Runner] | None = None) -> Runner:
    runners = runners or RUNNERS
    key = name if name in runners else name.split("-")[0]
    if key not in runners:
        raise FitrainError(f"no runner for step '{name}'")
    return runners[key]


# ----------------------------------------------------------------------------------- the same, by hand
def step_command(cfg: ExperimentConfig, step: ExperimentStep) -> list[str]:
    """The single ``fitrain`` command that does what ``step`` does (derived settings as ``key=value``
    overrides of the defaults; ``{shard}`` stands for the array task's shard)."""
    from fitrain.core.config import overrides_from_defaults

    kind = step.name.split("-", 1)[0]
    arm = step.name.split("-", 1)[1] if "-" in step.name else ""
    if kind == "tokenizer":
        return ["fitrain", "tokenizer", "train", *overrides_from_defaults(tokenizer_config(cfg, check=False))]
    if kind == "data_gen":
        cmd = ["fitrain", "data-gen", "run", "--stages", ",".join(data_gen_stages(step))]
        cmd += ["--task", "{shard}"] if step.shards else []
        return cmd + overrides_from_defaults(data_gen_config(cfg, check=False))
    if kind == "prepare":
        return ["fitrain", "prepare", *overrides_from_defaults(prepare_config(cfg, arm, check=False))]
    if kind == "train":
        return ["fitrain", "train", *overrides_from_defaults(train_config(cfg, arm))]
    if kind == "eval":
        return ["fitrain", "eval", *overrides_from_defaults(eval_config(cfg, arm, check=False))]
    # corpus and report do a little more than one component (the corpus check, the token-budget table)
    return ["fitrain", "experiment", str(cfg.layout.config), "--step", step.name]


def shell_line(argv: list[str]) -> str:
    return " ".join(a if a == "{shard}" else shlex.quote(a) for a in argv)
