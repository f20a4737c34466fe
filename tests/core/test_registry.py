"""Registries of plug-ins: built-ins imported on first use in their listed order, one registration adds an
entry, a taken or empty name and an unknown one are one-line errors."""
from dataclasses import dataclass

import pytest

from fitrain.core.errors import FitrainError
from fitrain.core.registry import Registry


@dataclass
class Entry:
    name: str


def test_builtins_first_then_registered_entries(tmp_path, monkeypatch):
    for i, name in enumerate(("zeta", "alpha")):
        (tmp_path / f"reg_mod{i}.py").write_text(f"from dataclasses import make_dataclass\n"
                                                 f"ITEM = make_dataclass('E', ['name'])({name!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg: Registry[Entry] = Registry("thing", ("reg_mod0", "reg_mod1"), "ITEM")
    assert list(reg.all()) == ["zeta", "alpha"]
    reg.register(Entry("mid"))
    assert list(reg.all()) == ["zeta", "alpha", "mid"] and reg.get("mid", "x").name == "mid"
    with pytest.raises(FitrainError, match=r"thing 'alpha' is empty or already registered \(zeta, alpha, mid\)"):
        reg.register(Entry("alpha"))
    with pytest.raises(FitrainError, match="thing '' is empty"):
        reg.register(Entry(""))
    reg.unregister("mid")
    with pytest.raises(FitrainError, match=r"^arm 'a': unknown thing 'mid'; one of zeta, alpha$"):
        reg.get("mid", "arm 'a'")
