// Dropout with a counter-based mask (CPU), for --delight-fast-dropout.
//
// torch draws a CPU dropout mask with bernoulli_ from one Mersenne Twister,
// element by element on one thread, and keeps the mask as a float tensor for
// the backward pass. Here element i of a call keeps its value when a hash of
// (i, the call's 64-bit seed) clears the drop threshold: every thread computes
// its own elements, the compiler vectorizes the hash, and the backward pass
// computes the same mask again from the seed instead of storing it. The mask
// depends on the seed, the index and p only, never on the thread count.
//
// The hash is two rounds of a 32-bit integer finalizer (multiply, xor-shift;
// "lowbias32", C. Wellons); the seed's low half enters the first round, its
// high half and the index's high half the second. An element is kept when the
// top 24 bits of the hash are at least round(p * 2^24): the keep probability
// is 1 - p to within 2^-25. Kept values are scaled by 1 / (1 - p), as in
// torch.nn.functional.dropout.

#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace {

inline uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

template <typename T>
void apply(const T* x, T* y, int64_t n, uint64_t seed, double p) {
  const uint32_t k0 = static_cast<uint32_t>(seed);
  const uint32_t k1 = static_cast<uint32_t>(seed >> 32);
  const uint32_t threshold = static_cast<uint32_t>(std::llround(p * 16777216.0));
  const T scale = static_cast<T>(1.0 / (1.0 - p));
  at::parallel_for(0, n, at::internal::GRAIN_SIZE, [&](int64_t begin, int64_t end) {
    // runs of one high index half, so the inner loop counts in 32 bits and
    // vectorizes
    for (int64_t start = begin; start < end;) {
      const uint64_t high = static_cast<uint64_t>(start) >> 32;
      const int64_t stop =
          std::min<int64_t>(end, static_cast<int64_t>((high + 1) << 32));
      const uint32_t k = k1 + static_cast<uint32_t>(high) * 0x9e3779b9U;
      const T* xs = x + start;
      T* ys = y + start;
      const uint32_t low = static_cast<uint32_t>(start);
      const int64_t count = stop - start;
      for (int64_t j = 0; j < count; ++j) {
        const uint32_t h = mix32(mix32((low + static_cast<uint32_t>(j)) ^ k0) + k);
        // a multiply, as torch's mask: a NaN stays NaN where it is dropped
        ys[j] = xs[j] * ((h >> 8) >= threshold ? scale : T(0));
      }
      start = stop;
    }
  });
}

}  // namespace

// x with the mask of (seed, p) applied; the backward pass is the same call on
// the gradient. p in [0, 1).
torch::Tensor counter_dropout(torch::Tensor x, double p, int64_t seed) {
  TORCH_CHECK(x.device().is_cpu(), "counter_dropout: CPU tensors only");
  TORCH_CHECK(p >= 0.0 && p < 1.0, "counter_dropout: p must lie in [0, 1)");
  x = x.contiguous();
  auto y = torch::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "counter_dropout", [&] {
    apply<scalar_t>(x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), x.numel(),
                    static_cast<uint64_t>(seed), p);
  });
  return y;
}
