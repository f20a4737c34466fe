"""The value checks config dataclasses run on construction (fitrain.core.checks)."""
from dataclasses import dataclass, field

import pytest

from fitrain.core.checks import (FRACTION, SEED, ConfigValueError, above, at_least, check_fields, fail, finite, integer,
                                 interval, one_of, regex, seq_len)

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("check, good, bad, must", [
    (at_least(1), [1, 2.5, 10**12], [0, -1, NAN, INF], "must be >= 1"),
    (above(0), [1e-12, 3], [0, -1e-9, NAN, INF], "must be > 0"),
    (interval("(0, 1)"), [0.5, 1e-9], [0, 1, NAN, -INF], "must be in (0, 1)"),
    (FRACTION, [0, 1, 0.25], [-0.01, 1.01, NAN], "must be in [0, 1]"),
    (SEED, [0, 2**32 - 1, 7.0], [-1, 2**32, 1.5, NAN, True], "must be"),
    (finite, [0, -3.5, 1e300], [NAN, INF, -INF, "x"], "must be"),
    (one_of("a", "b"), ["a", "b"], ["c", "", None], "must be one of ['a', 'b']"),
    (regex, ["^Q: (.*)$", ""], ["(a", 3], "must be a valid regular expression"),
    (seq_len, [2, 4096, 2**20], [1, 2**20 + 1, 10**9], "must be in [2, 2**20]"),
])
def test_each_check_passes_good_values_and_names_what_a_bad_one_must_be(check, good, bad, must):
    assert [check(v) for v in good] == [""] * len(good)
    problems = [check(v) for v in bad]
    assert all(problems), list(zip(bad, problems))
    assert all(must in p for p in problems), problems


def test_messages_for_seeds_and_huge_lengths():
    assert SEED(-1) == "must be in [0, 2**32)" and SEED(1.5) == "must be a whole number"
    assert SEED(True) == "must be a number" and at_least(1)("3") == "must be a number" and seq_len(2.5) != ""
    assert "1,048,576 positions" in seq_len(10**9) and "1,000,000,000" in seq_len(10**9)
    assert integer(at_least(0))(3.0) == "" and interval("[0, 2**8]")(256) == ""


@dataclass
class Box:
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    ratio: float | None = None
    low: int = 1
    high: int = 2

    def __post_init__(self) -> None:
        check_fields(self, sizes=at_least(1), ratio=FRACTION)
        if self.low > self.high:
            fail("low", f"({self.low}) must be <= high ({self.high})")


def test_check_fields_names_list_items_passes_unset_optionals_and_fail_names_the_key():
    assert Box(ratio=None).ratio is None
    with pytest.raises(ConfigValueError, match=r"^sizes\[1\] must be >= 1, got 0$"):
        Box(sizes=[3, 0])
    with pytest.raises(ConfigValueError, match=r"^ratio must be in \[0, 1\], got nan$"):
        Box(ratio=NAN)
    with pytest.raises(ConfigValueError) as e:
        Box(low=5)
    assert (e.value.key, e.value.problem) == ("low", "(5) must be <= high (2)")
    assert str(e.value.under("a.b.")) == "a.b.low (5) must be <= high (2)" and e.value.under("") is e.value
