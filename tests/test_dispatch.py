"""Implementation switching: EDGEPOSE_IMPL / set_implementation / implementation()."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgepose
from edgepose import _dispatch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _restore():
    yield
    edgepose.set_implementation("auto")


def test_set_implementation_reports():
    edgepose.set_implementation("numpy")
    assert edgepose.implementation() == "numpy"
    assert _dispatch.native() is None
    edgepose.set_implementation("auto")
    assert edgepose.implementation() == ("native" if edgepose.native_available() else "numpy")
    with pytest.raises(ValueError, match="EDGEPOSE_IMPL"):
        edgepose.set_implementation("fortran")


@pytest.mark.skipif(not edgepose.native_available(), reason="edgepose._native not built")
def test_native_choice_and_same_results():
    edgepose.set_implementation("native")
    assert edgepose.implementation() == "native"
    rng = np.random.default_rng(0)
    hm = rng.normal(size=(2, 17, 16, 12)).astype(np.float32)
    a = edgepose.decode(hm)
    edgepose.set_implementation("numpy")
    b = edgepose.decode(hm)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def _run(code: str, **env) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k != "EDGEPOSE_IMPL"}  # the test says what it wants
    e.update(PYTHONPATH=str(ROOT), **env)
    return subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True, timeout=120)


def test_env_var_selects_numpy():
    r = _run("import edgepose; print(edgepose.implementation())", EDGEPOSE_IMPL="numpy")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "numpy"


def test_env_var_rejects_unknown_value():
    r = _run("import edgepose", EDGEPOSE_IMPL="gpu")
    assert r.returncode != 0
    assert "EDGEPOSE_IMPL" in r.stderr


def test_missing_extension_falls_back_with_one_warning():
    # Hide the compiled module: edgepose must import, use the twins and warn once.
    code = (
        "import sys, logging, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'edgepose._native': raise ImportError('hidden by test')\n"
        "sys.meta_path.insert(0, Block())\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "import numpy as np, edgepose\n"
        "print(edgepose.implementation(), edgepose.native_available())\n"
        "hm = np.zeros((1, 17, 8, 8), np.float32); hm[0, :, 3, 4] = 1\n"
        "edgepose.decode(hm); edgepose.decode(hm)\n"
        "print(edgepose.decode(hm)[0][0, 0].tolist())\n"
    )
    r = _run(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[0] == "numpy False"
    assert "[4.0, 3.0]" in r.stdout
    assert r.stderr.count("native kernels not built") == 1
    r = _run(code.replace("import numpy as np, edgepose", "import numpy as np, os; os.environ['EDGEPOSE_IMPL']='native'\nimport edgepose"))
    assert r.returncode != 0 and "not built" in r.stderr
