// Kernel 1: bilinear crop warp, bit-exact with cv2.warpAffine(INTER_LINEAR, BORDER_CONSTANT)
// on uint8 images. See edgepose/crop.py for the fixed-point rules this reproduces.
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels.hpp"

namespace edgepose {

namespace {

constexpr int kInterBits = 5;
constexpr int kAbBits = 10;
constexpr int kTab = 1 << kInterBits;  // 32 sub-pixel positions
constexpr int64_t kRoundDelta = (1 << kAbBits) >> kInterBits >> 1;

// One output row of source coordinates in 1/32 pixel (what OpenCV computes before remap).
struct RowCoords {
    std::vector<int64_t> adx, ady;  // per output column, 1/1024 pixel
    double a[6];                    // crop->frame
    void init(const double* inv, int out_w) {
        std::memcpy(a, inv, sizeof(a));
        adx.resize(out_w);
        ady.resize(out_w);
        for (int x = 0; x < out_w; ++x) {
            adx[x] = std::llrint(a[0] * x * double(1 << kAbBits));
            ady[x] = std::llrint(a[3] * x * double(1 << kAbBits));
        }
    }
};

// Calls emit(x, v0, v1, v2) with the three interpolated source channels (in frame order) of
// every pixel of output row y. Packed == frame is (.., 3) with unit channel and 3-byte column steps.
template <bool Packed, class Emit>
inline void sample_row(const FrameView& f, const RowCoords& rc, int y, int out_w, Emit emit) {
    const int64_t X0 = std::llrint((rc.a[1] * y + rc.a[2]) * double(1 << kAbBits)) + kRoundDelta;
    const int64_t Y0 = std::llrint((rc.a[4] * y + rc.a[5]) * double(1 << kAbBits)) + kRoundDelta;
    const int64_t cs = Packed ? 3 : f.col_stride, chs = Packed ? 1 : f.ch_stride, rs = f.row_stride;
    const int64_t w = f.w, h = f.h;
    const int64_t* adx = rc.adx.data();
    const int64_t* ady = rc.ady.data();
    for (int x = 0; x < out_w; ++x) {
        const int64_t X = (X0 + adx[x]) >> (kAbBits - kInterBits);
        const int64_t Y = (Y0 + ady[x]) >> (kAbBits - kInterBits);
        const int64_t ix = X >> kInterBits, iy = Y >> kInterBits;
        const int fx = int(X & (kTab - 1)), fy = int(Y & (kTab - 1));
        const int w00 = (kTab - fx) * (kTab - fy), w01 = fx * (kTab - fy);
        const int w10 = (kTab - fx) * fy, w11 = fx * fy;
        if (uint64_t(ix) < uint64_t(w - 1) && uint64_t(iy) < uint64_t(h - 1)) {
            const uint8_t* p = f.data + iy * rs + ix * cs;
            const uint8_t* q = p + rs;
            int v[3];
            for (int c = 0; c < 3; ++c) {
                const int64_t o = c * chs;
                v[c] = (w00 * p[o] + w01 * p[o + cs] + w10 * q[o] + w11 * q[o + cs] + 512) >> 10;
            }
            emit(x, v[0], v[1], v[2]);
        } else if (ix >= -1 && ix < w && iy >= -1 && iy < h) {
            // On the frame edge: neighbours outside the frame read as 0 (BORDER_CONSTANT).
            int v[3] = {0, 0, 0};
            const int64_t xs[2] = {ix, ix + 1}, ys[2] = {iy, iy + 1};
            const int wt[2][2] = {{w00, w01}, {w10, w11}};
            for (int r = 0; r < 2; ++r) {
                if (ys[r] < 0 || ys[r] >= h) continue;
                for (int s = 0; s < 2; ++s) {
                    if (xs[s] < 0 || xs[s] >= w) continue;
                    const uint8_t* p = f.data + ys[r] * rs + xs[s] * cs;
                    for (int c = 0; c < 3; ++c) v[c] += wt[r][s] * p[c * chs];
                }
            }
            emit(x, (v[0] + 512) >> 10, (v[1] + 512) >> 10, (v[2] + 512) >> 10);
        } else {
            emit(x, 0, 0, 0);
        }
    }
}

template <class Emit>
inline void sample(const FrameView& f, const RowCoords& rc, int y, int out_w, Emit emit) {
    if (f.col_stride == 3 && f.ch_stride == 1)
        sample_row<true>(f, rc, y, out_w, emit);
    else
        sample_row<false>(f, rc, y, out_w, emit);
}

}  // namespace

bool invert_affine_cv(const double* m, double* inv) {
    double d = m[0] * m[4] - m[1] * m[3];
    if (d == 0 || !std::isfinite(d)) return false;
    d = 1.0 / d;
    const double a11 = m[4] * d, a22 = m[0] * d;
    const double a12 = -m[1] * d, a21 = -m[3] * d;
    inv[0] = a11;
    inv[1] = a12;
    inv[2] = -a11 * m[2] - a12 * m[5];
    inv[3] = a21;
    inv[4] = a22;
    inv[5] = -a21 * m[2] - a22 * m[5];
    return true;
}

int64_t warp_crops_u8(const FrameView& f, const double* mats, int64_t n, int out_w, int out_h, bool to_rgb,
                      uint8_t* out) {
    RowCoords rc;
    const int64_t crop = int64_t(out_w) * out_h * 3;
    for (int64_t i = 0; i < n; ++i) {
        double inv[6];
        if (!invert_affine_cv(mats + 6 * i, inv)) return i;
        rc.init(inv, out_w);
        uint8_t* dst = out + i * crop;
        for (int y = 0; y < out_h; ++y) {
            uint8_t* row = dst + int64_t(y) * out_w * 3;
            if (to_rgb)
                sample(f, rc, y, out_w, [row](int x, int b, int g, int r) {
                    row[3 * x] = uint8_t(r), row[3 * x + 1] = uint8_t(g), row[3 * x + 2] = uint8_t(b);
                });
            else
                sample(f, rc, y, out_w, [row](int x, int b, int g, int r) {
                    row[3 * x] = uint8_t(b), row[3 * x + 1] = uint8_t(g), row[3 * x + 2] = uint8_t(r);
                });
        }
    }
    return -1;
}

int64_t warp_crops_f32(const FrameView& f, const double* mats, int64_t n, int out_w, int out_h, bool to_rgb,
                       const float* mean, const float* std, float* out) {
    // (v - mean) / std for all 256 grey levels: the same float32 operations as the NumPy twin,
    // done once instead of per pixel.
    float lut[3][256];
    for (int c = 0; c < 3; ++c)
        for (int v = 0; v < 256; ++v) lut[c][v] = (float(v) - mean[c]) / std[c];
    RowCoords rc;
    const int64_t plane = int64_t(out_w) * out_h;
    for (int64_t i = 0; i < n; ++i) {
        double inv[6];
        if (!invert_affine_cv(mats + 6 * i, inv)) return i;
        rc.init(inv, out_w);
        float* p0 = out + i * 3 * plane;
        for (int y = 0; y < out_h; ++y) {
            float* r0 = p0 + int64_t(y) * out_w;
            float* r1 = r0 + plane;
            float* r2 = r1 + plane;
            // output channel c reads frame channel c (BGR kept) or 2 - c (to RGB)
            if (to_rgb)
                sample(f, rc, y, out_w, [&](int x, int b, int g, int r) {
                    r0[x] = lut[0][r], r1[x] = lut[1][g], r2[x] = lut[2][b];
                });
            else
                sample(f, rc, y, out_w, [&](int x, int b, int g, int r) {
                    r0[x] = lut[0][b], r1[x] = lut[1][g], r2[x] = lut[2][r];
                });
        }
    }
    return -1;
}

}  // namespace edgepose
