"""firmware/: what can be checked on the x86 host without an arm64 root (the full path, bundle
-> offline install -> tests under qemu, is firmware/check_arm64.sh, run by .ci/run).

* build_bundle.sh refuses, in one line and before any slow step, a model without its sidecar
  and a sidecar whose target is not an aarch64 NPU;
* the unit file carries the hardening the service relies on and passes systemd-analyze verify.
"""
from __future__ import annotations

import configparser
import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FW = ROOT / "firmware"


def _bundle(tmp_path: Path, target, *extra: str, sidecar: bool = True):
    model = tmp_path / "m.rknn"
    model.write_bytes(b"RKNN")
    if sidecar:
        (tmp_path / "m.rknn.json").write_text(json.dumps({"target": target} if target is not None else {}))
    return subprocess.run(["bash", str(FW / "build_bundle.sh"), str(model), "-o", str(tmp_path / "out"), *extra],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def _one_line(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith("build_bundle.sh: ")
    return lines[0]


def test_bundle_refuses_a_model_without_its_sidecar(tmp_path):
    line = _one_line(_bundle(tmp_path, "rk3588", sidecar=False))
    assert "m.rknn.json: the model's sidecar is missing" in line and "build-rknn" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("target,why", [("rv1126", "32-bit ARM (armhf)"), ("rv1109", "32-bit ARM (armhf)"),
                                        ("rv1106", "no Python NPU runtime"), ("rv1103", "no Python NPU runtime"),
                                        ("x86", "not an aarch64 NPU"), (None, "target (none) is not an aarch64 NPU")])
def test_bundle_refuses_targets_that_are_not_aarch64_npus(tmp_path, target, why):
    assert why in _one_line(_bundle(tmp_path, target))
    assert not (tmp_path / "out").exists()


def test_bundle_rk1808_needs_a_toolkit_lite_1x_wheel_for_its_python(tmp_path):
    assert "rknn-toolkit-lite 1.x, which is not on PyPI" in _one_line(_bundle(tmp_path, "rk1808"))
    whl = tmp_path / "rknn_toolkit_lite-1.7.5-cp310-cp310-linux_aarch64.whl"
    whl.write_bytes(b"PK")
    assert "built for cp310, but this bundle is for CPython 3.11" in _one_line(
        _bundle(tmp_path, "rk1808", "--runtime-wheel", str(whl)))
    assert "drop the option" in _one_line(_bundle(tmp_path, "rk3566", "--runtime-wheel", str(whl)))


def test_bundle_never_writes_over_a_folder(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    assert "exists and is not an empty folder" in _one_line(_bundle(tmp_path, "rk3588"))
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_scripts_parse():
    for name in ("build_bundle.sh", "install.sh", "check_arm64.sh", "arm64_root.sh", "install_board.sh"):
        r = subprocess.run(["bash", "-n", str(FW / name)], capture_output=True, text=True)
        assert r.returncode == 0, (name, r.stderr)


def _unit() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # keys are case-sensitive
    # repeated keys (DeviceAllow=) are legal in systemd: keep the last, read the rest as text
    cp.read_string((FW / "edgepose.service").read_text())
    return cp


def test_unit_is_hardened():
    svc = _unit()["Service"]
    assert svc["User"] == "edgepose" and svc["SupplementaryGroups"].split() == ["video", "render"]
    for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                       ("PrivateTmp", "yes"), ("DevicePolicy", "closed"), ("StateDirectory", "edgepose"),
                       ("Restart", "on-failure"), ("CapabilityBoundingSet", "")]:
        assert svc[key] == value, key
    text = (FW / "edgepose.service").read_text()
    allowed = [ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith("DeviceAllow=")]
    assert "char-video4linux rw" in allowed and "char-drm rw" in allowed and "/dev/rknpu rw" in allowed
    assert svc["ExecStart"].split()[:3] == ["/opt/edgepose/venv/bin/python", "-m", "edgepose.service"]
    assert "EnvironmentFile" not in svc  # the launcher reads the settings, not systemd's shell-ish parser


def test_unit_passes_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None or not Path("/usr/lib/systemd/system").is_dir():
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "opt/edgepose/venv/bin").mkdir(parents=True)
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    shutil.copy(FW / "edgepose.service", root / "etc/systemd/system/edgepose.service")
    exe = root / "opt/edgepose/venv/bin/python"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    r = subprocess.run(["systemd-analyze", "verify", f"--root={root}", "/etc/systemd/system/edgepose.service"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr.strip() and not r.stdout.strip(), r.stderr + r.stdout
