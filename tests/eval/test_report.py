import json

import numpy as np
import pytest

from fitrain.core.errors import FitrainError
from fitrain.core.layout import RunLayout, run_id
from fitrain_eval.items import ItemScores
from fitrain_eval.report import ReportConfig, make_report
from fitrain_eval.report_plots import COLORS, ERR_COLOR


def _write_train(layout: RunLayout, run: str, scale: float, with_val: bool = True):
    logs = layout.train(run).logs
    logs.mkdir(parents=True)
    rows = ["step,tokens,supervised_tokens,loss,lr,val_loss"]
    for s in range(1, 21):
        rows.append(f"{s},{s * 4096},{s * 1500},{scale * (6 - 4 * (1 - 0.9 ** s)):.4f},0.001,")
        if with_val and s % 10 == 0:
            rows.append(f"{s},{s * 4096},{s * 1500},,,{scale * 3.1:.4f}")
    (logs / "metrics.csv").write_text("\n".join(rows) + "\n")
    layout.train(run).summary.write_text(json.dumps({"steps": 20, "tokens": 81920, "final_loss": 2.5}))


def _write_eval(layout: RunLayout, run: str, results: dict, items: dict[str, ItemScores]):
    d = layout.eval(run)
    d.mkdir(parents=True, exist_ok=True)
    (d / "results.json").write_text(json.dumps(results))
    for s in items.values():
        s.save(d)


def _experiment(tmp_path, seeds=(None,)):
    """fi better than standard on MixEval and MT-Bench-101; lower held-out loss; fi wins 70% head-to-head."""
    lay = RunLayout.of(tmp_path / "exp")
    rng = np.random.default_rng(0)
    p_item = rng.uniform(0.1, 0.9, size=200)
    for arm, shift in (("fi", 0.15), ("standard", 0.0)):
        for seed in seeds:
            run = run_id(arm, seed)
            _write_train(lay, run, 1.0 if arm == "fi" else 1.1)
            mix = {f"free_form:{i}": float(rng.uniform() < min(1, p + shift)) for i, p in enumerate(p_item)}
            mt = {f"{t}-{i}": float(np.clip(round(rng.normal(5 + 5 * shift, 1.5)), 1, 10))
                  for t in ("GR", "AR", "SI") for i in range(20)}
            loss = {f"0:{i}": float(rng.normal(3.0 - shift, 0.3)) for i in range(80)}
            items = {"mix": ItemScores("mixeval/overall", mix, info={"judge_model": "judge-x", "rules": "official",
                                                                    "prompt_version": "mixeval-official@7c52b41"}),
                     "mt": ItemScores("mtbench101/overall", mt, strata={k: k.split("-")[0] for k in mt},
                                      info={"judge_model": "judge-x", "rules": "official"}),
                     "loss": ItemScores("heldout/answer_loss", loss, weights={k: 10.0 for k in loss},
                                        higher_is_better=False)}
            res = {"mixeval/overall": float(np.mean(list(mix.values()))), "lm_eval/w/word_perplexity": 2.6e25}
            if arm == "fi":
                base = run_id("standard", seed)
                items["h2h"] = ItemScores(f"pairwise/{base}/win_rate",
                                          {str(i): float(rng.uniform() < 0.7) for i in range(100)}, null=0.5,
                                          info={"judge_model": "judge-x", "rules": "official"})
                res.update({f"pairwise/{base}/lc_win_rate": 0.66, f"pairwise/{base}/lc_standard_error": 0.03})
            _write_eval(lay, run, res, items)
    return lay


def section(md: str, title: str) -> str:
    """The text of one ``## title`` section of a report."""
    return md.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _segments(img: np.ndarray, hex_color: str, axis: int, min_len: int = 8, tol: float = 0.12) -> int:
    """Number of separate strokes of ``hex_color`` (connected pixels) at least ``min_len`` pixels long,
    vertically (``axis=0``) or horizontally (``axis=1``): the error bars drawn in that colour."""
    from scipy import ndimage

    rgb = np.array([int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    labels, n = ndimage.label(np.abs(img[..., :3] - rgb).max(axis=-1) < tol)
    boxes = ndimage.find_objects(labels)
    return sum(1 for b in boxes if b[axis].stop - b[axis].start >= min_len)


def _color_pixels(img: np.ndarray, hex_color: str, tol: float = 0.08) -> int:
    rgb = np.array([int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(img[..., :3] - rgb).max(axis=-1) < tol).sum())


def test_headline_table_has_intervals_differences_and_win_rates(tmp_path):
    lay = _experiment(tmp_path)
    md_path = make_report([lay.root], tmp_path / "report", ReportConfig(title="FI vs standard", bootstrap=2000))
    md = md_path.read_text()
    head = next(line for line in md.splitlines() if line.startswith("| arm |"))
    assert head == ("| arm | MixEval (%) | MT-Bench-101 | held-out answer loss ↓ | w word_perplexity | "
                    "fi's win rate vs this arm (%) |")
    headline = section(md, "Headline")
    fi_row = next(line for line in headline.splitlines() if line.startswith("| fi |"))
    std_row = next(line for line in headline.splitlines() if line.startswith("| standard |"))
    assert fi_row.count("[") >= 3 and "Δ" not in fi_row  # the reference: values with intervals
    assert std_row.count("<br>Δ −") == 2 and "<br>Δ +" in std_row and "p<0.001" in std_row
    assert "LC 66.0 ± 3.0" in std_row and "], p<0.001" in std_row.split("|")[-2]
    comp = json.loads((tmp_path / "report" / "comparisons.json").read_text())
    mix = next(m for m in comp["metrics"] if m["metric"] == "mixeval/overall")
    std = next(a for a in mix["arms"] if a["arm"] == "standard")
    assert std["diff"]["hi"] < 0 < std["diff"]["p"] < 0.01 and mix["n_items"] == 200
    assert "| metric | arm | seeds | value | 95% CI | Δ vs fi | 95% CI of Δ | p | items | excluded |" in md
    assert "| MixEval | 200 | 0 | 0 | judge-x | official (mixeval-official@7c52b41) | not checked |" in md
    assert "| fi | standard | 1 |" in md  # head-to-head table
    html = (tmp_path / "report" / "report.html").read_text()
    assert "<th>MixEval (%)</th>" in html and "<br>Δ" in html
    for name in ("scores.png", "differences.png", "head_to_head.png", "loss_vs_tokens.png"):
        assert f"({name})" in md and f"src='{name}'" in html


def test_plots_have_error_bars_own_axes_and_comparable_loss_curves(tmp_path):
    import matplotlib.image as mpimg

    from fitrain_eval import report_plots

    lay = _experiment(tmp_path)
    make_report([lay.root], tmp_path / "report", ReportConfig(bootstrap=1000))
    scores = mpimg.imread(tmp_path / "report" / "scores.png")
    # 4 metrics x 2 arms with intervals; the perplexity (no per-item scores, one run) has none; counted by the
    # caps' width: on axes from 0 a narrow interval (the held-out loss's) is short, as it should look
    assert _segments(scores, ERR_COLOR, axis=1) == 6
    assert _segments(mpimg.imread(tmp_path / "report" / "differences.png"), ERR_COLOR, axis=1) == 3
    assert _segments(mpimg.imread(tmp_path / "report" / "head_to_head.png"), ERR_COLOR, axis=1) == 1
    for color in COLORS[:2]:
        assert _color_pixels(scores, color) > 200  # a dot per metric in each arm's colour
    loss = mpimg.imread(tmp_path / "report" / "loss_vs_tokens.png")
    assert loss.shape[0] > 600 and _color_pixels(loss, COLORS[0]) > 300 and _color_pixels(loss, COLORS[1]) > 300

    # every metric on its own axis: a perplexity of 2.6e25 never flattens the accuracies
    from fitrain_eval.comparisons import ArmResult, MetricResult

    acc = MetricResult("lm_eval/t/acc", True, False, arms=[ArmResult("fi", ["fi"], [0.3], 0.3)])
    ppl = MetricResult("lm_eval/t/word_perplexity", False, False, arms=[ArmResult("fi", ["fi"], [2.6e25], 2.6e25)])
    assert report_plots.plot_scores([acc, ppl], {"fi": COLORS[0]}, tmp_path / "s.png") == 2
    # no intervals -> no error bars
    assert _segments(mpimg.imread(tmp_path / "s.png"), ERR_COLOR, axis=1) == 0


def test_seeds_are_shown_as_mean_sd(tmp_path):
    lay = _experiment(tmp_path, seeds=(0, 1))
    md = make_report([lay.root], tmp_path / "report", ReportConfig(bootstrap=500)).read_text()
    assert "| fi (2 seeds) |" in md and "| standard (2 seeds) |" in md
    comp = json.loads((tmp_path / "report" / "comparisons.json").read_text())
    mix = next(m for m in comp["metrics"] if m["metric"] == "mixeval/overall")
    fi = next(a for a in mix["arms"] if a["arm"] == "fi")
    assert fi["runs"] == ["fi.seed0", "fi.seed1"] and fi["sd"] == pytest.approx(np.std(fi["per_seed"], ddof=1))
    row = next(line for line in md.splitlines() if line.startswith("| fi (2 seeds) |"))
    assert " ± " in row.split("|")[2]
    [h] = comp["head_to_head"]
    assert h["pairs"] == [["fi.seed0", "standard.seed0"], ["fi.seed1", "standard.seed1"]]


def test_report_from_arm_dirs_and_errors(tmp_path):
    lay = RunLayout.of(tmp_path / "exp")
    _write_train(lay, "fi", 1.0)
    _write_eval(lay, "fi", {"mixeval/overall": 0.3}, {})
    md = make_report([lay.train("fi").root], tmp_path / "r")
    assert "| mixeval/overall | 0.3 |" in md.read_text()  # the sibling eval dir is found
    with pytest.raises(FitrainError, match="run directory not found"):
        make_report([tmp_path / "nope"], tmp_path / "r")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FitrainError, match="is not a run"):
        make_report([tmp_path / "empty"], tmp_path / "r")
    (lay.train("fi").logs / "metrics.csv").write_text("step,foo\n1,2\n")
    with pytest.raises(FitrainError, match=r"missing column\(s\) \['tokens', 'loss'\]"):
        make_report([lay.root], tmp_path / "r")


def test_checkpoint_evaluations_are_tabled_and_plotted(tmp_path):
    lay = RunLayout.of(tmp_path / "exp")
    for arm, accs in (("fi", (0.25, 0.28)), ("standard", (0.26, 0.31))):
        _write_train(lay, arm, 1.0)
        _write_eval(lay, arm, {"lm_eval/hellaswag/acc": accs[-1]}, {})
        for step, acc in zip((10, 20), accs):
            d = lay.eval(arm) / "checkpoints" / f"step-{step:08d}"
            d.mkdir(parents=True)
            (d / "results.json").write_text(json.dumps({"lm_eval/hellaswag/acc": acc, "lm_eval/hellaswag/n_x": 5}))
    md = make_report([lay.root], tmp_path / "r").read_text()
    assert "| standard | 20 | 0.31 |" in md and "(checkpoint_evals.png)" in md


def test_report_logs_to_wandb_offline(tmp_path, monkeypatch):
    lay = _experiment(tmp_path)
    monkeypatch.setenv("WANDB_SILENT", "true")
    make_report([lay.root], tmp_path / "r", ReportConfig(wandb=True, wandb_mode="offline", bootstrap=200))
    runs = list((tmp_path / "r" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))


def test_decontamination_is_shown_beside_the_scores_and_can_be_left_out(tmp_path):
    lay = _experiment(tmp_path)
    data = lay.eval("data")
    data.mkdir(parents=True)
    (data / "results.json").write_text(json.dumps({"decontamination/mixeval/contaminated": 2}))
    (data / "decontamination.json").write_text(json.dumps({"benchmarks": {"mixeval": {
        "items": 200, "checked": 200, "contaminated": 2, "ids": ["free_form:0", "free_form:1"]}}}))
    md = make_report([lay.root], tmp_path / "r", ReportConfig(bootstrap=200)).read_text()
    assert "| MixEval | 200 | 0 | 0 | judge-x | official (mixeval-official@7c52b41) | 2 of 200 |" in md
    assert "| mixeval | 200 | 2 | 1.0% | data |" in md and "| data |" not in md.split("## Head-to-head")[0]
    md = make_report([lay.root], tmp_path / "r2", ReportConfig(bootstrap=200, exclude_contaminated=True)).read_text()
    assert "| MixEval | 198 | 2 contaminated |" in md and "Items flagged by decontamination are left out." in md


def test_report_command_takes_the_reference_and_bootstrap_settings(tmp_path, capsys):
    from fitrain.cli import main

    lay = _experiment(tmp_path)
    out = tmp_path / "r"
    assert main(["eval", "report", str(lay.root), "--out", str(out), "reference=standard", "bootstrap=300"]) == 0
    md = (out / "report.md").read_text()
    assert "Δ vs standard" in md and "300 replicates" in md
    rows: dict[str, str] = {}  # the headline table's rows (the first of each arm)
    for line in section(md, "Headline").splitlines():
        if line.startswith(("| fi |", "| standard |")):
            rows.setdefault(line.split("|")[1].strip(), line)
    assert "Δ" in rows["fi"] and "Δ" not in rows["standard"]  # standard is now the arm compared with
    assert main(["eval", "report", str(lay.root), "refrence=standard"]) == 2
    assert "did you mean 'reference'" in capsys.readouterr().err
    assert main(["eval", "report", str(lay.root), "out=x"]) == 2
    assert "not key=value" in capsys.readouterr().err


def test_the_report_says_which_backend_made_the_pairs_and_what_each_stage_dropped(tmp_path):
    lay = _experiment(tmp_path)
    lay.data_gen_report.parent.mkdir(parents=True, exist_ok=True)
    lay.data_gen_report.write_text(json.dumps({
        "templatize": {"in": 171, "out": 171},
        "instantiate": {"in": 2110, "out": 263, "rejected": {"total": 1847, "by_reason": {
            "template_not_applicable": 1845, "excerpt_ambiguous": 2}}},
        "write": {"in": 263, "out": 165, "rejected": {"total": 0, "by_reason": {}},
                  "filtered": {"total": 98, "by_reason": {"below_min_judge_score": 98}}},
        "backends": {"instantiate": "extractive (offline heuristic fallback, not an LLM)",
                     "templatize": "template bank /opt/x/bank.jsonl, /opt/y/more.parquet"}}))
    md = make_report([lay.root], tmp_path / "r", ReportConfig(bootstrap=200)).read_text()
    assert "## Data generation" in md
    assert ("| exp | instantiate | extractive (offline heuristic fallback, not an LLM) | 2,110 | 263 | "
            "1,847 (template_not_applicable 1,845, excerpt_ambiguous 2) |") in md
    assert "| exp | write | – | 263 | 165 | 98 (below_min_judge_score 98) |" in md
    assert "| exp | templatize | template bank bank.jsonl, more.parquet |" in md
    lay.data_gen_report.write_text("{not json")
    with pytest.raises(FitrainError, match="unreadable data_gen report"):
        make_report([lay.root], tmp_path / "r")
