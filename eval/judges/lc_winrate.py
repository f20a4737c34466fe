"""AlpacaEval 2's length-controlled win rate (Dubois et al., 2024), its published algorithm
(``alpaca_eval/metrics/glm_winrate.py``; the GLMs in ``prompts/alpaca_eval/alpaca_eval_judge.json``
``GLM_INFO``), ported onto scikit-learn and checked against the ``alpaca-eval`` package itself in
tests/eval/judges/test_lc_winrate.py.

Per head-to-head (one model against one baseline), with ``preference`` in [1, 2] (2: the model's output is
better; 0 is read as 1.5, a draw) and output lengths in characters:

1. target ``y = preference - 1`` in [0, 1], a soft label;
2. ``std_delta_len = (len(baseline output) - len(model output)) / std`` (sample std over the instructions);
3. features in the GLM formula's order, no intercept: ``tanh(std_delta_len)``, the instruction's difficulty
   (``length_controlled_v1`` and ``_noreg``: a fixed scalar per instruction index, AlpacaEval's
   ``instruction_difficulty``), ``not_gamed_baseline`` (1 for the model's rows);
4. ``length_controlled_v1`` also fits AlpacaEval's rows of two "gamed" (verbose and concise) baselines
   (``df_gamed.csv``, ``not_gamed_baseline = 0``) with weight ``0.2 / 2`` each;
5. the soft labels become two weighted rows (label 1 with weight y, label 0 with weight 1 - y), fitted by an
   L1 logistic regression (liblinear, no intercept, ``random_state=123``) whose C is chosen from 10 values
   by 5-fold group cross-validation (both rows of an instruction in one fold) on the soft log-loss;
6. the length-controlled preference of every instruction is the model's prediction with
   ``std_delta_len = 0``; the LC win rate is their mean, its standard error their standard error of the mean
   (AlpacaEval's ``lc_standard_error``; it reflects the difficulty term only, so the minimal GLM, whose
   predictions are all equal, has none: None).

The instruction difficulties and the gamed rows are published on the Hugging Face hub
(``tatsu-lab/alpaca_eval``: ``instruction_difficulty.csv``, ``df_gamed.csv``), not in the repository; give
their paths (``pairwise.lc.instruction_difficulty``, ``pairwise.lc.gamed``) to use them. They belong to the
805 AlpacaEval instructions judged by the official annotator against ``gpt4_1106_preview``; for a head-to-head
between arms with another judge, ``glm=auto`` therefore uses ``length_controlled_minimal`` (the same model
without the difficulty term) unless the files are given.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fitrain.core.errors import FitrainError

GLMS = ("length_controlled_v1", "length_controlled_noreg", "length_controlled_minimal")
MIN_INSTRUCTIONS = 50   # below this the fit has no power (its L1 penalty zeroes every weight): not reported


def choose_glm(glm: str, difficulty: str, gamed: str) -> str:
    if glm == "auto":
        return "length_controlled_v1" if difficulty and gamed else (
            "length_controlled_noreg" if difficulty else "length_controlled_minimal")
    if glm not in GLMS:
        raise FitrainError(f"pairwise.lc.glm must be auto or one of {GLMS}, got '{glm}'")
    if glm != "length_controlled_minimal" and not difficulty:
        raise FitrainError(f"{glm} needs AlpacaEval's instruction difficulties: set pairwise.lc.instruction_difficulty")
    if glm == "length_controlled_v1" and not gamed:
        raise FitrainError("length_controlled_v1 needs AlpacaEval's gamed baselines: set pairwise.lc.gamed (df_gamed.csv)")
    return glm


def read_difficulty(path: str | Path) -> dict[int, float]:
    """``instruction_difficulty.csv`` (index column, difficulty) -> {instruction index: difficulty}."""
    import pandas as pd

    s = pd.read_csv(path, index_col=0).squeeze("columns")
    return {int(k): float(v) for k, v in s.items()}


def read_gamed(path: str | Path):
    """``df_gamed.csv`` rows as a DataFrame with the GLM's columns (preference already in [0, 1])."""
    import pandas as pd

    df = pd.read_csv(path)
    need = {"preference", "index", "std_delta_len", "instruction_difficulty", "not_gamed_baseline"}
    if need - set(df.columns):
        raise FitrainError(f"{path}: not AlpacaEval's df_gamed.csv (missing columns {sorted(need - set(df.columns))})")
    return df


def _design(std_delta_len: np.ndarray, difficulty: np.ndarray | None, not_gamed: np.ndarray) -> np.ndarray:
    cols = [np.tanh(std_delta_len)] + ([difficulty] if difficulty is not None else []) + [not_gamed]
    return np.column_stack(cols).astype(np.float64)


def _soft_log_loss(y_true, y_pred, true_prob, true_sample_weight=None):
    """Log-loss against the soft labels (undoes the two-row encoding of step 5)."""
    y = np.where(y_true == 1, true_prob, 1 - true_prob)
    p = np.clip(y_pred, 1e-15, 1 - 1e-15)
    ll = y * np.log(p) + (1 - y) * np.log(1 - p)
    return -np.mean(ll * true_sample_weight if true_sample_weight is not None else ll)


def _sklearn_at_least(major: int, minor: int) -> bool:
    import sklearn

    v = sklearn.__version__.split(".")
    return (int(v[0]), int(v[1])) >= (major, minor)


def _fit(X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None, n_splits: int = 5):
    import sklearn
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import GroupKFold

    n = len(y)
    X2 = np.concatenate([X, X])
    labels = np.concatenate([np.ones(n), np.zeros(n)])
    prob = np.concatenate([y, 1 - y])
    groups = np.concatenate([np.arange(n), np.arange(n)])
    true_w = None if sample_weight is None else np.concatenate([sample_weight, sample_weight])
    fit_w = prob if true_w is None else prob * true_w
    with sklearn.config_context(enable_metadata_routing=True):
        scorer = make_scorer(_soft_log_loss, response_method="predict_proba", greater_is_better=False
                             ).set_score_request(true_sample_weight=True, true_prob=True)
        # L1: ``penalty="l1"`` before scikit-learn 1.8, ``l1_ratios=(1,)`` from 1.8 on (penalty goes in 1.10)
        l1 = {"l1_ratios": (1,)} if _sklearn_at_least(1, 8) else {"penalty": "l1"}
        model = LogisticRegressionCV(cv=GroupKFold(n_splits=n_splits), scoring=scorer, random_state=123, dual=False,
                                     solver="liblinear", n_jobs=None, fit_intercept=False, **l1)
        model.set_fit_request(sample_weight=True)
        model.fit(X2, labels, sample_weight=fit_w, groups=groups, true_sample_weight=true_w, true_prob=prob)
    return model


def length_controlled(preference, len_baseline, len_model, index, glm: str = "length_controlled_minimal",
                      difficulty: dict[int, float] | None = None, gamed=None) -> dict:
    """The length-controlled win rate (in [0, 1]) of one head-to-head; see the module docstring."""
    import warnings

    pref = np.asarray(preference, dtype=np.float64)
    pref = np.where(pref == 0.0, 1.5, pref) - 1
    delta = np.asarray(len_baseline, dtype=np.float64) - np.asarray(len_model, dtype=np.float64)
    sd = delta.std(ddof=1) if len(delta) > 1 else 0.0
    std_delta = delta / sd if sd > 0 else np.zeros_like(delta)
    index = np.asarray(index, dtype=np.int64)
    uses_difficulty = glm != "length_controlled_minimal"
    diff = None
    if uses_difficulty:
        missing = [int(i) for i in index if int(i) not in (difficulty or {})]
        if missing:
            raise FitrainError(f"no instruction difficulty for instruction index(es) {missing[:5]}")
        diff = np.array([difficulty[int(i)] for i in index])
    X = _design(std_delta, diff, np.ones(len(pref)))
    X_test = _design(np.zeros(len(pref)), diff, np.ones(len(pref)))
    y, weight = pref, None
    if glm == "length_controlled_v1":
        g = gamed
        Xg = _design(g["std_delta_len"].to_numpy(float), g["instruction_difficulty"].to_numpy(float),
                     g["not_gamed_baseline"].astype(float).to_numpy())
        X, y = np.concatenate([Xg, X]), np.concatenate([g["preference"].to_numpy(float), pref])
        weight = np.concatenate([np.full(len(g), 0.2 / 2), np.ones(len(pref))])
    keep = ~np.isnan(y)
    if keep.sum() < 10:
        raise FitrainError(f"the length-controlled win rate needs judged instructions, got {int(keep.sum())}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # liblinear convergence / deprecation chatter
        model = _fit(X[keep], y[keep], None if weight is None else weight[keep])
    p = model.predict_proba(X_test)[:, 1]
    names = ["np.tanh(std_delta_len)"] + (["instruction_difficulty"] if uses_difficulty else []) + \
        ["not_gamed_baseline.astype(float)"]
    se = float(p.std(ddof=1) / np.sqrt(len(p))) if uses_difficulty else None
    return {"lc_win_rate": float(p.mean()), "lc_standard_error": se,
            "glm": glm, "weights": dict(zip(names, map(float, model.coef_[0]))), "per_instruction": p.tolist()}
