// sw_decode.cuh -- fused rANS decode + dequantize: one templated core behind thin entry points.
//
// Work split (one launch for one tensor or a whole batch):
//   * one thread decodes one rANS stream from its first symbol to its last (streams are
//     independent: FORMAT.md section 4); blocks of `blockDim.x` streams of one item;
//   * extra SW_BLOCK_ZERO blocks write +0.0 into the zero-masked channels (FORMAT.md section 2),
//     a row of `inner` contiguous elements at a time (coalesced).
// Per block: the item's lookup tables (T tables x 2^n slots, 5 bytes a slot) are copied into
// shared memory with 16-byte loads when the host said they fit (SW_IT_SMEM), otherwise read
// through the read-only cache from global memory. Same code either way (a pointer switch).
//
// Per symbol: slot -> (lut_fb, lut_sym) [two independent loads] -> IMAD -> renormalise from a
// word prefetched one step ahead -> k output elements, each dequantized in float32 with
// correctly rounded ops: uniform y = f32(q - zp[c]) * scale[c], ECSQ y = level[q].
//
// Bounds: every stream's bytes are checked against the item's payload length before the first
// read; word reads are guarded by ptr < W (I3); output indices are checked against N. A failing
// stream stops, sets its item's error flag and never touches memory outside its ranges.
#pragma once
#include "sw_layout.cuh"
#include "sw_rans.cuh"

struct SwDecodeArgs {
  const sw_u32* items;        // n_items x SW_ITEM_WORDS
  const sw_u32* blocks;       // gridDim.x x SW_BLOCK_WORDS
  const sw_u8* payload;       // every item's payload, each at an even offset
  const sw_u32* stream_off;   // byte offset of each stream in its item's payload
  const sw_u32* stream_words; // W[s]
  const sw_u32* lut_fb;       // f | (slot - cum) << 16, per slot of every table
  const sw_u8* lut_sym;       // symbol per slot
  const sw_u32* ch_table;     // table of each channel
  const float* ch_scale;      // uniform scale of each channel (per-tensor: repeated)
  const sw_i32* ch_zp;        // zero point of each channel
  const sw_u32* ch_list;      // coded channels in increasing order, then the masked ones
  const float* levels;        // ECSQ levels
  sw_u32* err;                // one flag word per item
};

// Dequantization of one symbol q of a channel (uniform) or of the tensor (ECSQ).
struct SwDequant {
  sw_u32 mode;
  float scale;
  sw_i32 zp;
  const float* level;
  SW_DEVICE float apply(const SwDequant& d, sw_u32 q) {
    if (d.mode == SW_MODE_ECSQ) return sw_ldg(d.level + q);
    return sw_mul_rn((float)((sw_i32)q - d.zp), d.scale);
  }
};

template <typename Out>
SW_DEVICE void sw_decode_stream(const SwDecodeArgs& a, const sw_u32* it, sw_u32 item, sw_u32 s,
                                const sw_u32* fb_base, const sw_u8* sym_base,
                                typename Out::type* out) {
  const sw_u32 P = it[SW_IT_P], Np = it[SW_IT_NP], G = it[SW_IT_G], R = it[SW_IT_R];
  const sw_u32 inner = it[SW_IT_INNER], C = it[SW_IT_C], N = it[SW_IT_N];
  const sw_u32 b = it[SW_IT_BITS], k = it[SW_IT_PACK], n = it[SW_IT_PROB_BITS];
  const sw_u32 qmask = (1u << b) - 1u;
  const sw_u32 chan_base = it[SW_IT_CHAN_BASE];
  const sw_u32 Cc = it[SW_IT_CODED], T = it[SW_IT_NTABLES];

  const sw_u64 p0_64 = (sw_u64)s * P;
  if (p0_64 >= Np) { atomicOr(a.err + item, (sw_u32)SW_ERR_BOUNDS); return; }
  const sw_u32 p0 = (sw_u32)p0_64;
  const sw_u32 count = sw_min_u32(P, Np - p0);

  // ---- the stream's bytes: state (2 x u16, little-endian) then W words ----
  const sw_u32 off = a.stream_off[it[SW_IT_STREAM_BASE] + s];
  const sw_u32 W = a.stream_words[it[SW_IT_STREAM_BASE] + s];
  const sw_u64 end = (sw_u64)off + SW_RANS_STATE_BYTES + 2ull * W;
  if ((off & 1u) || end > it[SW_IT_PAY_BYTES] || W > count) {
    atomicOr(a.err + item, (sw_u32)SW_ERR_BOUNDS);
    return;
  }
  const sw_u16* words = (const sw_u16*)(a.payload + sw_item_u64(it, SW_IT_PAY_LO) + off);
  sw_u32 x = (sw_u32)sw_ldg(words) | ((sw_u32)sw_ldg(words + 1) << 16);
  words += 2;
  if (x < SW_RANS_L) { atomicOr(a.err + item, (sw_u32)SW_ERR_BAD_STATE); return; }
  sw_u32 ptr = 0;
  sw_u32 next = W > 0 ? (sw_u32)sw_ldg(words) : 0u;   // prefetched word (I3 guards its use)

  // ---- where the first packed symbol lands ----
  sw_u32 j = p0 / G;           // coded-channel rank
  sw_u32 g = p0 - j * G;       // group within the channel
  sw_u32 c = 0, e = 0, i = 0;  // channel, element within channel, index within inner row
  sw_u64 row = 0;              // output index of element (o, c, 0)
  const sw_u32* tfb = fb_base;
  const sw_u8* tsym = sym_base;
  SwDequant dq;
  dq.mode = it[SW_IT_MODE];
  dq.level = a.levels + it[SW_IT_LEVEL_BASE];
  dq.scale = 1.0f;
  dq.zp = 0;
  const sw_u64 row_step = (sw_u64)C * inner;

#define SW_ENTER_CHANNEL()                                                       \
  do {                                                                           \
    if (j >= Cc) { atomicOr(a.err + item, (sw_u32)SW_ERR_BOUNDS); return; }     \
    c = a.ch_list[chan_base + j];                                                \
    if (c >= C) { atomicOr(a.err + item, (sw_u32)SW_ERR_BOUNDS); return; }      \
    const sw_u32 t = a.ch_table[chan_base + c];                                  \
    if (t >= T) { atomicOr(a.err + item, (sw_u32)SW_ERR_BOUNDS); return; }      \
    tfb = fb_base + (t << n);                                                    \
    tsym = sym_base + (t << n);                                                  \
    dq.scale = a.ch_scale[chan_base + c];                                        \
    dq.zp = a.ch_zp[chan_base + c];                                              \
    e = g * k;                                                                   \
    const sw_u32 o = e / inner;                                                  \
    i = e - o * inner;                                                           \
    row = ((sw_u64)o * C + c) * inner;                                           \
  } while (0)

  SW_ENTER_CHANNEL();
  for (sw_u32 step = 0; step < count; ++step) {
    const sw_u32 slot = sw_rans_slot(x, n);
    const sw_u32 fb = tfb[slot];
    const sw_u32 v = tsym[slot];
    x = sw_rans_dec_advance(x, fb, n);
    if (sw_rans_dec_needs_word(x)) {
      if (ptr >= W) { atomicOr(a.err + item, (sw_u32)SW_ERR_NO_WORD); return; }
      x = sw_rans_dec_shift_in(x, next);
      ++ptr;
      next = ptr < W ? (sw_u32)sw_ldg(words + ptr) : 0u;
    }
    // ---- k symbols of channel c at elements e .. e + k - 1 (those < R; the rest is padding) ----
    for (sw_u32 u = 0; u < k; ++u) {
      if (e < R) {
        const sw_u64 idx = row + i;
        if (idx >= (sw_u64)N) { atomicOr(a.err + item, (sw_u32)SW_ERR_BOUNDS); return; }
        out[idx] = Out::from(SwDequant::apply(dq, (v >> (b * u)) & qmask));
        if (++i == inner) { i = 0; row += row_step; }
      }
      ++e;
    }
    if (++g == G && step + 1 < count) {   // next coded channel
      g = 0;
      ++j;
      SW_ENTER_CHANNEL();
    }
  }
#undef SW_ENTER_CHANNEL
  if (x != SW_RANS_L) atomicOr(a.err + item, (sw_u32)SW_ERR_FINAL_STATE);
  if (ptr != W) atomicOr(a.err + item, (sw_u32)SW_ERR_WORDS_LEFT);
}

template <typename Out>
SW_DEVICE void sw_zero_rows(const SwDecodeArgs& a, const sw_u32* it, sw_u32 item, sw_u32 start,
                            sw_u32 nrows, typename Out::type* out) {
  const sw_u32 outer = it[SW_IT_OUTER], inner = it[SW_IT_INNER], C = it[SW_IT_C];
  const sw_u32 Cc = it[SW_IT_CODED], N = it[SW_IT_N];
  const sw_u32 chan_base = it[SW_IT_CHAN_BASE];
  const typename Out::type zero = Out::from(0.0f);
  for (sw_u32 r = start; r < start + nrows; ++r) {
    const sw_u32 m = r / outer, o = r - m * outer;
    if (Cc + m >= C) { if (threadIdx.x == 0) atomicOr(a.err + item, (sw_u32)SW_ERR_BOUNDS); return; }
    const sw_u32 c = a.ch_list[chan_base + Cc + m];
    const sw_u64 row = ((sw_u64)o * C + c) * inner;
    if (row + inner > (sw_u64)N) { if (threadIdx.x == 0) atomicOr(a.err + item, (sw_u32)SW_ERR_BOUNDS); return; }
    for (sw_u32 i = threadIdx.x; i < inner; i += blockDim.x) out[row + i] = zero;
  }
}

// The block body of every decode entry point. `smem` is the dynamic shared memory (16-aligned),
// sized by the host for the largest lookup table among the items marked SW_IT_SMEM.
// No thread returns before the __syncthreads() below.
template <typename Out>
SW_DEVICE void sw_decode_block(const SwDecodeArgs& a, typename Out::type* out_all, sw_u8* smem) {
  const sw_u32* bd = a.blocks + (sw_u64)blockIdx.x * SW_BLOCK_WORDS;
  const sw_u32 item = bd[SW_BD_ITEM], kind = bd[SW_BD_KIND];
  const sw_u32 start = bd[SW_BD_START], count = bd[SW_BD_COUNT];
  const sw_u32* it = a.items + (sw_u64)item * SW_ITEM_WORDS;
  typename Out::type* out = out_all + sw_item_u64(it, SW_IT_OUT_LO);

  const sw_u32 n = it[SW_IT_PROB_BITS];
  const sw_u32 slots = it[SW_IT_NTABLES] << n;      // multiple of 256 (n >= 8)
  const sw_u32* fb = a.lut_fb + it[SW_IT_LUT_BASE];
  const sw_u8* sym = a.lut_sym + it[SW_IT_LUT_BASE];
  if (kind == SW_BLOCK_STREAMS && it[SW_IT_SMEM]) {
    // 16-byte copies: slots * 4 and slots bytes are multiples of 16, bases are 16-aligned
    // (the host keeps SW_IT_LUT_BASE a multiple of 256).
    uint4* s16 = (uint4*)smem;
    const uint4* g_fb = (const uint4*)fb;
    const uint4* g_sym = (const uint4*)sym;
    const sw_u32 n_fb = slots / 4u, n_sym = slots / 16u;
    for (sw_u32 t = threadIdx.x; t < n_fb; t += blockDim.x) s16[t] = sw_ldg(g_fb + t);
    for (sw_u32 t = threadIdx.x; t < n_sym; t += blockDim.x) s16[n_fb + t] = sw_ldg(g_sym + t);
    fb = (const sw_u32*)smem;
    sym = smem + 4u * slots;
  }
  __syncthreads();
  if (kind == SW_BLOCK_STREAMS) {
    if (threadIdx.x < count) sw_decode_stream<Out>(a, it, item, start + threadIdx.x, fb, sym, out);
  } else {
    sw_zero_rows<Out>(a, it, item, start, count, out);
  }
}
