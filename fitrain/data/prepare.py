"""``prepare``: records -> formatted, tokenized, packed, response-masked shards + manifest.json.

Three modes, one pipeline:

* pairs (``input.kind=pairs``): FineInstructions / generic pair files; optionally the token-for-token
  budget (``budget.enabled``) selects pairs per source document (fitrain.data.budget; the document's tokens are
  counted exactly as the documents mode would produce them) and the manifest records it;
* documents (``input.kind=documents``): raw text for standard pre-training;
* documents from pairs (``input.kind=pairs``, ``documents_from_pairs=true``): the source documents of a
  pairs input, so the standard arm is built from the same FI files. With ``budget_from`` pointing at the
  FI arm's prepared directory, the budget is copied into this manifest and the document token totals are
  checked to agree (FI total = document total - final carry, whenever no pair was truncated or dropped).

Writing is atomic and resumable: shards are written one by one with atomic renames and recorded in
``_progress.json``; the manifest comes last. After each batch that finished a shard, the pipeline state is
checkpointed (fitrain.data.resume), so a rerun after a kill re-reads the inputs but tokenizes only
what the last checkpoint did not cover, and does not rewrite shards whose content hash is already on
disk: the result is byte-identical to an uninterrupted run. A finished directory with the same settings
and inputs is returned as is -- unless a shard or the manifest was damaged since, then it is rebuilt.
Only one prepare writes a directory at a time (fitrain.core.lock); a second one fails at once.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from fitrain.core.accounting import Rejects, TokenCounts
from fitrain.core.checks import POSITIVE, SEED, check_fields, fail
from fitrain.core.errors import FitrainError
from fitrain.core.io import clean_stale_temps, read_json, write_json
from fitrain.core.lock import dir_lock
from fitrain.core.stop import check_stop
from fitrain.data.budget import TokenBudget
from fitrain.data.formatting import FormatConfig, Formatter
from fitrain.data.manifest import MANIFEST, Manifest, ShardEntry, TokenizerInfo
from fitrain.data.packing import PackConfig, Packer, ShardWriter
from fitrain.data.records import (DocumentPairs, DuplicateCounter, InputConfig, expand_paths, iter_document_pairs,
                                  iter_documents)
from fitrain.data.resume import PROGRESS, load_state, read_progress, remove_states, save_state
from fitrain.data.reuse import finished_manifest
from fitrain.data.rowcounts import PATTERN as ROW_COUNTS, write_row_counts
from fitrain.data.shards import file_entries, fingerprint, open_prepared, shard_file


@dataclass
class BudgetConfig:
    enabled: bool = False   # pairs: select pairs token-for-token against their source documents
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(self, seed=SEED)


@dataclass
class PrepareConfig:
    input: InputConfig = field(default_factory=InputConfig)
    format: FormatConfig = field(default_factory=FormatConfig)
    pack: PackConfig = field(default_factory=PackConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    tokenizer: str = ""
    out: str = ""
    documents_from_pairs: bool = False   # prepare the source documents of a pairs input (standard arm)
    budget_from: str = ""                # documents: the FI arm's prepared dir whose budget this arm matches
    encode_batch: int = 1024             # items per encode_batch call
    progress: bool = True
    overwrite: bool = False              # replace a finished directory prepared with other settings (--overwrite)

    def __post_init__(self) -> None:
        check_fields(self, encode_batch=POSITIVE)
        if self.documents_from_pairs and self.input.kind != "pairs":
            fail("documents_from_pairs", "needs input.kind=pairs")
        if self.budget.enabled and self.kind != "pairs":
            fail("budget.enabled", "selects pairs and applies to a pairs input; a documents arm matches a budgeted FI "
                 "arm with budget_from=<FI prepared dir>")
        if self.budget_from and self.kind != "documents":
            fail("budget_from", "is for a documents arm (documents_from_pairs=true or input.kind=documents)")

    @property
    def kind(self) -> str:
        return "documents" if self.input.kind == "documents" or self.documents_from_pairs else "pairs"


def _recorded_config(cfg: PrepareConfig, tok_hash: str) -> dict:
    """The settings that decide what prepare makes (not where or how it reports), as the manifest records
    them; the tokenizer by its hash (the same tokenizer may move)."""
    from fitrain.core.config import to_dict
    from fitrain.core.overwrite import IGNORED

    d = {k: v for k, v in to_dict(cfg).items() if k not in IGNORED and k != "tokenizer"}
    return {**d, "tokenizer_hash": tok_hash}


def _settings_hash(cfg: PrepareConfig, tok_hash: str, files: list[str]) -> str:
    d = _recorded_config(cfg, tok_hash)
    d.pop("tokenizer_hash")
    stats = []
    for f in files:
        p = Path(f)
        stats.append([f, p.stat().st_size, p.stat().st_mtime_ns] if p.exists() else [f])
    blob = json.dumps([d, tok_hash, stats], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _batched_groups(groups: Iterator[DocumentPairs], max_pairs: int) -> Iterator[list[DocumentPairs]]:
    batch, n = [], 0
    for g in groups:
        batch.append(g)
        n += max(1, len(g.pairs))
        if n >= max_pairs:
            yield batch
            batch, n = [], 0
    if batch:
        yield batch


class _Run:
    """One prepare run. The main thread reads records and packs; a helper thread tokenizes the next batch
    meanwhile (``tokenizers`` releases the GIL), so reading/packing/writing overlap with tokenization.
    Batches are consumed strictly in input order, so the output does not depend on timing."""

    def __init__(self, cfg: PrepareConfig, fmt: Formatter, packer: Packer, kind: str):
        self.cfg, self.fmt, self.packer, self.kind = cfg, fmt, packer, kind
        self.rejects, self.filtered = Rejects(), Rejects()
        self.counts = TokenCounts()
        self.budget = TokenBudget(seed=cfg.budget.seed) if cfg.budget.enabled and kind == "pairs" else None
        self.items_in = 0
        self.repeats = DuplicateCounter()  # input rows seen before (counted while reading, so on resume too)

    def state_dict(self) -> dict:
        return {"counts": dataclasses.asdict(self.counts), "items_in": self.items_in,
                "budget": dataclasses.asdict(self.budget) if self.budget is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.counts = TokenCounts(**state["counts"])
        self.items_in = int(state["items_in"])
        if state["budget"] is not None:
            self.budget = TokenBudget(**state["budget"])

    # ---------------------------------------------------------------------- main thread: what to encode
    def _units(self) -> Iterator[tuple[list[DocumentPairs] | None, list[str], int]]:
        """(pair groups or None, document texts, input units) per batch; rejects are counted here."""
        cfg, size = self.cfg, max(1, self.cfg.encode_batch)
        if cfg.input.kind == "documents":
            texts: list[str] = []
            for doc in iter_documents(cfg.input, self.rejects):
                self.repeats.add(doc.text)  # type: ignore[arg-type]
                texts.append(doc.text)  # type: ignore[arg-type]
                if len(texts) >= size:
                    yield None, texts, len(texts)
                    texts = []
            if texts:
                yield None, texts, len(texts)
            return
        for batch in _batched_groups(iter_document_pairs(cfg.input, self.rejects, self.filtered), size):
            n = len(batch)
            for g in batch:
                if self.kind == "documents":
                    self.repeats.add(g.document.text or g.document.doc_id)
                for pr in g.pairs if self.kind == "pairs" else ():
                    self.repeats.add(g.document.doc_id, pr.instruction, pr.answer)
            if self.kind == "pairs" and self.budget is None:
                yield batch, [], n
                continue
            usable = []
            for g in batch:
                if g.document.text:
                    usable.append(g)
                elif self.kind == "documents":
                    self.rejects.add("no_document_text", g.document.doc_id)
                elif g.pairs:
                    self.rejects.add("no_document_text_for_budget", g.document.doc_id, n=len(g.pairs))
            texts = [g.document.text for g in usable]  # type: ignore[misc]
            yield (usable if self.kind == "pairs" else None), texts, n

    # ---------------------------------------------------------------------- helper thread: tokenize
    def _encode(self, groups: list[DocumentPairs] | None, texts: list[str]) -> tuple[list, list]:
        if groups is None:
            return self.fmt.encode_documents(texts), []
        pairs = self.fmt.encode_pairs([(p.instruction, p.answer) for g in groups for p in g.pairs])
        return pairs, self.fmt.document_token_counts(texts) if texts else []

    # ---------------------------------------------------------------------- main thread: budget + pack
    def _consume(self, groups: list[DocumentPairs] | None, encoded: list, doc_tokens: list[int]) -> None:
        if groups is None:
            self._place(encoded, is_pair=False)
            return
        pos = 0
        self.counts.documents += len(groups)  # pairs arm: the source documents whose pairs were considered
        for j, g in enumerate(groups):
            items = encoded[pos:pos + len(g.pairs)]
            pos += len(g.pairs)
            if self.budget is not None:
                chosen = self.budget.take(g.document.doc_id, doc_tokens[j], [len(i) for i, _ in items])
                items = [items[k] for k in chosen]
            self._place(items, is_pair=True)

    def _place(self, items: list, is_pair: bool) -> None:
        for ids, mask in items:
            self.items_in += 1
            if self.packer.add(ids, mask):
                if is_pair:
                    self.counts.pairs += 1
                else:
                    self.counts.documents += 1

    def run(self, skip: int = 0, after_batch: Any = None) -> None:
        """Process the input; the first ``skip`` batches are read but not tokenized (a loaded resume state
        covers them); ``after_batch(batches_done)`` runs at every batch boundary."""
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        from tqdm import tqdm

        bar = tqdm(disable=not self.cfg.progress, unit=" docs", desc=f"prepare {self.cfg.out}", mininterval=1.0)
        pending: deque = deque()
        done = skip
        with ThreadPoolExecutor(1, thread_name_prefix="fitrain-encode") as pool:
            for k, (groups, texts, n) in enumerate(self._units()):
                if k < skip:
                    bar.update(n)
                    continue
                pending.append((groups, n, pool.submit(self._encode, groups, texts)))
                if len(pending) > 1:
                    self._finish(pending.popleft(), bar)
                    done += 1
                    if after_batch:
                        after_batch(done)
            while pending:
                self._finish(pending.popleft(), bar)
                done += 1
                if after_batch:
                    after_batch(done)
        self.packer.flush()
        bar.close()

    def _finish(self, entry: tuple, bar: Any) -> None:
        groups, n, future = entry
        self._consume(groups, *future.result())
        bar.update(n)


def _clear(out: Path) -> None:
    """Remove what an earlier run with other settings left (shards, manifest, temporary files)."""
    for pat in ("shard_*.npy", MANIFEST, PROGRESS, ".*.tmp", "_resume_*.npz", ROW_COUNTS):
        for p in out.glob(pat):
            p.unlink(missing_ok=True)


def prepare(cfg: PrepareConfig) -> Manifest:
    """Prepare ``cfg.input`` into ``cfg.out``; returns the manifest (also written to manifest.json)."""
    from fitrain.data.tokenizer import load_tokenizer, tokenizer_hash

    kind, policy = _check(cfg)
    tok = load_tokenizer(cfg.tokenizer)
    tok_hash = tokenizer_hash(cfg.tokenizer)
    repeated: list[str] = []
    files = expand_paths(cfg.input.paths, cfg.input.dedupe_files, repeated)
    if repeated:
        print(f"prepare: {len(repeated)} file(s) matched by more than one of input.paths are read once: "
              f"{', '.join(repeated[:3])}{' ...' if len(repeated) > 3 else ''}", file=sys.stderr)
    out = Path(cfg.out)
    with dir_lock(out, "fitrain prepare"):
        settings = _settings_hash(cfg, tok_hash, files + list(cfg.input.judge_score_paths))
        finished = finished_manifest(out, settings, _recorded_config(cfg, tok_hash), cfg.overwrite)
        if finished is not None:
            return finished
        t0 = time.perf_counter()
        p = _pipeline(cfg, out, settings, tok, kind, policy)
        p.run.run(p.skip, p.after_batch)
        shards = p.writer.close()
        if not shards:
            every = Rejects().merge(p.run.rejects).merge(p.run.filtered)
            raise FitrainError(f"prepare: nothing to write from {', '.join(files)}: every input was rejected or "
                               f"filtered ({every.describe()})")
        manifest = _manifest(cfg, p, shards, files, tok, tok_hash, settings, kind, time.perf_counter() - t0)
        manifest.duplicates = {"rows": p.run.repeats.duplicates(), "files": repeated}
        manifest.write(out)
        write_row_counts(open_prepared(out))   # the training plan reads these, not every token (rowcounts.py)
        (out / PROGRESS).unlink(missing_ok=True)
        remove_states(out)
    return manifest


def _check(cfg: PrepareConfig) -> tuple[str, str]:
    """The input kind and over-long policy; the settings checked themselves on construction (PrepareConfig's
    ``__post_init__``), what a run needs besides is checked here, before any work."""
    kind = cfg.kind
    policy = cfg.pack.policy(kind)
    if not cfg.out:
        raise FitrainError("prepare: set `out` (the output directory)")
    if not cfg.input.paths:
        raise FitrainError("prepare: no input (set input.paths)")
    return kind, policy


@dataclass
class _Pipeline:
    run: _Run
    packer: Packer
    writer: ShardWriter
    skip: int                              # input batches a loaded resume state covers
    after_batch: Callable[[int], None]     # saves the resume state at batch boundaries that finished a shard


def _pipeline(cfg: PrepareConfig, out: Path, settings: str, tok: Any, kind: str, policy: str) -> _Pipeline:
    """The pipeline, restored from a killed run's resume state when there is one."""
    from fitrain.data.tokenizer import vocab_size_of

    clean_stale_temps(out)  # what a killed run was writing
    progress = read_progress(out, settings)
    if not progress["shards"]:
        _clear(out)
    done = {int(k): ShardEntry.from_dict(v) for k, v in progress["shards"].items()}

    def on_shard(i: int, entry: ShardEntry) -> None:
        progress["shards"][str(i)] = dataclasses.asdict(entry)
        write_json(out / PROGRESS, progress)

    writer = ShardWriter(out, cfg.pack.seq_len, vocab_size_of(tok), cfg.pack.shard_rows(), done, on_shard)
    packer = Packer(cfg.pack.seq_len, policy, writer.add_row, cfg.pack.window, cfg.pack.max_open_rows)
    run = _Run(cfg, Formatter(tok, cfg.format), packer, kind)
    components = {"run": run, "packer": packer, "writer": writer}
    skip = load_state(out, progress, components, files_present=lambda st: all(
        shard_file(out, i, part).is_file() for i in range(len(st["writer"]["shards"]))
        for part in ("tokens", "mask", "seg")))
    saved = [len(writer.shards)]

    def after_batch(batches: int) -> None:
        if len(writer.shards) > saved[0]:  # save only at batch boundaries that finished a shard
            save_state(out, progress, batches, components)
            saved[0] = len(writer.shards)
        check_stop(f"in prepare {out}")  # a safe point (fitrain.core.stop): a rerun resumes from the saved state

    return _Pipeline(run, packer, writer, skip, after_batch)


def _manifest(cfg: PrepareConfig, p: _Pipeline, shards: list[ShardEntry], files: list[str], tok: Any,
              tok_hash: str, settings: str, kind: str, seconds: float) -> Manifest:
    from fitrain.data.tokenizer import tokenizer_identity, vocab_size_of

    run, packer, writer = p.run, p.packer, p.writer
    counts = run.counts
    for i, s in enumerate(shards):
        s.files = file_entries(cfg.out, i)
        counts.rows += s.rows
        counts.total_tokens += s.total_tokens
        counts.supervised_tokens += s.supervised_tokens
        counts.padding_tokens += s.padding_tokens
    m = Manifest(
        fingerprint=fingerprint(cfg.pack.seq_len, shards), kind=kind, documents_from_pairs=cfg.documents_from_pairs,
        seq_len=cfg.pack.seq_len, vocab_size=vocab_size_of(tok), token_dtype=str(writer.dtype),
        tokenizer=TokenizerInfo(path=str(Path(cfg.tokenizer).resolve()), hash=tok_hash,
                                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                                identity=tokenizer_identity(tok)),
        format={"template": cfg.format.template, "loss_mask": cfg.format.loss_mask,
                "use_chat_template": cfg.format.use_chat_template, "add_bos": cfg.format.add_bos},
        counts=counts, segments=sum(s.segments for s in shards), items_in=run.items_in,
        rejects=run.rejects, filtered=run.filtered, overlong=packer.overlong,
        budget=run.budget.to_dict() if run.budget is not None else None,
        sources=[{"path": str(Path(f).resolve()) if Path(f).exists() else f,
                  "bytes": Path(f).stat().st_size if Path(f).exists() else None} for f in files],
        judge_score_sources=list(cfg.input.judge_score_paths), min_judge_score=cfg.input.min_judge_score,
        shards=shards, settings=settings, config=_recorded_config(cfg, tok_hash),
        timing={"seconds": round(seconds, 3), "shards_reused": writer.reused, "resumed_after_batches": p.skip,
                "tokens_per_second": round(counts.total_tokens / seconds, 1) if seconds else None})
    if cfg.budget_from:
        m.matched_budget = _match_budget(cfg.budget_from, counts, packer.overlong)
    return m


def _match_budget(fi_dir: str, counts: TokenCounts, overlong: dict) -> dict:
    """Copy the FI arm's budget and check this documents arm holds exactly its document tokens."""
    fi = Manifest.read(fi_dir, "budget_from")
    budget = fi.budget
    if not budget:
        raise FitrainError(f"budget_from: {fi_dir} was prepared without a budget (budget.enabled=false)")
    lost = overlong.get("dropped_tokens", 0) + overlong.get("truncated_tokens", 0)
    if counts.total_tokens + lost != budget["document_tokens"]:
        raise FitrainError(f"budget_from: this arm has {counts.total_tokens + lost} document tokens, the budget of "
                           f"{fi_dir} counted {budget['document_tokens']}; were both prepared from the same "
                           "inputs, tokenizer and format.add_bos?")
    return {"from": str(Path(fi_dir).resolve()), "fingerprint": fi.fingerprint, "budget": budget,
            "fi_total_tokens": fi.counts.total_tokens, "standard_total_tokens": counts.total_tokens}
