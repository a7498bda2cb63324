// First-maximum scans (argmax.hpp), one copy of argmax_scan.inc per instruction set.
// x86-64: SSE2 is part of the architecture, AVX2 is compiled for its own functions only (target
// attribute) and chosen at run time when the CPU has it, so the wheel runs on any x86-64.
#include "argmax.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
#define EDGEPOSE_X86 1
#include <immintrin.h>
#elif defined(__aarch64__)
#define EDGEPOSE_NEON 1
#include <arm_neon.h>
#endif

namespace edgepose {

namespace scalar {

template <class T>
int64_t first_max(const T* p, int64_t n) {
    int64_t b = 0;
    for (int64_t i = 1; i < n; ++i)
        if (p[i] > p[b]) b = i;
    return b;
}

int64_t f32(const float* p, int64_t n) {
    int64_t b = 0;
    for (int64_t i = 0; i < n; ++i) {
        if (p[i] != p[i]) return -1;
        if (p[i] > p[b]) b = i;
    }
    return b;
}

}  // namespace scalar

#ifdef EDGEPOSE_X86

inline int first_bit(unsigned m) { return m ? __builtin_ctz(m) : -1; }

namespace sse2 {

struct F32 {
    using T = float;
    using V = __m128;
    using M = __m128;
    static constexpr int L = 4;
    static V load(const float* p) { return _mm_loadu_ps(p); }
    static V set1(float v) { return _mm_set1_ps(v); }
    static V max(V v, V acc) { return _mm_max_ps(v, acc); }  // a NaN v leaves acc: bad() reports it
    static M eq(V a, V b) { return _mm_cmpeq_ps(a, b); }
    static M or_(M a, M b) { return _mm_or_ps(a, b); }
    static bool any(M m) { return _mm_movemask_ps(m) != 0; }
    static int first(M m) { return first_bit(unsigned(_mm_movemask_ps(m))); }
    static M no_lanes() { return _mm_setzero_ps(); }
    static M nan_lanes(const V* v, V) {  // max drops a NaN operand: test the loads, a pair per compare
        return _mm_or_ps(_mm_or_ps(_mm_cmpunord_ps(v[0], v[1]), _mm_cmpunord_ps(v[2], v[3])),
                         _mm_or_ps(_mm_cmpunord_ps(v[4], v[5]), _mm_cmpunord_ps(v[6], v[7])));
    }
    static bool any_gt(V t, V b) { return _mm_movemask_ps(_mm_cmpgt_ps(t, b)) != 0; }
    static float lanes_max(V v) {
        float t[L];
        _mm_storeu_ps(t, v);
        float b = t[0];
        for (float x : t) b = x > b ? x : b;
        return b;
    }
};

template <class TT>
struct IntBase {
    using T = TT;
    using V = __m128i;
    using M = __m128i;
    static constexpr int L = 16 / sizeof(T);
    static V load(const T* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
    static M or_(M a, M b) { return _mm_or_si128(a, b); }
    static bool any(M m) { return _mm_movemask_epi8(m) != 0; }
    static int first(M m) {
        const int f = first_bit(unsigned(_mm_movemask_epi8(m)));
        return f < 0 ? -1 : f / int(sizeof(T));
    }
};

struct U8 : IntBase<uint8_t> {
    static V loadk(const T* p) { return load(p); }
    static V set1(T v) { return _mm_set1_epi8(char(v)); }
    static V set1k(T v) { return set1(v); }
    static V max(V a, V b) { return _mm_max_epu8(a, b); }
    static bool any_gt(V t, V b) { return _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_max_epu8(t, b), b)) != 0xFFFF; }
    static M eq(V a, V b) { return _mm_cmpeq_epi8(a, b); }
    static T lanes_max(V v) {
        uint8_t t[L];
        _mm_storeu_si128(reinterpret_cast<__m128i*>(t), v);
        uint8_t b = t[0];
        for (uint8_t x : t) b = x > b ? x : b;
        return b;
    }
};

struct I8 : IntBase<int8_t> {
    // SSE2 has an unsigned byte max only: reduce keys v ^ 0x80, which order like the values
    static V loadk(const T* p) { return _mm_xor_si128(load(p), _mm_set1_epi8(char(0x80))); }
    static V set1(T v) { return _mm_set1_epi8(char(v)); }
    static V set1k(T v) { return _mm_set1_epi8(char(uint8_t(v) ^ 0x80u)); }
    static V max(V a, V b) { return _mm_max_epu8(a, b); }
    static bool any_gt(V t, V b) { return _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_max_epu8(t, b), b)) != 0xFFFF; }
    static M eq(V a, V b) { return _mm_cmpeq_epi8(a, b); }
    static T lanes_max(V v) {
        uint8_t t[L];
        _mm_storeu_si128(reinterpret_cast<__m128i*>(t), v);
        uint8_t b = t[0];
        for (uint8_t x : t) b = x > b ? x : b;
        return T(b ^ 0x80u);
    }
};

struct I16 : IntBase<int16_t> {
    static V loadk(const T* p) { return load(p); }
    static V set1(T v) { return _mm_set1_epi16(v); }
    static V set1k(T v) { return set1(v); }
    static V max(V a, V b) { return _mm_max_epi16(a, b); }
    static bool any_gt(V t, V b) { return _mm_movemask_epi8(_mm_cmpgt_epi16(t, b)) != 0; }
    static M eq(V a, V b) { return _mm_cmpeq_epi16(a, b); }
    static T lanes_max(V v) {
        int16_t t[L];
        _mm_storeu_si128(reinterpret_cast<__m128i*>(t), v);
        int16_t b = t[0];
        for (int16_t x : t) b = x > b ? x : b;
        return b;
    }
};

#include "argmax_scan.inc"

int64_t f32(const float* p, int64_t n) { return scan_float<F32>(p, n); }
int64_t i8(const int8_t* p, int64_t n) { return scan_int<I8>(p, n); }
int64_t u8(const uint8_t* p, int64_t n) { return scan_int<U8>(p, n); }
int64_t i16(const int16_t* p, int64_t n) { return scan_int<I16>(p, n); }

}  // namespace sse2

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2"))), apply_to = function)
#define EDGEPOSE_AVX2 1
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2")
#define EDGEPOSE_AVX2 1
#endif

#ifdef EDGEPOSE_AVX2
namespace avx2 {

struct F32 {
    using T = float;
    using V = __m256;
    using M = __m256;
    static constexpr int L = 8;
    static V load(const float* p) { return _mm256_loadu_ps(p); }
    static V set1(float v) { return _mm256_set1_ps(v); }
    static V max(V v, V acc) { return _mm256_max_ps(v, acc); }
    static M eq(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
    static M or_(M a, M b) { return _mm256_or_ps(a, b); }
    static bool any(M m) { return _mm256_movemask_ps(m) != 0; }
    static int first(M m) { return first_bit(unsigned(_mm256_movemask_ps(m))); }
    static M no_lanes() { return _mm256_setzero_ps(); }
    static M nan_lanes(const V* v, V) {
        return _mm256_or_ps(_mm256_or_ps(_mm256_cmp_ps(v[0], v[1], _CMP_UNORD_Q), _mm256_cmp_ps(v[2], v[3], _CMP_UNORD_Q)),
                            _mm256_or_ps(_mm256_cmp_ps(v[4], v[5], _CMP_UNORD_Q), _mm256_cmp_ps(v[6], v[7], _CMP_UNORD_Q)));
    }
    static bool any_gt(V t, V b) { return _mm256_movemask_ps(_mm256_cmp_ps(t, b, _CMP_GT_OQ)) != 0; }
    static float lanes_max(V v) {
        float t[L];
        _mm256_storeu_ps(t, v);
        float b = t[0];
        for (float x : t) b = x > b ? x : b;
        return b;
    }
};

template <class TT>
struct IntBase {
    using T = TT;
    using V = __m256i;
    using M = __m256i;
    static constexpr int L = 32 / sizeof(T);
    static V load(const T* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
    static V loadk(const T* p) { return load(p); }
    static M or_(M a, M b) { return _mm256_or_si256(a, b); }
    static bool any(M m) { return _mm256_movemask_epi8(m) != 0; }
    static int first(M m) {
        const int f = first_bit(unsigned(_mm256_movemask_epi8(m)));
        return f < 0 ? -1 : f / int(sizeof(T));
    }
    static T lanes_max(V v) {
        T t[L];
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(t), v);
        T b = t[0];
        for (T x : t) b = x > b ? x : b;
        return b;
    }
};

struct U8 : IntBase<uint8_t> {
    static V set1(T v) { return _mm256_set1_epi8(char(v)); }
    static V set1k(T v) { return set1(v); }
    static V max(V a, V b) { return _mm256_max_epu8(a, b); }
    static bool any_gt(V t, V b) { return unsigned(_mm256_movemask_epi8(_mm256_cmpeq_epi8(max(t, b), b))) != 0xFFFFFFFFu; }
    static M eq(V a, V b) { return _mm256_cmpeq_epi8(a, b); }
};
struct I8 : IntBase<int8_t> {
    static V set1(T v) { return _mm256_set1_epi8(char(v)); }
    static V set1k(T v) { return set1(v); }
    static V max(V a, V b) { return _mm256_max_epi8(a, b); }
    static bool any_gt(V t, V b) { return _mm256_movemask_epi8(_mm256_cmpgt_epi8(t, b)) != 0; }
    static M eq(V a, V b) { return _mm256_cmpeq_epi8(a, b); }
};
struct I16 : IntBase<int16_t> {
    static V set1(T v) { return _mm256_set1_epi16(v); }
    static V set1k(T v) { return set1(v); }
    static V max(V a, V b) { return _mm256_max_epi16(a, b); }
    static bool any_gt(V t, V b) { return _mm256_movemask_epi8(_mm256_cmpgt_epi16(t, b)) != 0; }
    static M eq(V a, V b) { return _mm256_cmpeq_epi16(a, b); }
};

#include "argmax_scan.inc"

int64_t f32(const float* p, int64_t n) { return scan_float<F32>(p, n); }
int64_t i8(const int8_t* p, int64_t n) { return scan_int<I8>(p, n); }
int64_t u8(const uint8_t* p, int64_t n) { return scan_int<U8>(p, n); }
int64_t i16(const int16_t* p, int64_t n) { return scan_int<I16>(p, n); }

}  // namespace avx2
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif  // EDGEPOSE_AVX2

#endif  // EDGEPOSE_X86

#ifdef EDGEPOSE_NEON
namespace neon {

struct F32 {
    using T = float;
    using V = float32x4_t;
    using M = uint32x4_t;
    static constexpr int L = 4;
    static V load(const float* p) { return vld1q_f32(p); }
    static V set1(float v) { return vdupq_n_f32(v); }
    static V max(V v, V acc) { return vmaxq_f32(v, acc); }  // FMAX: a NaN in either lane gives NaN
    static M eq(V a, V b) { return vceqq_f32(a, b); }
    static M or_(M a, M b) { return vorrq_u32(a, b); }
    static bool any(M m) { return vmaxvq_u32(m) != 0; }
    static int first(M m) {
        uint32_t t[L];
        vst1q_u32(t, m);
        for (int j = 0; j < L; ++j)
            if (t[j]) return j;
        return -1;
    }
    static M no_lanes() { return vdupq_n_u32(0); }
    static M nan_lanes(const V*, V t) { return vmvnq_u32(vceqq_f32(t, t)); }  // FMAX keeps NaN in t
    static bool any_gt(V t, V b) { return vmaxvq_u32(vcgtq_f32(t, b)) != 0; }
    static float lanes_max(V v) {
        float t[L];
        vst1q_f32(t, v);
        float b = t[0];
        for (float x : t) b = x > b ? x : b;
        return b;
    }
};

struct U8 {
    using T = uint8_t;
    using V = uint8x16_t;
    using M = uint8x16_t;
    static constexpr int L = 16;
    static V load(const T* p) { return vld1q_u8(p); }
    static V loadk(const T* p) { return load(p); }
    static V set1(T v) { return vdupq_n_u8(v); }
    static V set1k(T v) { return set1(v); }
    static V max(V a, V b) { return vmaxq_u8(a, b); }
    static bool any_gt(V t, V b) { return vmaxvq_u8(vcgtq_u8(t, b)) != 0; }
    static M eq(V a, V b) { return vceqq_u8(a, b); }
    static M or_(M a, M b) { return vorrq_u8(a, b); }
    static bool any(M m) { return vmaxvq_u8(m) != 0; }
    static int first(M m) {
        uint8_t t[L];
        vst1q_u8(t, m);
        for (int j = 0; j < L; ++j)
            if (t[j]) return j;
        return -1;
    }
    static T lanes_max(V v) { return vmaxvq_u8(v); }
};

struct I8 {
    using T = int8_t;
    using V = int8x16_t;
    using M = uint8x16_t;
    static constexpr int L = 16;
    static V load(const T* p) { return vld1q_s8(p); }
    static V loadk(const T* p) { return load(p); }
    static V set1(T v) { return vdupq_n_s8(v); }
    static V set1k(T v) { return set1(v); }
    static V max(V a, V b) { return vmaxq_s8(a, b); }
    static bool any_gt(V t, V b) { return vmaxvq_u8(vcgtq_s8(t, b)) != 0; }
    static M eq(V a, V b) { return vceqq_s8(a, b); }
    static M or_(M a, M b) { return vorrq_u8(a, b); }
    static bool any(M m) { return vmaxvq_u8(m) != 0; }
    static int first(M m) { return U8::first(m); }
    static T lanes_max(V v) { return vmaxvq_s8(v); }
};

struct I16 {
    using T = int16_t;
    using V = int16x8_t;
    using M = uint16x8_t;
    static constexpr int L = 8;
    static V load(const T* p) { return vld1q_s16(p); }
    static V loadk(const T* p) { return load(p); }
    static V set1(T v) { return vdupq_n_s16(v); }
    static V set1k(T v) { return set1(v); }
    static V max(V a, V b) { return vmaxq_s16(a, b); }
    static bool any_gt(V t, V b) { return vmaxvq_u16(vcgtq_s16(t, b)) != 0; }
    static M eq(V a, V b) { return vceqq_s16(a, b); }
    static M or_(M a, M b) { return vorrq_u16(a, b); }
    static bool any(M m) { return vmaxvq_u16(m) != 0; }
    static int first(M m) {
        uint16_t t[L];
        vst1q_u16(t, m);
        for (int j = 0; j < L; ++j)
            if (t[j]) return j;
        return -1;
    }
    static T lanes_max(V v) { return vmaxvq_s16(v); }
};

#include "argmax_scan.inc"

int64_t f32(const float* p, int64_t n) { return scan_float<F32>(p, n); }
int64_t i8(const int8_t* p, int64_t n) { return scan_int<I8>(p, n); }
int64_t u8(const uint8_t* p, int64_t n) { return scan_int<U8>(p, n); }
int64_t i16(const int16_t* p, int64_t n) { return scan_int<I16>(p, n); }

}  // namespace neon
#endif  // EDGEPOSE_NEON

namespace {

enum Level { SCALAR = 0, SSE2 = 1, AVX2 = 2, NEON = 3 };
const char* const kNames[] = {"scalar", "sse2", "avx2", "neon"};

int best_level() {
#if defined(EDGEPOSE_AVX2)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) return AVX2;
#endif
#if defined(EDGEPOSE_X86)
    return SSE2;
#elif defined(EDGEPOSE_NEON)
    return NEON;
#else
    return SCALAR;
#endif
}

std::atomic<int>& level() {
    static std::atomic<int> l{best_level()};
    return l;
}

}  // namespace

const char* simd_level() { return kNames[level().load(std::memory_order_relaxed)]; }

bool set_simd_level(const char* name) {
    const int best = best_level();
    if (std::strcmp(name, "auto") == 0) {
        level().store(best);
        return true;
    }
    for (int l = 0; l < 4; ++l) {
        if (std::strcmp(name, kNames[l]) != 0) continue;
        // runnable: scalar anywhere, sse2 on any x86-64, the CPU's best, neon on aarch64
        const bool ok = l == SCALAR || l == best || (l == SSE2 && best == AVX2);
        if (ok) level().store(l);
        return ok;
    }
    return false;
}

#define EDGEPOSE_DISPATCH(fn, sfn, p, n)                              \
    switch (level().load(std::memory_order_relaxed)) {                \
        X86_CASES(fn, p, n)                                           \
        NEON_CASE(fn, p, n)                                           \
        default: return sfn(p, n);                                    \
    }

#if defined(EDGEPOSE_AVX2)
#define X86_CASES(fn, p, n) case AVX2: return avx2::fn(p, n); case SSE2: return sse2::fn(p, n);
#elif defined(EDGEPOSE_X86)
#define X86_CASES(fn, p, n) case SSE2: return sse2::fn(p, n);
#else
#define X86_CASES(fn, p, n)
#endif
#if defined(EDGEPOSE_NEON)
#define NEON_CASE(fn, p, n) case NEON: return neon::fn(p, n);
#else
#define NEON_CASE(fn, p, n)
#endif

int64_t argmax_first_f32(const float* p, int64_t n) { EDGEPOSE_DISPATCH(f32, scalar::f32, p, n) }
int64_t argmax_first_i8(const int8_t* p, int64_t n) { EDGEPOSE_DISPATCH(i8, scalar::first_max<int8_t>, p, n) }
int64_t argmax_first_u8(const uint8_t* p, int64_t n) { EDGEPOSE_DISPATCH(u8, scalar::first_max<uint8_t>, p, n) }
int64_t argmax_first_i16(const int16_t* p, int64_t n) { EDGEPOSE_DISPATCH(i16, scalar::first_max<int16_t>, p, n) }

}  // namespace edgepose
