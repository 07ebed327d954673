// host_emulation.h -- just enough of the CUDA execution model to run splitwire's kernels on a CPU.
//
// Used only by the host build (-DSW_HOST_EMULATION, tests/test_cuda_host.py): the kernel source
// is unchanged. A launch runs the blocks of the grid one after another; the threads of a block are
// real std::threads, so __syncthreads() is a real barrier (std::barrier) and shared memory is
// really shared between them:
//   * `SW_STATIC_SHARED(T, x)` (a __shared__ variable) becomes a function-local `static`: one
//     block runs at a time, so one instance is exactly the block's shared memory;
//   * dynamic shared memory is a heap buffer of the launch's size, re-poisoned (0xCD) before every
//     block so that a kernel reading shared memory it did not write gets garbage, as on a GPU;
//   * atomics are the GCC __atomic builtins (sequentially consistent: stronger than CUDA's).
// Kernels must let every thread reach every __syncthreads() (the CUDA rule as well).
#pragma once
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};
struct uint4 {
  unsigned x, y, z, w;
};

inline thread_local dim3 sw_emu_thread_idx;
inline thread_local dim3 sw_emu_block_idx;
inline dim3 sw_emu_block_dim;
inline dim3 sw_emu_grid_dim;
inline std::barrier<>* sw_emu_barrier = nullptr;
inline std::vector<unsigned char>* sw_emu_smem = nullptr;

#define threadIdx sw_emu_thread_idx
#define blockIdx sw_emu_block_idx
#define blockDim sw_emu_block_dim
#define gridDim sw_emu_grid_dim
#define SW_STATIC_SHARED(type, decl) static type decl

inline unsigned char* sw_emu_dynamic_smem() { return sw_emu_smem->data(); }
inline void __syncthreads() { sw_emu_barrier->arrive_and_wait(); }

inline unsigned atomicOr(unsigned* p, unsigned v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
  return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}

// Run `body` as a <<<grid, block, smem>>> launch.
inline void sw_emu_launch(unsigned grid, unsigned block, size_t smem_bytes, const std::function<void()>& body) {
  if (grid == 0 || block == 0) return;
  std::vector<unsigned char> smem(smem_bytes + 16, 0xCD);
  std::barrier<> bar(block);
  sw_emu_block_dim = dim3{block, 1, 1};
  sw_emu_grid_dim = dim3{grid, 1, 1};
  sw_emu_barrier = &bar;
  sw_emu_smem = &smem;
  std::vector<std::thread> threads;
  threads.reserve(block);
  for (unsigned t = 0; t < block; ++t) {
    threads.emplace_back([&, t] {
      sw_emu_thread_idx = dim3{t, 0, 0};
      for (unsigned b = 0; b < grid; ++b) {
        sw_emu_block_idx = dim3{b, 0, 0};
        if (t == 0) std::memset(smem.data(), 0xCD, smem.size());
        bar.arrive_and_wait();          // poison visible before anyone starts the block
        body();
        bar.arrive_and_wait();          // block done before the next one reuses shared memory
      }
    });
  }
  for (auto& th : threads) th.join();
  sw_emu_barrier = nullptr;
  sw_emu_smem = nullptr;
}
