"""Prompt files of the data-generation stages (YAML: ``system``, ``user`` with ``{{name}}`` fields); see
data_gen/prompting.py."""
