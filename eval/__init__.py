"""fitrain's evaluation home (imported as ``fitrain_eval``).

``generate`` (greedy generation in the training format), ``harness`` (lm-eval), ``judges/`` (MixEval,
MT-Bench-101, pairwise head-to-head, one judge client), ``decontamination`` (n-gram overlap), ``report``
(tables and plots), ``run`` (``EvalConfig`` / ``evaluate``: what ``fitrain eval`` runs).
"""
