// Runs the edgepose kernels on the vectors written by gen_vectors.py and compares them bit for bit
// with the NumPy twins' (and cv2's) outputs. Meant for a CPU the Python package cannot easily
// run on, e.g. aarch64 through qemu (docs/KERNELS.md, "On aarch64"):
//   aarch64-linux-gnu-g++ -static -O3 -std=c++17 -Icsrc csrc/tools/check_kernels.cpp \
//       csrc/warp.cpp csrc/decode.cpp csrc/argmax.cpp csrc/nms.cpp -o check_kernels
//   qemu-aarch64-static ./check_kernels DIR H W NM N K
// Not part of the extension: setup.py compiles csrc/*.cpp only.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>
#include "../kernels.hpp"
using namespace edgepose;
static std::string g_dir;
template <class T> std::vector<T> load(const std::string& f) {
    std::ifstream in(g_dir + "/" + f, std::ios::binary | std::ios::ate);
    if (!in) { std::fprintf(stderr, "cannot read %s/%s\n", g_dir.c_str(), f.c_str()); std::exit(2); }
    size_t n = size_t(in.tellg()); in.seekg(0);
    std::vector<T> v(n / sizeof(T)); in.read(reinterpret_cast<char*>(v.data()), n); return v;
}
template <class T> int diff(const std::vector<T>& a, const std::vector<T>& b) {
    if (a.size() != b.size()) return -1;
    int d = 0; for (size_t i = 0; i < a.size(); ++i) d += std::memcmp(&a[i], &b[i], sizeof(T)) != 0; return d;
}
int main(int argc, char** argv) {
    if (argc != 7) { std::fprintf(stderr, "usage: check_kernels DIR H W NM N K (gen_vectors.py prints H W NM N K)\n"); return 2; }
    g_dir = argv[1];
    const int h = std::atoi(argv[2]), w = std::atoi(argv[3]), nm = std::atoi(argv[4]), n = std::atoi(argv[5]), k = std::atoi(argv[6]);
    int bad = 0;
    auto frame = load<uint8_t>("frame.u8"); auto mats = load<double>("mats.f64");
    auto mean = load<float>("mean.f32"); auto stdv = load<float>("std.f32");
    FrameView f{frame.data(), h, w, int64_t(w) * 3, 3, 1};
    std::vector<uint8_t> u8(size_t(nm) * 256 * 192 * 3);
    warp_crops_u8(f, mats.data(), nm, 192, 256, false, u8.data());
    int d = diff(u8, load<uint8_t>("warp_u8_expected.u8")); printf("warp u8 vs cv2: %d differing bytes\n", d); bad += d != 0;
    std::vector<float> f32(size_t(nm) * 3 * 256 * 192);
    warp_crops_f32(f, mats.data(), nm, 192, 256, true, mean.data(), stdv.data(), f32.data());
    d = diff(f32, load<float>("warp_f32_expected.f32")); printf("warp f32 vs twin: %d differing values\n", d); bad += d != 0;
    auto hm = load<float>("hm.f32"); auto fl = load<float>("fl.f32"); auto q = load<int8_t>("q.i8"); auto qf = load<int8_t>("qf.i8");
    auto inv = load<double>("inv.f64"); auto perm = load<int64_t>("perm.i64");
    struct C { const char* name; HmType t; const void* a; const void* b; double s; int zp; };
    C cs[] = {{"f32", HmType::F32, hm.data(), nullptr, 1, 0}, {"f32flip", HmType::F32, hm.data(), fl.data(), 1, 0},
              {"i8", HmType::I8, q.data(), nullptr, 0.01, -20}, {"i8flip", HmType::I8, q.data(), qf.data(), 0.01, -20}};
    for (auto& c : cs) for (int refine : {0, 1}) {
        DecodeArgs a{c.t, c.a, c.b, inv.data(), perm.data(), n, k, 64, 48, true, c.s, c.zp, refine, 11};
        std::vector<float> co(size_t(n) * k * 2), sc(size_t(n) * k);
        decode(a, co.data(), sc.data());
        std::string r = refine ? "dark" : "quarter";
        int dc = diff(co, load<float>(std::string("dec_") + c.name + "_" + r + "_c.f32"));
        int ds = diff(sc, load<float>(std::string("dec_") + c.name + "_" + r + "_s.f32"));
        printf("decode %s %s: %d coords, %d scores differ\n", c.name, r.c_str(), dc, ds); bad += dc != 0 || ds != 0;
    }
    auto kp = load<double>("kp.f64"); auto sc = load<double>("sc.f64"); auto ar = load<double>("ar.f64"); auto sig = load<double>("sig.f64");
    std::vector<int64_t> keep(100);
    int64_t m = oks_nms(kp.data(), sc.data(), ar.data(), sig.data(), 100, 17, 0.9, -1e300, false, keep.data()); keep.resize(m);
    d = diff(keep, load<int64_t>("keep.i64")); printf("oks_nms: %d differ (kept %ld)\n", d, long(m)); bad += d != 0;
    keep.assign(100, 0);
    m = oks_nms(kp.data(), sc.data(), ar.data(), sig.data(), 100, 17, 0.5, 0.3, true, keep.data()); keep.resize(m);
    d = diff(keep, load<int64_t>("keepv.i64")); printf("oks_nms vis: %d differ (kept %ld)\n", d, long(m)); bad += d != 0;
    printf(bad ? "MISMATCH\n" : "ALL EQUAL\n");
    return bad != 0;
}
