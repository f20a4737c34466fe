"""Every recipe under recipes/ loads and validates against its schema (a typo or a stale key fails here)."""
from pathlib import Path

import pytest

from fitrain.core.config import load_config

from tests.helpers.paths import REPO

RECIPES = REPO / "recipes"


def _schema(rel: Path):
    top = rel.parts[0] if len(rel.parts) > 1 else rel.stem
    if top == "train":
        from fitrain.train.config import TrainConfig
        return TrainConfig
    if top == "data_gen":
        from data_gen.config import DataGenConfig
        return DataGenConfig
    if top == "eval":
        from fitrain_eval.run import EvalConfig
        return EvalConfig
    if top in ("experiments", "quickstart"):
        from fitrain.pipeline.graph import ExperimentConfig
        return ExperimentConfig
    if top == "prepare":
        from fitrain.data.prepare import PrepareConfig
        return PrepareConfig
    if top == "tokenizer":
        from fitrain.data.tokenizer import TokenizerConfig
        return TokenizerConfig
    return None


ALL = sorted(p.relative_to(RECIPES) for p in RECIPES.rglob("*.yaml"))


def test_there_are_recipes_for_every_home():
    tops = {p.parts[0] if len(p.parts) > 1 else p.stem for p in ALL}
    assert {"experiments", "quickstart"} <= tops
    names = {p.stem for p in ALL if p.parts[0] == "experiments"}
    assert {"tiny-cpu", "fi-vs-standard-300m", "fi-vs-standard-1.8b"} <= names


@pytest.mark.parametrize("rel", ALL, ids=[str(p) for p in ALL])
def test_recipe_validates(rel):
    schema = _schema(rel)
    assert schema is not None, f"no schema known for recipes/{rel}; add it to this test"
    cfg = load_config(schema, RECIPES / rel)
    if schema.__name__ == "ExperimentConfig":
        from fitrain.pipeline.graph import experiment_steps as plan
        from fitrain.pipeline.submit import render_all

        assert [s.name for s in plan(cfg)][-1] == "report"
        assert all(script.startswith("#!/bin/bash") for _, script in render_all(cfg))
