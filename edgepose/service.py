"""Launcher of ``edgepose.service``: ``python -m edgepose.service [--check] SETTINGS``.

It reads the settings file (``/etc/edgepose/edgepose.env``: ``KEY=VALUE`` lines, ``#`` comments,
optionally quoted values, no shell expansion), refuses unsafe or unusable settings with one line
(exit 2), and then runs ``edgepose run`` in this process, so the preview token never appears on
a command line (``/proc/PID/cmdline`` is readable by every user).

Rules:

* ``EDGEPOSE_SERVE`` binds 127.0.0.1 unless it names another host; a non-loopback address
  needs ``EDGEPOSE_TOKEN`` of at least :data:`MIN_TOKEN` characters, otherwise the service does
  not start.
* ``EDGEPOSE_JSONL`` is ``-`` (the journal) or a file in the state folder
  (``$STATE_DIRECTORY``, /var/lib/edgepose: the only place the hardened unit may write); an
  earlier file of that name is kept under a time-stamped name rather than overwritten.
* Restart back-off: systemd 252 (Debian bookworm) has no ``RestartSteps=``, so the launcher
  keeps a count of consecutive failed starts in the state folder and waits
  :func:`backoff_delay` seconds before the next try; a run that lasts :data:`HEALTHY_AFTER_S`
  seconds or ends cleanly resets it.

``--check`` validates the file (and that the model and its sidecar exist) and prints the
``edgepose run`` command it would run, token masked; exit 0 when the service can start.
"""
from __future__ import annotations

import ipaddress
import json
import os
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

DEFAULT_SETTINGS = "/etc/edgepose/edgepose.env"
KEYS = ("EDGEPOSE_CAMERA", "EDGEPOSE_MODEL", "EDGEPOSE_SERVE", "EDGEPOSE_TOKEN", "EDGEPOSE_JSONL", "EDGEPOSE_EXTRA")
MIN_TOKEN = 16
HEALTHY_AFTER_S = 60.0
# options that have their own key (so that the loopback/token rule cannot be bypassed)
OWN_KEYS = {"--serve": "EDGEPOSE_SERVE", "--token": "EDGEPOSE_TOKEN", "--model": "EDGEPOSE_MODEL",
            "--camera": "EDGEPOSE_CAMERA", "--video": "EDGEPOSE_CAMERA", "--image": "EDGEPOSE_CAMERA",
            "--jsonl": "EDGEPOSE_JSONL"}


class SettingsError(ValueError):
    """A setting the service cannot start with; the message names the key and the fix."""


def read_settings(path: str | Path) -> Dict[str, str]:
    """``KEY=VALUE`` lines of ``path`` -> dict (unknown ``EDGEPOSE_*`` keys are an error: a typo
    would otherwise silently fall back to a default)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise SettingsError(f"{p}: cannot read the settings ({exc.strerror}); reinstall the bundle or restore the file")
    out: Dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key.isidentifier():
            raise SettingsError(f"{p}:{n}: expected KEY=VALUE, got {raw.strip()!r}")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if key not in KEYS:
            raise SettingsError(f"{p}:{n}: unknown setting {key}; the settings are {', '.join(KEYS)}")
        out[key] = value
    return out


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IPs (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def service_argv(settings: Dict[str, str], state_dir: Optional[str | Path] = None) -> List[str]:
    """The ``edgepose run`` arguments for ``settings``; SettingsError when the service must not
    start with them.

    Args:
        settings: from :func:`read_settings`.
        state_dir: the writable state folder (``$STATE_DIRECTORY``); None allows any JSONL path.
    """
    from .serve import parse_address

    model = settings.get("EDGEPOSE_MODEL", "")
    if not model:
        raise SettingsError("EDGEPOSE_MODEL is empty; set it to the installed .rknn, e.g. /opt/edgepose/models/model.rknn")
    argv = ["run", "--camera", settings.get("EDGEPOSE_CAMERA", "0") or "0", "--model", model, "--quiet"]
    serve = settings.get("EDGEPOSE_SERVE", "127.0.0.1:8080")
    token = settings.get("EDGEPOSE_TOKEN", "")
    if serve:
        try:
            host, port = parse_address(serve)
        except ValueError as exc:
            raise SettingsError(f"EDGEPOSE_SERVE={serve}: {exc}") from None
        if not is_loopback(host):
            if not token:
                raise SettingsError(f"EDGEPOSE_SERVE={serve}: refusing to serve the camera on a non-loopback address "
                                    f"without EDGEPOSE_TOKEN; set a token of {MIN_TOKEN}+ characters, or bind "
                                    "127.0.0.1 and use ssh -L")
            if len(token) < MIN_TOKEN:
                raise SettingsError(f"EDGEPOSE_TOKEN: {len(token)} characters is too short for a non-loopback preview; "
                                    f"use at least {MIN_TOKEN} (e.g. openssl rand -hex 16)")
        argv += ["--serve", f"{host}:{port}"]
        if token:
            argv += ["--token", token]
    elif token:
        raise SettingsError("EDGEPOSE_TOKEN is set but EDGEPOSE_SERVE is empty; set both or neither")
    jsonl = settings.get("EDGEPOSE_JSONL", "-")
    if jsonl and jsonl != "-":
        if state_dir is not None and not _inside(Path(jsonl), Path(state_dir)):
            raise SettingsError(f"EDGEPOSE_JSONL={jsonl}: the service may only write under {state_dir}; "
                                f"use e.g. {Path(state_dir) / 'poses.jsonl'} or '-' for the journal")
    if jsonl:
        argv += ["--jsonl", jsonl]
    try:
        extra = shlex.split(settings.get("EDGEPOSE_EXTRA", ""))
    except ValueError as exc:
        raise SettingsError(f"EDGEPOSE_EXTRA: {exc} (unbalanced quotes?)") from None
    for opt in extra:
        name = opt.split("=", 1)[0]
        if name in OWN_KEYS:
            raise SettingsError(f"EDGEPOSE_EXTRA: {name} has its own setting; use {OWN_KEYS[name]} instead")
    return argv + extra


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def masked(argv: Sequence[str]) -> str:
    """The command line with the token replaced by ``***``."""
    out = list(argv)
    for i, a in enumerate(out[:-1]):
        if a == "--token":
            out[i + 1] = "***"
    return "edgepose " + " ".join(shlex.quote(a) for a in out)


def backoff_delay(failures: int, base: float = 2.0, cap: float = 60.0) -> float:
    """Seconds to wait before a start that follows ``failures`` consecutive failed runs:
    0, then ``base``, ``2 base``, ``4 base`` ... up to ``cap``."""
    if failures <= 0:
        return 0.0
    return float(min(cap, base * 2 ** min(failures - 1, 30)))


class RestartCounter:
    """Consecutive failed starts, kept in ``state_dir/restarts.json``."""

    def __init__(self, state_dir: str | Path) -> None:
        self.path = Path(state_dir) / "restarts.json"

    def read(self) -> int:
        try:
            return max(0, int(json.loads(self.path.read_text()).get("failures", 0)))
        except (OSError, ValueError, AttributeError):
            return 0

    def write(self, failures: int) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(json.dumps({"failures": int(failures), "time": time.time()}) + "\n")
            os.replace(tmp, self.path)
        except OSError:
            pass  # no state folder (run by hand): no back-off


def _keep_previous(jsonl: str) -> None:
    p = Path(jsonl)
    if p.is_file():
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(p.stat().st_mtime))
        dest = p.with_name(f"{p.stem}.{stamp}{p.suffix}")
        n = 1
        while dest.exists():
            dest = p.with_name(f"{p.stem}.{stamp}-{n}{p.suffix}")
            n += 1
        p.rename(dest)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    args = [a for a in args if a != "--check"]
    if len(args) > 1 or any(a.startswith("-") for a in args):
        print("usage: python -m edgepose.service [--check] [SETTINGS]  (default " + DEFAULT_SETTINGS + ")",
              file=sys.stderr)
        return 2
    path = args[0] if args else DEFAULT_SETTINGS
    state_dir = os.environ.get("STATE_DIRECTORY", "").split(":")[0] or None
    try:
        settings = read_settings(path)
        run_argv = service_argv(settings, state_dir)
        if check:
            from .metadata import sidecar_path

            model = Path(settings["EDGEPOSE_MODEL"])
            if not model.is_file():
                raise SettingsError(f"EDGEPOSE_MODEL={model}: no such model; install one into /opt/edgepose/models")
            if model.suffix == ".rknn" and not sidecar_path(model).is_file():
                raise SettingsError(f"EDGEPOSE_MODEL={model}: its sidecar {sidecar_path(model).name} is missing; "
                                    "copy it from the host (host_tools build-rknn writes it)")
    except SettingsError as exc:
        print(f"edgepose.service: {path}: {exc}" if not str(exc).startswith(str(path)) else f"edgepose.service: {exc}",
              file=sys.stderr)
        return 2
    if check:
        print(f"edgepose.service: {path}: ok: {masked(run_argv)}")
        return 0

    counter = RestartCounter(state_dir) if state_dir else None
    if counter is not None:
        failures = counter.read()
        delay = backoff_delay(failures)
        if delay:
            print(f"edgepose.service: {failures} failed start(s) in a row; waiting {delay:.0f} s before this one",
                  file=sys.stderr, flush=True)
            time.sleep(delay)
        counter.write(failures + 1)  # counted as failed until it proves healthy
        healthy = threading.Timer(HEALTHY_AFTER_S, counter.write, args=(0,))
        healthy.daemon = True
        healthy.start()
    jsonl = settings.get("EDGEPOSE_JSONL", "-")
    if jsonl and jsonl != "-":
        _keep_previous(jsonl)
    from .cli import main as cli_main

    rc = int(cli_main(run_argv) or 0)
    if counter is not None and rc == 0:
        counter.write(0)
    return rc


if __name__ == "__main__":
    sys.exit(main())
