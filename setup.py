"""Build the native core ``edgepose._native`` from ``csrc/``.

Portable flags only (C++17, -O3): no -march, no OpenMP, so the same source builds on the
x86 host and on an aarch64 board. Set EDGEPOSE_REQUIRE_NATIVE=1 to make a failed compile an
error instead of a warning (CI does); without it edgepose falls back to its NumPy twins.
"""
import glob
import os
import sys

from setuptools import setup

try:
    from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
except ImportError:  # pragma: no cover - pybind11 is a build requirement
    sys.exit("pybind11 is needed to build edgepose: pip install pybind11")

# compile the csrc/ files in parallel (one per core, or EDGEPOSE_BUILD_JOBS): the board's
# build under qemu (firmware/build_bundle.sh) spends most of its time in g++
ParallelCompile("EDGEPOSE_BUILD_JOBS", default=0).install()

required = os.environ.get("EDGEPOSE_REQUIRE_NATIVE", "0") == "1"
# -ffp-contract=off: aarch64 GCC fuses a*b+c by default, which would change results vs x86
extra = ["-O3", "-fno-math-errno", "-ffp-contract=off"]
if os.environ.get("EDGEPOSE_SANITIZE"):
    extra = ["-O1", "-g", "-fno-omit-frame-pointer", "-ffp-contract=off", "-fsanitize=address,undefined"]

ext = Pybind11Extension(
    "edgepose._native",
    sorted(glob.glob("csrc/*.cpp")),
    include_dirs=["csrc"],
    cxx_std=17,
    extra_compile_args=extra,
    extra_link_args=["-fsanitize=address,undefined"] if os.environ.get("EDGEPOSE_SANITIZE") else [],
    optional=not required,
)

setup(ext_modules=[ext] if glob.glob("csrc/*.cpp") else [], cmdclass={"build_ext": build_ext})
