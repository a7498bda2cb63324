"""Choice between the native kernels (``edgepose._native``) and their NumPy twins.

``EDGEPOSE_IMPL=numpy`` forces the twins, ``native`` requires the extension, ``auto`` (the
default) uses the extension when it imports. :func:`implementation` says which is active.
"""
from __future__ import annotations

import logging
import os
from types import ModuleType
from typing import Optional

_log = logging.getLogger("edgepose")
_VALID = ("auto", "native", "numpy")

try:  # the compiled core; absent when built without a compiler
    from . import _native as _native_mod  # type: ignore[attr-defined]

    _IMPORT_ERROR: Optional[str] = None
except ImportError as exc:  # pragma: no cover - depends on the build
    _native_mod = None
    _IMPORT_ERROR = str(exc)

_choice = os.environ.get("EDGEPOSE_IMPL", "auto").strip().lower() or "auto"
_warned = False


def _check(choice: str) -> str:
    if choice not in _VALID:
        raise ValueError(f"EDGEPOSE_IMPL / implementation: expected one of {_VALID}, got {choice!r}")
    if choice == "native" and _native_mod is None:
        raise ImportError(
            f"edgepose._native is not built ({_IMPORT_ERROR}); reinstall with a C++17 compiler: pip install ."
        )
    return choice


def native() -> Optional[ModuleType]:
    """The native module if it is the active implementation, else None (use the twins)."""
    global _warned
    if _choice == "numpy":
        return None
    if _native_mod is None and not _warned:
        _warned = True
        _log.warning("edgepose: native kernels not built (%s); using the NumPy twins", _IMPORT_ERROR)
    return _native_mod


def implementation() -> str:
    """``"native"`` or ``"numpy"``: what the kernels run on now."""
    return "native" if (_choice != "numpy" and _native_mod is not None) else "numpy"


def set_implementation(choice: str) -> None:
    """Switch between ``"auto"``, ``"native"`` and ``"numpy"`` at run time (tests, benchmarks)."""
    global _choice
    _choice = _check(choice.strip().lower())


def native_available() -> bool:
    return _native_mod is not None


_check(_choice)
