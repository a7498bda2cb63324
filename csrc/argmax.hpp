// First-maximum scans of one heatmap (what np.argmax gives on the flattened map), vectorised:
// SSE2 or AVX2 (picked at run time) on x86-64, NEON on aarch64, plain C++ elsewhere.
#pragma once
#include <cstdint>

namespace edgepose {

// Index of the first maximum of p[0..n) (n >= 1), or -1 if p holds a NaN. -0.0 and +0.0 are
// equal (the first of them wins), +-inf are ordinary values.
int64_t argmax_first_f32(const float* p, int64_t n);
// Index of the first maximum of p[0..n) (n >= 1).
int64_t argmax_first_i8(const int8_t* p, int64_t n);
int64_t argmax_first_u8(const uint8_t* p, int64_t n);
int64_t argmax_first_i16(const int16_t* p, int64_t n);

// The instruction set the scans use: "avx2", "sse2", "neon" or "scalar" (the portable loop).
const char* simd_level();
// Force a level for tests and benchmarks ("auto" = the best this CPU has). Returns false for
// a level this build or CPU cannot run.
bool set_simd_level(const char* name);

}  // namespace edgepose
