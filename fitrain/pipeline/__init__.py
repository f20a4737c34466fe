"""Experiments: the graph of steps from a corpus to a report, for any number of arms and seeds, run here or
on Slurm.

* ``arms``    -- the arm specs (fi variants, documents, corpus, mixture, generated), their validation, budget
  references and roots; runs (arm x seed).
* ``graph``   -- ExperimentConfig and its ExperimentSteps in dependency order (no work done here).
* ``runners`` -- each step's work: a component's config derived from the experiment, its entry point
  called; and the equivalent single ``fitrain`` command.
* ``sources`` -- the steps that write an arm's own data (a released corpus normalised, a mixture drawn, a
  generated baseline, an fi variant's pairs).
* ``run``     -- run unfinished steps in order (completion markers, frozen config that may only grow by
  arms), or hand them to Slurm.
* ``slurm``   -- sbatch scripts, submission, job states.
* ``submit``  -- an experiment's steps as chained Slurm jobs (afterok; arrays for data_gen and generated shards).

The only fitrain package that imports ``data_gen`` and ``fitrain_eval``.
"""
