"""Documents, read by the offline extractive fallback (data_gen/extractive.py). **Not the paper's
method**: the **candidates of each kind** in a document -- entries of reference pages
(``statistics.pvariance (function)`` followed by its docstring), sections under a heading, code names,
emphasised terms, capitalised names, years and numbers, phrases of a named kind -- each with the passage
that is about it. Kinds are data_gen/fallback_kinds.py's.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from data_gen.fallback_kinds import (CONSTANTS, DUNDER, EMPHASIS, ENTRY, EXCEPTION, GENERIC_NAMES, HEADING, IDENT,
                                     KEYWORDS, MODIFIER_STOP, MODULE, NAME, NUMBER, OPTION, ORG_WORDS, PERSON_CUES,
                                     PLACE_CUES, QUOTED, STOP, SUBJECT_WORDS, YEAR, BUILTIN_FUNCTIONS, BUILTIN_TYPES,
                                     Kind)

_SENT = re.compile(r"(?:[^.!?\n]|[.!?](?!\s|$)|\n(?!\s*\n))+(?:[.!?]+(?=\s|$)|\n\s*\n|$)")
_WORD = re.compile(r"\S+")


def sentences(doc: str) -> list[tuple[int, int]]:
    """Sentence spans (start, end) of at least 15 characters and 3 words."""
    out = []
    for m in _SENT.finditer(doc):
        seg = m.group()
        lead = len(seg) - len(seg.lstrip())
        a, b = m.start() + lead, m.start() + len(seg.rstrip())
        if b - a >= 15 and len(_WORD.findall(doc[a:b])) >= 3:
            out.append((a, b))
    return out


@dataclass
class Candidate:
    """A phrase of the document that can fill a slot: its text, kind and the passage that is about it."""

    text: str
    kind: Kind
    passage: tuple[int, int]          # document span of its passage (an entry's docstring, or a sentence)
    module: str = ""                  # the module of a code entry ('' else)
    owner: str = ""                   # the class of a method entry
    lead: bool = True                 # its passage is about it (a module named by an entry of it is not)


@dataclass
class DocFacts:
    """The candidates of a document, by kind."""

    text: str
    sents: list[tuple[int, int]]
    cands: list[Candidate] = field(default_factory=list)

    def of(self, kind: Kind) -> list[Candidate]:
        if kind.family == "phrase":
            return phrase_candidates(self, kind)
        return [c for c in self.cands if fits(c.kind, kind)]


def fits(have: Kind, want: Kind) -> bool:
    """Whether a candidate of kind ``have`` fills a slot of kind ``want``."""
    if want.family == "none":
        return False
    if want.family == "code":
        if have.family != "code":
            return False
        if want.sub in ("code", ""):
            return have.sub in ("function", "class", "module", "method", "code", "builtin", "type")
        if want.sub == "callable":
            return have.sub in ("function", "class", "method", "builtin")
        if want.sub == "function":
            return have.sub in ("function", "builtin")
        if want.sub == "routine":
            return have.sub in ("function", "builtin", "method")
        return have.sub == want.sub
    if want.family == "entity":
        if have.family != "entity":
            return False
        if want.sub in ("name", ""):
            return have.sub in ("name", "person", "place", "org")
        return have.sub == want.sub or (have.sub == "name" and want.sub in ("place", "org"))
    if want.family == "term":
        return have.family == "term" or (have.family == "code" and have.sub in ("module", "class", "keyword"))
    return have.family in ("noun", "term")


def _plural(word: str) -> bool:
    w = word.lower()
    return w.endswith("s") and not w.endswith(("ss", "us", "is"))


def _forms(word: str) -> set[str]:
    w = word.lower()
    base = w[:-1] if w.endswith("s") and not w.endswith("ss") else w
    return {base, base + "s", base + "es", w}


def phrase_candidates(facts: DocFacts, kind: Kind) -> list[Candidate]:
    """``examples``: the listed examples the document names; ``heads``: ``<modifier> <head noun>`` phrases
    of the document (``keyword arguments`` for ``kind of arguments``), each with its sentence."""
    doc, out, seen = facts.text, [], set()
    words = [w for w in kind.value.split("|") if w]
    if kind.sub == "examples":
        pattern = r"\b(" + "|".join(re.escape(w) for w in words) + r")\b"
    else:  # the same number as the description's noun ('kind of numbers': plural phrases only)
        forms = sorted({f for w in words for f in _forms(w) if _plural(f) == _plural(w)}, key=len, reverse=True)
        pattern = (r"(?<![\w-])(?:\"(?:" + "|".join(sorted(KEYWORDS)) + r')"|[a-z][a-z-]{2,}) (?:'
                   + "|".join(re.escape(f) for f in forms) + r")\b")
    for m in re.finditer(pattern, doc, re.IGNORECASE if kind.sub == "examples" else 0):
        text = m.group().lower() if kind.sub == "examples" else m.group()
        if kind.sub == "heads" and text.split()[0].strip('"') in MODIFIER_STOP:
            continue
        sent = _sentence_of(facts.sents, m.start())
        if sent is None or text in seen:
            continue
        seen.add(text)
        out.append(Candidate(text, Kind("phrase", kind.sub), sent, lead=_subject(doc, facts.sents, m.start())))
    return sorted(out, key=lambda c: not c.lead)  # phrases a sentence is about first


def _sentence_of(sents: list[tuple[int, int]], pos: int) -> tuple[int, int] | None:
    for a, b in sents:
        if a <= pos < b:
            return a, b
    return None


def doc_facts(doc: str) -> DocFacts:
    """Every candidate of the document with the passage that is about it."""
    sents = sentences(doc)
    facts = DocFacts(doc, sents)
    heads = sorted([(m.start(), m.end(), m.group("q"), m.group("k")) for m in ENTRY.finditer(doc)]
                   + [(m.start(), m.end(), m.group("q"), "module") for m in MODULE.finditer(doc)])
    seen: dict[tuple[str, str], int] = {}

    def add(text: str, kind: Kind, passage, module: str = "", owner: str = "", lead: bool = True) -> None:
        """Keep the first passage of each phrase, or a later one that is about it (``lead``)."""
        key = (text, kind.sub or kind.family)
        if passage is None or not 1 < len(text) <= 60:
            return
        c = Candidate(text, kind, passage, module, owner, lead)
        if key not in seen:
            seen[key] = len(facts.cands)
            facts.cands.append(c)
        elif lead and not facts.cands[seen[key]].lead:
            facts.cands[seen[key]] = c

    for j, (a, b, q, k) in enumerate(heads):  # reference-page entries: the docstring is the passage
        end = heads[j + 1][0] if j + 1 < len(heads) else len(doc)
        body = (b, end)
        if not doc[b:end].strip():
            continue
        parts = q.split(".")
        if k == "module":
            add(q, Kind("code", "module"), body, q)
        elif k == "method" and len(parts) >= 3:
            add(parts[-1], Kind("code", "method"), body, ".".join(parts[:-2]), ".".join(parts[:-1]))
            add(".".join(parts[:-1]), Kind("code", "class"), body, ".".join(parts[:-2]), lead=False)
        elif len(parts) >= 2:
            add(q, Kind("code", "class" if k == "class" else "function"), body, ".".join(parts[:-1]))
            if k == "class" and EXCEPTION.fullmatch(parts[-1]):
                add(parts[-1], Kind("code", "exception"), body, ".".join(parts[:-1]))
            add(".".join(parts[:-1]), Kind("code", "module"), body, ".".join(parts[:-1]), lead=False)
    headings = list(HEADING.finditer(doc))
    for j, m in enumerate(headings):  # a section: the text up to the next heading is about its title
        h = m.group("h").strip().rstrip(":")
        section = (m.end(), headings[j + 1].start() if j + 1 < len(headings) else len(doc))
        if len(h.split()) > 6 or "::" in h or not doc[section[0]:section[1]].strip():
            continue
        add(h, Kind("term"), section)
        for q in QUOTED.finditer(h):
            if q.group(1) in KEYWORDS:
                add(q.group(1), Kind("code", "keyword"), section)
    for rx, kind in ((DUNDER, Kind("code", "dunder")), (EXCEPTION, Kind("code", "exception"))):
        for m in rx.finditer(doc):
            add(m.group(), kind, _sentence_of(sents, m.start()), lead=_subject(doc, sents, m.start()))
    for m in QUOTED.finditer(doc):
        v = m.group(1).strip()
        s = _sentence_of(sents, m.start())
        if s is not None and not _subject(doc, sents, m.start()):
            continue
        if v in KEYWORDS:
            add(v, Kind("code", "keyword"), s)
        elif v in CONSTANTS:
            add(v, Kind("code", "constant"), s)
        elif v.rstrip("()") in BUILTIN_FUNCTIONS:
            add(v if v.endswith("()") else v + "()", Kind("code", "builtin"), s)
        elif v in BUILTIN_TYPES:
            add(v, Kind("code", "type"), s)
        elif re.fullmatch(r"(?:\*\*|//|<<|>>|[-+*/%@&|^~<>]=?|==|!=|:=|not in|is not)", v):
            add(v, Kind("code", "operator"), s)
        elif OPTION.fullmatch(v):
            add(v, Kind("code", "option"), s)
        elif IDENT.fullmatch(v):
            add(v, Kind("code", "code"), s)
    for m in EMPHASIS.finditer(doc):
        add(m.group("t"), Kind("term"), _sentence_of(sents, m.start()))
    for m in YEAR.finditer(doc):
        add(m.group(), Kind("entity", "year"), _sentence_of(sents, m.start()), lead=False)
    if not heads:
        _prose_names(doc, sents, add)
    return facts


def _subject(doc: str, sents, pos: int) -> bool:
    """Whether the sentence at ``pos`` is about what stands there (it is among the sentence's first words)."""
    s = _sentence_of(sents, pos)
    return s is not None and len(doc[s[0]:pos].split()) <= SUBJECT_WORDS


def _prose_names(doc: str, sents, add) -> None:
    found = []
    for m in NAME.finditer(doc):
        name = m.group().strip("'’- ")
        words = name.split()
        start = m.start()
        if words and words[0] in GENERIC_NAMES:
            start += len(words[0]) + 1
            words = words[1:]
            name = " ".join(words)
        if not words or name in GENERIC_NAMES or len(name) < 3 or name.upper() == name and len(name) > 6:
            continue
        s = _sentence_of(sents, m.start())
        if s is not None:
            found.append((name, start, s, doc[s[0]:start].strip() == ""))
    mid_sentence = {name for name, _, _, at_start in found if not at_start}
    for name, start, s, at_start in found:
        if at_start and len(name.split()) == 1 and name not in mid_sentence:
            continue  # a capitalised word that only ever starts a sentence is no name
        nxt = re.match(r"\s+([a-z][a-z-]+)", doc[start + len(name):])
        if len(name.split()) == 1 and nxt and nxt.group(1) not in STOP:
            continue  # 'Croatian referendum', 'American statesman': an adjective, not a name
        words = name.split()
        sentence = doc[s[0]:s[1]]
        if ORG_WORDS.search(name):
            sub = "org"
        elif PLACE_CUES.search(doc[max(s[0], start - 6):start]) and len(words) <= 3:
            sub = "place"
        elif 2 <= len(words) <= 4 and PERSON_CUES.search(sentence):
            sub = "person"
        else:
            sub = "name"
        add(name, Kind("entity", sub), s, lead=_subject(doc, sents, start))
    for m in NUMBER.finditer(doc):
        if not YEAR.fullmatch(m.group()):
            add(m.group(), Kind("entity", "number"), _sentence_of(sents, m.start()), lead=False)
