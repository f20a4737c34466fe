"""Where the tests find the repository and the shared data sets (``../shared`` beside the checkout)."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
if not SHARED_DATA.is_dir():  # a checkout elsewhere: the shared data of this workplace
    SHARED_DATA = Path("/work/shared/data")
