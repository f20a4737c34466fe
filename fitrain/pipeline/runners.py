"""The work of each experiment step: derive one component's config from the experiment's (paths from the
run layout, the shared seed, the matched budget) and call that component's entry point.

Nothing here re-implements a component (fitrain/INTERFACES.md lists the functions called). Because every
step is "a component's config + its entry point", :func:`step_command` can print the one ``fitrain``
command that does the same by hand (nanochat's ``speedrun.sh`` makes a pipeline readable this way). The
steps that write an arm's own data (``source-``, ``generate-``, ``pairs-``) are in
fitrain.pipeline.sources.
"""
from __future__ import annotations

import copy
import os
import shlex
from pathlib import Path
from typing import Any, Callable

from fitrain.core.errors import FitrainError
from fitrain.core.io import read_json
from fitrain.pipeline.arms import ArmSpec, Run
from fitrain.pipeline.graph import ExperimentConfig, ExperimentStep, rewrites_pairs, run_name


# --------------------------------------------------------------------------------------- derived configs
def corpus_files(cfg: ExperimentConfig, check: bool = True) -> list[str]:
    """The document files the experiment reads (``check=False``: the patterns, unexpanded, for a dry run)."""
    from fitrain.data.corpus import corpus_paths

    if not check and not cfg.corpus.builtin:
        return list(cfg.corpus.paths)
    return corpus_paths(cfg.corpus, cfg.layout.corpus)


def final_pairs(cfg: ExperimentConfig, heldout: bool = False, check: bool = True, stage_dir=None) -> list[str]:
    """The data_gen output files of the training shards (or of the held-out shards); ``stage_dir``: another
    directory of the same shard layout (an fi variant's re-written pairs)."""
    from data_gen.shards import shard_dir

    n, h = max(1, cfg.data_gen.num_shards), cfg.heldout_shards
    ids = range(n - h, n) if heldout else range(n - h)
    final = stage_dir or cfg.layout.data_gen("final")
    files = [shard_dir(final, i) / "pairs.parquet" for i in ids]
    missing = [str(f) for f in files if not f.is_file()]
    if check and missing:
        raise FitrainError(f"data_gen wrote no pairs file for {missing}; rerun the data_gen step")
    return [str(f) for f in files]


def arm_pairs(cfg: ExperimentConfig, arm: ArmSpec, check: bool = True) -> list[str]:
    """An fi arm's pair files: data_gen's final shards, or its own re-written ones (``pairs-<arm>``)."""
    own = cfg.layout.arm_data(arm.name) if rewrites_pairs(cfg, arm) else None
    return final_pairs(cfg, check=check, stage_dir=own)


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
    dg.write.tokenizer = dg.write.tokenizer or str(cfg.layout.tokenizer)  # token_count columns, our tokenizer
    return dg


def arm_documents_glob(cfg: ExperimentConfig, arm: ArmSpec) -> str:
    """The normalised document files a corpus, mixture or generated arm's prepare reads."""
    from fitrain.data.corpora import normalised_glob

    d = cfg.layout.arm_data(arm.name)
    return str(d / "shard-*" / "documents.parquet") if arm.kind == "generated" else normalised_glob(d)


def prepare_config(cfg: ExperimentConfig, arm: str, check: bool = True):
    """``arm``: an arm's name, or ``heldout`` (the held-out shards' pairs, unbudgeted)."""
    from fitrain.data.records import InputConfig

    pc = copy.deepcopy(cfg.prepare)
    layout = cfg.layout
    pc.tokenizer = str(layout.tokenizer)
    pc.budget.seed = cfg.seed
    if arm == "heldout":
        pc.input.kind, pc.budget.enabled, pc.documents_from_pairs, pc.budget_from = "pairs", False, False, ""
        pc.input.paths = final_pairs(cfg, heldout=True, check=check)
        pc.out = str(layout.prepared(arm))
        return pc
    arms = cfg.arm_set()
    a = arms[arm]
    if a.kind == "documents":  # the same settings and inputs as its fi arm, read as documents
        src = arms.pairs_source(arm)
        pc = prepare_config(cfg, src, check)
        pc.budget.enabled, pc.documents_from_pairs, pc.budget_from = False, True, str(layout.prepared(src))
    elif a.kind == "fi":
        pc.input.kind = "pairs"
        pc.input.paths = arm_pairs(cfg, a, check)
        pc.budget.enabled, pc.documents_from_pairs, pc.budget_from = True, False, ""
        if a.min_judge_score is not None and not rewrites_pairs(cfg, a):
            pc.input.min_judge_score = a.min_judge_score
        pc.format.loss_mask = a.loss_mask or pc.format.loss_mask
    else:
        pc.input = InputConfig(paths=[arm_documents_glob(cfg, a)], kind="documents", text_column="text",
                               id_column="doc_id")
        pc.budget.enabled, pc.documents_from_pairs, pc.budget_from = False, False, ""
    pc.out = str(layout.prepared(arm))
    return merge_settings(pc, a.prepare, f"arm '{arm}': prepare") if a.prepare else pc


def merge_settings(obj: Any, overrides: dict, what: str) -> Any:
    """``obj`` (a config dataclass) with a mapping of settings merged over it (unknown keys refused)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(obj), OmegaConf.create(overrides)))
    except OmegaConfBaseException as e:
        raise FitrainError(f"{what}: {str(e).splitlines()[0]}") from None


def _run(cfg: ExperimentConfig, arm: str, run: Run | None) -> Run:
    return run if run is not None else cfg.runs(arm)[0]


def train_config(cfg: ExperimentConfig, arm: str, run: Run | None = None):
    """Every arm: the same model, optimiser and total-token budget (its root reference's prepared tokens);
    the seed of the run (data order and initialisation)."""
    run = _run(cfg, arm, run)
    arms = cfg.arm_set()
    tc = copy.deepcopy(cfg.train)
    layout = cfg.layout
    tc.arm = arm
    tc.seed = run.seed
    tc.run_dir = str(layout.train(run.id).root)
    tc.tokenizer = str(layout.tokenizer)
    tc.data.path = str(layout.prepared(arm))
    if cfg.heldout_shards:
        tc.data.val_path = str(layout.prepared("heldout"))
    if not cfg.explicit_budget:
        tc.budget_from = str(layout.prepared(arms.root(arm)))  # matched total tokens, exact cut for every arm
        # the budget is bounded by the reference's data: a smaller arm repeats its own as often as it needs
        tc.data.max_epochs = 0 if arms[arm].budget.epochs_allowed else 1
    elif not arms[arm].budget.epochs_allowed:
        tc.data.max_epochs = 1
    tc.wandb.group = tc.wandb.group or cfg.name
    tc.wandb.name = run_name(cfg, arm, run.id)
    tags = [cfg.name, arm, cfg.size or tc.model.preset] + ([f"seed{run.seed}"] if run.id != arm else [])
    tc.wandb.tags = list(dict.fromkeys(list(tc.wandb.tags) + tags))
    nodes, per_node = os.environ.get("SLURM_NNODES", ""), os.environ.get("SLURM_NTASKS_PER_NODE", "")
    if os.environ.get("SLURM_JOB_ID") and nodes.isdigit() and per_node:
        # under srun: Lightning's devices x num_nodes must equal the tasks Slurm started
        tc.num_nodes = int(nodes)
        tc.devices = int(per_node.split("(")[0])
        if tc.strategy == "auto" and tc.num_nodes * tc.devices > 1:
            tc.strategy = "ddp"
    return tc


def eval_config(cfg: ExperimentConfig, arm: str, check: bool = True, run: Run | None = None):
    """One run's evaluation into ``eval/<run>``; with pairwise enabled it writes the run's outputs on the
    instruction set, and the head-to-head judgings are steps of their own (:func:`head_to_head_config`)."""
    run = _run(cfg, arm, run)
    layout = cfg.layout
    ec = copy.deepcopy(cfg.eval)
    ec.model = str(layout.train(run.id).root)
    ec.arm = run.id
    ec.out = str(layout.eval(run.id))
    if ec.decontamination.enabled and not ec.decontamination.train.paths:
        ec.decontamination.train = copy.deepcopy(prepare_config(cfg, arm, check).input)  # what this arm trained on
    return ec


def head_to_head_config(cfg: ExperimentConfig, step: ExperimentStep):
    """The primary run judged against one baseline run: only the pairwise evaluation, into
    ``eval/<run>/pairwise/<baseline>`` (the step merges its metrics into ``eval/<run>/results.json``)."""
    from fitrain.core.layout import parse_run_id

    layout = cfg.layout
    ec = copy.deepcopy(cfg.eval)
    ec.model, ec.arm = str(layout.train(step.run).root), step.run
    ec.out = str(layout.head_to_head(step.run, step.baseline))
    ec.lm_eval.tasks = []
    ec.mixeval.enabled = ec.mtbench101.enabled = ec.decontamination.enabled = ec.heldout.enabled = False
    ec.pairwise.enabled = True
    ec.pairwise.baseline_outputs, ec.pairwise.baselines = str(layout.eval(step.baseline)), []
    ec.pairwise.baseline_name = parse_run_id(step.baseline)[0]  # metrics pairwise/<arm>/..., the same for every seed
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


def _arm_of(step: ExperimentStep) -> str:
    return step.arm or step.name.split("-", 1)[1]


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

    from fitrain.core.io import atomic_path, write_json
    from fitrain_eval.items import ITEMS_DIR
    from fitrain_eval.run import evaluate

    ec = head_to_head_config(cfg, step)
    results = evaluate(ec)
    pairwise = {k: v for k, v in results.items() if k.startswith(f"pairwise/{ec.pairwise.baseline_name}/")}
    run_dir = cfg.layout.eval(step.run)
    for item in sorted((Path(ec.out) / ITEMS_DIR).glob("pairwise__*.jsonl")):
        with atomic_path(run_dir / ITEMS_DIR / item.name) as tmp:
            shutil.copyfile(item, tmp)
    path = run_dir / "results.json"
    write_json(path, {**(read_json(path) if path.is_file() else {}), **pairwise})
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
    lines = ["", "## Token budget", "",
             f"Every arm trains on the total tokens of its reference arm (the FineInstructions pairs are selected "
             f"token-for-token against their source documents; sequence length {tm['seq_len']}).", "",
             "| run | arm | seed | reference | total tokens | supervised tokens |", "|---|---|---|---|---|---|"]
    lines += [f"| {r} | {v['arm']} | {v['seed']} | {v['reference']} | {v['tokens']:,} | {v['supervised_tokens']:,} |"
              for r, v in tm["runs"].items()]
    if "difference" in tm:
        lines += ["", f"Largest difference to the reference: {tm['difference']:,} tokens "
                      f"({'matched within one sequence' if tm['matched_within_one_sequence'] else 'NOT MATCHED'})."]
    with open(md, "a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    if tm.get("matched_within_one_sequence") is False:
        raise FitrainError(f"the runs' token counts differ from their references by up to {tm['difference']} "
                           f"(> one sequence of {tm['seq_len']}): {tm['runs']}; the report is at {md}")
    return {"report": str(md), "token_matching": tm}


Runner = Callable[[ExperimentConfig, ExperimentStep, "int | None"], dict]


# ----------------------------------------------------------------------------------- the same, by hand
def step_command(cfg: ExperimentConfig, step: ExperimentStep) -> list[str]:
    """The single ``fitrain`` command that does what ``step`` does (derived settings as ``key=value``
    overrides of the defaults; ``{shard}`` stands for the array task's shard)."""
    from fitrain.core.config import overrides_from_defaults

    kind = step.name.split("-", 1)[0]
    if kind == "tokenizer":
        return ["fitrain", "tokenizer", "train", *overrides_from_defaults(tokenizer_config(cfg, check=False))]
    if kind == "data_gen":
        cmd = ["fitrain", "data-gen", "run", "--stages", ",".join(data_gen_stages(step))]
        cmd += ["--task", "{shard}"] if step.shards else []
        return cmd + overrides_from_defaults(data_gen_config(cfg, check=False))
    if kind == "prepare":
        return ["fitrain", "prepare", *overrides_from_defaults(prepare_config(cfg, _arm_of(step), check=False))]
    if kind == "train":
        run = _step_run(step)
        return ["fitrain", "train", *overrides_from_defaults(train_config(cfg, run.arm, run))]
    if kind == "eval":
        run = _step_run(step)
        return ["fitrain", "eval", *overrides_from_defaults(eval_config(cfg, run.arm, check=False, run=run))]
    # corpus, report, an arm's own data (source-, generate-, pairs-) and the head-to-head judgings do a little
    # more than one component (a check, a merge, data_gen's shard runner around the baseline generator)
    cmd = ["fitrain", "experiment", str(cfg.layout.config), "--step", step.name]
    return cmd + (["--shard", "{shard}"] if step.shards else [])


def shell_line(argv: list[str]) -> str:
    return " ".join(a if a == "{shard}" else shlex.quote(a) for a in argv)
