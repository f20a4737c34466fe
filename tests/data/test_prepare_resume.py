"""A SIGKILLed prepare, rerun, gives shards byte-identical to an uninterrupted run (real subprocess)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from fitrain.core.config import to_dict
from fitrain.data.prepare import BudgetConfig, PrepareConfig, prepare
from fitrain.data.records import Document, DocumentPairs, InputConfig, Pair, write_pairs_parquet

from tests.helpers.paths import REPO as ROOT
CHILD = """
import json, sys
from fitrain.core.config import from_dict
from fitrain.data.prepare import PrepareConfig, prepare
prepare(from_dict(PrepareConfig, json.loads(sys.argv[1])))
"""


def make_input(tmp_path, corpus_texts, kind):
    if kind == "documents":
        path = tmp_path / "docs.jsonl"
        with open(path, "w") as f:
            for i, t in enumerate(corpus_texts):
                f.write(json.dumps({"text": f"[{i}] " + t[:3000]}) + "\n")
                if i % 25 == 0:
                    f.write(json.dumps({"text": "  "}) + "\n")  # a counted reject
        return path
    groups = []
    for i, t in enumerate(corpus_texts):
        doc = t[:2500]
        words = doc.split()
        pairs = [Pair(f"d{i}", f"What does part {k} of '{' '.join(words[:6])}' say?",
                      " ".join(words[k * 40:(k + 1) * 40]) if i % 30 else "") for k in range(5)]
        groups.append(DocumentPairs(Document(f"d{i}", doc), pairs))  # every 30th document: empty answers
    path = tmp_path / "pairs.parquet"
    write_pairs_parquet(path, groups)
    return path


def config(path, kind, tokenizer_dir, out):
    cfg = PrepareConfig(input=InputConfig(paths=[str(path)], kind="documents" if kind == "documents" else "pairs"),
                        tokenizer=str(tokenizer_dir), out=str(out), progress=False, encode_batch=16)
    if kind == "pairs":
        cfg.budget = BudgetConfig(enabled=True, seed=3)
    cfg.pack.seq_len, cfg.pack.rows_per_shard, cfg.pack.window, cfg.pack.max_open_rows = 64, 32, 48, 6
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["documents", "pairs"])
def test_sigkilled_prepare_rerun_is_byte_identical(tmp_path, tokenizer_dir, corpus_texts, kind):
    path = make_input(tmp_path, corpus_texts, kind)
    reference = prepare(config(path, kind, tokenizer_dir, tmp_path / "ref"))
    assert len(reference.shards) > 15 and reference.rejects.total > 0

    killed = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", CHILD,
                             json.dumps(to_dict(config(path, kind, tokenizer_dir, killed)))], env=env, cwd=ROOT)
    deadline = time.time() + 60
    try:
        while time.time() < deadline:
            prog = killed / "_progress.json"
            if prog.is_file():
                try:
                    st = json.loads(prog.read_text()).get("state")
                    if st and len(st["components"]["writer"]["shards"]) >= 3:
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
    assert 3 <= len(list(killed.glob("shard_*.tokens.npy"))) < len(reference.shards)

    resumed = prepare(config(path, kind, tokenizer_dir, killed))
    assert resumed.timing["resumed_after_batches"] > 0  # the saved batches were not re-tokenized
    assert resumed.fingerprint == reference.fingerprint
    ref_files = sorted(p.name for p in (tmp_path / "ref").iterdir() if p.name != "manifest.json")
    assert sorted(p.name for p in killed.iterdir() if p.name != "manifest.json") == ref_files
    for name in ref_files:
        assert (killed / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name
    for key in ("counts", "rejects", "filtered", "overlong", "budget", "items_in", "segments"):
        assert getattr(resumed, key) == getattr(reference, key), key
