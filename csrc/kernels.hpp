// Plain C++ kernels of edgepose (no Python here): crop warp, heatmap decode, OKS NMS, detector decode.
// The Python wrappers validate every argument; these functions trust their inputs.
#pragma once
#include <cstdint>

// The kernels promise the NumPy twins' results to the last bit, so a * b + c must stay two
// roundings: GCC (and clang) would otherwise fuse it into one FMA on aarch64, the board's CPU.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace edgepose {

// A uint8 H x W x 3 image with arbitrary (possibly negative) byte strides.
struct FrameView {
    const uint8_t* data;
    int64_t h, w;
    int64_t row_stride, col_stride, ch_stride;
};

// OpenCV's inversion of a 2x3 affine (what warpAffine does without WARP_INVERSE_MAP).
// Returns false when the matrix is singular.
bool invert_affine_cv(const double* m, double* inv);

// How warp sampling rounds (see edgepose/crop.py): Fixed = OpenCV 4.x fixed point (1/32 pixel
// coordinates, 1/1024 weights), Float = OpenCV 5.x float32 arithmetic.
enum class Rounding { Fixed = 0, Float = 1 };

// Crop N boxes, frame->crop matrices mats (N,2,3). u8: out (N,out_h,out_w,3).
// f32: out (N,3,out_h,out_w) = (v - mean[c]) / std[c], channels in output order.
// border: 3 values (frame channel order) that samples outside the frame read; nullptr = 0.
// Returns the index of the first singular matrix, or -1.
int64_t warp_crops_u8(const FrameView& f, const double* mats, int64_t n, int out_w, int out_h, bool to_rgb,
                      uint8_t* out, Rounding rounding = Rounding::Fixed, const uint8_t* border = nullptr);
int64_t warp_crops_f32(const FrameView& f, const double* mats, int64_t n, int out_w, int out_h, bool to_rgb,
                       const float* mean, const float* std, float* out, Rounding rounding = Rounding::Fixed,
                       const uint8_t* border = nullptr);

enum Refine { REFINE_QUARTER = 0, REFINE_DARK = 1, REFINE_NONE = 2 };

enum class HmType { F32, I8, U8 };

struct DecodeArgs {
    HmType type;
    const void* hm;        // (N,K,H,W) contiguous
    const void* flipped;   // same or nullptr
    const double* inv;     // (N,2,3) or nullptr
    const int64_t* perm;   // (K,) flip permutation
    int64_t n, k, h, w;
    bool shift;
    double scale;          // quantized maps only
    int zero_point;
    int refine;
    int dark_kernel;
};

// coords (N,K,2) float32, scores (N,K) float32. Returns false if a (merged) map holds NaN.
bool decode(const DecodeArgs& a, float* coords, float* scores);

// (N,K,H,W): out = (hm + flip_back(flipped)) * 0.5f
void flip_merge(const float* hm, const float* flipped, const int64_t* perm, int64_t n, int64_t k, int64_t h,
                int64_t w, bool shift, float* out);

// Greedy OKS NMS; writes kept indices to keep, returns how many.
int64_t oks_nms(const double* kpts, const double* scores, const double* areas, const double* sigmas, int64_t n,
                int64_t k, double thr, double vis_thr, bool use_vis, int64_t* keep);

// Soft OKS NMS (method 0 gaussian, 1 linear); returns how many were picked.
int64_t soft_oks_nms(const double* kpts, const double* scores, const double* areas, const double* sigmas, int64_t n,
                     int64_t k, double thr, double vis_thr, bool use_vis, int method, double sigma, double score_thr,
                     int64_t* keep, double* new_scores);

// ---- kernel 4: person detector (edgepose/yolo.py has the rules) ----

enum class QType { F32, I8, U8 };

// A float32 tensor, or an int8/uint8 one whose real value is (q - zero_point) * scale.
struct QTensor {
    QType type;
    const void* data;  // contiguous
    double scale;
    int zero_point;
};

// One stride of the model zoo's YOLOv8 layout.
struct DflLevel {
    QTensor box;  // (4 * reg, h, w): sides l, t, r, b, reg bins each
    QTensor cls;  // the decoded class's (h, w) plane
    QTensor sum;  // (h, w) score sums, or data == nullptr
    int64_t h, w, reg;
    int stride;
};

// Boxes (x0, y0, x1, y1 in input pixels) and scores of the anchors whose class score (and sum,
// when given) is >= thr, level by level, row-major. boxes/scores hold sum(h * w) entries;
// returns how many were written.
int64_t yolo_decode_dfl(const DflLevel* levels, int n_levels, float thr, float* boxes, float* scores);

// Ultralytics export (rows, anchors) with rows 0..3 = cx, cy, w, h; score_row the class row.
int64_t yolo_decode_anchor_free(const QTensor& out, int64_t anchors, int64_t score_row, float thr, float* boxes,
                                float* scores);

// One stride of a YOLOX head split into box / objectness / class outputs (host_tools build-rknn).
struct YoloxLevel {
    QTensor box;  // (4, h, w): x, y offsets in cells, log w, log h
    QTensor obj;  // (h, w) objectness probabilities
    QTensor cls;  // the decoded class's (h, w) plane of probabilities
    int64_t h, w;
    int stride;
};

// Boxes and scores (score = float32(obj * cls) >= thr) level by level, row-major; boxes/scores
// hold sum(h * w) entries; returns how many were written.
int64_t yolo_decode_yolox_split(const YoloxLevel* levels, int n_levels, float thr, float* boxes, float* scores);

// Class-agnostic greedy IoU NMS; writes kept indices (best first) to keep, returns how many.
int64_t yolo_nms(const float* boxes, const float* scores, int64_t n, double iou_thr, int64_t top_k, int64_t* keep);

}  // namespace edgepose
