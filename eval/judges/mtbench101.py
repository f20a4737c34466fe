"""MT-Bench-101: each user turn of a dialogue is answered by the model with the gold history before it,
then scored 1-10 by the judge with the task's rubric. A dialogue's score is its lowest turn score; a
task's score is the mean over its dialogues; the overall score is the mean over the tasks (13 in the
full benchmark). Metric names: ``mtbench101/overall``, ``mtbench101/task/<CODE>``.

File: JSON lines ``{"task": "GR", "id": 1, "history": [{"user": ..., "bot": ...}, ...]}`` (``bot`` turns
are the gold context the benchmark feeds to the model).
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from fitrain.core.accounting import Rejects
from fitrain.core.errors import FitrainError
from fitrain.core.llm import Request
from fitrain_eval.judges.common import Judge, parse_number

PROMPT_VERSION = "mtbench101-turn-v2"

# One line per task: what a good answer to the current turn does (our wording of the task definitions).
RUBRICS = {
    "AR": "Anaphora resolution: the answer resolves pronouns and references to earlier turns correctly.",
    "IC": "Instruction clarification: for an ambiguous request the answer asks a useful clarifying question; "
          "once clarified it answers correctly.",
    "SI": "Separate input: the answer follows the task instruction given in an earlier turn and applies it "
          "to the new input.",
    "CC": "Content confusion: the answer notices that the question differs from a similar earlier one and "
          "answers the question actually asked.",
    "CR": "Content rephrasing: the answer rewrites the given content as requested while keeping its meaning.",
    "MR": "Mathematical reasoning: the reasoning and the final result are correct, using facts from earlier "
          "turns where needed.",
    "PI": "Proactive interaction: the answer engages the user, responds to their feelings or statements and "
          "keeps the conversation going naturally.",
    "TS": "Topic shift: the answer follows the user's switch to a new topic and does not cling to the old one.",
    "CM": "Context memory: the answer correctly recalls and uses information given earlier in the dialogue.",
    "SC": "Self-correction: when the user rightly points out an error, the answer corrects it properly.",
    "FR": "Format rephrasing: the answer restructures the content into the requested format.",
    "SA": "Self-affirmation: when the user wrongly challenges a correct answer, the answer keeps the correct "
          "position politely.",
    "GR": "General reasoning: the answer's reasoning is sound and its conclusion correct given all turns.",
}
TASKS = tuple(sorted(RUBRICS))
# the benchmark's ``skip_first_tasks``: their first turn only sets up the context (gold answer fed as
# history); it is neither generated nor judged
SKIP_FIRST_TASKS = ("FR", "CR", "AR", "SA", "SC", "CM")
# as in the benchmark's judge prompts, only the reasoning tasks show the judge the gold answer; for the others
# (e.g. self-correction, instruction clarification) a gold reply would steer the judge toward one wording
REFERENCE_TASKS = ("MR", "GR")


@dataclass
class MTBench101Config:
    enabled: bool = False
    path: str = "../shared/data/mt_bench_101/mtbench101.jsonl"
    limit_per_task: int = 0     # first N dialogues of each task; 0 = all
    tasks: list[str] | None = None  # None = all 13


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


def load(path: str | Path, rejects: Rejects, limit_per_task: int = 0, tasks: list[str] | None = None
         ) -> list[Dialogue]:
    p = Path(path)
    if not p.is_file():
        raise FitrainError(f"MT-Bench-101 file not found: {p}")
    if tasks:
        unknown = [t for t in tasks if t not in RUBRICS]
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
    if rec.get("task") not in RUBRICS:
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


def judge_request(d: Dialogue, t: int, answer: str) -> Request:
    ctx = "\n".join(f"User: {h['user']}\nAssistant: {h['bot']}" for h in d.history[:t]) or "(none)"
    text = (
        "You evaluate one assistant turn of a multi-turn dialogue.\n"
        f"Task {d.task}. {RUBRICS[d.task]}\n\n"
        f"Earlier dialogue:\n{ctx}\n\nCurrent user turn:\n{d.history[t]['user']}\n\n"
        + (f"Reference answer (for guidance):\n{d.history[t]['bot']}\n\n" if d.task in REFERENCE_TASKS else "")
        + f"Assistant's answer to evaluate:\n{answer}\n\n"
        "Score the assistant's answer from 1 (fails the task) to 10 (excellent). Reply with a short reason, "
        "then the score in double brackets, e.g. [[6]].")
    return Request(messages=[{"role": "user", "content": text}], task=PROMPT_VERSION,
                   meta={"id": f"{d.key}#{t}"})


def parse_score(text: str) -> float:
    return parse_number(text, 1, 10)


def aggregate(turn_scores: dict[str, dict[int, float]], dialogues: list[Dialogue], rejects: Rejects
              ) -> dict:
    """Dialogue = min over its turns (a dialogue missing a turn score is left out and counted);
    task = mean over dialogues; overall = mean over tasks."""
    by_task: dict[str, list[float]] = {}
    for d in dialogues:
        scores = turn_scores.get(d.key, {})
        if len(scores) != len(d.scored_turns()):
            rejects.add("mtbench101_incomplete_dialogue", d.key,
                        f"{len(scores)}/{len(d.scored_turns())} turns scored")
            continue
        by_task.setdefault(d.task, []).append(min(scores.values()))
    if not by_task:
        raise FitrainError(f"MT-Bench-101: no dialogue could be scored ({rejects.summary()})")
    metrics = {f"mtbench101/task/{t}": statistics.fmean(v) for t, v in sorted(by_task.items())}
    metrics["mtbench101/overall"] = statistics.fmean(metrics[f"mtbench101/task/{t}"] for t in by_task)
    metrics["mtbench101/n_tasks"] = len(by_task)
    metrics["mtbench101/n_dialogues"] = sum(len(v) for v in by_task.values())
    return metrics


def evaluate_mtbench101(cfg: MTBench101Config, generator, judge: Judge, out_dir: str | Path, rejects: Rejects
                        ) -> dict:
    from fitrain_eval.generate import save_generations
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
            turn_scores.setdefault(d.key, {})[t] = 1.0  # the lowest score: an empty answer fails the turn
            records.append({"id": f"{d.key}#{t}", "task": d.task, "turn": t, "answer": "", "score": 1.0,
                            "judgment": None})
            continue
        todo.append((d, t, g.output))
    results = judge.judge([judge_request(d, t, a) for d, t, a in todo], parse_score, rejects, PROMPT_VERSION,
                          what="mtbench101_judge")
    for (d, t, a), r in zip(todo, results):
        if r.value is None:
            continue
        turn_scores.setdefault(d.key, {})[t] = float(r.value)
        records.append({"id": f"{d.key}#{t}", "task": d.task, "turn": t, "answer": a, "score": float(r.value),
                        **r.raw})
    save_records(out / "judgments.jsonl", records)
    return aggregate(turn_scores, dialogues, rejects)
