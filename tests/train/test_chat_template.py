"""The exported chat template renders a user turn as the training prefix, token for token, and several turns
as eval's in-process prompts do."""
from __future__ import annotations

import pytest

from fitrain.data.formatting import FormatConfig
from fitrain.data.tokenizer import load_tokenizer
from fitrain.train.chat_template import add_chat_template, format_of
from fitrain_eval.generate import render_instruction

QUESTIONS = ["What is a list in Python?", "  spaces around \n and a newline  ", "Ünïcode — “quotes” {braces} %}",
             "ends with a cue\n\nAnswer:"]
FORMATS = [FormatConfig(), FormatConfig(add_bos=True),
           FormatConfig(template="### Question\n{instruction}\n### Response\n{answer}\n### End")]


@pytest.fixture
def tok(tokenizer_dir):
    return load_tokenizer(tokenizer_dir)


def _prefix_ids(tok, fmt: FormatConfig, q: str) -> list[int]:
    ids = tok(fmt.generation_prompt(q), add_special_tokens=False)["input_ids"]
    return ([tok.bos_token_id] if fmt.add_bos else []) + ids


@pytest.mark.parametrize("fmt", FORMATS, ids=["default", "bos", "custom"])
def test_one_user_turn_is_the_training_prefix_token_for_token(tok, fmt):
    if fmt.add_bos and tok.bos_token_id is None:
        tok.bos_token = tok.eos_token
    add_chat_template(tok, fmt)
    for q in QUESTIONS:
        got = tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=True,
                                      return_dict=False)
        assert list(got) == _prefix_ids(tok, fmt, q), q


def test_the_default_prefix_keeps_its_trailing_space(tok):
    add_chat_template(tok, FormatConfig())
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False)
    assert text == "Instruction: Hi\n\nAnswer: "


def test_several_turns_render_as_evals_in_process_prompt(tok):
    fmt = FormatConfig()
    add_chat_template(tok, fmt)
    dialogue = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a fruit."},
                {"role": "assistant", "content": "Apple."}, {"role": "user", "content": "Another?"}]
    text = tok.apply_chat_template(dialogue, add_generation_prompt=True, tokenize=False)
    assert text == render_instruction(dialogue, fmt)
    assert text == "Instruction: Be brief.\n\nName a fruit.\n\nAnswer: Apple.\n\nInstruction: Another?\n\nAnswer: "
    closed = dialogue[:3]
    assert tok.apply_chat_template(closed, tokenize=False) == render_instruction(closed, fmt, add_generation_prompt=False)


def test_a_run_trained_on_the_tokenizers_own_template_keeps_it(tok):
    tok.chat_template = "{{ messages[0]['content'] }}"
    add_chat_template(tok, format_of({"use_chat_template": True}))
    assert tok.chat_template == "{{ messages[0]['content'] }}"


def test_the_recorded_format_is_read_back():
    assert format_of(None) == FormatConfig()
    assert format_of({"template": "Q: {instruction}\nA: {answer}", "add_bos": True, "other": 1}) == FormatConfig(
        template="Q: {instruction}\nA: {answer}", add_bos=True)
