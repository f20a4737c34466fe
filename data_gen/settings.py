"""What each data-gen stage's output depends on, recorded in ``<stage>/settings.json`` when the stage starts:
a rerun with other settings (e.g. another ``match.threshold``) never mixes its shards with finished shards
of the old ones, nor silently skips them -- it is refused with one line naming the difference, unless
``--overwrite`` (which removes the stage's old output first) -- fitrain.core.overwrite.

A stage's settings include those of every stage before it (a changed instantiation prompt changes what the
judge and write stages made too). Settings that do not change the output (where the server runs, how many
requests are in flight, progress lines, Slurm sharding of the job) are left out."""
from __future__ import annotations

import shutil
from pathlib import Path

from data_gen.config import STAGES, DataGenConfig
from fitrain.core.errors import FitrainError
from fitrain.core.io import is_done, write_json

SETTINGS = "settings.json"
_RUNTIME_LLM = ("base_url", "api_key", "max_concurrency", "max_retries", "backoff_s", "timeout_s", "batch_size",
                "device", "cache")
_RUNTIME = {"encoder": ("batch_size", "device"), "match": ("batch_documents",)}


def _section(cfg: DataGenConfig, name: str) -> dict:
    from fitrain.core.config import to_dict

    d = to_dict(getattr(cfg, name))
    for k in _RUNTIME.get(name, ()):
        d.pop(k, None)
    if isinstance(d.get("llm"), dict):
        d["llm"] = {k: v for k, v in d["llm"].items() if k not in _RUNTIME_LLM}
    return d


def stage_settings(cfg: DataGenConfig) -> dict[str, dict]:
    """``{stage: settings}`` for every stage (take it before a stage changes ``cfg``, as match's built-in
    corpus does)."""
    import json

    own = {"templatize": {"seed": cfg.seed, "query_shards": cfg.query_shards, "templatize": _section(cfg, "templatize")},
           "index": {"index": _section(cfg, "index"), "encoder": _section(cfg, "encoder")},
           "match": {"num_shards": cfg.num_shards, "match": _section(cfg, "match")},
           "instantiate": {"instantiate": _section(cfg, "instantiate")},
           "judge": {"judge": _section(cfg, "judge")},
           "write": {"write": _section(cfg, "write")}}
    out, chain = {}, {}
    for stage in STAGES:
        chain = {**chain, **own[stage]}
        out[stage] = json.loads(json.dumps(chain, default=str))
    return out


def check_stage(stage: str, stage_dir: Path, settings: dict, overwrite: bool = False,
                log=print) -> None:
    """Record ``settings`` for ``stage_dir``, or refuse (FitrainError) when its finished output was made with
    other settings; with ``overwrite`` that output is removed first."""
    from fitrain.core.overwrite import differences, recorded_settings

    stage_dir = Path(stage_dir)
    path = stage_dir / SETTINGS
    finished = is_done(stage_dir) or any(stage_dir.rglob("shard-*/_SUCCESS"))  # (index: embedding shards below)
    recorded = recorded_settings(path)
    if finished and recorded is not None:
        diff = differences(recorded, settings)
        if diff and not overwrite:
            raise FitrainError(f"[{stage}] {stage_dir} holds finished output of other settings ({diff}); pass "
                               "--overwrite to replace it, or use another run_dir")
        if diff:
            log(f"[{stage}] --overwrite: removing {stage_dir}, made with other settings ({diff})")
            shutil.rmtree(stage_dir)
    elif finished and recorded is None:
        log(f"[{stage}] {stage_dir} was made by an older fitrain that did not record its settings; taking them "
            "as this run's")
    if recorded != settings or not path.is_file():
        write_json(path, settings)
