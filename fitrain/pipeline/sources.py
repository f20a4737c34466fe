"""The steps that write an arm's own data under ``arms/<arm>/`` before its prepare:

* ``source-<arm>`` of a corpus arm: the user's files in their released layout (IPT, Nemotron-CC, any text
  column; fitrain.data.corpora) normalised into document parquet files, file by file;
* ``source-<arm>`` of a mixture arm: documents drawn from its weighted sources to the budget's tokens,
  counted with the experiment's tokenizer (fitrain.data.corpora.draw_mixture);
* ``generate-<arm>``: a generated baseline (data_gen/baselines.py) over data_gen's document shards, one
  Slurm array task per contiguous range of ``data_gen.shards_per_task`` shards (one model server start each);
* ``pairs-<arm>``: an fi variant whose judge threshold is below data_gen's (the no-judge ablation): data_gen's
  write stage run again over the judged shards with the arm's threshold.
"""
from __future__ import annotations

from typing import Callable, Iterator

from fitrain.core.accounting import Rejects
from fitrain.core.errors import FitrainError
from fitrain.data.records import Document
from fitrain.pipeline.arms import ArmSpec, MixtureSource
from fitrain.pipeline.graph import ExperimentConfig, ExperimentStep, training_shards
from fitrain.pipeline.configs import arm_documents_glob, data_gen_config, prepare_config


def check_arm_inputs(cfg: ExperimentConfig, arms: set[str] | None = None) -> None:
    """Before any step runs: every corpus arm's (and mixture source's) files exist; the error names the arm.
    ``arms``: only these (the arms whose ``source-`` step is still to run; None: all)."""
    from fitrain.data.records import expand_paths

    for a in cfg.arm_set().specs:
        if arms is not None and a.name not in arms:
            continue
        patterns = list(a.paths) + [p for s in a.sources for p in s.paths]
        try:
            expand_paths(patterns) if patterns else None
        except FitrainError as e:
            raise FitrainError(f"arm '{a.name}': corpus not found: {e}") from None


def arm_documents(cfg: ExperimentConfig, name: str) -> Callable[[], Iterator[Document]]:
    """The documents a (document) arm trains on, as an iterator factory, read from its own files."""
    from fitrain.data.records import DocumentPairs, InputConfig, iter_document_pairs, iter_documents

    a = cfg.arm_set()[name]
    if a.kind == "documents":
        inp = prepare_config(cfg, name).input

        def from_pairs() -> Iterator[Document]:
            groups: Iterator[DocumentPairs] = iter_document_pairs(inp, Rejects())
            return (g.document for g in groups if g.document.text)
        return from_pairs
    inp = InputConfig(paths=[arm_documents_glob(cfg, a)], kind="documents", text_column="text", id_column="doc_id")
    return lambda: iter_documents(inp, Rejects())


def _source_documents(cfg: ExperimentConfig, s: MixtureSource) -> Callable[[], Iterator[Document]]:
    if s.arm:
        return arm_documents(cfg, s.arm)
    from fitrain.data.corpora import iter_corpus

    return lambda: iter_corpus(s.paths, s.reader, Rejects())


def mixture_target(cfg: ExperimentConfig, arm: ArmSpec) -> int:
    """The tokens a mixture draws: what its runs will train (the root reference's budget, or train.max_tokens)."""
    from fitrain.data.manifest import Manifest

    if cfg.explicit_budget:
        if not cfg.train.max_tokens:
            raise FitrainError(f"arm '{arm.name}': a mixture with an explicit budget needs train.max_tokens")
        return int(cfg.train.max_tokens)
    root = cfg.arm_set().root(arm.name)
    m = Manifest.read(cfg.layout.prepared(root), f"the reference arm '{root}'")
    return int(round(m.counts.total_tokens * cfg.train.budget_from_epochs))


def source_step(cfg: ExperimentConfig, step: ExperimentStep, shard: int | None) -> dict:
    from fitrain.data.corpora import MixturePart, draw_mixture, normalise

    a = cfg.arm_set()[step.arm]
    out = cfg.layout.arm_data(a.name)
    if a.kind == "corpus":
        check_arm_inputs(cfg)
        return normalise(a.paths, a.reader, out, log=print)
    from fitrain.data.formatting import Formatter
    from fitrain.data.tokenizer import load_tokenizer

    pc = prepare_config(cfg, a.name, check=False)
    fmt = Formatter(load_tokenizer(cfg.layout.tokenizer), pc.format)  # documents counted exactly as prepare will
    parts = [MixturePart(s.arm or f"paths{j}", _source_documents(cfg, s), s.weight) for j, s in enumerate(a.sources)]
    for old in out.glob("part-*.parquet"):
        old.unlink()
    return draw_mixture(parts, mixture_target(cfg, a), fmt.document_token_counts, out)


def generate_step(cfg: ExperimentConfig, step: ExperimentStep, shard: int | None) -> dict:
    """``shard``: the array task, which runs its contiguous range of document shards (data_gen.shards)."""
    from data_gen.baselines import run
    from data_gen.shards import task_shards

    a = cfg.arm_set()[step.arm]
    n = training_shards(cfg)
    shards = None if shard is None else task_shards(n, cfg.data_gen.shards_per_task, shard)
    status = run(a.method, a.llm, a.generate, data_gen_config(cfg), cfg.layout.arm_data(a.name), n,
                 seed=cfg.seed, shard=shards, log=print)
    stats = status.get("stats", {})
    if status.get("complete") and not stats.get("out"):
        raise FitrainError(f"arm '{a.name}': the {a.method} generator kept no document "
                           f"(rejected: {stats.get('rejected')}); see {cfg.layout.arm_data(a.name)}")
    return {k: status.get(k) for k in ("ran", "skipped", "complete")} | ({"documents": stats.get("out")} if stats else {})


def pairs_step(cfg: ExperimentConfig, step: ExperimentStep, shard: int | None) -> dict:
    from data_gen.write import run

    a = cfg.arm_set()[step.arm]
    dg = data_gen_config(cfg)
    dg.judge.min_score = float(a.min_judge_score)  # type: ignore[arg-type]
    layout = cfg.layout
    status = run(dg, layout.arm_data(a.name), layout.data_gen("judged"), layout.data_gen("matches"), None, print)
    if not status.get("complete"):
        raise FitrainError(f"arm '{a.name}': re-writing the judged pairs did not finish: {status}")
    return {"pairs": status["stats"].get("out"), "filtered": status["stats"].get("filtered")}
