"""Excerpt markers: ``<excerpt>first words <...> last words</excerpt>`` expanded by copying the exact span.

The instantiator quotes the document instead of retyping it. A marker names the first and last words of
a span; expansion finds the **unique** span of the document that starts with the first words and ends
with the last (the shortest such span from each start). No span -> ``excerpt_not_found``; several ->
``excerpt_ambiguous``. A marker without ``<...>`` quotes its whole text. Matching is tolerant of
whitespace (any run of spaces/newlines matches any other) and of Unicode normalisation (NFKC, so
``ﬁ``/``fi``, non-breaking spaces, full-width forms match), and of typographic quotes and dashes; the text
copied into the answer is always the document's own characters.

Start and end may overlap inside the document (a short quote whose first and last words share tokens),
and two markers in one answer may quote overlapping spans; both are allowed.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

MARKER = re.compile(r"<excerpt>(.*?)</excerpt>", re.DOTALL)
ELLIPSIS = re.compile(r"\s*<\s*(?:\.\.\.|…)\s*>\s*")
_FOLD = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-",
                       "\u2014": "-", "\u2212": "-", "\u00a0": " "})


class ExcerptError(ValueError):
    """A marker that cannot be expanded; ``reason`` is the reject reason."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class Expanded:
    text: str                 # the answer with every marker replaced by the document's span
    excerpt_chars: int        # characters of the answer that were copied from the document
    spans: list[tuple[int, int]]  # document [start, end) of each marker

    @property
    def excerpt_fraction(self) -> float:
        n = len(self.text.strip())
        return min(1.0, self.excerpt_chars / n) if n else 0.0


class NormalizedText:
    """A document normalised for matching, with a map back to the original character offsets."""

    def __init__(self, text: str):
        self.original = text
        chars: list[str] = []
        offsets: list[int] = []
        ends: list[int] = []
        prev_space = True  # collapse leading whitespace
        for i, cluster in _clusters(text):
            # a base character with its combining marks is normalised together (NFKC composes them)
            norm = unicodedata.normalize("NFKC", cluster).translate(_FOLD)
            for c in norm:
                if c.isspace():
                    if prev_space:
                        continue
                    c, prev_space = " ", True
                else:
                    prev_space = False
                chars.append(c)
                offsets.append(i)
                ends.append(i + len(cluster))
        self.text = "".join(chars)
        self.offsets = offsets
        self.ends = ends

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """Original [start, end) covering normalised [start, end)."""
        return self.offsets[start], self.ends[end - 1]


def _clusters(text: str):
    """(offset, base character + following combining marks)."""
    i, n = 0, len(text)
    while i < n:
        j = i + 1
        while j < n and unicodedata.combining(text[j]):
            j += 1
        yield i, text[i:j]
        i = j


def normalize(s: str) -> str:
    return NormalizedText(s).text.strip()


def _occurrences(hay: str, needle: str) -> list[int]:
    out, i = [], hay.find(needle)
    while i != -1:
        out.append(i)
        i = hay.find(needle, i + 1)
    return out


def find_span(doc: NormalizedText, start: str, end: str | None) -> tuple[int, int]:
    """Original-document span of the unique match of ``start ... end`` (or of ``start`` alone)."""
    s = normalize(start)
    if not s:
        raise ExcerptError("excerpt_empty", "a marker with no text")
    starts = _occurrences(doc.text, s)
    if end is None:
        spans = {(i, i + len(s)) for i in starts}
    else:
        e = normalize(end)
        if not e:
            raise ExcerptError("excerpt_empty", f"marker '{start} <...>' has no end words")
        ends = _occurrences(doc.text, e)
        spans = set()
        for i in starts:
            # the shortest span from this start: the first end occurrence that finishes at or after the
            # start words finish, beginning no earlier than the start (start and end may overlap)
            j = next((j for j in ends if j >= i and j + len(e) >= i + len(s)), None)
            if j is not None:
                spans.add((i, j + len(e)))
    if not spans:
        what = s if end is None else f"{s} <...> {normalize(end)}"
        raise ExcerptError("excerpt_not_found", what[:160])
    if len(spans) > 1:
        raise ExcerptError("excerpt_ambiguous", f"{len(spans)} spans match '{s[:80]}'")
    (a, b), = spans
    return doc.original_span(a, b)


def expand_excerpts(answer: str, document: str) -> Expanded:
    """Replace every marker in ``answer`` by the exact document span; raise ExcerptError on a bad marker."""
    if "<excerpt>" in answer and answer.count("<excerpt>") != answer.count("</excerpt>"):
        raise ExcerptError("excerpt_unbalanced", f"{answer.count('<excerpt>')} opening vs "
                                                 f"{answer.count('</excerpt>')} closing tags")
    doc = NormalizedText(document)
    parts: list[str] = []
    spans: list[tuple[int, int]] = []
    copied = 0
    pos = 0
    for m in MARKER.finditer(answer):
        parts.append(answer[pos:m.start()])
        pieces = ELLIPSIS.split(m.group(1))
        if len(pieces) > 2:
            raise ExcerptError("excerpt_malformed", f"{len(pieces) - 1} '<...>' in one marker")
        a, b = find_span(doc, pieces[0], pieces[1] if len(pieces) == 2 else None)
        quote = document[a:b]
        parts.append(quote)
        spans.append((a, b))
        copied += len(quote)
        pos = m.end()
    parts.append(answer[pos:])
    return Expanded("".join(parts).strip(), copied, spans)
