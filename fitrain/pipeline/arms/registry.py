"""The kinds of arm, by their ``kind:`` value. A kind is one module under fitrain/pipeline/arms/ defining an
:class:`~fitrain.pipeline.arms.base.ArmKind` subclass instance as ``KIND``, plus one line in :data:`BUILTIN`;
a kind defined elsewhere (a project's own, a test's) plugs in with one call to :func:`register`.

The built-in modules are imported on first use: they build experiment steps, so they import the experiment
(fitrain.pipeline.experiment), which itself only needs the arm interface (fitrain.pipeline.arms.base).
"""
from __future__ import annotations

from fitrain.core.registry import Registry
from fitrain.pipeline.arms.base import ArmKind

BUILTIN = (  # one line per kind: the module whose KIND it is
    "fitrain.pipeline.arms.fi",
    "fitrain.pipeline.arms.documents",
    "fitrain.pipeline.arms.corpus",
    "fitrain.pipeline.arms.mixture",
    "fitrain.pipeline.arms.generated",
)
KINDS: Registry[ArmKind] = Registry("kind", BUILTIN, "KIND")


register = KINDS.register        # register(kind): plug a kind in; a name already taken is refused
unregister = KINDS.unregister
kinds = KINDS.all                # every registered kind by name, the built-ins first
get = KINDS.get                  # get(name, who): the kind, or an error naming the known ones
