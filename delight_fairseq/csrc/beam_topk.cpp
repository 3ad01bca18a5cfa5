// The beam search's candidates in one pass over the log-probabilities (CPU).
//
// At each step the engine (inference/engine.py) needs, for each sentence, the
// k best of lprobs[row, v] + cum[row] over its R rows (R = beam, or 1 at the
// first step) and every token v, with NaN counted as -inf: fairseq's
// nan-to-(-inf), the addition of the beams' scores and a top-k over R x V. In
// eager PyTorch that is three passes over the R x V values of every sentence
// (nan_to_num, add, topk), each through memory. Here one task per sentence
// reads its values once and keeps the k best in a small sorted list; a block
// of 64 values is looked at one by one only when its maximum reaches the
// list's last entry, which after the first rows is rare.
//
// The scores are the same float additions as fairseq's, so the same values
// come out, in descending order. torch.topk leaves the order of equal values
// unspecified (and which of them it keeps at the boundary), and fairseq's
// search follows whatever it gives: where two equal values reach the final
// list, or one in it equals one left out, the call says so and the engine
// asks torch.topk for that step instead. -inf values tie, so a step where
// fewer than k scores are finite (the last one, where only eos may follow)
// goes to torch.topk too.

#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

#include "rows.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace {

constexpr int64_t kBlock = 64;

// The largest of kBlock values, skipping NaNs (-inf if all are NaN).
template <typename T>
T block_max(const T* x) {
  T m = -std::numeric_limits<T>::infinity();
  for (int64_t t = 0; t < kBlock; ++t) m = x[t] > m ? x[t] : m;
  return m;
}

#if defined(__AVX2__)
// GCC does not vectorize the loop above (a NaN-aware max is no reduction it
// knows); vmaxps returns its second operand where the first is NaN.
template <>
float block_max<float>(const float* x) {
  __m256 m = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t t = 0; t < kBlock; t += 8) m = _mm256_max_ps(_mm256_loadu_ps(x + t), m);
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
  return _mm_cvtss_f32(h);
}
#endif

// The k best (value, index) pairs seen so far: values descending, and an
// equal value after those seen before it. It also notes the largest value
// that tied with another in the list or with its last entry: such a tie, if
// it reaches the final list, leaves the order undecided (see ambiguous()).
template <typename T>
struct Best {
  T* val;
  int64_t* idx;
  int64_t k;
  int64_t count = 0;
  bool tied = false;
  T tie = -std::numeric_limits<T>::infinity();

  T last() const { return val[k - 1]; }
  bool full() const { return count == k; }

  void note_tie(T v) {
    tie = tied && tie > v ? tie : v;
    tied = true;
  }

  // v: not NaN; before the list is full, any v.
  void see(T v, int64_t i) {
    if (full() && !(v > last())) {
      if (v == last()) note_tie(v);
      return;
    }
    int64_t p = full() ? k - 1 : count++;
    for (; p > 0 && val[p - 1] < v; --p) {
      val[p] = val[p - 1];
      idx[p] = idx[p - 1];
    }
    if (p > 0 && val[p - 1] == v) note_tie(v);
    val[p] = v;
    idx[p] = i;
  }

  // Whether two equal values share the final list, or one in it equals one
  // left out: torch.topk may order or choose those otherwise.
  bool ambiguous() const { return tied && tie >= last(); }
};

template <typename T>
T nan_as_ninf(T x) {
  return std::isnan(x) ? -std::numeric_limits<T>::infinity() : x;
}

template <typename T, bool kCum>
void scan_row(const T* row, T c, int64_t V, int64_t offset, Best<T>& best) {
  int64_t v = 0;
  for (; v < V && !best.full(); ++v) best.see(nan_as_ninf(kCum ? row[v] + c : row[v]), offset + v);
  // Past the first k values, a block is read one by one only if its maximum
  // reaches the list's last entry (equal, for the ties): x -> x + c is
  // monotonic, so max(x) + c = max(x + c). The maximum skips NaNs; a NaN
  // counts (as -inf) only when the last entry is -inf, and then every block
  // reaches it and is read.
  for (; v + kBlock <= V; v += kBlock) {
    const T m = block_max(row + v);
    if (!((kCum ? m + c : m) >= best.last())) continue;
    for (int64_t t = 0; t < kBlock; ++t)
      best.see(nan_as_ninf(kCum ? row[v + t] + c : row[v + t]), offset + v + t);
  }
  for (; v < V; ++v) best.see(nan_as_ninf(kCum ? row[v] + c : row[v]), offset + v);
}

template <typename T, bool kCum>
bool candidates(const T* lprobs, const T* cum, int64_t n, int64_t R, int64_t V,
                int64_t k, T* out_val, int64_t* out_idx) {
  std::vector<char> ambiguous(n, 0);
  at::parallel_for(0, n, row_grain(R * V), [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) {
      Best<T> best{out_val + s * k, out_idx + s * k, k};
      for (int64_t r = 0; r < R; ++r) {
        const int64_t row = s * R + r;
        scan_row<T, kCum>(lprobs + row * V, kCum ? cum[row] : T(0), V, r * V, best);
      }
      ambiguous[s] = best.ambiguous();
    }
  });
  return std::any_of(ambiguous.begin(), ambiguous.end(), [](char a) { return a != 0; });
}

}  // namespace

// lprobs: (n * R) x V; cum: n * R scores added to the rows, or an empty tensor
// for none. Returns the n x k best scores, their flat indices r * V + v, and
// whether a tie makes the result differ from torch.topk's possibly (the
// caller then asks torch.topk).
std::tuple<torch::Tensor, torch::Tensor, bool> beam_candidates(torch::Tensor lprobs,
                                                               torch::Tensor cum,
                                                               int64_t n, int64_t k) {
  TORCH_CHECK(lprobs.dim() == 2 && lprobs.device().is_cpu(),
              "beam_candidates: lprobs must be a 2-D CPU tensor");
  TORCH_CHECK(n > 0 && lprobs.size(0) % n == 0,
              "beam_candidates: the rows of lprobs must split evenly into n sentences");
  const int64_t R = lprobs.size(0) / n, V = lprobs.size(1);
  TORCH_CHECK(k >= 1 && k <= R * V, "beam_candidates: k must be in [1, R * V]");
  const bool has_cum = cum.numel() > 0;
  TORCH_CHECK(!has_cum || (cum.numel() == lprobs.size(0) && cum.scalar_type() == lprobs.scalar_type()),
              "beam_candidates: cum must hold one score per row, in lprobs' dtype");
  auto x = lprobs.contiguous();
  auto c = has_cum ? cum.contiguous() : cum;
  auto values = torch::empty({n, k}, x.options());
  auto indices = torch::empty({n, k}, x.options().dtype(torch::kLong));
  bool ambiguous = false;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "beam_candidates", [&] {
    auto* out_val = values.data_ptr<scalar_t>();
    auto* out_idx = indices.data_ptr<int64_t>();
    if (has_cum)
      ambiguous = candidates<scalar_t, true>(x.data_ptr<scalar_t>(), c.data_ptr<scalar_t>(),
                                             n, R, V, k, out_val, out_idx);
    else
      ambiguous = candidates<scalar_t, false>(x.data_ptr<scalar_t>(), nullptr, n, R, V, k,
                                              out_val, out_idx);
  });
  return {values, indices, ambiguous};
}
