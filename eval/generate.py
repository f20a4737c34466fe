"""Batched greedy generation from an exported checkpoint, prompted in the format the model was trained on.

``prompt_format``:

* ``instruction`` (default): the pair text format of :mod:`fitrain.data.formatting`; a single turn is
  ``FormatConfig.generation_prompt(instruction)`` (``Instruction: ...\\n\\nAnswer:``); earlier turns of a
  multi-turn dialogue are rendered as complete pairs before it, separated by a blank line;
* ``chat``: the tokenizer's chat template (transformers backend) or the server's (OpenAI-compatible);
* ``raw``: the last user message as is.

With ``format_from_model`` (default) the format is the one the model was trained on, as its export
recorded it (``fitrain_export.json`` ``format``; fitrain.train.export), so a model trained with a custom
template is prompted with that template.

**Prompts longer than the model's context** (``max_context``, default the model's
``max_position_embeddings``) are shortened by one stated rule, and every shortened prompt is counted: with
``B = context - max_new_tokens`` tokens for the prompt, the earliest complete turns of a multi-turn dialogue
(a user turn with its answer) are dropped, oldest first, until the prompt fits
(``<what>_prompt_turns_dropped``); if the turn to answer alone is still longer than ``B``, its text is cut
from the start so that its last tokens fit (``<what>_prompt_cut``). Applies where the tokenizer is local
(the transformers backend, or ``llm.model`` a model directory).

**Every output is scored as what it is**: a failed backend call is counted (``<what>_failed``) and its item
left out of every arm's score by the report; an empty output (``<what>_empty``) or one with no letter or
digit (``<what>_degenerate``) is counted and scored by the benchmark like any other answer.

Backends come from :mod:`fitrain.core.llm`: ``transformers`` on the exported directory (CPU/GPU), or any
OpenAI-compatible server (``vllm serve DIR``). Every output is saved with the exact prompt it answered.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fitrain.core.accounting import Rejects
from fitrain.core.checks import POSITIVE, ConfigValueError, check_fields, integer, interval, one_of
from fitrain.core.errors import FitrainError
from fitrain.data.formatting import FormatConfig
from fitrain.core.llm import LLMConfig, Request

PROMPT_FORMATS = ("instruction", "chat", "raw")


def _gen_llm() -> LLMConfig:
    return LLMConfig(backend="transformers", model="", max_new_tokens=256, temperature=0.0, batch_size=8)


@dataclass
class GenerationConfig:
    llm: LLMConfig = field(default_factory=_gen_llm)   # llm.model: the exported HF dir (or served name)
    prompt_format: str = "instruction"                 # instruction | chat | raw
    format: FormatConfig = field(default_factory=FormatConfig)  # the training format (prompt_format=instruction)
    stop: list[str] = field(default_factory=lambda: ["\n\nInstruction:"])
    max_new_tokens: int = 256
    format_from_model: bool = True     # use the training format recorded in the model's export
    max_context: int = 0               # prompt + generation limit in tokens; 0 = the model's max_position_embeddings

    def __post_init__(self) -> None:
        check_fields(self, prompt_format=one_of(*PROMPT_FORMATS), max_new_tokens=POSITIVE,
                     max_context=integer(interval("[0, 2**20]")))


@dataclass
class Generation:
    id: str
    prompt: Any            # the exact text sent (str), or the chat messages (list) for prompt_format=chat
    output: str | None     # None when the backend failed for this item (counted, never scored)
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"id": self.id, "prompt": self.prompt, "output": self.output, **({"meta": self.meta} if self.meta else {})}


class Generator:
    """Turns chat-style dialogues into requests in the model's training format and generates."""

    def __init__(self, cfg: GenerationConfig, backend=None):
        from fitrain.core.llm import check_reachable, make_backend

        self.cfg = cfg
        self.fmt = cfg.format
        if cfg.prompt_format == "instruction":
            if self.fmt.use_chat_template:
                raise FitrainError("generation.format.use_chat_template is set: use generation.prompt_format=chat")
        if backend is None:
            llm = cfg.llm
            if llm.backend == "transformers":
                check_model_dir(llm.model)
            elif llm.backend == "openai":
                check_reachable(llm)
            else:
                raise FitrainError(f"generation.llm.backend must be transformers or openai, got '{llm.backend}'")
            backend = make_backend(llm)
        self.backend = backend
        self.model = backend.model
        self.bos = _bos_text(cfg) if cfg.prompt_format == "instruction" and self.fmt.add_bos else ""
        self._tok, self._context = _local_tokenizer(cfg)
        if self._context and self._context - cfg.max_new_tokens < 8:
            raise FitrainError(f"generation.max_new_tokens={cfg.max_new_tokens} leaves no room for a prompt in the "
                               f"model's context of {self._context} tokens; lower it")

    def decoding(self) -> dict:
        return {"greedy": True, "max_new_tokens": self.cfg.max_new_tokens, "stop": list(self.cfg.stop),
                "prompt_format": self.cfg.prompt_format, "backend": self.backend.name,
                "context": self._context or None,
                **({"template": self.fmt.template} if self.cfg.prompt_format == "instruction" else {})}

    def request(self, messages: list[dict], id_: str) -> Request:
        """``messages``: alternating user/assistant turns ending with the user turn to answer."""
        if not messages or messages[-1].get("role") != "user":
            raise FitrainError(f"item {id_}: a prompt must end with a user turn")
        kw = dict(max_new_tokens=self.cfg.max_new_tokens, temperature=0.0, stop=list(self.cfg.stop) or None,
                  meta={"id": id_}, task="generate")
        if self.cfg.prompt_format == "chat":
            return Request(messages=[dict(m) for m in messages], **kw)
        return Request(prompt=self.prompt_text(messages), **kw)

    def prompt_text(self, messages: list[dict]) -> str:
        if self.cfg.prompt_format == "raw":
            return messages[-1]["content"]
        return self.instruction_prompt(messages)

    def instruction_prompt(self, messages: list[dict]) -> str:
        return self.bos + render_instruction(messages, self.fmt)

    # -------------------------------------------------------------------------------- context length
    def _n_tokens(self, messages: list[dict]) -> int:
        if self.cfg.prompt_format == "chat":
            text = self._tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return len(self._tok(text, add_special_tokens=False)["input_ids"])
        return len(self._tok(self.prompt_text(messages), add_special_tokens=False)["input_ids"])

    def fit_to_context(self, messages: list[dict]) -> tuple[list[dict], int, int]:
        """The module docstring's rule: (messages that fit, complete turns dropped, tokens cut)."""
        if self._tok is None:
            return messages, 0, 0
        budget = self._context - self.cfg.max_new_tokens
        msgs, dropped = list(messages), 0
        while self._n_tokens(msgs) > budget and _earlier_turn_end(msgs):
            msgs, dropped = msgs[_earlier_turn_end(msgs):], dropped + 1
        over = self._n_tokens(msgs) - budget
        if over <= 0:
            return msgs, dropped, 0
        ids = self._tok(msgs[-1]["content"], add_special_tokens=False)["input_ids"]
        keep = max(1, len(ids) - over - 1)
        while True:  # re-tokenizing the cut text can merge differently: cut until it fits
            cut = {**msgs[-1], "content": self._tok.decode(ids[len(ids) - keep:])}
            if self._n_tokens(msgs[:-1] + [cut]) <= budget or keep == 1:
                return msgs[:-1] + [cut], dropped, len(ids) - keep
            keep -= 1

    def generate(self, items: list[tuple[str, list[dict]]], rejects: Rejects, what: str = "generation",
                 progress=None) -> list[Generation]:
        """Generate for ``(id, messages)`` items. Failed calls, empty and degenerate outputs and shortened
        prompts are counted in ``rejects`` (see the module docstring); nothing aborts on a bad model."""
        fitted = []
        for id_, msgs in items:
            m, dropped, cut = self.fit_to_context(msgs)
            if dropped:
                rejects.add(f"{what}_prompt_turns_dropped", id_, f"{dropped} earliest turn(s) dropped")
            if cut:
                rejects.add(f"{what}_prompt_cut", id_, f"first {cut} tokens of the last turn cut")
            fitted.append((id_, m, {k: v for k, v in (("turns_dropped", dropped), ("tokens_cut", cut)) if v}))
        reqs = [self.request(msgs, id_) for id_, msgs, _ in fitted]
        comps = self.backend.complete(reqs, progress)
        out: list[Generation] = []
        n_bad = 0
        for (id_, _, meta), r, c in zip(fitted, reqs, comps):
            text = c.text.strip() if c.text is not None else None
            if text is None:
                rejects.add(f"{what}_failed", id_, c.error or "")
            elif not text:
                rejects.add(f"{what}_empty", id_)
            elif not _WORD.search(text):
                rejects.add(f"{what}_degenerate", id_, text[:40])
            n_bad += not text
            out.append(Generation(id_, r.messages if r.messages is not None else r.prompt, text, meta))
        if items and n_bad == len(items):
            _log(f"warning: all {len(items)} {what} outputs of '{self.model}' are empty or failed "
                 f"({rejects.summary()}); they are scored as such")
        return out


_WORD = re.compile(r"\w")


def _earlier_turn_end(msgs: list[dict]) -> int:
    """Index just past the first complete (system/user..., assistant) turn before the last user turn; 0 if none."""
    for i, m in enumerate(msgs[:-1]):
        if m.get("role") == "assistant":
            return i + 1
    return 0


def _local_tokenizer(cfg: GenerationConfig):
    """(tokenizer, context length) when the model directory is local, else (None, 0)."""
    src = cfg.llm.model
    if not src or not (Path(src) / "config.json").is_file():
        return None, 0
    from transformers import AutoTokenizer

    ctx = cfg.max_context or int(json.loads((Path(src) / "config.json").read_text()).get("max_position_embeddings")
                                 or 0)
    return (AutoTokenizer.from_pretrained(src), ctx) if ctx else (None, 0)


def training_format(model_dir: str | Path | None, fallback: FormatConfig) -> FormatConfig:
    """The format recorded in the model's ``fitrain_export.json`` (fitrain.train.export), else ``fallback``."""
    p = Path(model_dir) / "fitrain_export.json" if model_dir else None
    if p is None or not p.is_file():
        return fallback
    rec = (json.loads(p.read_text()) or {}).get("format") or {}
    known = {k: rec[k] for k in ("template", "loss_mask", "use_chat_template", "add_bos") if k in rec}
    try:
        return FormatConfig(**known) if known else fallback
    except ConfigValueError as e:
        raise e.under(f"{p}: format.") from None


def strip_answer_cue(text: str, fmt: FormatConfig) -> str:
    """``text`` without a trailing copy of the format's answer cue (``Question: ...\\nAnswer:`` ->
    ``Question: ...``), so the training prefix does not say it twice (``...Answer:\\n\\nAnswer: ``)."""
    head = fmt.template.split("{answer}")[0]
    cue = head.split("{instruction}", 1)[1].strip() if "{instruction}" in head else ""
    body = text.rstrip()
    if cue and body.endswith(cue):
        return body[: -len(cue)].rstrip()
    return text


def _log(msg: str) -> None:
    import sys

    print(f"fitrain eval: {msg}", file=sys.stderr, flush=True)


def render_instruction(messages: list[dict], fmt: FormatConfig, add_generation_prompt: bool = True) -> str:
    """Messages in the pair format: each user turn (after any system text) becomes the instruction,
    each assistant turn the answer; pairs are separated by a blank line. The text ends with the
    generation prompt (``...Answer: ``) or, with ``add_generation_prompt=False``, inside the last answer."""
    parts: list[str] = []
    system = ""
    open_prefix: str | None = None
    for m in messages:
        role, content = m.get("role"), m.get("content", "")
        if role == "system":
            system += content + "\n\n"
        elif role == "user":
            if open_prefix is not None:
                parts.append(open_prefix)
            open_prefix = fmt.pieces(system + content)[0]
            system = ""
        elif role == "assistant":
            last = m is messages[-1] and not add_generation_prompt
            parts.append((open_prefix or "") + content + ("" if last else fmt.pieces("")[1]))
            open_prefix = None
    if open_prefix is not None:
        parts.append(open_prefix)
    return "\n\n".join(parts)


def _bos_text(cfg: GenerationConfig) -> str:
    """The BOS token as text (a special token: it tokenizes back to the BOS id), for format.add_bos."""
    from transformers import AutoTokenizer

    src = cfg.llm.model
    if not src or not Path(src).exists():
        raise FitrainError("generation.format.add_bos needs the tokenizer: set generation.llm.model to the model dir")
    bos = AutoTokenizer.from_pretrained(src).bos_token
    if not bos:
        raise FitrainError(f"generation.format.add_bos is set but the tokenizer of {src} has no bos_token")
    return bos


def check_model_dir(path: str) -> Path:
    """A clear error for a missing or non-HF checkpoint directory."""
    if not path:
        raise FitrainError("no model given: set model=<exported HF dir> (the `hf/` folder of a train run)")
    p = Path(path)
    if not p.exists():
        raise FitrainError(f"checkpoint not found: {p}")
    if not (p / "config.json").is_file():
        found = ", ".join(sorted(x.name for x in p.iterdir())[:10]) if p.is_dir() else "a file"
        raise FitrainError(f"{p} is not an exported Hugging Face model directory (no config.json; it has: {found}); "
                           "export the checkpoint first with `fitrain export`")
    return p


def save_generations(path: str | Path, gens: list[Generation], info: dict) -> None:
    """JSONL, one line per item, each with the exact prompt; the first line is a header with ``info``."""
    from fitrain.core.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps({"_header": info}, ensure_ascii=False) + "\n")
        for g in gens:
            f.write(json.dumps(g.to_dict(), ensure_ascii=False) + "\n")
