"""Package discovery only (metadata lives in pyproject.toml).

The eval/ folder is installed as the import package ``fitrain_eval`` (a package named ``eval`` would shadow
the builtin); recipes/ as ``fitrain_recipes``. Namespace discovery picks up data-only folders (prompts, templates, task YAMLs) as they appear.
"""
from setuptools import find_namespace_packages, setup

EXCLUDE = ["*.__pycache__", "*.egg-info"]
packages = find_namespace_packages(include=["fitrain", "fitrain.*", "data_gen", "data_gen.*"], exclude=EXCLUDE)
packages += ["fitrain_eval" + p[len("eval"):] for p in find_namespace_packages(include=["eval", "eval.*"],
                                                                               exclude=EXCLUDE)]
# recipes/ ships too (as ``fitrain_recipes``) so `fitrain train train/fi-300m` works from a wheel install
packages += ["fitrain_recipes" + p[len("recipes"):] for p in find_namespace_packages(include=["recipes", "recipes.*"],
                                                                                     exclude=EXCLUDE)]
setup(packages=packages, package_dir={"fitrain_eval": "eval", "fitrain_recipes": "recipes"})
