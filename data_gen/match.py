"""Stage 3, match: documents -> templates through the index (streaming, shard by shard).

Each document is embedded with Gaussian coverage pooling (K+1 vectors: 0 = global, 1..K local); every
vector queries the index for ``top_k`` neighbours; candidates with cosine > ``threshold`` are kept (a
template found by several vectors keeps its best similarity and the chunk that gave it, which predicts
where its answer lies). ``templates_per_document`` templates are then sampled without replacement with
weights ``target(s) / count_of_candidates_with(s)`` for slot count ``s``, so that the sampled slot counts
follow the target distribution (default: the template bank's, i.e. the distribution of real queries).
The random choice depends only on (seed, document id), never on the shard a document lands in.

Output per shard: ``documents.parquet`` (doc_id, text) and ``matches.parquet`` (doc_id, template_id,
similarity, chunk_index, slot_count), both written while streaming so memory stays flat.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from data_gen.config import DataGenConfig, MatchConfig
from data_gen.shards import ProgressLog, StageStats, parquet_sink, run_shards
from fitrain.core.accounting import Rejects
from fitrain.core.errors import FitrainError
from fitrain.core.lock import dir_lock
from fitrain.core.rng import item_rng
from fitrain.data.records import Document, InputConfig, iter_documents


def doc_schema():
    import pyarrow as pa

    return pa.schema([("doc_id", pa.string()), ("text", pa.string())])


def match_schema():
    import pyarrow as pa

    return pa.schema([("doc_id", pa.string()), ("template_id", pa.string()), ("similarity", pa.float32()),
                      ("chunk_index", pa.int64()), ("slot_count", pa.int64())])


def shard_documents(cfg: DataGenConfig, i: int, n: int, rejects: Rejects) -> Iterator[Document]:
    """The documents of shard ``i``: running index ``j`` with ``j % n == i`` (bad rows counted once, by
    the shard that owns their position)."""
    scratch = Rejects()
    for j, doc in enumerate(_corpus(cfg, scratch)):
        if j % n == i:
            yield doc
    if i == 0:  # rows rejected while reading (invalid UTF-8, empty text, ...) are counted by shard 0 only
        rejects.merge(scratch)


def _corpus(cfg: DataGenConfig, rejects: Rejects) -> Iterator[Document]:
    """Every document of the corpus in order (``match.max_documents`` at most): document ``j`` of this
    iterator belongs to shard ``j % num_shards``."""
    m = cfg.match
    if not m.documents:
        raise FitrainError("match.documents is empty: name jsonl/parquet document files (column match.text_column)")
    inp = InputConfig(paths=list(m.documents), kind="documents", text_column=m.text_column, id_column=m.id_column)
    for j, doc in enumerate(iter_documents(inp, rejects)):
        if m.max_documents and j >= m.max_documents:
            break
        yield doc


def remove_stale_spools(stage_dir: Path) -> int:
    """Remove the ``.spool-<pid>/`` scratch of jobs that were killed (fitrain.core.lock.remove_abandoned);
    returns how many."""
    from fitrain.core.lock import remove_abandoned

    return sum(remove_abandoned(d) for d in sorted(Path(stage_dir).glob(".spool-*")) if d.is_dir())


class TaskDocuments:
    """``docs(i, rejects)``: the documents of shard ``i`` (as :func:`shard_documents`), for a job that runs
    several shards (an array task's range) with ONE pass over the corpus instead of one per shard: the first
    shard asked for spools the documents of every shard the job still has to run into scratch parquet
    files (``<stage>/.spool-<pid>/``, removed on close), which the shards then read. Same documents, same
    order, rejects of the reading counted by shard 0 as before."""

    def __init__(self, cfg: DataGenConfig, stage_dir: Path, shard=None, of: int | None = None):
        """``shard``/``of``: the job's shards as the shard runner selects them, out of ``of`` (default: all
        ``num_shards``; a generated baseline runs the training shards only)."""
        from data_gen.shards import selected_shards, shard_dir
        from fitrain.core.io import is_done

        self.cfg, self.n = cfg, cfg.num_shards
        self.pending = [i for i in selected_shards(of or self.n, shard) if not is_done(shard_dir(Path(stage_dir), i))]
        self.scratch = Path(stage_dir) / f".spool-{os.getpid()}"
        removed = remove_stale_spools(Path(stage_dir))
        if removed:
            print(f"[match] removed {removed} spool(s) of killed jobs in {stage_dir}", flush=True)
        self._held = contextlib.ExitStack()
        self.files: dict[int, Path] | None = None
        self.read_rejects = Rejects()

    def __call__(self, i: int, rejects: Rejects) -> Iterator[Document]:
        if len(self.pending) < 2 or i not in self.pending:
            yield from shard_documents(self.cfg, i, self.n, rejects)
            return
        if self.files is None:
            self.files = self._spool()
        from data_gen.shards import iter_parquet

        for batch in iter_parquet(self.files[i]):
            for r in batch:
                yield Document(r["doc_id"], r["text"])
        if i == 0:
            rejects.merge(self.read_rejects)

    def _spool(self) -> dict[int, Path]:
        files = {i: self.scratch / f"shard-{i:05d}.parquet" for i in self.pending}
        self._held.enter_context(dir_lock(self.scratch, "data_gen match spool"))  # stale once its job dies
        with contextlib.ExitStack() as stack:
            sinks = {i: stack.enter_context(parquet_sink(f, doc_schema())) for i, f in files.items()}
            rows: dict[int, list[dict]] = {i: [] for i in files}
            for j, doc in enumerate(_corpus(self.cfg, self.read_rejects)):
                k = j % self.n
                if k in rows:
                    rows[k].append({"doc_id": doc.doc_id, "text": doc.text})
                    if len(rows[k]) >= 1024:
                        sinks[k](rows[k])
                        rows[k] = []
            for k, rs in rows.items():
                sinks[k](rs)
        return files

    def close(self) -> None:
        import shutil

        self._held.close()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> "TaskDocuments":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def slot_weights(slots: np.ndarray, target: dict[int, float]) -> np.ndarray:
    """Sampling weight of each candidate: target(s) / (number of candidates with slot count s)."""
    uniq, counts = np.unique(slots, return_counts=True)
    per = {int(s): target.get(int(s), 0.0) / c for s, c in zip(uniq, counts)}
    w = np.array([per[int(s)] for s in slots], dtype=np.float64)
    if w.sum() <= 0:  # no candidate has a slot count the target knows: fall back to uniform
        w = np.ones(len(slots))
    return w / w.sum()


def candidates(sims: np.ndarray, rows: np.ndarray, threshold: float) -> dict[int, tuple[float, int]]:
    """``{faiss row: (best similarity, chunk index)}`` over one document's K+1 query results."""
    best: dict[int, tuple[float, int]] = {}
    for chunk in range(sims.shape[0]):
        for s, r in zip(sims[chunk], rows[chunk]):
            if r < 0 or s <= threshold:
                continue
            if r not in best or s > best[r][0]:
                best[int(r)] = (float(s), chunk)
    return best


def sample_templates(doc_id: str, cands: dict[int, tuple[float, int]], slot_counts: np.ndarray,
                     target: dict[int, float], n: int, seed: int) -> list[int]:
    if not cands:
        return []
    rows = np.array(sorted(cands), dtype=np.int64)
    w = slot_weights(slot_counts[rows], target)
    take = min(n, int((w > 0).sum()))
    return [int(r) for r in item_rng(seed, "match", doc_id).choice(rows, size=take, replace=False, p=w)]


def target_distribution(m: MatchConfig, index_meta: dict) -> dict[int, float]:
    raw = m.slot_count_target or {int(k): float(v) for k, v in index_meta.get("slot_counts", {}).items()}
    total = sum(raw.values())
    if total <= 0 or any(v < 0 for v in raw.values()):
        raise FitrainError(f"match.slot_count_target must have non-negative weights with a positive sum: {raw}")
    return {int(k): v / total for k, v in raw.items()}


def run(cfg: DataGenConfig, stage_dir: Path, index_dir: Path, encoder, shard: int | None = None, log=print) -> dict:
    from data_gen.index import TemplateIndex

    m = cfg.match
    tindex = TemplateIndex.load(index_dir, cfg.index.nprobe)
    target = target_distribution(m, tindex.meta)

    docs = TaskDocuments(cfg, stage_dir, shard)

    def work(i: int, out: Path) -> StageStats:
        st = StageStats("match")
        enc = encoder()
        with ProgressLog(f"match shard {i}", None, cfg.progress_every_s, log, cfg.progress,
                         lambda: st.rejects.total) as bar, \
                parquet_sink(out / "documents.parquet", doc_schema()) as write_docs, \
                parquet_sink(out / "matches.parquet", match_schema()) as write_matches:
            batch: list[Document] = []
            seen: set[str] = set()
            for doc in docs(i, st.rejects):
                if doc.doc_id in seen:  # its pairs would be grouped with the first document of that id
                    st.inputs += 1
                    st.rejects.add("duplicate_doc_id", doc.doc_id)
                    continue
                seen.add(doc.doc_id)
                batch.append(doc)
                if len(batch) >= m.batch_documents:
                    _match_batch(batch, enc, tindex, target, cfg, st, write_docs, write_matches)
                    bar.update(len(batch))
                    batch = []
            if batch:
                _match_batch(batch, enc, tindex, target, cfg, st, write_docs, write_matches)
                bar.update(len(batch))
        return st

    with docs:
        return run_shards("match", stage_dir, cfg.num_shards, work, shard, log)


def _match_batch(docs: list[Document], enc, tindex, target, cfg: DataGenConfig, st: StageStats,
                 write_docs, write_matches) -> None:
    m = cfg.match
    st.inputs += len(docs)
    emb = enc.embed_documents([d.text or "" for d in docs], m.pooling)
    for i, reason in emb.rejected.items():
        st.rejects.add(reason, docs[i].doc_id, f"{len(docs[i].text or '')} chars")
    st.count("truncated_for_encoder", len(emb.truncated))
    st.count("encoder_tokens", emb.tokens)
    if not emb.ok:
        return
    v = emb.vectors.reshape(-1, emb.vectors.shape[-1])
    sims, rows = tindex.search(v, m.top_k)
    per = emb.vectors.shape[1]
    doc_rows, match_rows = [], []
    for j, di in enumerate(emb.ok):
        d = docs[di]
        cands = candidates(sims[j * per:(j + 1) * per], rows[j * per:(j + 1) * per], m.threshold)
        st.count("candidates", len(cands))
        chosen = sample_templates(d.doc_id, cands, tindex.slot_counts, target, m.templates_per_document, cfg.seed)
        if not chosen:
            st.filtered.add("no_template_above_threshold", d.doc_id,
                            f"best {float(sims[j * per:(j + 1) * per].max()):.3f}")
            continue
        doc_rows.append({"doc_id": d.doc_id, "text": d.text})
        for r in chosen:
            s, chunk = cands[r]
            match_rows.append({"doc_id": d.doc_id, "template_id": tindex.template_ids[r], "similarity": s,
                               "chunk_index": chunk, "slot_count": int(tindex.slot_counts[r])})
        st.outputs += 1
        st.count("matches", len(chosen))
    write_docs(doc_rows)
    write_matches(match_rows)
