// Kernel 1: bilinear crop warp with cv2.warpAffine(INTER_LINEAR, BORDER_CONSTANT, borderValue)
// semantics on uint8 images, in two roundings: OpenCV 4.x fixed point (bit-exact) and OpenCV 5.x
// float32. See edgepose/crop.py for the rules both reproduce. Taps outside the frame read the
// border value (per frame channel); a pixel with all four taps outside is the border value.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels.hpp"

namespace edgepose {

namespace {

constexpr int kInterBits = 5;
constexpr int kAbBits = 10;
constexpr int kTab = 1 << kInterBits;  // 32 sub-pixel positions
constexpr int kShift = kAbBits - kInterBits;
constexpr int64_t kRoundDelta = (1 << kAbBits) >> kInterBits >> 1;

// Per-crop state: the crop->frame matrix and per-column coordinate steps.
struct Sampler {
    double a[6];
    std::vector<int64_t> adx, ady;  // per output column, 1/1024 pixel (OpenCV's adelta/bdelta)
    // Axis-aligned crops (no rotation, the runtime's case): the source column of output column x
    // is the same on every row, so it is computed once. Each row then blends its two source rows
    // once ("vert", 3 values per source column, with two border columns padding each side of the
    // frame), and every output pixel is a horizontal blend of two vert entries.
    bool axis_aligned = false;
    std::vector<int64_t> col_at;    // index into vert of the left tap, per output column
    std::vector<int32_t> col_fx;    // horizontal fraction (1/32), per output column
    std::vector<uint16_t> vert;     // columns -2 .. w+1 of the frame
    int64_t span_lo = 0, span_hi = -1;  // frame columns that rows must blend
    int border[3] = {0, 0, 0};          // the border value, frame channel order
    // Whole-pixel columns (a letterbox at scale 1, a pure shift): every horizontal fraction is 0
    // and output column x reads frame column x + col_shift, so a row whose vertical fraction is
    // also 0 is a copy of frame pixels (and border), which is what the blend would give exactly.
    bool copy_cols = false;
    int64_t col_shift = 0;
    void init(const double* inv, int out_w) {
        std::memcpy(a, inv, sizeof(a));
        adx.resize(out_w);
        ady.resize(out_w);
        for (int x = 0; x < out_w; ++x) {
            adx[x] = std::llrint(a[0] * x * double(1 << kAbBits));
            ady[x] = std::llrint(a[3] * x * double(1 << kAbBits));
        }
        axis_aligned = a[1] == 0.0 && a[3] == 0.0;
    }

    // Per-column taps for an axis-aligned crop of a frame w pixels wide.
    void init_axis(int out_w, int64_t w) {
        // X0 does not depend on the row when a[1] == 0
        const int64_t X0 = std::llrint((a[1] * 0 + a[2]) * double(1 << kAbBits)) + kRoundDelta;
        col_at.resize(out_w);
        col_fx.resize(out_w);
        span_lo = w;
        span_hi = -1;
        copy_cols = out_w > 0;
        col_shift = out_w > 0 ? ((X0 + adx[0]) >> kShift >> kInterBits) : 0;
        for (int x = 0; x < out_w; ++x) {
            const int64_t X = (X0 + adx[x]) >> kShift;
            int64_t ix = X >> kInterBits;
            copy_cols = copy_cols && (X & (kTab - 1)) == 0 && ix == x + col_shift;
            // a pixel whose taps are both outside reads the two border columns on that side
            if (ix < -1) ix = -2;
            if (ix >= w) ix = w;
            col_at[x] = (ix + 2) * 3;
            col_fx[x] = int32_t(X & (kTab - 1));
            span_lo = std::min(span_lo, std::max<int64_t>(ix, 0));
            span_hi = std::max(span_hi, std::min<int64_t>(ix + 1, w - 1));
        }
        // a padding column blends two border rows: border * 32; the span is rewritten per row
        vert.resize(size_t(w + 4) * 3);
        for (size_t i = 0; i < vert.size(); ++i) vert[i] = uint16_t(border[i % 3] * kTab);
    }
};

// Row y of an axis-aligned crop (see Sampler). Out-of-frame taps read the border value, exactly
// as BORDER_CONSTANT does, and (32-fx)((32-fy)a + fy c) + fx((32-fy)b + fy d) is the same integer as
// OpenCV's sum of four weight products, so the result is identical to the general path.
template <bool Packed, class Sink>
inline void sample_row_axis(const FrameView& f, Sampler& s, int y, int out_w, const int ch[3], Sink sink) {
    const int64_t Y = (std::llrint((s.a[4] * y + s.a[5]) * double(1 << kAbBits)) + kRoundDelta) >> kShift;
    const int64_t iy = Y >> kInterBits;
    const int fy = int(Y & (kTab - 1));
    const int* bv = s.border;
    if (iy < -1 || iy >= f.h || s.span_hi < s.span_lo) {
        for (int x = 0; x < out_w; ++x) sink(x, bv[ch[0]], bv[ch[1]], bv[ch[2]]);
        return;
    }
    const int64_t cs = Packed ? 3 : f.col_stride, chs = Packed ? 1 : f.ch_stride, rs = f.row_stride;
    if (s.copy_cols && fy == 0 && iy >= 0) {  // whole pixels: (32 * 32 * v + 512) >> 10 == v
        const uint8_t* row = f.data + iy * rs;
        const int64_t o0 = ch[0] * chs, o1 = ch[1] * chs, o2 = ch[2] * chs;
        for (int x = 0; x < out_w; ++x) {
            const int64_t c = x + s.col_shift;
            if (c < 0 || c >= f.w) {
                sink(x, bv[ch[0]], bv[ch[1]], bv[ch[2]]);
            } else {
                const uint8_t* p = row + c * cs;
                sink(x, p[o0], p[o1], p[o2]);
            }
        }
        return;
    }
    const int64_t lo = s.span_lo, n = s.span_hi + 1 - lo;
    uint16_t* v = s.vert.data() + (lo + 2) * 3;
    const uint8_t* top = iy >= 0 ? f.data + iy * rs + lo * cs : nullptr;
    const uint8_t* bot = iy + 1 < f.h ? f.data + (iy + 1) * rs + lo * cs : nullptr;
    const int wt = kTab - fy, wb = fy;
    if (Packed && top && bot) {
        for (int64_t i = 0; i < 3 * n; ++i) v[i] = uint16_t(top[i] * wt + bot[i] * wb);
    } else {  // non-packed frames, and the (at most two) rows with a source row outside the frame
        for (int64_t i = 0; i < n; ++i)
            for (int c = 0; c < 3; ++c) {
                const int64_t o = i * cs + c * chs;
                v[3 * i + c] = uint16_t((top ? top[o] : bv[c]) * wt + (bot ? bot[o] : bv[c]) * wb);
            }
    }
    const uint16_t* base = s.vert.data();
    const int64_t* at = s.col_at.data();
    const int32_t* cfx = s.col_fx.data();
    const int c0 = ch[0], c1 = ch[1], c2 = ch[2];
    for (int x = 0; x < out_w; ++x) {
        const uint16_t* q = base + at[x];
        const int fx = cfx[x], gx = kTab - fx;
        sink(x, (q[c0] * gx + q[3 + c0] * fx + 512) >> 10, (q[c1] * gx + q[3 + c1] * fx + 512) >> 10,
             (q[c2] * gx + q[3 + c2] * fx + 512) >> 10);
    }
}

// Samples output row y and hands every pixel to sink(x, v0, v1, v2), channels in output order:
// output channel c is frame channel ch[c] (BGR kept, or swapped to RGB).
template <bool Packed, class Sink>
inline void sample_row(const FrameView& f, Sampler& s, int y, int xb, int xe, const int ch[3], Sink sink) {
    if (s.axis_aligned) return sample_row_axis<Packed>(f, s, y, xe, ch, sink);  // whole rows only
    const int64_t X0 = std::llrint((s.a[1] * y + s.a[2]) * double(1 << kAbBits)) + kRoundDelta;
    const int64_t Y0 = std::llrint((s.a[4] * y + s.a[5]) * double(1 << kAbBits)) + kRoundDelta;
    // Plain locals: the uint8 stores below may alias anything reached through memory.
    const uint8_t* const data = f.data;
    const int64_t cs = Packed ? 3 : f.col_stride, chs = Packed ? 1 : f.ch_stride, rs = f.row_stride;
    const int64_t w = f.w, h = f.h;
    const int64_t* const adx = s.adx.data();
    const int64_t* const ady = s.ady.data();
    const int64_t o0 = ch[0] * chs, o1 = ch[1] * chs, o2 = ch[2] * chs;
    const int bo[3] = {s.border[ch[0]], s.border[ch[1]], s.border[ch[2]]};  // output channel order

    // Source coordinates are linear in x, so the row's two end pixels bound all the others: when
    // both have their whole 2x2 neighbourhood inside the frame, the row needs no border checks.
    const int64_t ixa = ((X0 + adx[xb]) >> kShift) >> kInterBits;
    const int64_t ixb = ((X0 + adx[xe - 1]) >> kShift) >> kInterBits;
    const int64_t iya = ((Y0 + ady[xb]) >> kShift) >> kInterBits;
    const int64_t iyb = ((Y0 + ady[xe - 1]) >> kShift) >> kInterBits;
    if (std::min(ixa, ixb) >= 0 && std::max(ixa, ixb) < w - 1 && std::min(iya, iyb) >= 0 &&
        std::max(iya, iyb) < h - 1) {
        for (int x = xb; x < xe; ++x) {
            const int64_t X = (X0 + adx[x]) >> kShift, Y = (Y0 + ady[x]) >> kShift;
            const int fx = int(X & (kTab - 1)), fy = int(Y & (kTab - 1));
            const int w00 = (kTab - fx) * (kTab - fy), w01 = fx * (kTab - fy);
            const int w10 = (kTab - fx) * fy, w11 = fx * fy;
            const uint8_t* p = data + (Y >> kInterBits) * rs + (X >> kInterBits) * cs;
            const uint8_t* q = p + rs;
            sink(x, (w00 * p[o0] + w01 * p[cs + o0] + w10 * q[o0] + w11 * q[cs + o0] + 512) >> 10,
                 (w00 * p[o1] + w01 * p[cs + o1] + w10 * q[o1] + w11 * q[cs + o1] + 512) >> 10,
                 (w00 * p[o2] + w01 * p[cs + o2] + w10 * q[o2] + w11 * q[cs + o2] + 512) >> 10);
        }
        return;
    }
    for (int x = xb; x < xe; ++x) {
        const int64_t X = (X0 + adx[x]) >> kShift;
        const int64_t Y = (Y0 + ady[x]) >> kShift;
        const int64_t ix = X >> kInterBits, iy = Y >> kInterBits;
        const int fx = int(X & (kTab - 1)), fy = int(Y & (kTab - 1));
        const int wt[2][2] = {{(kTab - fx) * (kTab - fy), fx * (kTab - fy)}, {(kTab - fx) * fy, fx * fy}};
        int v[3] = {bo[0], bo[1], bo[2]};
        if (ix >= -1 && ix < w && iy >= -1 && iy < h) {
            // neighbours outside the frame read the border value (BORDER_CONSTANT); a pixel with
            // all four outside is the border value
            v[0] = v[1] = v[2] = 0;
            for (int r = 0; r < 2; ++r) {
                const int64_t yy = iy + r;
                for (int c = 0; c < 2; ++c) {
                    const int64_t xx = ix + c;
                    if (yy < 0 || yy >= h || xx < 0 || xx >= w) {
                        v[0] += wt[r][c] * bo[0];
                        v[1] += wt[r][c] * bo[1];
                        v[2] += wt[r][c] * bo[2];
                        continue;
                    }
                    const uint8_t* p = data + yy * rs + xx * cs;
                    v[0] += wt[r][c] * p[o0];
                    v[1] += wt[r][c] * p[o1];
                    v[2] += wt[r][c] * p[o2];
                }
            }
            for (int c = 0; c < 3; ++c) v[c] = (v[c] + 512) >> 10;
        }
        sink(x, v[0], v[1], v[2]);
    }
}

template <class Sink>
inline void sample(const FrameView& f, Sampler& s, int y, int xb, int xe, const int ch[3], Sink sink) {
    if (f.col_stride == 3 && f.ch_stride == 1)
        sample_row<true>(f, s, y, xb, xe, ch, sink);
    else
        sample_row<false>(f, s, y, xb, xe, ch, sink);
}

// Output row y of a whole-pixel crop (Sampler::copy_cols) of a packed frame into packed BGR
// bytes, when its vertical fraction is 0 and its source row is inside the frame: a memcpy of the
// frame columns it covers, the border value elsewhere. Returns false (nothing written) otherwise.
inline bool copy_row(const FrameView& f, const Sampler& s, int y, int out_w, uint8_t* d) {
    const int64_t Y = (std::llrint((s.a[4] * y + s.a[5]) * double(1 << kAbBits)) + kRoundDelta) >> kShift;
    const int64_t iy = Y >> kInterBits;
    if ((Y & (kTab - 1)) != 0 || iy < 0 || iy >= f.h) return false;
    const int64_t xa = std::min<int64_t>(std::max<int64_t>(-s.col_shift, 0), out_w);
    const int64_t xb = std::max(std::min<int64_t>(f.w - s.col_shift, out_w), xa);
    for (int64_t x = 0; x < xa; ++x) d[3 * x] = uint8_t(s.border[0]), d[3 * x + 1] = uint8_t(s.border[1]), d[3 * x + 2] = uint8_t(s.border[2]);
    if (xb > xa) std::memcpy(d + 3 * xa, f.data + iy * f.row_stride + (xa + s.col_shift) * 3, size_t(3 * (xb - xa)));
    for (int64_t x = xb; x < out_w; ++x) d[3 * x] = uint8_t(s.border[0]), d[3 * x + 1] = uint8_t(s.border[1]), d[3 * x + 2] = uint8_t(s.border[2]);
    return true;
}

// Calls fn(y, xb, xe) over the crop: whole rows for axis-aligned crops (they read the frame
// row by row), else tiles of 16 x 64 pixels, so that a rotated or shrinking crop reads a compact
// patch of the frame at a time instead of a diagonal strip per row (as OpenCV does too).
template <class Fn>
inline void for_each_span(const Sampler& s, int out_w, int out_h, Fn fn) {
    if (s.axis_aligned) {
        for (int y = 0; y < out_h; ++y) fn(y, 0, out_w);
        return;
    }
    constexpr int kTileH = 16, kTileW = 64;
    for (int y0 = 0; y0 < out_h; y0 += kTileH)
        for (int x0 = 0; x0 < out_w; x0 += kTileW)
            for (int y = y0; y < std::min(y0 + kTileH, out_h); ++y) fn(y, x0, std::min(x0 + kTileW, out_w));
}

// ---- float rounding (OpenCV 5.x) ----

// a * b + c rounded once to float32. aarch64 has it in hardware. Elsewhere the product is exact
// in double (24 + 24 bits) and the double sum s, rounded to float32, is already correct unless s
// landed exactly halfway between two floats (or is tiny): only then is the sum's error recovered
// (TwoSum) and s rounded to odd, which makes the final rounding to float32 correct.
inline float fma32(float a, float b, float c) {
#if defined(__FP_FAST_FMAF)
    return std::fma(a, b, c);
#else
    const double p = double(a) * double(b), q = double(c);
    double s = p + q;
    uint64_t bits;
    std::memcpy(&bits, &s, sizeof(bits));
    constexpr uint64_t kDropped = (uint64_t(1) << 29) - 1, kHalf = uint64_t(1) << 28;  // 52 - 23 bits
    if ((bits & kDropped) == kHalf || std::fabs(s) < 0x1p-125) {
        const double t = s - p;
        const double err = (p - (s - t)) + (q - t);
        if (err != 0 && (bits & 1) == 0) {
            bits += ((err > 0) == (s > 0)) ? 1 : uint64_t(-1);  // one ulp toward the exact sum
            std::memcpy(&s, &bits, sizeof(bits));
        }
    }
    return float(s);
#endif
}

// fma32 for a weight a in [0, 1) and integers |b|, c <= 255 where a == 0 or a >= 2^-20: then
// a * b + c is a multiple of 2^-43 below 2^9, exact in a double, so one rounding is all there is.
inline float lerp32(float a, int b, int c) {
#if defined(__FP_FAST_FMAF)
    return std::fma(a, float(b), float(c));
#else
    return float(double(a) * double(b) + double(c));
#endif
}

// Per-crop float32 matrix (the double inverse rounded, as OpenCV 5 does).
struct FloatSampler {
    float m[6];
    int border[3] = {0, 0, 0};  // frame channel order
    void init(const double* inv) {
        for (int i = 0; i < 6; ++i) m[i] = float(inv[i]);
    }
};

// Saturated uint8 of v rounded half to even (as cvRound). Adding and removing 2^23 leaves an
// integer rounded to nearest-even for 0 <= v < 2^23 (no libm call: baseline SSE2 has no roundss).
inline int round_u8(float v) {
    if (!(v > 0.f)) return 0;
    if (v >= 255.f) return 255;
    constexpr float kMagic = 8388608.f;  // 2^23
    return int((v + kMagic) - kMagic);
}

// floor() of a float as int64, for |v| < 2^62 (the reach check bounds coordinates by 2^42).
inline int64_t floor_i64(float v) {
    int64_t i = int64_t(v);  // truncates toward zero
    return i - (float(i) > v);
}

// Output pixels xb..xe-1 of row y, float rounding: the row term y*m1 + m2 in two float32
// roundings, then sx = fma(m0, x, row); weights are the fractional parts; each lerp is one fma.
template <bool Packed, class Sink>
inline void sample_row_float(const FrameView& f, const FloatSampler& s, int y, int xb, int xe, const int ch[3],
                             Sink sink) {
    const float fy = float(y);
    const float rx = fy * s.m[1] + s.m[2], ry = fy * s.m[4] + s.m[5];
    const uint8_t* const data = f.data;
    const int64_t cs = Packed ? 3 : f.col_stride, chs = Packed ? 1 : f.ch_stride, rs = f.row_stride;
    const int64_t w = f.w, h = f.h;
    const int64_t o[3] = {ch[0] * chs, ch[1] * chs, ch[2] * chs};
    const int bo[3] = {s.border[ch[0]], s.border[ch[1]], s.border[ch[2]]};  // output channel order
    for (int x = xb; x < xe; ++x) {
        const float sx = fma32(s.m[0], float(x), rx), sy = fma32(s.m[3], float(x), ry);
        const int64_t ix = floor_i64(sx), iy = floor_i64(sy);
        if (ix < -1 || ix >= w || iy < -1 || iy >= h) {
            sink(x, bo[0], bo[1], bo[2]);
            continue;
        }
        const float a = sx - float(ix), b = sy - float(iy);  // exact
        // taps outside the frame read the border value (BORDER_CONSTANT)
        const bool in_l = ix >= 0, in_r = ix + 1 < w;
        const uint8_t* top = iy >= 0 ? data + iy * rs : nullptr;
        const uint8_t* bot = iy + 1 < h ? data + (iy + 1) * rs : nullptr;
        const int64_t cl = ix * cs, cr = cl + cs;
        const bool a_exact = a == 0.f || a >= 0x1p-20f;  // see lerp32
        int v[3];
        for (int c = 0; c < 3; ++c) {
            const int bc = bo[c];
            const int p00 = top && in_l ? top[cl + o[c]] : bc, p01 = top && in_r ? top[cr + o[c]] : bc;
            const int p10 = bot && in_l ? bot[cl + o[c]] : bc, p11 = bot && in_r ? bot[cr + o[c]] : bc;
            float v0, v1;
            if (a_exact) {
                v0 = lerp32(a, p01 - p00, p00);
                v1 = lerp32(a, p11 - p10, p10);
            } else {
                v0 = fma32(a, float(p01 - p00), float(p00));
                v1 = fma32(a, float(p11 - p10), float(p10));
            }
            v[c] = round_u8(fma32(b, v1 - v0, v0));
        }
        sink(x, v[0], v[1], v[2]);
    }
}

template <class Sink>
inline void sample_float(const FrameView& f, const FloatSampler& s, int y, int xb, int xe, const int ch[3],
                         Sink sink) {
    if (f.col_stride == 3 && f.ch_stride == 1)
        sample_row_float<true>(f, s, y, xb, xe, ch, sink);
    else
        sample_row_float<false>(f, s, y, xb, xe, ch, sink);
}

// Tiles of 16 x 64 output pixels (see for_each_span), whatever the matrix.
template <class Fn>
inline void for_each_tile(int out_w, int out_h, Fn fn) {
    constexpr int kTileH = 16, kTileW = 64;
    for (int y0 = 0; y0 < out_h; y0 += kTileH)
        for (int x0 = 0; x0 < out_w; x0 += kTileW)
            for (int y = y0; y < std::min(y0 + kTileH, out_h); ++y) fn(y, x0, std::min(x0 + kTileW, out_w));
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
                      uint8_t* out, Rounding rounding, const uint8_t* border) {
    const int ch_bgr[3] = {0, 1, 2}, ch_rgb[3] = {2, 1, 0};
    const int* ch = to_rgb ? ch_rgb : ch_bgr;
    Sampler s;
    FloatSampler fs;
    for (int c = 0; c < 3; ++c) s.border[c] = fs.border[c] = border ? border[c] : 0;
    const int64_t row = int64_t(out_w) * 3;
    for (int64_t i = 0; i < n; ++i) {
        double inv[6];
        if (!invert_affine_cv(mats + 6 * i, inv)) return i;
        if (rounding == Rounding::Float) {
            fs.init(inv);
            uint8_t* dst = out + i * row * out_h;
            for_each_tile(out_w, out_h, [&](int y, int xb, int xe) {
                uint8_t* d = dst + y * row;
                sample_float(f, fs, y, xb, xe, ch, [d](int x, int v0, int v1, int v2) {
                    d[3 * x] = uint8_t(v0), d[3 * x + 1] = uint8_t(v1), d[3 * x + 2] = uint8_t(v2);
                });
            });
            continue;
        }
        s.init(inv, out_w);
        if (s.axis_aligned) s.init_axis(out_w, f.w);
        uint8_t* dst = out + i * row * out_h;
        const bool memcpy_rows = s.axis_aligned && s.copy_cols && !to_rgb && f.col_stride == 3 && f.ch_stride == 1;
        for_each_span(s, out_w, out_h, [&](int y, int xb, int xe) {
            uint8_t* d = dst + y * row;
            if (memcpy_rows && copy_row(f, s, y, out_w, d)) return;
            sample(f, s, y, xb, xe, ch, [d](int x, int v0, int v1, int v2) {
                d[3 * x] = uint8_t(v0), d[3 * x + 1] = uint8_t(v1), d[3 * x + 2] = uint8_t(v2);
            });
        });
    }
    return -1;
}

int64_t warp_crops_f32(const FrameView& f, const double* mats, int64_t n, int out_w, int out_h, bool to_rgb,
                       const float* mean, const float* std, float* out, Rounding rounding, const uint8_t* border) {
    // (v - mean) / std for all 256 grey levels: the same float32 operations as the NumPy twin,
    // done once instead of per pixel.
    float lut[3][256];
    for (int c = 0; c < 3; ++c)
        for (int v = 0; v < 256; ++v) lut[c][v] = (float(v) - mean[c]) / std[c];
    const int ch_bgr[3] = {0, 1, 2}, ch_rgb[3] = {2, 1, 0};
    const int* ch = to_rgb ? ch_rgb : ch_bgr;
    Sampler s;
    FloatSampler fs;
    for (int c = 0; c < 3; ++c) s.border[c] = fs.border[c] = border ? border[c] : 0;
    const int64_t plane = int64_t(out_w) * out_h;
    for (int64_t i = 0; i < n; ++i) {
        double inv[6];
        if (!invert_affine_cv(mats + 6 * i, inv)) return i;
        if (rounding == Rounding::Float) {
            fs.init(inv);
            float* p0 = out + i * 3 * plane;
            for_each_tile(out_w, out_h, [&](int y, int xb, int xe) {
                float* r0 = p0 + int64_t(y) * out_w;
                float* r1 = r0 + plane;
                float* r2 = r1 + plane;
                sample_float(f, fs, y, xb, xe, ch, [r0, r1, r2, &lut](int x, int v0, int v1, int v2) {
                    r0[x] = lut[0][v0], r1[x] = lut[1][v1], r2[x] = lut[2][v2];
                });
            });
            continue;
        }
        s.init(inv, out_w);
        if (s.axis_aligned) s.init_axis(out_w, f.w);
        float* p0 = out + i * 3 * plane;
        for_each_span(s, out_w, out_h, [&](int y, int xb, int xe) {
            float* r0 = p0 + int64_t(y) * out_w;
            float* r1 = r0 + plane;
            float* r2 = r1 + plane;
            sample(f, s, y, xb, xe, ch, [r0, r1, r2, &lut](int x, int v0, int v1, int v2) {
                r0[x] = lut[0][v0], r1[x] = lut[1][v1], r2[x] = lut[2][v2];
            });
        });
    }
    return -1;
}

}  // namespace edgepose
