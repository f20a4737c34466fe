"""Experiments: the graph of steps from a corpus to a report, for any number of arms and seeds, run here or
on Slurm.

* ``arms``    -- the arms: one module per kind (fi, documents, corpus, mixture, generated: settings, validation,
  the steps that write its data, its prepare input, its label), the kind registry, ``ArmSet`` (the arms of
  one experiment, parsed once: budget references and roots); runs (arm x seed).
* ``experiment`` -- ExperimentConfig and ExperimentStep (a node: its deps, its runner, its by-hand command).
* ``graph``   -- the ExperimentSteps in dependency order (no work done here).
* ``runners`` -- the work of the steps every experiment has: a component's config derived from the
  experiment, its entry point called; and the equivalent single ``fitrain`` command.
* ``configs`` -- each step's component config.
* ``run``     -- run unfinished steps in order (completion markers, frozen config that may only grow by
  arms), or hand them to Slurm.
* ``slurm``   -- sbatch scripts, submission, job states.
* ``submit``  -- an experiment's steps as chained Slurm jobs (afterok; arrays for data_gen and generated shards).

The only fitrain package that imports ``data_gen`` and ``fitrain_eval``.
"""
