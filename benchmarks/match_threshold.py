"""Which cosine threshold suits the offline encoder? The paper's 0.865 is calibrated for its fine-tuned
BGE-M3; all-MiniLM-L6-v2 similarities between documents and template descriptions are lower.

For the quickstart setting (Python documentation corpus x the quickstart template bank, K=5 Gaussian
coverage pooling, all K+1 vectors queried), prints the distribution of each document's best similarity
and, per threshold, the share of documents with at least 1 and at least 6 candidates (the reference
row is the paper's 0.865).

    .venv/bin/python benchmarks/match_threshold.py [--docs 200]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=200)
    args = ap.parse_args()

    from data_gen.config import DataGenConfig
    from data_gen.encoder import Encoder
    from data_gen.index import TemplateIndex
    from data_gen.match import candidates
    from data_gen.pipeline import run
    from fitrain.data.corpus import CorpusConfig, iter_builtin_documents

    cfg = DataGenConfig(run_dir=tempfile.mkdtemp(prefix="thr_"), progress=False)
    cfg.encoder.max_length = 256
    cfg.templatize.source = "bank"
    cfg.templatize.bank = [str(REPO / "data_gen/assets/quickstart_templates.jsonl")]
    enc = Encoder(cfg.encoder)
    run(cfg, ["templatize", "index"], log=lambda s: None, encoder=enc)
    index = TemplateIndex.load(Path(cfg.run_dir) / "data_gen" / "index")
    docs = [d["text"] for _, d in zip(range(args.docs), iter_builtin_documents(CorpusConfig()))]
    emb = enc.embed_documents(docs, cfg.match.pooling)
    per = emb.vectors.shape[1]
    sims, rows = index.search(emb.vectors.reshape(-1, emb.vectors.shape[-1]), len(index.template_ids))
    best = sims.reshape(len(emb.ok), per, -1)[:, :, 0].max(axis=1)
    print(f"{len(emb.ok)} documents x {len(index.template_ids)} templates, encoder {Path(enc.path).name}")
    print("best similarity per document: " + ", ".join(f"p{q} {np.percentile(best, q):.3f}" for q in (10, 25, 50, 75, 90)))
    print(f"{'threshold':>9}  {'>=1 cand.':>9}  {'>=6 cand.':>9}  {'mean cand.':>10}")
    for thr in (0.865, 0.6, 0.55, 0.5, 0.45, 0.4, 0.35):
        counts = [len(candidates(sims[j * per:(j + 1) * per], rows[j * per:(j + 1) * per], thr))
                  for j in range(len(emb.ok))]
        c = np.array(counts)
        ref = "   (paper's value, reference)" if thr == 0.865 else ""
        print(f"{thr:9.3f}  {np.mean(c >= 1):9.1%}  {np.mean(c >= 6):9.1%}  {c.mean():10.1f}{ref}")


if __name__ == "__main__":
    main()
