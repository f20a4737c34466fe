"""Experiments: the graph of steps from a corpus to a report, run here or on Slurm.

* ``graph``   -- ExperimentConfig and its ExperimentSteps in dependency order (no work done here).
* ``runners`` -- each step's work: a component's config derived from the experiment, its entry point
  called; and the equivalent single ``fitrain`` command.
* ``run``     -- run unfinished steps in order (completion markers, frozen config), or hand them to Slurm.
* ``slurm``   -- sbatch scripts, submission, job states.
* ``submit``  -- an experiment's steps as chained Slurm jobs (afterok; arrays for data_gen shards).

The only fitrain package that imports ``data_gen`` and ``fitrain_eval``.
"""
