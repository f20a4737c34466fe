"""The offline fallback's judge against pairs labelled by hand (tests/data_gen/fixtures/fallback_labels.jsonl:
100 pairs drawn from the quickstart's Python-documentation corpus and from the Dolly contexts with the Dolly
instructions, kept and dropped ones, each labelled sensible or not by the rule in the file's first line;
benchmarks/fallback_quality.py draws and reports them). The judge's keep/drop must agree with the labels on
at least 75% of them, and at least half of the pairs it keeps must be sensible."""
from collections import Counter

from tests.helpers.fallback_labels import figures, load_labels, rejudge


def test_the_labelled_sample_covers_two_corpora_and_dropped_pairs():
    rule, rows = load_labels()
    assert rule.startswith("sensible:")
    by = Counter((r["corpus"], r["judge_score_when_drawn"] >= 4) for r in rows)
    assert by[("python-docs", True)] + by[("dolly", True)] >= 60  # kept pairs of two corpora
    assert by[("python-docs", False)] and by[("dolly", False)]   # and dropped ones
    assert {r["label"] for r in rows} == {"sensible", "not"}


def test_the_fallback_judge_agrees_with_the_labels(encoder):
    _, rows = load_labels()
    f = figures(rows, rejudge(rows, encoder))
    assert f["all"]["agreement"] >= 0.75, f
    assert f["all"]["sensible_of_kept"] >= 0.5, f
    for corpus in ("python-docs", "dolly"):
        assert f[corpus]["sensible_of_kept"] >= 0.5, f
