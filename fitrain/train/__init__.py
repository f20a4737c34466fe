"""Training, from prepared shards to an HF model directory:

* ``config``       -- TrainConfig / DataConfig.
* ``plan``         -- the budget (a typed Budget) and the schedule length, checked against the data.
* ``model``        -- Llama presets, attention selection, the one forward over packed batches (no training code).
* ``microbatches`` -- loader batches grouped into optimizer steps; exact budget cuts; validation batches.
* ``loss``         -- the loss settings, the label shift, the normalisation over the whole step.
* ``objective``    -- decoder -> head + CE of the supervised targets (chunked for large vocabularies).
* ``optim``        -- AdamW groups, schedules, clipping.
* ``step``         -- the optimizer step's phases: count and reduce, cut, backward, clip and step, log row.
* ``module``       -- the LightningModule that runs those phases (manual optimisation).
* ``parallel``     -- FSDP2 per decoder layer, mixed precision, activation checkpointing and compile.
* ``distributed``  -- the Lightning Trainer: devices, DDP/FSDP, precision, Slurm.
* ``hooks``        -- after each step: metrics, progress bar, checkpoints, signals, per-checkpoint eval.
* ``checkpoint``   -- the typed TrainState, checkpoint files, resume points.
* ``metrics``      -- metrics.csv, W&B, throughput, MFU peaks.
* ``export``       -- a checkpoint -> a save_pretrained directory.
* ``trainer``      -- ``fitrain train``: check_inputs -> build -> resume -> fit -> finish.
"""
