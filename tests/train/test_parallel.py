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
