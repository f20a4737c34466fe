"""Head-to-head (AlpacaEval 2) between the evaluated model and one or more baselines on an instruction set.

**Official rules** (``prompts=official``, the default): AlpacaEval 2's default annotator
``weighted_alpaca_eval_gpt4_turbo`` (prompt and config in ``prompts/alpaca_eval``, read verbatim):

* ``output_1`` is the baseline, ``output_2`` the evaluated model; per instruction the two are swapped or not
  by AlpacaEval's seeded coin, ``random.Random("is_switched_outputs" + instruction + str(seed))`` choosing
  from ``[False, True]`` (``seed`` 0 as the annotator's), and judged in that **single order**;
* the placeholders ``{instruction}``, ``{output_1}``, ``{output_2}`` are filled by first-occurrence
  ``str.replace`` and the ``<|im_start|>`` blocks become the system and user messages; one output token;
* the preference is **probability-weighted**: from the top-5 log-probabilities of that token,
  ``p(m) / (p(m) + p(M))`` (``m`` = output_1 better) gives ``preference = 2 - p(m)`` in [1, 2]; a swapped
  row is mapped back (``3 - x``); identical outputs are 1.5 without a call. **Fallback without
  log-probabilities** (servers that send none, e.g. ``transformers serve``): the reply token itself decides
  (``m`` -> 1, ``M`` -> 2), a hard preference instead of a weighted one; each record says how it was read
  (``read_from``), the metric ``pairwise/<baseline>/preference_from_token`` counts such instructions in
  results.json, and the ``rules`` of the head-to-head (results and the report's table) read
  ``official (preference from the reply token: no logprobs)``; a reply that is neither token is asked again,
  then counted unparsable (never scored 0.5);
* the win rate is the mean of ``preference - 1`` over the judged instructions (the model's probability of
  being preferred; AlpacaEval reports it x100), its standard error the standard error of that mean, and the
  **length-controlled win rate** (fitrain_eval.judges.lc_winrate) the headline figure of AlpacaEval 2.

Departures, and why: the judge runs at the configured temperature (default 0) where AlpacaEval sets 1 (its
preference comes from the log-probabilities either way; greedy makes the token fallback the judge's most
likely reply); an unparsable reply is asked again, then counted and its instruction left out for every arm.

``prompts=paraphrased``: fitrain's earlier judge (both orders, explicit ties, ``[[A]]``/``[[B]]``/``[[tie]]``;
an instruction's score the mean of its two judgments, ``inconsistent`` counting disagreeing orders).

Metric names ``pairwise/<baseline>/{win_rate, win_rate_se, wins, ties, losses, n, n_failed, lc_win_rate,
lc_standard_error}`` (rates in [0, 1]); per-item scores ``pairwise/<baseline>/win_rate`` (null 0.5).
Outputs use AlpacaEval's ``model_outputs.json`` layout: a JSON list of ``{instruction, output, generator,
dataset}`` in the order of the instruction set.
"""
from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from fitrain.core.accounting import Rejects
from fitrain.core.checks import NON_NEGATIVE, SEED, check_fields, one_of
from fitrain.core.errors import FitrainError
from fitrain.core.llm import Completion, Request
from fitrain_eval.judges import official, paraphrased
from fitrain_eval.judges.common import Judge, bracketed, load_benchmark_json, require_data

OUTPUTS_FILE = "model_outputs.json"
PROMPT_SETS = ("official", "paraphrased")
PROMPT_VERSION = paraphrased.PAIRWISE_VERSION  # the paraphrased judge's version (kept name)


@dataclass
class LCConfig:
    enabled: bool = True
    glm: str = "auto"                  # auto | length_controlled_v1 | length_controlled_noreg | length_controlled_minimal
    instruction_difficulty: str = ""   # AlpacaEval's instruction_difficulty.csv (hub: tatsu-lab/alpaca_eval)
    gamed: str = ""                    # AlpacaEval's df_gamed.csv (for length_controlled_v1)

    def __post_init__(self) -> None:
        from fitrain_eval.judges.lc_winrate import GLMS

        check_fields(self, glm=one_of("auto", *GLMS))


@dataclass
class PairwiseConfig:
    enabled: bool = False
    instructions: str = "official"  # AlpacaEval list (its outputs ignored); official: fetched and verified | a file
    limit: int = 0                  # first N instructions; 0 = all
    baseline_outputs: str = ""      # one baseline: model_outputs.json or its eval dir ('' = none)
    baselines: list[str] = field(default_factory=list)  # several baselines (eval dirs or files), each judged
    baseline_name: str = ""         # '' = the 'generator' field of the baseline outputs (one baseline only)
    # this model's outputs, already generated (its eval dir or a model_outputs.json): judged as they are, not
    # generated again ('' = generate them); an experiment's head-to-head steps judge the eval step's outputs
    model_outputs: str = ""
    prompts: str = "official"       # official (AlpacaEval 2 annotator) | paraphrased

    seed: int = 0                   # AlpacaEval's annotator seed for the order of the two outputs
    logprobs: int = 5               # top log-probabilities asked for (0: use the reply token only)
    lc: LCConfig = field(default_factory=LCConfig)

    def __post_init__(self) -> None:
        check_fields(self, limit=NON_NEGATIVE, prompts=one_of(*PROMPT_SETS), seed=SEED, logprobs=NON_NEGATIVE)


def baseline_paths(cfg: PairwiseConfig) -> list[str]:
    return list(dict.fromkeys(([cfg.baseline_outputs] if cfg.baseline_outputs else []) + list(cfg.baselines)))


SOURCE = "github.com/tatsu-lab/alpaca_eval (example/outputs.json: the 805 AlpacaEval instructions)"


def check_data(cfg: PairwiseConfig) -> None:
    """The instruction set, each baseline's outputs and the LC files given are there (else a one-line error
    naming the setting)."""
    require_data(cfg.instructions, "AlpacaEval", "pairwise.instructions", SOURCE)
    if cfg.model_outputs:
        p = Path(cfg.model_outputs)
        require_data(p / "alpaca_eval" / OUTPUTS_FILE if p.is_dir() else p, "AlpacaEval model outputs",
                     "pairwise.model_outputs", f"this model's eval directory (its alpaca_eval/{OUTPUTS_FILE})")
    for b in baseline_paths(cfg):
        p = Path(b) / "alpaca_eval" / OUTPUTS_FILE if Path(b).is_dir() else Path(b)
        require_data(p, "AlpacaEval baseline", "pairwise.baselines / pairwise.baseline_outputs",
                     f"the baseline arm's eval directory (its alpaca_eval/{OUTPUTS_FILE}) or an AlpacaEval outputs file")
    for setting, path in (("instruction_difficulty", cfg.lc.instruction_difficulty), ("gamed", cfg.lc.gamed)):
        if path:
            require_data(path, "AlpacaEval LC", f"pairwise.lc.{setting}", "the Hugging Face hub: tatsu-lab/alpaca_eval")


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


def _outputs_for(insts: list[dict], outputs: list[dict], what: str) -> list[str | None]:
    """The ``output`` of each instruction of ``insts`` in an AlpacaEval outputs list (all must be there)."""
    by_inst = {r["instruction"]: r.get("output") for r in outputs}
    missing = [r["instruction"][:60] for r in insts if r["instruction"] not in by_inst]
    if missing:
        raise FitrainError(f"{what} lack {len(missing)} of the instructions, e.g. {missing[0]!r}; generate them "
                           "on the same instruction set")
    return [by_inst[r["instruction"]] for r in insts]


def write_outputs(path: str | Path, instructions: list[dict], outputs: list[str | None], generator: str) -> None:
    from fitrain.core.io import write_json

    write_json(path, [{"instruction": r["instruction"], "output": o, "generator": generator,
                       "dataset": r.get("dataset", "")} for r, o in zip(instructions, outputs)])


# ------------------------------------------------------------------------------------------ official
def switched(instruction: str, seed: int = 0) -> bool:
    """AlpacaEval's seeded coin: are output_1 (baseline) and output_2 (model) swapped for this instruction?"""
    return random.Random("is_switched_outputs" + instruction + str(seed)).choices([False, True], k=1)[0]


def official_request(instruction: str, output_1: str, output_2: str, id_: str, logprobs: int = 5) -> Request:
    prompt = official.fill_first(official.alpaca_eval_template(),
                                 [("instruction", instruction), ("output_1", output_1), ("output_2", output_2)])
    max_tokens = official.alpaca_eval_annotator()["completions_kwargs"]["max_tokens"]
    return Request(messages=official.chatml_messages(prompt), task=official.ALPACA_EVAL_VERSION,
                   max_new_tokens=max_tokens, logprobs=logprobs, meta={"id": id_})


def parse_preference(c: Completion) -> tuple[float, str]:
    """(preference in [1, 2] for output_1 vs output_2, how it was read: ``logprobs`` | ``token``)."""
    kw = official.alpaca_eval_annotator()["completion_parser_kwargs"]
    num, den = kw["numerator_token"], kw["denominator_tokens"]
    top = c.logprobs[0] if c.logprobs else {}
    found = {t: lp for t, lp in top.items() if t in den}
    if found:
        m = max(found.values())
        log_den = m + math.log(sum(math.exp(v - m) for v in found.values()))
        p_num = math.exp(found[num] - log_den) if num in found else 0.0
        return 2.0 - p_num, "logprobs"
    tok = (c.text or "").strip()
    if tok in den:
        return (1.0 if tok == num else 2.0), "token"
    raise ValueError(f"reply {tok[:20]!r} is neither of {den}")


def _official(instructions, ours, theirs, idx, judge: Judge, rejects: Rejects, cfg: PairwiseConfig):
    """{index: (score for ours, record)} for the judged instructions."""
    out: dict[int, tuple[float, dict]] = {}
    todo, reqs = [], []
    for i in idx:
        if ours[i] == theirs[i]:
            out[i] = (0.5, {"preference": 1.5, "read_from": "identical outputs"})
            continue
        sw = switched(instructions[i], cfg.seed)
        o1, o2 = (ours[i], theirs[i]) if sw else (theirs[i], ours[i])
        todo.append((i, sw))
        reqs.append(official_request(instructions[i], o1, o2, str(i), cfg.logprobs))
    res = judge.judge(reqs, parse_preference, rejects, official.ALPACA_EVAL_VERSION, what="pairwise_judge",
                      parse_completion=True)
    for (i, sw), r in zip(todo, res):
        if r.value is None:
            continue
        pref, how = r.value
        pref = 3.0 - pref if sw else pref
        out[i] = (pref - 1.0, {"preference": pref, "switched": sw, "read_from": how, **r.raw})
    return out


# ------------------------------------------------------------------------------------------ paraphrased
def parse_verdict(text: str) -> str:
    v = bracketed(text).strip().strip(".").lower()
    if v in ("a", "b", "tie"):
        return v
    raise ValueError(f"verdict [[{v}]] is not A, B or tie")


def _points(verdict: str, ours: str) -> float:
    return 0.5 if verdict == "tie" else (1.0 if verdict == ours else 0.0)


def _paraphrased(instructions, ours, theirs, idx, judge: Judge, rejects: Rejects, cfg: PairwiseConfig):
    reqs = []
    for i in idx:  # order 1: ours is A; order 2: ours is B
        reqs.append(paraphrased.pairwise_request(instructions[i], ours[i], theirs[i], f"{i}:ours_first"))
        reqs.append(paraphrased.pairwise_request(instructions[i], theirs[i], ours[i], f"{i}:ours_second"))
    res = judge.judge(reqs, parse_verdict, rejects, PROMPT_VERSION, what="pairwise_judge")
    out: dict[int, tuple[float, dict]] = {}
    for k, i in enumerate(idx):
        r1, r2 = res[2 * k], res[2 * k + 1]
        if r1.value is None or r2.value is None:
            continue
        p1, p2 = _points(r1.value, "a"), _points(r2.value, "b")
        out[i] = ((p1 + p2) / 2, {"verdict_ours_first": r1.value, "verdict_ours_second": r2.value,
                                  "judgments": [p1, p2], **r1.raw})
    return out


# ------------------------------------------------------------------------------------------ head to head
def head_to_head(instructions: list[str], ours: list[str | None], theirs: list[str | None], judge: Judge,
                 rejects: Rejects, baseline: str, cfg: PairwiseConfig | None = None
                 ) -> tuple[dict, list[dict], dict[str, float | None]]:
    """Judge ours vs theirs. Returns (metrics under ``pairwise/<baseline>/``, records, per-item scores)."""
    cfg = cfg or PairwiseConfig()
    if not (len(instructions) == len(ours) == len(theirs)):
        raise FitrainError(f"pairwise: {len(instructions)} instructions but {len(ours)} and {len(theirs)} outputs")
    idx = []
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if a is None or b is None:
            rejects.add("pairwise_missing_output", str(i), "ours" if a is None else "baseline")
        else:
            idx.append(i)
    judged = (_official if cfg.prompts == "official" else _paraphrased)(instructions, ours, theirs, idx, judge,
                                                                        rejects, cfg)
    for i in idx:
        if i not in judged:
            rejects.add("pairwise_unjudged_instruction", str(i))
    if not judged:
        raise FitrainError(f"pairwise vs {baseline}: no instruction could be judged ({rejects.summary()})")
    order = sorted(judged)
    scores = [judged[i][0] for i in order]
    records = [{"index": i, "instruction": instructions[i], "ours": ours[i], "baseline": theirs[i],
                "score": judged[i][0], **judged[i][1]} for i in order]
    n = len(scores)
    pre = f"pairwise/{baseline}"
    metrics = {f"{pre}/win_rate": statistics.fmean(scores),
               f"{pre}/win_rate_se": statistics.stdev(scores) / math.sqrt(n) if n > 1 else 0.0,
               f"{pre}/wins": sum(s > 0.5 for s in scores), f"{pre}/ties": sum(s == 0.5 for s in scores),
               f"{pre}/losses": sum(s < 0.5 for s in scores), f"{pre}/n": n,
               f"{pre}/n_failed": len(instructions) - n}
    if cfg.prompts == "official":  # the documented fallback where the server sent no log-probabilities
        metrics[f"{pre}/preference_from_token"] = sum(judged[i][1].get("read_from") == "token" for i in order)
    if cfg.prompts == "paraphrased":  # wins / ties / losses count judgments (two per instruction)
        js = [j for r in records for j in r["judgments"]]
        metrics.update({f"{pre}/wins": js.count(1.0), f"{pre}/ties": js.count(0.5), f"{pre}/losses": js.count(0.0),
                        f"{pre}/inconsistent": sum(r["judgments"][0] != r["judgments"][1] for r in records)})
    lc = _lc(cfg, order, [judged[i][0] + 1.0 for i in order], [theirs[i] for i in order], [ours[i] for i in order])
    if lc:
        metrics[f"{pre}/lc_win_rate"] = lc["lc_win_rate"]
        if lc["lc_standard_error"] is not None:
            metrics[f"{pre}/lc_standard_error"] = lc["lc_standard_error"]
        for r, p in zip(records, lc["per_instruction"]):
            r["lc_preference"] = p
    per_item = {str(i): (judged[i][0] if i in judged else None) for i in range(len(instructions))}
    return metrics, records, per_item


TOKEN_FALLBACK = "preference from the reply token: no logprobs"


def rules_name(cfg: PairwiseConfig, metrics: dict, baseline: str) -> str:
    """The rules as results and the report name them, the no-logprobs fallback included (module docstring)."""
    n_token = metrics.get(f"pairwise/{baseline}/preference_from_token", 0)
    if not n_token:
        return cfg.prompts
    import sys

    print(f"fitrain eval: warning: the judge sent no log-probabilities for {n_token} of "
          f"{metrics[f'pairwise/{baseline}/n']} head-to-head judgments vs {baseline}; their AlpacaEval preference "
          "is read from the reply token (1 or 2), not weighted", file=sys.stderr, flush=True)
    return f"{cfg.prompts} ({TOKEN_FALLBACK})"


def _lc(cfg: PairwiseConfig, index, preference, base_out, our_out) -> dict | None:
    from fitrain_eval.judges import lc_winrate

    if not cfg.lc.enabled or len(index) < lc_winrate.MIN_INSTRUCTIONS:
        return None
    glm = lc_winrate.choose_glm(cfg.lc.glm, cfg.lc.instruction_difficulty, cfg.lc.gamed)
    diff = lc_winrate.read_difficulty(cfg.lc.instruction_difficulty) if glm != "length_controlled_minimal" else None
    gamed = lc_winrate.read_gamed(cfg.lc.gamed) if glm == "length_controlled_v1" else None
    return lc_winrate.length_controlled(preference, [len(x) for x in base_out], [len(x) for x in our_out], index,
                                        glm, diff, gamed)


def evaluate_pairwise(cfg: PairwiseConfig, generator, judge: Judge | None, out_dir: str | Path, rejects: Rejects,
                      name: str) -> dict:
    """Generate this model's outputs on the instruction set (AlpacaEval layout); judge them against every
    baseline in ``baseline_outputs`` + ``baselines``."""
    from fitrain_eval.generate import save_generations
    from fitrain_eval.items import ItemScores
    from fitrain_eval.judges.common import save_records

    insts = load_outputs(cfg.instructions, need_output=False)
    insts = insts[:cfg.limit] if cfg.limit else insts
    out = Path(out_dir) / "alpaca_eval"
    if cfg.model_outputs:  # judged as generated before (the same answers the eval step scored and saved)
        ours = _outputs_for(insts, load_outputs(cfg.model_outputs), cfg.model_outputs)
    else:
        gens = generator.generate([(str(i), [{"role": "user", "content": r["instruction"]}])
                                   for i, r in enumerate(insts)], rejects, what="alpaca_generation")
        save_generations(out / "generations.jsonl", gens, {"model": generator.model, "decoding": generator.decoding()})
        ours = [g.output for g in gens]
    write_outputs(out / OUTPUTS_FILE, insts, ours, name)
    paths = baseline_paths(cfg)
    if not paths:
        return {}
    if judge is None:
        raise FitrainError("pairwise baselines are set but no judge is configured (judge.llm.model)")
    if cfg.baseline_name and len(paths) > 1:
        raise FitrainError("pairwise.baseline_name names one baseline; with several, each is named by its outputs")
    metrics: dict = {}
    for path in paths:
        base = load_outputs(path)
        bname = cfg.baseline_name or str(base[0].get("generator") or "baseline")
        m, records, per_item = head_to_head([r["instruction"] for r in insts], ours,
                                            _outputs_for(insts, base, f"baseline outputs {path}"), judge, rejects,
                                            bname, cfg)
        save_records(out / f"pairwise_vs_{bname.replace('/', '_')}.jsonl", records)
        lc_glm = None
        if f"pairwise/{bname}/lc_win_rate" in m:
            from fitrain_eval.judges.lc_winrate import choose_glm

            lc_glm = choose_glm(cfg.lc.glm, cfg.lc.instruction_difficulty, cfg.lc.gamed)
        ItemScores(f"pairwise/{bname}/win_rate", per_item,
                   {k: "output or judgment failed" for k, v in per_item.items() if v is None}, null=0.5,
                   info={"benchmark": "alpaca_eval", "model": name, "baseline": bname, "baseline_outputs": str(path),
                         "judge_model": judge.model, "rules": rules_name(cfg, m, bname), "lc_glm": lc_glm,
                         "prompt_version": official.ALPACA_EVAL_VERSION if cfg.prompts == "official" else PROMPT_VERSION,
                         "judge_decoding": judge.decoding(), "generation": generator.decoding()}).save(out_dir)
        metrics.update(m)
    return metrics
