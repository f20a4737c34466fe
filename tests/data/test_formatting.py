import numpy as np
import pytest

from fitrain.core.errors import FitrainError
from fitrain.data.formatting import FormatConfig, Formatter
from fitrain.data.tokenizer import load_tokenizer

PAIRS = [("What is a list?", "A mutable sequence ✓."), ("Name two  colours", " red\nand blue  "),
         ("Wörter?", "Ja: {answer} braces {instruction} stay literal")]


@pytest.fixture(scope="module")
def tok(tokenizer_dir):
    return load_tokenizer(tokenizer_dir)


def test_response_mask_decodes_exactly_to_answer_plus_eos(tok):
    f = Formatter(tok, FormatConfig())
    for (instr, ans), (ids, mask) in zip(PAIRS, f.encode_pairs(PAIRS)):
        assert ids[-1] == tok.eos_token_id and mask[0] == 0
        assert tok.decode(ids[mask == 1].tolist()) == ans + tok.eos_token
        # the supervised tokens are one contiguous tail
        first = int(np.argmax(mask))
        assert mask[first:].all() and not mask[:first].any()
        # the generation prompt is exactly the unsupervised prefix the model saw
        assert f.prompt_ids(instr) == ids[:first].tolist()
        assert tok(f.cfg.generation_prompt(instr), add_special_tokens=False)["input_ids"] == ids[:first].tolist()
        assert tok.decode(ids.tolist()) == f"Instruction: {instr}\n\nAnswer: {ans}{tok.eos_token}"
    assert f.pair_token_counts(PAIRS) == [len(i) for i, _ in f.encode_pairs(PAIRS)]


def test_all_mask_and_suffix_template(tok):
    f = Formatter(tok, FormatConfig(template="Q: {instruction}\nA: {answer}\n--", loss_mask="all"))
    ids, mask = f.encode_pairs(PAIRS[:1])[0]
    assert mask[0] == 0 and mask[1:].all()
    assert tok.decode(ids.tolist()) == "Q: What is a list?\nA: A mutable sequence ✓.\n--" + tok.eos_token
    g = Formatter(tok, FormatConfig(template="Q: {instruction}\nA: {answer}\n--"))
    ids, mask = g.encode_pairs(PAIRS[:1])[0]
    assert tok.decode(ids[mask == 1].tolist()) == "A mutable sequence ✓.\n--" + tok.eos_token


def test_documents_every_token_supervised_with_eos(tok):
    f = Formatter(tok, FormatConfig())
    texts = ["First document.", "Second one\nwith lines."]
    out = f.encode_documents(texts)
    for t, (ids, mask) in zip(texts, out):
        assert tok.decode(ids.tolist()) == t + tok.eos_token
        assert mask[0] == 0 and mask[1:].all()
    assert f.document_token_counts(texts) == [len(i) for i, _ in out]


def test_chat_template_option(tok):
    tok.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>"
                         "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}")
    try:
        f = Formatter(tok, FormatConfig(use_chat_template=True))
        ids, mask = f.encode_pairs(PAIRS[:1])[0]
        assert tok.decode(ids[mask == 1].tolist()) == "A mutable sequence ✓.</assistant>" + tok.eos_token
        first = int(np.argmax(mask))
        assert f.prompt_ids(PAIRS[0][0]) == ids[:first].tolist()
        assert f.cfg.generation_prompt("hi", tok) == "<user>hi</user><assistant>"
    finally:
        tok.chat_template = None
    with pytest.raises(FitrainError, match="no chat template"):
        Formatter(tok, FormatConfig(use_chat_template=True)).encode_pairs(PAIRS[:1])


def test_bad_format_config(tok):
    for settings, msg in [({"loss_mask": "answers"}, "loss_mask must be one of"),
                          ({"template": "Q: {instruction}"}, r"template must contain \{answer\} exactly once"),
                          ({"template": "{answer} {instruction}"}, "before")]:
        with pytest.raises(FitrainError, match=msg):  # on construction, before any tokenizer is involved
            FormatConfig(**settings)
    with pytest.raises(FitrainError, match="no bos_token"):
        Formatter(tok, FormatConfig(add_bos=True))


def test_add_bos_everywhere(tmp_path, corpus_texts):
    from fitrain.data.tokenizer import TokenizerConfig, train_tokenizer_from_texts

    d = train_tokenizer_from_texts(corpus_texts[:10], TokenizerConfig(out=str(tmp_path / "t"), vocab_size=400,
                                                                      bos_token="<|bos|>"))
    tok = load_tokenizer(d)
    f = Formatter(tok, FormatConfig(add_bos=True))
    (ids, mask), = f.encode_pairs(PAIRS[:1])
    assert ids[0] == tok.bos_token_id and mask[0] == 0
    assert tok.decode(ids[mask == 1].tolist()) == PAIRS[0][1] + tok.eos_token
    assert f.prompt_ids(PAIRS[0][0]) == ids[: int(np.argmax(mask))].tolist()
    (dids, dmask), = f.encode_documents(["doc"])
    assert dids[0] == tok.bos_token_id and dids[-1] == tok.eos_token_id and dmask[1:].all()
    assert f.document_token_counts(["doc"]) == [len(dids)]
