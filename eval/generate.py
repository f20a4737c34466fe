"""Batched greedy generation from an exported checkpoint, prompted in the format the model was trained on.

``prompt_format``:

* ``instruction`` (default): the pair text format of :mod:`fitrain.data.formatting`; a single turn is
  ``FormatConfig.generation_prompt(instruction)`` (``Instruction: ...\\n\\nAnswer:``); earlier turns of a
  multi-turn dialogue are rendered as complete pairs before it, separated by a blank line;
* ``chat``: the tokenizer's chat template (transformers backend) or the server's (OpenAI-compatible);
* ``raw``: the last user message as is.

Backends come from :mod:`fitrain.core.llm`: ``transformers`` on the exported directory (CPU/GPU), or any
OpenAI-compatible server (``vllm serve DIR``). Every output is saved with the exact prompt it answered.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fitrain.core.accounting import Rejects
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

        if cfg.prompt_format not in PROMPT_FORMATS:
            raise FitrainError(f"generation.prompt_format must be one of {PROMPT_FORMATS}, got '{cfg.prompt_format}'")
        self.cfg = cfg
        self.fmt = cfg.format
        if cfg.prompt_format == "instruction":
            if self.fmt.use_chat_template:
                raise FitrainError("generation.format.use_chat_template is set: use generation.prompt_format=chat")
            self.fmt.validate()
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

    def decoding(self) -> dict:
        return {"greedy": True, "max_new_tokens": self.cfg.max_new_tokens, "stop": list(self.cfg.stop),
                "prompt_format": self.cfg.prompt_format, "backend": self.backend.name}

    def request(self, messages: list[dict], id_: str) -> Request:
        """``messages``: alternating user/assistant turns ending with the user turn to answer."""
        if not messages or messages[-1].get("role") != "user":
            raise FitrainError(f"item {id_}: a prompt must end with a user turn")
        kw = dict(max_new_tokens=self.cfg.max_new_tokens, temperature=0.0, stop=list(self.cfg.stop) or None,
                  meta={"id": id_}, task="generate")
        if self.cfg.prompt_format == "chat":
            return Request(messages=[dict(m) for m in messages], **kw)
        if self.cfg.prompt_format == "raw":
            return Request(prompt=messages[-1]["content"], **kw)
        return Request(prompt=self.instruction_prompt(messages), **kw)

    def instruction_prompt(self, messages: list[dict]) -> str:
        return self.bos + render_instruction(messages, self.fmt)

    def generate(self, items: list[tuple[str, list[dict]]], rejects: Rejects, what: str = "generation",
                 progress=None) -> list[Generation]:
        """Generate for ``(id, messages)`` items. Backend failures are counted (``<what>_failed``), empty
        outputs counted (``<what>_empty``); if every output is empty or failed, raise: the checkpoint or
        its prompt format is wrong, and judging nothing would produce a meaningless score."""
        reqs = [self.request(msgs, id_) for id_, msgs in items]
        comps = self.backend.complete(reqs, progress)
        out: list[Generation] = []
        n_bad = 0
        for (id_, _), r, c in zip(items, reqs, comps):
            text = c.text.strip() if c.text is not None else None
            if text is None:
                rejects.add(f"{what}_failed", id_, c.error or "")
                n_bad += 1
            elif not text:
                rejects.add(f"{what}_empty", id_)
                n_bad += 1
            out.append(Generation(id_, r.messages if r.messages is not None else r.prompt, text))
        if items and n_bad == len(items):
            raise FitrainError(
                f"all {len(items)} generations from '{self.model}' are empty or failed ({rejects.summary()}); "
                "check the checkpoint, generation.prompt_format and generation.stop")
        return out


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
