"""Matching throughput and memory with the offline encoder (all-MiniLM-L6-v2), on this machine.

Prints, each against a reference measured in the same run:
1. documents/s of the match stage (Gaussian coverage pooling embedding + FAISS retrieval + sampling) on
   the Python documentation corpus, per encoder token as well;
2. index queries/s of FAISS (flat, IVF, HNSW) against a brute-force numpy search on the same vectors
   (ratio, and recall@k of the approximate indexes against the brute force);
3. peak memory (max RSS of a fresh process running the match stage) at 1x and 10x the documents, and
   their ratio: matching streams, so it must stay flat.

    .venv/bin/python benchmarks/match_throughput.py [--docs 40] [--index-size 100000] [--queries 600]
Timings on a shared machine are noisy: run it when the cores are idle, or read the ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def base_config(run_dir: Path, docs_path: Path, n_docs: int):
    from data_gen.config import DataGenConfig

    cfg = DataGenConfig(run_dir=str(run_dir), progress=False)
    cfg.encoder.max_length = 256
    cfg.templatize.source = "bank"
    cfg.templatize.bank = [str(REPO / "data_gen/assets/quickstart_templates.jsonl")]
    cfg.match.documents = [str(docs_path)]
    cfg.match.id_column = "id"
    cfg.match.max_documents = n_docs
    cfg.match.threshold = 0.40  # the quickstart recipe's value (benchmarks/match_threshold.py)
    cfg.match.batch_documents = 16   # 1x must hold several batches for the memory comparison to mean anything
    return cfg


def child(run_dir: str, docs_path: str, n_docs: int) -> None:
    """One match-stage run in a fresh process; prints docs, seconds, tokens and peak RSS."""
    import shutil

    import torch

    from data_gen.pipeline import run

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    cfg = base_config(Path(run_dir), Path(docs_path), n_docs)
    shutil.rmtree(Path(run_dir) / "data_gen" / "matches", ignore_errors=True)
    from data_gen.encoder import Encoder

    enc = Encoder(cfg.encoder)
    enc.embed(["warm up"])
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    out = run(cfg, ["match"], log=lambda s: None, encoder=enc)
    dt = time.perf_counter() - t0
    st = out["match"]["stats"]
    print(json.dumps({"docs": st["in"], "seconds": dt, "tokens": st["counters"].get("encoder_tokens", 0),
                      "matched": st["out"], "rss_after_load_mb": rss_loaded / 1024,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def index_benchmark(n: int, queries: int, k: int, seed: int = 0) -> None:
    import faiss

    from data_gen.config import IndexConfig
    from data_gen.index import build_faiss

    rng = np.random.default_rng(seed)
    d = 384
    centres = rng.normal(size=(256, d)).astype(np.float32)     # clustered, like real description embeddings
    base = centres[rng.integers(0, 256, n)] + 0.6 * rng.normal(size=(n, d)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    q = base[rng.integers(0, n, queries)] + 0.3 * rng.normal(size=(queries, d)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)

    t0 = time.perf_counter()
    brute_rows = []
    for s in range(0, queries, 100):           # chunked, so memory stays bounded as it would in practice
        sims = q[s:s + 100] @ base.T
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, top, 1), axis=1)
        brute_rows.append(np.take_along_axis(top, order, 1))
    t_brute = time.perf_counter() - t0
    brute = np.concatenate(brute_rows)
    print(f"\nindex search: {n} x {d} vectors, {queries} queries, k={k}, faiss threads {faiss.omp_get_max_threads()}")
    print(f"  numpy brute force          {queries / t_brute:10.0f} queries/s   (reference)")
    for name, cfg in [("faiss flat (exact)", IndexConfig(kind="flat")),
                      ("faiss IVF nprobe=150", IndexConfig(kind="ivf", nprobe=150, train_size=min(n, 65536))),
                      ("faiss IVF nprobe=16", IndexConfig(kind="ivf", nprobe=16, train_size=min(n, 65536))),
                      ("faiss HNSW M=32 ef=128", IndexConfig(kind="hnsw"))]:
        t0 = time.perf_counter()
        index = build_faiss([base], cfg, seed)
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, rows = index.search(q, k)
        t = time.perf_counter() - t0
        recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(rows, brute)])
        print(f"  {name:<26} {queries / t:10.0f} queries/s   x{t_brute / t:6.2f} vs numpy   "
              f"recall@{k} {recall:.3f}   build {t_build:.1f}s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=32, help="documents at 1x (10x runs ten times as many)")
    ap.add_argument("--index-size", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=600)
    ap.add_argument("--child", nargs=3, metavar=("RUN_DIR", "DOCS", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return

    from fitrain.data.corpus import CorpusConfig, iter_builtin_documents

    from data_gen.pipeline import run

    tmp = Path(tempfile.mkdtemp(prefix="match_bench_"))
    docs = list(iter_builtin_documents(CorpusConfig()))
    need = args.docs * 10
    if len(docs) < need:
        raise SystemExit(f"the built-in corpus has {len(docs)} documents; --docs must be <= {len(docs) // 10}")
    docs_path = tmp / "docs.jsonl"
    docs_path.write_text("".join(json.dumps({"id": d["id"], "text": d["text"]}) + "\n" for d in docs[:need]))
    cfg = base_config(tmp / "run", docs_path, need)
    run(cfg, ["templatize", "index"], log=lambda s: None)
    print(f"match stage: all-MiniLM-L6-v2 (max_length 256), K=5 Gaussian coverage pooling, flat index of "
          f"{len(open(cfg.templatize.bank[0]).readlines())} templates, Python documentation corpus")
    results = {}
    for scale in (1, 10):
        out = subprocess.run([sys.executable, __file__, "--child", str(tmp / "run"), str(docs_path),
                              str(args.docs * scale)], capture_output=True, text=True, cwd=REPO)
        if out.returncode != 0:
            raise SystemExit(out.stderr[-3000:])
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results[scale] = r
        print(f"  {scale:>2}x: {r['docs']:5d} documents in {r['seconds']:7.1f}s = {r['docs'] / r['seconds']:6.2f} docs/s "
              f"({r['tokens'] / r['seconds']:7.0f} encoder tokens/s), peak RSS {r['peak_rss_mb']:.0f} MB "
              f"(after loading the encoder {r['rss_after_load_mb']:.0f} MB)")
    one, ten = results[1], results[10]
    print(f"  peak memory 10x / 1x = {ten['peak_rss_mb'] / one['peak_rss_mb']:.3f} "
          f"(growth {ten['peak_rss_mb'] - one['peak_rss_mb']:+.0f} MB for {ten['docs'] - one['docs']} more documents)")
    index_benchmark(args.index_size, args.queries, 64)


if __name__ == "__main__":
    main()
