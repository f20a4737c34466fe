"""fitrain stands alone: no file of the product, its recipes or its tests names the folder beside the checkout
that this project's workplace keeps its shared data in (a fresh clone has none)."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HOMES = ("fitrain", "data_gen", "eval", "recipes", "tests")


def test_nothing_names_the_folder_beside_the_checkout():
    needle = "/".join(["..", "sha" + "red"])  # built here, so this file does not name it
    hits = []
    for home in HOMES:
        for p in (REPO / home).rglob("*"):
            if p.is_file() and p.suffix not in (".pyc", ".parquet", ".bin", ".pt", ".png", ".safetensors"):
                text = p.read_bytes().decode("utf-8", errors="replace")
                hits += [f"{p.relative_to(REPO)}:{i}" for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert not hits, hits
