"""Text heuristics of the offline extractive fallback (data_gen/extractive.py). **Not the paper's method**:
plain regular expressions and word lists that let the pipeline run with no language model.

Three things are read from text here:

* the **kind** of a slot, from its description (``function name``, ``person name``, ``year or period``)
  and, for templates made from real queries, from the original value the slot replaced (kept in the
  slot as ``… (e.g. "Marie Curie")``): a code name of some kind, a named entity, a year, a number, a
  term, a common noun, or nothing a heuristic can fill (``kind of data``: such templates are not
  applicable);
* the **question type** of an instruction (what it asks for: what a function returns, which exception
  is raised, a year, a place ...), as a pattern a responsive answer must contain;
* the **candidates of each kind** in a document: entries of reference pages (``statistics.pvariance
  (function)`` followed by its docstring), code names, emphasised terms and headings, capitalised
  names, years and numbers, each with the passage that is about it.
"""
from __future__ import annotations

import builtins
import keyword
import re
from dataclasses import dataclass, field

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

_SENT = re.compile(r"(?:[^.!?\n]|[.!?](?!\s|$)|\n(?!\s*\n))+(?:[.!?]+(?=\s|$)|\n\s*\n|$)")
_WORD = re.compile(r"\S+")
ENTRY = re.compile(r"^(?P<q>[A-Za-z_][\w.]*) \((?P<k>class|function|method)\)[ \t]*$", re.MULTILINE)
MODULE = re.compile(r"^Module (?P<q>[A-Za-z_][\w.]*)[ \t]*$", re.MULTILINE)
HEADING = re.compile(r"^(?P<h>[A-Z][^\n]{2,60})\n[-=*~^]{3,}[ \t]*$", re.MULTILINE)
EMPHASIS = re.compile(r"(?<![*\w])\*(?P<t>[a-z][a-z -]{2,40}[a-z])\*(?![*\w])")
QUOTED = re.compile(r"(?<!\w)[\"'`“‘]+([^\"'`”’\n]{1,60})[\"'`”’]+")
DUNDER = re.compile(r"\b__[a-z][a-z0-9_]*__\b")
EXCEPTION = re.compile(r"\b(?:[A-Z][A-Za-z]*(?:Error|Exception|Warning)|StopIteration|StopAsyncIteration|"
                       r"KeyboardInterrupt|SystemExit|GeneratorExit)\b")
IDENT = re.compile(r"\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+(?:\(\))?|\b[A-Za-z_]\w*\(\)|\b[a-z]+_[a-z_0-9]+\b")
UPPER = re.compile(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b|\b[A-Z]{3,}\b")
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
