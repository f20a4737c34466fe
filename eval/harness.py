"""lm-eval through its Python API on an exported checkpoint: registry task names and local task YAMLs.

* Registry names (``hellaswag``, ``arc_easy``, ...) are checked against lm-eval's index first; an unknown
  name fails with the nearest known names.
* Local tasks: a YAML file, a folder of YAMLs, or the name of a task shipped in ``eval/tasks/`` (offline:
  ``dataset_path: json`` + data files). Relative ``data_files`` are resolved against the YAML's folder.
* ``formats``: ``plain`` (the task's own text) and/or ``instruction`` (every request rendered in the
  training format, ``Instruction: {context}\\n\\nAnswer: {continuation}``; lm-eval's chat-template path
  with our renderer). Both are reported, under ``lm_eval/...`` and ``lm_eval_instruction/...``.
  With ``format.add_bos`` the instruction format starts with BOS as in training; the plain format uses
  the tokenizer's own special-token settings.

  A task text that already ends with the format's answer cue (``Question: ...\nAnswer:``) loses that
  trailing cue, so the training prefix does not say it twice (fitrain_eval.generate.strip_answer_cue).

lm-eval's own JSON (without per-sample logs) is saved per format as ``lm_eval/<format>.json``. With
``item_scores`` (default) lm-eval logs its samples and every per-sample metric is written as per-item scores
(fitrain_eval.items: ``items/lm_eval[_instruction]__<task>__<metric>.jsonl``, item id = lm-eval's
``doc_id``) for the report's paired comparison.
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fitrain.core.checks import NON_NEGATIVE, POSITIVE, SEED, at_least, check_fields, one_of
from fitrain.core.errors import FitrainError
from fitrain.data.formatting import FormatConfig

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
FORMATS = ("plain", "instruction")
# The usual small-model task list in cloze form (recipes/eval/cloze.yaml).
CLOZE_TASKS = ["hellaswag", "arc_easy", "arc_challenge", "piqa", "winogrande", "openbookqa", "social_iqa",
               "mmlu_continuation"]


@dataclass
class HarnessConfig:
    tasks: list[str] = field(default_factory=list)   # registry names, YAML files, task folders, shipped names
    formats: list[str] = field(default_factory=lambda: ["plain"])   # plain | instruction
    num_fewshot: int | None = None
    limit: float = 0               # examples per task (<1: fraction); 0 = all
    batch_size: int = 8
    device: str = "auto"           # auto | cpu | cuda
    dtype: str = "auto"
    bootstrap_iters: int = 1000
    seed: int = 1234
    save_samples: bool = False     # also write per-example requests/results: lm_eval/<format>_samples.jsonl
    item_scores: bool = True       # per-item scores of every per-sample metric (items/), for paired statistics

    def __post_init__(self) -> None:
        check_fields(self, formats=one_of(*FORMATS), num_fewshot=NON_NEGATIVE, limit=at_least(0), batch_size=POSITIVE,
                     device=one_of("auto", "cpu", "cuda"), bootstrap_iters=NON_NEGATIVE, seed=SEED)


# ---------------------------------------------------------------------------------------- task resolving
def shipped_tasks() -> dict[str, Path]:
    """Task name -> YAML path for the offline tasks under eval/tasks/."""
    import yaml

    out = {}
    for p in sorted(TASKS_DIR.glob("*.yaml")):
        try:
            name = read_task_yaml(p).get("task")
        except yaml.YAMLError:
            continue
        if isinstance(name, str):
            out[name] = p
    return out


def read_task_yaml(path: Path) -> dict:
    """A task YAML's keys, lm-eval's ``!function`` tags read as plain strings (nothing imported)."""
    import yaml

    class _Loader(yaml.SafeLoader):
        pass

    _Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))
    return yaml.load(path.read_text(), Loader=_Loader) or {}


def _local_config(path: Path) -> dict:
    """A task YAML as an inline config with relative data files made absolute."""
    from lm_eval.tasks._yaml_loader import load_yaml

    try:
        cfg = load_yaml(path, resolve_func=True)
    except Exception as e:
        raise FitrainError(f"cannot read task YAML {path}: {e}") from None
    if "task" not in cfg:
        raise FitrainError(f"{path} is not an lm-eval task YAML (no 'task' key)")
    kw = cfg.get("dataset_kwargs") or {}
    files = kw.get("data_files")
    if files is not None:
        def fix(f: str) -> str:
            p = Path(f)
            if p.is_absolute() or "://" in f:
                return f
            full = (path.parent / p).resolve()
            if not full.exists():
                raise FitrainError(f"{path}: data file '{f}' not found (looked for {full})")
            _check_not_empty(path, f, full)
            return str(full)
        if isinstance(files, dict):
            kw["data_files"] = {k: [fix(x) for x in v] if isinstance(v, list) else fix(v) for k, v in files.items()}
        elif isinstance(files, list):
            kw["data_files"] = [fix(x) for x in files]
        else:
            kw["data_files"] = fix(files)
        cfg["dataset_kwargs"] = kw
    return cfg


def _check_not_empty(task_yaml: Path, name: str, full: Path) -> None:
    """An empty data file makes the json loader fail deep inside ``datasets``; say so here."""
    if full.is_file():
        with open(full, "rb") as f:
            if not f.read(4096).strip():
                raise FitrainError(f"{task_yaml}: data file '{name}' ({full}) is empty; it needs one JSON record "
                                   "per line")


def resolve_tasks(specs: list[str], task_manager=None) -> tuple[list[Any], bool]:
    """Specs -> lm-eval task specs (names or inline configs); also says whether the registry is needed.
    Raises a FitrainError listing unknown names with the nearest known ones."""
    if not specs:
        raise FitrainError("lm_eval.tasks is empty; e.g. lm_eval.tasks=[fitrain_mixeval_mc] or the cloze recipe")
    shipped = shipped_tasks()
    out: list[Any] = []
    registry_names: list[str] = []
    for s in specs:
        p = Path(s)
        if s in shipped:
            out.append(_local_config(shipped[s]))
        elif p.suffix in (".yaml", ".yml") or p.is_dir():
            if not p.exists():
                raise FitrainError(f"task file or folder not found: {p}")
            ys = sorted(p.glob("*.yaml")) if p.is_dir() else [p]
            if not ys:
                raise FitrainError(f"task folder {p} has no .yaml task files")
            out.extend(_local_config(y) for y in ys)
        else:
            registry_names.append(s)
            out.append(s)
    if registry_names:
        tm = task_manager or _task_manager()
        known = set(tm.all_tasks)
        unknown = [n for n in registry_names if n not in known]
        if unknown:
            pool = sorted(known | set(shipped))
            hints = "; ".join(f"'{n}' (nearest: {', '.join(difflib.get_close_matches(n, pool, n=3, cutoff=0.6)) or 'none'})"
                              for n in unknown)
            raise FitrainError(f"unknown lm-eval task(s): {hints}. Registry names, task YAML paths, folders, or "
                               f"shipped offline tasks ({', '.join(shipped)}) are accepted")
    return out, bool(registry_names)


def _task_manager(include_defaults: bool = True):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_defaults=include_defaults)


# ------------------------------------------------------------------------------------ instruction format
def instruction_lm_class():
    """An HFLM whose 'chat template' is the pair training format (built lazily: lm_eval is heavy)."""
    from lm_eval.models.huggingface import HFLM

    class InstructionFormatHFLM(HFLM):
        def __init__(self, *a, format_config: FormatConfig | None = None, **kw):
            super().__init__(*a, **kw)
            self.format_config = format_config or FormatConfig()

        def chat_template(self, chat_template: bool | str = False) -> str | None:
            return f"fitrain-instruction-format:{self.format_config.template!r}" if chat_template else None

        def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
            from fitrain_eval.generate import render_instruction, strip_answer_cue

            fmt = self.format_config
            bos = self.tokenizer.bos_token if fmt.add_bos and self.tokenizer.bos_token else ""
            msgs = [{**m, "content": strip_answer_cue(m["content"], fmt)} if m.get("role") == "user" else m
                    for m in chat_history]
            return bos + render_instruction(msgs, fmt, add_generation_prompt)

    return InstructionFormatHFLM


# ------------------------------------------------------------------------------------------------- run
def run_harness(model_dir: str | Path, cfg: HarnessConfig, out_dir: str | Path,
                format_config: FormatConfig | None = None, model=None, tokenizer=None) -> dict:
    """Evaluate ``model_dir`` (or an in-memory ``model`` + ``tokenizer``) on ``cfg.tasks`` in each of
    ``cfg.formats``; save lm-eval's JSON; return flat metrics ``lm_eval[_instruction]/<task>/<metric>``."""
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.utils import handle_non_serializable

    bad = [f for f in cfg.formats if f not in FORMATS]
    if bad or not cfg.formats:
        raise FitrainError(f"lm_eval.formats must be a non-empty subset of {FORMATS}, got {cfg.formats}")
    if model is None:
        from fitrain_eval.generate import check_model_dir

        check_model_dir(str(model_dir))
    specs, needs_registry = resolve_tasks(cfg.tasks)
    tm = _task_manager(include_defaults=needs_registry)
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    out_dir = Path(out_dir) / "lm_eval"
    metrics: dict[str, float] = {}
    for fmt_name in cfg.formats:
        cls = instruction_lm_class() if fmt_name == "instruction" else None
        if cls is None:
            from lm_eval.models.huggingface import HFLM as cls  # noqa: N813
        kw: dict[str, Any] = dict(pretrained=model if model is not None else str(model_dir),
                                  tokenizer=tokenizer if tokenizer is not None else str(model_dir),
                                  batch_size=cfg.batch_size, device=device, dtype=cfg.dtype)
        if fmt_name == "instruction":
            kw["format_config"] = format_config or FormatConfig()
        try:
            lm = cls(**kw)
            res = simple_evaluate(model=lm, tasks=specs, num_fewshot=cfg.num_fewshot,
                                  limit=cfg.limit or None, bootstrap_iters=cfg.bootstrap_iters,
                                  log_samples=cfg.save_samples or cfg.item_scores, task_manager=tm,
                                  apply_chat_template=fmt_name == "instruction",
                                  fewshot_as_multiturn=fmt_name == "instruction" and bool(cfg.num_fewshot),
                                  random_seed=cfg.seed, numpy_random_seed=cfg.seed, torch_random_seed=cfg.seed,
                                  fewshot_random_seed=cfg.seed)
        except FitrainError:
            raise
        except (KeyError, ValueError, FileNotFoundError, OSError) as e:
            raise FitrainError(f"lm-eval failed on {cfg.tasks} ({fmt_name} format): {type(e).__name__}: {e}") from None
        if res is None:
            continue  # not rank 0
        samples = res.pop("samples", None)
        prefix = "lm_eval" if fmt_name == "plain" else "lm_eval_instruction"
        if samples and cfg.save_samples:
            _save_samples(out_dir / f"{fmt_name}_samples.jsonl", samples, handle_non_serializable)
        if samples and cfg.item_scores:
            info = {"benchmark": "lm_eval", "format": fmt_name, "model": str(model_dir),
                    "template": (format_config or FormatConfig()).template if fmt_name == "instruction" else None,
                    "num_fewshot": cfg.num_fewshot, "limit": cfg.limit or None}
            for item_scores in sample_item_scores(samples, prefix, res, info):
                item_scores.save(out_dir.parent)
        res["fitrain"] = {"format": fmt_name, "model": str(model_dir),
                          "template": (format_config or FormatConfig()).template if fmt_name == "instruction" else None}
        from fitrain.core.io import atomic_path

        with atomic_path(out_dir / f"{fmt_name}.json") as tmp:
            tmp.write_text(json.dumps(res, indent=2, default=handle_non_serializable))
        metrics.update(flatten(res, prefix))
    return metrics


def sample_item_scores(samples: dict, prefix: str, res: dict, info: dict) -> list:
    """lm-eval's logged samples -> one :class:`~fitrain_eval.items.ItemScores` per task and numeric metric."""
    from fitrain_eval.items import ItemScores

    out = []
    for task, rows in samples.items():
        by_metric: dict[str, dict[str, float]] = {}
        for row in rows:
            filt = row.get("filter", "none")
            for m in row.get("metrics") or []:
                v = row.get(m)
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    continue
                name = m if filt in ("", "none") else f"{m}[{filt}]"
                by_metric.setdefault(name, {})[str(row["doc_id"])] = float(v)
        hib = (res.get("higher_is_better") or {}).get(task, {})
        for name, scores in by_metric.items():
            out.append(ItemScores(f"{prefix}/{task}/{name}", scores,
                                  higher_is_better=bool(hib.get(name.split("[")[0], True)),
                                  info={**info, "task": task}))
    return out


def _save_samples(path: Path, samples: dict, default) -> None:
    from fitrain.core.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for task, rows in samples.items():
            for row in rows:
                f.write(json.dumps({"task": task, **row}, default=default, ensure_ascii=False) + "\n")


def flatten(res: dict, prefix: str) -> dict:
    """lm-eval results -> ``{prefix/task/metric: value}`` (filters like ``,none`` dropped; stderr kept)."""
    out: dict[str, float] = {}
    for section in ("results", "groups"):
        for task, ms in (res.get(section) or {}).items():
            for key, v in ms.items():
                if key == "alias" or not isinstance(v, (int, float)) or isinstance(v, bool):
                    continue
                metric, _, filt = key.partition(",")
                metric = "n_samples" if metric == "sample_len" else metric  # a count, not a score
                name = metric if filt in ("", "none") else f"{metric}[{filt}]"
                out[f"{prefix}/{task}/{name}"] = float(v)
    return out
