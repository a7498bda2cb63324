"""Which Rockchip board this is, as far as the NPU is concerned: how many NPU cores it has.

The device tree names the SoC: ``/proc/device-tree/compatible`` holds NUL-separated strings
such as ``rockchip,rk3588-evb1-lp4-v10`` and ``rockchip,rk3588``. RK3588/RK3588S have three
NPU cores, RK3576 two, the other NPU parts of the RKNN toolkit 2 line one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

DEVICE_TREE_COMPATIBLE = Path("/proc/device-tree/compatible")

# SoC -> NPU cores (the Rockchip parts that rknn-toolkit(-lite)2 and the 1.x line target)
NPU_CORES = {
    "rk3588": 3, "rk3576": 2,
    "rk3562": 1, "rk3566": 1, "rk3568": 1, "rk3399pro": 1, "rk1808": 1,
    "rv1103": 1, "rv1106": 1, "rv1109": 1, "rv1126": 1,
}


def soc_npu_cores(soc: Optional[str]) -> int:
    """NPU cores of a SoC name (``"rk3588"``, ``"rk3588s"``, ``"RK3576"``); 0 when unknown or
    without an NPU."""
    if not soc:
        return 0
    s = str(soc).strip().lower()
    if s in NPU_CORES:
        return NPU_CORES[s]
    if s.endswith("s") and s[:-1] in NPU_CORES:  # rk3588s: the same NPU as rk3588
        return NPU_CORES[s[:-1]]
    return 0


def board_npu_cores(compatible: Union[str, Path] = DEVICE_TREE_COMPATIBLE) -> int:
    """NPU cores of the board we run on, from its device tree ``compatible`` file; 0 on a PC
    or a board without a known Rockchip NPU (the file is missing or names another SoC)."""
    try:
        raw = Path(compatible).read_bytes()
    except OSError:
        return 0
    best = 0
    for entry in raw.decode("ascii", "replace").split("\0"):
        vendor, _, model = entry.strip().partition(",")
        if vendor == "rockchip":
            best = max(best, soc_npu_cores(model))
    return best
