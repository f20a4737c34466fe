"""The chat template an HF export carries, so that a chat endpoint (vLLM, ``transformers serve``), lm-eval's
``--apply_chat_template`` and transformers' chat pipelines prompt the model exactly as it was trained.

One user turn renders as the training prefix of the run's pair format, the text before the answer
(``Instruction: {q}\\n\\nAnswer: `` with the default template, trailing space included; BOS first where the
format adds it), so ``tokenizer.apply_chat_template(messages, add_generation_prompt=True)`` gives the very
tokens ``FormatConfig.generation_prompt`` tokenizes to. Several turns render like eval's in-process prompts
(fitrain_eval.generate ``render_instruction``): each earlier user turn with its answer is a complete pair
(prefix + answer + the template's suffix), pairs are separated by a blank line, and system text is put in
front of the next user turn. The turn to answer always ends with the prefix (the answer cue is part of it),
with or without ``add_generation_prompt``; without it, a last assistant turn ends at its answer (no suffix). A run trained with ``format.use_chat_template`` keeps its
tokenizer's own template. See README "Prompting an exported model".
"""
from __future__ import annotations

import json
from typing import Any

from fitrain.data.formatting import FormatConfig


def _lit(text: str) -> str:
    """A Jinja string literal of ``text`` (JSON escapes are Jinja escapes)."""
    return json.dumps(text, ensure_ascii=True)


def chat_template(fmt: FormatConfig) -> str:
    """The Jinja chat template of the pair format ``fmt`` (see the module docstring)."""
    head, suffix = fmt.template.split("{answer}")
    before, after = head.split("{instruction}")
    bos = "{{- bos_token -}}" if fmt.add_bos else ""
    return (
        bos
        + "{%- set ns = namespace(system='', open=false, first=true) -%}"
        "{%- for m in messages -%}"
        "{%- if m['role'] == 'system' -%}"
        "{%- set ns.system = ns.system + m['content'] + " + _lit("\n\n") + " -%}"
        "{%- elif m['role'] == 'user' -%}"
        "{%- if not ns.first -%}{{- " + _lit("\n\n") + " -}}{%- endif -%}"
        "{{- " + _lit(before) + " + ns.system + m['content'] + " + _lit(after) + " -}}"
        "{%- set ns.system = '' -%}{%- set ns.open = true -%}{%- set ns.first = false -%}"
        "{%- elif m['role'] == 'assistant' -%}"
        "{%- if not ns.open and not ns.first -%}{{- " + _lit("\n\n") + " -}}{%- endif -%}"
        "{{- m['content'] -}}"
        "{%- if not (loop.last and not add_generation_prompt) -%}{{- " + _lit(suffix) + " -}}{%- endif -%}"
        "{%- set ns.open = false -%}{%- set ns.first = false -%}"
        "{%- endif -%}"
        "{%- endfor -%}"
    )


def format_of(recorded: Any) -> FormatConfig:
    """The run's pair format from the checkpoint's record of it (a dict of FormatConfig fields; defaults else)."""
    rec = recorded if isinstance(recorded, dict) else {}
    known = ("template", "loss_mask", "use_chat_template", "add_bos")
    return FormatConfig(**{k: rec[k] for k in known if k in rec})


def add_chat_template(tokenizer: Any, fmt: FormatConfig) -> None:
    """Give ``tokenizer`` the chat template of the run's format, unless the run trained with the tokenizer's own
    chat template (``format.use_chat_template``), which then stays."""
    if fmt.use_chat_template:
        return
    tokenizer.chat_template = chat_template(fmt)
