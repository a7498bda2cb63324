// Every first-maximum scan this build and CPU can run (csrc/argmax.cpp: scalar, sse2, avx2,
// neon) against a plain loop, on the inputs that break careless SIMD: the maximum at every
// position of sizes 1..300 (all block tails), ties, all-equal, signed zeros, infinities, NaN,
// the int8 sign bit, and random arrays. Needs no Python, so it runs where the package cannot
// easily, e.g. aarch64 through qemu (docs/KERNELS.md, "On aarch64"):
//   aarch64-linux-gnu-g++ -static -O3 -std=c++17 -Icsrc csrc/tools/check_argmax.cpp csrc/argmax.cpp -o check_argmax
//   qemu-aarch64-static ./check_argmax
// Prints one line per level and exits 1 on the first mismatch. Not part of the extension.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <vector>

#include "../argmax.hpp"

using namespace edgepose;

namespace {

int64_t ref_f32(const std::vector<float>& a) {
    int64_t b = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        if (std::isnan(a[i])) return -1;
        if (a[i] > a[b]) b = int64_t(i);
    }
    return b;
}

template <class T>
int64_t ref_int(const std::vector<T>& a) {
    int64_t b = 0;
    for (size_t i = 0; i < a.size(); ++i)
        if (a[i] > a[b]) b = int64_t(i);
    return b;
}

long g_checks = 0;

int64_t run(const std::vector<float>& a) { return argmax_first_f32(a.data(), int64_t(a.size())); }
int64_t run(const std::vector<int8_t>& a) { return argmax_first_i8(a.data(), int64_t(a.size())); }
int64_t run(const std::vector<uint8_t>& a) { return argmax_first_u8(a.data(), int64_t(a.size())); }
int64_t run(const std::vector<int16_t>& a) { return argmax_first_i16(a.data(), int64_t(a.size())); }
int64_t ref(const std::vector<float>& a) { return ref_f32(a); }
template <class T>
int64_t ref(const std::vector<T>& a) { return ref_int(a); }

template <class T>
void check(const std::vector<T>& a, const char* what) {
    ++g_checks;
    const int64_t got = run(a), want = ref(a);
    if (got != want) {
        std::printf("MISMATCH level %s, %s, size %zu: got %lld, want %lld\n", simd_level(), what, a.size(),
                    (long long)got, (long long)want);
        std::exit(1);
    }
}

template <class T>
void positions(T lo, T hi, const char* what) {
    for (int n = 1; n <= 300; ++n) {
        std::vector<T> a(n, lo);
        check(a, what);
        for (int p = 0; p < n; ++p) {
            std::vector<T> b = a;
            b[p] = hi;
            check(b, what);
            b[n - 1] = hi;
            check(b, what);  // tie with the last element
            if (p + 5 < n) {
                b = a;
                b[p] = b[p + 5] = hi;
                check(b, what);  // tie across lanes
            }
        }
    }
}

template <class T>
void random_choice(std::vector<T> vals, std::mt19937& g, const char* what) {
    std::uniform_int_distribution<int> n_d(1, 400), v_d(0, int(vals.size()) - 1);
    for (int r = 0; r < 3000; ++r) {
        std::vector<T> a(n_d(g));
        for (T& x : a) x = vals[v_d(g)];
        check(a, what);
    }
}

}  // namespace

int main() {
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    const char* levels[] = {"scalar", "sse2", "avx2", "neon"};
    int ran = 0;
    for (const char* lv : levels) {
        if (!set_simd_level(lv)) continue;
        ++ran;
        g_checks = 0;
        std::mt19937 g(1);
        positions<float>(-1.0f, 2.0f, "f32 one maximum");
        positions<float>(-0.0f, 0.0f, "f32 +0.0 among -0.0");
        positions<float>(0.0f, -0.0f, "f32 -0.0 among +0.0");
        positions<float>(-inf, -1e30f, "f32 among -inf");
        positions<float>(-2.0f, -1.0f, "f32 all negative");
        positions<float>(0.0f, inf, "f32 +inf");
        positions<float>(0.0f, nan, "f32 NaN");
        positions<float>(-inf, nan, "f32 NaN among -inf");
        positions<int8_t>(-128, 127, "i8 extremes");
        positions<int8_t>(-1, 0, "i8 around the sign bit");
        positions<int8_t>(-128, -127, "i8 bottom");
        positions<uint8_t>(127, 128, "u8 around 0x80");
        positions<uint8_t>(0, 255, "u8 extremes");
        positions<int16_t>(-32768, 32767, "i16 extremes");
        positions<int16_t>(-1, 0, "i16 around the sign bit");
        random_choice<float>({-inf, -2.0f, -0.0f, 0.0f, 1.0f, 3.0f, inf, nan}, g, "f32 random");
        random_choice<float>({-inf, -2.0f, -0.0f, 0.0f, 1.0f, 3.0f, inf}, g, "f32 random, no NaN");
        random_choice<int8_t>({-128, -127, -1, 0, 1, 126, 127}, g, "i8 random");
        random_choice<uint8_t>({0, 1, 127, 128, 254, 255}, g, "u8 random");
        random_choice<int16_t>({-32768, -1, 0, 255, 256, 32767}, g, "i16 random");
        std::printf("check_argmax: level %-6s %ld arrays, all equal to the plain loop\n", simd_level(), g_checks);
    }
    set_simd_level("auto");
    std::printf("check_argmax: %d levels checked, default %s\n", ran, simd_level());
    return 0;
}
