"""Compiled layers keep the checkpoint names (the FSDP2 compositions run end to end in test_fsdp.py)."""


def _tiny_model():
    from fitrain.train.model import ModelConfig, build_model

    return build_model(ModelConfig(preset="tiny", vocab_multiple=8), 64, "sdpa", seed=0, verbose=False)


def test_compiled_layers_keep_the_checkpoint_state_dict_names():
    """compile=True compiles each decoder layer's forward in place: the parameter names do not change, so a
    checkpoint of a compiled run loads strictly into a fresh model, whichever of them is compiled."""
    from fitrain.train.parallel import compile_layers

    model = _tiny_model()
    keys_before = set(model.state_dict())
    compile_layers(model)
    compile_layers(model)              # idempotent
    layer = model.model.layers[0]
    assert "forward" in vars(layer) and layer._fitrain_compiled
    assert set(model.state_dict()) == keys_before
    _tiny_model().load_state_dict(model.state_dict(), strict=True)


def test_accumulate_auto_keeps_unsharded_gradients_only_where_they_fit():
    """fsdp.accumulate=auto: unsharded when 4 bytes x parameters take at most 10% of the device's memory (1.8b
    on an 80 GB GPU), else sharded (7b; a CPU, whose device memory is unknown); one micro-batch: unsharded."""
    from fitrain.train.parallel import resolve_accumulate

    h100 = 80 * 10**9
    assert resolve_accumulate("auto", 1_810_000_000, h100, 4)[0] == "unsharded"
    mode, why = resolve_accumulate("auto", 7_530_000_000, h100, 2)
    assert mode == "sharded" and "28.1 GiB" in why and "10%" in why
    assert resolve_accumulate("auto", 1_000_000, None, 4)[0] == "sharded"
    assert resolve_accumulate("auto", 7_530_000_000, h100, 1)[0] == "unsharded"
    assert resolve_accumulate("unsharded", 7_530_000_000, h100, 8) == ("unsharded", "set in the config")
