"""MT-Bench-101: each user turn of a dialogue is answered by the model with the **gold** history before it
(``ChatInferencer(infer_mode='last')``), then rated 1-10 by the judge.

**Official rules** (``prompts=official``, the default), OpenCompass's ``mtbench101.py`` (the implementation the
benchmark's README points to; texts in ``prompts/mt_bench_101``, read verbatim):

* the judge's system message is ``judge + unique_prompt[task] + score_format`` (the shared preamble, the task's
  criteria with their score bands, the rating format); the user message ``user_template`` (or, for the
  reasoning tasks MR and GR, ``user_template_with_reference``) with ``{history}`` = ``"\n\n Human: " + user +
  "\n\nAssistant: "`` per turn followed by the gold reply of every earlier turn, ``{prediction}`` = the
  model's answer, ``{ref_answer}`` = the gold dialogue up to and including the current turn (the Python
  ``repr`` of its ``{'role', 'content'}`` messages, exactly what OpenCompass passes);
* for FR, CR, AR, SA, SC and CM the first turn is context only: neither generated nor judged;
* the rating is the *first* ``[n]`` integer of the reply (``Rating: [[6]]`` gives 6);
* aggregation: a dialogue scores the **minimum over its judged turns** (a turn whose judgment failed is
  left out of that minimum: it does not drop the dialogue); a task the mean of its dialogues; ``overall`` the
  unweighted mean of the task means.

Departures, and why: a rating outside 1-10 counts as unparsable and is asked again (OpenCompass would keep
it); an empty answer is rated 1 (the lowest) without a judge call. In the per-item scores for the report's
paired statistics a dialogue with **any** turn unrated is a failed item, which the report drops for every arm
(else one arm's minimum over turns {1, 2} would be paired with another's over {1, 2, 3}); the benchmark's own
``overall`` keeps OpenCompass's minimum over the rated turns.

``prompts=paraphrased``: fitrain's earlier one-line rubrics (fitrain_eval.judges.paraphrased).

Metric names: ``mtbench101/overall``, ``mtbench101/task/<CODE>``; per-item scores for ``mtbench101/overall``
(one item per dialogue, stratum = task, so the report's statistic is the mean of task means). File: JSON
lines ``{"task": "GR", "id": 1, "history": [{"user": ..., "bot": ...}, ...]}``.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from fitrain.core.accounting import Rejects
from fitrain.core.checks import NON_NEGATIVE, check_fields, one_of
from fitrain.core.errors import FitrainError
from fitrain.core.llm import Request
from fitrain_eval.judges import official, paraphrased
from fitrain_eval.judges.common import Judge, first_match, parse_number, require_data

_RULES = official.mtbench101_rules()
TASKS = tuple(sorted(_RULES["tasks"]))
SKIP_FIRST_TASKS = _RULES["skip_first_tasks"]
REFERENCE_TASKS = _RULES["need_ref_tasks"]
PROMPT_SETS = ("official", "paraphrased")


@dataclass
class MTBench101Config:
    enabled: bool = False
    path: str = "official"     # official: fetched (pinned, sha256-verified; fitrain_eval.data_sources) | a local file
    limit_per_task: int = 0     # first N dialogues of each task; 0 = all
    tasks: list[str] | None = None  # None = all 13
    prompts: str = "official"   # official | paraphrased

    def __post_init__(self) -> None:
        check_fields(self, limit_per_task=NON_NEGATIVE, prompts=one_of(*PROMPT_SETS))


@dataclass
class Dialogue:
    task: str
    id: str
    history: list[dict]

    @property
    def key(self) -> str:
        return f"{self.task}-{self.id}"

    def scored_turns(self) -> range:
        """The turns the model answers and the judge scores (the first is skipped for SKIP_FIRST_TASKS)."""
        return range(1 if self.task in SKIP_FIRST_TASKS else 0, len(self.history))

    def turn_messages(self, t: int) -> list[dict]:
        """Gold history before turn ``t`` (user + gold bot turns), then user turn ``t``."""
        msgs: list[dict] = []
        for h in self.history[:t]:
            msgs += [{"role": "user", "content": h["user"]}, {"role": "assistant", "content": h["bot"]}]
        return msgs + [{"role": "user", "content": self.history[t]["user"]}]


SOURCE = "github.com/mtbench101/mt-bench-101 (data/subjective/mtbench101.jsonl)"


def check_data(path: str | Path) -> None:
    """The benchmark file is there (else a one-line error naming ``mtbench101.path`` and the source)."""
    require_data(path, "MT-Bench-101", "mtbench101.path", SOURCE)


def load(path: str | Path, rejects: Rejects, limit_per_task: int = 0, tasks: list[str] | None = None
         ) -> list[Dialogue]:
    p = Path(path)
    if not p.is_file():
        raise FitrainError(f"MT-Bench-101 file not found: {p}")
    if tasks:
        unknown = [t for t in tasks if t not in TASKS]
        if unknown:
            raise FitrainError(f"unknown MT-Bench-101 task(s) {unknown}; one of {list(TASKS)}")
    out: list[Dialogue] = []
    per_task: dict[str, int] = {}
    n_lines = 0
    with open(p, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            n_lines += 1
            where = f"{p.name}:{lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                if lineno == 1:
                    raise FitrainError(f"{p}: not an MT-Bench-101 file: line 1 is not JSON ({e}); expected JSON "
                                       "lines with task, id and history") from None
                rejects.add("mtbench101_malformed_json", where, str(e))
                continue
            problem = _check(rec)
            if problem:
                if lineno == 1:
                    raise FitrainError(f"{p}: not an MT-Bench-101 file: {problem} on line 1; expected JSON lines "
                                       "{\"task\", \"id\", \"history\": [{\"user\", \"bot\"}, ...]}")
                rejects.add("mtbench101_bad_dialogue", where, problem)
                continue
            task = rec["task"]
            if tasks and task not in tasks:
                continue
            per_task[task] = per_task.get(task, 0) + 1
            if limit_per_task and per_task[task] > limit_per_task:
                continue
            out.append(Dialogue(task, str(rec["id"]), rec["history"]))
    if not out:
        raise FitrainError(f"{p}: no MT-Bench-101 dialogues read ({n_lines} lines; {rejects.summary()})")
    return out


def _check(rec) -> str:
    if not isinstance(rec, dict):
        return f"a {type(rec).__name__}, not an object"
    if rec.get("task") not in TASKS:
        return f"unknown task {rec.get('task')!r}"
    if "id" not in rec:
        return "missing id"
    hist = rec.get("history")
    if not isinstance(hist, list) or not hist:
        return "history must be a non-empty list"
    if not all(isinstance(h, dict) and isinstance(h.get("user"), str) and isinstance(h.get("bot"), str)
               for h in hist):
        return "each history turn needs string 'user' and 'bot'"
    return ""


def official_history(d: Dialogue, t: int) -> str:
    """OpenCompass's dialogue text before the answer of turn ``t``."""
    done = "".join("\n\n Human: " + h["user"] + "\n\nAssistant: " + h["bot"] for h in d.history[:t])
    return done + "\n\n Human: " + d.history[t]["user"] + "\n\nAssistant: "


def official_reference(d: Dialogue, t: int) -> str:
    """The gold dialogue up to turn ``t`` as OpenCompass formats it (``str`` of its message list; a turn
    with an empty gold reply has no assistant message, as in its ``add_format``)."""
    msgs: list[dict] = []
    for h in d.history[: t + 1]:
        msgs.append(dict(role="user", content=h["user"]))
        if h["bot"]:
            msgs.append(dict(role="assistant", content=h["bot"]))
    return str(msgs)


def judge_request(d: Dialogue, t: int, answer: str, prompts: str = "official") -> Request:
    if prompts == "paraphrased":
        return paraphrased.mtbench101_request(d.task, d.history, t, answer, f"{d.key}#{t}")
    fields = {"history": official_history(d, t), "prediction": answer}
    if d.task in REFERENCE_TASKS:
        fields["ref_answer"] = official_reference(d, t)
    msgs = [{"role": "system", "content": official.mtbench101_system(d.task)},
            {"role": "user", "content": official.fill(official.mtbench101_user(d.task), **fields)}]
    return Request(messages=msgs, task=official.MTBENCH101_VERSION, meta={"id": f"{d.key}#{t}"})


def parse_rating(text: str) -> float:
    """OpenCompass's rule: the first ``[n]`` integer of the reply; ValueError outside 1-10."""
    v = int(first_match(text, [_RULES["score_regex"]]))
    if not 1 <= v <= 10:
        raise ValueError(f"rating {v} outside 1-10")
    return float(v)


def parse_score(text: str) -> float:
    """The paraphrased prompt's rule: the last ``[[n]]`` of the reply, 1-10."""
    return parse_number(text, 1, 10)


def aggregate(turn_scores: dict[str, dict[int, float]], dialogues: list[Dialogue], rejects: Rejects
              ) -> tuple[dict, dict[str, float | None]]:
    """OpenCompass's aggregation: dialogue = min over its judged turns; task = mean over its dialogues;
    overall = mean over tasks. A dialogue with some turns unjudged keeps the minimum of the others (counted
    ``mtbench101_turn_missing``); one with none is a failed item. Returns (metrics, {dialogue: score})."""
    per_dialogue: dict[str, float | None] = {}
    by_task: dict[str, list[float]] = {}
    for d in dialogues:
        scores = turn_scores.get(d.key, {})
        if len(scores) < len(d.scored_turns()):
            rejects.add("mtbench101_turn_missing", d.key, f"{len(scores)}/{len(d.scored_turns())} turns rated")
        per_dialogue[d.key] = min(scores.values()) if scores else None
        if scores:
            by_task.setdefault(d.task, []).append(min(scores.values()))
    if not by_task:
        raise FitrainError(f"MT-Bench-101: no dialogue could be scored ({rejects.summary()})")
    metrics = {f"mtbench101/task/{t}": statistics.fmean(v) for t, v in sorted(by_task.items())}
    metrics["mtbench101/overall"] = statistics.fmean(metrics[f"mtbench101/task/{t}"] for t in by_task)
    metrics["mtbench101/n_tasks"] = len(by_task)
    metrics["mtbench101/n_dialogues"] = sum(len(v) for v in by_task.values())
    metrics["mtbench101/n_failed"] = sum(v is None for v in per_dialogue.values())
    return metrics, per_dialogue


def paired_item_scores(turn_scores: dict[str, dict[int, float]], dialogues: list[Dialogue]
                       ) -> tuple[dict[str, float | None], dict[str, str]]:
    """Per-dialogue scores for the report's paired statistics: the minimum over **all** judged turns, and a
    dialogue with any turn unrated a failed item (None, with its reason). The benchmark's own score keeps the
    minimum over the turns rated (:func:`aggregate`), but in a paired comparison that would set one arm's
    minimum over turns {1, 2} against another's over {1, 2, 3}; as a failure, the same-items rule
    (fitrain_eval.comparisons) leaves the dialogue out for every arm and counts it."""
    scores: dict[str, float | None] = {}
    failures: dict[str, str] = {}
    for d in dialogues:
        got = turn_scores.get(d.key, {})
        missing = [t for t in d.scored_turns() if t not in got]
        scores[d.key] = None if missing else min(got.values())
        if not got:
            failures[d.key] = "no turn rated"
        elif missing:
            failures[d.key] = "a turn not rated"
    return scores, failures


def evaluate_mtbench101(cfg: MTBench101Config, generator, judge: Judge, out_dir: str | Path, rejects: Rejects
                        ) -> dict:
    from fitrain_eval.generate import save_generations
    from fitrain_eval.items import ItemScores
    from fitrain_eval.judges.common import save_records

    dialogues = load(cfg.path, rejects, cfg.limit_per_task, cfg.tasks)
    turns = [(d, t) for d in dialogues for t in d.scored_turns()]
    gens = generator.generate([(f"{d.key}#{t}", d.turn_messages(t)) for d, t in turns], rejects,
                              what="mtbench101_generation")
    out = Path(out_dir) / "mtbench101"
    save_generations(out / "generations.jsonl", gens, {"model": generator.model, "decoding": generator.decoding()})
    turn_scores: dict[str, dict[int, float]] = {}
    records: list[dict] = []
    todo = []
    for (d, t), g in zip(turns, gens):
        if g.output is None:
            continue  # counted by the generator
        if not g.output:
            turn_scores.setdefault(d.key, {})[t] = 1.0  # the lowest rating: an empty answer fails the turn
            records.append({"id": f"{d.key}#{t}", "task": d.task, "turn": t, "answer": "", "score": 1.0,
                            "judgment": "empty answer"})
            continue
        todo.append((d, t, g.output))
    version = official.MTBENCH101_VERSION if cfg.prompts == "official" else paraphrased.MTBENCH101_VERSION
    parse = parse_rating if cfg.prompts == "official" else parse_score
    results = judge.judge([judge_request(d, t, a, cfg.prompts) for d, t, a in todo], parse, rejects, version,
                          what="mtbench101_judge")
    for (d, t, a), r in zip(todo, results):
        if r.value is None:
            continue
        turn_scores.setdefault(d.key, {})[t] = float(r.value)
        records.append({"id": f"{d.key}#{t}", "task": d.task, "turn": t, "answer": a, "score": float(r.value),
                        **r.raw})
    save_records(out / "judgments.jsonl", records)
    metrics, _ = aggregate(turn_scores, dialogues, rejects)
    per_dialogue, failures = paired_item_scores(turn_scores, dialogues)
    ItemScores("mtbench101/overall", per_dialogue, failures,
               strata={d.key: d.task for d in dialogues},
               info={"benchmark": "mtbench101", "judge_model": judge.model, "rules": cfg.prompts,
                     "prompt_version": version, "aggregation": "min over judged turns; mean per task; mean of tasks",
                     "item_rule": "a dialogue with any turn unrated is a failed item",
                     "judge_decoding": judge.decoding(), "generation": generator.decoding()}).save(out_dir)
    return metrics
