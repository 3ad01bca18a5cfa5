// The label-smoothed cross-entropy's passes over the N x V logits, fused (CPU).
//
// criterion.py computes the loss from four numbers per token: the row's
// log-sum-exp, the target's logit, the sum of the row and (for the accuracy)
// its arg-max. In eager PyTorch that is logsumexp (max, a shifted copy, exp,
// sum), a gather, a sum and an arg-max: five passes over N x V and two
// temporaries as large. Here one task reads each row once into cache and
// returns the four numbers. The backward pass writes the gradient
//
//     dz_v = keep * ((a + b V) exp(z_v - lse) - b - a [v = t])
//
// in one pass, where eager ops take five (shift, exp, scale and shift, scatter,
// mask). Asked to (criterion.py, when nothing else reads the logits), it writes
// the gradient over the logits themselves: each value is read once, before its
// own gradient replaces it, and no second N x V tensor is allocated (at a
// training batch's size, a fresh one costs more in page faults than the
// arithmetic). a and b are the scalars criterion.py derives from the label smoothing
// and the incoming gradients. Rows whose target is ignore_index give zeros.
//
// torch's conventions are kept: a row whose maximum is infinite has that maximum
// as its log-sum-exp (logsumexp), and the arg-max is the first maximum, or the
// first NaN. A NaN logit makes the row's sum, and so the loss, NaN.

#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "rows.h"

namespace {

template <typename T>
int64_t first_argmax(const T* z, int64_t V, T max) {
  for (int64_t v = 0; v < V; ++v)
    if (z[v] == max) return v;
  return 0;
}

template <typename T>
int64_t nan_aware_argmax(const T* z, int64_t V) {
  int64_t best = 0;
  for (int64_t v = 0; v < V; ++v) {
    if (std::isnan(z[v])) return v;
    if (z[v] > z[best]) best = v;
  }
  return best;
}

template <typename T>
void rows_forward(const T* z, const int64_t* target, int64_t N, int64_t V,
                  int64_t ignore_index, T* lse, T* z_target, T* z_sum,
                  int64_t* argmax) {
  at::parallel_for(0, N, row_grain(V), [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const T* row = z + n * V;
      T max = -std::numeric_limits<T>::infinity();
      T sum = 0;
      for (int64_t v = 0; v < V; ++v) {
        max = row[v] > max ? row[v] : max;
        sum += row[v];
      }
      // a NaN anywhere makes the sum NaN (an infinity too, harmlessly)
      argmax[n] = std::isfinite(sum) ? first_argmax(row, V, max)
                                     : nan_aware_argmax(row, V);
      if (std::isfinite(max)) {
        T total = 0;
        for (int64_t v = 0; v < V; ++v) total += vexp(row[v] - max);
        lse[n] = std::log(total) + max;
      } else {
        lse[n] = max;  // +inf, or -inf when every logit is -inf
      }
      z_sum[n] = sum;
      const int64_t t = target[n];
      z_target[n] = t == ignore_index ? T(0) : row[t];
    }
  });
}

template <typename T>
void rows_backward(const T* z, const int64_t* target, const T* lse, int64_t N,
                   int64_t V, int64_t ignore_index, T a, T b, T* grad) {
  const T scale = a + b * static_cast<T>(V);
  at::parallel_for(0, N, row_grain(V), [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const T* row = z + n * V;
      T* out = grad + n * V;
      const int64_t t = target[n];
      if (t == ignore_index) {
        std::fill(out, out + V, T(0));
        continue;
      }
      const T shift = lse[n];
      for (int64_t v = 0; v < V; ++v) out[v] = scale * vexp(row[v] - shift) - b;
      out[t] -= a;
    }
  });
}

void check(const torch::Tensor& logits, const torch::Tensor& target) {
  TORCH_CHECK(logits.device().is_cpu() && target.device().is_cpu(),
              "cross_entropy: CPU tensors only");
  TORCH_CHECK(logits.dim() == 2, "cross_entropy: logits must be N x V");
  TORCH_CHECK(target.dim() == 1 && target.size(0) == logits.size(0),
              "cross_entropy: target must have one entry per row of logits");
  TORCH_CHECK(target.scalar_type() == torch::kLong, "cross_entropy: int64 target");
  TORCH_CHECK(logits.size(1) > 0, "cross_entropy: empty vocabulary");
}

}  // namespace

// (lse, target logit, row sum, arg-max) per row; the target logit of an ignored
// row is 0
std::vector<torch::Tensor> cross_entropy_forward(torch::Tensor logits,
                                                 torch::Tensor target,
                                                 int64_t ignore_index) {
  check(logits, target);
  logits = logits.contiguous();
  target = target.contiguous();
  const int64_t N = logits.size(0), V = logits.size(1);
  TORCH_CHECK(((target == ignore_index) | ((target >= 0) & (target < V))).all().item<bool>(),
              "cross_entropy: a target index lies outside the vocabulary");
  auto lse = torch::empty({N}, logits.options());
  auto z_target = torch::empty_like(lse), z_sum = torch::empty_like(lse);
  auto argmax = torch::empty({N}, target.options());
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "cross_entropy_forward", [&] {
    rows_forward<scalar_t>(logits.data_ptr<scalar_t>(), target.data_ptr<int64_t>(),
                           N, V, ignore_index, lse.data_ptr<scalar_t>(),
                           z_target.data_ptr<scalar_t>(), z_sum.data_ptr<scalar_t>(),
                           argmax.data_ptr<int64_t>());
  });
  return {lse, z_target, z_sum, argmax};
}

// the gradient of a * nll + b * smooth with respect to the logits (N x V); with
// in_place, written over the (contiguous) logits and returned as them
torch::Tensor cross_entropy_backward(torch::Tensor logits, torch::Tensor target,
                                     torch::Tensor lse, int64_t ignore_index,
                                     double a, double b, bool in_place) {
  check(logits, target);
  logits = logits.contiguous();
  target = target.contiguous();
  lse = lse.contiguous();
  const int64_t N = logits.size(0), V = logits.size(1);
  TORCH_CHECK(lse.numel() == N && lse.scalar_type() == logits.scalar_type(),
              "cross_entropy: lse must have one entry per row, in the logits' dtype");
  auto grad = in_place ? logits : torch::empty_like(logits);
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "cross_entropy_backward", [&] {
    rows_backward<scalar_t>(logits.data_ptr<scalar_t>(), target.data_ptr<int64_t>(),
                            lse.data_ptr<scalar_t>(), N, V, ignore_index,
                            static_cast<scalar_t>(a), static_cast<scalar_t>(b),
                            grad.data_ptr<scalar_t>());
  });
  return grad;
}
