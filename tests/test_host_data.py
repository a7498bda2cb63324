"""host_tools datasets: reference center/scale, crops through edgepose, targets, augmentation."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
torch = pytest.importorskip("torch", reason="host tools test: needs torch (pip install '.[host]')")

from edgepose.crop import warp_one_numpy
from edgepose.geometry import affine_points, box_to_center_scale, get_affine_transform
from edgepose.metadata import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB
from host_tools.config import load_config
from host_tools.datasets import build_dataset
from host_tools.datasets.base import fliplr_joints
from host_tools.errors import UserError
from conftest import DATA, needs_data

pytestmark = needs_data

COCO = [f"DATASET.TRAIN_ANN={DATA / 'coco_mini/test_coco.json'}", f"DATASET.TRAIN_IMAGES={DATA / 'coco_mini'}",
        f"DATASET.TEST_ANN={DATA / 'coco_mini/test_coco.json'}", f"DATASET.TEST_IMAGES={DATA / 'coco_mini'}",
        "MODEL.IMAGE_SIZE=[96,128]", "MODEL.EXTRA.HEATMAP_SIZE=[24,32]"]
MPII = ["DATASET.DATASET=mpii", "MODEL.NUM_JOINTS=16", f"DATASET.TEST_ANN={DATA / 'mpii_mini/test_mpii.json'}",
        f"DATASET.TEST_IMAGES={DATA / 'mpii_mini'}"]


def test_coco_validation_sample_is_the_reference_crop():
    cfg = load_config(None, COCO)
    ds = build_dataset(cfg, is_train=False)
    coco = json.loads((DATA / "coco_mini/test_coco.json").read_text())
    ann = next(a for a in coco["annotations"] if a["id"] == 442619)  # image 785, one person
    rec = next(r for r in ds.db if r.image_id == 785)
    x, y, w, h = ann["bbox"]
    c, s = box_to_center_scale([x, y, w - 1, h - 1], 96 / 128)  # reference box cleaning: x2 = x1 + w - 1
    np.testing.assert_allclose(rec.center, c)
    np.testing.assert_allclose(rec.scale, s)
    idx = ds.db.index(rec)
    inp, target, weight, meta = ds[idx]
    assert inp.shape == (3, 128, 96) and target.shape == (17, 32, 24) and weight.shape == (17, 1)
    # the crop is the RGB image warped with OpenCV 4.x's rounding ("fixed", what the reference
    # models were trained with) whatever OpenCV is installed, normalised with the ImageNet
    # mean/std: edgepose's twin of that rounding, to float precision
    img = cv2.imread(str(DATA / "coco_mini/000000000785.jpg"))
    m = get_affine_transform(rec.center, rec.scale, 0, (96, 128))
    mean, std = np.float32(IMAGENET_MEAN_RGB), np.float32(IMAGENET_STD_RGB)

    def normalised(crop_bgr):
        return ((crop_bgr[:, :, ::-1].astype(np.float32) - mean) / std).transpose(2, 0, 1)

    assert np.abs(inp.numpy() - normalised(warp_one_numpy(img, m, 96, 128, "fixed"))).max() < 1e-4
    # and the installed cv2.warpAffine is the twin of its own rounding: OpenCV 4.x's is that same
    # crop bit for bit; OpenCV 5 rounds in float32 (edgepose's "float", within one grey level as
    # in tests/test_crop.py), so there it is not the training crop (4.x vs 5.1: up to 4 levels)
    ref = cv2.warpAffine(img, m, (96, 128), flags=cv2.INTER_LINEAR)
    if int(cv2.__version__.split(".")[0]) < 5:
        np.testing.assert_array_equal(ref, warp_one_numpy(img, m, 96, 128, "fixed"))
        assert np.abs(inp.numpy() - normalised(ref)).max() < 1e-4
    else:
        twin = warp_one_numpy(img, m, 96, 128, "float")
        assert np.abs(ref.astype(np.int16) - twin.astype(np.int16)).max() <= 1
    # each target peaks where the joint lands in the crop (rounded to the heatmap grid)
    cj = affine_points(rec.joints, m)
    for j in range(17):
        assert weight[j, 0] == 1
        py, px = np.unravel_index(int(torch.argmax(target[j])), (32, 24))
        assert (px, py) == (int(cj[j, 0] / 4 + 0.5), int(cj[j, 1] / 4 + 0.5))


def test_bgr_switch_feeds_bgr():
    rgb = build_dataset(load_config(None, COCO), is_train=False)[0][0]
    bgr = build_dataset(load_config(None, COCO + ["DATASET.COLOR_RGB=false"]), is_train=False)[0][0]
    mean, std = np.float32(IMAGENET_MEAN_RGB), np.float32(IMAGENET_STD_RGB)
    pix_rgb = rgb.numpy() * std[:, None, None] + mean[:, None, None]
    pix_bgr = bgr.numpy() * std[:, None, None] + mean[:, None, None]
    np.testing.assert_allclose(pix_rgb[::-1], pix_bgr, atol=1e-3)


def test_flip_augmentation_swaps_pairs(monkeypatch):
    cfg = load_config(None, COCO + ["DATASET.SCALE_FACTOR=0", "DATASET.ROT_FACTOR=0"])
    ds = build_dataset(cfg, is_train=True)
    import host_tools.datasets.base as base

    monkeypatch.setattr(base.random, "random", lambda: 0.0)  # flip (and "rotate" by 0 degrees)
    rec = ds.db[0]
    width = cv2.imread(rec.image).shape[1]
    _, target, weight, meta = ds[0]
    j = meta["joints"]
    # left shoulder (5) of the flipped sample is the mirrored right shoulder (6) of the annotation
    np.testing.assert_allclose(j[5], [width - 1 - rec.joints[6, 0], rec.joints[6, 1]], atol=1e-4)
    np.testing.assert_allclose(meta["center"][0], width - 1 - rec.center[0], atol=1e-3)
    jj, vv = fliplr_joints(rec.joints, rec.joints_vis, width, ds.flip_pairs)
    np.testing.assert_allclose(fliplr_joints(jj, vv, width, ds.flip_pairs)[0], rec.joints)


def test_random_scale_rotation_and_half_body_stay_consistent():
    cfg = load_config(None, COCO + ["DATASET.PROB_HALF_BODY=1.0"])
    ds = build_dataset(cfg, is_train=True)
    np.random.seed(3)
    import random

    random.seed(3)
    seen_rot, seen_half = False, False
    for i in range(len(ds)):
        inp, target, weight, meta = ds[i]
        m = get_affine_transform(meta["center"], meta["scale"], float(meta["rotation"]), (96, 128))
        cj = affine_points(meta["joints"], m)
        seen_rot |= float(meta["rotation"]) != 0
        for j in np.flatnonzero(weight.numpy()[:, 0] > 0):
            if not (0 <= cj[j, 0] / 4 <= 23 and 0 <= cj[j, 1] / 4 <= 31):
                continue  # a joint just off the map keeps a cut Gaussian peaking at the border (reference)
            py, px = np.unravel_index(int(torch.argmax(target[j])), (32, 24))
            assert abs(px - cj[j, 0] / 4) <= 1 and abs(py - cj[j, 1] / 4) <= 1
        # scale jitter alone stays within [0.7, 1.3] x the box; a half-body crop is usually smaller
        seen_half |= float(meta["scale"][0]) < 0.69 * float(ds.db[i].scale[0])
    assert seen_rot and seen_half


def test_mpii_centre_and_scale_follow_the_original():
    cfg = load_config(None, MPII)
    ds = build_dataset(cfg, is_train=False)
    raw = json.loads((DATA / "mpii_mini/test_mpii.json").read_text())
    assert len(ds) == len(raw) == 5
    for rec, a in zip(ds.db, raw):
        s = a["scale"]
        np.testing.assert_allclose(rec.center, [a["center"][0] - 1, a["center"][1] + 15 * s - 1])
        np.testing.assert_allclose(rec.scale, [1.25 * s, 1.25 * s])
        np.testing.assert_allclose(rec.joints, np.asarray(a["joints"]) - 1)
    inp, target, weight, _ = ds[0]
    assert inp.shape == (3, 256, 192) and target.shape == (16, 64, 48)


def test_detector_boxes_with_score_threshold():
    dets = json.loads((DATA / "coco_mini/test_coco_det_AP_H_56.json").read_text())
    det_file = str(DATA / "coco_mini/test_coco_det_AP_H_56.json")
    for thr in (0.0, 0.5):
        ds = build_dataset(load_config(None, COCO + [f"TEST.IMAGE_THRE={thr}"]), is_train=False, use_gt_bbox=False, det_file=det_file)
        assert len(ds) == sum(d["score"] >= thr for d in dets)
        assert all(r.score >= thr for r in ds.db)


def test_data_errors_are_one_line(tmp_path):
    with pytest.raises(UserError, match="annotation file .* not found"):
        build_dataset(load_config(None, ["DATASET.TRAIN_ANN=/nope.json"]), is_train=True)
    with pytest.raises(UserError, match="image .* not found"):
        build_dataset(load_config(None, COCO + [f"DATASET.TRAIN_IMAGES={tmp_path}"]), is_train=True)
    with pytest.raises(UserError, match="detection file"):
        build_dataset(load_config(None, COCO), is_train=False, use_gt_bbox=False, det_file=str(tmp_path / "d.json"))


def test_loader_workers_give_the_same_batches():
    from torch.utils.data import DataLoader

    ds = build_dataset(load_config(None, COCO), is_train=False)
    a = next(iter(DataLoader(ds, batch_size=4, num_workers=0)))
    b = next(iter(DataLoader(ds, batch_size=4, num_workers=2)))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
