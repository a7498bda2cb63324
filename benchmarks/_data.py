"""Where the benchmarks find third-party sample data: read in place, never copied into the
repository. ``$EDGEPOSE_TEST_DATA`` when set, else ``../shared/data`` beside the checkout."""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("EDGEPOSE_TEST_DATA") or ROOT.parent / "shared" / "data").resolve()


def need(path: Path) -> Path:
    """``path`` if it exists; else a one-line exit (script) naming what is missing."""
    if not path.exists():
        sys.exit(f"needs the sample data {path} (set EDGEPOSE_TEST_DATA to the shared data folder)")
    return path
