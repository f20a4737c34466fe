"""``evaluate(cfg)``: one checkpoint through every enabled evaluation, flat metrics in ``results.json``.

``model`` may be an exported HF directory, a train arm directory (``train/<arm>``: its ``hf/``, else its
latest checkpoint exported), or a checkpoint (a ``.ckpt`` file or checkpoint directory, exported first
with :func:`fitrain.train.export.export`). That makes ``fitrain eval`` usable as one job per saved checkpoint.

Outputs go to ``out`` (default: ``<experiment>/eval/<arm>`` for a model inside a run layout, and
``.../eval/<arm>/checkpoints/<name>`` for an intermediate checkpoint). ``results.json`` is merged with
what earlier jobs wrote there, so separate jobs (lm-eval, judges) can fill it piece by piece, and written
after each benchmark, so a later failure keeps the earlier results; it is valid JSON (a metric that is not a finite number is left out and counted, never written as NaN). Per-item scores
for the report's paired statistics go to ``items/`` (fitrain_eval.items).

Before any model runs, every enabled benchmark's data must be there and the judge (when a judged benchmark
needs one) must answer and serve ``judge.llm.model``: a one-line error, not hours of lm-eval lost.

The model is prompted in the format its export recorded (``generation.format_from_model``); the same format
renders lm-eval's instruction-format requests.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fitrain.core.accounting import Rejects
from fitrain.core.errors import FitrainError
from fitrain.core.layout import TrainDir
from fitrain_eval.decontamination import DecontaminationConfig
from fitrain_eval.generate import GenerationConfig
from fitrain_eval.harness import HarnessConfig
from fitrain_eval.heldout import HeldoutConfig
from fitrain_eval.judges.common import JudgeConfig
from fitrain_eval.judges.mixeval import MixEvalConfig
from fitrain_eval.judges.mtbench101 import MTBench101Config
from fitrain_eval.judges.pairwise import PairwiseConfig


@dataclass
class EvalConfig:
    model: str = ""                  # HF dir | train/<arm> dir | checkpoint (.ckpt or dir)
    arm: str = ""                    # name in reports and AlpacaEval outputs ('' = from the path)
    out: str = ""                    # '' = <experiment>/eval/<arm>[/checkpoints/<name>]
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    # a judged benchmark's own judge settings, merged over `judge` (fitrain_eval.judges.common.judge_config_for):
    # e.g. {pairwise: {llm: {model: gpt-4-turbo}}}; keys: mixeval, mtbench101, pairwise
    judges: dict[str, Any] = field(default_factory=dict)
    lm_eval: HarnessConfig = field(default_factory=HarnessConfig)    # runs when lm_eval.tasks is set
    mixeval: MixEvalConfig = field(default_factory=MixEvalConfig)
    mtbench101: MTBench101Config = field(default_factory=MTBench101Config)
    pairwise: PairwiseConfig = field(default_factory=PairwiseConfig)
    heldout: HeldoutConfig = field(default_factory=HeldoutConfig)   # per-item held-out answer loss
    decontamination: DecontaminationConfig = field(default_factory=DecontaminationConfig)
    overwrite: bool = False          # results of another model/settings in `out` are refused unless set (--overwrite)
    # settings of benchmarks registered from outside fitrain_eval, by name (fitrain_eval.benchmarks)
    plugins: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from fitrain_eval.judges.common import judge_config_for

        for name in self.judges:  # each benchmark's judge, merged and checked now, not after training
            judge_config_for(self, name)


@dataclass
class Target:
    hf_dir: Path | None     # None when a checkpoint still has to be exported
    checkpoint: Path | None
    arm: str
    out: Path


def locate(cfg: EvalConfig) -> Target:
    """Work out what ``cfg.model`` is, the arm name and the output directory."""
    if not cfg.model:
        raise FitrainError("no model given: model=<HF dir | train/<arm> dir | checkpoint>")
    p = Path(cfg.model)
    if not p.exists():
        raise FitrainError(f"checkpoint not found: {p}")
    p = p.resolve()
    hf, ckpt, sub = None, None, None
    as_run = TrainDir(p)
    if (p / "config.json").is_file():
        hf = p
    elif (as_run.hf / "config.json").is_file():
        hf = as_run.hf
    elif as_run.checkpoints.is_dir():
        ckpt = as_run.checkpoints
    elif p.suffix == ".ckpt" or (p / "meta.pt").exists() or p.name == "checkpoints":
        ckpt = p
        sub = None if p.name == "checkpoints" else p.stem
    else:
        raise FitrainError(f"{p} is neither an exported HF model (config.json), a train run directory (hf/ or "
                           "checkpoints/) nor a checkpoint (.ckpt or a checkpoint directory)")
    run = TrainDir.containing(p)
    arm = cfg.arm or (run.arm if run else (hf or p).name)
    experiment = run.experiment() if run else None
    if cfg.out:
        out = Path(cfg.out)
    elif experiment is not None:
        out = experiment.eval(arm)
        out = out / "checkpoints" / sub if sub else out
    else:
        out = Path("eval_out") / arm
    return Target(hf, ckpt, arm, out)


def resolve_model(t: Target) -> Path:
    if t.hf_dir is not None:
        return t.hf_dir
    from fitrain.train.checkpoint import latest_checkpoint
    from fitrain.train.export import export

    src = t.checkpoint
    if src.name == "checkpoints":
        src = latest_checkpoint(src)
        if src is None:
            raise FitrainError(f"{t.checkpoint} holds no checkpoint (no 'latest' marker); train first or pass one")
    dest = t.out / "hf_export" / src.stem   # one export per checkpoint: never a stale one
    if not (dest / "config.json").is_file():
        export(src, dest)
    return dest


def evaluate(cfg: EvalConfig) -> dict:
    """Run every enabled benchmark (fitrain_eval.benchmarks, in registry order), then decontamination; write
    ``results.json`` (merged), ``rejects.json`` and the config."""
    from fitrain.core.config import redact, to_dict
    from fitrain.core.io import write_json
    from fitrain_eval.generate import check_model_dir
    from fitrain_eval.scoring import check_scoring
    from fitrain_eval.benchmarks import EvalContext, benchmarks, enabled

    chosen = enabled(cfg)
    if not (chosen or cfg.decontamination.enabled):
        raise FitrainError("nothing to evaluate: set lm_eval.tasks, or enable one of "
                           f"{', '.join(b.name for b in benchmarks() if b.name != 'lm_eval')} or decontamination "
                           "(see recipes/eval/)")
    check_data(cfg)
    from fitrain_eval.judges.common import check_judge, judge_config_for, started_judges

    judge_cfgs = {b.name: judge_config_for(cfg, b.name) for b in chosen if b.needs_judge(cfg)}
    for jc in judge_cfgs.values():  # before any benchmark runs: an unreachable judge must not cost the lm-eval hours
        check_judge(jc)
    needs_model = bool(chosen)
    if needs_model or cfg.model:
        t = locate(cfg)
    else:  # decontamination alone looks at data, not at a model
        t = Target(None, None, cfg.arm or "data", Path(cfg.out or "eval_out/data"))
    t.out.mkdir(parents=True, exist_ok=True)
    model_dir = resolve_model(t) if needs_model else None
    if model_dir is not None:
        check_model_dir(str(model_dir))
        cfg = with_model_format(cfg, model_dir)
    check_scoring(t.out, cfg, model_dir, cfg.overwrite)  # never merge results of another model or settings
    (t.out / "eval_config.yaml").write_text(
        "# fitrain eval config (secrets redacted)\n" + _yaml(redact(to_dict(cfg))))
    rejects = Rejects()
    results = Results(t.out, rejects)

    _log(f"evaluating {model_dir} as '{t.arm}' -> {t.out}")
    ctx = EvalContext(cfg, model_dir, t.out, t.arm, rejects)
    with started_judges(judge_cfgs, t.out) as judges:  # a local judge server is stopped when they are done
        write_json(t.out / "judges.json", {n: {"model": j.model, "local_server": judge_cfgs[n].serve.enabled}
                                           for n, j in judges.items()})
        for b in chosen:
            _log(b.describe(cfg))
            ctx.judge = judges.get(b.name)
            results.add(b.run(ctx))

    if cfg.decontamination.enabled:
        from fitrain_eval.decontamination import benchmark_sets, decontaminate

        _log(f"decontamination: {', '.join(cfg.decontamination.benchmarks)}")
        sets = benchmark_sets(cfg.decontamination.benchmarks, cfg, rejects)
        m, details = decontaminate(cfg.decontamination, sets, rejects)
        write_json(t.out / "decontamination.json", details)
        results.add(m)

    merged = results.write()
    _log(f"wrote {results.path}" + (f"; rejected/counted: {rejects.summary()}" if rejects.total else ""))
    return merged


class Results:
    """This job's metrics, merged into ``<out>/results.json`` (over what earlier jobs wrote there, read again at
    each write) after every benchmark, atomically, with ``rejects.json``: a later failure keeps the earlier
    benchmarks' results. A metric that is not a finite number is left out and counted (``metric_not_finite``)."""

    def __init__(self, out: Path, rejects: Rejects):
        self.path, self.rejects = out / "results.json", rejects
        self.metrics: dict = {}
        self.dropped: set[str] = set()   # not finite: left out, and an earlier job's value for it removed

    def add(self, metrics: dict) -> None:
        import math

        for k, v in metrics.items():
            if isinstance(v, float) and not math.isfinite(v):
                self.rejects.add("metric_not_finite", k, str(v))
                self.metrics.pop(k, None)
                self.dropped.add(k)
            else:
                self.metrics[k] = v
                self.dropped.discard(k)
        self.write()

    def write(self) -> dict:
        from fitrain.core.io import write_json

        merged = merge_results(self.path.parent, self.metrics, self.dropped)
        write_json(self.path.parent / "rejects.json", self.rejects.to_dict())
        return merged


def merge_results(out: Path, metrics: dict, drop=()) -> dict:
    """``<out>/results.json`` updated with ``metrics`` (and without ``drop``), written atomically."""
    from fitrain.core.io import read_json, write_json

    path = Path(out) / "results.json"
    merged = read_json(path) if path.is_file() else {}
    merged.update(metrics)
    for k in drop:
        merged.pop(k, None)
    write_json(path, merged)
    return merged


def check_data(cfg: EvalConfig) -> None:
    """Every enabled benchmark's data is there, before any model runs (a one-line error naming the setting);
    and the data of every set decontaminated against."""
    from fitrain_eval.benchmarks import benchmarks
    from fitrain_eval.decontamination import check_benchmarks

    decon = set(cfg.decontamination.benchmarks) if cfg.decontamination.enabled else set()
    check_benchmarks(list(decon))
    for b in benchmarks():
        b.check_data(cfg, decon)


def with_model_format(cfg: EvalConfig, model_dir: Path) -> EvalConfig:
    """``cfg`` with the training format the model's export recorded (``generation.format_from_model``); the
    default stop sequence follows a custom template (the start of the next pair)."""
    import dataclasses

    from fitrain_eval.generate import GenerationConfig, training_format

    g = cfg.generation
    if not g.format_from_model:
        return cfg
    fmt = training_format(model_dir, g.format)
    if fmt == g.format:
        return cfg
    stop = g.stop
    head = fmt.template.split("{instruction}")[0].strip()
    if stop == GenerationConfig().stop and head:
        stop = [f"\n\n{head}"]
    _log(f"prompting in the model's recorded training format {fmt.template!r}")
    return dataclasses.replace(cfg, generation=dataclasses.replace(g, format=fmt, stop=stop))


def _log(msg: str) -> None:
    import sys

    print(f"fitrain eval: {msg}", file=sys.stderr, flush=True)


def _yaml(d: dict) -> str:
    import yaml

    return yaml.safe_dump(d, sort_keys=False)
