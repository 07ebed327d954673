// sw_encode.cuh -- the data-parallel steps of the encoder (quantize, histograms, rANS, compaction).
//
// The encoder pipeline (codec_cupy/_encoder.py) is shared by every engine: it chooses the
// quantizer parameters, the zero mask and the model (pack k, tables, prob_bits, streams) from
// statistics, on the host, with the same integer code for all engines. The GPU computes the
// statistics and the bytes:
//
//   sw_quantize_*   x (outer, C, inner) -> q (C, R) uint8 in channel-major order, plus per channel
//                   the count of q != zero symbol and sum |q - zero symbol|     (FORMAT.md 2)
//   sw_histogram    per-channel histograms (C, 2^(k b)) of the packed symbols for one k, and the
//                   packed symbols themselves (Cc, G) uint8                       (FORMAT.md 3)
//   sw_rans_encode  one thread per stream, symbols in reverse; words land at the end of the
//                   stream's scratch window in decoder order                     (FORMAT.md 4)
//   sw_compact      streams back to back: state u32, then W words u16
//
// Quantization is exact float32: q = clamp(rint(x / s) + z, 0, 2^b - 1) with a correctly rounded
// division, rint half-to-even and a correctly rounded add (no FMA can arise: there is no multiply);
// ECSQ: q = #{i : t[i] <= x} by binary search over the nondecreasing thresholds.
#pragma once
#include "sw_layout.cuh"
#include "sw_rans.cuh"

#define SW_QUANT_ITEMS 8          // elements per thread in sw_quantize
#define SW_HIST_ITEMS 8           // packed symbols per thread in sw_histogram
#define SW_MAX_TABLE_ENTRIES 4096 // 16 tables x 256 symbols

struct SwInF32 { typedef float type;  SW_DEVICE float load(const float* p) { return sw_ldg(p); } };
struct SwInF16 {
  typedef sw_u16 type;
  SW_DEVICE float load(const sw_u16* p) { return sw_f16_bits_to_f32(sw_ldg(p)); }
};

// blocks: C x chunks, chunk = blockDim.x * SW_QUANT_ITEMS elements of one channel.
template <typename In>
SW_DEVICE void sw_quantize_block(const typename In::type* x, sw_u32 C, sw_u32 inner, sw_u32 R,
                                 sw_u32 chunks, sw_u32 bits, sw_u32 mode, const float* ch_scale,
                                 const sw_i32* ch_zp, const float* thresholds, sw_u8* q,
                                 sw_u64* nonzero, sw_u64* absdev) {
  SW_STATIC_SHARED(sw_u64, s_nz);
  SW_STATIC_SHARED(sw_u64, s_dev);
  const sw_u32 c = blockIdx.x / chunks, chunk = blockIdx.x - c * chunks;
  if (threadIdx.x == 0) { s_nz = 0; s_dev = 0; }
  __syncthreads();
  const sw_u32 qmax = (1u << bits) - 1u;
  const float scale = ch_scale[c];
  const sw_i32 zp = ch_zp[c];
  const float zf = (float)zp;
  const sw_u32 nthr = (1u << bits) - 1u;
  sw_u64 my_nz = 0, my_dev = 0;
  const sw_u64 e0 = (sw_u64)chunk * blockDim.x * SW_QUANT_ITEMS;
  for (sw_u32 r = 0; r < SW_QUANT_ITEMS; ++r) {
    const sw_u64 e = e0 + (sw_u64)r * blockDim.x + threadIdx.x;
    if (e >= R) break;
    const sw_u32 o = (sw_u32)(e / inner), i = (sw_u32)(e - (sw_u64)o * inner);
    const float v = In::load(x + ((sw_u64)o * C + c) * inner + i);
    sw_u32 sym;
    if (mode == SW_MODE_ECSQ) {
      sw_u32 lo = 0, hi = nthr;               // upper_bound: first t > v
      while (lo < hi) {
        const sw_u32 mid = (lo + hi) >> 1;
        if (sw_ldg(thresholds + mid) <= v) lo = mid + 1; else hi = mid;
      }
      sym = lo;
    } else {
      float t = sw_add_rn(sw_rint(sw_div_rn(v, scale)), zf);
      t = t < 0.0f ? 0.0f : t;
      t = t > (float)qmax ? (float)qmax : t;
      sym = (sw_u32)t;
    }
    q[(sw_u64)c * R + e] = (sw_u8)sym;
    const sw_u32 d = sym >= (sw_u32)zp ? sym - (sw_u32)zp : (sw_u32)zp - sym;
    my_nz += d != 0u;
    my_dev += d;
  }
  if (my_nz) { atomicAdd(&s_nz, my_nz); atomicAdd(&s_dev, my_dev); }
  __syncthreads();
  if (threadIdx.x == 0 && s_nz) { atomicAdd(nonzero + c, s_nz); atomicAdd(absdev + c, s_dev); }
}

// Packed symbol g of channel c (FORMAT.md 3): k symbols, padding = the channel's zero symbol.
SW_DEVICE sw_u32 sw_packed_symbol(const sw_u8* qrow, sw_u32 R, sw_u32 g, sw_u32 k, sw_u32 bits,
                                  sw_u32 zsym) {
  sw_u32 v = 0;
  const sw_u64 e0 = (sw_u64)g * k;
  for (sw_u32 u = 0; u < k; ++u) {
    const sw_u32 s = (e0 + u < R) ? (sw_u32)qrow[e0 + u] : zsym;
    v |= s << (bits * u);
  }
  return v;
}

// blocks: Cc x chunks, chunk = blockDim.x * SW_HIST_ITEMS packed symbols of one coded channel.
// hist: (C, 2^(k b)) uint32, zeroed by the host; packed: (Cc, G) uint8, the symbols to code.
SW_DEVICE void sw_histogram_block(const sw_u8* q, const sw_u32* coded, const sw_i32* zsym,
                                  sw_u32 R, sw_u32 G, sw_u32 chunks, sw_u32 bits, sw_u32 k,
                                  sw_u32* hist, sw_u8* packed) {
  SW_STATIC_SHARED(sw_u32, s_hist[256]);
  const sw_u32 A = 1u << (k * bits);
  const sw_u32 j = blockIdx.x / chunks, chunk = blockIdx.x - j * chunks;
  const sw_u32 c = coded[j];
  for (sw_u32 a = threadIdx.x; a < A; a += blockDim.x) s_hist[a] = 0;
  __syncthreads();
  const sw_u8* qrow = q + (sw_u64)c * R;
  const sw_u32 z = (sw_u32)zsym[c];
  const sw_u64 g0 = (sw_u64)chunk * blockDim.x * SW_HIST_ITEMS;
  for (sw_u32 r = 0; r < SW_HIST_ITEMS; ++r) {
    const sw_u64 g = g0 + (sw_u64)r * blockDim.x + threadIdx.x;
    if (g >= G) break;
    const sw_u32 v = sw_packed_symbol(qrow, R, (sw_u32)g, k, bits, z);
    packed[(sw_u64)j * G + g] = (sw_u8)v;
    atomicAdd(&s_hist[v], 1u);
  }
  __syncthreads();
  for (sw_u32 a = threadIdx.x; a < A; a += blockDim.x)
    if (s_hist[a]) atomicAdd(hist + (sw_u64)c * A + a, s_hist[a]);
}

// One thread per stream. packed: (Cc, G) uint8 symbols; tsel[j]: table of coded channel j;
// fc[t * A + a] = f | cum << 16 (T * A <= 4096 entries, staged in shared memory).
// scratch: Np words; stream s owns words [s P, s P + count): its W words end up at the end of
// that window, in decoder order. states[s], nwords[s] are written for every stream.
SW_DEVICE void sw_rans_encode_block(const sw_u8* packed, const sw_u32* tsel, const sw_u32* fc,
                                    sw_u32 n_fc, sw_u32 A, sw_u32 G, sw_u32 Np, sw_u32 P,
                                    sw_u32 S, sw_u32 n, sw_u16* scratch, sw_u32* states,
                                    sw_u32* nwords, sw_u32* err) {
  SW_STATIC_SHARED(sw_u32, s_fc[SW_MAX_TABLE_ENTRIES]);
  const sw_u32 nfc = sw_min_u32(n_fc, SW_MAX_TABLE_ENTRIES);
  for (sw_u32 t = threadIdx.x; t < nfc; t += blockDim.x) s_fc[t] = fc[t];
  __syncthreads();
  const sw_u64 s64 = (sw_u64)blockIdx.x * blockDim.x + threadIdx.x;
  if (s64 >= S) return;
  const sw_u32 s = (sw_u32)s64;
  const sw_u64 lo64 = (sw_u64)s * P;
  if (lo64 >= Np) { atomicOr(err, (sw_u32)SW_ERR_BOUNDS); return; }
  const sw_u32 lo = (sw_u32)lo64;
  const sw_u32 count = sw_min_u32(P, Np - lo);
  sw_u16* window = scratch + lo;
  sw_u32 x = SW_RANS_L, m = 0;
  const sw_u32 last = lo + count - 1u;
  sw_u32 j = last / G;                 // coded channel of the current symbol
  sw_u32 first_of_j = j * G;           // its first packed symbol
  sw_u32 tbase = tsel[j] * A;
  for (sw_u32 p = last + 1u; p-- > lo;) {
    if (p < first_of_j) {              // previous coded channel
      --j;
      first_of_j -= G;
      tbase = tsel[j] * A;
    }
    const sw_u32 idx = tbase + packed[p];
    const sw_u32 e = idx < nfc ? s_fc[idx] : 0u;
    const sw_u32 f = e & 0xFFFFu, cum = e >> 16;
    if (f == 0u) { atomicOr(err, (sw_u32)SW_ERR_BAD_SYMBOL); return; }
    if (sw_rans_enc_needs_flush(x, f, n)) {
      window[count - 1u - m] = (sw_u16)(x & 0xFFFFu);   // m < count: one word per symbol at most
      ++m;
      x >>= 16;
    }
    x = sw_rans_enc_put(x, f, cum, n);
  }
  states[s] = x;
  nwords[s] = m;
}

// Grid-stride over streams (one block per stream at a time): stream s goes to byte offset
// offsets[s] (even) of `out`; its words come from the end of its scratch window.
SW_DEVICE void sw_compact_block(const sw_u16* scratch, const sw_u32* states, const sw_u32* nwords,
                                const sw_u64* offsets, sw_u32 Np, sw_u32 P, sw_u32 S,
                                sw_u64 out_bytes, sw_u8* out) {
  for (sw_u32 s = blockIdx.x; s < S; s += gridDim.x) {
    const sw_u32 lo = s * P;
    const sw_u32 count = sw_min_u32(P, Np - lo);
    const sw_u32 W = nwords[s];
    const sw_u64 off = offsets[s];
    if ((off & 1u) || W > count || off + 4u + 2ull * W > out_bytes) return;   // host bug: stop
    sw_u16* dst = (sw_u16*)(out + off);
    if (threadIdx.x == 0) {
      dst[0] = (sw_u16)(states[s] & 0xFFFFu);
      dst[1] = (sw_u16)(states[s] >> 16);
    }
    const sw_u16* src = scratch + lo + (count - W);
    for (sw_u32 w = threadIdx.x; w < W; w += blockDim.x) dst[2 + w] = src[w];
  }
}
