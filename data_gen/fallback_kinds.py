"""Kinds and question types of the offline extractive fallback (data_gen/extractive.py). **Not the paper's
method**: plain regular expressions and word lists that let the pipeline run with no language model.

* the **kind** of a slot, from its description (``function name``, ``person name``, ``year or period``)
  and, for templates made from real queries, from the original value the slot replaced (kept in the
  slot as ``… (e.g. "Marie Curie")``): a code name of some kind, a named entity, a year, a number, a
  term, a phrase of a listed or named kind, a common noun, or nothing a heuristic can fill (such
  templates are not applicable);
* the **question type** of an instruction (what it asks for: what a function returns, which exception
  is raised, a year for "when" ...), as a pattern a responsive answer must contain;
* the query **templatizer**: every specific span of a query becomes a slot that keeps its value.
"""
from __future__ import annotations

import builtins
import keyword
import re
from dataclasses import dataclass

STOP = set("""a an the and or but if of to in on at by for with from as is are was were be been being do does did
how what which who whom whose why when where can could should would will shall may might must i you he she it we they
me my your our their this that these those there here not no yes any some all about into over under than then so
such very more most much many also just only its it's between after before during use used using get make give tell
list name explain describe write please me one two its""".split())
BUILTIN_FUNCTIONS = {n for n in dir(builtins) if n.islower() and not n.startswith("_") and callable(getattr(builtins, n))}
BUILTIN_TYPES = {"int", "float", "complex", "str", "bytes", "bytearray", "list", "tuple", "dict", "set", "frozenset",
                 "range", "bool", "memoryview", "deque", "array"}
KEYWORDS = set(keyword.kwlist) | {"match", "case"}
CONSTANTS = {"None", "True", "False", "NotImplemented", "Ellipsis", "__debug__"}

ENTRY = re.compile(r"^(?P<q>[A-Za-z_][\w.]*) \((?P<k>class|function|method)\)[ \t]*$", re.MULTILINE)
MODULE = re.compile(r"^Module (?P<q>[A-Za-z_][\w.]*)[ \t]*$", re.MULTILINE)
HEADING = re.compile(r"^(?P<h>[A-Z][^\n]{2,60})\n[-=*~^]{3,}[ \t]*$", re.MULTILINE)
EMPHASIS = re.compile(r"(?<![*\w])\*(?P<t>[a-z][a-z -]{2,40}[a-z])\*(?![*\w])")
QUOTED = re.compile(r"(?<!\w)[\"'`“‘]+([^\"'`”’\n]{1,60})[\"'`”’]+")
DUNDER = re.compile(r"\b__[a-z][a-z0-9_]*__\b")
EXCEPTION = re.compile(r"\b(?:[A-Z][A-Za-z]*(?:Error|Exception|Warning)|StopIteration|StopAsyncIteration|"
                       r"KeyboardInterrupt|SystemExit|GeneratorExit)\b")
IDENT = re.compile(r"\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+(?:\(\))?|\b[A-Za-z_]\w*\(\)|\b[a-z]+_[a-z_0-9]+\b")
OPTION = re.compile(r"(?<![\w-])--?[a-z][a-z0-9-]*\b")
YEAR = re.compile(r"\b(?:1[0-9]{3}|20[0-9]{2})\b")
NUMBER = re.compile(r"\b\d+(?:[.,]\d+)*\b")
NAME = re.compile(r"\b[A-Z][\w'’-]+(?:[ ]+(?:of[ ]+|de[ ]+|the[ ]+|van[ ]+|von[ ]+)?[A-Z][\w'’-]+)*")
ORG_WORDS = re.compile(r"\b(?:Inc|Ltd|Company|Corporation|University|College|League|Club|Festival|Airlines?|Group|"
                       r"Party|Council|Association|Institute|Bank|Team|Society|Agency|Pty|FC|Records|Union)\b")
PLACE_CUES = re.compile(r"\b(?:in|at|from|near|to)\s+$")
PLACE_WORDS = re.compile(r"\b(?:Lakes?|River|Mountains?|Island|City|County|Valley|Park|Street|Bay|Beach|State|Province|"
                         r"Prefecture|District|Ocean|Sea|Desert|Forest|Alaska|Kingdom|Republic)\b")
PERSON_CUES = re.compile(r"\b(?:he|she|his|her|him|born|died|was an?|is an?)\b", re.IGNORECASE)
SUBJECT_WORDS = 2    # a phrase in a sentence's first three words is what the sentence is about
GENERIC_NAMES = {"Python", "The", "This", "It", "If", "In", "For", "A", "An", "When", "See", "Note", "Return",
                 "Returns", "Use", "Changed", "New", "Module", "Example", "Examples", "However", "Also", "Otherwise",
                 "Raises", "Arguments", "Parameters", "There", "These", "That", "Each", "All", "Some", "Unicode",
                 "Wikipedia", "English", "January", "February", "March", "April", "May", "June", "July", "August",
                 "September", "October", "November", "December", "Monday", "Sunday", "He", "She", "They", "His", "Her"}


# -------------------------------------------------------------------------------------------------- kinds
@dataclass(frozen=True)
class Kind:
    """What fills a slot: ``family`` code | entity | term | noun | none, and a finer ``sub`` kind."""

    family: str
    sub: str = ""
    value: str = ""          # the original value (templates made from queries), '' when unknown


NONE = Kind("none")
# slot description (lower case) -> kind; the first pattern that matches wins
_DESCRIPTIONS: list[tuple[str, Kind]] = [
    (r"\bdunder|special method", Kind("code", "dunder")),
    (r"\bkind of error\b|\bexception\b", Kind("code", "exception")),
    (r"\bdecorator|\bother\b|\balternative\b", NONE),
    (r"\bkeyword or statement\b|^statement\b", Kind("code", "keyword")),
    (r"^operator$", Kind("code", "operator")),
    (r"built-in type|^data structure$|^object or type$", Kind("code", "type")),
    (r"built-in function", Kind("code", "builtin")),
    (r"special value or constant|constant", Kind("code", "constant")),
    (r"flag or option|command-line option", Kind("code", "option")),
    (r"parameter name", Kind("code", "parameter")),
    (r"\bkind of\b|such as|\btask\b|\bcondition\b|\bdetail\b|\bquantity\b|\bresource\b|\bdata\b|\bbehaviour\b"
     r"|\bprotocol\b|\bproperty\b|\bsort\b|\bitems?\b|\bargument value\b|\bsource\b|\btarget\b|\bcategor|\bclaim\b"
     r"|\bpronoun\b|\bplatform\b|\boperand\b|\bexpression\b|\bsetting\b|\bgoal\b|\bprocess\b|\brole\b"
     r"|\bcountable\b|\bsize\b|\blimit\b|\bdish\b|\bgame\b|\banimal\b|\bactivity\b|\bsubstance\b|\bphenomenon\b"
     r"|\bscientific\b|\bcomponent\b|\bfield\b|\billness\b|\bsymptom", NONE),
    (r"^function name$|^built-in function$", Kind("code", "function")),
    (r"^function or method name$", Kind("code", "routine")),
    (r"\bmethod\b", Kind("code", "method")),
    (r"^module name$", Kind("code", "module")),
    (r"\bmodule\b", Kind("code", "code")),
    (r"\bclass name\b|\bclass or (?:object )?type\b", Kind("code", "class")),
    (r"\bclass\b|\bfunction\b|\boperation\b", Kind("code", "callable")),
    (r"\bterm\b|\bconcept\b|\bconstruct\b|\bfeature\b|\btopic\b|\bsubject\b", Kind("term")),
    (r"\bperson\b|\bathlete\b", Kind("entity", "person")),
    (r"\bplace\b|\bcountry\b|\bregion\b|\bdestination\b|\bstarting point\b", Kind("entity", "place")),
    (r"\borgani[sz]ation\b|\bcompany\b", Kind("entity", "org")),
    (r"\byear\b|\bperiod\b|\bdate\b", Kind("entity", "year")),
    (r"\bbook\b|\bfilm\b|\bwork\b", Kind("entity", "name")),
    (r"\bevent\b|\bcompetition\b|\belection\b|\bconflict\b", Kind("entity", "name")),
    (r"\bthing\b|\bproduct\b|\bentity\b|\bname\b|\bobject\b|\bsystem\b", Kind("entity", "name")),
]
_EG = re.compile(r"\s*\(e\.g\.\s*\"(?P<v>.*)\"\)\s*$")


_SUCH_AS = re.compile(r"\bsuch as (?P<ex>.+)$")
_KIND_OF = re.compile(r"^(?:a |an )?(?:kinds?|types?) of (?P<h>[a-z][a-z -]*)$")
MODIFIER_STOP = STOP | set("""following other same each every given certain different several various first second third
last next previous many few single own above below current corresponding respective particular new old
two three four five six seven ten its their whose which whole entire compare use return get set make create read
write open call pass convert parse format check handle find requested given""".split())


def slot_kind(description: str) -> Kind:
    """The kind of a slot from its description; a kept original value (``… (e.g. "X")``) decides. A
    description that lists examples (``property such as immutable, hashable or iterable``) is filled by
    one of them; ``kind of strings or literals`` by a document phrase ending in one of those nouns
    (``raw strings``)."""
    m = _EG.search(description)
    if m:
        kind = value_kind(m.group("v"), description[: m.start()])
        return Kind(kind.family, kind.sub, m.group("v"))
    d = " ".join(description.lower().split())
    for pattern, kind in _DESCRIPTIONS:
        if kind is NONE:  # the code kinds above win; phrases of a listed or named kind next
            m = _SUCH_AS.search(d)
            if m:
                examples = [w.strip() for w in re.split(r",| or | and ", m.group("ex")) if w.strip()]
                return Kind("phrase", "examples", "|".join(examples)) if examples else NONE
            m = _KIND_OF.match(d)
            if m:
                heads = [alt.split()[-1] for alt in m.group("h").split(" or ") if alt.split()]
                return Kind("phrase", "heads", "|".join(heads))
        if re.search(pattern, d):
            return kind
    return NONE


def value_kind(value: str, context: str = "") -> Kind:
    """The kind of an original query span (the templatizer keeps it next to the slot's description)."""
    v = value.strip()
    if YEAR.fullmatch(v):
        return Kind("entity", "year")
    if NUMBER.fullmatch(v):
        return Kind("entity", "number")
    if DUNDER.fullmatch(v):
        return Kind("code", "dunder")
    if EXCEPTION.fullmatch(v):
        return Kind("code", "exception")
    if IDENT.fullmatch(v) or v in BUILTIN_FUNCTIONS:
        return Kind("code", "code")
    if v[:1].isupper():
        sub = ("person" if "person" in context else "place" if "place" in context or PLACE_WORDS.search(v) else
               "org" if "organi" in context or ORG_WORDS.search(v) else "name")
        return Kind("entity", sub)
    return Kind("noun")


# ---------------------------------------------------------------------------------------- question types
@dataclass(frozen=True)
class Cue:
    """What an instruction asks for: ``name`` and the pattern a responsive answer contains ('' = any)."""

    name: str
    answer: str = ""


_CUES: list[tuple[str, Cue]] = [
    (r"\breturn type\b|\breturns?\b", Cue("returns", r"\breturn(?:s|ed|ing)?\b")),
    (r"\bexceptions?\b|\braises?\b|\berror\b", Cue("raises", r"\braise[sd]?\b|\bexceptions?\b|\w+Error\b")),
    (r"\bdefault value\b|\bdefaults? to\b", Cue("default", r"\bdefaults?\b|\bif (?:not given|omitted|missing)\b")),
    (r"\barguments?\b|\bparameters?\b|\bsignature\b|\baccept\b", Cue("arguments", r"\barg(?:ument)?s?\b|\bparam"
                                                                   r"(?:eter)?s?\b|\boptional\b|\bkeyword\b|\(")),
    (r"\bdeprecated\b", Cue("deprecated", r"\bdeprecat")),
    (r"\bversion\b", Cue("version", r"\bversion\b|\bnew in\b|\badded\b")),
    (r"\bencoding\b", Cue("encoding", r"\butf-?(?:8|16|32)\b|\bascii\b|\blatin-?1\b|\blocale\b|\bcp\d+\b")),
    (r"\bthread-safe\b|\bthreads?\b", Cue("threads", r"\bthread-safe|\bthread safety|\block|\bsynchroni[sz]|\batomic")),
    (r"\bhandle\b", Cue("handle", r"\bexcept\b|\bcatch|\bhandl|\btry\b")),
    (r"\bsafe\b|\buntrusted\b", Cue("safety", r"\bsecur|\bsafe|\btrust|\bmalicious|\battack")),
    (r"\bfaster\b|\bperformance\b", Cue("speed", r"\bfast|\bslow|\bperformance|\befficien|\bquadratic|\blinear")),
    (r"\blimitations?\b", Cue("limitations", r"\bnot\b|\bcannot\b|\bonly\b|\blimit")),
    (r"\bexample\b", Cue("example", r">>>|\bfor example\b|\bfor instance\b|\be\.g\.|\bexample:")),
    (r"\battributes?\b", Cue("attributes", r"\battribute|\.\w+\b")),
    (r"\bmethods?\b.*\bprovide\b", Cue("methods", r"\bmethods?\b")),
    (r"\bsubclass\b", Cue("subclass", r"\bsubclass|\boverrid|\bderive")),
    (r"^when\b|\bwhat year\b|\bwhich century\b|\bborn\b", Cue("when", r"\b(?:1[0-9]{3}|20[0-9]{2})\b")),
    (r"^where\b", Cue("where", r"\b(?:in|at|near|located|based|held)\b")),
    (r"^who\b", Cue("who", r"\b(?:he|she|was|is|founded|by)\b")),
    (r"^how many\b|\bpopulation\b", Cue("how many", r"\b\d[\d,.]*\b")),
    (r"\bhistory\b|\bfounded\b", Cue("history", r"\b(?:1[0-9]{3}|20[0-9]{2})\b|\bfounded\b|\bestablished\b")),
    (r"\bdifference\b|\binstead of\b|\bcompar", Cue("difference", "")),
    (r"^how\b|\bhow (?:do|can|does|are|is)\b", Cue("how", "")),
]


def question_cue(instruction: str) -> Cue:
    s = " ".join(instruction.lower().split())
    for pattern, cue in _CUES:
        if re.search(pattern, s):
            return cue
    return Cue("what")


# ---------------------------------------------------------------------------------------------- documents

# ------------------------------------------------------------------------------------------- templatize
_QUESTION_WORDS = STOP | {"give", "tell", "list", "name", "explain", "describe", "write", "extract", "classify",
                          "identify", "summarize", "please", "provide", "given", "share", "separate", "based",
                          "using", "from", "consider", "imagine", "suggest", "find", "create", "generate"}
_KIND_TEXT = {"year": "year", "number": "number or quantity", "code": "code identifier, function or module name",
              "dunder": "special method name", "exception": "exception name", "quoted": "quoted text or phrase",
              "name": "name of a person, place, organisation or thing", "noun": "common noun"}


def _slot_spans(query: str) -> list[tuple[int, int, str]]:
    spans: list[tuple[int, int, str]] = []

    def add(a: int, b: int, kind: str) -> None:
        if b - a >= 2 and not any(a < y and x < b for x, y, _ in spans):
            spans.append((a, b, kind))

    for m in QUOTED.finditer(query):
        add(m.start(1), m.end(1), "quoted")
    for m in IDENT.finditer(query):
        add(m.start(), m.end(), "code")
    for m in YEAR.finditer(query):
        add(m.start(), m.end(), "year")
    for m in NUMBER.finditer(query):
        add(m.start(), m.end(), "number")
    for m in NAME.finditer(query):
        words = m.group().split()
        a = m.start()
        while words and words[0].lower() in _QUESTION_WORDS:  # "Who", "Given", "Separate", "The"
            a += len(words[0]) + 1
            words = words[1:]
        if words:
            add(a, m.end(), "name")
    if not spans:
        for m in re.finditer(r"\b(?:a|an|the|of)\s+([a-z][a-z-]{2,})\b", query):  # nouns after articles
            if m.group(1) not in _QUESTION_WORDS:
                add(m.start(1), m.end(1), "noun")
    if not spans:
        words = [(m.start(), m.end(), m.group().strip(".,;:?!()")) for m in re.finditer(r"\S+", query)]
        content = [(a, a + len(w), w) for a, _, w in words if w.lower() not in _QUESTION_WORDS and len(w) > 3]
        if content:
            a, b, _ = max(content, key=lambda x: (len(x[2]), -x[0]))
            add(a, b, "noun")
    return sorted(spans)


def templatize_query(query: str) -> dict:
    """A template whose slots keep their original value: ``<fi>kind (e.g. "value")</fi>``."""
    spans = _slot_spans(query)
    out, pos = [], 0
    for a, b, kind in spans:
        value = query[a:b].replace('"', "'")
        out.append(query[pos:a] + f'<fi>{_KIND_TEXT[kind]} (e.g. "{value}")</fi>')
        pos = b
    template = "".join(out) + query[pos:]
    topic = " ".join(w for w in re.findall(r"[A-Za-z][\w'-]*", query) if w.lower() not in _QUESTION_WORDS)[:200]
    desc = (f"A document, such as an article, reference page or technical documentation, that gives the "
            f"information needed to answer a question about {topic or 'the subject of the query'}.")
    return {"template": template, "compatible_document_description": desc}
