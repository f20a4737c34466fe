"""fitrain_eval.data_sources: a benchmark setting left at ``official`` is fetched from the pinned source into the
cache and verified (here from a file:// mirror of the fixtures, their hashes pinned in place of the official
ones); the real pinned hashes refuse the fixture subsets; a local path is used as it is."""
import dataclasses

import pytest

from fitrain.core.errors import FitrainError
from fitrain.core.fetch import sha256_of
from fitrain_eval import data_sources as ds
from tests.helpers.paths import FIXTURES

# the mirror layout is the cache's: <name>/<rel>; the fixtures keep their own file names
FIXTURE_OF = {"mixeval": lambda rel: FIXTURES / "mixeval" / rel,
              "mtbench101": lambda rel: FIXTURES / "mt_bench_101" / rel,
              "alpaca_eval": lambda rel: FIXTURES / "alpaca_eval" / {
                  "example/outputs.json": "example_outputs.json",
                  "results/gpt4_1106_preview/model_outputs.json": "gpt4_1106_preview_model_outputs.json"}[rel]}


def _mirror(tmp_path, monkeypatch, pin_fixtures: bool):
    root = tmp_path / "mirror"
    for name, sources in ds.SOURCES.items():
        for s in sources:
            (root / name / s.rel).parent.mkdir(parents=True, exist_ok=True)
            (root / name / s.rel).write_bytes(FIXTURE_OF[name](s.rel).read_bytes())
    if pin_fixtures:
        monkeypatch.setattr(ds, "SOURCES", {n: [dataclasses.replace(s, sha256=sha256_of(FIXTURE_OF[n](s.rel)))
                                                for s in src] for n, src in ds.SOURCES.items()})
    monkeypatch.setenv("FITRAIN_DATA_MIRROR", root.as_uri())
    monkeypatch.setenv("FITRAIN_DATA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FITRAIN_OFFLINE", raising=False)


def test_official_defaults_are_fetched_verified_and_loadable(tmp_path, monkeypatch):
    from fitrain.core.accounting import Rejects
    from fitrain_eval.judges import mixeval, mtbench101, pairwise

    _mirror(tmp_path, monkeypatch, pin_fixtures=True)
    assert mixeval.MixEvalConfig().root == mtbench101.MTBench101Config().path == ds.OFFICIAL
    assert pairwise.PairwiseConfig().instructions == ds.OFFICIAL
    root = ds.mixeval_root(ds.OFFICIAL, ["mixeval_hard"])
    assert root.startswith(str(tmp_path / "cache"))
    assert len(mixeval.load_split(root, "mixeval_hard", Rejects())) == 75
    assert not (tmp_path / "cache" / "mixeval" / ds.MIXEVAL_VERSION / "mixeval").exists()  # only what is used
    assert len(mtbench101.load(ds.mtbench101_path(ds.OFFICIAL), Rejects())) == 39
    assert len(pairwise.load_outputs(ds.alpaca_instructions(ds.OFFICIAL), need_output=False)) == 120
    assert ds.mtbench101_path("my/local.jsonl") == "my/local.jsonl"  # a local path: used as it is
    assert len(ds.fetch_benchmarks([])) == 7


def test_the_pinned_official_hashes_refuse_a_subset(tmp_path, monkeypatch):
    _mirror(tmp_path, monkeypatch, pin_fixtures=False)
    with pytest.raises(FitrainError, match="mtbench101: .* has sha256 .*expected 1a1e433a.*refused .*set mtbench101.path"):
        ds.mtbench101_path(ds.OFFICIAL)
    assert not list((tmp_path / "cache").rglob("*.jsonl*"))


def test_the_fetch_command(tmp_path, monkeypatch, capsys):
    from fitrain.cli import main

    _mirror(tmp_path, monkeypatch, pin_fixtures=True)
    assert main(["eval", "fetch", "mtbench101"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "cache" / "mtbench101" / "mtbench101.jsonl")
    assert main(["eval", "fetch", "gsm8k"]) == 2
    assert "unknown benchmark gsm8k; choose from mixeval, mtbench101, alpaca_eval" in capsys.readouterr().err


def test_an_unreachable_source_names_the_setting(tmp_path, monkeypatch, capsys):
    from fitrain.cli import main

    monkeypatch.setenv("FITRAIN_DATA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FITRAIN_OFFLINE", "1")
    assert main(["eval", "eval/decontamination", f"out={tmp_path / 'o'}", "decontamination.benchmarks=[mtbench101]",
                 f"decontamination.train.paths=[{tmp_path}/x.parquet]"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "FITRAIN_OFFLINE is set; set mtbench101.path to a local copy" in err[0]
