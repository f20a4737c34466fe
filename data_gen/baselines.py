"""Generated baseline arms: IPT / Nemotron-CC style synthetic corpora built from an experiment's own
documents, through the same LLM client layer (fitrain.core.llm) and shard runner (data_gen.shards) as the
FineInstructions stages (fitrain/docs/method.md, "The paper's baselines (Table 1)").

Methods (prompts are files: data_gen/prompts/baseline_qa.yaml, baseline_rephrase.yaml):

* ``qa_appended`` (Nemotron-CC "diverse QA", IPT's reading-comprehension layout): a model writes
  question-answer pairs from a document; the arm's text is the document followed by some of the parsed
  pairs, ``Question: ...`` / ``Answer: ...``. As in NeMo Curator's post-processing, the pairs are shuffled
  (seeded per document) and their number grows with the document's length: one per ``words_per_pair``
  words, at least one, at most ``max_pairs``.
* ``rephrase`` (WRAP style): the document rewritten as encyclopedic prose; the arm trains on the rewrite.
  A rewrite under ``min_rephrase_ratio`` of the document's words is rejected (``rephrase_too_short``).

**Offline fallback** (``llm.backend: extractive``), a heuristic and **not a language model**: QA pairs are
extractive, each answer one of the document's own sentences and its question built from that sentence
(a definition "X is Y" asks "What is X?", otherwise "What is stated about <term>?" for a name, identifier
or salient word of the sentence); a "rephrase" is a normalisation (markup, links and fragment lines
removed, wrapped lines joined, common contractions expanded): it changes the form of the text, not its
wording. Its replies take the form the parsers read, so offline runs exercise the whole path.

Documents are data_gen's own document shards (data_gen.match.shard_documents: document ``j`` of the
corpus belongs to shard ``j % num_shards``), so a generated arm never sees the held-out shards. Output per
shard: ``<out>/shard-NNNNN/documents.parquet`` (``doc_id``, ``text``), ``stats.json`` and ``_SUCCESS``;
model replies are cached per shard (``llm_cache.jsonl``), so a killed shard does not pay twice.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from data_gen.config import DataGenConfig
from data_gen.prompting import load_prompt
from data_gen.shards import StageStats, row_sink, run_shards
from fitrain.core.checks import FRACTION, POSITIVE, check_fields
from fitrain.core.errors import FitrainError
from fitrain.core.llm import Backend, LLMConfig, Request, make_backend, stream_parsed
from fitrain.core.rng import item_rng
from fitrain.data.records import Document

METHODS = ("qa_appended", "rephrase")
PROMPTS = {"qa_appended": "baseline_qa", "rephrase": "baseline_rephrase"}
TASKS = {"qa_appended": "baseline_qa", "rephrase": "baseline_rephrase"}


@dataclass
class GenerateOptions:
    prompt: str = ""                   # '' = baseline_qa / baseline_rephrase (data_gen/prompts/), or a path
    max_new_tokens: int = 768
    max_document_chars: int = 12_000   # the prompt holds at most this much of a document (the output keeps it whole)
    max_pairs: int = 8                 # qa_appended: pairs asked for, and appended at most, per document
    words_per_pair: int = 60           # qa_appended: one appended pair per this many document words (>= 1 pair)
    min_rephrase_ratio: float = 0.3    # rephrase: shorter rewrites (in words) are rejected
    batch_size: int = 256              # output rows per write (requests stream: llm.max_concurrency in flight)

    def __post_init__(self) -> None:
        check_fields(self, max_new_tokens=POSITIVE, max_document_chars=POSITIVE, max_pairs=POSITIVE,
                     words_per_pair=POSITIVE, min_rephrase_ratio=FRACTION, batch_size=POSITIVE)


# ------------------------------------------------------------------------------------------------ parsing
_LEAD = r"^\s*(?:[-*\u2022]\s*|\d+[.)]\s*)?(?:\*\*)?"
_QUESTION = re.compile(_LEAD + r"(?:question|q)\s*\d*\s*[:.]\s*(?:\*\*)?\s*", re.IGNORECASE)
_ANSWER = re.compile(_LEAD + r"(?:answer|a)\s*\d*\s*[:.]\s*(?:\*\*)?\s*", re.IGNORECASE)
_INTRO = re.compile(r"^\s*(?:here is|here's|below is|sure)[^\n]{0,80}[:.!][ \t]*(?:\n|$)", re.IGNORECASE)


def parse_qa(text: str) -> list[tuple[str, str]]:
    """``Question: ...`` / ``Answer: ...`` pairs (bullets, numbering and bold markers tolerated; an answer
    may run over several lines); ValueError when the reply holds none."""
    pairs: list[tuple[str, str]] = []
    q: list[str] | None = None
    a: list[str] | None = None

    def flush() -> None:
        if q is not None and a is not None and " ".join(q).strip() and " ".join(a).strip():
            pairs.append((" ".join(q).strip(), "\n".join(a).strip()))

    for line in text.splitlines():
        m = _QUESTION.match(line)
        if m:
            flush()
            q, a = [line[m.end():].strip()], None
            continue
        m = _ANSWER.match(line)
        if m and q is not None and a is None:
            a = [line[m.end():].strip()]
        elif line.strip() and q is not None:
            (a if a is not None else q).append(line.strip())
    flush()
    if not pairs:
        raise ValueError("no 'Question:' / 'Answer:' pairs in the reply")
    return pairs


def parse_rephrase(text: str) -> str:
    """The rewritten text without an introductory line or surrounding quotes; ValueError when empty."""
    s = _INTRO.sub("", text.strip(), count=1).strip().strip('"').strip()
    if not s:
        raise ValueError("empty rewrite")
    return s


def n_words(text: str) -> int:
    return len(text.split())


def qa_appended(document: str, pairs: list[tuple[str, str]], doc_id: str, seed: int, opts: GenerateOptions
                ) -> tuple[str, int]:
    """The document followed by a seeded, length-proportional sample of its pairs; (text, pairs used)."""
    k = min(opts.max_pairs, len(pairs), max(1, n_words(document) // opts.words_per_pair))
    order = item_rng(seed, "qa_appended", doc_id).permutation(len(pairs))[:k]
    qa = "\n\n".join(f"Question: {pairs[i][0]}\nAnswer: {pairs[i][1]}" for i in order)
    return f"{document.rstrip()}\n\n{qa}", k


# ------------------------------------------------------------------------------------------------ offline
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(`])|\n\s*\n")
_DEFINITION = re.compile(r"^(?P<subj>[^,;:()]{3,70}?)\s+(?P<verb>is|are|was|were)\s+(?P<rest>\S.{8,})$")
_NAME = re.compile(r"(?<!^)(?<![.!?]\s)\b[A-Z][a-zA-Z0-9]+(?:\s+[A-Z][a-zA-Z0-9]+)*")
_IDENT = re.compile(r"`?\b[A-Za-z_]\w*(?:\.\w+)+(?:\(\))?`?|`?\b\w+\(\)`?|`?\b[a-z]+_[a-z_0-9]+\b`?")
_LOWER_FIRST = {"the", "a", "an", "this", "these", "those", "each", "every", "all", "some", "most", "many"}
_COMMON = set("""about after also been before being between both could does doing during each from have having
into more most much must only other over same should some such than that their them then there these they this
those through under until very what when where which while will with within would your""".split())
_CONTRACTIONS = [(r"\bcan't\b", "cannot"), (r"\bwon't\b", "will not"), (r"\bshan't\b", "shall not"),
                 (r"n't\b", " not"), (r"'re\b", " are"), (r"'ll\b", " will"), (r"'ve\b", " have"),
                 (r"\bI'm\b", "I am"), (r"'d\b", " would")]
_MARKUP = [(re.compile(r"\[([^\]]+)\]\((?:[^)]+)\)"), r"\1"), (re.compile(r"<[^>\n]{1,200}>"), " "),
           (re.compile(r"https?://\S+"), " "), (re.compile(r"(\*\*|__|\*|`)"), ""),
           (re.compile(r"^[ \t]{0,3}#{1,6}[ \t]*", re.MULTILINE), "")]
_LIST_ITEM = re.compile(r"^\s*(?:[-*+\u2022]|\d+[.)])\s+")


def split_sentences(text: str) -> list[str]:
    return [" ".join(s.split()) for s in _SENTENCE_END.split(text) if s and s.strip()]


def _key_term(sentence: str) -> str:
    for rx in (_IDENT, _NAME):
        m = rx.search(sentence)
        if m:
            return m.group().strip("`")
    words = [w.strip(".,;:!?()\"'") for w in sentence.split()]
    content = [w for w in words if len(w) > 3 and w.lower() not in _COMMON]
    return max(content, key=len) if content else words[0]


def offline_question(sentence: str) -> str:
    m = _DEFINITION.match(sentence.rstrip(".!"))
    if m and n_words(m.group("subj")) <= 8:
        subj = m.group("subj")
        first = subj.split()[0]
        if first.lower() in _LOWER_FIRST:
            subj = first.lower() + subj[len(first):]
        return f"What {m.group('verb')} {subj}?"
    return f"What is stated about {_key_term(sentence)}?"


def _offline_qa(r: Request) -> str:
    inputs = r.meta["inputs"]
    sentences = [s for s in split_sentences(inputs["document"])
                 if 6 <= n_words(s) <= 80 and s[-1:] in ".!" and sum(c.isalpha() for c in s) > 0.6 * len(s)]
    score = {s: len({w.lower() for w in s.split() if len(w) > 3 and w.lower() not in _COMMON}) for s in sentences}
    keep = set(sorted(sentences, key=lambda s: -score[s])[: int(inputs["max_pairs"])])
    return "\n\n".join(f"Question: {offline_question(s)}\nAnswer: {s}" for s in sentences if s in keep)


def offline_rephrase_text(text: str) -> str:
    for rx, repl in _MARKUP:
        text = rx.sub(repl, text)
    for pat, repl in _CONTRACTIONS:
        text = re.sub(pat, repl, text)
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines = [ln.strip() for ln in block.splitlines() if ln.strip()]
        if not lines or (len(lines) == 1 and n_words(lines[0]) < 4 and lines[0][-1:] not in ".!?:"):
            continue  # a heading, a navigation item or a stray fragment
        if all(_LIST_ITEM.match(ln) for ln in lines):
            paragraphs.append("\n".join(" ".join(ln.split()) for ln in lines))
        else:
            paragraphs.append(" ".join(" ".join(lines).split()))
    return "\n\n".join(paragraphs)


def _offline_rephrase(r: Request) -> str:
    return offline_rephrase_text(r.meta["inputs"]["document"])


def offline_handlers() -> dict[str, Callable[[Request], str | None]]:
    """The extractive backend's handlers for the two baseline tasks (see the module docstring)."""
    return {"baseline_qa": _offline_qa, "baseline_rephrase": _offline_rephrase}


# ------------------------------------------------------------------------------------------------ running
def make_baseline_backend(llm: LLMConfig, shard_out: Path) -> Backend:
    if llm.backend == "extractive":
        return make_backend(dataclasses.replace(llm, cache=""), handlers=offline_handlers())
    cached = llm if llm.cache else dataclasses.replace(llm, cache=str(shard_out / "llm_cache.jsonl"))
    return make_backend(cached)


def run(method: str, llm: LLMConfig, opts: GenerateOptions, dg: DataGenConfig, out_dir: str | Path,
        shards: int, seed: int = 0, shard: int | Sequence[int] | None = None,
        log: Callable[[str], None] = print) -> dict:
    """Generate the baseline over data_gen's document shards ``0..shards-1`` (of ``dg.num_shards``; ``shard``:
    one or several of them, as the shard runner selects), one output shard per document shard, behind one
    model server start (checked to serve ``llm.model``; its log ``<out>/vllm.shard-NNNNN.log`` is named by
    the job's first shard). Requests stream through the client's window of ``llm.max_concurrency``.
    Returns the shard runner's status (merged statistics when complete)."""
    from data_gen.match import TaskDocuments
    from data_gen.serve import serving

    if method not in METHODS:
        raise FitrainError(f"unknown baseline method '{method}'; one of {list(METHODS)}")
    prompt = load_prompt(opts.prompt or PROMPTS[method], {"document"})
    parse = parse_qa if method == "qa_appended" else parse_rephrase
    stage = f"generate-{method}"
    out_dir = Path(out_dir)
    first = shard if isinstance(shard, int) or shard is None else (min(shard) if shard else None)
    log_path = out_dir / (f"vllm.shard-{first:05d}.log" if first is not None else "vllm.log")

    def request(d: Document) -> Request:
        cut = (d.text or "")[: opts.max_document_chars]
        r = prompt.request(TASKS[method], {"document": cut, "max_pairs": opts.max_pairs}, opts.max_new_tokens,
                           d.doc_id, document=cut, max_pairs=str(opts.max_pairs))
        r.meta["doc"] = d
        return r

    with serving(llm, dg.serve, log_path) as model:
        def work(i: int, out: Path) -> StageStats:
            from fitrain.data.corpora import document_schema

            st = StageStats(stage)
            reqs = (request(d) for d in docs(i, st.rejects))
            with stream_parsed(make_baseline_backend(model, out), reqs, parse, st.rejects,
                               what=TASKS[method]) as stream, \
                    row_sink(out / "documents.parquet", document_schema(), st, opts.batch_size) as add:
                for req, parsed in stream:
                    st.inputs += 1
                    if parsed is not None:  # failed or unparsable: counted by stream_parsed
                        row = _row(method, req.meta["doc"], parsed, seed, opts, st)
                        if row is not None:
                            add(row)
            return st

        with TaskDocuments(dg, out_dir, shard, of=shards) as docs:  # one pass over the corpus for the job's shards
            return run_shards(stage, out_dir, shards, work, shard, log)


def _row(method: str, d: Document, parsed, seed: int, opts: GenerateOptions, st: StageStats) -> dict | None:
    """The arm's document built from one parsed reply (None: rejected and counted)."""
    if method == "qa_appended":
        text, k = qa_appended(d.text or "", parsed, d.doc_id, seed, opts)
        st.count("pairs_generated", len(parsed))
        st.count("pairs_appended", k)
    else:
        if n_words(parsed) < opts.min_rephrase_ratio * n_words(d.text or ""):
            st.rejects.add("rephrase_too_short", d.doc_id, f"{n_words(parsed)} of {n_words(d.text or '')} words")
            return None
        text = parsed
    return {"doc_id": d.doc_id, "text": text}
