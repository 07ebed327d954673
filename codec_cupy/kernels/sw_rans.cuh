// sw_rans.cuh -- the rANS coder of FORMAT.md section 4, as tiny exact primitives.
//
// ==== READ ME FIRST ==========================================================================
// Coder: rANS, 32-bit state x, lower bound L = 2^16, 16-bit renormalisation, probability
// precision n in 8..15 (M = 2^n). One frequency table: f[a] > 0 for coded symbols, sum f = M,
// cum[a] = f[0] + ... + f[a-1].
//
// Invariants (a decoder checks all of them; any violation = corrupt stream):
//   I1  between symbols the state lies in [L, 2^32).  The state read from a stream must too.
//   I2  decoding one symbol renormalises at most once (x >= L and n <= 15 imply
//       f * (x >> n) >= 2, so (x << 16) | word >= L after one word).
//   I3  a word is read only if one remains in the stream (ptr < W).
//   I4  after the stream's last symbol, x == L exactly and ptr == W (every word consumed).
//   I5  a stream holds at most one word per symbol (W <= count), so a decode loop runs exactly
//       `count` steps: time is bounded by the symbol count whatever the bytes say.
// Arithmetic never overflows 32 bits:
//   decode  f * (x >> n) + (slot - cum) <= f * (2^(32-n) - 1) + f - 1 < 2^32  (f <= 2^n);
//   encode  after the flush x < f << (32-n), so ((x / f) << n) + x % f + cum < 2^32 - 2^n + M.
// The flush bound f << (32 - n) needs 33 bits when f == 2^n: it is compared in 64 bits.
//
// Decode lookup: one entry per slot of every table, built on the host (_cuda.build_lut):
//   lut_fb[slot]  = f[a] | (slot - cum[a]) << 16       (f <= 2^15, slot - cum < 2^15)
//   lut_sym[slot] = a
// so a decode step is: two independent loads, one IMAD, one compare. See sw_decode.cuh.
// ==============================================================================================
#pragma once
#include "sw_common.cuh"

#define SW_RANS_L 65536u
#define SW_RANS_STATE_BYTES 4u

// ---- decode ----------------------------------------------------------------------------------
SW_DEVICE sw_u32 sw_rans_slot(sw_u32 x, sw_u32 n) { return x & ((1u << n) - 1u); }

// x' = f * (x >> n) + (slot - cum), with fb = f | (slot - cum) << 16 from the lookup table.
SW_DEVICE sw_u32 sw_rans_dec_advance(sw_u32 x, sw_u32 fb, sw_u32 n) {
  return (fb & 0xFFFFu) * (x >> n) + (fb >> 16);
}

SW_DEVICE bool sw_rans_dec_needs_word(sw_u32 x) { return x < SW_RANS_L; }

SW_DEVICE sw_u32 sw_rans_dec_shift_in(sw_u32 x, sw_u32 word) { return (x << 16) | word; }

// ---- encode ----------------------------------------------------------------------------------
SW_DEVICE bool sw_rans_enc_needs_flush(sw_u32 x, sw_u32 f, sw_u32 n) {
  return (sw_u64)x >= ((sw_u64)f << (32u - n));
}

SW_DEVICE sw_u32 sw_rans_enc_put(sw_u32 x, sw_u32 f, sw_u32 cum, sw_u32 n) {
  return ((x / f) << n) + (x % f) + cum;
}
