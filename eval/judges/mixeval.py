"""MixEval and MixEval-Hard: free-form answers graded 0-1 against the gold answers by the judge;
multiple-choice answers reduced by the judge to one option letter, compared exactly with the gold options.

Each split's score is item-weighted: ``overall = (sum of free-form grades + multiple-choice hits) /
(free-form items + multiple-choice items)``. Metric names: ``<split>/free_form``,
``<split>/multiple_choice``, ``<split>/overall`` (split = ``mixeval`` | ``mixeval_hard``).

Files: ``<root>/{mixeval,mixeval-hard}/{free-form,multiple-choice}.json``, each a JSON object keyed by
string ids (the published layout).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fitrain.core.accounting import Rejects
from fitrain.core.errors import FitrainError
from fitrain.core.llm import Request
from fitrain_eval.judges.common import Judge, bracketed, letters, load_benchmark_json, parse_number

SPLITS = {"mixeval": "mixeval", "mixeval_hard": "mixeval-hard"}
KINDS = {"free_form": "free-form", "multiple_choice": "multiple-choice"}
FF_PROMPT_VERSION = "mixeval-freeform-v1"
MC_PROMPT_VERSION = "mixeval-mc-letter-v1"


@dataclass
class MixEvalConfig:
    enabled: bool = False
    root: str = "../shared/data/mixeval/mixeval-2024-08-11"
    splits: list[str] = field(default_factory=lambda: ["mixeval", "mixeval_hard"])
    limit: int = 0          # first N items (by id) of each file; 0 = all


@dataclass
class Item:
    id: str
    kind: str               # free_form | multiple_choice
    prompt: str
    context: str | None
    target: list
    benchmark: str
    options: list[str] | None = None


# --------------------------------------------------------------------------------------------- loading
def load_file(path: str | Path, kind: str, rejects: Rejects) -> list[Item]:
    """Read one MixEval file. A file that is not a JSON object keyed by ids is an error; a bad item is
    counted in ``rejects`` (``mixeval_bad_item``)."""
    p = Path(path)
    data = load_benchmark_json(p, "MixEval", dict, "one JSON object keyed by string ids")
    items = []
    for key in sorted(data, key=lambda k: (len(k), k)):
        rec, where = data[key], f"{p.name}:{key}"
        problem = _check_item(rec, kind)
        if problem:
            rejects.add("mixeval_bad_item", where, problem)
            continue
        items.append(Item(id=str(key), kind=kind, prompt=rec["prompt"], context=rec.get("context") or None,
                          target=list(rec["target"]), benchmark=str(rec.get("benchmark_name", "")),
                          options=list(rec["options"]) if kind == "multiple_choice" else None))
    if data and not items:
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


def load_split(root: str | Path, split: str, rejects: Rejects, limit: int = 0) -> list[Item]:
    if split not in SPLITS:
        raise FitrainError(f"unknown MixEval split '{split}'; one of {sorted(SPLITS)}")
    out = []
    for kind, fname in KINDS.items():
        items = load_file(Path(root) / SPLITS[split] / f"{fname}.json", kind, rejects)
        out.extend(items[:limit] if limit else items)
    return out


# --------------------------------------------------------------------------------------------- prompts
def model_prompt(item: Item) -> str:
    """The question as the evaluated model sees it (one user turn)."""
    head = f"{item.context.strip()}\n\n" if item.context else ""
    if item.kind == "multiple_choice":
        opts = "\n".join(f"{letter}. {o}" for letter, o in zip(letters(len(item.options)), item.options))
        return f"{head}{item.prompt.strip()}\n{opts}\nAnswer with the letter of the correct option."
    return f"{head}{item.prompt.strip()}\nAnswer the question briefly."


def judge_request(item: Item, answer: str) -> Request:
    if item.kind == "multiple_choice":
        opts = "\n".join(f"{letter}. {o}" for letter, o in zip(letters(len(item.options)), item.options))
        text = (
            "You read a model's answer to a multiple-choice question and decide which single option it "
            "chose. Do not judge whether it is right.\n\n"
            f"Question:\n{item.prompt.strip()}\n\nOptions:\n{opts}\n\nModel answer:\n{answer}\n\n"
            f"Reply with the chosen letter in double brackets, e.g. [[A]]. If the answer picks no option or "
            f"several, reply [[none]].")
        version = MC_PROMPT_VERSION
    else:
        golds = "\n".join(f"- {t}" for t in item.target)
        ctx = f"Context:\n{item.context.strip()}\n\n" if item.context else ""
        text = (
            "You grade a model's short answer against the accepted gold answers. Give 1 when the answer "
            "means the same as a gold answer, 0 when it is wrong or missing, and a value in between for a "
            "partly correct answer.\n\n"
            f"{ctx}Question:\n{item.prompt.strip()}\n\nGold answers:\n{golds}\n\nModel answer:\n{answer}\n\n"
            "Reply with a short reason, then the grade in double brackets, e.g. [[0.5]].")
        version = FF_PROMPT_VERSION
    return Request(messages=[{"role": "user", "content": text}], task=version, max_new_tokens=None,
                   meta={"id": item.id})


def parse_grade(text: str) -> float:
    return parse_number(text, 0.0, 1.0)


def parse_letter(n_options: int):
    valid = letters(n_options)

    def parse(text: str) -> str | None:
        v = bracketed(text).strip().strip(".").upper()
        if v == "NONE":
            return None
        if len(v) != 1 or v not in valid:
            raise ValueError(f"verdict [[{v}]] is not one of {list(valid)} or none")
        return v
    return parse


# ------------------------------------------------------------------------------------------ evaluation
def score_split(items: list[Item], answers: dict[str, str | None], judge: Judge, rejects: Rejects,
                split: str = "mixeval") -> tuple[dict, list[dict]]:
    """Judge the answers of one split; returns (metrics, per-item records). Items whose generation failed
    or whose judgment failed/was unparsable are left out of the scores and counted."""
    records: list[dict] = []
    graded: dict[str, list[float]] = {"free_form": [], "multiple_choice": []}
    todo = []
    for it in items:
        ans = answers.get(it.id)
        if ans is None:
            rejects.add(f"{split}_no_answer", it.id)
            continue
        if not ans.strip():  # an empty answer is simply wrong; no judge call needed
            graded[it.kind].append(0.0)
            records.append({"id": it.id, "kind": it.kind, "answer": ans, "score": 0.0, "judgment": None})
            continue
        todo.append(it)
    for kind in ("free_form", "multiple_choice"):
        batch = [it for it in todo if it.kind == kind]
        if not batch:
            continue
        reqs = [judge_request(it, answers[it.id]) for it in batch]
        if kind == "free_form":
            results = judge.judge(reqs, parse_grade, rejects, FF_PROMPT_VERSION, what=f"{split}_judge")
        else:
            results = _judge_letters(batch, reqs, judge, rejects, split)
        for it, res in zip(batch, results):
            if res is None or (res.value is None and kind == "free_form"):
                continue
            if kind == "free_form":
                score = float(res.value)
            else:
                gold = {letters(len(it.options))[t] for t in it.target}
                score = 1.0 if res.value in gold else 0.0
            graded[kind].append(score)
            records.append({"id": it.id, "kind": kind, "benchmark": it.benchmark, "answer": answers[it.id],
                            "verdict": res.value, "score": score, **res.raw})
    n_ff, n_mc = len(graded["free_form"]), len(graded["multiple_choice"])
    if n_ff + n_mc == 0:
        raise FitrainError(f"{split}: no item could be scored ({rejects.summary()})")
    metrics = {
        f"{split}/free_form": sum(graded["free_form"]) / n_ff if n_ff else float("nan"),
        f"{split}/multiple_choice": sum(graded["multiple_choice"]) / n_mc if n_mc else float("nan"),
        f"{split}/overall": (sum(graded["free_form"]) + sum(graded["multiple_choice"])) / (n_ff + n_mc),
        f"{split}/n_free_form": n_ff, f"{split}/n_multiple_choice": n_mc,
    }
    return metrics, records


def _judge_letters(batch, reqs, judge: Judge, rejects: Rejects, split: str):
    """Letter extraction; a reply of [[none]] is a valid verdict (no option chosen, scored wrong)."""
    from fitrain_eval.judges.common import Judged

    by_n: dict[int, list[int]] = {}  # the parser checks the letter against each item's option count
    for i, it in enumerate(batch):
        by_n.setdefault(len(it.options), []).append(i)
    slots: list[Judged | None] = [None] * len(batch)
    for n, idx in by_n.items():
        parse = parse_letter(n)
        res = judge.judge([reqs[i] for i in idx], lambda s, p=parse: (p(s),), rejects, MC_PROMPT_VERSION,
                          what=f"{split}_judge")
        for i, r in zip(idx, res):
            slots[i] = None if r.value is None else Judged(r.value[0], r.raw)
    return slots


def evaluate_mixeval(cfg: MixEvalConfig, generator, judge: Judge, out_dir: str | Path, rejects: Rejects) -> dict:
    """Generate answers for each split, save them with their prompts, judge them, save the judgments."""
    from fitrain_eval.generate import save_generations
    from fitrain_eval.judges.common import save_records

    metrics: dict = {}
    for split in cfg.splits:
        items = load_split(cfg.root, split, rejects, cfg.limit)
        gens = generator.generate([(it.id + ":" + it.kind, [{"role": "user", "content": model_prompt(it)}])
                                   for it in items], rejects, what=f"{split}_generation")
        save_generations(Path(out_dir) / split / "generations.jsonl", gens,
                         {"model": generator.model, "decoding": generator.decoding(), "split": split})
        answers = {it.id + ":" + it.kind: g.output for it, g in zip(items, gens)}
        keyed = [Item(it.id + ":" + it.kind, it.kind, it.prompt, it.context, it.target, it.benchmark, it.options)
                 for it in items]
        m, records = score_split(keyed, answers, judge, rejects, split)
        save_records(Path(out_dir) / split / "judgments.jsonl", records)
        metrics.update(m)
    return metrics
