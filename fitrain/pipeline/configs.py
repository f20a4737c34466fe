"""Each experiment step's component config, derived from the experiment's: paths from the run layout, the
shared seed, the matched budget, the corpus file list frozen by the corpus step. fitrain.pipeline.runners
calls the components with them; ``fitrain experiment --dry-run`` prints them as ``key=value`` overrides.
"""
from __future__ import annotations

import copy
import os
from typing import Any

from fitrain.core.config import merge_settings  # noqa: F401  (re-exported: its home is fitrain.core.config)
from fitrain.core.errors import FitrainError
from fitrain.core.io import SUCCESS, read_json
from fitrain.pipeline.arms import Run
from fitrain.pipeline.experiment import ExperimentConfig, ExperimentStep, run_name
from fitrain_eval.benchmarks import benchmarks

HEAD_TO_HEAD = "pairwise"   # the benchmark whose judgings compare two runs (AlpacaEval's, eval.pairwise)


def corpus_files(cfg: ExperimentConfig, check: bool = True) -> list[str]:
    """The document files the experiment reads (``check=False``: the patterns, unexpanded, for a dry run)."""
    from fitrain.data.corpus import corpus_paths

    if not check and not cfg.corpus.builtin:
        return list(cfg.corpus.paths)
    files = corpus_paths(cfg.corpus, cfg.layout.corpus)
    if not cfg.corpus.builtin:
        _check_frozen_corpus(cfg, files)
    return files


def corpus_sizes(files: list[str]) -> dict[str, int]:
    import os

    return {f: os.path.getsize(f) for f in files}


def _check_frozen_corpus(cfg: ExperimentConfig, files: list[str]) -> None:
    """Once the corpus step has run, its file list (and each file's size) is the corpus: data_gen's shards and
    every arm read document ``j`` of that list (shard ``j % num_shards``), so a file added, removed or changed
    afterwards would silently move documents between shards that are already finished."""
    marker = cfg.layout.step_marker_dir("corpus") / SUCCESS
    if not marker.is_file():
        return
    recorded = read_json(marker).get("sizes")
    if recorded is None:
        return
    now = corpus_sizes(files)
    if now != recorded:
        added = sorted(set(now) - set(recorded))
        removed = sorted(set(recorded) - set(now))
        changed = sorted(f for f in set(now) & set(recorded) if now[f] != recorded[f])
        raise FitrainError(f"the corpus files changed since the corpus step recorded them (added {added[:3]}, "
                           f"removed {removed[:3]}, changed size {changed[:3]}); finished shards were cut from "
                           f"the recorded list: restore the files, or start a new run_dir")


def final_pairs(cfg: ExperimentConfig, heldout: bool = False, check: bool = True, stage_dir=None) -> list[str]:
    """The data_gen output files of the training shards (or of the held-out shards); ``stage_dir``: another
    directory of the same shard layout (an fi variant's re-written pairs)."""
    from data_gen.shards import shard_dir

    n, h = max(1, cfg.data_gen.num_shards), cfg.heldout_shards
    ids = range(n - h, n) if heldout else range(n - h)
    final = stage_dir or cfg.layout.data_gen("final")
    if not check:  # a by-hand command: a few globs matching exactly these shards, in order (not every shard)
        return [str(shard_dir(final, 0)).replace("shard-00000", f"shard-{g}") + "/pairs.parquet"
                for g in range_globs(ids.start, ids.stop - 1, 5)]
    files = [shard_dir(final, i) / "pairs.parquet" for i in ids]
    missing = [str(f) for f in files if not f.is_file()]
    if check and missing:
        raise FitrainError(f"data_gen wrote no pairs file for {missing}; rerun the data_gen step")
    return [str(f) for f in files]


def range_globs(lo: int, hi: int, width: int) -> list[str]:
    """Glob patterns (character classes) matching exactly the zero-padded numbers ``lo..hi`` of ``width``
    digits, in ascending order: ``range_globs(0, 1022, 5)`` -> ``00[0-9][0-9][0-9]``, ``010[0-1][0-9]``,
    ``0102[0-2]``."""
    if lo > hi:
        return []
    if width == 0:
        return [""]
    p = 10 ** (width - 1)
    (dlo, rlo), (dhi, rhi) = divmod(lo, p), divmod(hi, p)
    if dlo == dhi:
        return [f"{dlo}{s}" for s in range_globs(rlo, rhi, width - 1)]
    head = [f"{dlo}{s}" for s in range_globs(rlo, p - 1, width - 1)] if rlo else []
    tail = [f"{dhi}{s}" for s in range_globs(0, rhi, width - 1)] if rhi != p - 1 else []
    first, last = dlo + (1 if rlo else 0), dhi - (1 if rhi != p - 1 else 0)
    mid = [(str(first) if first == last else f"[{first}-{last}]") + "[0-9]" * (width - 1)] if first <= last else []
    return head + mid + tail


def tokenizer_config(cfg: ExperimentConfig, check: bool = True):
    from fitrain.data.records import InputConfig

    tc = copy.deepcopy(cfg.tokenizer)
    tc.files = []
    tc.out = str(cfg.layout.tokenizer)
    if tc.pretrained:  # the corpus is not read, and no BPE is trained
        tc.vocab_size, tc.max_chars = type(tc)().vocab_size, 0
        return tc
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


def prepare_config(cfg: ExperimentConfig, arm: str, check: bool = True):
    """``arm``: an arm's name, or ``heldout`` (the held-out shards' pairs, unbudgeted)."""
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
    pc = arms.kind(arm).prepare_input(cfg, arms, a, pc, check)  # what the arm's kind reads
    pc.out = str(layout.prepared(arm))
    return merge_settings(pc, a.prepare, f"arm '{arm}': prepare") if a.prepare else pc


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
    for b in benchmarks():  # every other benchmark off (fitrain_eval.benchmarks)
        if b.name != HEAD_TO_HEAD:
            b.disable(ec)
    ec.decontamination.enabled = False
    ec.pairwise.enabled = True
    ec.pairwise.baseline_outputs, ec.pairwise.baselines = str(layout.eval(step.baseline)), []
    ec.pairwise.model_outputs = str(layout.eval(step.run))  # the eval step's answers, judged, not generated again
    ec.pairwise.baseline_name = parse_run_id(step.baseline)[0]  # metrics pairwise/<arm>/..., the same for every seed
    return ec
