"""A data-gen stage never mixes or skips into finished output made with other settings (data_gen.settings):
one line naming the difference (exit 2) unless --overwrite, which redoes the stage; later stages, whose
output depends on it, are refused in turn; settings that do not change the output (the server's address,
requests in flight) are not a difference."""
import yaml

import pytest

from data_gen.config import DataGenConfig
from data_gen.pipeline import run
from data_gen.settings import stage_settings
from data_gen.shards import shard_dir
from fitrain.core.errors import FitrainError
from fitrain.core.io import is_done
from fitrain.core.llm import LLMConfig
from tests.data_gen.test_server_tasks import SHARDS, setup_run
from tests.helpers.cli import assert_clean_error, run_cli
from tests.helpers.llm_server import ScriptedLLMServer, datagen_responder


def config(root, url, **instantiate) -> DataGenConfig:
    cfg = DataGenConfig(run_dir=str(root), num_shards=SHARDS, progress=False)
    cfg.instantiate.llm = LLMConfig(model="scripted", base_url=url, max_retries=1, backoff_s=0.01)
    cfg.judge.llm = LLMConfig(model="scripted", base_url=url, max_retries=1, backoff_s=0.01)
    for k, v in instantiate.items():
        setattr(cfg.instantiate, k, v)
    return cfg


def quiet(_):
    pass


def test_a_changed_setting_is_refused_and_overwrite_redoes_the_stage_and_refuses_the_next(tmp_path, dolly_contexts):
    setup_run(tmp_path, dolly_contexts[:4])
    with ScriptedLLMServer(datagen_responder) as srv:
        run(config(tmp_path, srv.base_url), ["instantiate", "judge"], log=quiet)
        with pytest.raises(FitrainError, match=r"\[instantiate\] .* holds finished output of other settings "
                                               r"\(instantiate.min_excerpt_fraction: 0.8 -> 0.5\); pass --overwrite"):
            run(config(tmp_path, srv.base_url, min_excerpt_fraction=0.5), ["instantiate"], log=quiet)
        assert is_done(shard_dir(tmp_path / "data_gen" / "pairs", 0))  # untouched
        lines = []
        run(config(tmp_path, srv.base_url, min_excerpt_fraction=0.5), ["instantiate"], log=lines.append,
            overwrite=True)
        assert any("--overwrite: removing" in ln for ln in lines)
        with pytest.raises(FitrainError, match=r"\[judge\] .*instantiate.min_excerpt_fraction: 0.8 -> 0.5"):
            run(config(tmp_path, srv.base_url, min_excerpt_fraction=0.5), ["judge"], log=quiet)


def test_runtime_settings_are_not_a_difference(tmp_path, dolly_contexts):
    setup_run(tmp_path, dolly_contexts[:4])
    with ScriptedLLMServer(datagen_responder) as srv:
        run(config(tmp_path, srv.base_url), ["instantiate"], log=quiet)
    with ScriptedLLMServer(datagen_responder) as srv2:  # another port, other client settings
        cfg = config(tmp_path, srv2.base_url)
        cfg.instantiate.llm.max_concurrency, cfg.progress, cfg.shards_per_task = 3, True, 2
        st = run(cfg, ["instantiate"], log=quiet)["instantiate"]
    assert st["skipped"] == [0, 1]


def test_settings_chain_through_the_stages():
    a, b = stage_settings(DataGenConfig()), stage_settings(DataGenConfig(seed=1))
    assert all(a[s] != b[s] for s in a)  # the seed decides the templates, so everything after them
    c = DataGenConfig()
    c.judge.min_score = 3.0
    s = stage_settings(c)
    assert s["instantiate"] == a["instantiate"] and s["judge"] != a["judge"] and s["write"] != a["write"]


def test_cli_refuses_in_one_line(tmp_path, dolly_contexts):
    setup_run(tmp_path, dolly_contexts[:4])
    with ScriptedLLMServer(datagen_responder) as srv:
        run(config(tmp_path, srv.base_url), ["instantiate"], log=quiet)
        llm = {"model": "scripted", "base_url": srv.base_url}
        recipe = tmp_path / "dg.yaml"
        recipe.write_text(yaml.safe_dump({"run_dir": str(tmp_path), "num_shards": SHARDS, "progress": False,
                                          "instantiate": {"llm": llm, "max_new_tokens": 100}}))
        r = run_cli(["data-gen", "run", recipe, "--stages", "instantiate"])
    assert_clean_error(r, "instantiate.max_new_tokens: 768 -> 100", "--overwrite")
