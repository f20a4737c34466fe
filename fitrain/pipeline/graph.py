"""An experiment's graph of steps, from source documents to a report, for any number of named arms
(fitrain.pipeline.arms), each trained with every seed.

    corpus -> data_gen ---------------------------------> prepare-fi ----> train-fi[.seedK] -> eval-fi... -\\
           \\-> tokenizer -------------------------------/  |  (budget)                                      |
                      prepare-standard (same documents) <--/-> train-standard... -> eval-standard... ----------> report
      source-<corpus arm>  -> prepare-<arm> -> train-<arm>... -> eval-<arm>...  (h2h-fi-vs-<arm> when pairwise)
      generate-<arm> (shards) -/      (every train step's budget: the reference's prepared tokens)

Every arm uses the same tokenizer, the same model and optimiser settings and the same number of *total*
training tokens: its reference arm's (fitrain/docs/method.md, "Token-matched baselines"). With several
``seeds`` every arm trains once per seed (data order and initialisation; prepared data stays per arm), runs
are named ``<arm>.seed<k>`` (fitrain.core.layout.run_id) and evaluated into ``eval/<run>``.

The steps that write an arm's own data (``source-``, ``generate-``, ``pairs-``, or a plug-in kind's) come
from the arm's kind (fitrain.pipeline.arms); the rest are here, each with its runner (fitrain.pipeline.runners)
and its equivalent single ``fitrain`` command. This module only describes the graph; running it is
fitrain.pipeline.run, Slurm submission fitrain.pipeline.submit.
"""
from __future__ import annotations

from fitrain.core.errors import FitrainError
from fitrain.pipeline import runners as _r
from fitrain.pipeline.arms import ArmSet, Run
from fitrain.pipeline.experiment import (ExperimentConfig, ExperimentStep, Runner,  # noqa: F401  (re-exported)
                                         run_name, step_done, task_count)

# the runners and by-hand commands of the steps every experiment has (an arm kind's steps carry their own)
RUNNERS: dict[str, Runner] = {
    "corpus": _r.corpus_step, "tokenizer": _r.tokenizer_step, "data_gen": _r.data_gen_step,
    "prepare": _r.prepare_step, "train": _r.train_step, "eval": _r.eval_step, "h2h": _r.head_to_head_step,
    "report": _r.report_step}
COMMANDS = {"tokenizer": _r.tokenizer_command, "data_gen": _r.data_gen_command, "prepare": _r.prepare_command,
            "train": _r.train_command, "eval": _r.eval_command}


def _step(name: str, deps: list[str], role: str, **kw) -> ExperimentStep:
    return ExperimentStep(name, list(dict.fromkeys(deps)), role=role, runner=RUNNERS[role],
                          command=COMMANDS.get(role), **kw)


def needs_data_gen(cfg: ExperimentConfig, arms: ArmSet) -> bool:
    return any(arms.kind(n).data_gen for n in arms.names) or cfg.heldout_shards > 0


def data_gen_tasks(cfg: ExperimentConfig) -> int:
    """Array tasks of the data_gen step: each runs a contiguous range of shards_per_task document shards."""
    return task_count(cfg, cfg.data_gen.num_shards)


def _arm_steps(cfg: ExperimentConfig, arms: ArmSet) -> list[ExperimentStep]:
    out: list[ExperimentStep] = []
    for a in arms.specs:
        kind = arms.kind(a.name)
        out += kind.steps(cfg, arms, a)
        out.append(_step(f"prepare-{a.name}", kind.prepare_deps(cfg, arms, a), "prepare", arm=a.name,
                         describe=f"{kind.prepare_what(arms, a)} -> token shards"))
    return out


def experiment_steps(cfg: ExperimentConfig) -> list[ExperimentStep]:
    """The experiment's steps in dependency order; with corpus blocks, every block's (``<block>.<step>``)
    and one report over them (fitrain.pipeline.blocks)."""
    if cfg.blocks:
        from fitrain.pipeline.blocks import block_config, block_names, blocks_report_step, prefixed

        steps = [s for b in block_names(cfg) for s in prefixed(b, experiment_steps(block_config(cfg, b)))]
        return steps + [ExperimentStep("report", [s.name for s in steps if s.local.name == "report"], role="report",
                                       runner=blocks_report_step, describe=f"the report of {len(cfg.blocks)} "
                                       "blocks, each block's differences within the block")]
    arms = cfg.arm_set()
    dg_shards = max(1, cfg.data_gen.num_shards)
    dg_tasks = data_gen_tasks(cfg)
    steps = [_step("corpus", [], "corpus", describe="write the built-in corpus" if cfg.corpus.builtin
                   else f"check the corpus files {cfg.corpus.paths}"),
             _step("tokenizer", ["corpus"], "tokenizer",
                   describe=f"save the pretrained tokenizer {cfg.tokenizer.pretrained}" if cfg.tokenizer.pretrained
                   else f"train a {cfg.tokenizer.vocab_size}-token BPE on the corpus")]
    if needs_data_gen(cfg, arms):
        steps += [_step("data_gen-templates", ["corpus"], "data_gen", kind="data_gen",
                        describe="template bank/queries -> templates -> index"),
                  _step("data_gen", ["data_gen-templates", "tokenizer"], "data_gen", kind="data_gen",  # counts tokens
                        shards=dg_tasks if dg_tasks > 1 else 0,
                        describe=f"match, instantiate, judge, write ({dg_shards} document shard(s), "
                                 f"{cfg.data_gen.shards_per_task} per task, stage after stage)")]
    steps += _arm_steps(cfg, arms)
    if cfg.heldout_shards:
        steps.append(_step("prepare-heldout", ["data_gen", "tokenizer"], "prepare",
                           describe=f"held-out pairs ({cfg.heldout_shards} data_gen shard(s)) for the answer loss"))
    runs = cfg.runs()
    for r in runs:
        root = arms.root(r.arm)
        deps = [f"prepare-{r.arm}"] + ([f"prepare-{root}"] if root != r.arm and not cfg.explicit_budget else [])
        deps += ["prepare-heldout"] if cfg.heldout_shards else []
        steps.append(_step(f"train-{r.id}", deps, "train", kind="train", distributed=True, arm=r.arm, run=r.id,
                           seed=r.seed, describe=f"train {r.id} ({run_name(cfg, r.arm, r.id)}, seed {r.seed})"))
    for r in runs:
        steps.append(_step(f"eval-{r.id}", [f"train-{r.id}"], "eval", arm=r.arm, run=r.id, seed=r.seed,
                           describe=f"evaluate {r.id}"))
    steps += _head_to_head_steps(cfg, arms, runs)
    steps.append(_step("report", [s.name for s in steps if s.role in ("eval", "h2h")], "report",
                       describe=f"tables and plots of {len(arms.names)} arm(s), {len(runs)} run(s)"))
    return _in_dependency_order(steps)


def _head_to_head_steps(cfg: ExperimentConfig, arms: ArmSet, runs: list[Run]) -> list[ExperimentStep]:
    """The primary arm judged against every other arm, seed by seed, one step per pair (so an added arm adds
    its own step); a primary run's steps are chained because they write into the same eval directory."""
    if not cfg.eval.pairwise.enabled:
        return []
    out = []
    for p in (r for r in runs if r.arm == arms.primary):
        prev = f"eval-{p.id}"
        for b in (r for r in runs if r.arm != arms.primary and r.seed == p.seed):
            name = f"h2h-{p.id}-vs-{b.id}"
            out.append(_step(name, [prev, f"eval-{p.id}", f"eval-{b.id}"], "h2h", arm=p.arm, run=p.id, seed=p.seed,
                             baseline=b.id, describe=f"{p.id} vs {b.id}, pairwise judge"))
            prev = name
    return out


def _in_dependency_order(steps: list[ExperimentStep]) -> list[ExperimentStep]:
    """A stable topological order: each step as early as listed, after its dependencies."""
    by_name = {s.name: s for s in steps}
    if len(by_name) != len(steps):
        raise FitrainError(f"internal: two steps share a name in {[s.name for s in steps]}")
    missing = {d for s in steps for d in s.deps if d not in by_name}
    if missing:
        raise FitrainError(f"internal: steps depend on unknown steps {sorted(missing)}")
    placed: dict[str, None] = {}
    pending = list(steps)
    while pending:
        step = next((s for s in pending if all(d in placed for d in s.deps)), None)
        if step is None:
            raise FitrainError(f"internal: the steps {[s.name for s in pending]} depend on each other")
        placed[step.name] = None
        pending.remove(step)
    return [by_name[n] for n in placed]
