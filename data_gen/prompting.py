"""Prompt files and robust reply parsing shared by the LLM stages.

A prompt file is YAML with ``system`` and ``user`` strings holding ``{{name}}`` fields. A name in a
config (``templatizer_released``) is looked up in data_gen/prompts/; anything else is a path.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fitrain.core.errors import FitrainError
from fitrain.core.llm import Request

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"
_FIELD = re.compile(r"\{\{\s*(\w+)\s*\}\}")


@dataclass
class Prompt:
    name: str
    system: str
    user: str

    def fields(self) -> set[str]:
        return set(_FIELD.findall(self.system)) | set(_FIELD.findall(self.user))

    def render(self, **values: str) -> list[dict]:
        missing = self.fields() - set(values)
        if missing:
            raise FitrainError(f"prompt {self.name} needs {sorted(missing)}")

        def fill(s: str) -> str:
            return _FIELD.sub(lambda m: str(values[m.group(1)]), s)

        msgs = [{"role": "system", "content": fill(self.system)}] if self.system.strip() else []
        return msgs + [{"role": "user", "content": fill(self.user)}]

    def request(self, task: str, inputs: dict, max_new_tokens: int, rid: str, **values: str) -> Request:
        """A chat Request. ``meta['inputs']`` carries the contract's structured inputs (the offline
        extractive backend reads them; model backends see only the rendered messages)."""
        return Request(messages=self.render(**values), task=task, max_new_tokens=max_new_tokens,
                       meta={"id": rid, "inputs": inputs})


def load_prompt(name: str, required: set[str] | None = None) -> Prompt:
    import yaml

    path = Path(name)
    if not path.is_file():
        path = PROMPTS_DIR / (name if name.endswith(".yaml") else f"{name}.yaml")
    if not path.is_file():
        known = sorted(p.stem for p in PROMPTS_DIR.glob("*.yaml"))
        raise FitrainError(f"prompt '{name}' not found (a path, or one of {known})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise FitrainError(f"prompt file {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("user"), str):
        raise FitrainError(f"prompt file {path} needs a 'user' string (and optionally 'system')")
    p = Prompt(path.stem, str(data.get("system") or ""), data["user"])
    if required is not None and not (p.fields() & required):
        raise FitrainError(f"prompt {path} uses none of the fields {sorted(required)}")
    return p


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def extract_json(text: str) -> Any:
    """The JSON value in a model reply: the whole reply, a fenced block, or the first balanced {...}.
    Raises ValueError when there is none, or when it holds a lone surrogate (a ``\\ud83d`` without its
    pair: not text, and no parquet file takes it); the caller's parse-retry counts it."""
    reject_lone_surrogate(text)
    s = text.strip()
    candidates = [s] + [m.group(1).strip() for m in _FENCE.finditer(s)]
    start = s.find("{")
    if start != -1:
        candidates.append(_balanced(s, start))
    for c in candidates:
        if not c:
            continue
        try:
            value = json.loads(c)
        except json.JSONDecodeError:
            continue
        reject_lone_surrogate(json.dumps(value, ensure_ascii=False))  # written as an escape in the JSON
        return value
    raise ValueError("no JSON value in reply")


def reject_lone_surrogate(text: str) -> None:
    """ValueError when a reply holds a lone surrogate (fitrain.data.records.lone_surrogate)."""
    from fitrain.data.records import lone_surrogate

    bad = lone_surrogate(text)
    if bad is not None:
        raise ValueError(f"the reply holds a lone surrogate {bad} (not text)")


def _balanced(s: str, start: int) -> str:
    depth, in_str, esc = 0, False, False
    for i in range(start, len(s)):
        ch = s[i]
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return s[start:i + 1]
    return ""
