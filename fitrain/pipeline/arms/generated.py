"""The ``generated`` arm: a synthetic corpus made from the experiment's own documents (``method``:
``qa_appended`` | ``rephrase``; ``llm``; ``generate`` options), through data_gen's LLM client layer and shard
runner (data_gen/baselines.py; ``llm.backend: extractive`` is the offline fallback). Its ``generate-<arm>``
step is a Slurm array: one task per contiguous range of ``data_gen.shards_per_task`` training shards (one
model server start each)."""
from __future__ import annotations

from dataclasses import dataclass, field

from data_gen.baselines import METHODS, GenerateOptions
from fitrain.core.errors import FitrainError
from fitrain.core.llm import LLMConfig
from fitrain.pipeline.arms.base import ArmKind, ArmSpec
from fitrain.pipeline.configs import data_gen_config
from fitrain.pipeline.experiment import ExperimentConfig, ExperimentStep, task_count, training_shards


@dataclass
class GeneratedSpec(ArmSpec):
    method: str = ""                       # qa_appended | rephrase
    llm: LLMConfig = field(default_factory=LLMConfig)
    generate: GenerateOptions = field(default_factory=GenerateOptions)


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


class GeneratedKind(ArmKind):
    name, settings, label = "generated", GeneratedSpec, "a corpus generated from the experiment's documents"
    beyond_paper = True  # fitrain's own baselines (the paper trained the released corpora), marked in the report

    def check(self, spec, arms) -> None:
        who = f"arm '{spec.name}'"
        if spec.method not in METHODS:
            raise FitrainError(f"{who}: method must be one of {list(METHODS)}, got '{spec.method}'")
        if spec.llm.backend == "openai" and not spec.llm.model:
            raise FitrainError(f"{who}: llm.model is empty; name the served model, or use llm.backend=extractive "
                               "(the offline fallback)")

    def steps(self, cfg, arms, spec) -> list[ExperimentStep]:
        k = training_shards(cfg)
        tasks = task_count(cfg, k)
        return [ExperimentStep(f"generate-{spec.name}", ["corpus"], kind="data_gen", shards=tasks if tasks > 1 else 0,
                               arm=spec.name, role="generate", runner=generate_step,
                               describe=f"{spec.method} baseline from the corpus ({spec.llm.backend}, {k} document "
                                        f"shard(s), {cfg.data_gen.shards_per_task} per task)")]

    def documents_glob(self, cfg, spec) -> str:
        return str(cfg.layout.arm_data(spec.name) / "shard-*" / "documents.parquet")

    def describe(self, arms, spec) -> str:
        return f"{spec.method} via {spec.llm.backend}"

    def prepare_what(self, arms, spec) -> str:
        return f"{spec.method} documents"


KIND = GeneratedKind()
