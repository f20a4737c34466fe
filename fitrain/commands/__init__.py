"""One module per ``fitrain`` subcommand (``HELP``, ``DESCRIPTION``, ``add_arguments``, ``run``), each a thin
wrapper that loads a config and calls one entry point; ``common`` holds the RECIPE [key=value ...] parsing.
Command modules import nothing heavy at module level, so ``fitrain --help`` stays fast."""
