"""fitrain: pre-train language models from scratch on the instruction objective (FineInstructions).

The packages, in dependency order (each may import only those before it; tests/test_architecture.py
keeps it so):

* ``fitrain.core``     -- what everything shares: errors, typed config, recipes, atomic I/O, token
  accounting, the run-directory layout, the language-model client layer. Nothing heavy at import.
* ``fitrain.data``     -- records -> ids + mask -> packed rows -> shards + manifest -> training batches.
* ``fitrain.train``    -- shards -> a Llama trained with Lightning -> checkpoints -> an HF export.
* ``fitrain.pipeline`` -- the experiment graph and Slurm; the only fitrain package that imports
  ``data_gen`` (pair generation) and ``fitrain_eval`` (evaluation, the repository's ``eval/`` folder).
* ``fitrain.commands`` + ``fitrain.cli`` -- the one ``fitrain`` command, one thin module per subcommand.

The method and the engineering facts the code relies on are written up in ``fitrain/docs/``.
"""
