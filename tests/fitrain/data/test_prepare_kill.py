"""A SIGKILLed prepare, rerun, gives shards byte-identical to an uninterrupted run (real subprocess)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fitrain.config import to_dict
from fitrain.prepare import PrepareConfig, prepare
from fitrain.records import InputConfig

ROOT = Path(__file__).resolve().parents[3]
CHILD = """
import json, sys
from fitrain.config import from_dict
from fitrain.prepare import PrepareConfig, prepare
prepare(from_dict(PrepareConfig, json.loads(sys.argv[1])))
"""


def config(docs, tokenizer_dir, out):
    cfg = PrepareConfig(input=InputConfig(paths=[str(docs)], kind="documents"), tokenizer=str(tokenizer_dir),
                        out=str(out), progress=False, encode_batch=64)
    cfg.pack.seq_len, cfg.pack.rows_per_shard, cfg.pack.window = 64, 32, 256
    return cfg


@pytest.mark.slow
def test_sigkilled_prepare_rerun_is_byte_identical(tmp_path, tokenizer_dir, corpus_texts):
    docs = tmp_path / "docs.jsonl"
    with open(docs, "w") as f:
        for rep in range(1):
            for i, t in enumerate(corpus_texts):
                f.write(json.dumps({"text": f"[{rep}.{i}] " + t[:3000]}) + "\n")
    reference = prepare(config(docs, tokenizer_dir, tmp_path / "ref"))
    assert len(reference["shards"]) > 20

    killed = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(to_dict(config(docs, tokenizer_dir, killed)))],
                            env=env, cwd=ROOT)
    deadline = time.time() + 60
    try:
        while time.time() < deadline:
            prog = killed / "_progress.json"
            if prog.is_file():
                try:
                    if len(json.loads(prog.read_text())["shards"]) >= 3:
                        break
                except ValueError:
                    pass
            assert proc.poll() is None, "prepare finished before it could be killed; make the input larger"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "manifest.json").exists()
    written = len(list(killed.glob("shard_*.tokens.npy")))
    assert 3 <= written < len(reference["shards"])

    resumed = prepare(config(docs, tokenizer_dir, killed))
    assert resumed["timing"]["shards_reused"] >= 3
    assert resumed["fingerprint"] == reference["fingerprint"]
    ref_files = sorted(p.name for p in (tmp_path / "ref").iterdir() if p.name != "manifest.json")
    assert sorted(p.name for p in killed.iterdir() if p.name != "manifest.json") == ref_files
    for name in ref_files:
        assert (killed / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name
    assert resumed["counts"] == reference["counts"]
