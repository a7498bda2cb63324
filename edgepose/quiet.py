"""Keep OpenCV's (and its codecs') own messages off the user's terminal.

OpenCV and the libraries under it (V4L2, libjpeg, FFmpeg) print from C code straight to file
descriptor 2, below ``sys.stderr``; edgepose says the same thing better in one line. OpenCV 4.x
exposes its log level as ``cv2.setLogLevel``, 5.x as ``cv2.utils.logging.setLogLevel``, and
some messages (libjpeg's warnings) bypass both, so :func:`captured_stderr` moves fd 2 itself.
"""
from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from typing import Iterator, List


def _log_api():
    import cv2

    mod = getattr(getattr(cv2, "utils", None), "logging", None)
    if mod is not None and hasattr(mod, "setLogLevel"):
        return mod.getLogLevel, mod.setLogLevel
    if hasattr(cv2, "setLogLevel") and hasattr(cv2, "getLogLevel"):
        return cv2.getLogLevel, cv2.setLogLevel
    return None


@contextmanager
def opencv_silenced() -> Iterator[None]:
    """OpenCV's log level set to silent (0) inside the block, restored after."""
    api = _log_api()
    old = api[0]() if api else None
    if api:
        api[1](0)
    try:
        yield
    finally:
        if api:
            api[1](old)


@contextmanager
def captured_stderr() -> Iterator[List[str]]:
    """Redirect file descriptor 2 into a temporary file inside the block; the yielded list
    holds the captured lines afterwards. Python's ``sys.stderr`` is flushed first, so nothing
    of ours is lost into it; use it around C calls only, on the main thread."""
    lines: List[str] = []
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError, OSError):
        pass
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (a daemon): nothing to capture
        yield lines
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines.extend(ln for ln in tmp.read().decode("utf-8", "replace").splitlines() if ln.strip())
