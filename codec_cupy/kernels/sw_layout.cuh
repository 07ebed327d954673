// sw_layout.cuh -- the launch descriptors shared by the kernels and codec_cupy/_cuda.py.
//
// Everything a kernel needs about a tensor ("item") travels in flat uint32 arrays whose field
// indices are defined here and mirrored, name for name, in _cuda.py (ITEM_FIELDS). Flat u32
// arrays rather than structs: no padding or alignment rules to keep in sync between compilers.
// The host (_cuda.build_decode_plan) fills them from a container Header that _container.parse
// validated; the kernels still bounds-check everything they read or write against these fields.
#pragma once
#include "sw_common.cuh"

// ---- one decode item = one tensor (a batch launch holds many) ------------------------------
enum SwItemField {
  SW_IT_OUT_LO = 0,     // element offset of this item's output in the launch's output buffer
  SW_IT_OUT_HI,
  SW_IT_PAY_LO,         // byte offset of this item's payload in the payload buffer (even)
  SW_IT_PAY_HI,
  SW_IT_PAY_BYTES,      // payload length in bytes (sum over streams of 4 + 2 W[s])
  SW_IT_STREAM_BASE,    // index of stream 0 of this item in stream_off / stream_words
  SW_IT_NUM_STREAMS,    // S
  SW_IT_P,              // packed symbols per stream (all but the last): ceil(Np / S)
  SW_IT_NP,             // Np = Cc * G packed symbols
  SW_IT_G,              // G = ceil(R / k) packed symbols per coded channel
  SW_IT_R,              // R = outer * inner elements per channel
  SW_IT_INNER,
  SW_IT_OUTER,
  SW_IT_C,              // channels
  SW_IT_CODED,          // Cc coded (not zero-masked) channels
  SW_IT_BITS,           // b
  SW_IT_PACK,           // k
  SW_IT_PROB_BITS,      // n
  SW_IT_NTABLES,        // T
  SW_IT_MODE,           // SW_MODE_*
  SW_IT_LUT_BASE,       // first slot of table 0 in lut_fb / lut_sym; table t at + (t << n)
  SW_IT_CHAN_BASE,      // first entry of this item in ch_table / ch_scale / ch_zp / ch_list
  SW_IT_LEVEL_BASE,     // first entry in levels (ECSQ: 2^b reconstruction levels)
  SW_IT_SMEM,           // 1: stage the lookup tables in shared memory, 0: read them from global
  SW_IT_N,              // elements of the tensor (< 2^31)
  SW_ITEM_WORDS = 32
};

enum SwMode { SW_MODE_UNIFORM = 0, SW_MODE_ECSQ = 1 };

// ---- one block descriptor = what one thread block does (4 x u32) -----------------------------
//   kind SW_BLOCK_STREAMS: threads [0, count) decode streams start + threadIdx.x of `item`
//   kind SW_BLOCK_ZERO:    write +0.0 to rows [start, start + count) of `item`'s zero-masked
//                          channels; row r = m * outer + o is the `inner` contiguous elements of
//                          the m-th masked channel for outer index o.
enum SwBlockField { SW_BD_ITEM = 0, SW_BD_KIND, SW_BD_START, SW_BD_COUNT, SW_BLOCK_WORDS = 4 };
enum SwBlockKind { SW_BLOCK_STREAMS = 0, SW_BLOCK_ZERO = 1 };

// ---- per-item error flags (OR-ed; 0 = every stream decoded consistently) ---------------------
enum SwError {
  SW_ERR_BAD_STATE = 1,      // initial state outside [2^16, 2^32)                    (I1)
  SW_ERR_NO_WORD = 2,        // renormalisation needed a word the stream does not hold (I3)
  SW_ERR_FINAL_STATE = 4,    // final state != 2^16                                     (I4)
  SW_ERR_WORDS_LEFT = 8,     // words left over after the last symbol                   (I4)
  SW_ERR_BOUNDS = 16,        // a stream or output index outside the validated ranges
  SW_ERR_BAD_SYMBOL = 32     // encode: a symbol with frequency 0 (planner bug, not data)
};

SW_DEVICE sw_u64 sw_item_u64(const sw_u32* it, int lo) {
  return (sw_u64)it[lo] | ((sw_u64)it[lo + 1] << 32);
}
