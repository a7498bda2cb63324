"""Test vectors for check_kernels.cpp: inputs plus the NumPy twins' (and cv2's) outputs, as raw files.

Usage: python csrc/tools/gen_vectors.py DIR   (prints the arguments check_kernels takes after DIR)
"""
import importlib, json, os, sys
from pathlib import Path

import numpy as np, cv2
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from edgepose.geometry import crop_matrices, get_affine_transform
from edgepose.keypoints import COCO
crop = importlib.import_module("edgepose.crop"); dec = importlib.import_module("edgepose.decode"); nms = importlib.import_module("edgepose.nms")
out = (sys.argv[1] if len(sys.argv) > 1 else "/tmp/edgepose_vectors").rstrip("/") + "/"
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(0)
DATA = Path(os.environ.get("EDGEPOSE_TEST_DATA") or ROOT.parent / "shared" / "data")  # read in place
frame = cv2.imread(str(DATA / "coco_mini/000000196141.jpg"))
h, w = frame.shape[:2]
boxes = np.stack([rng.uniform(-100, w, 12), rng.uniform(-100, h, 12), rng.uniform(20, w / 2, 12), rng.uniform(20, h / 2, 12)], 1)
rot = np.where(np.arange(12) % 2 == 0, 0.0, rng.uniform(-40, 40, 12))
mats = crop_matrices(boxes, (192, 256), rot=rot)[2]
mean = np.array([123.675, 116.28, 103.53], np.float32); std = np.array([58.395, 57.12, 57.375], np.float32)
frame.tofile(out + "frame.u8"); mats.tofile(out + "mats.f64"); mean.tofile(out + "mean.f32"); std.tofile(out + "std.f32")
np.stack([cv2.warpAffine(frame, m, (192, 256)) for m in mats]).tofile(out + "warp_u8_expected.u8")
crop.warp_crops_numpy(frame, mats, (192, 256), True, mean, std).tofile(out + "warp_f32_expected.f32")
n, k = 8, 17
ys, xs = np.mgrid[0:64, 0:48]
hm = (np.exp(-((xs - rng.uniform(0, 48, (n, k, 1, 1))) ** 2 + (ys - rng.uniform(0, 64, (n, k, 1, 1))) ** 2) / 8.0) + rng.normal(0, 0.01, (n, k, 64, 48))).astype(np.float32)
fl = hm[:, :, :, ::-1].copy() * np.float32(0.9)
inv = get_affine_transform(rng.uniform(0, 900, (n, 2)), rng.uniform(0.5, 2, (n, 2)), rng.uniform(-20, 20, n), (48, 64), inv=True)
q = np.clip(np.round(hm / 0.01) - 20, -128, 127).astype(np.int8); qf = q[:, :, :, ::-1].copy()
hm.tofile(out + "hm.f32"); fl.tofile(out + "fl.f32"); inv.tofile(out + "inv.f64"); q.tofile(out + "q.i8"); qf.tofile(out + "qf.i8")
perm = dec._check_pairs(COCO.flip_pairs, k).astype(np.int64); perm.tofile(out + "perm.i64")
cases = []
for name, a, b, kw in [("f32", hm, None, {}), ("f32flip", hm, fl, {}), ("i8", q, None, dict(scale=0.01, zero_point=-20)), ("i8flip", q, qf, dict(scale=0.01, zero_point=-20))]:
    for refine in ("quarter", "dark"):
        c, s = dec.decode_numpy(a, inv, flipped=b, flip_pairs=COCO.flip_pairs if b is not None else None, refine=refine, **kw)
        c.tofile(out + f"dec_{name}_{refine}_c.f32"); s.tofile(out + f"dec_{name}_{refine}_s.f32")
kp = np.concatenate([rng.uniform(100, 300, (5, 17, 2))[rng.integers(0, 5, 100)] + rng.normal(0, 5, (100, 17, 2)) * np.exp(rng.uniform(-6, 0, (100, 1, 1))), rng.uniform(0, 1, (100, 17, 1))], 2)
sc = rng.uniform(0, 1, 100); ar = rng.uniform(2000, 20000, 100)
kp.tofile(out + "kp.f64"); sc.tofile(out + "sc.f64"); ar.tofile(out + "ar.f64"); np.asarray(COCO.sigmas).tofile(out + "sig.f64")
keep = nms.oks_nms_numpy(kp, sc, ar, 0.9); keep.tofile(out + "keep.i64")
keepv = nms.oks_nms_numpy(kp, sc, ar, 0.5, vis_thr=0.3); keepv.tofile(out + "keepv.i64")
json.dump(dict(h=h, w=w, nm=len(mats), n=n, k=k, nkeep=len(keep), nkeepv=len(keepv)), open(out + "meta.json", "w"))
print(h, w, len(mats), n, k)
