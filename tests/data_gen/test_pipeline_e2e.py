"""End to end on CPU with the extractive fallback + MiniLM on the Dolly contexts, a SIGKILLed run, the CLI."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from data_gen.excerpts import normalize
from data_gen.pipeline import DataGenConfig, run
from fitrain.core.config import load_config
from tests.data_gen.conftest import final_rows, write_jsonl

from tests.helpers.paths import REPO


def recipe(tmp: Path, dolly, run_dir: Path) -> Path:
    docs = write_jsonl(tmp / "docs.jsonl", [{"id": d["id"], "text": d["text"]} for d in dolly])
    queries = write_jsonl(tmp / "queries.jsonl", [{"instruction": d["instruction"]} for d in dolly])
    r = {"run_dir": str(run_dir), "num_shards": 3, "progress": False,
         "encoder": {"max_length": 256, "batch_size": 32},
         "templatize": {"source": "queries", "queries": [str(queries)], "llm": {"backend": "extractive"}},
         "match": {"documents": [str(docs)], "id_column": "id", "threshold": 0.2, "templates_per_document": 64},
         "instantiate": {"llm": {"backend": "extractive"}}, "judge": {"llm": {"backend": "extractive"}}}
    path = tmp / f"{run_dir.name}.yaml"
    path.write_text(yaml.safe_dump(r))
    return path


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, dolly_contexts, encoder):
    tmp = tmp_path_factory.mktemp("e2e")
    path = recipe(tmp, dolly_contexts, tmp / "clean")
    cfg = load_config(DataGenConfig, path)
    result = run(cfg, log=lambda s: None, encoder=encoder)
    return tmp, path, cfg, result


@pytest.mark.slow
def test_extractive_dolly_end_to_end_pairs_are_grounded(uninterrupted, dolly_contexts, encoder):
    tmp, path, cfg, result = uninterrupted
    assert all(st["complete"] for st in result.values() if "complete" in st)
    texts = {d["id"]: d["text"] for d in dolly_contexts}
    rows = [r for p in sorted((Path(cfg.run_dir) / "data_gen/final").glob("shard-*/pairs.parquet"))
            for r in pq.read_table(p).to_pylist()]
    assert len(rows) >= 10
    for r in rows:  # the grounding check
        doc = texts[r["warc_record_id"]]
        assert r["answer"] in doc and normalize(r["answer"]) in normalize(doc)
        assert "<fi>" not in r["instantiated_instruction"] and "<excerpt>" not in r["answer"]
        assert r["excerpt_fraction"] >= 0.8 and r["judge_score"] >= 4 and 0 <= r["chunk_index"] <= 5
        assert r["slot_count"] >= 1 and r["template_id"]
    report = yaml.safe_load((Path(cfg.run_dir) / "data_gen" / "report.json").read_text())
    assert set(report) == {"templatize", "index", "match", "instantiate", "judge", "write", "backends"}
    assert report["backends"]["instantiate"].startswith("extractive (offline heuristic fallback")
    assert report["write"]["out"] == len(rows)
    # a rerun does nothing and changes nothing
    again = run(cfg, log=lambda s: None, encoder=encoder)
    assert all(not st.get("ran") for st in again.values())
    assert final_rows(Path(cfg.run_dir)) == [tuple(r.values()) for r in rows]


def cli(*args, **kw):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([sys.executable, "-m", "fitrain.cli", "data-gen", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


@pytest.mark.slow
def test_sigkill_mid_stage_then_rerun_gives_exactly_the_uninterrupted_rows(uninterrupted, dolly_contexts):
    tmp, _, cfg, _ = uninterrupted
    killed_dir = tmp / "killed"
    path = recipe(tmp, dolly_contexts, killed_dir)
    proc = cli("run", str(path))
    first_shard = killed_dir / "data_gen" / "pairs" / "shard-00000" / "_SUCCESS"
    deadline = time.monotonic() + 240
    while not first_shard.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    out = proc.communicate()[0].decode()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it could be killed:\n{out[-2000:]}"
    assert not (killed_dir / "data_gen" / "final" / "_SUCCESS").exists()
    done_before = sorted(p.parent.name for p in (killed_dir / "data_gen" / "pairs").glob("shard-*/_SUCCESS"))
    assert "shard-00000" in done_before and len(done_before) < 3  # killed mid-stage
    rerun = cli("run", str(path))
    out = rerun.communicate(timeout=300)[0].decode()
    assert rerun.returncode == 0, out[-3000:]
    assert "[instantiate] shard 0/3" not in out  # the finished shard was skipped, not redone
    assert final_rows(killed_dir) == final_rows(Path(cfg.run_dir))
    assert not list(killed_dir.rglob(".*.tmp"))


def test_cli_help_and_dry_run(tmp_path):
    from fitrain.cli import main

    with pytest.raises(SystemExit) as e:
        main(["data-gen", "--help"])
    assert e.value.code == 0
    r = tmp_path / "r.yaml"
    r.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), "num_shards": 4}))
    p = subprocess.run([sys.executable, "-m", "fitrain.cli", "data-gen", "run", str(r), "--dry-run"],
                       cwd=REPO, capture_output=True, text=True, env={**os.environ, "SLURM_ARRAY_TASK_ID": "2"})
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert [ln.split()[0] for ln in lines] == ["templatize", "index", "match", "instantiate", "judge", "write"]
    assert "would run [2]" in lines[2]  # the Slurm array task's shard
    bad = subprocess.run([sys.executable, "-m", "fitrain.cli", "data-gen", "match", str(r), "match.treshold=0.5"],
                         cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and "did you mean 'match.threshold'" in bad.stderr
