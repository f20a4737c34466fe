"""data_gen's model servers: the lifecycle shared with eval's local judge (fitrain.core.serve)."""
from fitrain.core.serve import ServeConfig, free_port, served, serving  # noqa: F401  (re-exported)
