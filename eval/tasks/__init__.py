"""Offline lm-eval task YAMLs (with their data files) shipped with fitrain; see harness.py."""
