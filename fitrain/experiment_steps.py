"""The step functions of an experiment: each derives one component's config from the experiment's
(paths from the run layout, the shared seed, the matched budget) and calls that component's entry point.
Nothing here re-implements a component; see fitrain/INTERFACES.md for the functions called."""
from __future__ import annotations

import copy
import os
from pathlib import Path

from fitrain.errors import FitrainError
from fitrain.experiment import ExperimentConfig, Step, run_name
from fitrain.io import read_json
from fitrain.runs import RunLayout


def layout(cfg: ExperimentConfig) -> RunLayout:
    return RunLayout.of(cfg.root)


def corpus_dir(cfg: ExperimentConfig) -> Path:
    return cfg.root / "corpus"


def corpus_files(cfg: ExperimentConfig) -> list[str]:
    from fitrain.corpus import corpus_paths

    return corpus_paths(cfg.corpus, corpus_dir(cfg))


def tokenizer_dir(cfg: ExperimentConfig) -> Path:
    return cfg.root / "tokenizer"


def final_pairs(cfg: ExperimentConfig, heldout: bool = False) -> list[str]:
    """The data_gen output files of the training shards (or of the held-out shards)."""
    from data_gen.shards import shard_dir

    n, h = max(1, cfg.data_gen.num_shards), cfg.heldout_shards
    ids = range(n - h, n) if heldout else range(n - h)
    final = layout(cfg).data_gen("final")
    files = [shard_dir(final, i) / "pairs.parquet" for i in ids]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FitrainError(f"data_gen wrote no pairs file for {missing}; rerun the data_gen step")
    return [str(f) for f in files]


# ------------------------------------------------------------------------------------------------- steps
def corpus_step(cfg: ExperimentConfig, step: Step, shard: int | None) -> dict:
    from fitrain.corpus import write_builtin_corpus
    from fitrain.records import InputConfig, iter_documents

    if cfg.corpus.builtin:
        return write_builtin_corpus(cfg.corpus, corpus_dir(cfg))
    files = corpus_files(cfg)  # a missing corpus fails here, naming the pattern
    from fitrain.accounting import Rejects

    rejects = Rejects()
    docs = sum(1 for _ in iter_documents(InputConfig(paths=files, kind="documents", text_column=cfg.corpus.text_column,
                                                     id_column=cfg.corpus.id_column), rejects))
    if not docs:
        raise FitrainError(f"the corpus {cfg.corpus.paths} holds no readable documents ({rejects.summary()})")
    return {"documents": docs, "files": files, "rejects": rejects.to_dict()}


def tokenizer_step(cfg: ExperimentConfig, step: Step, shard: int | None) -> dict:
    from fitrain.records import InputConfig
    from fitrain.tokenizer import train_tokenizer

    tc = copy.deepcopy(cfg.tokenizer)
    tc.files = []
    tc.input = InputConfig(paths=corpus_files(cfg), kind="documents", text_column=cfg.corpus.text_column,
                           id_column=cfg.corpus.id_column)
    tc.out = str(tokenizer_dir(cfg))
    return {"tokenizer": str(train_tokenizer(tc))}


def data_gen_config(cfg: ExperimentConfig):
    dg = copy.deepcopy(cfg.data_gen)
    dg.run_dir = str(cfg.root)
    dg.seed = cfg.seed
    dg.match.documents = corpus_files(cfg)
    dg.match.builtin_corpus = False
    dg.match.text_column = cfg.corpus.text_column
    dg.match.id_column = cfg.corpus.id_column
    dg.templatize.bank = [_packaged(b) for b in dg.templatize.bank]
    return dg


def _packaged(path: str) -> str:
    """A relative path that is not under the working directory but is in the source tree (the shipped
    template bank), made absolute, so recipes work from any directory."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return path
    cand = Path(__file__).resolve().parents[1] / p
    return str(cand) if cand.exists() else path


def data_gen_step(cfg: ExperimentConfig, step: Step, shard: int | None) -> dict:
    from data_gen.pipeline import run

    global_stages = ["templatize", "index"]
    stages = global_stages if step.name == "data_gen-templates" else ["match", "instantiate", "judge", "write"]
    status = run(data_gen_config(cfg), stages=stages, shard=shard)
    out = {s: {k: v for k, v in st.items() if k in ("complete", "ran", "skipped", "wall_s")} for s, st in status.items()}
    if step.name == "data_gen" and status.get("write", {}).get("complete"):
        stats = status["write"].get("stats", {})
        out["pairs"] = stats.get("out", stats.get("outputs"))
        if not out["pairs"]:
            raise FitrainError("data_gen kept no pairs (every match/instantiation/judgment was rejected); see "
                               f"{cfg.root / 'data_gen' / 'report.json'} and lower data_gen.match.threshold or "
                               "raise corpus.max_documents")
    return out


def _prepare_config(cfg: ExperimentConfig, arm: str):
    pc = copy.deepcopy(cfg.prepare)
    pc.tokenizer = str(tokenizer_dir(cfg))
    pc.out = str(layout(cfg).prepared(arm))
    pc.input.kind = "pairs"
    pc.input.paths = final_pairs(cfg, heldout=arm == "heldout")
    pc.budget.seed = cfg.seed
    pc.budget.enabled = arm == "fi"
    pc.documents_from_pairs = arm == "standard"
    pc.budget_from = str(layout(cfg).prepared("fi")) if arm == "standard" else ""
    return pc


def prepare_step(cfg: ExperimentConfig, step: Step, shard: int | None) -> dict:
    from fitrain.prepare import prepare

    arm = step.name.split("-", 1)[1]
    m = prepare(_prepare_config(cfg, arm))
    return {"counts": m["counts"], "budget": m.get("budget"), "matched_budget": m.get("matched_budget"),
            "fingerprint": m["fingerprint"]}


def train_config(cfg: ExperimentConfig, arm: str):
    """Both arms: the same model, optimiser, seed and total-token budget (the FI arm's prepared tokens)."""
    tc = copy.deepcopy(cfg.train)
    tc.arm = arm
    tc.seed = cfg.seed
    tc.run_dir = str(layout(cfg).train(arm))
    tc.tokenizer = str(tokenizer_dir(cfg))
    tc.data.path = str(layout(cfg).prepared(arm))
    if cfg.heldout_shards:
        tc.data.val_path = str(layout(cfg).prepared("heldout"))
    if not (tc.max_tokens or tc.max_supervised_tokens or tc.max_steps):
        tc.budget_from = str(layout(cfg).prepared("fi"))  # matched total tokens, exact cut for both arms
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


def train_step(cfg: ExperimentConfig, step: Step, shard: int | None) -> dict:
    from fitrain.train import train

    s = train(train_config(cfg, step.name.split("-", 1)[1]))
    if s.get("status") not in (None, "finished"):
        # preempted: the job was requeued (or must be rerun); no completion marker
        raise SystemExit(f"{step.name}: training stopped with status '{s.get('status')}'; it resumes from "
                         f"{s.get('checkpoint')} when the step runs again")
    return {k: s.get(k) for k in ("steps", "tokens", "supervised_tokens", "final_loss", "val_loss", "hf_dir")}


def eval_config(cfg: ExperimentConfig, arm: str):
    ec = copy.deepcopy(cfg.eval)
    ec.model = str(layout(cfg).train(arm))
    ec.arm = arm
    ec.out = str(layout(cfg).eval(arm))
    if ec.pairwise.enabled and arm == "fi" and "standard" in cfg.arms and not ec.pairwise.baseline_outputs:
        ec.pairwise.baseline_outputs = str(layout(cfg).eval("standard"))
    if ec.decontamination.enabled and not ec.decontamination.train.paths:
        ec.decontamination.train.paths = final_pairs(cfg)
    return ec


def eval_step(cfg: ExperimentConfig, step: Step, shard: int | None) -> dict:
    from fitrain_eval.run import evaluate

    results = evaluate(eval_config(cfg, step.name.split("-", 1)[1]))
    return {"metrics": len(results)}


def token_matching(cfg: ExperimentConfig) -> dict:
    """The trained tokens of each arm and whether they agree within one sequence."""
    arms = {}
    for arm in cfg.arms:
        p = layout(cfg).train(arm) / "summary.json"
        if p.is_file():
            s = read_json(p)
            arms[arm] = {"tokens": int(s.get("tokens") or 0), "supervised_tokens": int(s.get("supervised_tokens") or 0)}
    seq_len = cfg.prepare.pack.seq_len
    out = {"arms": arms, "seq_len": seq_len}
    if len(arms) >= 2:
        t = [a["tokens"] for a in arms.values()]
        out["difference"] = max(t) - min(t)
        out["matched_within_one_sequence"] = out["difference"] <= seq_len
    return out


def report_step(cfg: ExperimentConfig, step: Step, shard: int | None) -> dict:
    from fitrain.io import write_json
    from fitrain_eval.report import make_report

    out = layout(cfg).report()
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


RUNNERS = {"corpus": corpus_step, "tokenizer": tokenizer_step, "data_gen": data_gen_step,
           "prepare": prepare_step, "train": train_step, "eval": eval_step, "report": report_step}
