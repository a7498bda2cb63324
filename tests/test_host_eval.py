"""host_tools evaluation on the real mini data: COCO AP through pycocotools, MPII PCKh."""
import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
torch = pytest.importorskip("torch", reason="host tools test: needs torch (pip install '.[host]')")

from host_tools.config import load_config
from host_tools.datasets import build_dataset
from host_tools.evaluate.coco_eval import coco_keypoint_ap, postprocess
from host_tools.evaluate.pckh import head_sizes, pckh
from host_tools.valid import evaluate
from conftest import DATA, needs_data

pytestmark = needs_data

COCO_ANN = DATA / "coco_mini" / "test_coco.json"
MPII_ANN = DATA / "mpii_mini" / "test_mpii.json"


def coco_cfg(*over):
    return load_config(None, [f"DATASET.TEST_ANN={COCO_ANN}", f"DATASET.TEST_IMAGES={DATA / 'coco_mini'}", *over])


def mpii_cfg(*over):
    return load_config(None, ["DATASET.DATASET=mpii", "MODEL.NUM_JOINTS=16", f"DATASET.TEST_ANN={MPII_ANN}",
                              f"DATASET.TEST_IMAGES={DATA / 'mpii_mini'}", *over])


def gt_preds(ds):
    """Ground truth in the form predict() returns."""
    kp = np.stack([np.concatenate([r.joints, r.joints_vis[:, None]], axis=1) for r in ds.db]).astype(np.float32)
    scales = np.stack([r.scale for r in ds.db])
    return {
        "keypoints": kp,
        "centers": np.stack([r.center for r in ds.db]),
        "scales": scales,
        "areas": scales[:, 0] * scales[:, 1] * 200.0 ** 2,
        "box_scores": np.ones(len(ds.db), np.float32),
        "image_ids": np.array([r.image_id for r in ds.db]),
        "index": np.arange(len(ds.db)),
    }


def test_ground_truth_as_predictions_gives_ap_1():
    cfg = coco_cfg()
    ds = build_dataset(cfg, is_train=False)
    assert len(ds) == 12  # the 14 annotations minus the 2 without keypoints
    stats, table, indicator = evaluate(cfg, ds, gt_preds(ds))
    assert stats["AP"] == pytest.approx(1.0) and stats["AR"] == pytest.approx(1.0)
    assert indicator == stats["AP"] and "AP50" in table


def test_perturbed_predictions_match_pycocotools_directly():
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    cfg = coco_cfg()
    ds = build_dataset(cfg, is_train=False)
    preds = gt_preds(ds)
    rng = np.random.default_rng(7)
    kp = preds["keypoints"].copy()
    kp[:, :, :2] += rng.normal(0, 6.0, kp[:, :, :2].shape)
    kp[:, :, 2] = rng.uniform(0.3, 1.0, kp[:, :, 2].shape)
    preds["keypoints"] = kp
    stats, _, _ = evaluate(cfg, ds, preds)

    # The same thing by hand: score = mean joint score above 0.2 (all are), then plain COCOeval.
    results = [{"image_id": int(im), "category_id": 1, "keypoints": k.reshape(-1).tolist(), "score": float(k[:, 2].mean())}
               for k, im in zip(kp.astype(np.float64), preds["image_ids"])]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(COCO_ANN))
        ev = COCOeval(gt, gt.loadRes(results), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert 0.2 < ev.stats[0] < 0.95  # a real, partial score
    assert stats["AP"] == pytest.approx(ev.stats[0], abs=1e-6)
    assert stats["AP50"] == pytest.approx(ev.stats[1], abs=1e-6)
    assert stats["AR"] == pytest.approx(ev.stats[5], abs=1e-6)


def test_oks_nms_drops_duplicates_and_rescoring_orders():
    cfg = coco_cfg()
    ds = build_dataset(cfg, is_train=False)
    p = gt_preds(ds)
    # Duplicate every person with a slightly moved, lower-scored copy: NMS at 0.9 must drop the copies.
    kp2 = p["keypoints"].copy()
    kp2[:, :, :2] += 0.5
    kp2[:, :, 2] *= 0.5
    kp = np.concatenate([p["keypoints"], kp2])
    res = postprocess(kp, np.ones(len(kp)), np.concatenate([p["areas"]] * 2), np.concatenate([p["image_ids"]] * 2))
    assert len(res) == len(ds)
    assert all(r["score"] == pytest.approx(1.0) for r in res)  # the originals survived
    res_no_nms = postprocess(kp, np.ones(len(kp)), np.concatenate([p["areas"]] * 2),
                             np.concatenate([p["image_ids"]] * 2), use_nms=False)
    assert len(res_no_nms) == 2 * len(ds)
    assert coco_keypoint_ap(ds.coco, res)["AP"] == pytest.approx(1.0)


def test_pckh_on_the_mpii_mini_set():
    cfg = mpii_cfg()
    ds = build_dataset(cfg, is_train=False)
    p = gt_preds(ds)
    res, table, ind = evaluate(cfg, ds, p)
    assert res["PCKh@0.5"]["Mean"] == pytest.approx(100.0) and ind == pytest.approx(1.0)
    assert "head size" in table and "derived" in table
    gt = p["keypoints"][:, :, :2].astype(np.float64)
    vis = p["keypoints"][:, :, 2]
    hs = head_sizes(gt, vis)
    assert np.all(hs > 0)
    # move every joint by 0.3 head sizes: correct at 0.5, wrong at 0.1
    moved = gt + np.stack([0.3 * hs, 0 * hs], axis=1)[:, None, :]
    r = pckh(moved, gt, vis)
    assert r["PCKh@0.5"]["Mean"] == pytest.approx(100.0) and r["PCKh@0.1"]["Mean"] == pytest.approx(0.0)
    # move only the wrists far away: 4 of the 14 counted joints... per person only the wrists fail
    moved = gt.copy()
    moved[:, [10, 15], 0] += 2 * hs[:, None]
    r = pckh(moved, gt, vis)
    assert r["PCKh@0.5"]["groups"]["Wrist"] == 0.0 and r["PCKh@0.5"]["groups"]["Ankle"] == 100.0
    counted = np.delete(vis, [6, 7], axis=1).sum()
    assert r["PCKh@0.5"]["Mean"] == pytest.approx(100.0 * (counted - vis[:, [10, 15]].sum()) / counted)


class OracleNet(torch.nn.Module):
    """Returns the dataset's own target heatmaps, batch after batch (an unshuffled loader)."""

    def __init__(self, ds, batch):
        super().__init__()
        self.targets = [torch.stack([ds[i][1] for i in range(s, min(s + batch, len(ds)))]) for s in range(0, len(ds), batch)]
        self.calls = 0
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        t = self.targets[self.calls]
        self.calls += 1
        assert t.shape[0] == x.shape[0]
        return t


@pytest.mark.parametrize("name", ["coco", "mpii"])
def test_predict_maps_heatmaps_back_to_the_frame(name):
    """Perfect heatmaps through predict() (crop -> heatmap -> inverse affine -> frame) land on the GT."""
    from host_tools.valid import predict

    cfg = coco_cfg() if name == "coco" else mpii_cfg()
    ds = build_dataset(cfg, is_train=False)
    preds = predict(OracleNet(ds, 5), ds, flip_test=False, batch_size=5, workers=0, progress=False)
    gt = np.stack([r.joints for r in ds.db])
    vis = np.stack([r.joints_vis for r in ds.db]) > 0
    err = np.linalg.norm(preds["keypoints"][:, :, :2] - gt, axis=2)[vis]
    # a joint is encoded on the nearest heatmap pixel: at most half a heatmap pixel (diagonal) off
    px = np.stack([r.scale[0] * 200 / cfg.MODEL.EXTRA.HEATMAP_SIZE[0] for r in ds.db])
    assert np.all(err <= (np.sqrt(0.5) * px[:, None].repeat(vis.shape[1], 1))[vis] + 1e-3)
    stats, _, ind = evaluate(cfg, ds, preds)
    assert ind >= (0.9 if name == "coco" else 1.0)


def test_flip_test_merges_mirrored_pass_with_pair_swap():
    """An oracle that answers the mirrored crop with mirrored, pair-swapped targets: the flip test
    (flip back, swap pairs, shift) must still land on the ground truth. Without the swap,
    left/right joints would be averaged with each other and miss by a body width."""
    from edgepose.geometry import affine_points, get_affine_transform
    from host_tools.valid import predict

    cfg = coco_cfg()
    ds = build_dataset(cfg, is_train=False)
    w_in = cfg.MODEL.IMAGE_SIZE[0]

    def flipped_target(i):
        r = ds.db[i]
        cj = affine_points(r.joints, get_affine_transform(r.center, r.scale, 0, ds.image_size))
        cj[:, 0] = w_in - 1 - cj[:, 0]
        vis = r.joints_vis.copy()
        for a, b in ds.flip_pairs:
            cj[[a, b]] = cj[[b, a]]
            vis[[a, b]] = vis[[b, a]]
        return torch.from_numpy(ds.codec.encode(cj, vis)[0])

    class FlipOracle(torch.nn.Module):
        def __init__(self, batch):
            super().__init__()
            self.plain = [torch.stack([ds[i][1] for i in range(s, min(s + batch, len(ds)))]) for s in range(0, len(ds), batch)]
            self.mirror = [torch.stack([flipped_target(i) for i in range(s, min(s + batch, len(ds)))]) for s in range(0, len(ds), batch)]
            self.calls = 0
            self.dummy = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            k, flipped = divmod(self.calls, 2)
            self.calls += 1
            return self.mirror[k] if flipped else self.plain[k]

    preds = predict(FlipOracle(4), ds, flip_test=True, batch_size=4, workers=0, progress=False)
    gt = np.stack([r.joints for r in ds.db])
    vis = np.stack([r.joints_vis for r in ds.db]) > 0
    px = np.stack([r.scale[0] * 200 / cfg.MODEL.EXTRA.HEATMAP_SIZE[0] for r in ds.db])
    err_px = (np.linalg.norm(preds["keypoints"][:, :, :2] - gt, axis=2) / px[:, None])[vis]
    assert err_px.max() <= 1.0, err_px.max()  # within one heatmap pixel
    _, _, ap = evaluate(cfg, ds, preds)
    assert ap >= 0.9
