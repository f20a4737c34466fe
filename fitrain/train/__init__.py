"""Training, from prepared shards to an HF model directory:

* ``config``       -- TrainConfig / DataConfig.
* ``plan``         -- the budget (a typed Budget) and the schedule length, checked against the data.
* ``model``        -- Llama presets, attention selection, the one forward over packed batches (no training code).
* ``microbatches`` -- loader batches grouped into optimizer steps; exact budget cuts; validation batches.
* ``loss``         -- the loss settings, the label shift, the normalisation over the whole step.
* ``objective``    -- decoder -> head + CE of the supervised targets (chunked for large vocabularies).
* ``optim``        -- AdamW groups, schedules, clipping.
* ``step``         -- ``train_step``: count and reduce, cut, accumulate, clip and step, log row (a StepRecord).
* ``parallel``     -- FSDP2 per decoder layer, mixed precision, activation checkpointing and compile.
* ``distributed``  -- Lightning Fabric: devices, launching, DDP/FSDP, ``precision: auto``.
* ``hooks``        -- after each step: metrics, progress bar, checkpoints, signals, per-checkpoint eval.
* ``checkpoint_io``-- writing and restoring checkpoints of the live run (model, optimizer, schedule, RNG).
* ``checkpoint``   -- the typed TrainState, the one layout, checksums, resume points.
* ``metrics``      -- metrics.csv, W&B, throughput, MFU peaks.
* ``export``       -- a checkpoint -> a save_pretrained directory.
* ``inputs``       -- what a run reads, checked before anything is built.
* ``trainer``      -- ``fitrain train``: check_inputs -> build -> resume -> fit (the loop) -> finish.
"""
