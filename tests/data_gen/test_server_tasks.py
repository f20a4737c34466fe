"""data_gen tasks that each start their own model server (serve.enabled) with the scripted stand-in for
`vllm serve` (tests/helpers/llm_server.py as its own process): two tasks at once on this machine, a
server that serves another model, a server that dies mid-shard, and progress lines in a non-terminal log.
Infrastructure failures fail the task (non-zero exit) and never mark a shard done; the rerun ends with
exactly the rows of an uninterrupted run."""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from data_gen import templatize
from data_gen.match import doc_schema, match_schema
from data_gen.shards import parquet_sink, shard_dir
from data_gen.templatize import template_id
from fitrain.core.io import is_done, mark_done
from tests.data_gen.conftest import final_rows
from tests.helpers.llm_server import first_sentence, judge_score
from tests.helpers.paths import REPO

STAND_IN = [sys.executable, str(REPO / "tests" / "helpers" / "llm_server.py")]
TEMPLATES = ["What is <fi>topic</fi>?", "Summarize what the text says about <fi>topic</fi>.",
             "Who or what is <fi>name</fi>?", "Why is <fi>thing</fi> important?"]
SHARDS = 2


def setup_run(root: Path, docs: list[dict]) -> None:
    """templates/ and matches/ (two shards) as the earlier stages leave them."""
    dg = root / "data_gen"
    tpls = [{"template_id": template_id(t), "template": t, "compatible_document_description": "any",
             "slot_count": 1, "query": None, "source": "test"} for t in TEMPLATES]
    with parquet_sink(dg / "templates" / "templates.parquet", templatize._schema()) as w:
        w(tpls)
    mark_done(dg / "templates")
    for i in range(SHARDS):
        mine = docs[i::SHARDS]
        d = shard_dir(dg / "matches", i)
        with parquet_sink(d / "documents.parquet", doc_schema()) as w:
            w([{"doc_id": x["id"], "text": x["text"]} for x in mine])
        with parquet_sink(d / "matches.parquet", match_schema()) as w:
            w([{"doc_id": x["id"], "template_id": t["template_id"], "similarity": 0.9, "chunk_index": 0,
                "slot_count": 1} for x in mine for t in tpls])
        mark_done(d, {"shard": i, "of": SHARDS})


def recipe(root: Path, *extra_args: str, progress_every_s: float = 0.0) -> Path:
    llm = {"backend": "openai", "max_retries": 1, "backoff_s": 0.05, "timeout_s": 30}
    r = {"run_dir": str(root), "num_shards": SHARDS, "shards_per_task": 1, "progress": progress_every_s > 0,
         "progress_every_s": progress_every_s or 30.0,
         "instantiate": {"llm": {**llm, "model": "instantiator"}}, "judge": {"llm": {**llm, "model": "judge"}},
         "serve": {"enabled": True, "command": STAND_IN, "poll_s": 0.2, "health_timeout_s": 120,
                   "extra_args": ["--latency-ms", "20", "--capacity", "8", *extra_args]}}
    path = root / "recipe.yaml"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(r))
    return path


def task(path: Path, t: int, out=subprocess.PIPE) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("SLURM_ARRAY_TASK_ID", None)
    return subprocess.Popen([sys.executable, "-m", "fitrain.cli", "data-gen", "run", str(path), "--stages",
                             "instantiate,judge,write", "--task", str(t)], cwd=REPO, env=env, stdout=out,
                            stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, dolly_contexts):
    """An uninterrupted run: the two tasks one after the other."""
    root = tmp_path_factory.mktemp("reference")
    setup_run(root, dolly_contexts[:12])
    path = recipe(root)
    for t in range(SHARDS):
        p = task(path, t)
        out = p.communicate(timeout=300)[0].decode()
        assert p.returncode == 0, out[-3000:]
    return root, final_rows(root)


def test_rows_are_what_the_server_said(reference, dolly_contexts):
    root, rows = reference
    texts = {d["id"]: d["text"] for d in dolly_contexts}
    table = [r for p in sorted((root / "data_gen" / "final").glob("shard-*/pairs.parquet"))
             for r in pq.read_table(p).to_pylist()]
    expect = sum(1 for d in dolly_contexts[:12] for t in TEMPLATES
                 if judge_score(re.sub(r"<fi>.*?</fi>", d["text"].split()[0], t)) >= 4)
    assert len(table) == expect
    for r in table:
        assert r["answer"] == first_sentence(texts[r["warc_record_id"]])


def test_two_tasks_at_once_each_with_its_own_server(reference, tmp_path, dolly_contexts):
    _, expected = reference
    setup_run(tmp_path, dolly_contexts[:12])
    path = recipe(tmp_path)
    procs = [task(path, t) for t in range(SHARDS)]
    outs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n\n".join(o[-2000:] for o in outs)
    assert final_rows(tmp_path) == expected
    for stage in ("pairs", "judged", "final"):
        assert is_done(tmp_path / "data_gen" / stage)
    ports = set()
    for i in range(SHARDS):  # one server log per task and stage, each its own server
        log = (tmp_path / "data_gen" / f"vllm-instantiate.shard-{i:05d}.log").read_text()
        ports.add(re.search(r"serving instantiator on (\S+)", log).group(1))
    assert len(ports) == SHARDS


def test_a_server_serving_another_model_fails_the_task(tmp_path, dolly_contexts):
    setup_run(tmp_path, dolly_contexts[:12])
    p = task(recipe(tmp_path, "--served-model-name", "someone-elses-model"), 0)
    out = p.communicate(timeout=300)[0].decode()
    assert p.returncode == 2, out[-2000:]
    assert "not the one this job started: it serves ['someone-elses-model'], not 'instantiator'" in out
    assert not is_done(shard_dir(tmp_path / "data_gen" / "pairs", 0))
    assert not (shard_dir(tmp_path / "data_gen" / "pairs", 0) / "pairs.parquet").exists()


def test_an_external_server_with_another_model_is_refused(tmp_path, dolly_contexts):
    from data_gen.config import DataGenConfig
    from data_gen.pipeline import run
    from fitrain.core.errors import FitrainError
    from fitrain.core.llm import LLMConfig
    from tests.helpers.llm_server import Reply, ScriptedLLMServer

    setup_run(tmp_path, dolly_contexts[:4])
    with ScriptedLLMServer(lambda k, b: Reply(text="{}"), model="other") as srv:
        cfg = DataGenConfig(run_dir=str(tmp_path), num_shards=SHARDS, progress=False)
        cfg.instantiate.llm = LLMConfig(model="instantiator", base_url=srv.base_url)
        with pytest.raises(FitrainError, match=r"not the one asked for: it serves \['other'\], not 'instantiator'"):
            run(cfg, ["instantiate"], log=lambda s: None)
        assert srv.requests == []
    assert not is_done(shard_dir(tmp_path / "data_gen" / "pairs", 0))


def test_a_server_that_dies_mid_shard_fails_the_task_and_the_rerun_is_exact(reference, tmp_path, dolly_contexts):
    _, expected = reference
    setup_run(tmp_path, dolly_contexts[:12])
    p = task(recipe(tmp_path, "--die-after", "9"), 0)  # shard 0 has 24 instantiate requests
    out = p.communicate(timeout=300)[0].decode()
    assert p.returncode == 2, out[-2000:]
    assert "is not usable" in out and "nothing of this shard is marked done" in out
    pairs0 = shard_dir(tmp_path / "data_gen" / "pairs", 0)
    assert not is_done(pairs0) and not (pairs0 / "pairs.parquet").exists()
    assert not (tmp_path / "data_gen" / "pairs" / "stats.json").exists()
    for t in range(SHARDS):  # the rerun, on servers that stay up
        p = task(recipe(tmp_path), t)
        out = p.communicate(timeout=300)[0].decode()
        assert p.returncode == 0, out[-2000:]
    assert final_rows(tmp_path) == expected


def test_progress_lines_appear_in_a_non_terminal_log_within_the_interval(tmp_path, dolly_contexts):
    setup_run(tmp_path, dolly_contexts[:12])
    path = recipe(tmp_path, "--latency-ms", "150", "--capacity", "2", progress_every_s=0.5)
    log = tmp_path / "task.log"
    with open(log, "wb") as f:  # a file, as under Slurm: not a terminal
        p = task(path, 0, out=f)
        seen_live = False
        deadline = time.monotonic() + 300
        while p.poll() is None and time.monotonic() < deadline:
            if "[instantiate shard 0]" in log.read_text(errors="replace"):
                seen_live = True  # written while the task runs, not when it exits
                break
            time.sleep(0.05)
        assert p.wait(timeout=300) == 0, log.read_text()[-2000:]
    assert seen_live
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith("[instantiate shard 0]")]
    assert len(lines) >= 3, lines
    assert re.match(r"\[instantiate shard 0\] \d+/24 rows \(\d+\.\d%\), \d+\.\d rows/s, \d+ in flight, "
                    r"\d+ rejects, ETA \S+, elapsed \d+\.\ds$", lines[0]), lines[0]
    elapsed = [float(re.search(r"elapsed (\d+\.\d)s", ln).group(1)) for ln in lines]
    gaps = [b - a for a, b in zip([0.0] + elapsed, elapsed)]
    assert max(gaps) <= 0.5 + 1.0, gaps  # every interval (generous slack: the cores are shared)
    assert any(not re.search(r", 0 in flight", ln) for ln in lines)  # requests queued at the server
