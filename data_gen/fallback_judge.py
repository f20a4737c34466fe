"""The offline fallback's judge: heuristic checks of an instruction-answer pair on the 1-5 rubric of
prompts/judge_flow.yaml. **Not an LLM and not the paper's judge** (Flow Judge); it sees what a judge
sees (instruction, answer, document) and nothing of how the pair was made.

Checks, each an observable property of the pair:

* **specific words covered**: the instruction's specific words (code names, capitalised names,
  numbers, quoted text, and the focus words left after removing question scaffolding) appear in the
  answer, or in the reference entry whose text the answer quotes (``statistics.pvariance (function)``
  right before it in the document) -- a mismatched fill or an answer about something else misses them;
* **responds to the question type**: the answer contains what the question asks for (a return value for
  "what does X return", an exception for "what exception", a year for "when" ...;
  data_gen.fallback_text.question_cue);
* **a clean passage**: it starts like a sentence, is not a table, a code dump or a fragment of a few
  words, and is not over-long;
* **on topic**: the embedding similarity of instruction and answer.

Score 5: all of them; 4: everything but a weak similarity or one focus word; 3: the question type or
half the specific words missing; 2: on topic but neither; 1: unrelated.
"""
from __future__ import annotations

import re
from typing import Callable

from data_gen.fallback_kinds import ENTRY, IDENT, MODULE, NAME, NUMBER, QUOTED, STOP, question_cue

# question scaffolding: words of a question that an answer need not repeat
SCAFFOLD = STOP | set("""python use used work works working mean meaning means happen happens difference different
example examples purpose way ways recommended text passage summarize summary main points point important known
explain describe description write give tell list name names extract classify identify provide please information
something someone thing things kind kinds type types value values object objects function functions method methods
class classes module modules provide provides do does done make made get show best good better should would could
following given below above paragraph reference article short long instead what's whats there their them special
built-in builtin call calling year years century many much""".split())
MIN_WORDS, MAX_WORDS = 3, 150
ASKS = re.compile(r"\?|^\s*(?:what|who|whom|whose|which|when|where|why|how|is|are|was|were|do|does|did|can|could|"
                  r"should|would|will|give|list|name|describe|explain|extract|write|summari[sz]e|tell|classify|"
                  r"identify|provide|please|compare|define|show|find|suggest|imagine)\b", re.IGNORECASE)
SIM_STRONG, SIM_WEAK = 0.45, 0.25


def specific_words(instruction: str) -> tuple[list[str], list[str]]:
    """(specific values: code names, names, numbers, quoted; focus words: the other content words)."""
    values: list[str] = []
    for rx in (QUOTED, IDENT, NUMBER):
        for m in rx.finditer(instruction):
            values.append((m.group(1) if rx is QUOTED else m.group()).strip().rstrip("()"))
    for m in NAME.finditer(instruction):
        words = [w for w in m.group().split() if w.lower() not in SCAFFOLD]
        if words and (m.start() > 0 or len(words) > 1):
            values.append(" ".join(words))
    taken = " ".join(values).lower()
    focus = [w for w in re.findall(r"[A-Za-z][a-z-]{2,}", instruction)
             if w.lower() not in SCAFFOLD and w.lower() not in taken]
    return list(dict.fromkeys(v for v in values if v)), list(dict.fromkeys(w.lower() for w in focus))


def _stem(word: str) -> str:
    return word.lower()[:5] if len(word) > 5 else word.lower()


def governing_entry(document: str, answer: str) -> str:
    """The reference entry (``mod.name (function)`` / ``Module mod``) whose text holds the answer."""
    pos = document.find(answer[:80])
    if pos < 0:
        return ""
    heads = [m for m in list(ENTRY.finditer(document)) + list(MODULE.finditer(document)) if m.start() <= pos]
    return max(heads, key=lambda m: m.start()).group("q") if heads else ""


def clean_passage(answer: str, document: str = "") -> str:
    """'' for a clean passage, else what is wrong with it."""
    words = answer.split()
    at = document.find(answer)
    if at >= 0 and re.match(r"[ \t]*\n[-=*~^]{3,}", document[at + len(answer):]):
        return "a heading"
    if len(words) < MIN_WORDS:
        return "a fragment of a few words"
    if len(words) > MAX_WORDS:
        return "over-long"
    if re.search(r"\+-{3,}|\|={3,}|^\s*>>>|::=", answer, re.MULTILINE):
        return "a table, grammar or code dump"
    letters = sum(ch.isalpha() or ch.isspace() for ch in answer)
    codey = sum(bool(re.search(r"[/_=<>{}\[\]]|\w\.\w", w)) for w in words)
    if letters < 0.75 * len(answer) or codey > 0.3 * len(words):
        return "mostly code or symbols"
    if answer.rstrip().endswith(":"):
        return "an introduction to something it does not include"
    first = answer.lstrip("\"'*`(")[:1]
    if first and first.islower() and not IDENT.match(answer.lstrip("\"'*`(")):
        return "starts in the middle of a sentence"
    if re.match(r"(?:However|But|And|Or|Also|Otherwise|Thus|So|Then)\b", answer):
        return "starts with a connective that needs the text before it"
    return ""


def judge_pair(instruction: str, answer: str, document: str, sim: Callable[[str, str], float]) -> tuple[int, str]:
    """(score 1-5, feedback)."""
    values, focus = specific_words(instruction)
    entry = governing_entry(document, answer).lower()
    low = answer.lower()
    missing_values = [v for v in values if v.lower() not in low and v.lower() not in entry
                      and v.lower().split(".")[-1] not in entry.split(".")]
    stems = {_stem(w) for w in re.findall(r"[A-Za-z][a-z-]{2,}", answer)}
    missing_focus = [w for w in focus if _stem(w) not in stems and w not in entry]
    cue = question_cue(instruction)
    responds = not cue.answer or bool(re.search(cue.answer, answer, re.IGNORECASE))
    if cue.name == "difference":
        responds = len(values) >= 2 and not missing_values
    flaw = clean_passage(answer, document)
    if not ASKS.search(instruction):
        return 1, "the instruction asks nothing (no question and no request)."
    cos = sim(instruction, answer)
    n_spec = len(values) + len(focus)
    covered = 1.0 if not n_spec else 1 - (len(missing_values) + len(missing_focus)) / n_spec
    notes = [f"similarity {cos:.2f}", f"specific words covered {covered:.0%}"]
    if missing_values or missing_focus:
        notes.append("missing " + ", ".join(missing_values + missing_focus))
    if not responds:
        notes.append(f"no answer to the '{cue.name}' question")
    if flaw:
        notes.append(f"the answer is {flaw}")
    if cos < SIM_WEAK and covered < 0.5:
        score = 1
    elif not responds and covered < 0.5:
        score = 2
    elif not responds or covered < 0.5 or flaw or missing_values:
        score = 3
    elif covered < 1.0 or cos < SIM_STRONG:  # one word may be missing from a long question only
        score = 4 if (covered == 1.0 or n_spec >= 4 and len(missing_focus) <= 1) and cos >= SIM_WEAK else 3
    else:
        score = 5
    return score, "; ".join(notes) + "."
