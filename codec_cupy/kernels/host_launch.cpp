// host_launch.cpp -- C entry points that run the host-emulated kernels (tests only).
//
// Built by tests/test_cuda_host.py:
//   g++ -std=c++20 -O1 -g -fPIC -shared -pthread -ffp-contract=off -fno-fast-math
//       -DSW_HOST_EMULATION [-fsanitize=address] host_launch.cpp -o libsw_emu.so
// and loaded with ctypes. Every buffer the Python side passes is copied into a fresh heap
// allocation of exactly its size, surrounded by guard zones: under AddressSanitizer the guards
// are poisoned (any out-of-bounds read or write aborts with a report); without it they hold a
// canary pattern that is verified after the launch (out-of-bounds writes return SW_EMU_OOB).
#include "splitwire_codec.cu"

#include <memory>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define SW_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define SW_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define SW_POISON(p, n) ((void)0)
#define SW_UNPOISON(p, n) ((void)0)
#endif

namespace {
constexpr size_t kGuard = 256;
constexpr unsigned char kCanary = 0xA5;

// A copy of a caller buffer with guard zones on both sides.
class Guarded {
 public:
  Guarded(void* src, size_t bytes) : src_(src), bytes_(bytes), mem_(new unsigned char[bytes + 2 * kGuard]) {
    std::memset(mem_.get(), kCanary, bytes + 2 * kGuard);
    if (bytes) std::memcpy(data(), src, bytes);
    SW_POISON(mem_.get(), kGuard);
    SW_POISON(data() + bytes, kGuard);
  }
  unsigned char* data() { return mem_.get() + kGuard; }
  template <typename T> T* as() { return reinterpret_cast<T*>(data()); }
  // Copy back and report whether the guards are intact.
  bool finish(bool copy_back) {
    SW_UNPOISON(mem_.get(), kGuard);
    SW_UNPOISON(data() + bytes_, kGuard);
    bool ok = true;
    for (size_t i = 0; i < kGuard; ++i)
      ok = ok && mem_[i] == kCanary && data()[bytes_ + i] == kCanary;
    if (copy_back && bytes_) std::memcpy(src_, data(), bytes_);
    return ok;
  }

 private:
  void* src_;
  size_t bytes_;
  std::unique_ptr<unsigned char[]> mem_;
};

}  // namespace

// Generic launcher: argv[i] is a pointer (argb[i] = its size in bytes) or a scalar value
// (argb[i] = SW_EMU_SCALAR), in the kernel's parameter order. Every buffer is copied into a
// Guarded allocation, the launch runs, every buffer is copied back; returns 0, or -1 if a guard
// zone was written (out-of-bounds write).
constexpr unsigned long long SW_EMU_SCALAR = ~0ull;

struct Args {
  std::vector<Guarded> bufs;
  std::vector<unsigned char*> ptr;
  const unsigned long long* argv;
  Args(int n, const unsigned long long* v, const unsigned long long* b) : ptr(n, nullptr), argv(v) {
    bufs.reserve(n);
    for (int i = 0; i < n; ++i)
      if (b[i] != SW_EMU_SCALAR) {
        bufs.emplace_back(reinterpret_cast<void*>(v[i]), b[i]);
        ptr[i] = bufs.back().data();
      }
  }
  template <typename T> T* p(int i) { return reinterpret_cast<T*>(ptr[i]); }
  unsigned u(int i) { return (unsigned)argv[i]; }
  unsigned long long u64(int i) { return argv[i]; }
  int finish() {
    bool ok = true;
    for (auto& g : bufs) ok = g.finish(true) && ok;
    return ok ? 0 : -1;
  }
};

#define SW_EMU_ENTRY(name, nargs, call)                                                         \
  int sw_emu_##name(unsigned grid, unsigned block, unsigned long long smem,                    \
                    const unsigned long long* argv, const unsigned long long* argb) {          \
    Args a(nargs, argv, argb);                                                                  \
    sw_emu_launch(grid, block, smem, [&] { call; });                                            \
    return a.finish();                                                                          \
  }

#define SW_EMU_DECODE(out_t) \
  a.p<sw_u32>(0), a.p<sw_u32>(1), a.p<sw_u8>(2), a.p<sw_u32>(3), a.p<sw_u32>(4), a.p<sw_u32>(5), \
  a.p<sw_u8>(6), a.p<sw_u32>(7), a.p<float>(8), a.p<sw_i32>(9), a.p<sw_u32>(10), a.p<float>(11), \
  a.p<out_t>(12), a.p<sw_u32>(13)

#define SW_EMU_QUANT(in_t) \
  a.p<in_t>(0), a.u(1), a.u(2), a.u(3), a.u(4), a.u(5), a.u(6), a.p<float>(7), a.p<sw_i32>(8), \
  a.p<float>(9), a.p<sw_u8>(10), a.p<sw_u64>(11), a.p<sw_u64>(12)

extern "C" {
SW_EMU_ENTRY(sw_decode_f32, 14, sw_decode_f32(SW_EMU_DECODE(float)))
SW_EMU_ENTRY(sw_decode_f16, 14, sw_decode_f16(SW_EMU_DECODE(sw_u16)))
SW_EMU_ENTRY(sw_quantize_f32, 13, sw_quantize_f32(SW_EMU_QUANT(float)))
SW_EMU_ENTRY(sw_quantize_f16, 13, sw_quantize_f16(SW_EMU_QUANT(sw_u16)))
SW_EMU_ENTRY(sw_histogram, 10,
             sw_histogram(a.p<sw_u8>(0), a.p<sw_u32>(1), a.p<sw_i32>(2), a.u(3), a.u(4), a.u(5),
                          a.u(6), a.u(7), a.p<sw_u32>(8), a.p<sw_u8>(9)))
SW_EMU_ENTRY(sw_rans_encode, 14,
             sw_rans_encode(a.p<sw_u8>(0), a.p<sw_u32>(1), a.p<sw_u32>(2), a.u(3), a.u(4), a.u(5),
                            a.u(6), a.u(7), a.u(8), a.u(9), a.p<sw_u16>(10), a.p<sw_u32>(11),
                            a.p<sw_u32>(12), a.p<sw_u32>(13)))
SW_EMU_ENTRY(sw_compact, 9,
             sw_compact(a.p<sw_u16>(0), a.p<sw_u32>(1), a.p<sw_u32>(2), a.p<sw_u64>(3), a.u(4),
                        a.u(5), a.u(6), a.u64(7), a.p<sw_u8>(8)))
SW_EMU_ENTRY(sw_inverse_dct, 9,
             sw_inverse_dct(a.p<float>(0), a.p<float>(1), a.u(2), a.u(3), a.u(4), a.u(5), a.u(6),
                            a.u(7), a.p<float>(8)))
}  // extern "C"
