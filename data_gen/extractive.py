"""Offline extractive handlers for ``fitrain.core.llm.ExtractiveBackend``.

**A lightweight fallback, not the paper's method.** It lets the whole pipeline run on a CPU with no
language model: it honours the templatize / instantiate / judge contracts (same JSON in, same replies out,
same parsers and rejects downstream) using only the embedding model and simple text heuristics:

* templatize: spans that look specific (quoted text, code identifiers, numbers, capitalised names; else
  the longest content word) become ``<fi>…</fi>`` slots described by their kind; the description names
  the query's topic.
* instantiate: each slot is filled with the document phrase whose embedding is closest to the slot's
  description; the answer is the passage of 1-3 consecutive sentences closest to the instruction, written
  as an ``<excerpt>first words <...> last words</excerpt>`` marker that the real expansion code copies
  back from the document (so every answer is grounded by construction). ``null`` when nothing fits.
* judge: the cosine similarity of instruction and answer mapped onto the 1-5 rubric, as
  ``<feedback>…</feedback> <score>n</score>``.

The handlers read the structured contract inputs from ``Request.meta['inputs']``, which every stage sets.
"""
from __future__ import annotations

import json
import re
from typing import Callable

import numpy as np

from data_gen.excerpts import ExcerptError, expand_excerpts
from fitrain.core.errors import FitrainError
from fitrain.core.llm import Completion, ExtractiveBackend, Request

STOP = set("""a an the and or but if of to in on at by for with from as is are was were be been being do does did
how what which who whom whose why when where can could should would will shall may might must i you he she it we they
me my your our their this that these those there here not no yes any some all about into over under than then so
such very more most much many also just only its it's between after before during use used using get make""".split())
_QUOTED = re.compile(r"[\"'`“‘]([^\"'`”’]{2,60})[\"'`”’]")
_IDENT = re.compile(r"\b[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)+(?:\(\))?|\b\w+\(\)|\b[a-z]+_[a-z_0-9]+\b")
_NUMBER = re.compile(r"\b\d+(?:[.,]\d+)*\b")
_NAME = re.compile(r"\b[A-Z][a-zA-Z0-9]+(?:\s+(?:of\s+|de\s+|the\s+)?[A-Z][a-zA-Z0-9]+)*")
# a sentence ends at . ! ? followed by whitespace (not inside os.path or 3.11), or at a blank line
_SENT = re.compile(r"(?:[^.!?\n]|[.!?](?!\s|$)|\n(?!\s*\n))+(?:[.!?]+(?=\s|$)|\n\s*\n|$)")
_WORD = re.compile(r"\S+")
# judge: cosine(instruction, answer) thresholds for scores 2..5 (MiniLM scale; a fallback heuristic)
JUDGE_THRESHOLDS = (0.15, 0.25, 0.35, 0.45)
MIN_FIT = 0.2        # instantiate: best sentence similarity below this -> null (template does not fit)
EXCERPT_WORDS = 6    # words at each end of an excerpt marker (grown until the span is unique)
MAX_PHRASES = 48    # candidate slot fillers per document (names, identifiers, numbers, frequent words)


def _slot_spans(query: str) -> list[tuple[int, int, str]]:
    spans: list[tuple[int, int, str]] = []

    def add(a: int, b: int, kind: str) -> None:
        if b - a >= 2 and not any(a < y and x < b for x, y, _ in spans):
            spans.append((a, b, kind))

    for m in _QUOTED.finditer(query):
        add(m.start(1), m.end(1), "quoted text or phrase")
    for m in _IDENT.finditer(query):
        add(m.start(), m.end(), "code identifier, function or module name")
    for m in _NUMBER.finditer(query):
        add(m.start(), m.end(), "number or quantity")
    for m in _NAME.finditer(query):
        if m.start() == 0 and " " not in m.group() and m.group().lower() in STOP | {"name", "list", "give", "tell",
                                                                                   "explain", "describe", "write"}:
            continue
        if m.start() > 0 or " " in m.group():
            add(m.start(), m.end(), "name of a person, place, organisation or thing")
    if not spans:
        words = [(m.start(), m.end(), m.group().strip(".,;:?!()")) for m in _WORD.finditer(query)]
        content = [(a, a + len(w), w) for a, _, w in words if w.lower() not in STOP and len(w) > 3]
        if content:
            a, b, _ = max(content, key=lambda x: (len(x[2]), -x[0]))
            add(a, b, "topic or subject")
    return sorted(spans)


def templatize_query(query: str) -> dict:
    spans = _slot_spans(query)
    out, pos = [], 0
    for a, b, kind in spans:
        out.append(query[pos:a] + f"<fi>{kind}</fi>")
        pos = b
    template = "".join(out) + query[pos:]
    topic = " ".join(w for w in re.findall(r"[A-Za-z][\w'-]*", query) if w.lower() not in STOP)[:200]
    desc = (f"A document, such as an article, reference page or technical documentation, that gives the "
            f"information needed to answer a question about {topic or 'the subject of the query'}.")
    return {"template": template, "compatible_document_description": desc}


def _sentences(doc: str) -> list[tuple[int, int]]:
    out = []
    for m in _SENT.finditer(doc):
        seg = m.group()
        lead = len(seg) - len(seg.lstrip())
        a, b = m.start() + lead, m.start() + len(seg.rstrip())
        if b - a >= 15 and len(_WORD.findall(doc[a:b])) >= 3:
            out.append((a, b))
    return out


def _phrases(doc: str) -> list[str]:
    found: dict[str, None] = {}
    for rx in (_QUOTED, _IDENT, _NAME, _NUMBER):
        for m in rx.finditer(doc):
            p = (m.group(1) if rx is _QUOTED else m.group()).strip()
            if 2 <= len(p) <= 60:
                found.setdefault(p, None)
    words = [w.strip(".,;:?!()\"'") for w in doc.split()]
    counts: dict[str, int] = {}
    for w in words:
        if len(w) > 3 and w.lower() not in STOP:
            counts[w] = counts.get(w, 0) + 1
    for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:30]:
        found.setdefault(w, None)
    return list(found)[:MAX_PHRASES]


def excerpt_marker(doc: str, a: int, b: int) -> str:
    """The shortest ``<excerpt>start <...> end</excerpt>`` that expands to exactly ``doc[a:b]``."""
    words = doc[a:b].split()
    n = EXCERPT_WORDS
    while n * 2 < len(words):
        marker = f"<excerpt>{' '.join(words[:n])} <...> {' '.join(words[-n:])}</excerpt>"
        try:
            if expand_excerpts(marker, doc).spans == [(a, b)]:
                return marker
        except ExcerptError:
            pass
        n += 2
    return f"<excerpt>{' '.join(words)}</excerpt>"


class ExtractiveHandlers:
    """The offline handlers. ``backend()`` gives a batched ExtractiveBackend; ``handlers()`` the plain
    task -> handler map (one request at a time) for ``fitrain.core.llm.ExtractiveBackend``."""

    def __init__(self, encoder):
        self.encoder = encoder
        self._memo: dict[str, np.ndarray] = {}
        self._docs: dict[str, tuple] = {}

    # ------------------------------------------------------------------------------------------ embeddings
    def _vecs(self, texts: list[str]) -> np.ndarray:
        """Embeddings through a per-batch memo: all missing texts are embedded in one batched call."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._memo))
        if missing:
            for t, v in zip(missing, self.encoder.embed(missing)):
                self._memo[t] = v
        if not texts:
            return np.zeros((0, getattr(self.encoder, "dim", 1)), np.float32)
        return np.stack([self._memo[t] for t in texts])

    def _doc_features(self, doc: str):
        if doc not in self._docs:
            sents = _sentences(doc)
            phrases = _phrases(doc)
            self._docs[doc] = (sents, phrases)
        return self._docs[doc]

    def _reset(self) -> None:
        self._memo.clear()
        self._docs.clear()

    # -------------------------------------------------------------------------------------------- handlers
    def handlers(self) -> dict[str, Callable[[Request], str | None]]:
        return {task: (lambda r, f=f: f([r])[0]) for task, f in self.batch_handlers().items()}

    def batch_handlers(self) -> dict[str, Callable[[list[Request]], list[str | None]]]:
        return {"templatize": self.templatize, "instantiate": self.instantiate, "judge": self.judge}

    def backend(self) -> "BatchedExtractiveBackend":
        return BatchedExtractiveBackend(self)

    def templatize(self, reqs: list[Request]) -> list[str | None]:
        return [json.dumps(templatize_query(r.meta["inputs"]["query"]), ensure_ascii=False) for r in reqs]

    def instantiate(self, reqs: list[Request]) -> list[str | None]:
        inputs = [r.meta["inputs"] for r in reqs]
        feats = [self._doc_features(i["document"]) for i in inputs]
        # one batched pass over every sentence, phrase and slot description of the batch
        texts = []
        for i, (sents, phrases) in zip(inputs, feats):
            texts += [i["document"][a:b] for a, b in sents] + phrases
            texts += re.findall(r"<fi>(.*?)</fi>", i["instruction_template"], re.DOTALL)
        self._vecs(texts)
        instructions: list[str | None] = []
        for i, (sents, phrases) in zip(inputs, feats):
            instructions.append(self._fill(i["instruction_template"], sents, phrases))
        self._vecs([x for x in instructions if x])
        out: list[str | None] = []
        for i, (sents, _), ins in zip(inputs, feats, instructions):
            out.append("null" if ins is None else self._answer(i["document"], sents, ins))
        return out

    def _fill(self, template: str, sents, phrases) -> str | None:
        slots = re.findall(r"<fi>(.*?)</fi>", template, re.DOTALL)
        if not sents or (slots and not phrases):
            return None
        fills: list[str] = []
        if slots:
            sims = self._vecs(slots) @ self._vecs(phrases).T
            used: set[int] = set()
            for k in range(len(slots)):
                order = np.argsort(-sims[k], kind="stable")
                j = next((int(j) for j in order if int(j) not in used), int(order[0]))
                used.add(j)
                fills.append(phrases[j])
        it = iter(fills)
        return re.sub(r"<fi>.*?</fi>", lambda m: next(it), template, flags=re.DOTALL)

    def _answer(self, doc: str, sents, instruction: str) -> str:
        s = self._vecs([doc[a:b] for a, b in sents]) @ self._vecs([instruction])[0]
        best = int(np.argmax(s))
        if float(s[best]) < MIN_FIT:
            return "null"
        lo = hi = best
        while hi - lo < 2:  # grow to neighbouring sentences that are nearly as relevant
            left = float(s[lo - 1]) if lo > 0 else -1.0
            right = float(s[hi + 1]) if hi + 1 < len(sents) else -1.0
            if max(left, right) < 0.8 * float(s[best]):
                break
            lo, hi = (lo - 1, hi) if left >= right else (lo, hi + 1)
        answer = excerpt_marker(doc, sents[lo][0], sents[hi][1])
        return json.dumps({"instantiated_instruction": instruction, "answer": answer}, ensure_ascii=False)

    def judge(self, reqs: list[Request]) -> list[str | None]:
        pairs = [(r.meta["inputs"]["instruction"], r.meta["inputs"]["answer"]) for r in reqs]
        self._vecs([t for p in pairs for t in p])
        out = []
        for ins, ans in pairs:
            a, b = self._vecs([ins, ans])
            cos = float(a @ b)
            score = 1 + sum(cos >= t for t in JUDGE_THRESHOLDS)
            out.append(f"<feedback>Extractive fallback judge (not an LLM): cosine similarity {cos:.3f} between "
                       f"the instruction and the answer.</feedback>\n<score>{score}</score>")
        return out


class BatchedExtractiveBackend(ExtractiveBackend):
    """ExtractiveBackend that hands each task's requests to its batch handler at once (one batched
    encoder pass instead of one per request). A failing batch falls back to one request at a time, so a
    handler error costs only the requests it hits (counted by the caller)."""

    def __init__(self, handlers: ExtractiveHandlers):
        super().__init__(handlers.handlers())
        self.h = handlers

    def complete(self, requests, progress=None):
        reqs = list(requests)
        out: list[Completion | None] = [None] * len(reqs)
        by_task: dict[str, list[int]] = {}
        for i, r in enumerate(reqs):
            by_task.setdefault(r.task, []).append(i)
        batch = self.h.batch_handlers()
        for task, idx in by_task.items():
            if task not in batch:
                raise FitrainError(f"extractive backend has no handler for task '{task}' (has: {sorted(batch)})")
            try:
                texts = batch[task]([reqs[i] for i in idx])
                for i, t in zip(idx, texts):
                    out[i] = Completion(t)
            except Exception:
                for i, c in zip(idx, super().complete([reqs[i] for i in idx])):
                    out[i] = c
            finally:
                self.h._reset()
            if progress:
                progress(len(idx))
        return out
