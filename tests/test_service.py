"""The systemd launcher (``python -m edgepose.service``): settings file, the loopback/token
rule, the state-folder rule, the back-off, and the hand-over to ``edgepose run``."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgepose import service
from edgepose.service import (MIN_TOKEN, RestartCounter, SettingsError, backoff_delay, is_loopback, masked,
                              read_settings, service_argv)

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "0123456789abcdef0123"


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "edgepose.env"
    p.write_text(text)
    return p


def test_default_settings_file_gives_loopback_preview(tmp_path):
    default = ROOT / "firmware" / "edgepose.env"
    if not default.is_file():
        pytest.skip("firmware/ not present (tests copied alone)")
    s = read_settings(default)
    assert s["EDGEPOSE_SERVE"] == "127.0.0.1:8080" and s["EDGEPOSE_TOKEN"] == ""
    argv = service_argv(s)
    assert argv[:5] == ["run", "--camera", "0", "--model", "/opt/edgepose/models/model.rknn"]
    assert argv[argv.index("--serve") + 1] == "127.0.0.1:8080" and "--token" not in argv
    assert argv[argv.index("--jsonl") + 1] == "-"


def test_parsing_quotes_comments_and_errors(tmp_path):
    p = _write(tmp_path, "# c\n\nEDGEPOSE_MODEL='/m x.rknn'\nEDGEPOSE_EXTRA=\"--flip-test --max-age 5\"\n")
    s = read_settings(p)
    assert s == {"EDGEPOSE_MODEL": "/m x.rknn", "EDGEPOSE_EXTRA": "--flip-test --max-age 5"}
    argv = service_argv(s)
    assert argv[-3:] == ["--flip-test", "--max-age", "5"] and "/m x.rknn" in argv
    with pytest.raises(SettingsError, match=r"edgepose.env:2: unknown setting EDGEPOSE_SERV\b"):
        read_settings(_write(tmp_path, "EDGEPOSE_MODEL=/m\nEDGEPOSE_SERV=0.0.0.0:1\n"))
    with pytest.raises(SettingsError, match="expected KEY=VALUE"):
        read_settings(_write(tmp_path, "EDGEPOSE_MODEL /m\n"))
    with pytest.raises(SettingsError, match="cannot read"):
        read_settings(tmp_path / "absent.env")


@pytest.mark.parametrize("host,loop", [("127.0.0.1", True), ("127.3.0.1", True), ("::1", True),
                                       ("localhost", True), ("0.0.0.0", False), ("192.168.1.5", False),
                                       ("::", False), ("board.local", False)])
def test_is_loopback(host, loop):
    assert is_loopback(host) is loop


def test_non_loopback_needs_a_long_token():
    base = {"EDGEPOSE_MODEL": "/m.rknn", "EDGEPOSE_SERVE": "0.0.0.0:8080"}
    with pytest.raises(SettingsError, match="refusing to serve .* without EDGEPOSE_TOKEN"):
        service_argv(base)
    with pytest.raises(SettingsError, match=f"at least {MIN_TOKEN}"):
        service_argv({**base, "EDGEPOSE_TOKEN": "short"})
    argv = service_argv({**base, "EDGEPOSE_TOKEN": TOKEN})
    assert argv[argv.index("--serve") + 1] == "0.0.0.0:8080" and argv[argv.index("--token") + 1] == TOKEN
    assert TOKEN not in masked(argv) and "--token '***'" in masked(argv)
    # ":8080" binds loopback (serve.parse_address's default): no token needed
    argv = service_argv({"EDGEPOSE_MODEL": "/m.rknn", "EDGEPOSE_SERVE": ":8080"})
    assert argv[argv.index("--serve") + 1] == "127.0.0.1:8080"
    # no preview at all; a token without a preview is a mistake worth a line
    assert "--serve" not in service_argv({"EDGEPOSE_MODEL": "/m.rknn", "EDGEPOSE_SERVE": ""})
    with pytest.raises(SettingsError, match="EDGEPOSE_SERVE is empty"):
        service_argv({"EDGEPOSE_MODEL": "/m.rknn", "EDGEPOSE_SERVE": "", "EDGEPOSE_TOKEN": TOKEN})
    with pytest.raises(SettingsError, match="EDGEPOSE_SERVE=:x"):
        service_argv({"EDGEPOSE_MODEL": "/m.rknn", "EDGEPOSE_SERVE": ":x"})


@pytest.mark.parametrize("extra,key", [("--serve 0.0.0.0:80", "EDGEPOSE_SERVE"), ("--token=abc", "EDGEPOSE_TOKEN"),
                                       ("--model /x.onnx", "EDGEPOSE_MODEL"), ("--video a.mp4", "EDGEPOSE_CAMERA"),
                                       ("--jsonl /tmp/x", "EDGEPOSE_JSONL")])
def test_extra_cannot_bypass_the_own_settings(extra, key):
    with pytest.raises(SettingsError, match=f"use {key} instead"):
        service_argv({"EDGEPOSE_MODEL": "/m.rknn", "EDGEPOSE_EXTRA": extra})


def test_jsonl_only_inside_the_state_folder(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    s = {"EDGEPOSE_MODEL": "/m.rknn", "EDGEPOSE_JSONL": str(state / "poses.jsonl")}
    assert str(state / "poses.jsonl") in service_argv(s, state)
    with pytest.raises(SettingsError, match="may only write under"):
        service_argv({**s, "EDGEPOSE_JSONL": str(tmp_path / "elsewhere.jsonl")}, state)
    with pytest.raises(SettingsError, match="may only write under"):
        service_argv({**s, "EDGEPOSE_JSONL": str(state / ".." / "x.jsonl")}, state)
    with pytest.raises(SettingsError, match="EDGEPOSE_MODEL is empty"):
        service_argv({"EDGEPOSE_MODEL": ""})


def test_backoff_grows_and_is_capped():
    assert [backoff_delay(n) for n in range(0, 8)] == [0.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert backoff_delay(10_000) == 60.0


def test_check_mode_one_line_and_exit_codes(tmp_path):
    model = tmp_path / "m.rknn"
    p = _write(tmp_path, f"EDGEPOSE_MODEL={model}\nEDGEPOSE_SERVE=0.0.0.0:8080\n")
    cmd = [sys.executable, "-m", "edgepose.service", "--check", str(p)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "without EDGEPOSE_TOKEN" in r.stderr
    p.write_text(f"EDGEPOSE_MODEL={model}\nEDGEPOSE_SERVE=0.0.0.0:8080\nEDGEPOSE_TOKEN={TOKEN}\n")
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "no such model" in r.stderr
    model.write_bytes(b"x")
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "m.rknn.json is missing" in r.stderr
    (tmp_path / "m.rknn.json").write_text("{}")
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "ok: edgepose run --camera 0" in r.stdout and TOKEN not in r.stdout


def test_run_hands_over_in_process_and_counts_failures(tmp_path, monkeypatch):
    state = tmp_path / "state"
    state.mkdir()
    p = _write(tmp_path, f"EDGEPOSE_MODEL=/m.rknn\nEDGEPOSE_JSONL={state / 'poses.jsonl'}\n"
                         f"EDGEPOSE_SERVE=0.0.0.0:9\nEDGEPOSE_TOKEN={TOKEN}\n")
    (state / "poses.jsonl").write_text("earlier run\n")
    seen, slept = [], []
    import edgepose.cli

    monkeypatch.setattr(edgepose.cli, "main", lambda argv: seen.append(list(argv)) or 3)
    monkeypatch.setattr(service.time, "sleep", slept.append)
    monkeypatch.setenv("STATE_DIRECTORY", str(state))
    assert service.main([str(p)]) == 3
    assert seen[0][seen[0].index("--token") + 1] == TOKEN  # in-process: not on any command line
    assert RestartCounter(state).read() == 1 and slept == []
    # the earlier output is kept under a time-stamped name, never overwritten
    kept = [q for q in state.iterdir() if q.name.startswith("poses.") and q.name != "poses.jsonl"]
    assert len(kept) == 1 and kept[0].read_text() == "earlier run\n"
    assert service.main([str(p)]) == 3
    assert slept == [2.0] and RestartCounter(state).read() == 2
    monkeypatch.setattr(edgepose.cli, "main", lambda argv: 0)
    assert service.main([str(p)]) == 0
    assert slept == [2.0, 4.0] and RestartCounter(state).read() == 0
    assert json.loads((state / "restarts.json").read_text())["failures"] == 0


def test_bad_settings_never_reach_edgepose_run(tmp_path, monkeypatch, capsys):
    import edgepose.cli

    monkeypatch.setattr(edgepose.cli, "main", lambda argv: pytest.fail("must not run"))
    p = _write(tmp_path, "EDGEPOSE_MODEL=/m.rknn\nEDGEPOSE_SERVE=10.0.0.2:8080\n")
    assert service.main([str(p)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgepose.service: ") and "10.0.0.2:8080" in err[0]
    assert service.main(["--bogus"]) == 2
