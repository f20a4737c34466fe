"""The arms of an experiment (fitrain/docs/method.md, "The paper's baselines (Table 1)"): each a named data
source trained to a token budget matched to a reference arm. One module per kind:

* ``fi``: this experiment's data_gen pairs, token-for-token budgeted against their documents; variants are
  settings (``min_judge_score``, ``loss_mask``, ``prepare:``).
* ``documents``: the source documents of an fi arm's pairs (standard pre-training).
* ``corpus``: files a user downloaded (``paths`` + ``reader``; fitrain.data.corpora).
* ``mixture``: weighted ``sources`` (other document arms, or paths) drawn to the budget's tokens.
* ``generated``: a synthetic corpus from the experiment's documents (data_gen/baselines.py).

``base`` is the interface a kind implements (settings, validation, steps, prepare input, label),
``registry`` the kinds by name (one line each; :func:`register` plugs in another), ``armset`` the arms of
one experiment, parsed once.
"""
from fitrain.pipeline.arms.armset import SHORTHAND, ArmSet, parse_arm
from fitrain.pipeline.arms.base import ArmBudget, ArmKind, ArmSpec, Run, runs_of
from fitrain.pipeline.arms.registry import kinds, register, unregister

__all__ = ["SHORTHAND", "ArmBudget", "ArmKind", "ArmSet", "ArmSpec", "Run", "kinds", "parse_arm", "register",
           "runs_of", "unregister"]
