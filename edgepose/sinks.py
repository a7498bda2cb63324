"""``edgepose run``'s file outputs, written so that a full disk loses nothing already written.

* :class:`JsonlSink`: one JSON line per frame, each written whole with ``os.write``; if the
  disk fills mid-line the file is truncated back to the last complete line.
* :class:`VideoSink`: the annotated video through ``cv2.VideoWriter`` (mp4v). An MP4 is only
  playable once its index (``moov``) is written at ``release()``, and OpenCV's writer fails
  silently when the disk is full, so the sink stops *before* that: it keeps a reserve of free
  space for the index (64 bytes per frame written, plus twice the largest growth of the
  file per frame, plus 64 KB) and ends the run while the reserve is still there.
* :class:`DiskGuard`: the free-space check both share (they are usually on the same disk).

Both raise :class:`OutputFull` (one line naming the file; ``edgepose run`` exits 2).
"""
from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

_BASE_RESERVE = 64 * 1024
_PER_FRAME_INDEX = 64


class OutputFull(Exception):
    """An output's disk is full (or the write failed); what was written before stays valid."""


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the file system holding ``path``."""
    st = os.statvfs(str(path.parent if not path.is_dir() else path))
    return int(st.f_bavail) * int(st.f_frsize)


class DiskGuard:
    """Refuses a write that would leave less than the video's reserve free."""

    def __init__(self) -> None:
        self.video: Optional["VideoSink"] = None

    def check(self, path: Path, need: int, what: str) -> None:
        reserve = self.video.reserve() if self.video is not None else 64 * 1024
        try:
            free = free_bytes(path)
        except OSError:
            return  # statvfs unsupported here: rely on the write errors
        if free < need + reserve:
            raise OutputFull(f"{what} {path}: the disk is full ({free // 1024} KB left); stopped here, "
                             "the outputs written so far are complete; free some space or write elsewhere")


class JsonlSink:
    """Append-only JSON lines file; every line is complete on disk or not there at all."""

    def __init__(self, path: Path, overwrite: bool, guard: Optional[DiskGuard] = None) -> None:
        self.path = Path(path)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
        self.fd: Optional[int] = os.open(str(self.path), flags, 0o644)
        self.good = 0  # bytes of complete lines
        self.guard = guard

    def write_line(self, text: str) -> None:
        data = (text + "\n").encode("utf-8")
        if self.guard is not None:
            self.guard.check(self.path, len(data), "--jsonl")
        view = memoryview(data)
        try:
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
        except OSError as exc:
            os.ftruncate(self.fd, self.good)  # drop the partial line
            os.lseek(self.fd, self.good, os.SEEK_SET)
            why = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else (exc.strerror or str(exc))
            raise OutputFull(f"--jsonl {self.path}: {why}; stopped here, the {self.good} bytes of complete lines "
                             "written so far are kept") from None
        self.good += len(data)

    def flush(self) -> None:
        pass  # every line is written through at once

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class StreamLines:
    """JSON lines to a text stream (``--jsonl -``: stdout), with the sinks' interface."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write_line(self, text: str) -> None:
        self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        self.flush()


class VideoSink:
    """mp4v video opened on the first frame; stops while its index still fits on the disk."""

    def __init__(self, path: Path, fps: float, guard: Optional[DiskGuard] = None) -> None:
        self.path = Path(path)
        self.fps = float(fps)
        self.writer = None
        self.frames = 0
        self.max_growth = 0
        self._size = 0
        self.guard = guard
        if guard is not None:
            guard.video = self

    def reserve(self) -> int:
        """Free bytes to keep for the MP4 index and the frames the encoder still buffers."""
        return _BASE_RESERVE + _PER_FRAME_INDEX * self.frames + 2 * self.max_growth

    def write(self, frame: np.ndarray) -> None:
        import cv2

        if self.writer is None:
            size: Tuple[int, int] = (frame.shape[1], frame.shape[0])
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, size)
            if not self.writer.isOpened():
                self.writer = None
                raise ValueError(f"--out {self.path}: OpenCV cannot write this video (try a .mp4 name)")
        if self.guard is not None:
            self.guard.check(self.path, 0, "--out")
        self.writer.write(frame)
        self.frames += 1
        try:
            size_now = os.path.getsize(self.path)
        except OSError:
            return
        self.max_growth = max(self.max_growth, size_now - self._size)
        self._size = size_now

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
