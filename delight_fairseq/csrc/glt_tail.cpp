// The GLT's tail in one pass over memory, forward and backward (CPU).
//
// A GLT computes Y = X_a W_a per group a with one batched matmul, which leaves
// Y group-major: g x N x m (m = out/g). What follows in eager PyTorch is four
// passes with their own temporaries: add the bias, the feature shuffle (a
// permuted copy), the group-wise LayerNorm and swish; the backward adds as
// many again. Here each token's row is gathered once from the g groups (bias
// added, shuffled in a small cache-resident buffer), normalized per group and
// passed through swish on the way out; the backward recomputes the normalized
// values from Y and the saved statistics and scatters the gradient straight
// back into the g x N x m layout the batched matmul's backward reads.
//
// Shuffle (spec section 1, as in group_linear.GroupLinear): output feature
// f = b * g + a comes from group a, feature b; without it f = a * m + b.
// LayerNorm then normalizes each run of m output features with one affine pair
// (w, beta) shared by all groups, eps 1e-5, biased variance, as F.layer_norm.

#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "rows.h"

namespace {

constexpr double kEps = 1e-5;
// fixed chunking: the parameter gradients sum the same way on any thread count
constexpr int64_t kChunks = 16;

// one token's g x m block, transposed to m x g, with a compile-time g so that
// the inner loop unrolls into contiguous stores
template <typename T, int G>
inline void gather_shuffled(const T* y, const T* bias, int64_t n, int64_t N,
                            int64_t m, T* row) {
  const T* src[G];
  for (int a = 0; a < G; ++a) src[a] = y + (a * N + n) * m;
  for (int64_t b = 0; b < m; ++b)
    for (int a = 0; a < G; ++a) row[b * G + a] = src[a][b] + bias[a * m + b];
}

template <typename T>
inline void gather_row(const T* y, const T* bias, int64_t n, int64_t N,
                       int64_t g, int64_t m, bool shuffle, T* row) {
  if (shuffle) {
    switch (g) {
      case 2: return gather_shuffled<T, 2>(y, bias, n, N, m, row);
      case 4: return gather_shuffled<T, 4>(y, bias, n, N, m, row);
      case 8: return gather_shuffled<T, 8>(y, bias, n, N, m, row);
      case 16: return gather_shuffled<T, 16>(y, bias, n, N, m, row);
      default: break;
    }
  }
  for (int64_t a = 0; a < g; ++a) {
    const T* src = y + (a * N + n) * m;
    const T* bb = bias + a * m;
    if (shuffle) {
      for (int64_t b = 0; b < m; ++b) row[b * g + a] = src[b] + bb[b];
    } else {
      T* dst = row + a * m;
      for (int64_t b = 0; b < m; ++b) dst[b] = src[b] + bb[b];
    }
  }
}

// the inverse of gather_row, also summing the bias gradient (group by
// group: strided reads of the cached row, contiguous writes)
template <typename T>
inline void scatter_row(const T* row, int64_t n, int64_t N, int64_t g,
                        int64_t m, bool shuffle, T* grad_y, T* gbias) {
  for (int64_t a = 0; a < g; ++a) {
    T* dst = grad_y + (a * N + n) * m;
    T* gb = gbias + a * m;
    for (int64_t b = 0; b < m; ++b)
      dst[b] = shuffle ? row[b * g + a] : row[a * m + b];
    for (int64_t b = 0; b < m; ++b) gb[b] += dst[b];
  }
}

template <typename T>
void tail_forward(const T* y, const T* bias, const T* w, const T* beta,
                  int64_t N, int64_t g, int64_t m, bool shuffle, T* out,
                  T* mean_out, T* rstd_out) {
  at::parallel_for(0, N, row_grain(g * m), [&](int64_t begin, int64_t end) {
    std::vector<T> row(g * m);
    for (int64_t n = begin; n < end; ++n) {
      gather_row(y, bias, n, N, g, m, shuffle, row.data());
      T* o = out + n * g * m;
      for (int64_t j = 0; j < g; ++j) {
        const T* x = row.data() + j * m;
        T sum = 0;
        for (int64_t p = 0; p < m; ++p) sum += x[p];
        const T mean = sum / m;
        T sq = 0;
        for (int64_t p = 0; p < m; ++p) sq += (x[p] - mean) * (x[p] - mean);
        const T rstd = T(1) / std::sqrt(sq / m + T(kEps));
        T* oj = o + j * m;
        for (int64_t p = 0; p < m; ++p) {
          const T z = (x[p] - mean) * rstd * w[p] + beta[p];
          oj[p] = z / (T(1) + vexp(-z));
        }
        mean_out[n * g + j] = mean;
        rstd_out[n * g + j] = rstd;
      }
    }
  });
}

template <typename T>
void tail_backward(const T* grad, const T* y, const T* bias, const T* w,
                   const T* beta, const T* mean, const T* rstd, int64_t N,
                   int64_t g, int64_t m, bool shuffle, T* grad_y,
                   T* grad_bias, T* grad_w, T* grad_beta) {
  const int64_t chunks = std::min<int64_t>(kChunks, std::max<int64_t>(N, 1));
  // per chunk: grad_w (m), grad_beta (m), grad_bias (g * m), summed in T
  // within a chunk and across chunks in double
  const int64_t width = 2 * m + g * m;
  std::vector<T> partial(chunks * width, T(0));
  // as many chunks per thread as keep small inputs on one thread
  const int64_t per_chunk = std::max<int64_t>(1, N / chunks) * g * m;
  const int64_t chunk_grain = std::min<int64_t>(
      chunks, std::max<int64_t>(1, at::internal::GRAIN_SIZE / per_chunk));
  at::parallel_for(0, chunks, chunk_grain, [&](int64_t cbegin, int64_t cend) {
    std::vector<T> row(g * m), drow(g * m), xhat(m), dz(m);
    for (int64_t c = cbegin; c < cend; ++c) {
      T* gw = partial.data() + c * width;
      T* gbeta = gw + m;
      T* gbias = gbeta + m;
      const int64_t n0 = N * c / chunks, n1 = N * (c + 1) / chunks;
      for (int64_t n = n0; n < n1; ++n) {
        gather_row(y, bias, n, N, g, m, shuffle, row.data());
        const T* go = grad + n * g * m;
        for (int64_t j = 0; j < g; ++j) {
          const T* x = row.data() + j * m;
          const T* gj = go + j * m;
          const T mu = mean[n * g + j], rs = rstd[n * g + j];
          T* xh = xhat.data();
          T* d = dz.data();
          for (int64_t p = 0; p < m; ++p) {
            xh[p] = (x[p] - mu) * rs;
            const T z = xh[p] * w[p] + beta[p];
            const T sig = T(1) / (T(1) + vexp(-z));
            d[p] = gj[p] * sig * (T(1) + z * (T(1) - sig));
          }
          T s1 = 0, s2 = 0;
          for (int64_t p = 0; p < m; ++p) {
            gw[p] += d[p] * xh[p];
            gbeta[p] += d[p];
            s1 += d[p] * w[p];
            s2 += d[p] * w[p] * xh[p];
          }
          s1 /= m;
          s2 /= m;
          T* dx = drow.data() + j * m;
          for (int64_t p = 0; p < m; ++p)
            dx[p] = rs * (d[p] * w[p] - s1 - xh[p] * s2);
        }
        scatter_row(drow.data(), n, N, g, m, shuffle, grad_y, gbias);
      }
    }
  });
  for (int64_t k = 0; k < width; ++k) {
    double total = 0;
    for (int64_t c = 0; c < chunks; ++c) total += partial[c * width + k];
    const T v = static_cast<T>(total);
    if (k < m)
      grad_w[k] = v;
    else if (k < 2 * m)
      grad_beta[k - m] = v;
    else
      grad_bias[k - 2 * m] = v;
  }
}

void check(const torch::Tensor& y, const torch::Tensor& bias,
           const torch::Tensor& w, const torch::Tensor& beta) {
  TORCH_CHECK(y.device().is_cpu(), "glt_tail: CPU tensors only");
  TORCH_CHECK(y.dim() == 3 && y.is_contiguous(),
              "glt_tail: Y must be a contiguous g x N x m tensor");
  const int64_t g = y.size(0), m = y.size(2);
  TORCH_CHECK(bias.numel() == g * m && bias.is_contiguous(),
              "glt_tail: bias must hold g x m values");
  TORCH_CHECK(w.numel() == m && beta.numel() == m && w.is_contiguous() &&
                  beta.is_contiguous(),
              "glt_tail: LayerNorm weight and bias must hold m values");
  TORCH_CHECK(bias.scalar_type() == y.scalar_type() &&
                  w.scalar_type() == y.scalar_type() &&
                  beta.scalar_type() == y.scalar_type(),
              "glt_tail: all tensors must share one dtype");
}

std::vector<torch::Tensor> forward(torch::Tensor y, torch::Tensor bias,
                                   torch::Tensor w, torch::Tensor beta,
                                   bool shuffle) {
  check(y, bias, w, beta);
  const int64_t g = y.size(0), N = y.size(1), m = y.size(2);
  auto out = torch::empty({N, g * m}, y.options());
  auto mean = torch::empty({N, g}, y.options());
  auto rstd = torch::empty({N, g}, y.options());
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "glt_tail_forward", [&] {
    tail_forward<scalar_t>(y.data_ptr<scalar_t>(), bias.data_ptr<scalar_t>(),
                           w.data_ptr<scalar_t>(), beta.data_ptr<scalar_t>(),
                           N, g, m, shuffle, out.data_ptr<scalar_t>(),
                           mean.data_ptr<scalar_t>(), rstd.data_ptr<scalar_t>());
  });
  return {out, mean, rstd};
}

std::vector<torch::Tensor> backward(torch::Tensor grad, torch::Tensor y,
                                    torch::Tensor bias, torch::Tensor w,
                                    torch::Tensor beta, torch::Tensor mean,
                                    torch::Tensor rstd, bool shuffle) {
  check(y, bias, w, beta);
  const int64_t g = y.size(0), N = y.size(1), m = y.size(2);
  grad = grad.contiguous();
  TORCH_CHECK(grad.numel() == N * g * m, "glt_tail: gradient has the wrong size");
  auto grad_y = torch::empty_like(y);
  auto grad_bias = torch::empty_like(bias);
  auto grad_w = torch::empty_like(w);
  auto grad_beta = torch::empty_like(beta);
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "glt_tail_backward", [&] {
    tail_backward<scalar_t>(
        grad.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
        bias.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(),
        beta.data_ptr<scalar_t>(), mean.data_ptr<scalar_t>(),
        rstd.data_ptr<scalar_t>(), N, g, m, shuffle,
        grad_y.data_ptr<scalar_t>(), grad_bias.data_ptr<scalar_t>(),
        grad_w.data_ptr<scalar_t>(), grad_beta.data_ptr<scalar_t>());
  });
  return {grad_y, grad_bias, grad_w, grad_beta};
}

}  // namespace

// the forward pass's output alone (native_parts.h)
torch::Tensor glt_tail_out(torch::Tensor y, torch::Tensor bias, torch::Tensor w,
                           torch::Tensor beta, bool shuffle) {
  return forward(y, bias, w, beta, shuffle)[0];
}

// decoder_step.cpp
void register_decoder_step(pybind11::module& m);
// encoder_blocks.cpp
void register_encoder_blocks(pybind11::module& m);
// search.cpp
void register_search(pybind11::module& m);
torch::Tensor attend_one(const torch::Tensor& q, const torch::Tensor& keys,
                         const torch::Tensor& values,
                         const std::optional<torch::Tensor>& padding,
                         const std::optional<torch::Tensor>& index);
// dropout.cpp
torch::Tensor counter_dropout(torch::Tensor x, double p, int64_t seed);
// cross_entropy.cpp
std::vector<torch::Tensor> cross_entropy_forward(torch::Tensor logits,
                                                 torch::Tensor target,
                                                 int64_t ignore_index);
torch::Tensor cross_entropy_backward(torch::Tensor logits, torch::Tensor target,
                                     torch::Tensor lse, int64_t ignore_index,
                                     double a, double b, bool in_place);
// beam_topk.cpp
std::tuple<torch::Tensor, torch::Tensor, bool> beam_candidates(torch::Tensor lprobs,
                                                               torch::Tensor cum,
                                                               int64_t n, int64_t k);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("forward", &forward, "GLT tail forward: bias, shuffle, LayerNorm, swish");
  module.def("backward", &backward, "GLT tail backward");
  module.def("counter_dropout", &counter_dropout,
             "dropout with a mask hashed from (index, seed)");
  module.def("cross_entropy_forward", &cross_entropy_forward,
             "per row of N x V logits: log-sum-exp, target logit, sum, arg-max");
  module.def("cross_entropy_backward", &cross_entropy_backward,
             "the label-smoothed loss's gradient in one pass, over the logits if in_place");
  module.def("beam_candidates", &beam_candidates,
             pybind11::call_guard<pybind11::gil_scoped_release>(),
             "per sentence, the k best of lprobs + cum over its beams (NaN as -inf), "
             "and whether a tie leaves their order to torch.topk");
  module.def("attend_one", &attend_one,
             pybind11::call_guard<pybind11::gil_scoped_release>(),
             "attention over keys and values read through their strides: "
             "G x Q x heads x D queries, G x heads x S x D -> G x Q x heads D",
             pybind11::arg("q"), pybind11::arg("keys"), pybind11::arg("values"),
             pybind11::arg("padding"), pybind11::arg("index"));
  register_decoder_step(module);
  register_encoder_blocks(module);
  register_search(module);
}
