// sw_transform.cuh -- inverse block DCT of the last two dimensions (coding mode "transform",
// FORMAT.md section 8; NumPy reference: codec_cupy/_transform.py, function `inverse`).
//
// READ ME FIRST -- exactness contract. Decoded tensors agree BIT FOR BIT between engines, so this
// kernel performs exactly the float32 operations of _transform.inverse, in the same order:
//   per block p, with c[u, v] = coef[p*B*B + u*B + v] and T = basis (B x B, row k = frequency k),
//     t[u, j] = c[u,0]*T[0,j] + c[u,1]*T[1,j] + ... + c[u,B-1]*T[B-1,j]
//     y[i, j] = T[0,i]*t[0,j] + T[1,i]*t[1,j] + ... + T[B-1,i]*t[B-1,j]
//   each sum starts from its first product and accumulates in increasing v (u); every product and
//   every sum is rounded to float32 (round to nearest even) and nothing is fused: all arithmetic
//   goes through sw_mul_rn / sw_add_rn (__fmul_rn / __fadd_rn on the GPU, which the compiler may
//   never contract into an FMA; plain float ops under -ffp-contract=off in the host build).
//   Do not reorder, reassociate, hoist partial sums across blocks or use FMA here: any change of
//   the operation sequence changes low-order bits and breaks the cross-engine equality
//   (tests/test_cuda_host.py and tests/test_cuda_gpu.py compare the bits with the reference).
//
// Layout: x has `lead` maps of H x W (lead = prod(shape[:-2])); each map is cut into BY x BX
// blocks of B x B (BY = ceil(H / B), BX = ceil(W / B)); block p = (l*BY + by)*BX + bx holds
// output element x[l, by*B + i, bx*B + j] = y[i, j] where that position lies inside the map
// (the padding rows / columns of the last block row / column are computed by nobody).
//
// Work split: one thread per output element (1-D grid over lead*H*W). A thread recomputes the B
// values t[u, j] of its column j (B*B products) -- the same value whichever thread computes it,
// so the redundancy costs time, never bits. Every index is guarded: threads past the end, a block
// size outside 2..16 or a block index outside (BY, BX) write nothing.
#pragma once
#include "sw_common.cuh"

enum { SW_DCT_MIN_BLOCK = 2, SW_DCT_MAX_BLOCK = 16 };

SW_DEVICE void sw_inverse_dct_element(const float* coef, const float* basis, sw_u32 lead, sw_u32 H,
                                      sw_u32 W, sw_u32 B, sw_u32 BY, sw_u32 BX, float* out) {
  const sw_u64 n = (sw_u64)lead * H * W;
  const sw_u64 e = (sw_u64)blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= n || B < SW_DCT_MIN_BLOCK || B > SW_DCT_MAX_BLOCK) return;
  const sw_u64 row = e / W;                      // l*H + y
  const sw_u32 x = (sw_u32)(e - row * W);
  const sw_u64 l = row / H;
  const sw_u32 y = (sw_u32)(row - l * H);
  const sw_u32 by = y / B, i = y - by * B;
  const sw_u32 bx = x / B, j = x - bx * B;
  if (by >= BY || bx >= BX) return;              // inconsistent arguments: write nothing
  const sw_u64 p = (l * BY + by) * BX + bx;
  const float* c = coef + p * B * B;
  float acc = 0.0f;
  for (sw_u32 u = 0; u < B; ++u) {
    const float* cu = c + u * B;
    float t = sw_mul_rn(sw_ldg(cu), sw_ldg(basis + j));                          // c[u,0]*T[0,j]
    for (sw_u32 v = 1; v < B; ++v)
      t = sw_add_rn(t, sw_mul_rn(sw_ldg(cu + v), sw_ldg(basis + v * B + j)));    // + c[u,v]*T[v,j]
    const float prod = sw_mul_rn(sw_ldg(basis + u * B + i), t);                  // T[u,i]*t[u,j]
    acc = u == 0 ? prod : sw_add_rn(acc, prod);
  }
  out[e] = acc;
}
