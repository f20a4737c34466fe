"""Offline extractive handlers for ``fitrain.core.llm.ExtractiveBackend``.

**A lightweight fallback, not the paper's method.** It lets the whole pipeline run on a CPU with no
language model: it honours the templatize / instantiate / judge contracts (same JSON in, same replies out,
same parsers and rejects downstream) with the embedding model and the text heuristics of
data_gen/fallback_text.py. It aims at pairs that make sense rather than at many pairs, and says
``null`` (the template does not fit) whenever a heuristic cannot fill a template honestly:

* templatize: every specific span of a query (quoted text, code names, numbers, capitalised names; else
  the nouns after articles, else its longest content word) becomes a slot that keeps its original value,
  ``<fi>name of a person, place, organisation or thing (e.g. "Marie Curie")</fi>``, so a query with
  several spans gives a template with several slots;
* instantiate: each slot is filled with a document phrase **of the same kind** as its value or
  description (a function where a function is asked, a module for a module, a person for a person, a
  year for a year; a common noun only by a close synonym of the original), consistent across slots (the
  function of that module, the method of that class), ranked by closeness to the original value. The
  answer is a passage **about the filled value** (the entry's own docstring on a reference page, else the
  sentences that mention it) that **responds to the question type** (what it returns, which exception,
  a year for "when" ...), quoted with ``<excerpt>first words <...> last words</excerpt>`` markers that
  the real expansion code copies back from the document (grounded by construction);
* judge: independent checks of the pair on the 1-5 rubric: are the instruction's specific words (its
  filled values and focus words) in the answer or in the entry it quotes, does the answer contain what
  the question type asks for, is it a clean passage (a sentence start, not a table, code dump or
  fragment), and how close are instruction and answer in the embedding.

The handlers read the structured contract inputs from ``Request.meta['inputs']``, which every stage sets.
"""
from __future__ import annotations

import json
import re
from typing import Callable

import numpy as np

from data_gen.excerpts import ExcerptError, expand_excerpts
from data_gen.fallback_judge import judge_pair
from data_gen.fallback_kinds import STOP, Kind, question_cue, slot_kind, templatize_query
from data_gen.fallback_text import Candidate, DocFacts, doc_facts
from fitrain.core.errors import FitrainError
from fitrain.core.llm import Completion, ExtractiveBackend, Request

SLOT = re.compile(r"<fi>(.*?)</fi>", re.DOTALL)
EXCERPT_WORDS = 6    # words at each end of an excerpt marker (grown until the span is unique)
MAX_SENTENCES = 3    # an answer passage: 1-3 consecutive sentences
MAX_ANSWER_WORDS = 120
NAME_MIN_SIM = 0.3   # a name is replaced by a name of the document somewhat like it ('Tope' -> another fish)
NOUN_MIN_SIM = 0.75  # a common noun is replaced only by a close synonym from the document (same ending)
# ---------------------------------------------------------------------------------------------- excerpts
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


# ------------------------------------------------------------------------------------------- instantiate
def _consistent(kinds: list[Kind], chosen: list[Candidate]) -> bool:
    """The function of that module, the method of that class, two different things for two slots."""
    texts = [c.text for c in chosen]
    if len(set(texts)) < len(texts):
        return False
    primary = chosen[0]
    for k, c in zip(kinds[1:], chosen[1:]):
        if k.sub == "module" and primary.kind.family == "code" and primary.module and c.text != primary.module:
            return False
        if k.sub == "class" and primary.kind.sub == "method" and c.text != primary.owner:
            return False
    return True


def _display(c: Candidate, kinds: list[Kind]) -> str:
    """A function named with its module, unless the template names the module in a slot of its own."""
    if c.kind.family == "code" and c.module and any(k.sub == "module" for k in kinds) and c.kind.sub != "module":
        return c.text.rsplit(".", 1)[-1]
    return c.text


def _agrees(before: str, fill: str) -> bool:
    """A plural phrase does not follow 'is', 'a' or 'an' ('What is names?'); a singular one not 'are'."""
    last = fill.split()[-1].lower() if fill.split() else ""
    plural = last.endswith("s") and not last.endswith(("ss", "us", "is")) and "." not in fill and "_" not in fill
    if re.search(r"\b(?:is|a|an|does)\s*$", before, re.IGNORECASE):
        return not plural
    if re.search(r"\bare\s*$", before, re.IGNORECASE):
        return plural
    return True


_DETERMINERS = re.compile(r"\b(?:a|an|the|this|that|these|those|of|my|your|some|any|each|every|no|are)\s*$",
                          re.IGNORECASE)


def _fill_text(before: str, after: str, fill: str, c: Candidate) -> str:
    """The phrase as it reads in the template: a head noun the template repeats is left out ('do with
    mode arguments', not 'mode argument arguments'); a singular noun phrase or a common-noun term after a
    verb or 'is' takes 'a' ('How do I run a child program', 'What is a docstring')."""
    words = fill.split()
    if not words:
        return fill
    nxt = after.split()[0].lower().strip("?.,") if after.split() else ""
    if c.kind.family == "phrase" and c.kind.sub == "heads" and len(words) > 1 and nxt[:5] == words[-1].lower()[:5]:
        return " ".join(words[:-1])
    last = words[-1].lower()
    plural = last.endswith("s") and not last.endswith(("ss", "us", "is"))
    noun_phrase = c.kind.family == "phrase" and c.kind.sub == "heads" or c.kind.family == "term" and fill.islower()
    if noun_phrase and not plural and not _DETERMINERS.search(before):
        return "a " + fill
    return fill


def _articles(text: str) -> str:
    """'a' before a vowel sound becomes 'an' (and back) after filling."""
    text = re.sub(r"\b([Aa]) (?=[aeiouAEIOU])", lambda m: m.group(1) + "n ", text)
    return re.sub(r"\b([Aa])n (?=[^aeiouAEIOU\W])", lambda m: m.group(1) + " ", text)


def _windows(passage: tuple[int, int], sents: list[tuple[int, int]]) -> list[tuple[int, int]]:
    inside = [s for s in sents if s[0] >= passage[0] and s[1] <= passage[1]] or [passage]
    out = []
    for i in range(len(inside)):
        for j in range(i, min(i + MAX_SENTENCES, len(inside))):
            out.append((inside[i][0], inside[j][1], i))
    return out


class ExtractiveHandlers:
    """The offline handlers. ``backend()`` gives a batched ExtractiveBackend; ``handlers()`` the plain
    task -> handler map (one request at a time) for ``fitrain.core.llm.ExtractiveBackend``."""

    def __init__(self, encoder):
        self.encoder = encoder
        self._memo: dict[str, np.ndarray] = {}
        self._docs: dict[str, DocFacts] = {}

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

    def sim(self, a: str, b: str) -> float:
        va, vb = self._vecs([a, b])
        return float(va @ vb)

    def facts(self, doc: str) -> DocFacts:
        if doc not in self._docs:
            self._docs[doc] = doc_facts(doc)
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
        """Every request of the batch in three passes, each embedding what it needs in one encoder call:
        rank the candidates of slots that kept an original value, fill, choose the closest pair."""
        inputs = [(r.meta["inputs"]["instruction_template"], r.meta["inputs"]["document"]) for r in reqs]
        ranked = []
        for template, doc in inputs:
            for kind in (slot_kind(d) for d in SLOT.findall(template)):
                if kind.value and kind.family != "none":
                    ranked += [c.text for c in self._raw_options(kind, self.facts(doc))] + [kind.value.lower(),
                                                                                           kind.value]
        self._vecs(ranked)
        found = [self.fillings(template, doc) for template, doc in inputs]
        self._vecs([t for (_, doc), f in zip(inputs, found) if len(f) > 1 for ins, (a, b) in f
                    for t in (ins, doc[a:b])])
        out: list[str | None] = []
        for (_, doc), f in zip(inputs, found):
            if not f:
                out.append("null")
                continue
            ins, (a, b) = f[0] if len(f) == 1 else max(f, key=lambda x: self.sim(x[0], doc[x[1][0]:x[1][1]]))
            out.append(json.dumps({"instantiated_instruction": ins, "answer": excerpt_marker(doc, a, b)},
                                  ensure_ascii=False))
        return out

    def instantiate_one(self, template: str, doc: str) -> tuple[str, tuple[int, int]] | None:
        """(instruction, answer span) or None when the template does not fit the document."""
        found = self.fillings(template, doc)
        if not found:
            return None
        return max(found, key=lambda x: self.sim(x[0], doc[x[1][0]:x[1][1]]))

    def fillings(self, template: str, doc: str) -> list[tuple[str, tuple[int, int]]]:
        """Every consistent filling of the template with its answer span ([] when none fits)."""
        descs = SLOT.findall(template)
        kinds = [slot_kind(d) for d in descs]
        if not kinds or any(k.family == "none" for k in kinds):
            return []
        facts = self.facts(doc)
        options = [self._options(k, facts) for k in kinds]
        if any(not o for o in options):
            return []
        found: list[tuple[str, tuple[int, int]]] = []
        befores = [template[:m.start()] for m in SLOT.finditer(template)]
        afters = [template[m.end():] for m in SLOT.finditer(template)]
        for chosen in self._assignments(kinds, options):
            fills = [_fill_text(b, a, _display(c, kinds), c) for b, a, c in zip(befores, afters, chosen)]
            if any(not _agrees(b, f) for b, f in zip(befores, fills)):
                continue
            it = iter(fills)
            instruction = _articles(SLOT.sub(lambda m: next(it), template))
            span = self._answer(instruction, chosen, facts)
            if span is not None:
                found.append((instruction, span))
        return found

    def _raw_options(self, kind: Kind, facts: DocFacts) -> list[Candidate]:
        return self._noun_words(facts) if kind.family == "noun" else facts.of(kind)

    def _options(self, kind: Kind, facts: DocFacts) -> list[Candidate]:
        """Candidates of the slot's kind, closest to the original value first (at most 4; a common noun
        only when it is a close synonym of the original)."""
        cands = self._raw_options(kind, facts)
        if kind.value and cands:
            s = self._vecs([c.text for c in cands]) @ self._vecs([kind.value.lower() if kind.family == "noun"
                                                                 else kind.value])[0]
            order = np.argsort(-s, kind="stable")
            cands = [cands[i] for i in order if (s[i] >= NOUN_MIN_SIM and cands[i].text[-2:] == kind.value.lower()[-2:])
                     or kind.family != "noun" and (kind.family != "entity" or s[i] >= NAME_MIN_SIM)]
        elif kind.family == "noun":
            return []
        return cands[:4]

    def _noun_words(self, facts: DocFacts) -> list[Candidate]:
        words: dict[str, int] = {}
        for m in re.finditer(r"\b[a-z][a-z-]{3,}\b", facts.text):
            if m.group() not in STOP:
                words.setdefault(m.group(), m.start())
        out = []
        for w, pos in words.items():
            sent = next(((a, b) for a, b in facts.sents if a <= pos < b), None)
            if sent:
                out.append(Candidate(w, Kind("noun"), sent))
        return out

    def _assignments(self, kinds: list[Kind], options: list[list[Candidate]]):
        """Consistent choices of one candidate per slot (the first slot leads), at most 8."""
        n = 0
        for first in options[0]:
            if not first.lead:
                continue
            partial = [[first]]
            for opts in options[1:]:
                partial = [p + [c] for p in partial for c in opts if _consistent(kinds[:len(p) + 1], p + [c])]
            for p in partial:
                yield p
                n += 1
                if n >= 8:
                    return

    def _answer(self, instruction: str, chosen: list[Candidate], facts: DocFacts) -> tuple[int, int] | None:
        """The passage about the first filled value that responds to the question and mentions the others."""
        cue = question_cue(instruction)
        doc = facts.text
        lead = chosen[0]
        others = [c.text for c in chosen[1:] if not (c.kind.sub in ("module", "class") and c.text in
                                                      (lead.module, lead.owner))]
        best = None
        for a, b, first in _windows(lead.passage, facts.sents):
            text = doc[a:b]
            if len(text.split()) > MAX_ANSWER_WORDS:
                continue
            if cue.answer and not re.search(cue.answer, text, re.IGNORECASE):
                continue
            if cue.name == "difference" and lead.text not in text:
                continue
            if any(o not in text for o in others):
                continue
            about = lead.text in text or lead.passage[0] <= a and lead.kind.family == "code"
            if not about:
                continue
            rank = (first == 0, -(b - a))  # the passage's own start first, then the shorter window
            if best is None or rank > best[0]:
                best = (rank, (a, b))
        return None if best is None else best[1]

    def judge(self, reqs: list[Request]) -> list[str | None]:
        self._vecs([t for r in reqs for t in (r.meta["inputs"]["instruction"], r.meta["inputs"]["answer"])])
        out = []
        for r in reqs:
            inp = r.meta["inputs"]
            score, why = judge_pair(inp["instruction"], inp["answer"], inp.get("document", ""), self.sim)
            out.append(f"<feedback>Extractive fallback judge (heuristics, not an LLM): {why}</feedback>\n"
                       f"<score>{score}</score>")
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
