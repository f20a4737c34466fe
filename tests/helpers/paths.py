"""Where the tests find the repository and their data: small subsets of the benchmark and Dolly files, carried
in tests/fixtures (PROVENANCE.md there: sources, licences, selection). Nothing outside the repository."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
