import json

import numpy as np
import pytest

from fitrain.core.errors import FitrainError
from fitrain.core.layout import RunLayout
from fitrain_eval.report import COLORS, ReportConfig, make_report


def _write_run(layout: RunLayout, arm: str, scale: float, results: dict, with_val: bool = True):
    logs = layout.train(arm).logs
    logs.mkdir(parents=True)
    rows = ["step,tokens,supervised_tokens,loss,lr,val_loss"]
    for s in range(1, 21):
        rows.append(f"{s},{s * 4096},{s * 1500},{scale * (6 - 4 * (1 - 0.9 ** s)):.4f},0.001,")
        if with_val and s % 10 == 0:
            rows.append(f"{s},{s * 4096},{s * 1500},,,{scale * 3.1:.4f}")
    (logs / "metrics.csv").write_text("\n".join(rows) + "\n")
    layout.train(arm).summary.write_text(json.dumps({"steps": 20, "tokens": 81920, "final_loss": 2.5,
                                                                "paths": {"hf": "x"}}))
    layout.eval(arm).mkdir(parents=True)
    (layout.eval(arm) / "results.json").write_text(json.dumps(results))


def _color_pixels(img: np.ndarray, hex_color: str, tol: float = 0.08) -> int:
    rgb = np.array([int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(img[..., :3] - rgb).max(axis=-1) < tol).sum())


def test_report_with_two_runs(tmp_path):
    import matplotlib.image as mpimg

    lay = RunLayout.of(tmp_path / "exp")
    _write_run(lay, "fi", 1.0, {"mixeval/overall": 0.33, "mtbench101/overall": 3.9, "lm_eval/hellaswag/acc": 0.3,
                                "pairwise/standard/win_rate": 0.636, "pairwise/standard/win_rate_se": 0.02,
                                "pairwise/standard/wins": 900, "pairwise/standard/ties": 50,
                                "pairwise/standard/losses": 660, "pairwise/standard/n": 805})
    _write_run(lay, "standard", 1.1, {"mixeval/overall": 0.24, "mtbench101/overall": 3.5,
                                      "lm_eval/hellaswag/acc": 0.32}, with_val=False)
    for arm, accs in (("fi", (0.25, 0.28)), ("standard", (0.26, 0.31))):  # per-checkpoint eval jobs
        for step, acc in zip((10, 20), accs):
            d = lay.eval(arm) / "checkpoints" / f"step-{step:08d}"
            d.mkdir(parents=True)
            (d / "results.json").write_text(json.dumps({"lm_eval/hellaswag/acc": acc, "lm_eval/hellaswag/n_x": 5}))
    md = make_report([lay.root], tmp_path / "report", ReportConfig(title="FI vs standard"))
    text = md.read_text()
    assert "| mixeval/overall | 0.33 | 0.24 |" in text
    assert "| train/tokens | 81,920 | 81,920 |" in text
    assert "| fi | standard | 63.6% | 2.0 | 900 | 50 | 660 | 805 |" in text
    html = (tmp_path / "report" / "report.html").read_text()
    assert "<td>mtbench101/overall</td><td>3.9</td><td>3.5</td>" in html
    assert "| standard | 20 | 0.31 |" in text
    for name in ("loss_vs_tokens.png", "eval_bars.png", "head_to_head.png", "checkpoint_evals.png"):
        assert f"({name})" in text and f"src='{name}'" in html
        img = mpimg.imread(tmp_path / "report" / name)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 400
        assert img[..., :3].std() > 0.05  # not a blank canvas
    loss = mpimg.imread(tmp_path / "report" / "loss_vs_tokens.png")
    bars = mpimg.imread(tmp_path / "report" / "eval_bars.png")
    ckpt = mpimg.imread(tmp_path / "report" / "checkpoint_evals.png")
    for color in COLORS[:2]:  # both runs are drawn, each in its own colour
        assert _color_pixels(loss, color) > 300
        assert _color_pixels(bars, color) > 300
        assert _color_pixels(ckpt, color) > 100
    assert _color_pixels(loss, COLORS[2]) == 0


def test_report_from_arm_dirs_and_errors(tmp_path):
    lay = RunLayout.of(tmp_path / "exp")
    _write_run(lay, "fi", 1.0, {"mixeval/overall": 0.3})
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


def test_report_logs_to_wandb_offline(tmp_path, monkeypatch):
    lay = RunLayout.of(tmp_path / "exp")
    _write_run(lay, "fi", 1.0, {"mixeval/overall": 0.3})
    monkeypatch.setenv("WANDB_SILENT", "true")
    make_report([lay.root], tmp_path / "r", ReportConfig(wandb=True, wandb_mode="offline"))
    runs = list((tmp_path / "r" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))
