// Kernel 2: heatmaps -> keypoints (argmax, quarter offset or DARK, back-transform), with the
// flip-test merge fused in. Semantics: edgepose/decode.py (decode_numpy is the readable twin).
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "argmax.hpp"
#include "kernels.hpp"

namespace edgepose {

namespace {

// Index of the first maximum (row-major, like np.argmax) of an h x w map; -1 if it holds NaN.
// The vectorised scans are in argmax.cpp.
inline int64_t argmax_first(const float* p, int64_t n) { return argmax_first_f32(p, n); }
inline int64_t argmax_first(const int8_t* p, int64_t n) { return argmax_first_i8(p, n); }
inline int64_t argmax_first(const uint8_t* p, int64_t n) { return argmax_first_u8(p, n); }
inline int64_t argmax_first(const int16_t* p, int64_t n) { return argmax_first_i16(p, n); }

// cv2.getGaussianKernel(size, 0) weights, normalised.
std::vector<double> gaussian_1d(int size) {
    const double sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8;
    std::vector<double> k(size);
    double sum = 0;
    for (int i = 0; i < size; ++i) {
        const double r = i - (size - 1) / 2.0;
        k[i] = std::exp(-(r * r) / (2 * sigma * sigma));
        sum += k[i];
    }
    for (double& v : k) v /= sum;
    return k;
}

// The map seen by the decoder: real value = (p[i] - zp) * factor. For float maps zp = 0 and
// factor = 1; for quantized maps argmax and signs are taken on the integers.
template <class V>
struct MapView {
    const V* p;
    int64_t h, w;
    int zp;
    double factor;
    double real(int64_t y, int64_t x) const { return double(int64_t(0) + p[y * w + x] - zp) * factor; }
    double diff(int64_t y1, int64_t x1, int64_t y0, int64_t x0) const {
        return double(p[y1 * w + x1]) - double(p[y0 * w + x0]);
    }
};

template <class V>
double blur_at(const MapView<V>& m, int64_t y, int64_t x, const std::vector<double>& k1) {
    const int64_t r = int64_t(k1.size()) / 2;
    const int64_t y0 = std::max<int64_t>(0, y - r), y1 = std::min<int64_t>(m.h, y + r + 1);
    const int64_t x0 = std::max<int64_t>(0, x - r), x1 = std::min<int64_t>(m.w, x + r + 1);
    double total = 0;
    for (int64_t xx = x0; xx < x1; ++xx) {  // (ky @ patch) @ kx, in that order
        double col = 0;
        for (int64_t yy = y0; yy < y1; ++yy) col += k1[yy - (y - r)] * m.real(yy, xx);
        total += col * k1[xx - (x - r)];
    }
    return total;
}

template <class V>
void dark_offset(const MapView<V>& m, int64_t px, int64_t py, const std::vector<double>& k1, double& ox,
                 double& oy) {
    auto lv = [&](int dy, int dx) { return std::log(std::max(blur_at(m, py + dy, px + dx, k1), 1e-10)); };
    const double c = lv(0, 0);
    const double dx = 0.5 * (lv(0, 1) - lv(0, -1));
    const double dy = 0.5 * (lv(1, 0) - lv(-1, 0));
    const double dxx = 0.25 * (lv(0, 2) - 2 * c + lv(0, -2));
    const double dyy = 0.25 * (lv(2, 0) - 2 * c + lv(-2, 0));
    const double dxy = 0.25 * (lv(1, 1) - lv(-1, 1) - lv(1, -1) + lv(-1, -1));
    const double det = dxx * dyy - dxy * dxy;
    if (det == 0) {
        ox = oy = 0;
        return;
    }
    ox = -(dyy * dx - dxy * dy) / det;
    oy = -(-dxy * dx + dxx * dy) / det;
}

inline double sgn(double d) { return double((d > 0) - (d < 0)); }

// One map -> heatmap coordinates (x, y) and score.
template <class V>
bool decode_map(const MapView<V>& m, float score_factor, bool quantized, int refine, const std::vector<double>& k1,
                double& x, double& y, float& score) {
    const int64_t idx = argmax_first(m.p, m.h * m.w);
    if (idx < 0) return false;
    const V best = m.p[idx];
    score = quantized ? float(int64_t(0) + best - m.zp) * score_factor : float(best);
    x = y = 0;
    if (!(score > 0)) return true;
    const int64_t px = idx % m.w, py = idx / m.w;
    x = double(px);
    y = double(py);
    if (refine == REFINE_QUARTER) {
        if (1 < px && px < m.w - 1 && 1 < py && py < m.h - 1) {
            x += 0.25 * sgn(m.diff(py, px + 1, py, px - 1));
            y += 0.25 * sgn(m.diff(py + 1, px, py - 1, px));
        }
    } else if (refine == REFINE_DARK) {
        if (1 < px && px < m.w - 2 && 1 < py && py < m.h - 2) {
            double ox, oy;
            dark_offset(m, px, py, k1, ox, oy);
            x += ox;
            y += oy;
        }
    }
    return true;
}

// One row of the flip-test merge: out[x] = op(a[x], b[src(x)]) where src mirrors the flipped
// row, shifted one pixel right when `shift` (column 0 then reads the flipped row's last pixel,
// i.e. keeps the mirrored value, as the reference does). Written as plain reversed loops so the
// compiler vectorises them.
template <class A, class O, class Op>
inline void merge_row(const A* a, const A* b, O* out, int64_t w, bool shift, Op op) {
    if (shift && w > 1) {
        out[0] = op(a[0], b[w - 1]);
        for (int64_t x = 1; x < w; ++x) out[x] = op(a[x], b[w - x]);
    } else {
        for (int64_t x = 0; x < w; ++x) out[x] = op(a[x], b[w - 1 - x]);
    }
}

template <class Q>
bool decode_typed(const DecodeArgs& a, float* coords, float* scores) {
    const int64_t hw = a.h * a.w;
    const bool quantized = a.type != HmType::F32;
    const bool flip = a.flipped != nullptr;
    const Q* hm = static_cast<const Q*>(a.hm);
    const Q* fl = static_cast<const Q*>(a.flipped);
    // quantized merge runs on int16 sums (q_a - zp) + (q_b - zp), which cannot overflow
    using Merged = typename std::conditional<std::is_same<Q, float>::value, float, int16_t>::type;
    std::vector<Merged> merged(flip ? hw : 0);
    const double factor = quantized ? (flip ? a.scale * 0.5 : a.scale) : 1.0;
    const float score_factor = float(factor);
    std::vector<double> k1;
    if (a.refine == REFINE_DARK) k1 = gaussian_1d(a.dark_kernel);
    for (int64_t i = 0; i < a.n; ++i) {
        for (int64_t j = 0; j < a.k; ++j) {
            const Q* p = hm + (i * a.k + j) * hw;
            double x, y;
            float s;
            if (!flip) {
                MapView<Q> m{p, a.h, a.w, quantized ? a.zero_point : 0, factor};
                if (!decode_map(m, score_factor, quantized, a.refine, k1, x, y, s)) return false;
            } else {
                const Q* q = fl + (i * a.k + a.perm[j]) * hw;
                Merged* d = merged.data();
                for (int64_t r = 0; r < a.h; ++r) {
                    const Q* pr = p + r * a.w;
                    const Q* qr = q + r * a.w;
                    Merged* dr = d + r * a.w;
                    if (quantized) {
                        const int zp2 = 2 * a.zero_point;
                        merge_row(pr, qr, dr, a.w, a.shift, [zp2](Q u, Q v) { return Merged(int(u) + int(v) - zp2); });
                    } else {
                        merge_row(pr, qr, dr, a.w, a.shift, [](Q u, Q v) { return Merged((u + v) * 0.5f); });
                    }
                }
                MapView<Merged> m{d, a.h, a.w, 0, factor};
                if (!decode_map(m, score_factor, quantized, a.refine, k1, x, y, s)) return false;
            }
            float* c = coords + (i * a.k + j) * 2;
            if (a.inv) {
                const double* t = a.inv + 6 * i;
                c[0] = float(t[0] * x + t[1] * y + t[2]);
                c[1] = float(t[3] * x + t[4] * y + t[5]);
            } else {
                c[0] = float(x);
                c[1] = float(y);
            }
            scores[i * a.k + j] = s;
        }
    }
    return true;
}

}  // namespace

bool decode(const DecodeArgs& a, float* coords, float* scores) {
    switch (a.type) {
        case HmType::F32: return decode_typed<float>(a, coords, scores);
        case HmType::I8: return decode_typed<int8_t>(a, coords, scores);
        case HmType::U8: return decode_typed<uint8_t>(a, coords, scores);
    }
    return false;
}

void flip_merge(const float* hm, const float* flipped, const int64_t* perm, int64_t n, int64_t k, int64_t h,
                int64_t w, bool shift, float* out) {
    const int64_t hw = h * w;
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < k; ++j) {
            const float* p = hm + (i * k + j) * hw;
            const float* q = flipped + (i * k + perm[j]) * hw;
            float* d = out + (i * k + j) * hw;
            for (int64_t r = 0; r < h; ++r)
                merge_row(p + r * w, q + r * w, d + r * w, w, shift, [](float u, float v) { return (u + v) * 0.5f; });
        }
}

}  // namespace edgepose
