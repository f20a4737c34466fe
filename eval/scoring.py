"""What an eval directory's scores were made with -- the model (its export record), the generation settings
and the judge -- recorded in ``<out>/scoring.json``. ``results.json`` is merged over jobs (lm-eval in one,
judges in another), so a job that would merge scores of another model or other settings into it is refused
with one line naming the difference, unless ``overwrite`` (``fitrain eval ... --overwrite``), which starts the
directory's results afresh (fitrain.core.overwrite). Which benchmarks a job runs is not part of it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from fitrain.core.errors import FitrainError
from fitrain.core.io import read_json, write_json

SCORING = "scoring.json"
_RUNTIME_LLM = ("base_url", "api_key", "max_concurrency", "max_retries", "backoff_s", "timeout_s", "batch_size",
                "device", "cache")
# the outputs a later command trusts (caches and generations stay: they are keyed by what made them)
_RESULTS = ("results.json", "rejects.json", "items", "decontamination.json")


def scoring_settings(cfg: Any, model_dir: Path | None) -> dict:
    from fitrain.core.config import to_dict

    export = {}
    if model_dir is not None and (Path(model_dir) / "fitrain_export.json").is_file():
        rec = read_json(Path(model_dir) / "fitrain_export.json")
        export = {k: rec.get(k) for k in ("source", "step", "tokens")} if isinstance(rec, dict) else {}
    gen = to_dict(cfg.generation)
    gen["llm"] = {k: v for k, v in gen.get("llm", {}).items() if k not in _RUNTIME_LLM}
    judge = {k: getattr(cfg.judge.llm, k) for k in ("backend", "model", "temperature", "max_new_tokens")}
    settings = {"model": str(Path(model_dir).resolve()) if model_dir is not None else None, "export": export,
                "generation": gen, "judge": judge}
    return json.loads(json.dumps(settings, default=str))


def check_scoring(out: Path, cfg: Any, model_dir: Path | None, overwrite: bool = False) -> None:
    """Record the scoring settings in ``out``, or refuse (FitrainError) when the results there were made with
    others; ``overwrite`` removes those results first."""
    from fitrain.core.overwrite import differences, recorded_settings

    if model_dir is None:
        return  # data-only results (decontamination) do not depend on a model
    out = Path(out)
    settings = scoring_settings(cfg, model_dir)
    path = out / SCORING
    recorded = recorded_settings(path)
    diff = differences(recorded, settings) if recorded is not None else ""
    has_results = (out / "results.json").is_file()
    if diff and has_results:
        if not overwrite:
            raise FitrainError(f"{out} holds eval results of another model or settings ({diff}); pass --overwrite "
                               "to start its results afresh, or set `out` to a new directory")
        for name in _RESULTS:
            p = out / name
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    if recorded != settings:
        write_json(path, settings)
