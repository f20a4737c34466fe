"""The offline fallback's pieces: templates keep the original value of every span, slots are filled with
document phrases of the same kind, answers are about the filled value and respond to the question, and
the judge drops mismatched pairs."""
import re

from data_gen.extractive import ExtractiveHandlers
from data_gen.fallback_judge import judge_pair
from data_gen.fallback_kinds import slot_kind, templatize_query

REFERENCE = """statistics.pvariance (function)

Return the population variance of ``data``.

data should be a sequence or iterable of Real-valued numbers.

statistics.median (function)

Return the median (middle value) of numeric data.

When the number of data points is odd, return the middle data point.
"""
PROSE = ("Thomas Jefferson (April 13, 1743 – July 4, 1826) was an American statesman who served as the third "
         "president of the United States from 1801 to 1809. He was born in Shadwell, Virginia.")


def test_templates_keep_every_span_with_its_value():
    t = templatize_query('Who was Thomas Jefferson and what did he write in 1776?')
    slots = re.findall(r"<fi>(.*?)</fi>", t["template"])
    assert slots == ['name of a person, place, organisation or thing (e.g. "Thomas Jefferson")', 'year (e.g. "1776")']
    assert [slot_kind(s).value for s in slots] == ["Thomas Jefferson", "1776"]
    assert slot_kind(slots[1]).sub == "year"


def test_slots_are_filled_with_phrases_of_their_kind_and_answers_respond(encoder):
    h = ExtractiveHandlers(encoder)
    ins, (a, b) = h.instantiate_one("What does the <fi>function or method name</fi> function in <fi>module name</fi> "
                                    "return?", REFERENCE)
    assert ins in ("What does the pvariance function in statistics return?",
                   "What does the median function in statistics return?")
    assert REFERENCE[a:b].startswith("Return the")  # the entry's own text, which says what it returns
    # a person is asked for: a reference page has none, so the template does not fit (null), no nonsense fill
    assert h.instantiate_one("Who was <fi>person name</fi>?", REFERENCE) is None
    # a 'kind of data' slot cannot be filled honestly by a heuristic
    assert h.instantiate_one("How do I parse <fi>kind of data</fi> in Python?", REFERENCE) is None
    ins, (a, b) = h.instantiate_one('When was <fi>name of a person, place, organisation or thing (e.g. "Marie Curie")'
                                    '</fi> born?', PROSE)
    assert ins == "When was Thomas Jefferson born?" and "1743" in PROSE[a:b]


def test_the_judge_drops_mismatched_pairs(encoder):
    h = ExtractiveHandlers(encoder)
    good = judge_pair("What does statistics.median return?", "Return the median (middle value) of numeric data.",
                      REFERENCE, h.sim)
    assert good[0] >= 4, good
    for ins, ans in [("What does statistics.median return?", "data should be a sequence or iterable of Real-valued numbers."),
                     ("When was Thomas Jefferson born?", "He was born in Shadwell, Virginia."),
                     ("What exception does statistics.median raise when the data is empty?",
                      "Return the median (middle value) of numeric data."),
                     ("Thomas Jefferson or Virginia", PROSE)]:
        score, why = judge_pair(ins, ans, REFERENCE + PROSE, h.sim)
        assert score < 4, (ins, ans, why)
