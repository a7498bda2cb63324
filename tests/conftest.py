import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _shared(var: str, sub: str) -> Path:
    """Third-party test inputs are read in place, never copied into the repository:
    ``$var`` when set, else ``../shared/<sub>`` beside the checkout (where CI lays it)."""
    env = os.environ.get(var)
    return Path(env).resolve() if env else (ROOT.parent / "shared" / sub).resolve()


# third-party data (COCO/MPII/PoseTrack samples, the sample clip) and real trained models
DATA = _shared("EDGEPOSE_TEST_DATA", "data")
MODELS = _shared("EDGEPOSE_TEST_MODELS", "models")
# files that edgepose made itself stay in the repository
OWN_DATA = ROOT / "tests" / "data"


def need_data(*parts: str) -> Path:
    """``DATA/parts``, or skip the calling test with one line naming what it needs."""
    p = DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"needs third-party test data {p} (set EDGEPOSE_TEST_DATA to the shared data folder)")
    return p


def need_model(name: str) -> Path:
    """``MODELS/name``, or skip the calling test with one line naming what it needs."""
    p = MODELS / name
    if not p.is_file():
        pytest.skip(f"needs the real model {p} (set EDGEPOSE_TEST_MODELS to the shared models folder)")
    return p


@pytest.fixture
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"needs third-party test data in {DATA} (set EDGEPOSE_TEST_DATA)")
    return DATA


needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"needs third-party test data in {DATA} (set EDGEPOSE_TEST_DATA to the shared data folder)")
