"""Head-to-head (AlpacaEval style) between two models on an instruction set.

For every instruction the judge sees both answers twice, once in each order, so position bias cancels.
Each judgment gives our model 1 (win), 0.5 (tie) or 0 (loss); an instruction's score is the mean of its
two judgments. ``win_rate`` is the mean instruction score and ``win_rate_se`` its standard error
(sample standard deviation / sqrt(n)). ``wins``/``ties``/``losses`` count judgments; ``inconsistent``
counts instructions whose two orders disagree. An instruction with a failed or unparsable judgment is
left out and counted.

Outputs use AlpacaEval's ``model_outputs.json`` layout: a JSON list of ``{instruction, output, generator,
dataset}`` in the order of the instruction set.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from fitrain.core.accounting import Rejects
from fitrain.core.errors import FitrainError
from fitrain.core.llm import Request
from fitrain_eval.judges.common import Judge, bracketed, load_benchmark_json

PROMPT_VERSION = "pairwise-v1"
OUTPUTS_FILE = "model_outputs.json"


@dataclass
class PairwiseConfig:
    enabled: bool = False
    instructions: str = "../shared/data/alpaca_eval/example_outputs.json"  # AlpacaEval list (its outputs ignored)
    limit: int = 0                  # first N instructions; 0 = all
    baseline_outputs: str = ""      # model_outputs.json of the other model, or its eval dir ('' = generate only)
    baseline_name: str = ""         # '' = the 'generator' field of the baseline outputs


def load_outputs(path: str | Path, need_output: bool = True) -> list[dict]:
    """An AlpacaEval list file: ``[{instruction, output, generator, dataset}, ...]``."""
    p = Path(path)
    if p.is_dir():
        p = p / "alpaca_eval" / OUTPUTS_FILE
    data = load_benchmark_json(p, "AlpacaEval", list, "a JSON list of {instruction, output, ...}")
    for i, rec in enumerate(data):
        if not isinstance(rec, dict) or not isinstance(rec.get("instruction"), str):
            raise FitrainError(f"{p}: entry {i} has no string 'instruction'")
        if need_output and not isinstance(rec.get("output"), (str, type(None))):
            raise FitrainError(f"{p}: entry {i} has a non-string 'output'")
    if not data:
        raise FitrainError(f"{p}: empty instruction set")
    return data


def write_outputs(path: str | Path, instructions: list[dict], outputs: list[str | None], generator: str) -> None:
    from fitrain.core.io import write_json

    write_json(path, [{"instruction": r["instruction"], "output": o, "generator": generator,
                       "dataset": r.get("dataset", "")} for r, o in zip(instructions, outputs)])


def judge_request(instruction: str, first: str, second: str, id_: str) -> Request:
    text = (
        "You compare two assistant answers to the same user instruction and decide which one is better: "
        "more helpful, correct and relevant, following the instruction. Ignore length unless it affects "
        "quality, and ignore the order in which the answers appear.\n\n"
        f"Instruction:\n{instruction}\n\n[Answer A]\n{first}\n[End of answer A]\n\n"
        f"[Answer B]\n{second}\n[End of answer B]\n\n"
        "Reply with a short reason, then the verdict in double brackets: [[A]], [[B]] or [[tie]].")
    return Request(messages=[{"role": "user", "content": text}], task=PROMPT_VERSION, meta={"id": id_})


def parse_verdict(text: str) -> str:
    v = bracketed(text).strip().strip(".").lower()
    if v in ("a", "b", "tie"):
        return v
    raise ValueError(f"verdict [[{v}]] is not A, B or tie")


def _points(verdict: str, ours: str) -> float:
    return 0.5 if verdict == "tie" else (1.0 if verdict == ours else 0.0)


def head_to_head(instructions: list[str], ours: list[str | None], theirs: list[str | None], judge: Judge,
                 rejects: Rejects, baseline: str) -> tuple[dict, list[dict]]:
    """Judge ours vs theirs in both orders. Returns (metrics under ``pairwise/<baseline>/``, records)."""
    if not (len(instructions) == len(ours) == len(theirs)):
        raise FitrainError(f"pairwise: {len(instructions)} instructions but {len(ours)} and {len(theirs)} outputs")
    idx = []
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if a is None or b is None:
            rejects.add("pairwise_missing_output", str(i), "ours" if a is None else "baseline")
            continue
        idx.append(i)
    reqs = []
    for i in idx:  # order 1: ours is A; order 2: ours is B
        reqs.append(judge_request(instructions[i], ours[i], theirs[i], f"{i}:ours_first"))
        reqs.append(judge_request(instructions[i], theirs[i], ours[i], f"{i}:ours_second"))
    res = judge.judge(reqs, parse_verdict, rejects, PROMPT_VERSION, what="pairwise_judge")
    scores: list[float] = []
    wins = ties = losses = inconsistent = 0
    records = []
    for k, i in enumerate(idx):
        r1, r2 = res[2 * k], res[2 * k + 1]
        if r1.value is None or r2.value is None:
            rejects.add("pairwise_unjudged_instruction", str(i))
            continue
        p1, p2 = _points(r1.value, "a"), _points(r2.value, "b")
        for p in (p1, p2):
            wins, ties, losses = wins + (p == 1.0), ties + (p == 0.5), losses + (p == 0.0)
        inconsistent += p1 != p2
        scores.append((p1 + p2) / 2)
        records.append({"index": i, "instruction": instructions[i], "ours": ours[i], "baseline": theirs[i],
                        "verdict_ours_first": r1.value, "verdict_ours_second": r2.value, "score": scores[-1],
                        **r1.raw})
    if not scores:
        raise FitrainError(f"pairwise vs {baseline}: no instruction could be judged ({rejects.summary()})")
    n = len(scores)
    se = statistics.stdev(scores) / math.sqrt(n) if n > 1 else float("nan")
    pre = f"pairwise/{baseline}"
    metrics = {f"{pre}/win_rate": statistics.fmean(scores), f"{pre}/win_rate_se": se, f"{pre}/wins": wins,
               f"{pre}/ties": ties, f"{pre}/losses": losses, f"{pre}/inconsistent": inconsistent, f"{pre}/n": n}
    return metrics, records


def evaluate_pairwise(cfg: PairwiseConfig, generator, judge: Judge | None, out_dir: str | Path, rejects: Rejects,
                      name: str) -> dict:
    """Generate this model's outputs on the instruction set (AlpacaEval layout); with a baseline, judge."""
    from fitrain_eval.generate import save_generations
    from fitrain_eval.judges.common import save_records

    insts = load_outputs(cfg.instructions, need_output=False)
    insts = insts[:cfg.limit] if cfg.limit else insts
    gens = generator.generate([(str(i), [{"role": "user", "content": r["instruction"]}])
                               for i, r in enumerate(insts)], rejects, what="alpaca_generation")
    out = Path(out_dir) / "alpaca_eval"
    save_generations(out / "generations.jsonl", gens, {"model": generator.model, "decoding": generator.decoding()})
    write_outputs(out / OUTPUTS_FILE, insts, [g.output for g in gens], name)
    if not cfg.baseline_outputs:
        return {}
    if judge is None:
        raise FitrainError("pairwise.baseline_outputs is set but no judge is configured (judge.llm.model)")
    base = load_outputs(cfg.baseline_outputs)
    by_inst = {r["instruction"]: r.get("output") for r in base}
    missing = [r["instruction"][:60] for r in insts if r["instruction"] not in by_inst]
    if missing:
        raise FitrainError(f"baseline outputs {cfg.baseline_outputs} lack {len(missing)} of the instructions, "
                           f"e.g. {missing[0]!r}; generate them on the same instruction set")
    bname = cfg.baseline_name or str(base[0].get("generator") or "baseline")
    metrics, records = head_to_head([r["instruction"] for r in insts], [g.output for g in gens],
                                    [by_inst[r["instruction"]] for r in insts], judge, rejects, bname)
    save_records(out / f"pairwise_vs_{bname.replace('/', '_')}.jsonl", records)
    return metrics
