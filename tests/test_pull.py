"""``host_tools pull`` / ``models`` and the download code, against a local HTTP server.

The server (``http.server`` on 127.0.0.1, in a thread, started here) plays the registry's hosts
through ``EDGEPOSE_MODEL_MIRROR``: it serves the right file, a wrong one, one that stops early
(a ``Content-Length`` that lies, then a closed connection), a slow one, a stalled one, and
answers ``Range`` requests or ignores them. No test reaches the internet: every URL is either
the local server or a closed local port.
"""
from __future__ import annotations

import errno
import hashlib
import http.server
import socket
import threading
import time
from pathlib import Path
from typing import Dict, List

import pytest

from host_tools import download, registry
from host_tools.download import DownloadError, fetch
from host_tools.registry import Entry

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, position-dependent so a wrong offset shows in the hash
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Routes by the first path part: ok, norange, wrong, lie (first answer stops halfway, then
    correct), alwayslie, slow, stall. ``files`` maps the rest of the path to bytes."""

    protocol_version = "HTTP/1.1"
    files: Dict[str, bytes] = {}
    log: List[tuple] = []
    hits: Dict[str, int] = {}

    def log_message(self, *a):  # quiet
        pass

    def do_GET(self):
        mode, _, rest = self.path.lstrip("/").partition("/")
        rng = self.headers.get("Range")
        type(self).log.append((self.path, rng))
        n = type(self).hits[self.path] = type(self).hits.get(self.path, 0) + 1
        body = self.files.get("/" + rest)
        if mode == "wrong" and body is not None:
            body = bytes(reversed(body))
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = 0
        if rng and mode not in ("norange",):
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        part = body[start:]
        self.send_header("Content-Length", str(len(part)))
        self.send_header("Connection", "close")
        self.end_headers()
        if mode in ("lie", "alwayslie") and (mode == "alwayslie" or n == 1):
            self.wfile.write(part[: len(part) // 2])  # then drop the connection: fewer bytes than promised
            self.wfile.flush()
            self.close_connection = True
            return
        if mode == "slow":
            for i in range(0, len(part), 1 << 16):
                self.wfile.write(part[i:i + (1 << 16)])
                self.wfile.flush()
                time.sleep(0.02)
            return
        if mode == "stall":
            self.wfile.write(part[: len(part) // 4])
            self.wfile.flush()
            time.sleep(2.0)
            return
        self.wfile.write(part)


@pytest.fixture
def server():
    handler = type("H", (_Handler,), {"files": {}, "log": [], "hits": {}})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    srv.h = handler
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def host_main():
    """``host_tools`` in-process; its parser loads every command module, which needs the host venv."""
    pytest.importorskip("torch", reason="host_tools commands need the host venv (torch)")
    pytest.importorskip("yaml", reason="host_tools commands need the host venv (PyYAML)")
    from host_tools.cli import main

    return main


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("EDGEPOSE_CACHE", str(d))
    return d


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def leftovers(d: Path) -> List[str]:
    return sorted(p.name for p in d.rglob("*") if p.is_file()) if d.exists() else []


def error_lines(err: str) -> List[str]:
    assert "Traceback" not in err
    return [ln for ln in err.splitlines() if "error:" in ln]


def add_entry(monkeypatch, name: str, path: str, data: bytes, **kw) -> Entry:
    e = Entry(name=name, kind=kw.pop("kind", "detector"), url=f"https://models.example.invalid{path}",
              sha256=kw.pop("sha256", hashlib.sha256(data).hexdigest()), size=kw.pop("size", len(data)), **kw)
    monkeypatch.setitem(registry.BY_NAME, name, e)
    return e


# --------------------------------------------------------------------------- download.fetch


def test_fetch_right_file_goes_to_dest_only_after_the_hash(server, tmp_path, capsys):
    server.h.files["/m.bin"] = PAYLOAD
    dest = tmp_path / "c" / "m.bin"
    assert fetch(f"{server.base}/ok/m.bin", dest, DIGEST, len(PAYLOAD)) == dest
    assert dest.read_bytes() == PAYLOAD and leftovers(tmp_path / "c") == ["m.bin"]
    assert "100%" in capsys.readouterr().err  # the progress reached the end


def test_fetch_checks_a_digest_prefix(server, tmp_path):
    server.h.files["/m.bin"] = PAYLOAD
    dest = tmp_path / "m.bin"
    fetch(f"{server.base}/ok/m.bin", dest, DIGEST[:8], 0, quiet=True)
    assert dest.read_bytes() == PAYLOAD
    with pytest.raises(DownloadError, match="does not match"):
        fetch(f"{server.base}/ok/m.bin", tmp_path / "n.bin", "0" * 8, 0, quiet=True)
    assert not (tmp_path / "n.bin").exists() and not (tmp_path / "n.bin.part").exists()


def test_fetch_wrong_hash_is_one_line_and_leaves_nothing(server, tmp_path):
    server.h.files["/m.bin"] = PAYLOAD
    with pytest.raises(DownloadError) as ei:
        fetch(f"{server.base}/wrong/m.bin", tmp_path / "c" / "m.bin", DIGEST, len(PAYLOAD), quiet=True)
    assert "\n" not in str(ei.value) and "sha256" in str(ei.value)
    assert leftovers(tmp_path / "c") == []


def test_fetch_wrong_size_is_refused(server, tmp_path):
    server.h.files["/m.bin"] = PAYLOAD + b"x"
    with pytest.raises(DownloadError, match="expected 1048576"):
        fetch(f"{server.base}/norange/m.bin", tmp_path / "m.bin", DIGEST, len(PAYLOAD), quiet=True)
    assert leftovers(tmp_path) == []


def test_fetch_resumes_after_a_dropped_connection(server, tmp_path, capsys):
    server.h.files["/m.bin"] = PAYLOAD
    dest = tmp_path / "m.bin"
    fetch(f"{server.base}/lie/m.bin", dest, DIGEST, len(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD
    ranges = [r for _, r in server.h.log]
    assert ranges == [None, f"bytes={len(PAYLOAD) // 2}-"]  # the second request resumed, not restarted
    assert "resuming at byte" in capsys.readouterr().err


def test_fetch_resumes_an_existing_part_with_range(server, tmp_path):
    server.h.files["/m.bin"] = PAYLOAD
    dest = tmp_path / "m.bin"
    (tmp_path / "m.bin.part").write_bytes(PAYLOAD[:300_000])
    fetch(f"{server.base}/ok/m.bin", dest, DIGEST, len(PAYLOAD), quiet=True)
    assert dest.read_bytes() == PAYLOAD and server.h.log == [("/ok/m.bin", "bytes=300000-")]


def test_fetch_restarts_when_the_server_ignores_range(server, tmp_path, capsys):
    server.h.files["/m.bin"] = PAYLOAD
    dest = tmp_path / "m.bin"
    (tmp_path / "m.bin.part").write_bytes(b"\xff" * 300_000)  # not even the right bytes: a restart must drop them
    fetch(f"{server.base}/norange/m.bin", dest, DIGEST, len(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD
    assert "ignores Range" in capsys.readouterr().err


def test_fetch_truncated_every_time_keeps_the_part_for_the_next_pull(server, tmp_path):
    server.h.files["/m.bin"] = PAYLOAD
    dest = tmp_path / "m.bin"
    with pytest.raises(DownloadError) as ei:
        fetch(f"{server.base}/alwayslie/m.bin", dest, DIGEST, len(PAYLOAD), retries=1, quiet=True)
    msg = str(ei.value)
    assert "\n" not in msg and "interrupted" in msg and "resume" in msg
    assert not dest.exists()
    part = tmp_path / "m.bin.part"
    assert 0 < part.stat().st_size < len(PAYLOAD) and PAYLOAD.startswith(part.read_bytes())
    kept = part.stat().st_size
    fetch(f"{server.base}/ok/m.bin", dest, DIGEST, len(PAYLOAD), quiet=True)  # the next pull resumes it
    assert dest.read_bytes() == PAYLOAD and server.h.log[-1] == ("/ok/m.bin", f"bytes={kept}-")
    assert not part.exists()


def test_fetch_slow_server_completes(server, tmp_path):
    server.h.files["/m.bin"] = PAYLOAD
    dest = tmp_path / "m.bin"
    fetch(f"{server.base}/slow/m.bin", dest, DIGEST, len(PAYLOAD), timeout=5, quiet=True)
    assert dest.read_bytes() == PAYLOAD


def test_fetch_stalled_server_times_out_in_one_line(server, tmp_path):
    server.h.files["/m.bin"] = PAYLOAD
    with pytest.raises(DownloadError) as ei:
        fetch(f"{server.base}/stall/m.bin", tmp_path / "m.bin", DIGEST, len(PAYLOAD), timeout=0.3, retries=0,
              quiet=True)
    assert "\n" not in str(ei.value) and "interrupted" in str(ei.value)
    assert not (tmp_path / "m.bin").exists()


def test_fetch_connection_refused_creates_nothing(tmp_path):
    with pytest.raises(DownloadError) as ei:
        fetch(f"http://127.0.0.1:{closed_port()}/ok/m.bin", tmp_path / "c" / "m.bin", DIGEST, len(PAYLOAD), quiet=True)
    assert "\n" not in str(ei.value) and "cannot connect" in str(ei.value) and "EDGEPOSE_MODEL_MIRROR" in str(ei.value)
    assert leftovers(tmp_path / "c") == []


def test_fetch_http_404_is_one_line(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(f"{server.base}/ok/missing.bin", tmp_path / "m.bin", DIGEST, 0, quiet=True)
    assert leftovers(tmp_path) == []


def test_fetch_full_disk_on_write_leaves_nothing(server, tmp_path, monkeypatch):
    server.h.files["/m.bin"] = PAYLOAD
    real_open = open

    class Full:
        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, b):
            self.n += 1
            if self.n > 1:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(b)

        def __getattr__(self, k):
            return getattr(self.f, k)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

    def fake_open(path, mode="r", *a, **kw):
        f = real_open(path, mode, *a, **kw)
        return Full(f) if "b" in mode and ("w" in mode or "a" in mode) else f

    monkeypatch.setattr(download, "open", fake_open, raising=False)
    monkeypatch.setattr(download, "CHUNK", 1 << 16)
    with pytest.raises(DownloadError) as ei:
        fetch(f"{server.base}/ok/m.bin", tmp_path / "c" / "m.bin", DIGEST, len(PAYLOAD), quiet=True)
    assert "\n" not in str(ei.value) and "no space left" in str(ei.value)
    assert leftovers(tmp_path / "c") == []


def test_fetch_refuses_before_writing_when_the_disk_is_too_small(server, tmp_path, monkeypatch):
    server.h.files["/m.bin"] = PAYLOAD
    monkeypatch.setattr(download.shutil, "disk_usage", lambda p: type("U", (), {"free": 1000})())
    with pytest.raises(DownloadError, match="no space left.*needs 1.0 MB"):
        fetch(f"{server.base}/ok/m.bin", tmp_path / "m.bin", DIGEST, len(PAYLOAD), quiet=True)
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- host_tools pull / models


def test_pull_through_the_mirror_then_from_the_cache(server, cache, monkeypatch, capsys, tmp_path, host_main):
    add_entry(monkeypatch, "test_model", "/a/b/test_model.onnx", PAYLOAD)
    server.h.files["/a/b/test_model.onnx"] = PAYLOAD
    monkeypatch.setenv("EDGEPOSE_MODEL_MIRROR", server.base + "/ok")
    assert host_main(["pull", "test_model"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(cache / "test_model.onnx") and "downloading " + server.base + "/ok/a/b/test_model.onnx" in err
    assert len(server.h.log) == 1
    # second pull: from the cache, no network at all
    monkeypatch.setenv("EDGEPOSE_MODEL_MIRROR", f"http://127.0.0.1:{closed_port()}")
    assert host_main(["pull", "test_model", "-o", str(tmp_path / "dl")]) == 0
    out, err = capsys.readouterr()
    assert "in the cache" in err and len(server.h.log) == 1
    assert (tmp_path / "dl" / "test_model.onnx").read_bytes() == PAYLOAD


def test_pull_wrong_hash_from_the_mirror_is_refused(server, cache, monkeypatch, capsys, host_main):
    # the real registry entry: a mirror serving another file under YOLOX-Nano's path is refused
    e = registry.get("yolox_nano")
    fake = b"\0" * e.size
    server.h.files[e.url.split("github.com", 1)[1]] = fake
    monkeypatch.setenv("EDGEPOSE_MODEL_MIRROR", server.base + "/ok")
    assert host_main(["pull", "yolox_nano"]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "sha256" in lines[0] and "does not match" in lines[0]
    assert leftovers(cache) == []


def test_pull_no_network_is_one_line(cache, monkeypatch, capsys, host_main):
    monkeypatch.setenv("EDGEPOSE_MODEL_MIRROR", f"http://127.0.0.1:{closed_port()}")
    assert host_main(["pull", "res50_coco_256x192"]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "cannot connect" in lines[0]
    assert leftovers(cache) == []


def test_pull_full_disk_is_one_line(server, cache, monkeypatch, capsys, host_main):
    add_entry(monkeypatch, "test_model", "/test_model.onnx", PAYLOAD)
    server.h.files["/test_model.onnx"] = PAYLOAD
    monkeypatch.setenv("EDGEPOSE_MODEL_MIRROR", server.base + "/ok")
    monkeypatch.setattr(download.shutil, "disk_usage", lambda p: type("U", (), {"free": 10})())
    assert host_main(["pull", "test_model"]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "no space left" in lines[0] and "EDGEPOSE_CACHE" in lines[0]
    assert leftovers(cache) == []


def test_pull_unknown_name_and_bad_mirror(cache, monkeypatch, capsys, host_main):
    assert host_main(["pull", "res51_coco"]) == 2
    assert "host_tools models" in error_lines(capsys.readouterr().err)[0]
    monkeypatch.setenv("EDGEPOSE_MODEL_MIRROR", "ftp://x")
    assert host_main(["pull", "yolox_nano"]) == 2
    assert "EDGEPOSE_MODEL_MIRROR" in error_lines(capsys.readouterr().err)[0]


def test_pull_the_sample_clip_from_a_mirror(server, cache, monkeypatch, capsys, host_main):
    from conftest import need_data

    clip = need_data("video", "arm_wrestling.mp4")
    e = registry.get("arm_wrestling")
    server.h.files[e.url.split("githubusercontent.com", 1)[1]] = clip.read_bytes()
    monkeypatch.setenv("EDGEPOSE_MODEL_MIRROR", server.base + "/ok")
    assert host_main(["pull", "arm_wrestling", "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(cache / "arm_wrestling.mp4")
    assert (cache / "arm_wrestling.mp4").read_bytes() == clip.read_bytes()


def test_models_lists_every_entry(capsys, cache, host_main):
    assert host_main(["models"]) == 0
    out = capsys.readouterr().out
    for e in registry.ENTRIES:
        assert e.name in out
    assert "COCO AP 71.8" in out and "MPII PCKh@0.5 88.2" in out and "ec54d7f3" in out


def test_registry_facts():
    e = registry.get("res50_coco_256x192")
    assert e.filename == "res50_coco_256x192-ec54d7f3_20200709.pth" and e.sha256_prefix == "ec54d7f3"
    assert e.url.startswith("https://download.openmmlab.com/mmpose/top_down/resnet/")
    for p in registry.ENTRIES:
        if p.kind == "pose":  # the 8 hex digits of the name are the check
            assert p.filename.split("-")[1][:8] == p.sha256_prefix and len(p.sha256_prefix) == 8
            assert f"{p.input_size[1]}x{p.input_size[0]}" in p.filename and f"res{p.depth}_{p.dataset}" in p.filename
    y = registry.get("yolox_nano")
    assert y.size == 3659407 and y.sha256.startswith("c789161e")
    base, over = registry.export_config(registry.get("res101_coco_384x288"))
    assert base.name == "256x192_d256x3_adam_lr1e-3.yaml"
    assert over == ["MODEL.EXTRA.NUM_LAYERS=101", "MODEL.IMAGE_SIZE=[288,384]", "MODEL.EXTRA.HEATMAP_SIZE=[72,96]"]


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("EDGEPOSE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert registry.cache_dir() == tmp_path / "xdg" / "edgepose"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert registry.cache_dir() == Path.home() / ".cache" / "edgepose"
    monkeypatch.setenv("EDGEPOSE_CACHE", str(tmp_path / "c"))
    assert registry.cache_dir() == tmp_path / "c"


def test_a_damaged_cached_file_is_fetched_again(server, cache, monkeypatch, capsys, host_main):
    add_entry(monkeypatch, "test_model", "/test_model.onnx", PAYLOAD)
    server.h.files["/test_model.onnx"] = PAYLOAD
    cache.mkdir(parents=True)
    (cache / "test_model.onnx").write_bytes(PAYLOAD[:-1] + b"\0")
    monkeypatch.setenv("EDGEPOSE_MODEL_MIRROR", server.base + "/ok")
    assert host_main(["pull", "test_model"]) == 0
    assert "no longer matches" in capsys.readouterr().err
    assert (cache / "test_model.onnx").read_bytes() == PAYLOAD


# --------------------------------------------------------------------------- --onnx / --rknn


def _mmpose0_res18(path: Path) -> bytes:
    """A checkpoint in mmpose 0.x's layout (ResNet-18 + TopdownHeatmapSimpleHead, 17 joints),
    random weights: what `pull --onnx` reads from a real mmpose file."""
    import io

    import torch

    from tests._foreign_weights import fill, heatmap_head_shapes, mmpose0_config, torchvision_resnet_shapes

    back = fill(torchvision_resnet_shapes(18, fc=False), seed=1)
    head = fill(heatmap_head_shapes(512, 17), seed=2)
    sd = {**{"backbone." + k: v for k, v in back.items()}, **{"keypoint_head." + k: v for k, v in head.items()}}
    buf = io.BytesIO()
    torch.save({"meta": {"config": mmpose0_config(18, 512)}, "state_dict": sd}, buf)
    return buf.getvalue()


@pytest.fixture
def res18_entry(server, cache, monkeypatch, tmp_path):
    """A registered pose checkpoint served by the local mirror (mmpose 0.x layout, ResNet-18)."""
    pytest.importorskip("torch")
    data = _mmpose0_res18(tmp_path / "x.pth")
    digest = hashlib.sha256(data).hexdigest()
    stem = f"res18_coco_256x192-{digest[:8]}_20990101"
    e = Entry(name="res18_coco_256x192", kind="pose", url=f"https://dl.example.invalid/r/{stem}.pth",
              sha256_prefix=digest[:8], depth=18, dataset="coco", input_size=(192, 256), source="test")
    monkeypatch.setitem(registry.BY_NAME, e.name, e)
    server.h.files[f"/r/{stem}.pth"] = data
    monkeypatch.setenv("EDGEPOSE_MODEL_MIRROR", server.base + "/ok")
    return e, stem, data


def test_pull_onnx_exports_a_pose_checkpoint(res18_entry, capsys, tmp_path, host_main):
    from edgepose.metadata import read_onnx_metadata

    e, stem, data = res18_entry
    out_dir = tmp_path / "models"
    assert host_main(["pull", e.name, "--onnx", "-o", str(out_dir)]) == 0
    out, err = capsys.readouterr()
    onnx_path = out_dir / "res18_coco_256x192.onnx"
    assert out.strip() == str(onnx_path)
    meta = read_onnx_metadata(onnx_path)
    assert meta.arch == "pose_resnet_18" and meta.input_size == (192, 256) and meta.heatmap_size == (48, 64)
    assert meta.color == "rgb" and meta.keypoint_set == "coco"  # mmpose 0.x files record RGB input
    assert (out_dir / f"{stem}.pth").read_bytes() == data  # -o DIR also holds the checkpoint
    # an existing export in -o is kept unless --force
    assert host_main(["pull", e.name, "--onnx", "-o", str(out_dir)]) == 2
    assert "--force" in error_lines(capsys.readouterr().err)[0]


def test_pull_rknn_refusals_come_before_any_download(res18_entry, server, capsys, host_main):
    e = res18_entry[0]
    assert host_main(["pull", e.name, "--rknn"]) == 2
    assert "--target" in error_lines(capsys.readouterr().err)[0]
    assert host_main(["pull", e.name, "--rknn", "--target", "rk3588", "--images", "/nowhere"]) == 2
    assert "--calib-ann" in error_lines(capsys.readouterr().err)[0]
    assert host_main(["pull", "arm_wrestling", "--onnx"]) == 2
    assert "video clip" in error_lines(capsys.readouterr().err)[0]
    assert server.h.log == []


def test_pull_rknn_builds_from_the_export(res18_entry, cache, capsys, host_main):
    pytest.importorskip("rknn.api", reason="rknn-toolkit2 (rknn.api) not installed")
    e = res18_entry[0]
    assert host_main(["pull", e.name, "--rknn", "--target", "rk3588"]) == 0
    out, err = capsys.readouterr()
    rknn = cache / "rknn" / "res18_coco_256x192_rk3588.rknn"
    assert out.strip().splitlines()[-1] == str(rknn) and rknn.stat().st_size > 0
    assert (cache / "onnx" / "res18_coco_256x192.onnx").is_file()  # the export it was built from, cached
    assert "float16 build" in err
    import json

    side = json.loads(Path(str(rknn) + ".json").read_text())
    assert side["input_size"] == [192, 256] and side["target"] == "rk3588"


def test_every_pose_entry_has_a_config_that_fits_it(tmp_path):
    """The export config of each checkpoint (the experiment plus overrides): its depth, input,
    heatmap size (the network's own, stride 4) and joints; the same without a checkout's experiments/."""
    pytest.importorskip("yaml", reason="the host config needs PyYAML")
    from host_tools.config import expected_heatmap_size, load_config, model_meta

    for e in (p for p in registry.ENTRIES if p.kind == "pose"):
        base, over = registry.export_config(e)
        cfg = load_config(base, over)
        assert cfg.MODEL.EXTRA.NUM_LAYERS == e.depth and tuple(cfg.MODEL.IMAGE_SIZE) == e.input_size
        assert expected_heatmap_size(cfg) == list(cfg.MODEL.EXTRA.HEATMAP_SIZE)
        assert cfg.DATASET.DATASET == e.dataset and cfg.MODEL.NUM_JOINTS == {"coco": 17, "mpii": 16}[e.dataset]
        none, over2 = registry.export_config(e, root=tmp_path)  # an install without experiments/
        assert none is None
        m1, m2 = model_meta(cfg), model_meta(load_config(None, over2))
        for k in ("input_size", "heatmap_size", "keypoint_set", "num_joints", "flip_pairs", "arch", "color"):
            assert getattr(m1, k) == getattr(m2, k), (e.name, k)
