// splitwire_codec.cu -- the kernel entry points of engine "cuda" (thin wrappers; the logic lives in
// sw_decode.cuh / sw_encode.cuh / sw_transform.cuh, the coder in sw_rans.cuh).
//
// Built three ways from this one file:
//   * NVRTC via cupy.RawModule (codec_cupy/_cuda.py), options -std=c++17 --fmad=false -I<here>;
//   * nvcc -cubin -arch=sm_90 (CI: proves the device code compiles, tests/test_cuda_host.py);
//   * g++ -x c++ -DSW_HOST_EMULATION with host_launch.cpp (CI: runs the same logic on the CPU).
// Entry points are extern "C" so every build exposes the same unmangled names.
#include "sw_common.cuh"

#if defined(SW_HOST_EMULATION)
#define SW_SMEM_PTR (sw_emu_dynamic_smem())
#define SW_LAUNCH_BOUNDS(n)
#else
extern __shared__ __align__(16) sw_u8 sw_dynamic_smem[];
#define SW_SMEM_PTR sw_dynamic_smem
#define SW_STATIC_SHARED(type, decl) __shared__ type decl
#define SW_LAUNCH_BOUNDS(n) __launch_bounds__(n)
#endif

#include "sw_decode.cuh"
#include "sw_encode.cuh"
#include "sw_transform.cuh"

#define SW_DECODE_ARGS                                                                        \
  const sw_u32 *items, const sw_u32 *blocks, const sw_u8 *payload, const sw_u32 *stream_off,  \
      const sw_u32 *stream_words, const sw_u32 *lut_fb, const sw_u8 *lut_sym,                 \
      const sw_u32 *ch_table, const float *ch_scale, const sw_i32 *ch_zp,                     \
      const sw_u32 *ch_list, const float *levels

SW_DEVICE SwDecodeArgs sw_make_decode_args(SW_DECODE_ARGS, sw_u32* err) {
  SwDecodeArgs a;
  a.items = items; a.blocks = blocks; a.payload = payload; a.stream_off = stream_off;
  a.stream_words = stream_words; a.lut_fb = lut_fb; a.lut_sym = lut_sym; a.ch_table = ch_table;
  a.ch_scale = ch_scale; a.ch_zp = ch_zp; a.ch_list = ch_list; a.levels = levels; a.err = err;
  return a;
}

// Decode + dequantize every stream of every item to float32 / float16 (bits) in one launch.
SW_KERNEL void SW_LAUNCH_BOUNDS(256) sw_decode_f32(SW_DECODE_ARGS, float* out, sw_u32* err) {
  const SwDecodeArgs a = sw_make_decode_args(items, blocks, payload, stream_off, stream_words,
                                             lut_fb, lut_sym, ch_table, ch_scale, ch_zp, ch_list,
                                             levels, err);
  sw_decode_block<SwOutF32>(a, out, SW_SMEM_PTR);
}

SW_KERNEL void SW_LAUNCH_BOUNDS(256) sw_decode_f16(SW_DECODE_ARGS, sw_u16* out, sw_u32* err) {
  const SwDecodeArgs a = sw_make_decode_args(items, blocks, payload, stream_off, stream_words,
                                             lut_fb, lut_sym, ch_table, ch_scale, ch_zp, ch_list,
                                             levels, err);
  sw_decode_block<SwOutF16>(a, out, SW_SMEM_PTR);
}

#define SW_QUANT_ARGS                                                                      \
  sw_u32 C, sw_u32 inner, sw_u32 R, sw_u32 chunks, sw_u32 bits, sw_u32 mode,               \
      const float *ch_scale, const sw_i32 *ch_zp, const float *thresholds, sw_u8 *q,       \
      sw_u64 *nonzero, sw_u64 *absdev

SW_KERNEL void SW_LAUNCH_BOUNDS(256) sw_quantize_f32(const float* x, SW_QUANT_ARGS) {
  sw_quantize_block<SwInF32>(x, C, inner, R, chunks, bits, mode, ch_scale, ch_zp, thresholds, q,
                             nonzero, absdev);
}

SW_KERNEL void SW_LAUNCH_BOUNDS(256) sw_quantize_f16(const sw_u16* x, SW_QUANT_ARGS) {
  sw_quantize_block<SwInF16>(x, C, inner, R, chunks, bits, mode, ch_scale, ch_zp, thresholds, q,
                             nonzero, absdev);
}

SW_KERNEL void SW_LAUNCH_BOUNDS(256) sw_histogram(const sw_u8* q, const sw_u32* coded,
                                                  const sw_i32* zsym, sw_u32 R, sw_u32 G,
                                                  sw_u32 chunks, sw_u32 bits, sw_u32 k,
                                                  sw_u32* hist, sw_u8* packed) {
  sw_histogram_block(q, coded, zsym, R, G, chunks, bits, k, hist, packed);
}

SW_KERNEL void SW_LAUNCH_BOUNDS(256) sw_rans_encode(const sw_u8* packed, const sw_u32* tsel,
                                                    const sw_u32* fc, sw_u32 n_fc, sw_u32 A,
                                                    sw_u32 G, sw_u32 Np, sw_u32 P, sw_u32 S,
                                                    sw_u32 n, sw_u16* scratch, sw_u32* states,
                                                    sw_u32* nwords, sw_u32* err) {
  sw_rans_encode_block(packed, tsel, fc, n_fc, A, G, Np, P, S, n, scratch, states, nwords, err);
}

SW_KERNEL void SW_LAUNCH_BOUNDS(256) sw_compact(const sw_u16* scratch, const sw_u32* states,
                                                const sw_u32* nwords, const sw_u64* offsets,
                                                sw_u32 Np, sw_u32 P, sw_u32 S, sw_u64 out_bytes,
                                                sw_u8* out) {
  sw_compact_block(scratch, states, nwords, offsets, Np, P, S, out_bytes, out);
}

// Inverse block DCT of the last two dims (coding mode "transform"): one thread per output element
// of the lead x H x W float32 output; bit-exact contract in sw_transform.cuh.
SW_KERNEL void SW_LAUNCH_BOUNDS(256) sw_inverse_dct(const float* coef, const float* basis,
                                                    sw_u32 lead, sw_u32 H, sw_u32 W, sw_u32 B,
                                                    sw_u32 BY, sw_u32 BX, float* out) {
  sw_inverse_dct_element(coef, basis, lead, H, W, B, BY, BX, out);
}
