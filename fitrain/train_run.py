"""One training run end to end: inputs checked, model built, resumed, trained, summarised, exported."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from fitrain.errors import FitrainError
from fitrain.io import write_json
from fitrain.train import (TrainConfig, val_batches_factory, build_trainer, config_dict, data_dir,
                           describe_plan, make_plan, manifest_of, resume_checkpoint, tokenizer_path)


def run(cfg: TrainConfig) -> dict:
    import lightning.pytorch as pl

    from fitrain.callbacks import SignalFlag, StepHooks, requeue_slurm_job
    from fitrain.checkpoint import check_compatible, read_checkpoint
    from fitrain.loader import PackedLoader, pad_id_of
    from fitrain.metrics import MetricsLog, device_name, new_run_id, peak_flops
    from fitrain.models import build_model, flops_per_token, select_attention, shape_fingerprint
    from fitrain.tokenizer import load_tokenizer, tokenizer_hash, vocab_size_of
    from fitrain.training_module import FitrainModule

    t_start = time.perf_counter()
    run_dir = Path(cfg.run_dir)
    ddir = data_dir(cfg.data.path)
    manifest = manifest_of(ddir, "data.path")
    if cfg.data.val_path:
        manifest_of(cfg.data.val_path, "data.val_path")
    tok_path = tokenizer_path(cfg, manifest)
    tok = load_tokenizer(tok_path)
    if tok.pad_token_id is None or tok.pad_token_id == tok.eos_token_id:
        raise FitrainError(f"tokenizer {tok_path} needs a pad token distinct from EOS: padding is told apart from "
                           "text by its id when tokens are counted")
    data_pad = pad_id_of(manifest)
    if data_pad is not None and data_pad != tok.pad_token_id:
        raise FitrainError(f"data.path was prepared with pad id {data_pad} but the tokenizer {tok_path} pads with "
                           f"{tok.pad_token_id}: use the tokenizer the data was prepared with")
    tok_vocab = vocab_size_of(tok)
    if int(manifest.get("vocab_size", 0) or 0) > tok_vocab:
        raise FitrainError(f"data.path was prepared with a {manifest['vocab_size']}-token vocabulary but the "
                           f"tokenizer {tok_path} has {tok_vocab}: use the tokenizer the data was prepared with")

    trainer = build_trainer(cfg)
    world = trainer.world_size
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    def make_loader(rank: int, world_size: int):
        return PackedLoader(ddir, cfg.data.micro_batch_size, seed=cfg.seed, rank=rank, world_size=world_size,
                            shuffle=cfg.data.shuffle, remainder=cfg.data.remainder, num_workers=cfg.data.num_workers)

    probe = make_loader(0, world)
    plan = make_plan(cfg, manifest, world, int(tok.pad_token_id), probe.steps_per_epoch)
    fingerprint = probe.fingerprint
    del probe

    device_type = "cuda" if trainer.strategy.root_device.type == "cuda" else "cpu"
    attention = select_attention(cfg.model.attention, device_type)
    token_ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    model = build_model(cfg.model, tok_vocab, attention, seed=cfg.seed, token_ids=token_ids,
                        verbose=trainer.is_global_zero)

    ckpt_path = resume_checkpoint(cfg)
    resumed = None
    if ckpt_path is not None:
        resumed = read_checkpoint(ckpt_path)["fitrain"]
        check_compatible({"fitrain": resumed}, ckpt_path, shape_fingerprint(model), fingerprint)
    if resumed is not None and resumed.get("finished"):
        if trainer.is_global_zero:
            print(f"fitrain train: {ckpt_path} is the end of a finished run; nothing to train", file=sys.stderr)
        return _finish(cfg, run_dir, resumed, ckpt_path, None, resumed.get("last_val_loss"), trainer.is_global_zero,
                       status="finished", elapsed=0.0, plan=plan)

    wandb_id = (resumed or {}).get("wandb_id") or new_run_id()
    meta = {"arm": cfg.arm, "tokenizer": str(Path(tok_path).resolve()), "tokenizer_hash": tokenizer_hash(tok_path),
            "data_fingerprint": fingerprint, "data_path": str(ddir.resolve()), "format": manifest.get("format"),
            "config": config_dict(cfg), "wandb_id": wandb_id}
    val = (val_batches_factory(cfg.data.val_path, cfg.data.micro_batch_size, cfg.data.val_rows)
           if cfg.data.val_path and cfg.val_every else None)

    log = None
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "wandb").mkdir(exist_ok=True)
        (run_dir / "wandb" / "run_id").write_text(wandb_id + "\n")
        log = MetricsLog(run_dir / "logs" / "metrics.csv", resume_step=(resumed or {}).get("step", 0) if resumed else None)
        layout_group = run_dir.parent.parent.name if run_dir.parent.name == "train" else ""
        log.start_wandb(cfg.wandb, wandb_id, run_dir, meta["config"], layout_group, cfg.arm)
        print(f"fitrain train: world={world} plan: {describe_plan(plan)}"
              + (f" (resuming {ckpt_path}, step {resumed['step']})" if resumed else ""), file=sys.stderr, flush=True)
    seq_len = int(manifest.get("seq_len", 0) or model.config.max_position_embeddings)
    hooks = StepHooks(plan, run_dir, log, cfg.progress_bar, flops_per_token(model, seq_len),
                      peak_flops(device_name()) if device_type == "cuda" else None, cfg.eval_on_checkpoint)
    module = FitrainModule(model, plan, meta, make_loader, val, on_step=hooks)
    signals = SignalFlag()

    class _Signals(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            signals.install(pl_module)   # after Lightning's own handlers: ours only set a flag

        def on_train_end(self, trainer, pl_module):
            signals.restore()

    trainer.callbacks.append(_Signals())
    status = "finished"
    try:
        trainer.fit(module, ckpt_path=str(ckpt_path) if ckpt_path else None)
    finally:
        signals.restore()
        hooks.close()
    if module.stopped_by_signal:
        status = "preempted"
    elif not module.finished:
        if log is not None:
            log.close()
        raise FitrainError(f"the data ran out after {module.step} steps ({module.tokens} tokens, {module.supervised} "
                           f"supervised) with data.max_epochs={cfg.data.max_epochs}, before the budget "
                           f"({describe_plan(plan)}); raise data.max_epochs or lower the budget")
    last_val = module.last_val_loss  # the last step validated inside fit (see FitrainModule.training_step)
    state = {"step": module.step, "tokens": module.tokens, "supervised_tokens": module.supervised,
             "last_loss": module.last_loss, "wandb_id": wandb_id, "tokenizer": meta["tokenizer"], "arm": cfg.arm,
             "data_fingerprint": fingerprint}
    summary = _finish(cfg, run_dir, state, hooks.last_checkpoint, log, last_val, trainer.is_global_zero, status,
                      time.perf_counter() - t_start, plan)
    if status == "preempted" and signals.received is not None and trainer.is_global_zero \
            and cfg.requeue_on_sigusr1 and signals.received == __import__("signal").SIGUSR1:
        summary["requeued"] = requeue_slurm_job()
    return summary


def _finish(cfg: TrainConfig, run_dir: Path, state: dict, ckpt, log, val_loss, is_zero: bool, status: str,
            elapsed: float, plan) -> dict:
    tokens = int(state.get("tokens", 0))
    sup = int(state.get("supervised_tokens", 0))
    hf_dir = run_dir / "hf"
    summary = {"status": status, "arm": cfg.arm, "steps": int(state.get("step", 0)), "tokens": tokens,
               "supervised_tokens": sup, "supervised_fraction": sup / tokens if tokens else 0.0,
               "final_loss": state.get("last_loss"), "val_loss": val_loss,
               "budget": {"max_tokens": plan.max_tokens, "max_supervised_tokens": plan.max_supervised_tokens,
                          "max_steps": plan.max_steps, "planned_steps": plan.total_steps,
                          "source": plan.budget_source},
               "run_dir": str(run_dir), "checkpoint": str(ckpt) if ckpt else None,
               "hf_dir": str(hf_dir) if (cfg.export_hf and status == "finished") else None,
               "metrics_csv": str(run_dir / "logs" / "metrics.csv"), "wandb_id": state.get("wandb_id"),
               "data_fingerprint": state.get("data_fingerprint"), "elapsed_s": round(elapsed, 3)}
    if is_zero:
        if cfg.export_hf and status == "finished" and ckpt is not None:
            from fitrain.export import export

            export(ckpt, hf_dir, tokenizer=state.get("tokenizer") or None)
        write_json(run_dir / "summary.json", summary)
        if log is not None:
            log.close(summary)
    return summary
