// pybind11 bindings of edgepose._native. Argument checking lives in the Python wrappers
// (edgepose/crop.py, decode.py, nms.py); here only what keeps memory safe is re-checked.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "argmax.hpp"
#include "kernels.hpp"

namespace py = pybind11;
using namespace edgepose;

namespace {

using F64 = py::array_t<double, py::array::c_style | py::array::forcecast>;
using F32 = py::array_t<float, py::array::c_style | py::array::forcecast>;
using I64 = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

[[noreturn]] void fail(const std::string& msg) { throw py::value_error(msg); }

FrameView frame_view(const py::array& frame) {
    if (!py::dtype::of<uint8_t>().is(frame.dtype()) || frame.ndim() != 3 || frame.shape(2) != 3)
        fail("frame: expected a (H, W, 3) uint8 array");
    if (frame.shape(0) < 1 || frame.shape(1) < 1) fail("frame: empty image");
    return FrameView{static_cast<const uint8_t*>(frame.data()), frame.shape(0), frame.shape(1),
                     frame.strides(0), frame.strides(1), frame.strides(2)};
}

const double* mats_ptr(const F64& mats, int64_t& n) {
    if (mats.ndim() != 3 || mats.shape(1) != 2 || mats.shape(2) != 3) fail("matrices: expected (N, 2, 3)");
    n = mats.shape(0);
    return mats.data();
}

void check_out_size(int out_w, int out_h) {
    if (out_w <= 0 || out_h <= 0) fail("out_size: expected (out_w, out_h) > 0");
}

Rounding rounding_arg(int rounding) {
    if (rounding != 0 && rounding != 1) fail("rounding: expected 0 (fixed) or 1 (float)");
    return rounding == 1 ? Rounding::Float : Rounding::Fixed;
}

// The border value: None (0) or 3 uint8 values in the frame's channel order.
std::array<uint8_t, 3> border_arg(const py::object& border) {
    std::array<uint8_t, 3> b{0, 0, 0};
    if (border.is_none()) return b;
    py::array_t<uint8_t, py::array::c_style | py::array::forcecast> a(border);
    if (a.size() != 3) fail("border: expected 3 uint8 values (frame channel order)");
    for (int c = 0; c < 3; ++c) b[c] = a.data()[c];
    return b;
}

py::array warp_u8(const py::array& frame, const F64& mats, int out_w, int out_h, bool to_rgb, int rounding,
                  const py::object& border) {
    const Rounding r = rounding_arg(rounding);
    const std::array<uint8_t, 3> bv = border_arg(border);
    FrameView f = frame_view(frame);
    int64_t n;
    const double* m = mats_ptr(mats, n);
    check_out_size(out_w, out_h);
    py::array_t<uint8_t> out({n, int64_t(out_h), int64_t(out_w), int64_t(3)});
    uint8_t* o = out.mutable_data();
    int64_t bad;
    {
        py::gil_scoped_release nogil;
        bad = warp_crops_u8(f, m, n, out_w, out_h, to_rgb, o, r, bv.data());
    }
    if (bad >= 0) fail("matrices: singular affine at index " + std::to_string(bad));
    return std::move(out);
}

py::array warp_f32(const py::array& frame, const F64& mats, int out_w, int out_h, bool to_rgb, const F32& mean,
                   const F32& std, int rounding, const py::object& border) {
    const Rounding r = rounding_arg(rounding);
    const std::array<uint8_t, 3> bv = border_arg(border);
    FrameView f = frame_view(frame);
    int64_t n;
    const double* m = mats_ptr(mats, n);
    check_out_size(out_w, out_h);
    if (mean.size() != 3 || std.size() != 3) fail("mean/std: expected 3 values each");
    py::array_t<float> out({n, int64_t(3), int64_t(out_h), int64_t(out_w)});
    float* o = out.mutable_data();
    int64_t bad;
    {
        py::gil_scoped_release nogil;
        bad = warp_crops_f32(f, m, n, out_w, out_h, to_rgb, mean.data(), std.data(), o, r, bv.data());
    }
    if (bad >= 0) fail("matrices: singular affine at index " + std::to_string(bad));
    return std::move(out);
}

HmType hm_type(const py::array& a, const char* name) {
    if (py::dtype::of<float>().is(a.dtype())) return HmType::F32;
    if (py::dtype::of<int8_t>().is(a.dtype())) return HmType::I8;
    if (py::dtype::of<uint8_t>().is(a.dtype())) return HmType::U8;
    fail(std::string(name) + ": expected float32, int8 or uint8");
}

// Runs the decode kernel without the GIL; (coords (N, K, 2), scores (N, K)).
static py::tuple run_decode(const DecodeArgs& a, int64_t n, int64_t k) {
    py::array_t<float> coords({n, k, int64_t(2)});
    py::array_t<float> scores(std::vector<py::ssize_t>{n, k});
    float* c = coords.mutable_data();
    float* s = scores.mutable_data();
    bool ok;
    {
        py::gil_scoped_release nogil;
        ok = decode(a, c, s);
    }
    if (!ok) fail("heatmaps: contain NaN (check the model output)");
    return py::make_tuple(coords, scores);
}

py::tuple decode_py(const py::array& hm_in, const py::object& flipped_in, const py::object& inv_in, const I64& perm,
                    bool shift, double scale, int zero_point, int refine, int dark_kernel) {
    if (hm_in.ndim() != 4) fail("heatmaps: expected (N, K, H, W)");
    const HmType t = hm_type(hm_in, "heatmaps");
    py::array hm = py::array::ensure(hm_in, py::array::c_style);
    const int64_t n = hm.shape(0), k = hm.shape(1), h = hm.shape(2), w = hm.shape(3);
    if (h < 1 || w < 1) fail("heatmaps: empty maps");
    py::array fl;
    if (!flipped_in.is_none()) {
        fl = py::array::ensure(flipped_in, py::array::c_style);
        if (!fl.ptr() || fl.ndim() != 4 || fl.shape(0) != n || fl.shape(1) != k || fl.shape(2) != h || fl.shape(3) != w ||
            hm_type(fl, "flipped") != t)
            fail("flipped: expected the same shape and dtype as heatmaps");
    }
    F64 inv;
    if (!inv_in.is_none()) {
        inv = F64::ensure(inv_in);
        if (!inv.ptr() || inv.ndim() != 3 || inv.shape(0) != n || inv.shape(1) != 2 || inv.shape(2) != 3)
            fail("inv_matrices: expected (N, 2, 3)");
        for (int64_t i = 0; i < 6 * n; ++i)
            if (!std::isfinite(inv.data()[i])) fail("inv_matrices: contain NaN or inf");
    }
    if (perm.ndim() != 1 || perm.shape(0) != k) fail("flip_pairs: permutation must have K entries");
    for (int64_t j = 0; j < k; ++j)
        if (perm.data()[j] < 0 || perm.data()[j] >= k) fail("flip_pairs: index out of range");
    if (refine < 0 || refine > 2) fail("refine: expected 0 (quarter), 1 (dark) or 2 (none)");
    if (refine == REFINE_DARK && (dark_kernel < 3 || dark_kernel % 2 == 0)) fail("dark_kernel: must be odd and >= 3");
    if (t != HmType::F32 && !(scale > 0 && std::isfinite(scale))) fail("scale: must be a positive finite number");

    // (a default-constructed py::array is an empty array, not null: test the inputs instead)
    const void* fl_ptr = flipped_in.is_none() ? nullptr : fl.data();
    const double* inv_ptr = inv_in.is_none() ? nullptr : inv.data();
    DecodeArgs a{t, hm.data(), fl_ptr, inv_ptr, perm.data(), n, k, h, w,
                 shift, scale, zero_point, refine, dark_kernel};
    return run_decode(a, n, k);
}

// The runtime's call, kept lean (at one person the argument handling of decode_py is a fifth of
// the time): C-contiguous (N, K, H, W) maps, float32 without quantization or int8/uint8 with a
// positive finite scale and an in-range zero point, the quarter offset, no flip pass, inv None
// or float64 (N, 2, 3) C-contiguous. Anything else raises ValueError, and edgepose.decode then
// takes the general path, whose validation names the problem.
py::tuple decode_quarter_py(const py::object& hm_in, const py::object& inv_in, const py::object& scale_in,
                            const py::object& zp_in) {
    if (!py::isinstance<py::array>(hm_in)) fail("heatmaps: not an array");
    const auto hm = py::reinterpret_borrow<py::array>(hm_in);
    if (hm.ndim() != 4 || !(hm.flags() & py::array::c_style)) fail("heatmaps: not (N, K, H, W) C-contiguous");
    const HmType t = hm_type(hm, "heatmaps");
    double scale = 1.0;
    int zp = 0;
    if (t == HmType::F32) {
        if (!scale_in.is_none() || !zp_in.is_none()) fail("scale/zero_point: not for float32 maps");
    } else {
        if (!py::isinstance<py::float_>(scale_in) && !py::isinstance<py::int_>(scale_in)) fail("scale: not a number");
        scale = scale_in.cast<double>();
        if (!(scale > 0 && std::isfinite(scale))) fail("scale: must be a positive finite number");
        if (!zp_in.is_none()) {
            if (!py::isinstance<py::int_>(zp_in)) fail("zero_point: not an int");
            const long long z = zp_in.cast<long long>();
            if (t == HmType::I8 ? (z < -128 || z > 127) : (z < 0 || z > 255)) fail("zero_point: out of range");
            zp = int(z);
        }
    }
    const int64_t n = hm.shape(0), k = hm.shape(1), h = hm.shape(2), w = hm.shape(3);
    if (h < 1 || w < 1) fail("heatmaps: empty maps");
    const double* inv = nullptr;
    if (!inv_in.is_none()) {
        if (!py::isinstance<py::array>(inv_in)) fail("inv_matrices: not an array");
        const auto m = py::reinterpret_borrow<py::array>(inv_in);
        if (m.ndim() != 3 || !py::dtype::of<double>().is(m.dtype()) || !(m.flags() & py::array::c_style) ||
            m.shape(0) != n || m.shape(1) != 2 || m.shape(2) != 3)
            fail("inv_matrices: not float64 (N, 2, 3) C-contiguous");
        inv = static_cast<const double*>(m.data());
        for (int64_t i = 0; i < 6 * n; ++i)
            if (!std::isfinite(inv[i])) fail("inv_matrices: contain NaN or inf");
    }
    DecodeArgs a{t, hm.data(), nullptr, inv, nullptr, n, k, h, w, true, scale, zp, REFINE_QUARTER, 11};
    return run_decode(a, n, k);
}

py::array flip_merge_py(const F32& hm, const F32& fl, const I64& perm, bool shift) {
    if (hm.ndim() != 4) fail("heatmaps: expected (N, K, H, W)");
    const int64_t n = hm.shape(0), k = hm.shape(1), h = hm.shape(2), w = hm.shape(3);
    if (fl.ndim() != 4 || fl.shape(0) != n || fl.shape(1) != k || fl.shape(2) != h || fl.shape(3) != w)
        fail("flipped: expected the same shape as heatmaps");
    if (perm.ndim() != 1 || perm.shape(0) != k) fail("flip_pairs: permutation must have K entries");
    for (int64_t j = 0; j < k; ++j)
        if (perm.data()[j] < 0 || perm.data()[j] >= k) fail("flip_pairs: index out of range");
    py::array_t<float> out({n, k, h, w});
    float* o = out.mutable_data();
    {
        py::gil_scoped_release nogil;
        flip_merge(hm.data(), fl.data(), perm.data(), n, k, h, w, shift, o);
    }
    return std::move(out);
}

void check_nms(const F64& kpts, const F64& scores, const F64& areas, const F64& sigmas) {
    if (kpts.ndim() != 3 || kpts.shape(2) != 3) fail("keypoints: expected (N, K, 3)");
    const int64_t n = kpts.shape(0), k = kpts.shape(1);
    if (scores.size() != n || areas.size() != n) fail("scores/areas: expected one value per pose");
    if (sigmas.size() != k) fail("sigmas: expected one value per joint");
}

py::array oks_nms_py(const F64& kpts, const F64& scores, const F64& areas, const F64& sigmas, double thr,
                     double vis_thr, bool use_vis) {
    check_nms(kpts, scores, areas, sigmas);
    const int64_t n = kpts.shape(0), k = kpts.shape(1);
    py::array_t<int64_t> keep(n);
    int64_t* kp = keep.mutable_data();
    int64_t m;
    {
        py::gil_scoped_release nogil;
        m = oks_nms(kpts.data(), scores.data(), areas.data(), sigmas.data(), n, k, thr, vis_thr, use_vis, kp);
    }
    keep.resize({m});
    return std::move(keep);
}

py::tuple soft_oks_nms_py(const F64& kpts, const F64& scores, const F64& areas, const F64& sigmas, double thr,
                          double vis_thr, bool use_vis, int method, double sigma, double score_thr) {
    check_nms(kpts, scores, areas, sigmas);
    if (method != 0 && method != 1) fail("method: expected 0 (gaussian) or 1 (linear)");
    if (!(sigma > 0)) fail("sigma: must be > 0");
    const int64_t n = kpts.shape(0), k = kpts.shape(1);
    py::array_t<int64_t> keep(n);
    py::array_t<double> ns(n);
    int64_t* kp = keep.mutable_data();
    double* sp = ns.mutable_data();
    int64_t m;
    {
        py::gil_scoped_release nogil;
        m = soft_oks_nms(kpts.data(), scores.data(), areas.data(), sigmas.data(), n, k, thr, vis_thr, use_vis,
                         method, sigma, score_thr, kp, sp);
    }
    keep.resize({m});
    ns.resize({m});
    return py::make_tuple(keep, ns);
}

// ---- kernel 4: person detector ----

QType q_type(const py::array& a, const std::string& name) {
    if (py::dtype::of<float>().is(a.dtype())) return QType::F32;
    if (py::dtype::of<int8_t>().is(a.dtype())) return QType::I8;
    if (py::dtype::of<uint8_t>().is(a.dtype())) return QType::U8;
    fail(name + ": expected float32, int8 or uint8");
}

QTensor q_tensor(const py::array& a, double scale, int zero_point, const std::string& name) {
    const QType t = q_type(a, name);
    if (t != QType::F32 && !(scale > 0 && std::isfinite(scale))) fail(name + ": scale must be a positive finite number");
    return QTensor{t, a.data(), scale, zero_point};
}

py::array c_array(const py::handle& h, const std::string& name) {
    py::array a = py::array::ensure(h, py::array::c_style);
    if (!a.ptr()) fail(name + ": expected a numpy array");
    return a;
}

py::tuple boxes_scores(const float* b, const float* s, int64_t m) {
    py::array_t<float> boxes({m, int64_t(4)});
    py::array_t<float> scores(m);
    if (m) {
        std::memcpy(boxes.mutable_data(), b, sizeof(float) * 4 * m);
        std::memcpy(scores.mutable_data(), s, sizeof(float) * m);
    }
    return py::make_tuple(boxes, scores);
}

// The checks every per-stride level shares: classes (1, nc, h, w) like the boxes, class_id
// (entry 10) in range, a positive stride (entry 9). Returns {class_id, stride}.
static std::pair<int64_t, int> check_level(const py::array& cls, int64_t h, int64_t w, const py::tuple& t,
                                           const std::string& at) {
    if (cls.ndim() != 4 || cls.shape(0) != 1 || cls.shape(2) != h || cls.shape(3) != w)
        fail("classes" + at + ": expected (1, nc, h, w) like boxes");
    const int64_t cid = t[10].cast<int64_t>();
    if (cid < 0 || cid >= cls.shape(1)) fail("class_id: out of range for classes" + at);
    const int stride = t[9].cast<int>();
    if (stride <= 0) fail("strides" + at + ": expected a positive integer");
    return {cid, stride};
}

// levels: per stride (box, box_scale, box_zp, cls, cls_scale, cls_zp, sum or None, sum_scale, sum_zp,
// stride, class_id).
py::tuple yolo_decode_dfl_py(const py::list& levels, float thr) {
    std::vector<py::array> hold;  // keeps the (possibly converted) arrays alive without the GIL
    std::vector<DflLevel> lv;
    int64_t total = 0;
    for (size_t i = 0; i < levels.size(); ++i) {
        const std::string at = "[" + std::to_string(i) + "]";
        py::tuple t = levels[i].cast<py::tuple>();
        if (t.size() != 11) fail("levels" + at + ": expected 11 entries");
        py::array box = c_array(t[0], "boxes" + at), cls = c_array(t[3], "classes" + at);
        if (box.ndim() != 4 || box.shape(0) != 1 || box.shape(1) % 4 != 0 || box.shape(1) == 0 || box.shape(1) > 256)
            fail("boxes" + at + ": expected (1, 4*reg_max, h, w), reg_max <= 64");
        const int64_t h = box.shape(2), w = box.shape(3), hw = h * w;
        const auto [cid, stride] = check_level(cls, h, w, t, at);
        DflLevel L{};
        L.box = q_tensor(box, t[1].cast<double>(), t[2].cast<int>(), "box_quant" + at);
        L.cls = q_tensor(cls, t[4].cast<double>(), t[5].cast<int>(), "cls_quant" + at);
        L.cls.data = static_cast<const uint8_t*>(cls.data()) + cid * hw * cls.itemsize();
        L.sum = QTensor{QType::F32, nullptr, 1.0, 0};
        if (!t[6].is_none()) {
            py::array sm = c_array(t[6], "score_sum" + at);
            if (sm.ndim() != 4 || sm.shape(0) != 1 || sm.shape(1) != 1 || sm.shape(2) != h || sm.shape(3) != w)
                fail("score_sum" + at + ": expected (1, 1, h, w) like boxes");
            L.sum = q_tensor(sm, t[7].cast<double>(), t[8].cast<int>(), "sum_quant" + at);
            hold.push_back(sm);
        }
        L.h = h, L.w = w, L.reg = box.shape(1) / 4, L.stride = stride;
        hold.push_back(box);
        hold.push_back(cls);
        lv.push_back(L);
        total += hw;
    }
    // room for every anchor, left uninitialised (only the m written are copied out)
    std::unique_ptr<float[]> b(new float[size_t(4 * total)]), s(new float[size_t(total)]);
    int64_t m;
    {
        py::gil_scoped_release nogil;
        m = yolo_decode_dfl(lv.data(), int(lv.size()), thr, b.get(), s.get());
    }
    return boxes_scores(b.get(), s.get(), m);
}

// levels: per stride (box, box_scale, box_zp, obj, obj_scale, obj_zp, cls, cls_scale, cls_zp, stride, class_id).
py::tuple yolo_decode_yolox_split_py(const py::list& levels, float thr) {
    std::vector<py::array> hold;
    std::vector<YoloxLevel> lv;
    int64_t total = 0;
    for (size_t i = 0; i < levels.size(); ++i) {
        const std::string at = "[" + std::to_string(i) + "]";
        py::tuple t = levels[i].cast<py::tuple>();
        if (t.size() != 11) fail("levels" + at + ": expected 11 entries");
        py::array box = c_array(t[0], "boxes" + at), obj = c_array(t[3], "objectness" + at),
                  cls = c_array(t[6], "classes" + at);
        if (box.ndim() != 4 || box.shape(0) != 1 || box.shape(1) != 4) fail("boxes" + at + ": expected (1, 4, h, w)");
        const int64_t h = box.shape(2), w = box.shape(3), hw = h * w;
        if (obj.ndim() != 4 || obj.shape(0) != 1 || obj.shape(1) != 1 || obj.shape(2) != h || obj.shape(3) != w)
            fail("objectness" + at + ": expected (1, 1, h, w) like boxes");
        const auto [cid, stride] = check_level(cls, h, w, t, at);
        YoloxLevel L{};
        L.box = q_tensor(box, t[1].cast<double>(), t[2].cast<int>(), "box_quant" + at);
        L.obj = q_tensor(obj, t[4].cast<double>(), t[5].cast<int>(), "obj_quant" + at);
        L.cls = q_tensor(cls, t[7].cast<double>(), t[8].cast<int>(), "cls_quant" + at);
        L.cls.data = static_cast<const uint8_t*>(cls.data()) + cid * hw * cls.itemsize();
        L.h = h, L.w = w, L.stride = stride;
        hold.push_back(box);
        hold.push_back(obj);
        hold.push_back(cls);
        lv.push_back(L);
        total += hw;
    }
    std::unique_ptr<float[]> b(new float[size_t(4 * total + 4)]), s(new float[size_t(total + 1)]);
    int64_t m;
    {
        py::gil_scoped_release nogil;
        m = yolo_decode_yolox_split(lv.data(), int(lv.size()), thr, b.get(), s.get());
    }
    return boxes_scores(b.get(), s.get(), m);
}

py::tuple yolo_decode_anchor_free_py(const py::array& out_in, float thr, int64_t class_id, double scale, int zero_point) {
    py::array out = c_array(out_in, "out");
    if (out.ndim() != 2 || out.shape(0) <= 4) fail("out: expected (4 + nc, A)");
    if (class_id < 0 || class_id >= out.shape(0) - 4) fail("class_id: out of range for out");
    const QTensor t = q_tensor(out, scale, zero_point, "quant");
    const int64_t a = out.shape(1);
    std::unique_ptr<float[]> b(new float[size_t(4 * a)]), s(new float[size_t(a)]);
    int64_t m;
    {
        py::gil_scoped_release nogil;
        m = yolo_decode_anchor_free(t, a, 4 + class_id, thr, b.get(), s.get());
    }
    return boxes_scores(b.get(), s.get(), m);
}

py::array yolo_nms_py(const F32& boxes, const F32& scores, double iou_thr, int64_t top_k) {
    if (boxes.ndim() != 2 || boxes.shape(1) != 4) fail("boxes: expected (N, 4)");
    const int64_t n = boxes.shape(0);
    if (scores.ndim() != 1 || scores.shape(0) != n) fail("scores: expected (N,)");
    if (top_k < 0) fail("top_k: must be >= 0");
    std::vector<int64_t> keep(size_t(std::min(n, top_k)) + 1);
    int64_t m;
    {
        py::gil_scoped_release nogil;
        m = yolo_nms(boxes.data(), scores.data(), n, iou_thr, top_k, keep.data());
    }
    py::array_t<int64_t> out(m);
    if (m) std::memcpy(out.mutable_data(), keep.data(), sizeof(int64_t) * m);
    return std::move(out);
}

}  // namespace

PYBIND11_MODULE(_native, mod) {
    mod.doc() = "edgepose native kernels: crop warp, heatmap decode, OKS NMS, detector decode (docs/KERNELS.md)";
    mod.def("warp_crops_u8", &warp_u8, py::arg("frame"), py::arg("mats"), py::arg("out_w"), py::arg("out_h"),
            py::arg("to_rgb"), py::arg("rounding") = 0, py::arg("border") = py::none(),
            "Crop N boxes -> (N, out_h, out_w, 3) uint8; rounding 0 = OpenCV 4.x fixed point (bit-exact), "
            "1 = OpenCV 5.x float32; border: 3 values (frame order) read outside the frame, default 0.");
    mod.def("warp_crops_f32", &warp_f32, py::arg("frame"), py::arg("mats"), py::arg("out_w"), py::arg("out_h"),
            py::arg("to_rgb"), py::arg("mean"), py::arg("std"), py::arg("rounding") = 0, py::arg("border") = py::none(),
            "Crop N boxes -> (N, 3, out_h, out_w) float32, (v - mean) / std; rounding as warp_crops_u8.");
    mod.def("decode", &decode_py, py::arg("heatmaps"), py::arg("flipped"), py::arg("inv"), py::arg("perm"),
            py::arg("shift"), py::arg("scale"), py::arg("zero_point"), py::arg("refine"), py::arg("dark_kernel"),
            "(N, K, H, W) heatmaps -> (coords (N, K, 2) float32, scores (N, K) float32).");
    mod.def(
        "argmax_first",
        [](const py::array& a_in) -> int64_t {
            py::array a = py::array::ensure(a_in, py::array::c_style);
            if (!a.ptr() || a.ndim() != 1 || a.shape(0) < 1) fail("a: expected a non-empty 1-D array");
            const int64_t n = a.shape(0);
            const void* p = a.data();
            int t = py::dtype::of<float>().is(a.dtype())     ? 0
                    : py::dtype::of<int8_t>().is(a.dtype())  ? 1
                    : py::dtype::of<uint8_t>().is(a.dtype()) ? 2
                    : py::dtype::of<int16_t>().is(a.dtype()) ? 3
                                                              : -1;
            if (t < 0) fail("a: expected float32, int8, uint8 or int16");
            py::gil_scoped_release nogil;
            if (t == 0) return argmax_first_f32(static_cast<const float*>(p), n);
            if (t == 1) return argmax_first_i8(static_cast<const int8_t*>(p), n);
            if (t == 2) return argmax_first_u8(static_cast<const uint8_t*>(p), n);
            return argmax_first_i16(static_cast<const int16_t*>(p), n);
        },
        py::arg("a"), "The decode's scan on a 1-D array: np.argmax's index, or -1 if a float32 array holds NaN.");
    mod.def("simd_level", &simd_level, "Instruction set of the decode's argmax scans: avx2, sse2, neon or scalar.");
    mod.def(
        "set_simd_level",
        [](const std::string& name) {
            if (!set_simd_level(name.c_str()))
                fail("simd level: " + name +
                     " cannot run on this build or CPU (auto, scalar, sse2 or avx2 on x86-64, neon on aarch64)");
        },
        py::arg("name"), "Force the argmax scans onto one instruction set (tests, benchmarks); 'auto' = the best.");
    mod.def("decode_quarter", &decode_quarter_py, py::arg("heatmaps"), py::arg("inv"), py::arg("scale"),
            py::arg("zero_point"),
            "decode() of C-contiguous maps (float32, or int8/uint8 with scale and zero_point) with the quarter "
            "offset and no flip pass; ValueError for anything else (edgepose.decode then validates it in full).");
    mod.def("flip_merge", &flip_merge_py, py::arg("heatmaps"), py::arg("flipped"), py::arg("perm"),
            py::arg("shift"), "(heatmaps + flip_back(flipped)) / 2, float32 (N, K, H, W).");
    mod.def("oks_nms", &oks_nms_py, py::arg("keypoints"), py::arg("scores"), py::arg("areas"), py::arg("sigmas"),
            py::arg("thr"), py::arg("vis_thr"), py::arg("use_vis"), "Greedy OKS NMS -> kept indices (int64).");
    mod.def("soft_oks_nms", &soft_oks_nms_py, py::arg("keypoints"), py::arg("scores"), py::arg("areas"),
            py::arg("sigmas"), py::arg("thr"), py::arg("vis_thr"), py::arg("use_vis"), py::arg("method"),
            py::arg("sigma"), py::arg("score_thr"), "Soft OKS NMS -> (kept indices, their scores).");
    mod.def("yolo_decode_dfl", &yolo_decode_dfl_py, py::arg("levels"), py::arg("thr"),
            "Model zoo YOLOv8 DFL outputs -> (boxes (M, 4) float32 x0 y0 x1 y1, scores (M,) float32).");
    mod.def("yolo_decode_yolox_split", &yolo_decode_yolox_split_py, py::arg("levels"), py::arg("thr"),
            "YOLOX head split per stride (box, objectness, classes) -> (boxes (M, 4) float32, scores (M,) float32).");
    mod.def("yolo_decode_anchor_free", &yolo_decode_anchor_free_py, py::arg("out"), py::arg("thr"),
            py::arg("class_id"), py::arg("scale"), py::arg("zero_point"),
            "Ultralytics (4 + nc, A) output -> (boxes (M, 4) float32, scores (M,) float32).");
    mod.def("yolo_nms", &yolo_nms_py, py::arg("boxes"), py::arg("scores"), py::arg("iou_thr"), py::arg("top_k"),
            "Class-agnostic greedy IoU NMS -> kept indices (int64), best first.");
}
