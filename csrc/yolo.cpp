// Kernel 4: person-detector decode (model zoo DFL layout, Ultralytics export) and class-agnostic
// greedy IoU NMS. The rules, and the NumPy twins that are their readable form, are in
// edgepose/yolo.py; every value here is computed by the same float64 operations in the same
// order, so results equal the twins' to the last bit.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "kernels.hpp"

namespace edgepose {

namespace {

// exp(x) for x <= 0: 2^k * exp(r), k = rint(x / ln 2), r = x - k ln 2 (two-part ln 2), exp(r)
// by its Taylor series to r^12 in Horner form. Same operations as yolo.exp_nonpos.
constexpr double kInvLn2 = 1.4426950408889634;
constexpr double kLn2Hi = 6.93147180369123816490e-01;
constexpr double kLn2Lo = 1.90821492927058770002e-10;
constexpr double kExpMin = -708.0;
constexpr double kExpCoef[13] = {1.0,
                                 1.0,
                                 1.0 / 2.0,
                                 1.0 / 6.0,
                                 1.0 / 24.0,
                                 1.0 / 120.0,
                                 1.0 / 720.0,
                                 1.0 / 5040.0,
                                 1.0 / 40320.0,
                                 1.0 / 362880.0,
                                 1.0 / 3628800.0,
                                 1.0 / 39916800.0,
                                 1.0 / 479001600.0};

// exp of n values in [kExpMin, 0] (or NaN, which stays NaN: r, p and the product are NaN), with
// no comparison or branch, so that the compiler vectorises it (x86-64 SSE2: two doubles a step):
// k is read from the low bits of x / ln 2 + 1.5 * 2^52 (that sum rounds to an integer, half to
// even, like np.rint, for |x / ln 2| < 2^51), 2^k (k >= -1022: a normal double) is built from
// its exponent bits, and p * 2^k is exactly ldexp(p, k).
inline void exp_core_n(const double* x, double* out, int64_t n) {
    constexpr double kRound = 6755399441055744.0;  // 1.5 * 2^52
    constexpr uint64_t kRoundBits = 0x4338000000000000ull;
    const double* c = kExpCoef;
    for (int64_t i = 0; i < n; ++i) {
        const double xi = x[i];
        const double t = xi * kInvLn2 + kRound;
        const double k = t - kRound;
        const double r = (xi - k * kLn2Hi) - k * kLn2Lo;
        double p = c[12] * r + c[11];  // Horner from r^12 down, written out (a loop does not vectorise)
        p = p * r + c[10];
        p = p * r + c[9];
        p = p * r + c[8];
        p = p * r + c[7];
        p = p * r + c[6];
        p = p * r + c[5];
        p = p * r + c[4];
        p = p * r + c[3];
        p = p * r + c[2];
        p = p * r + c[1];
        p = p * r + c[0];
        uint64_t tb;
        std::memcpy(&tb, &t, sizeof(tb));
        const uint64_t sb = ((tb - kRoundBits) + 1023) << 52;
        double scale;
        std::memcpy(&scale, &sb, sizeof(scale));
        out[i] = p * scale;
    }
}

constexpr int64_t kMaxReg = 64;  // DFL bins per side; the wrapper rejects more

// exp_nonpos for n <= kMaxReg values: below kExpMin the result is 0.
inline void exp_nonpos_n(const double* x, double* out, int64_t n) {
    double c[kMaxReg];
    bool low = false;
    for (int64_t i = 0; i < n; ++i) {
        low |= x[i] < kExpMin;
        c[i] = x[i] < kExpMin ? kExpMin : x[i];
    }
    exp_core_n(c, out, n);
    if (low)
        for (int64_t i = 0; i < n; ++i)
            if (x[i] < kExpMin) out[i] = 0.0;
}

inline double exp_nonpos(double x) {
    double v;
    exp_nonpos_n(&x, &v, 1);
    return v;
}

// exp(x) for any x: NaN stays NaN, above kExpMax +inf, below kExpMin 0, else the same sequence
// of operations as exp_nonpos (yolo.exp_fixed).
constexpr double kExpMax = 708.0;
inline double exp_fixed(double x) {
    if (x != x) return x;
    if (x > kExpMax) return HUGE_VAL;
    if (x < kExpMin) return 0.0;
    double v;
    exp_core_n(&x, &v, 1);
    return v;
}

inline int q_at(const QTensor& t, int64_t i) {
    return t.type == QType::I8 ? int(static_cast<const int8_t*>(t.data)[i]) : int(static_cast<const uint8_t*>(t.data)[i]);
}

// float64 value of element i (dequantized for integer tensors).
inline double value_at(const QTensor& t, int64_t i) {
    if (t.type == QType::F32) return double(static_cast<const float*>(t.data)[i]);
    return double(q_at(t, i) - t.zero_point) * t.scale;
}

inline float score_at(const QTensor& t, int64_t i) {
    if (t.type == QType::F32) return static_cast<const float*>(t.data)[i];
    return float(double(q_at(t, i) - t.zero_point) * t.scale);
}

// Smallest integer whose score passes (see yolo.quantized_threshold); hi + 1 when none does.
int quantized_threshold(const QTensor& t, float thr) {
    const int lo = t.type == QType::I8 ? -128 : 0, hi = t.type == QType::I8 ? 127 : 255;
    for (int q = lo; q <= hi; ++q)
        if (float(double(q - t.zero_point) * t.scale) >= thr) return q;
    return hi + 1;
}

// Calls fn(i) for every i < n whose element of plane p passes (v >= t), in increasing order.
// Blocks of 64 are first tested with one OR-reduction of comparisons (vectorised), so a sparse
// plane costs about one compare per element.
template <class T, class Fn>
inline void scan_plane(const T* p, int64_t n, T t, Fn fn) {
    constexpr int64_t kBlock = 64;
    int64_t i = 0;
    for (; i + kBlock <= n; i += kBlock) {
        int any = 0;
        for (int64_t j = 0; j < kBlock; ++j) any |= int(p[i + j] >= t);
        if (!any) continue;
        for (int64_t j = 0; j < kBlock; ++j)
            if (p[i + j] >= t) fn(i + j);
    }
    for (; i < n; ++i)
        if (p[i] >= t) fn(i);
}

// Dispatches scan_plane on the tensor's type with the threshold in its domain: floats compare
// with thr; integers with their threshold integer (int8 as order-preserving bytes q ^ 0x80).
// Returns false (and calls nothing) when no value of the type can pass.
template <class Fn>
bool scan_passing(const QTensor& t, int64_t n, float thr, Fn fn) {
    if (t.type == QType::F32) {
        scan_plane(static_cast<const float*>(t.data), n, thr, fn);
        return true;
    }
    const int qmin = quantized_threshold(t, thr);
    if (t.type == QType::U8) {
        if (qmin > 255) return false;
        scan_plane(static_cast<const uint8_t*>(t.data), n, uint8_t(std::max(qmin, 0)), fn);
        return true;
    }
    if (qmin > 127) return false;
    // int8 compare as signed directly: GCC vectorises signed byte compares (pcmpgtb) fine
    scan_plane(static_cast<const int8_t*>(t.data), n, int8_t(std::max(qmin, -128)), fn);
    return true;
}

inline bool passes(const QTensor& t, int64_t i, float thr, int qmin) {
    if (t.type == QType::F32) return static_cast<const float*>(t.data)[i] >= thr;
    return q_at(t, i) >= qmin;
}

// exp((q - qmax) * scale) for d = qmax - q in 0..255, computed on first use (a box tensor of a
// sparse frame touches a few dozen of the 256 entries).
struct ExpTable {
    double scale = 1.0;
    double v[256];
    bool have[256];
    void reset(double s) {
        scale = s;
        std::fill(have, have + 256, false);
    }
    double at(int d) {
        if (!have[d]) {
            v[d] = exp_nonpos(double(-d) * scale);
            have[d] = true;
        }
        return v[d];
    }
};

// Expected distance (bins) of one side: softmax over reg logits spaced `step` apart from first,
// then sum(k e_k) / sum(e_k) accumulated k = 0, 1, ... The float path computes all weights first
// (independent exps that the CPU overlaps), then sums them in order.
inline double dfl_side(const QTensor& t, int64_t first, int64_t step, int64_t reg, ExpTable& lut) {
    double e[kMaxReg];
    if (t.type == QType::F32) {
        const float* x = static_cast<const float*>(t.data) + first;
        float v[kMaxReg];
        for (int64_t k = 0; k < reg; ++k) v[k] = x[k * step];
        float m = v[0];
        for (int64_t k = 1; k < reg; ++k) m = std::max(m, v[k]);
        const double md = double(m);
        double d[kMaxReg];
        for (int64_t k = 0; k < reg; ++k) d[k] = double(v[k]) - md;
        exp_nonpos_n(d, e, reg);
    } else {
        int q[kMaxReg];
        for (int64_t k = 0; k < reg; ++k) q[k] = q_at(t, first + k * step);
        int qm = q[0];
        for (int64_t k = 1; k < reg; ++k) qm = std::max(qm, q[k]);
        for (int64_t k = 0; k < reg; ++k) e[k] = lut.at(qm - q[k]);
    }
    double num = 0.0, den = 0.0;
    for (int64_t k = 0; k < reg; ++k) {
        den = den + e[k];
        num = num + double(k) * e[k];
    }
    return num / den;
}

}  // namespace

int64_t yolo_decode_dfl(const DflLevel* levels, int n_levels, float thr, float* boxes, float* scores) {
    int64_t m = 0;
    ExpTable lut;
    for (int li = 0; li < n_levels; ++li) {
        const DflLevel& L = levels[li];
        const int64_t hw = L.h * L.w;
        const bool has_sum = L.sum.data != nullptr;
        const int sum_qmin = has_sum && L.sum.type != QType::F32 ? quantized_threshold(L.sum, thr) : 0;
        bool lut_ready = false;
        const double s = double(L.stride);
        scan_passing(L.cls, hw, thr, [&](int64_t i) {
            if (has_sum && !passes(L.sum, i, thr, sum_qmin)) return;
            if (!lut_ready && L.box.type != QType::F32) {
                lut.reset(L.box.scale);
                lut_ready = true;
            }
            double d[4];
            for (int side = 0; side < 4; ++side) d[side] = dfl_side(L.box, side * L.reg * hw + i, hw, L.reg, lut);
            const double gx = double(i % L.w) + 0.5, gy = double(i / L.w) + 0.5;
            float* b = boxes + 4 * m;
            b[0] = float((gx - d[0]) * s);
            b[1] = float((gy - d[1]) * s);
            b[2] = float((gx + d[2]) * s);
            b[3] = float((gy + d[3]) * s);
            scores[m] = score_at(L.cls, i);
            ++m;
        });
    }
    return m;
}

int64_t yolo_decode_yolox_split(const YoloxLevel* levels, int n_levels, float thr, float* boxes, float* scores) {
    int64_t m = 0;
    for (int li = 0; li < n_levels; ++li) {
        const YoloxLevel& L = levels[li];
        const int64_t hw = L.h * L.w;
        const double s = double(L.stride);
        // the exact test, for a candidate anchor i
        auto emit = [&](int64_t i) {
            const float sc = float(value_at(L.obj, i) * value_at(L.cls, i));
            if (!(sc >= thr)) return;
            const double cx = (value_at(L.box, i) + double(i % L.w)) * s;
            const double cy = (value_at(L.box, hw + i) + double(i / L.w)) * s;
            const double bw = exp_fixed(value_at(L.box, 2 * hw + i)) * s;
            const double bh = exp_fixed(value_at(L.box, 3 * hw + i)) * s;
            float* b = boxes + 4 * m;
            b[0] = float(cx - 0.5 * bw);
            b[1] = float(cy - 0.5 * bh);
            b[2] = float(cx + 0.5 * bw);
            b[3] = float(cy + 0.5 * bh);
            scores[m] = sc;
            ++m;
        };
        if (L.obj.type != QType::F32 && L.cls.type != QType::F32) {
            // Integers: an objectness value q can pass only if float32(obj(q) * c) >= thr for some
            // class value c of its type; the product is monotone in c, so the extremes decide.
            // The table is exact (no passing anchor is skipped); emit() tests each candidate.
            const int clo = L.cls.type == QType::I8 ? -128 : 0, chi = L.cls.type == QType::I8 ? 127 : 255;
            const double cmin = double(clo - L.cls.zero_point) * L.cls.scale;
            const double cmax = double(chi - L.cls.zero_point) * L.cls.scale;
            const int olo = L.obj.type == QType::I8 ? -128 : 0, ohi = L.obj.type == QType::I8 ? 127 : 255;
            bool pass[256];
            for (int q = olo; q <= ohi; ++q) {
                const double o = double(q - L.obj.zero_point) * L.obj.scale;
                pass[q - olo] = float(o * cmax) >= thr || float(o * cmin) >= thr;
            }
            int q0 = ohi + 1;  // the table is often "q >= q0": then the vectorised scan applies
            while (q0 > olo && pass[q0 - 1 - olo]) --q0;
            bool monotone = true;
            for (int q = olo; q < q0; ++q) monotone = monotone && !pass[q - olo];
            if (monotone) {
                if (q0 > ohi) continue;
                if (L.obj.type == QType::I8)
                    scan_plane(static_cast<const int8_t*>(L.obj.data), hw, int8_t(q0), emit);
                else
                    scan_plane(static_cast<const uint8_t*>(L.obj.data), hw, uint8_t(q0), emit);
            } else {
                for (int64_t i = 0; i < hw; ++i)
                    if (pass[q_at(L.obj, i) - olo]) emit(i);
            }
        } else if (L.obj.type == QType::F32 && L.cls.type == QType::F32) {
            // Floats: blocks of 64 products tested at once (vectorised), then the passing block's anchors.
            const float* o = static_cast<const float*>(L.obj.data);
            const float* c = static_cast<const float*>(L.cls.data);
            constexpr int64_t kBlock = 64;
            int64_t i = 0;
            for (; i + kBlock <= hw; i += kBlock) {
                int any = 0;
                for (int64_t j = 0; j < kBlock; ++j) any |= int(float(double(o[i + j]) * double(c[i + j])) >= thr);
                if (!any) continue;
                for (int64_t j = 0; j < kBlock; ++j) emit(i + j);
            }
            for (; i < hw; ++i) emit(i);
        } else {
            for (int64_t i = 0; i < hw; ++i) emit(i);
        }
    }
    return m;
}

int64_t yolo_decode_anchor_free(const QTensor& out, int64_t anchors, int64_t score_row, float thr, float* boxes,
                                float* scores) {
    int64_t m = 0;
    QTensor row = out;
    const int64_t item = out.type == QType::F32 ? 4 : 1;
    row.data = static_cast<const uint8_t*>(out.data) + score_row * anchors * item;
    scan_passing(row, anchors, thr, [&](int64_t a) {
        const double cx = value_at(out, a), cy = value_at(out, anchors + a);
        const double w = value_at(out, 2 * anchors + a), h = value_at(out, 3 * anchors + a);
        float* b = boxes + 4 * m;
        b[0] = float(cx - 0.5 * w);
        b[1] = float(cy - 0.5 * h);
        b[2] = float(cx + 0.5 * w);
        b[3] = float(cy + 0.5 * h);
        scores[m] = score_at(row, a);
        ++m;
    });
    return m;
}

int64_t yolo_nms(const float* boxes, const float* scores, int64_t n, double iou_thr, int64_t top_k, int64_t* keep) {
    std::vector<int64_t> order(n);
    std::iota(order.begin(), order.end(), int64_t(0));
    std::stable_sort(order.begin(), order.end(), [scores](int64_t a, int64_t b) { return scores[a] > scores[b]; });
    // boxes in score order, as float64 columns, with their areas
    std::vector<double> x0(n), y0(n), x1(n), y1(n), area(n);
    for (int64_t r = 0; r < n; ++r) {
        const float* b = boxes + 4 * order[r];
        x0[r] = b[0], y0[r] = b[1], x1[r] = b[2], y1[r] = b[3];
        area[r] = std::max(x1[r] - x0[r], 0.0) * std::max(y1[r] - y0[r], 0.0);
    }
    std::vector<char> gone(n, 0);
    int64_t k = 0;
    for (int64_t r = 0; r < n && k < top_k; ++r) {
        if (gone[r]) continue;
        keep[k++] = order[r];
        if (k == top_k) break;
        const double ax0 = x0[r], ay0 = y0[r], ax1 = x1[r], ay1 = y1[r], aa = area[r];
        for (int64_t j = r + 1; j < n; ++j) {
            if (gone[j]) continue;
            const double iw = std::max(std::min(ax1, x1[j]) - std::max(ax0, x0[j]), 0.0);
            const double ih = std::max(std::min(ay1, y1[j]) - std::max(ay0, y0[j]), 0.0);
            const double inter = iw * ih;
            const double uni = (aa + area[j]) - inter;
            double iou;
            if (uni > 0)
                iou = inter / uni;
            else  // both boxes have zero area: identical ones are duplicates
                iou = (ax0 == x0[j] && ay0 == y0[j] && ax1 == x1[j] && ay1 == y1[j]) ? 1.0 : 0.0;
            if (iou > iou_thr) gone[j] = 1;
        }
    }
    return k;
}

}  // namespace edgepose
