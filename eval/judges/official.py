"""The benchmarks' own prompt texts, read as data from ``prompts/`` (see its README: sources, licences).

Texts are read byte-exactly (``read_bytes().decode("utf-8")``: MixEval's few-shot prefix holds form feeds
and tabs, which ``splitlines`` would break on). Filling follows each benchmark's own mechanics:

* :func:`fill` for Python f-strings and ``str.format`` (MixEval, MT-Bench-101): every ``{name}`` field is
  replaced in one pass, the filled-in values are not scanned again;
* :func:`fill_first` for AlpacaEval's ``make_prompts``: for each placeholder in order, ``str.replace`` of
  its first occurrence only (so the JSON braces of the template stay as they are).
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

PROMPTS = Path(__file__).resolve().parent / "prompts"

# Version tags recorded with every judgment: the upstream commit the texts were taken from.
MIXEVAL_VERSION = "mixeval-official@7c52b41"
MTBENCH101_VERSION = "mtbench101-official@opencompass-a5acc4b"
ALPACA_EVAL_VERSION = "alpaca_eval-weighted_alpaca_eval_gpt4_turbo@cd543a1"


@lru_cache(maxsize=None)
def text(relpath: str) -> str:
    """The exact text of ``prompts/<relpath>``."""
    return (PROMPTS / relpath).read_bytes().decode("utf-8")


@lru_cache(maxsize=None)
def data(relpath: str) -> dict:
    return json.loads(text(relpath))


def fill(template: str, **values: str) -> str:
    """f-string / ``str.format`` semantics for the named fields, in a single pass."""
    names = "|".join(re.escape(k) for k in values)
    return re.sub(r"\{(" + names + r")\}", lambda m: str(values[m.group(1)]), template)


def fill_first(template: str, values: list[tuple[str, str]]) -> str:
    """AlpacaEval's placeholder rule: each ``{name}`` in turn, its first occurrence, by ``str.replace``."""
    out = template
    for name, value in values:
        out = out.replace("{" + name + "}", str(value), 1)
    return out


def chatml_messages(prompt: str) -> list[dict]:
    """A ``<|im_start|>role ... <|im_end|>`` prompt as chat messages, each content stripped (AlpacaEval's
    ``prompt_to_chatml``)."""
    prompt = prompt.strip()
    out = []
    for part in prompt.split("<|im_start|>")[1:]:
        role, _, rest = part.partition("\n")
        out.append({"role": role.strip(), "content": rest.split("<|im_end|>", 1)[0].strip()})
    return out


# ------------------------------------------------------------------------------------------ MixEval
def mixeval_model_side(name: str) -> str:
    """A model-side text of MixEval (``MULTI_CHOICE_PROMPT``, ``FREE_FORM_PROMPT``, ``FREE_FORM_PROMPT_BBH``,
    ``FIVE_SHOT_PREFIX_FREEFORM``, ...)."""
    entry = data("mixeval/mixeval_prompts.json")["model_side_prompts"][name]
    return text(entry["file"]) if "file" in entry else entry["text"]


def mixeval_chat_system() -> str:
    return data("mixeval/mixeval_prompts.json")["model_side_prompts"]["ChatModel.SYSTEM_MESSAGE"]["value"]["content"]


# ------------------------------------------------------------------------------------------ MT-Bench-101
def mtbench101_rules() -> dict:
    d = data("mt_bench_101/mt_bench_101_judge.json")
    return {"skip_first_tasks": tuple(d["skip_first_tasks"]["value"]), "need_ref_tasks": tuple(d["need_ref_tasks"]["value"]),
            "tasks": tuple(d["unique_prompt_map"]["value"]), "score_regex": d["score_regex"]["pattern"]}


def mtbench101_system(task: str) -> str:
    """``judge + unique_prompt[task] + score_format``."""
    return text("mt_bench_101/judge_preamble.txt") + text(f"mt_bench_101/task_{task}.txt") + \
        text("mt_bench_101/score_format.txt")


def mtbench101_user(task: str) -> str:
    ref = task in mtbench101_rules()["need_ref_tasks"]
    return text("mt_bench_101/user_template_with_reference.txt" if ref else "mt_bench_101/user_template.txt")


# ------------------------------------------------------------------------------------------ AlpacaEval
def alpaca_eval_template() -> str:
    return text("alpaca_eval/alpaca_eval_clf.txt")


def alpaca_eval_annotator() -> dict:
    """The default annotator's ``completions_kwargs`` and ``completion_parser_kwargs`` (configs.yaml)."""
    import yaml

    return yaml.safe_load(text("alpaca_eval/weighted_alpaca_eval_gpt4_turbo_configs.yaml"))[
        "weighted_alpaca_eval_gpt4_turbo"]


def alpaca_eval_glm(name: str) -> dict:
    return data("alpaca_eval/alpaca_eval_judge.json")["GLM_INFO"]["value"][name]
