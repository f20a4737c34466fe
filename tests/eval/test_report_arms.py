"""fitrain_eval.report_arms in the report: one line per arm saying what it trains on, its passes over its own
data (tokens trained / its prepared tokens), the final loss as the last steps' token-weighted mean, and the
overfitting warning in the Verdict for the arm whose held-out loss rose (not for the one whose loss fell)."""
import json

from fitrain.core.layout import RunLayout
from fitrain_eval.report import ReportConfig, make_report
from tests.eval.test_report import section


def _arm(lay: RunLayout, arm: str, data_tokens: int, val: list[float]):
    t = lay.train(arm)
    t.logs.mkdir(parents=True)
    rows = ["step,tokens,supervised_tokens,loss,lr,val_loss"]
    for s in range(1, 51):
        rows.append(f"{s},{s * 1200},{s * 600},{6 - s * 0.02:.4f},0.001,")
        if s % 10 == 0:
            rows.append(f"{s},{s * 1200},{s * 600},,,{val[s // 10 - 1]}")
    rows.append(f"51,{50 * 1200 + 25},{50 * 600 + 10},9.5,0.001,")  # a 25-token last step: noise
    (t.logs / "metrics.csv").write_text("\n".join(rows) + "\n")
    t.summary.write_text(json.dumps({"steps": 51, "tokens": 60025, "final_loss": 9.5}))
    p = lay.root / "prepared" / arm
    p.mkdir(parents=True)
    (p / "manifest.json").write_text(json.dumps({"kind": "pairs" if arm == "fi" else "documents",
                                                 "counts": {"total_tokens": data_tokens}}))


def test_passes_what_each_arm_trains_on_and_the_overfitting_warning(tmp_path):
    lay = RunLayout.of(tmp_path / "exp")
    lay.root.mkdir(parents=True)
    (lay.root / "experiment.yaml").write_text("name: exp\narms:\n- fi\n- standard\n")
    _arm(lay, "fi", 5002, [7.9, 7.46, 7.5, 7.6, 7.78])         # 12 passes; held-out loss rising at the end
    _arm(lay, "standard", 17150, [7.9, 7.6, 7.45, 7.4, 7.34])   # 3.5 passes; falling
    md = make_report([lay.root], tmp_path / "r", ReportConfig(bootstrap=200)).read_text()
    arms = section(md, "What each run trained on")
    fi = next(x for x in arms.splitlines() if x.startswith("| fi |")).split(" | ")
    std = next(x for x in arms.splitlines() if x.startswith("| standard |")).split(" | ")
    assert fi[1].startswith("FineInstructions pairs") and std[1].startswith("standard pre-training on the source "
                                                                            "documents of fi's pairs")
    assert fi[2:5] == ["60,025", "5,002", "12.00"] and std[2:5] == ["60,025", "17,150", "3.50"]
    assert fi[5].startswith("5.", ) and "(last 5 logged steps)" in fi[5]  # not the 9.5 of the last, cut step
    verdict = section(md, "Verdict")
    assert ("fi's held-out answer loss rose over the last part of its training, from 7.460 (at 24,000 tokens) to "
            "7.780 (at 60,000 tokens), after 12.0 passes over its data") in verdict
    assert "standard's held-out answer loss rose" not in verdict
    assert "Each arm has one seed: the intervals cover the sampling of evaluation items only" in verdict
    assert md.index("## Verdict") < md.index("## What each run trained on") < md.index("## Loss vs tokens")
