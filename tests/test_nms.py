"""Kernel 3 (OKS NMS, soft-OKS, rescoring): native == NumPy twin == the reference Python loop."""
import importlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edgepose
from edgepose.keypoints import COCO

nms = importlib.import_module("edgepose.nms")
native = pytest.mark.skipif(not edgepose.native_available(), reason="edgepose._native not built")
SIG = np.asarray(COCO.sigmas)


@pytest.fixture(autouse=True)
def _auto_impl():
    edgepose.set_implementation("auto")
    yield
    edgepose.set_implementation("auto")


def reference_oks_nms(kpts, scores, areas, thr, sigmas, vis_thr=None):
    """The reference loop: flattened x, y, v per pose, one OKS row per kept pose, including the
    ``list(vg > t) and list(vd > t)`` quirk (which keeps only the candidate's mask)."""
    flat = kpts.reshape(len(kpts), -1)
    var = (sigmas * 2) ** 2
    order = np.argsort(scores, kind="stable")[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        g = flat[i]
        ious = np.zeros(order.size - 1)
        for t, j in enumerate(order[1:]):
            d = flat[j]
            dx, dy = d[0::3] - g[0::3], d[1::3] - g[1::3]
            e = (dx ** 2 + dy ** 2) / var / ((areas[i] + areas[j]) / 2 + np.spacing(1)) / 2
            if vis_thr is not None:
                ind = list(g[2::3] > vis_thr) and list(d[2::3] > vis_thr)
                e = e[ind]
            ious[t] = np.sum(np.exp(-e)) / e.shape[0] if e.shape[0] != 0 else 0.0
        order = order[1:][ious <= thr]
    return np.asarray(keep, np.int64)


def crowd(rng, n, k=17, spread=30.0, people=4):
    """n candidate poses around a few people, so that many overlap (what a detector gives)."""
    base = rng.uniform(100, 500, (people, k, 2))
    who = rng.integers(0, people, n)
    jitter = np.exp(rng.uniform(np.log(0.003), 0, (n, 1, 1)))  # from near-duplicates to strangers
    xy = base[who] + rng.normal(0, spread, (n, k, 2)) * jitter
    v = rng.uniform(0, 1, (n, k, 1))
    return np.concatenate([xy, v], 2), rng.uniform(0.1, 1, n), rng.uniform(2000, 40000, n)


def both(kp, sc, ar, thr, sigmas=None, vis_thr=None):
    a = edgepose.oks_nms(kp, sc, ar, thr, sigmas, vis_thr)
    b = nms.oks_nms_numpy(kp, sc, ar, thr, sigmas, vis_thr)
    assert a.dtype == np.int64
    np.testing.assert_array_equal(a, b)
    return a


@native
@pytest.mark.parametrize("n", [1, 2, 20, 64, 100])
@pytest.mark.parametrize("vis_thr", [None, 0.2])
@pytest.mark.parametrize("thr", [0.3, 0.9])
def test_equals_twin_and_reference(n, vis_thr, thr):
    rng = np.random.default_rng(n)
    kp, sc, ar = crowd(rng, n)
    keep = both(kp, sc, ar, thr, vis_thr=vis_thr)
    np.testing.assert_array_equal(keep, reference_oks_nms(kp, sc, ar, thr, SIG, vis_thr))
    if n >= 20:
        assert 0 < len(keep) < n  # the data really exercises suppression


@native
def test_ties_and_duplicates():
    rng = np.random.default_rng(3)
    kp, _, ar = crowd(rng, 12)
    kp[6:] = kp[:6]  # exact duplicates: OKS 1
    ar[6:] = ar[:6]
    sc = np.array([0.5] * 12)  # all tied: the higher index goes first
    keep = both(kp, sc, ar, 0.9)
    np.testing.assert_array_equal(keep, reference_oks_nms(kp, sc, ar, 0.9, SIG))
    assert keep[0] == 11
    sc2 = np.repeat([0.9, 0.8, 0.7], 4)
    np.testing.assert_array_equal(both(kp, sc2, ar, 0.5), reference_oks_nms(kp, sc2, ar, 0.5, SIG))


@native
def test_vis_thr_quirk_uses_candidate_mask():
    """Only the candidate's visible joints count, whatever the kept pose's scores."""
    g = np.zeros((17, 3)); g[:, 2] = 0.0  # kept pose: nothing "visible"
    d = g.copy(); d[:, 2] = 1.0
    d[8:, 0] += 1000  # far away on half the joints
    kp = np.stack([g, d]); sc = np.array([1.0, 0.5]); ar = np.array([1e4, 1e4])
    o = nms.oks_numpy(g, d[None], 1e4, ar[1:], SIG, 0.5)[0]
    assert 0.4 < o < 0.5  # 8 of 17 joints coincide, all 17 counted (the candidate's mask)
    np.testing.assert_array_equal(both(kp, sc, ar, 0.45, vis_thr=0.5), [0])
    np.testing.assert_array_equal(both(kp, sc, ar, 0.5, vis_thr=0.5), [0, 1])
    d[:, 2] = 0.0  # candidate invisible everywhere: OKS 0, never suppressed
    kp = np.stack([g, d])
    np.testing.assert_array_equal(both(kp, sc, ar, 0.0, vis_thr=0.5), [0, 1])
    np.testing.assert_array_equal(reference_oks_nms(kp, sc, ar, 0.0, SIG, 0.5), [0, 1])


@native
@pytest.mark.parametrize("k", [1, 5, 16, 17, 133])
def test_other_joint_counts(k):
    rng = np.random.default_rng(k)
    kp, sc, ar = crowd(rng, 40, k=k)
    sig = rng.uniform(0.02, 0.1, k)
    for vt in (None, 0.3):
        np.testing.assert_array_equal(both(kp, sc, ar, 0.5, sig, vt), reference_oks_nms(kp, sc, ar, 0.5, sig, vt))


@native
@pytest.mark.parametrize("method", nms.SOFT_METHODS)
@pytest.mark.parametrize("vis_thr", [None, 0.2])
def test_soft_equals_twin(method, vis_thr):
    rng = np.random.default_rng(5)
    kp, sc, ar = crowd(rng, 60)
    for score_thr in (0.0, 0.3):
        a = edgepose.soft_oks_nms(kp, sc, ar, 0.3, vis_thr=vis_thr, method=method, score_thr=score_thr)
        b = nms.soft_oks_nms_numpy(kp, sc, ar, 0.3, vis_thr=vis_thr, method=method, score_thr=score_thr)
        np.testing.assert_array_equal(a[0], b[0])
        # exp() of NumPy and of libm may differ in the last bit
        np.testing.assert_allclose(a[1], b[1], rtol=1e-9, atol=1e-15)
        assert np.all(np.diff(a[1]) <= 1e-12) or method == "linear"
        if score_thr > 0:
            assert np.all(a[1] > score_thr)
    # decayed scores: the first pick keeps its score, duplicates decay
    kp2 = np.repeat(kp[:1], 3, 0); sc2 = np.array([0.9, 0.8, 0.7]); ar2 = np.full(3, 1e4)
    keep, ns = edgepose.soft_oks_nms(kp2, sc2, ar2, 0.3, method=method)
    assert keep[0] == 0 and ns[0] == 0.9
    if method == "gaussian":
        np.testing.assert_allclose(ns[1], 0.8 * np.exp(-2.0))
    else:
        assert len(keep) == 1  # 1 - OKS = 0 removes exact duplicates


@native
@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 30), thr=st.floats(0, 1),
       vis=st.sampled_from([None, 0.0, 0.5]), tie=st.booleans())
def test_property_nms(seed, n, thr, vis, tie):
    rng = np.random.default_rng(seed)
    kp, sc, ar = crowd(rng, n, spread=rng.uniform(1, 100))
    if tie:
        sc = np.round(sc, 1)
    keep = both(kp, sc, ar, thr, vis_thr=vis)
    assert len(set(keep.tolist())) == len(keep)
    assert np.all(np.diff(sc[keep]) <= 0)


@pytest.mark.parametrize("impl", ["numpy", "auto"])
def test_empty_and_errors(impl):
    edgepose.set_implementation(impl)
    e = edgepose.oks_nms(np.zeros((0, 17, 3)), np.zeros(0), np.zeros(0))
    assert e.shape == (0,) and e.dtype == np.int64
    k, s = edgepose.soft_oks_nms(np.zeros((0, 17, 3)), np.zeros(0), np.zeros(0))
    assert k.shape == (0,) and s.shape == (0,)
    kp = np.zeros((2, 17, 3))
    with pytest.raises(ValueError, match="keypoints"):
        edgepose.oks_nms(np.zeros((2, 17, 2)), np.ones(2), np.ones(2))
    with pytest.raises(ValueError, match="scores"):
        edgepose.oks_nms(kp, np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match="sigmas"):
        edgepose.oks_nms(np.zeros((2, 16, 3)), np.ones(2), np.ones(2))
    with pytest.raises(ValueError, match="sigmas"):
        edgepose.oks_nms(kp, np.ones(2), np.ones(2), sigmas=np.zeros(17))
    with pytest.raises(ValueError, match="keypoints"):
        edgepose.oks_nms(np.full((2, 17, 3), np.nan), np.ones(2), np.ones(2))
    with pytest.raises(ValueError, match="method"):
        edgepose.soft_oks_nms(kp, np.ones(2), np.ones(2), method="box")


def test_rescore_reference():
    joints = np.array([[0.1, 0.5, 0.9, 0.2], [0.0, 0.1, 0.2, 0.15], [0.3, 0.3, 0.3, 0.3]])
    box = np.array([0.8, 0.9, 0.5])
    np.testing.assert_allclose(edgepose.rescore(box, joints), [0.8 * 0.7, 0.0, 0.5 * 0.3])
    np.testing.assert_allclose(edgepose.rescore(box, joints, thr=0.0), [0.8 * 0.425, 0.9 * 0.15, 0.5 * 0.3])
    with pytest.raises(ValueError, match="joint_scores"):
        edgepose.rescore(box, joints[:2])


@native
def test_switching_gives_same_result():
    kp, sc, ar = crowd(np.random.default_rng(9), 50)
    edgepose.set_implementation("native")
    a = edgepose.oks_nms(kp, sc, ar, 0.5)
    edgepose.set_implementation("numpy")
    np.testing.assert_array_equal(a, edgepose.oks_nms(kp, sc, ar, 0.5))
