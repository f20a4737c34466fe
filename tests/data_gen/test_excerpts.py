import pytest

from data_gen.excerpts import ExcerptError, expand_excerpts

DOC = ("The json module encodes Python objects.  It decodes JSON text too.\n\n"
       "Use json.dumps() to encode. Use json.loads() to decode. The json module is in the standard library.")


def reason(answer, doc=DOC):
    with pytest.raises(ExcerptError) as e:
        expand_excerpts(answer, doc)
    return e.value.reason


def test_unique_span_is_copied_exactly():
    exp = expand_excerpts("<excerpt>It decodes <...> to encode.</excerpt>", DOC)
    assert exp.text == "It decodes JSON text too.\n\nUse json.dumps() to encode."
    assert exp.excerpt_fraction == 1.0 and len(exp.spans) == 1
    a, b = exp.spans[0]
    assert DOC[a:b] == exp.text


def test_whole_quote_without_ellipsis_and_mixed_text_fraction():
    exp = expand_excerpts("Answer: <excerpt>Use json.loads() to decode.</excerpt>", DOC)
    assert exp.text == "Answer: Use json.loads() to decode."
    assert exp.excerpt_fraction == pytest.approx(len("Use json.loads() to decode.") / len(exp.text))


def test_ambiguous_and_missing_are_rejected_with_reason():
    # 'The json module' starts two spans; each has its own shortest end -> two spans
    assert reason("<excerpt>The json module <...> .</excerpt>") == "excerpt_ambiguous"
    assert reason("<excerpt>The yaml module <...> objects.</excerpt>") == "excerpt_not_found"
    assert reason("<excerpt>It decodes <...> does not occur</excerpt>") == "excerpt_not_found"
    assert reason("<excerpt>Use json</excerpt>") == "excerpt_ambiguous"
    assert reason("<excerpt> <...> x</excerpt>") == "excerpt_empty"
    assert reason("<excerpt>a <...> b <...> c</excerpt>") == "excerpt_malformed"
    assert reason("<excerpt>It decodes JSON text too.") == "excerpt_unbalanced"


def test_start_unique_then_end_chosen_as_the_nearest():
    exp = expand_excerpts("<excerpt>It decodes <...> decode.</excerpt>", DOC)
    assert exp.text.endswith("Use json.loads() to decode.") and exp.text.startswith("It decodes")


def test_overlapping_start_and_end_words_and_overlapping_markers():
    # start and end share words: "dumps() to encode" / "to encode. Use"
    exp = expand_excerpts("<excerpt>json.dumps() to encode <...> to encode. Use</excerpt>", DOC)
    assert exp.text == "json.dumps() to encode. Use"
    two = expand_excerpts("<excerpt>Use json.dumps() to encode.</excerpt> <excerpt>to encode. Use json.loads()"
                          "</excerpt>", DOC)
    (a1, b1), (a2, b2) = two.spans
    assert a2 < b1  # the two quoted spans overlap in the document; both are allowed
    assert two.excerpt_fraction > 0.95


def test_whitespace_and_unicode_tolerance_copy_the_documents_characters():
    doc = "Caf\u00e9 au lait\u00a0is  served\nhot. The \ufb01nal step \u2014 “stirring” \u2014 matters."
    exp = expand_excerpts("<excerpt>Café au lait is served hot.</excerpt>", doc)
    assert exp.text == "Caf\u00e9 au lait\u00a0is  served\nhot."  # the document's own characters
    exp2 = expand_excerpts('<excerpt>The final step - "stirring" <...> matters.</excerpt>', doc)
    assert exp2.text == "The \ufb01nal step \u2014 “stirring” \u2014 matters."
    # decomposed é (e + combining accent) in the marker still matches the composed one (NFKC)
    assert expand_excerpts("<excerpt>Cafe\u0301 au lait</excerpt>", doc).text == "Caf\u00e9 au lait"
    # and the other way round: a decomposed document keeps its combining mark in the copy
    assert expand_excerpts("<excerpt>au lait <...> Café</excerpt>", "x au lait, Cafe\u0301 y").text == "au lait, Cafe\u0301"


def test_answer_without_excerpt_has_zero_fraction():
    exp = expand_excerpts("I wrote this myself.", DOC)
    assert exp.excerpt_fraction == 0.0 and exp.spans == []
