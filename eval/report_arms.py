"""The report's "What each run trained on" section (README "Evaluation", Report): one line per run saying what its
arm trains on, its tokens trained and its passes over its own data, the final training loss as a token-weighted
mean of the last steps (fitrain_eval.report_verdict.final_loss, from ``metrics.csv``), and a warning when an
arm's held-out answer loss rose over the last part of its training. What an arm trains on is read from the
experiment's ``experiment.yaml`` (its ``arms:``; fitrain.pipeline.arms describes the kinds), else from the
prepared data's manifest."""
from __future__ import annotations

import json
from pathlib import Path

from fitrain_eval.report_data import Run
from fitrain_eval.report_verdict import final_loss, heldout_rise, prepared_tokens

KIND_TEXT = {
    "fi": "FineInstructions pairs from this experiment's data_gen (instruction → answer; loss on the answer tokens)",
    "documents": "standard pre-training on the source documents of {pairs_of}'s pairs (next-token loss on every token)",
    "corpus": "a corpus read from files ({paths})",
    "mixture": "a weighted mixture of {sources}",
    "generated": "a synthetic corpus ({method}) generated from this experiment's documents",
}


def _arm_specs(exp: Path) -> dict[str, dict]:
    """name -> arm spec from ``<exp>/experiment.yaml`` (shorthand strings expanded as fitrain.pipeline.arms)."""
    import yaml

    p = exp / "experiment.yaml"
    try:
        arms = (yaml.safe_load(p.read_text()) or {}).get("arms") or []
    except (OSError, yaml.YAMLError):
        return {}
    out = {}
    for a in arms:
        spec = {"fi": {"name": "fi", "kind": "fi"}, "standard": {"name": "standard", "kind": "documents"}}.get(a, a) \
            if isinstance(a, str) else a
        if isinstance(spec, dict) and spec.get("name"):
            out[spec["name"]] = spec
    return out


def trains_on(run: Run) -> str:
    """One phrase: what ``run``'s arm trains on."""
    arm = run.arm.rsplit("/", 1)[-1]
    exp = run.train_dir.parent.parent if run.train_dir is not None else None
    spec = _arm_specs(exp).get(arm) if exp is not None else None
    if spec:
        kind = spec.get("kind", "")
        first_fi = next((n for n, s in _arm_specs(exp).items() if s.get("kind") == "fi"), "the fi arm")
        text = KIND_TEXT.get(kind, kind).format(
            pairs_of=spec.get("pairs_of") or first_fi, paths=", ".join(map(str, spec.get("paths") or [])) or "–",
            sources=", ".join(str(s.get("arm") or s.get("paths")) if isinstance(s, dict) else str(s)
                              for s in spec.get("sources") or []) or "–", method=spec.get("method", "–"))
        if kind == "fi" and spec.get("min_judge_score") is not None:
            text += f", judge score ≥ {spec['min_judge_score']}"
        return text
    if exp is not None:
        try:
            m = json.loads((exp / "prepared" / arm / "manifest.json").read_text())
            return "instruction–answer pairs" if m.get("kind") == "pairs" else "documents"
        except (OSError, ValueError):
            pass
    return "–"


def arms_section(arms: dict[str, list[Run]]) -> tuple[list[str], list[list[str]], list[str]]:
    """(head, rows, warnings): a row per run; a warning per run whose held-out loss rose at the end."""
    head = ["run", "trains on", "tokens trained", "tokens of its data", "passes over its data",
            "final training loss (token-weighted mean of the last steps)"]
    rows, warnings = [], []
    for rs in arms.values():
        for r in rs:
            trained = r.metrics.get("train/tokens")
            data = prepared_tokens(r)
            passes = trained / data if trained and data else None
            fl = final_loss(r.curve)
            rows.append([r.name, trains_on(r), f"{int(trained):,}" if trained else "–",
                         f"{data:,}" if data else "–", f"{passes:.2f}" if passes else "–",
                         f"{fl[0]:.3f} (last {fl[1]} logged steps)" if fl else "–"])
            rise = heldout_rise(r.curve)
            if rise:
                best, bt, last, lt = rise
                warnings.append(f"{r.name}'s held-out answer loss rose over the last part of its training, from "
                                f"{best:.3f} (at {int(bt):,} tokens) to {last:.3f} (at {int(lt):,} tokens)"
                                + (f", after {passes:.1f} passes over its data" if passes else "")
                                + ": it is likely overfitting, and its final scores understate what it reached.")
    return head, rows, warnings
