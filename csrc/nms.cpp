// Kernel 3: greedy and soft OKS NMS. Semantics: edgepose/nms.py (oks_nms_numpy is the twin).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "kernels.hpp"

namespace edgepose {

namespace {

constexpr double kEps = 2.220446049250313e-16;  // np.spacing(1)
// exp(-e) is exactly 0.0 in double for e above ~745.13; skipping those saves most exp calls
// between poses far apart without changing any result.
constexpr double kExpZero = 746.0;

// NumPy's summation order for a contiguous row (np.add.reduce): sequential below 8 values,
// else 8 interleaved partial sums combined pairwise (rows here never exceed 128 values in
// practice; longer rows fall back to the same scheme on halves, as NumPy does).
double numpy_sum(const double* a, int64_t n) {
    if (n < 8) {
        double s = -0.0;
        for (int64_t i = 0; i < n; ++i) s += a[i];
        return s;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; ++j) r[j] = a[j];
        int64_t i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; ++j) r[j] += a[i + j];
        double s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; ++i) s += a[i];
        return s;
    }
    int64_t n2 = n / 2;
    n2 -= n2 % 8;
    return numpy_sum(a, n2) + numpy_sum(a + n2, n - n2);
}

struct Oks {
    const double* kpts;
    const double* areas;
    int64_t k;
    std::vector<double> var, buf;
    double vis_thr;
    bool use_vis;

    Oks(const double* kp, const double* ar, const double* sigmas, int64_t k_, double vt, bool uv)
        : kpts(kp), areas(ar), k(k_), var(k_), buf(k_), vis_thr(vt), use_vis(uv) {
        for (int64_t j = 0; j < k; ++j) var[j] = (sigmas[j] * 2) * (sigmas[j] * 2);
    }

    // OKS of kept pose g against candidate d, in the twin's operation order.
    double operator()(int64_t g, int64_t d) {
        const double* pg = kpts + g * k * 3;
        const double* pd = kpts + d * k * 3;
        const double denom = (areas[g] + areas[d]) / 2 + kEps;
        int64_t cnt = 0;
        for (int64_t j = 0; j < k; ++j) {
            const double dx = pd[3 * j] - pg[3 * j], dy = pd[3 * j + 1] - pg[3 * j + 1];
            const double e = (dx * dx + dy * dy) / var[j] / denom / 2;
            double v = e > kExpZero ? 0.0 : std::exp(-e);
            if (use_vis) {
                const bool m = pd[3 * j + 2] > vis_thr;
                cnt += m;
                v = m ? v : 0.0;
            }
            buf[j] = v;
        }
        if (k == 0) return 0.0;
        const double tot = numpy_sum(buf.data(), k);
        if (!use_vis) return tot / double(k);
        return cnt > 0 ? tot / double(cnt) : 0.0;
    }

    // (*this)(g, d) > thr, deciding early when the joints seen so far already prove OKS <= thr:
    // each unseen term is at most 1, so partial + unseen < thr * count settles it. The margin
    // keeps that test on the safe side of rounding; every close call gets the exact value.
    bool exceeds(int64_t g, int64_t d, double thr) {
        const double* pg = kpts + g * k * 3;
        const double* pd = kpts + d * k * 3;
        int64_t count = k;
        if (use_vis) {
            count = 0;
            for (int64_t j = 0; j < k; ++j) count += pd[3 * j + 2] > vis_thr;
        }
        if (count > 0 && thr > 0) {
            const double limit = thr * double(count) * (1.0 - 1e-9) - 1e-9;
            const double denom = (areas[g] + areas[d]) / 2 + kEps;
            double partial = 0.0;
            int64_t unseen = count;
            for (int64_t j = 0; j < k; ++j) {
                if (use_vis && !(pd[3 * j + 2] > vis_thr)) continue;
                const double dx = pd[3 * j] - pg[3 * j], dy = pd[3 * j + 1] - pg[3 * j + 1];
                const double e = (dx * dx + dy * dy) / var[j] / denom / 2;
                partial += e > kExpZero ? 0.0 : std::exp(-e);
                --unseen;
                if (partial + double(unseen) < limit) return false;
            }
        }
        return (*this)(g, d) > thr;
    }
};

}  // namespace

int64_t oks_nms(const double* kpts, const double* scores, const double* areas, const double* sigmas, int64_t n,
                int64_t k, double thr, double vis_thr, bool use_vis, int64_t* keep) {
    // highest score first, ties -> higher index (reverse of a stable ascending sort)
    std::vector<int64_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return scores[a] < scores[b]; });
    std::reverse(order.begin(), order.end());
    Oks oks(kpts, areas, sigmas, k, vis_thr, use_vis);
    int64_t nkeep = 0, m = n;
    while (m > 0) {
        const int64_t i = order[0];
        keep[nkeep++] = i;
        int64_t out = 0;
        for (int64_t t = 1; t < m; ++t)
            if (!oks.exceeds(i, order[t], thr)) order[out++] = order[t];
        m = out;
    }
    return nkeep;
}

int64_t soft_oks_nms(const double* kpts, const double* scores, const double* areas, const double* sigmas, int64_t n,
                     int64_t k, double thr, double vis_thr, bool use_vis, int method, double sigma, double score_thr,
                     int64_t* keep, double* new_scores) {
    std::vector<double> s(scores, scores + n);
    std::vector<int64_t> rem(n);
    std::iota(rem.begin(), rem.end(), 0);
    Oks oks(kpts, areas, sigmas, k, vis_thr, use_vis);
    int64_t nkeep = 0;
    while (!rem.empty()) {
        size_t bi = 0;  // highest current score, ties -> higher index
        for (size_t t = 1; t < rem.size(); ++t)
            if (s[rem[t]] > s[rem[bi]] || (s[rem[t]] == s[rem[bi]] && rem[t] > rem[bi])) bi = t;
        const int64_t best = rem[bi];
        if (s[best] <= score_thr) break;
        keep[nkeep] = best;
        new_scores[nkeep++] = s[best];
        rem.erase(rem.begin() + bi);
        for (int64_t d : rem) {
            const double o = oks(best, d);
            if (method == 0)
                s[d] *= std::exp(-(o * o) / sigma);
            else
                s[d] *= o > thr ? 1.0 - o : 1.0;
        }
    }
    return nkeep;
}

}  // namespace edgepose
