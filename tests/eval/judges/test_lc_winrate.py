"""fitrain's length-controlled win rate equals the ``alpaca-eval`` package's own on AlpacaEval's shipped
outputs (the example outputs judged against the gpt4_1106_preview reference outputs, preferences from a
fixed, length-biased synthetic judge). The package downloads its instruction difficulties and gamed
baselines from the hub; here both read the same local files instead."""
import hashlib
import math

import numpy as np
import pytest

from fitrain_eval.judges import lc_winrate, pairwise as pw
from tests.helpers.eval_clients import DATA

EXAMPLE = DATA / "alpaca_eval" / "example_outputs.json"
GPT4 = DATA / "alpaca_eval" / "gpt4_1106_preview_model_outputs.json"


def _annotations():
    model, base = pw.load_outputs(EXAMPLE), pw.load_outputs(GPT4)
    rows = []
    for i, (m, b) in enumerate(zip(model, base)):
        h = int(hashlib.sha256(m["instruction"].encode()).hexdigest()[:8], 16) / 16 ** 8
        # the judge prefers the longer output, plus an instruction effect: the length bias LC removes
        z = 1.5 * math.tanh((len(m["output"]) - len(b["output"])) / 800) + 2.0 * (h - 0.5) - 0.3
        rows.append({"instruction": m["instruction"], "output_1": b["output"], "output_2": m["output"],
                     "generator_1": "gpt4_1106_preview", "generator_2": "example", "annotator": "synthetic",
                     "index": i, "preference": 1 + 1 / (1 + math.exp(-z))})
    rows[7]["preference"] = float("nan")  # an unjudged instruction is left out of the fit
    rows[8]["preference"] = 0.0           # AlpacaEval's old encoding of a draw
    return rows


def _hub_files(tmp_path, n):
    """Stand-ins for the hub's df_gamed.csv and instruction_difficulty.csv (the same difficulties)."""
    import pandas as pd

    rng = np.random.default_rng(0)
    diff = rng.normal(0, 1, n)
    blocks = []
    for name, sign in (("gamed_verbose", 1), ("gamed_concise", -1)):
        blocks.append(pd.DataFrame({"model": name, "index": np.arange(n), "instruction_difficulty": diff,
                                    "std_delta_len": sign * np.abs(rng.normal(1, 0.3, n)),
                                    "preference": rng.uniform(0.2, 0.8, n), "not_gamed_baseline": False}))
    pd.concat(blocks, ignore_index=True).to_csv(tmp_path / "df_gamed.csv", index=False)
    pd.Series(diff, index=pd.Index(range(n), name="index"), name="instruction_difficulty").to_csv(
        tmp_path / "instruction_difficulty.csv")
    return tmp_path / "df_gamed.csv", tmp_path / "instruction_difficulty.csv"


@pytest.mark.parametrize("glm", lc_winrate.GLMS)
def test_lc_win_rate_equals_the_alpaca_eval_package(tmp_path, monkeypatch, glm):
    # alpaca-eval is in the [dev] extra beside pytest: the reference must be there, a skip would hide a drift
    import pandas as pd
    from alpaca_eval.metrics import glm_winrate as glm_mod
    rows = _annotations()
    gamed, difficulty = _hub_files(tmp_path, len(rows))
    monkeypatch.setattr(glm_mod, "hf_hub_download", lambda **kw: str(gamed if kw["filename"] == "df_gamed.csv"
                                                                      else difficulty))
    ref = glm_mod.get_length_controlled_winrate(pd.DataFrame(rows), glm_name=glm, save_weights_dir=None,
                                               is_warn_extreme_changes=False)
    ours = lc_winrate.length_controlled([r["preference"] for r in rows], [len(r["output_1"]) for r in rows],
                                        [len(r["output_2"]) for r in rows], [r["index"] for r in rows], glm,
                                        lc_winrate.read_difficulty(difficulty), lc_winrate.read_gamed(gamed))
    assert 100 * ours["lc_win_rate"] == pytest.approx(ref["length_controlled_winrate"], rel=1e-9, abs=1e-9)
    if glm == "length_controlled_minimal":  # every prediction equal: AlpacaEval's standard error is 0
        assert ours["lc_standard_error"] is None and ref["lc_standard_error"] == pytest.approx(0, abs=1e-9)
    else:
        assert 100 * ours["lc_standard_error"] == pytest.approx(ref["lc_standard_error"], rel=1e-9, abs=1e-9)
    raw = np.nanmean([(1.5 if r["preference"] == 0 else r["preference"]) - 1 for r in rows])
    assert 100 * raw == pytest.approx(ref["win_rate"])
    # the judge favoured length; controlling for it moves the win rate
    assert abs(ours["lc_win_rate"] - raw) > 0.01


def test_lc_hand_computation_without_any_signal():
    """Every preference 1.5 and no length difference: the fitted coefficients are 0 and LC is exactly 50%."""
    n = 40
    out = lc_winrate.length_controlled([1.5] * n, [100] * n, [100] * n, list(range(n)))
    assert out["lc_win_rate"] == pytest.approx(0.5) and out["weights"]["np.tanh(std_delta_len)"] == 0.0
    assert lc_winrate.choose_glm("auto", "", "") == "length_controlled_minimal"
    assert lc_winrate.choose_glm("auto", "d.csv", "g.csv") == "length_controlled_v1"
    with pytest.raises(Exception, match="instruction difficulties"):
        lc_winrate.choose_glm("length_controlled_noreg", "", "")
