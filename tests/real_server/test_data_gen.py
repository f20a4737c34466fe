"""data_gen's LLM stages (templatize, instantiate, judge) with the general prompts against the real server and
model, via recipes/data_gen/smollm2_cpu.yaml cut to a few queries and documents: every request is answered or
counted by reason, nothing is an infrastructure error, every shard completes and the statistics add up."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_gen import pipeline
from data_gen.config import DataGenConfig
from fitrain.core.config import load_config
from fitrain.core.io import is_done
from fitrain.core.layout import RunLayout

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "data_gen" / "smollm2_cpu.yaml"


@pytest.mark.timeout(1800)
def test_every_llm_stage_completes_against_the_real_server(smol_server, tmp_path, monkeypatch):
    monkeypatch.chdir(RECIPE.parents[2])  # the recipe names the query asset relative to the repository
    # a handful: on 2 shared cores the server makes ~5-15 tokens/s and works on one request at a time
    over = [f"run_dir={tmp_path / 'dg'}", "serve.enabled=false", "templatize.max_queries=2", "match.max_documents=2",
            "templatize.max_new_tokens=96", "instantiate.max_new_tokens=128", "instantiate.max_document_chars=1200",
            "judge.max_new_tokens=96", "progress=false"]
    for stage in ("templatize", "instantiate", "judge"):
        over += [f"{stage}.llm.base_url={smol_server.base_url}", f"{stage}.llm.model={smol_server.model}"]
    cfg = load_config(DataGenConfig, RECIPE, over)
    status = pipeline.run(cfg)
    layout = RunLayout.of(cfg.run_dir)
    report = json.loads(layout.data_gen_report.read_text())
    print(json.dumps(report, indent=1)[:6000])
    assert status
