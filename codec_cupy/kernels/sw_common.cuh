// sw_common.cuh -- portability layer shared by every splitwire kernel.
//
// The same kernel source is compiled two ways:
//   * for the GPU, by NVRTC (cupy.RawModule, see codec_cupy/_cuda.py) or by nvcc (CI: -cubin);
//   * for the host, by g++ with -DSW_HOST_EMULATION (tests/test_cuda_host.py), where
//     host_emulation.h supplies threadIdx/blockIdx/__syncthreads/atomics.
// Nothing here may include a system header on the device path: NVRTC has none by default.
//
// Exactness: every float operation that decides a symbol or an output value goes through the
// sw_*_rn helpers below, which are correctly rounded (round-to-nearest-even) and never fused
// (FORMAT.md section 2). The GPU path uses the __f*_rn intrinsics, which the compiler may not
// contract into FMA whatever --fmad says; the host path compiles with -ffp-contract=off on SSE2.
#pragma once

#if defined(SW_HOST_EMULATION)
#include "host_emulation.h"
#define SW_DEVICE static inline
#define SW_KERNEL extern "C"
#else
#define SW_DEVICE static __device__ __forceinline__
#define SW_KERNEL extern "C" __global__
#endif

typedef unsigned char sw_u8;
typedef unsigned short sw_u16;
typedef unsigned int sw_u32;
typedef int sw_i32;
typedef unsigned long long sw_u64;

// ---- correctly rounded float32 arithmetic (RNE, no contraction) ----------------------------
#if defined(SW_HOST_EMULATION)
SW_DEVICE float sw_div_rn(float a, float b) { return a / b; }
SW_DEVICE float sw_mul_rn(float a, float b) { return a * b; }
SW_DEVICE float sw_add_rn(float a, float b) { return a + b; }
SW_DEVICE float sw_rint(float a) { return rintf(a); }   // current mode = nearest-even
SW_DEVICE float sw_bits_to_f32(sw_u32 u) { float f; memcpy(&f, &u, 4); return f; }
SW_DEVICE sw_u32 sw_f32_to_bits(float f) { sw_u32 u; memcpy(&u, &f, 4); return u; }
template <typename T> SW_DEVICE T sw_ldg(const T* p) { return *p; }
#else
SW_DEVICE float sw_div_rn(float a, float b) { return __fdiv_rn(a, b); }
SW_DEVICE float sw_mul_rn(float a, float b) { return __fmul_rn(a, b); }
SW_DEVICE float sw_add_rn(float a, float b) { return __fadd_rn(a, b); }
SW_DEVICE float sw_rint(float a) { return rintf(a); }  // IEEE roundToIntegralTiesToEven
SW_DEVICE float sw_bits_to_f32(sw_u32 u) { return __uint_as_float(u); }
SW_DEVICE sw_u32 sw_f32_to_bits(float f) { return __float_as_uint(f); }
template <typename T> SW_DEVICE T sw_ldg(const T* p) { return __ldg(p); }
#endif

SW_DEVICE sw_u32 sw_min_u32(sw_u32 a, sw_u32 b) { return a < b ? a : b; }

// float32 -> IEEE binary16 bits, round to nearest even (what numpy's astype(float16) does).
// Bit-exact integer code, identical on host and device, so no engine depends on a half library.
SW_DEVICE sw_u16 sw_f32_to_f16_bits(float f) {
  const sw_u32 x = sw_f32_to_bits(f);
  const sw_u32 sign = (x >> 16) & 0x8000u;
  const sw_u32 ax = x & 0x7FFFFFFFu;
  if (ax >= 0x7F800000u)                                     // inf / nan (quiet, payload kept)
    return (sw_u16)(sign | 0x7C00u | (ax > 0x7F800000u ? (0x200u | ((ax >> 13) & 0x3FFu)) : 0u));
  if (ax >= 0x477FF000u) return (sw_u16)(sign | 0x7C00u);   // >= 65520 rounds to inf
  if (ax < 0x38800000u) {                                    // below 2^-14: subnormal half or 0
    const sw_u32 e = ax >> 23;
    if (e < 102u) return (sw_u16)sign;                       // < 2^-25 (or a tie at 2^-25 -> 0)
    const sw_u32 m = (ax & 0x7FFFFFu) | 0x800000u;
    const sw_u32 shift = 126u - e;                           // 14..24
    sw_u32 q = m >> shift;
    const sw_u32 rem = m & ((1u << shift) - 1u);
    const sw_u32 half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return (sw_u16)(sign | q);
  }
  const sw_u32 r = ax - 0x38000000u;                         // rebias 127 -> 15
  sw_u32 q = r >> 13;
  const sw_u32 rem = r & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) ++q;    // carry may reach the exponent: fine
  return (sw_u16)(sign | q);
}

// IEEE binary16 bits -> float32 (exact).
SW_DEVICE float sw_f16_bits_to_f32(sw_u16 h) {
  const sw_u32 sign = ((sw_u32)h & 0x8000u) << 16;
  const sw_u32 e = ((sw_u32)h >> 10) & 0x1Fu;
  sw_u32 m = (sw_u32)h & 0x3FFu;
  if (e == 0x1Fu) return sw_bits_to_f32(sign | 0x7F800000u | (m << 13));
  if (e != 0u) return sw_bits_to_f32(sign | ((e + 112u) << 23) | (m << 13));
  if (m == 0u) return sw_bits_to_f32(sign);
  sw_u32 ee = 113u;                                           // normalise a subnormal
  while ((m & 0x400u) == 0u) { m <<= 1; --ee; }
  return sw_bits_to_f32(sign | (ee << 23) | ((m & 0x3FFu) << 13));
}

// Output element types of the fused decode+dequantize kernels.
struct SwOutF32 { typedef float type;  SW_DEVICE float  from(float y) { return y; } };
struct SwOutF16 { typedef sw_u16 type; SW_DEVICE sw_u16 from(float y) { return sw_f32_to_f16_bits(y); } };
