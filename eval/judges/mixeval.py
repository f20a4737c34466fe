"""MixEval and MixEval-Hard: free-form answers graded 0-1 against the gold answers by the judge;
multiple-choice answers reduced by the judge to one option letter, compared exactly with the gold option.

**Official rules** (``prompts=official``, the default; texts in ``prompts/mixeval``, read verbatim):

* model side (``mix_eval/prompts/evaluation_prompts.py``): multiple choice ``{context}\\n{prompt}\\n{A. ...}\\n``
  + ``Answer with the option letter from the given choices directly.``; free form ``Question: {context}\\n
  {prompt}\\n`` + ``Answer the question shortly.`` (BBH, GSM8k, MATH: ``Answer the question. \\nLet's think
  step by step.``); the context left out when it is None, ``null`` or blank. Chat-format models get
  MixEval's system message ``You are a helpful assistant.``. With ``five_shot`` the question follows
  MixEval's base-model five-shot prefix (``FIVE_SHOT_PREFIX_* + prompt + "\\n"``) and the answer is cut as
  MixEval cuts base-model answers (at ``\\n\\n\\nQuestion`` / ``\\n\\n`` when the rest is meaningful); off by
  default because fitrain prompts each model in its training format (fitrain/docs/method.md).
* judge: MixEval's system + user messages, the **bare question without its context** (as the official parser
  sends it), gold answers as ``<answer 1> a; <answer 2> b``, options as ``A. ...`` lines; its three worked
  examples and its 0.0, 0.1, ..., 1.0 scale are part of the text.
* parsing: the *first* ``[[x]]`` (else ``[x]``) number, in [0, 1]; for multiple choice the first ``[[X]]``
  (else ``[X]``) capital letter; correct when it is a gold option's letter.
* aggregation: per kind the mean; ``overall`` the item-weighted mean over both kinds (MixEval's
  ``ff*n_ff/(n_ff+n_mc) + mc*n_mc/(n_ff+n_mc)``).

Departures, and why: a reply that stays unparsable after the retries is a counted failure whose item the
report drops for every arm (MixEval assigns a random grade or letter, which would add noise to a paired
comparison); an empty answer is graded 0 / wrong without a judge call (it cannot match a gold answer).

``prompts=paraphrased``: fitrain's earlier prompts (fitrain_eval.judges.paraphrased), kept as an option.

Metric names: ``<split>/free_form``, ``<split>/multiple_choice``, ``<split>/overall`` (split = ``mixeval`` |
``mixeval_hard``), with per-item scores for each (fitrain_eval.items). Files:
``<root>/{mixeval,mixeval-hard}/{free-form,multiple-choice}.json``, each a JSON object keyed by string ids.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

from fitrain.core.accounting import Rejects
from fitrain.core.checks import NON_NEGATIVE, check_fields, one_of
from fitrain.core.errors import FitrainError
from fitrain.core.llm import Request
from fitrain_eval.judges import official, paraphrased
from fitrain_eval.judges.common import (Judge, bracketed, first_match, letters, load_benchmark_json, parse_number,
                                        require_data)

SPLITS = {"mixeval": "mixeval", "mixeval_hard": "mixeval-hard"}
KINDS = {"free_form": "free-form", "multiple_choice": "multiple-choice"}
PROMPT_SETS = ("official", "paraphrased")
COT_INSTRUCTION = {"BBH": "FREE_FORM_PROMPT_BBH", "GSM8k": "FREE_FORM_PROMPT_GSM8k", "MATH": "FREE_FORM_PROMPT_MATH"}


@dataclass
class MixEvalConfig:
    enabled: bool = False
    root: str = "official"     # official: fetched (pinned, sha256-verified; fitrain_eval.data_sources) | a local folder
    splits: list[str] = field(default_factory=lambda: ["mixeval", "mixeval_hard"])
    limit: int = 0             # first N items (by id) of each file; 0 = all
    prompts: str = "official"  # official | paraphrased
    five_shot: bool = False    # MixEval's base-model five-shot prefix before each question

    def __post_init__(self) -> None:
        check_fields(self, splits=one_of(*SPLITS), limit=NON_NEGATIVE, prompts=one_of(*PROMPT_SETS))


@dataclass
class Item:
    id: str                 # the file's key
    kind: str               # free_form | multiple_choice
    prompt: str
    context: str | None
    target: list
    benchmark: str
    options: list[str] | None = None

    @property
    def uid(self) -> str:
        """The item's id in per-item scores and decontamination: ``<kind>:<key>``."""
        return f"{self.kind}:{self.id}"


# --------------------------------------------------------------------------------------------- loading
def load_file(path: str | Path, kind: str, rejects: Rejects) -> list[Item]:
    """Read one MixEval file. A file that is not a non-empty JSON object keyed by ids is an error; a bad
    item is counted in ``rejects`` (``mixeval_bad_item``)."""
    p = Path(path)
    data = load_benchmark_json(p, "MixEval", dict, "one JSON object keyed by string ids")
    if not data:
        raise FitrainError(f"{p}: a MixEval {KINDS[kind]} file with no items ({{}}); expected one JSON object "
                           "keyed by string ids")
    items = []
    for key in sorted(data, key=lambda k: (len(k), k)):
        rec, where = data[key], f"{p.name}:{key}"
        problem = _check_item(rec, kind)
        if problem:
            rejects.add("mixeval_bad_item", where, problem)
            continue
        items.append(Item(id=str(key), kind=kind, prompt=rec["prompt"], context=rec.get("context"),
                          target=list(rec["target"]), benchmark=str(rec.get("benchmark_name", "")),
                          options=list(rec["options"]) if kind == "multiple_choice" else None))
    if not items:
        raise FitrainError(f"{p}: no valid {KINDS[kind]} items ({rejects.summary()}); is this the right file?")
    return items


def _check_item(rec, kind: str) -> str:
    if not isinstance(rec, dict):
        return f"item is a {type(rec).__name__}, not an object"
    if not isinstance(rec.get("prompt"), str) or not rec["prompt"].strip():
        return "missing prompt"
    if rec.get("problem_type") not in (None, KINDS[kind]):
        return f"problem_type '{rec.get('problem_type')}' in a {KINDS[kind]} file"
    target = rec.get("target")
    if not isinstance(target, list) or not target:
        return "target must be a non-empty list"
    if kind == "multiple_choice":
        opts = rec.get("options")
        if not isinstance(opts, list) or len(opts) < 2 or len(opts) > 26:
            return "options must be a list of 2-26 strings"
        if not all(isinstance(t, int) and 0 <= t < len(opts) for t in target):
            return f"target {target} is not a list of option indices < {len(opts)}"
    elif not all(isinstance(t, str) for t in target):
        return "free-form target must be a list of strings"
    return ""


SOURCE = "github.com/Psycoy/MixEval (mix_eval/data/mixeval-2024-08-11, the folder holding mixeval/ and mixeval-hard/)"


def split_files(root: str | Path, split: str) -> dict[str, Path]:
    """``{kind: file}`` of one split under ``root``."""
    if split not in SPLITS:
        raise FitrainError(f"unknown MixEval split '{split}'; one of {sorted(SPLITS)}")
    return {kind: Path(root) / SPLITS[split] / f"{fname}.json" for kind, fname in KINDS.items()}


def check_data(root: str | Path, splits: list[str]) -> None:
    """The files of every split are there (else a one-line error naming ``mixeval.root`` and the source)."""
    require_data(root, "MixEval", "mixeval.root", SOURCE)
    for split in splits:
        for p in split_files(root, split).values():
            require_data(p, "MixEval", "mixeval.root", SOURCE)


def load_split(root: str | Path, split: str, rejects: Rejects, limit: int = 0) -> list[Item]:
    out = []
    for kind, p in split_files(root, split).items():
        items = load_file(p, kind, rejects)
        out.extend(items[:limit] if limit else items)
    return out


# --------------------------------------------------------------------------------------------- prompts
def _has_context(item: Item) -> bool:
    c = str(item.context)
    return item.context is not None and c.lower() not in ("none", "null") and c.replace(" ", "") != ""


def _options(options: list[str]) -> str:
    return "\n".join(f"{letter}. {o}" for letter, o in zip(letters(len(options)), options))


def model_prompt(item: Item, prompts: str = "official", five_shot: bool = False) -> str:
    """The question as the evaluated model sees it (one user turn)."""
    if prompts == "paraphrased":
        return paraphrased.mixeval_model_prompt(item.kind, item.prompt, item.context if _has_context(item) else None,
                                                item.options)
    side = official.mixeval_model_side
    if item.kind == "multiple_choice":
        body = f"{item.prompt}\n{_options(item.options)}\n{side('MULTI_CHOICE_PROMPT')}"
        text = f"{item.context}\n{body}" if _has_context(item) else body
        prefix = "FIVE_SHOT_PREFIX_MULTIPLECHOICE"
    else:
        body = f"{item.prompt}\n{side(COT_INSTRUCTION.get(item.benchmark, 'FREE_FORM_PROMPT'))}"
        text = f"Question: {item.context}\n{body}" if _has_context(item) else f"Question: {body}"
        prefix = "FIVE_SHOT_PREFIX_FREEFORM"
    return side(prefix) + text + "\n" if five_shot else text


def model_messages(item: Item, cfg: MixEvalConfig, prompt_format: str) -> list[dict]:
    msgs = [{"role": "user", "content": model_prompt(item, cfg.prompts, cfg.five_shot)}]
    if cfg.prompts == "official" and prompt_format == "chat":
        msgs.insert(0, {"role": "system", "content": official.mixeval_chat_system()})
    return msgs


def extract_base_model_answer(answer: str, kind: str) -> str:
    """MixEval's cut of a base model's (five-shot) answer: up to the next question, when that is meaningful."""
    import re

    cut = answer.split("\n\n")[0] if kind == "multiple_choice" else answer.split("\n\n\nQuestion")[0]
    return cut if re.search(r"[0-9A-Za-z\u00C0-\u024F\u0370-\u052F\u2C00-\u2C5F\uA640-\uA69F\uAC00-\uD7AF"
                            r"\u4E00-\u9FFF]", cut) else answer


def judge_request(item: Item, answer: str, prompts: str = "official") -> tuple[Request, str]:
    """The judge's request for one answer and its prompt version."""
    if prompts == "paraphrased":
        text, version = paraphrased.mixeval_judge_text(item.kind, item.prompt, item.context if _has_context(item)
                                                       else None, item.target, item.options, answer)
        return Request(messages=[{"role": "user", "content": text}], task=version, meta={"id": item.uid}), version
    if item.kind == "multiple_choice":
        name, fields = "judge_multichoice", {"prompt": item.prompt, "options": _options(item.options),
                                             "response": answer}
    else:
        gold = "; ".join(f"<answer {i + 1}> {a}" for i, a in enumerate(item.target))
        name, fields = "judge_freeform", {"prompt": item.prompt, "gold_ans": gold, "response": answer}
    msgs = [{"role": "system", "content": official.text(f"mixeval/{name}.system.txt")},
            {"role": "user", "content": official.fill(official.text(f"mixeval/{name}.user.txt"), **fields)}]
    version = official.MIXEVAL_VERSION + (":multichoice" if item.kind == "multiple_choice" else ":freeform")
    return Request(messages=msgs, task=version, meta={"id": item.uid}), version


def parse_grade_official(text: str) -> float:
    raw = first_match(text, [r"\[\[(\d+\.?\d*)\]\]", r"\[(\d+\.?\d*)\]"])
    v = float(ast.literal_eval(raw))
    if not 0 <= v <= 1:
        raise ValueError(f"grade {v} outside [0, 1]")
    return v


def parse_letter_official(text: str) -> str:
    return first_match(text, [r"\[\[([A-Z])\]\]", r"\[([A-Z])\]"])


def parse_grade(text: str) -> float:
    return parse_number(text, 0.0, 1.0)


def parse_letter(n_options: int):
    """The paraphrased extractor's reply: one valid letter or ``[[none]]`` (no option chosen: wrong)."""
    valid = letters(n_options)

    def parse(text: str) -> tuple[str | None]:
        v = bracketed(text).strip().strip(".").upper()
        if v == "NONE":
            return (None,)
        if len(v) != 1 or v not in valid:
            raise ValueError(f"verdict [[{v}]] is not one of {list(valid)} or none")
        return (v,)
    return parse


# ------------------------------------------------------------------------------------------ evaluation
def score_split(items: list[Item], answers: dict[str, str | None], judge: Judge, rejects: Rejects,
                split: str = "mixeval", prompts: str = "official") -> tuple[dict, list[dict], dict]:
    """Judge the answers of one split (``answers`` keyed by ``Item.uid``); returns (metrics, per-item
    records, ``{uid: score or None}``). A failed generation or judgment is a counted failure (None)."""
    from fitrain_eval.judges.common import Judged

    scores: dict[str, float | None] = {}
    records: list[dict] = []
    todo: list[Item] = []
    for it in items:
        ans = answers.get(it.uid)
        if ans is None:
            scores[it.uid] = None
            rejects.add(f"{split}_no_answer", it.uid)
        elif not ans.strip():  # an empty answer is simply wrong; no judge call needed
            scores[it.uid] = 0.0
            records.append({"id": it.uid, "kind": it.kind, "answer": ans, "score": 0.0, "judgment": "empty answer"})
        else:
            todo.append(it)
    groups: dict[tuple, list[Item]] = {}
    for it in todo:  # one judge call per kind (and, paraphrased, per option count: the parser checks it)
        n = len(it.options) if (it.kind == "multiple_choice" and prompts == "paraphrased") else 0
        groups.setdefault((it.kind, n), []).append(it)
    for (kind, n), batch in groups.items():
        reqs = [judge_request(it, answers[it.uid], prompts) for it in batch]
        version = reqs[0][1]
        if kind == "free_form":
            parse = parse_grade_official if prompts == "official" else parse_grade
        else:
            parse = parse_letter_official if prompts == "official" else parse_letter(n)
        results: list[Judged] = judge.judge([r for r, _ in reqs], parse, rejects, version, what=f"{split}_judge")
        for it, res in zip(batch, results):
            if res.value is None:
                scores[it.uid] = None
                continue
            verdict = res.value[0] if isinstance(res.value, tuple) else res.value
            if kind == "free_form":
                score = float(verdict)
            else:
                score = 1.0 if verdict in {letters(len(it.options))[t] for t in it.target} else 0.0
            scores[it.uid] = score
            records.append({"id": it.uid, "kind": kind, "benchmark": it.benchmark, "answer": answers[it.uid],
                            "verdict": verdict, "score": score, **res.raw})
    return _metrics(items, scores, split), records, scores


def _metrics(items: list[Item], scores: dict, split: str) -> dict:
    got = {k: [scores[it.uid] for it in items if it.kind == k and scores.get(it.uid) is not None] for k in KINDS}
    n = sum(len(v) for v in got.values())
    if n == 0:
        raise FitrainError(f"{split}: no item could be scored (every generation or judgment failed)")
    out = {f"{split}/{k}": sum(v) / len(v) for k, v in got.items() if v}
    out.update({f"{split}/overall": sum(sum(v) for v in got.values()) / n,
                f"{split}/n_free_form": len(got["free_form"]), f"{split}/n_multiple_choice": len(got["multiple_choice"]),
                f"{split}/n_failed": sum(scores.get(it.uid) is None for it in items)})
    return out


def evaluate_mixeval(cfg: MixEvalConfig, generator, judge: Judge, out_dir: str | Path, rejects: Rejects) -> dict:
    """Generate answers for each split, save them with their prompts, judge them, save the judgments and
    the per-item scores (``<split>/overall`` and per kind)."""
    from fitrain_eval.generate import save_generations
    from fitrain_eval.items import ItemScores
    from fitrain_eval.judges.common import save_records

    fmt = getattr(getattr(generator, "cfg", None), "prompt_format", "instruction")
    metrics: dict = {}
    for split in cfg.splits:
        items = load_split(cfg.root, split, rejects, cfg.limit)
        gens = generator.generate([(it.uid, model_messages(it, cfg, fmt)) for it in items], rejects,
                                  what=f"{split}_generation")
        save_generations(Path(out_dir) / split / "generations.jsonl", gens,
                         {"model": generator.model, "decoding": generator.decoding(), "split": split,
                          "prompts": cfg.prompts, "five_shot": cfg.five_shot})
        answers = {it.uid: (extract_base_model_answer(g.output, it.kind) if cfg.five_shot and g.output else g.output)
                   for it, g in zip(items, gens)}
        m, records, scores = score_split(items, answers, judge, rejects, split, cfg.prompts)
        save_records(Path(out_dir) / split / "judgments.jsonl", records)
        info = {"benchmark": split, "judge_model": judge.model, "rules": cfg.prompts, "five_shot": cfg.five_shot,
                "prompt_version": official.MIXEVAL_VERSION if cfg.prompts == "official" else
                f"{paraphrased.MIXEVAL_FF_VERSION}+{paraphrased.MIXEVAL_MC_VERSION}",
                "judge_decoding": judge.decoding(), "generation": generator.decoding()}
        failures = {it.uid: ("generation failed" if answers.get(it.uid) is None else "judgment failed")
                    for it in items if scores.get(it.uid) is None}
        for kind in (None, *KINDS):
            sub = [it for it in items if kind in (None, it.kind)]
            if sub:
                ItemScores(f"{split}/{kind or 'overall'}", {it.uid: scores.get(it.uid) for it in sub},
                           {u: r for u, r in failures.items() if kind in (None, u.split(':')[0])}, info=info
                           ).save(out_dir)
        metrics.update(m)
    return metrics
