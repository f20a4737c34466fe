"""Stage 2, index: embed the templates' compatible document descriptions into a persisted FAISS index.

Embedding runs in shards of ``index.shard_size`` templates (``index/emb/shard-NNNNN/vectors.npy`` with
completion markers), so millions of templates are embedded resumably and, on a cluster, by array tasks.
The index is then built from the shards: exact inner-product search (``flat``) when small, ``ivf``
(trained on a sample, nprobe configurable; the released retriever uses nprobe=150) or ``hnsw`` when large.
Vectors are L2-normalised, so inner product = cosine. Persisted: ``index.faiss``, ``template_rows.parquet``
(faiss row -> template_id, slot_count), ``meta.json``, ``_SUCCESS``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_gen.config import DataGenConfig, IndexConfig
from data_gen.shards import StageStats, require_done, run_shards, shard_dir
from fitrain.core.errors import FitrainError
from fitrain.core.io import atomic_path, is_done, mark_done, read_json, write_json


def choose_kind(cfg: IndexConfig, n: int) -> str:
    if cfg.kind == "auto":
        return "flat" if n <= cfg.flat_max else "ivf"
    return cfg.kind


def build_faiss(vectors_by_shard: list[np.ndarray], cfg: IndexConfig, seed: int = 0):
    """A faiss index over the concatenated shards (rows numbered in shard order)."""
    import faiss

    n = sum(len(v) for v in vectors_by_shard)
    if n == 0:
        raise FitrainError("no template vectors to index")
    d = vectors_by_shard[0].shape[1]
    kind = choose_kind(cfg, n)
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = cfg.ef_search
    else:
        nlist = cfg.nlist or max(1, int(4 * math.sqrt(n)))
        nlist = min(nlist, n)
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        take = min(n, max(cfg.train_size, nlist * 39))
        rows = np.sort(rng.choice(n, size=take, replace=False))
        index.train(_gather(vectors_by_shard, rows))
        index.nprobe = min(cfg.nprobe, nlist)
    for v in vectors_by_shard:
        index.add(np.ascontiguousarray(v, dtype=np.float32))
    return index


def _gather(shards: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
    starts = np.cumsum([0] + [len(s) for s in shards])
    out = []
    for j, s in enumerate(shards):
        sel = rows[(rows >= starts[j]) & (rows < starts[j + 1])] - starts[j]
        if len(sel):
            out.append(s[sel])
    return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)


# ------------------------------------------------------------------------------------------------ stage
def run(cfg: DataGenConfig, stage_dir: Path, templates_dir: Path, encoder, shard: int | None = None,
        log=print) -> dict:
    import pyarrow.parquet as pq

    require_done(templates_dir, "templatize")
    table = pq.read_table(templates_dir / "templates.parquet",
                          columns=["template_id", "compatible_document_description", "slot_count"])
    n = table.num_rows
    size = max(1, cfg.index.shard_size)
    n_shards = max(1, math.ceil(n / size))
    emb_dir = stage_dir / "emb"

    def work(i: int, out: Path) -> StageStats:
        st = StageStats("index")
        part = table.slice(i * size, size)
        texts = part.column("compatible_document_description").to_pylist()
        st.inputs = st.outputs = len(texts)
        vecs = encoder().embed(texts)
        with atomic_path(out / "vectors.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, vecs)
        return st

    status = run_shards("index-embed", emb_dir, n_shards, work, shard, log)
    if not status["complete"]:
        return status
    if is_done(stage_dir):
        return {**status, "index": read_json(stage_dir / "meta.json")}
    import faiss

    vectors = [np.load(shard_dir(emb_dir, i) / "vectors.npy") for i in range(n_shards)]
    index = build_faiss(vectors, cfg.index, cfg.seed)
    kind = choose_kind(cfg.index, n)
    with atomic_path(stage_dir / "index.faiss") as tmp:
        faiss.write_index(index, str(tmp))
    with atomic_path(stage_dir / "template_rows.parquet") as tmp:
        pq.write_table(table.select(["template_id", "slot_count"]), tmp)
    slots = table.column("slot_count").to_numpy()
    dist = {str(int(s)): int((slots == s).sum()) for s in np.unique(slots)}
    meta = {"kind": kind, "templates": n, "dim": int(vectors[0].shape[1]), "embedding_shards": n_shards,
            "encoder": getattr(encoder(), "path", ""), "nprobe": getattr(index, "nprobe", None),
            "slot_counts": dist}
    write_json(stage_dir / "meta.json", meta)
    write_json(stage_dir / "stats.json", {"stage": "index", "in": n, "out": n, "counters": meta})
    mark_done(stage_dir, meta)
    log(f"[index] {kind} index over {n} templates ({meta['dim']}-d) in {stage_dir}")
    return {**status, "index": meta}


@dataclass
class TemplateIndex:
    """The persisted index, loaded for matching."""

    index: object
    template_ids: list[str]
    slot_counts: np.ndarray
    meta: dict

    @classmethod
    def load(cls, stage_dir: Path, nprobe: int | None = None) -> "TemplateIndex":
        import faiss
        import pyarrow.parquet as pq

        require_done(stage_dir, "index")
        index = faiss.read_index(str(stage_dir / "index.faiss"))
        if nprobe and hasattr(index, "nprobe"):
            index.nprobe = nprobe
        rows = pq.read_table(stage_dir / "template_rows.parquet")
        return cls(index, rows.column("template_id").to_pylist(),
                   rows.column("slot_count").to_numpy().astype(np.int64), read_json(stage_dir / "meta.json"))

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosine similarities and faiss rows [n, k] (row -1 where fewer than k exist)."""
        k = max(1, min(k, len(self.template_ids)))
        return self.index.search(np.ascontiguousarray(vectors, dtype=np.float32), k)
