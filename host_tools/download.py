"""Verified downloads into the cache (stdlib ``urllib`` only).

:func:`fetch` writes ``<dest>.part`` beside the destination and moves it to ``dest`` only after
its sha256 (or the published prefix of it) matched, so a file under its final name in the
cache is always a checked one. Rules:

* an existing ``.part`` is resumed with an HTTP ``Range`` request; a server that ignores
  ``Range`` (status 200) restarts the file from byte 0;
* a transfer that stops early (connection dropped, fewer bytes than ``Content-Length`` or than
  the registry's size, a stalled socket) is resumed up to ``retries`` times in the same call;
  if it still fails, the ``.part`` is kept so that the next pull resumes it, and the error says so;
* a wrong hash, a full disk (``ENOSPC``) or a file longer than expected deletes the ``.part``;
* no connection at all (refused, unknown host) creates nothing.

Every failure is one :class:`DownloadError` line naming the file and the fix. Progress goes to
stderr: a bar redrawn in place on a terminal, a line per quarter otherwise.
"""
from __future__ import annotations

import errno
import hashlib
import http.client
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Optional

from host_tools.errors import UserError

CHUNK = 1 << 20
USER_AGENT = "edgepose-host-tools"


class DownloadError(UserError):
    """A download that could not complete; the message is one line."""


class _Interrupted(Exception):
    """The transfer stopped early; the bytes so far are in the ``.part``."""


class Progress:
    """A progress bar on ``stream`` (stderr): ``label  42% [#####.....] 12.3/29.1 MB 4.1 MB/s``."""

    def __init__(self, label: str, total: int, start: int = 0, stream: Optional[IO[str]] = None,
                 min_interval: float = 0.1) -> None:
        self.label, self.total, self.done = label, total, start
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.monotonic()
        self.start = start
        self.last = 0.0
        self.min_interval = min_interval
        self.quarter = -1

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.tty:
            if now - self.last >= self.min_interval:
                self.last = now
                self.stream.write("\r" + self.text())
                self.stream.flush()
        elif self.total:
            q = min(4, 4 * self.done // self.total)
            if q > self.quarter:
                self.quarter = q
                self.stream.write(self.text() + "\n")
                self.stream.flush()

    def text(self) -> str:
        rate = (self.done - self.start) / max(time.monotonic() - self.t0, 1e-6) / 1e6
        if self.total:
            frac = min(1.0, self.done / self.total)
            bar = "#" * int(frac * 24)
            return (f"{self.label} {int(frac * 100):3d}% [{bar:<24}] {self.done / 1e6:.1f}/{self.total / 1e6:.1f} MB "
                    f"{rate:.1f} MB/s")
        return f"{self.label} {self.done / 1e6:.1f} MB {rate:.1f} MB/s"

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r" + self.text() + "\n")
            self.stream.flush()
        elif not self.total:
            self.stream.write(self.text() + "\n")


def file_digest(path: Path) -> str:
    """sha256 hex digest of ``path``, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def digest_matches(actual: str, expected: str) -> bool:
    """Whether the full hex digest ``actual`` matches ``expected`` (a full digest or a prefix)."""
    return bool(expected) and actual.lower().startswith(expected.lower())


def _part(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _remove(p: Path) -> None:
    try:
        p.unlink()
    except FileNotFoundError:
        pass


def _reason(exc: BaseException) -> str:
    r = getattr(exc, "reason", None) or exc
    text = str(r) or type(r).__name__
    return text.replace("\n", " ")


def _open(url: str, offset: int, timeout: float):
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(req, timeout=timeout)


def _no_space(dest: Path, need: int) -> DownloadError:
    return DownloadError(f"{dest.name}: no space left on the disk of {dest.parent}"
                         + (f" (needs {need / 1e6:.1f} MB)" if need else "")
                         + "; free some space or point EDGEPOSE_CACHE at another disk (nothing was kept)")


def _connect(url: str, offset: int, timeout: float, part: Path):
    try:
        return _open(url, offset, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing after our offset: the .part may already be whole
            return None
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}; check the URL or EDGEPOSE_MODEL_MIRROR") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        kept = f" ({offset} bytes kept in {part} for the next pull)" if offset else ""
        raise DownloadError(f"{url}: cannot connect ({_reason(exc)}); check the network, or set "
                            f"EDGEPOSE_MODEL_MIRROR=URL to a mirror that holds the file{kept}") from None


def _transfer(url: str, dest: Path, part: Path, size: int, timeout: float, label: str, quiet: bool) -> None:
    """One request: append to (or restart) ``part``. Raises _Interrupted on an early end."""
    offset = part.stat().st_size if part.exists() else 0
    if size and offset >= size:
        if offset > size:
            _remove(part)
        return  # whole (or too long: removed, so the size check below reports it)
    resp = _connect(url, offset, timeout, part)
    if resp is None:
        return
    status = getattr(resp, "status", 200)
    if status == 206 and not resp.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
        resp.close()  # a range we did not ask for: start again from byte 0
        offset = 0
        resp = _connect(url, 0, timeout, part)
        status = getattr(resp, "status", 200)
    if status != 206:
        if offset and not quiet:
            print(f"{label}: the server ignores Range requests; restarting from byte 0", file=sys.stderr)
        offset = 0
    mode = "ab" if offset else "wb"
    with resp:
        length = resp.headers.get("Content-Length")
        total = (offset + int(length)) if length and length.isdigit() else size
        want = max(0, (total or size) - offset)
        if want and shutil.disk_usage(part.parent).free < want:
            _remove(part)
            raise _no_space(dest, want)
        bar = None if quiet else Progress(label, total or size, offset)
        try:
            with open(part, mode) as f:
                while True:
                    try:
                        block = resp.read(CHUNK)
                    except (http.client.IncompleteRead, OSError, http.client.HTTPException) as exc:
                        raise _Interrupted(_reason(exc) or "connection closed") from None
                    if not block:
                        break
                    f.write(block)
                    if bar:
                        bar.update(len(block))
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            _remove(part)
            if exc.errno == errno.ENOSPC:
                raise _no_space(dest, want) from None
            raise DownloadError(f"{part}: cannot write ({exc.strerror or exc}); set EDGEPOSE_CACHE to a writable "
                                "folder (nothing was kept)") from None
        finally:
            if bar:
                bar.close()
    got = part.stat().st_size
    expect = total or size
    if expect and got < expect:
        raise _Interrupted(f"{got} of {expect} bytes arrived")


def fetch(url: str, dest: Path, digest: str, size: int = 0, timeout: float = 60.0, retries: int = 3,
          label: Optional[str] = None, quiet: bool = False) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, checking ``digest`` (a full sha256 hex
    digest or its leading digits) and ``size`` (bytes, 0 = unknown) before the file is moved to
    ``dest`` (an existing ``dest`` is replaced only by a file that passed; callers check cache
    hits themselves with :func:`cached`).

    Args:
        timeout: seconds a connect or a read may stall before the transfer counts as interrupted.
        retries: further attempts (each resuming the ``.part``) after an interrupted transfer.
    Raises:
        DownloadError: one line; see the module docstring for what is kept.
    """
    if not digest:
        raise ValueError("fetch: a digest to check is required")
    dest = Path(dest)
    part = _part(dest)
    label = label or dest.name
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"{dest.parent}: cannot create the cache folder ({exc.strerror}); set EDGEPOSE_CACHE "
                            "to a writable folder") from None
    last = ""
    for attempt in range(retries + 1):
        try:
            _transfer(url, dest, part, size, timeout, label, quiet)
            break
        except _Interrupted as exc:
            last = str(exc)
            if not quiet and attempt < retries:
                have = part.stat().st_size if part.exists() else 0
                print(f"{label}: transfer interrupted ({last}); resuming at byte {have}", file=sys.stderr)
            time.sleep(min(0.2 * (attempt + 1), 1.0))
    else:
        have = part.stat().st_size if part.exists() else 0
        raise DownloadError(f"{label}: download interrupted after {retries + 1} tries ({last}); {have} bytes kept in "
                            f"{part}: run the same pull again to resume")
    if not part.exists():
        raise DownloadError(f"{label}: the server sent nothing; check the URL or EDGEPOSE_MODEL_MIRROR")
    got = part.stat().st_size
    if size and got != size:
        _remove(part)
        raise DownloadError(f"{label}: got {got} bytes from {url}, expected {size}; the file there is not the "
                            "registered one (deleted; check EDGEPOSE_MODEL_MIRROR)")
    actual = file_digest(part)
    if not digest_matches(actual, digest):
        _remove(part)
        raise DownloadError(f"{label}: sha256 {actual[:16]}... does not match the registered {digest[:16]}... "
                            f"(from {url}); the file was deleted: the source serves another file")
    os.replace(part, dest)
    return dest


def cached(dest: Path, digest: str) -> bool:
    """Whether ``dest`` exists and its sha256 matches ``digest``; a mismatching file is removed
    (it can only be a damaged copy) so that the next fetch replaces it."""
    if not dest.is_file():
        return False
    if digest_matches(file_digest(dest), digest):
        return True
    print(f"{dest}: the cached file no longer matches its sha256; downloading it again", file=sys.stderr)
    _remove(dest)
    return False


__all__ = ["DownloadError", "Progress", "fetch", "cached", "file_digest", "digest_matches"]
