// The parts of the DeLighT stacks that the engine's C++ runs (decoder_blocks.h,
// encoder_blocks.cpp): the products of every kind the engine makes, the GLT
// layers, DExTra and the residual LayerNorms, each the counterpart of one class
// of inference/functional.py (or matmul.py, qlayers.py), running the same ATen
// operations in the same order. Shared by both files, hence one named namespace.

#pragma once

#include <torch/extension.h>

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/jit/api/object.h>

#include <algorithm>
#include <optional>
#include <string_view>
#include <vector>

// glt_tail.cpp: bias + shuffle + group LayerNorm + swish of g x N x m products
torch::Tensor glt_tail_out(torch::Tensor y, torch::Tensor bias, torch::Tensor w,
                           torch::Tensor beta, bool shuffle);
// attend_one.cpp: attention over keys and values read where they lie
torch::Tensor attend_one(const torch::Tensor& q, const torch::Tensor& keys,
                         const torch::Tensor& values,
                         const std::optional<torch::Tensor>& padding,
                         const std::optional<torch::Tensor>& index);

namespace delight_native {

using at::Tensor;

// mkldnn::_linear_pointwise, as matmul.onednn_linear calls it
inline Tensor onednn_call(const Tensor& x, const Tensor& layout,
                   const std::optional<Tensor>& bias) {
  static auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("mkldnn::_linear_pointwise", "")
          .typed<Tensor(const Tensor&, const Tensor&, const std::optional<Tensor>&,
                        std::string_view, c10::List<std::optional<c10::Scalar>>,
                        std::optional<std::string_view>)>();
  return op.call(x, layout, bias, "none", c10::List<std::optional<c10::Scalar>>(),
                 std::string_view(""));
}

// matmul.onednn_linear: at most max_rows rows per call, padded with zeros to a
// multiple of row_step (oneDNN keeps one primitive per row count it meets)
inline Tensor onednn_linear(const Tensor& x, const Tensor& layout,
                     const std::optional<Tensor>& bias, int64_t row_step,
                     int64_t max_rows) {
  const int64_t width = x.size(-1);
  const int64_t rows = x.numel() / width;
  if (rows % row_step == 0 && rows <= max_rows) return onednn_call(x, layout, bias);
  const Tensor flat = x.reshape({rows, width});
  std::vector<Tensor> parts;
  for (int64_t start = 0; start < rows; start += max_rows) {
    Tensor part = flat.slice(0, start, std::min(start + max_rows, rows));
    const int64_t n = part.size(0);
    const int64_t padded = (n + row_step - 1) / row_step * row_step;
    if (padded != n) part = at::cat({part, part.new_zeros({padded - n, width})});
    parts.push_back(onednn_call(part, layout, bias).slice(0, 0, n));
  }
  Tensor out = parts.size() == 1 ? parts[0] : at::cat(parts);
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end() - 1);
  shape.push_back(-1);
  return out.view(shape);
}

// quantized::linear_dynamic over fbgemm's (or oneDNN's) packed int8 weights,
// as qlayers.QLinear calls it
inline Tensor int8_linear(const Tensor& x, const c10::IValue& packed, bool reduce_range) {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow(
      "quantized::linear_dynamic", "");
  torch::jit::Stack stack{x, packed, reduce_range};
  op.callBoxed(&stack);
  return stack.at(0).toTensor();
}

// A product of one of four kinds: functional.Linear (F.linear),
// matmul.PackedLinear (oneDNN over ``layout``), qlayers.QLinear (int8 over
// ``packed``, the bias inside it) and qlayers.DequantLinear (F.linear over
// q x scale)
struct Linear {
  enum Kind { TORCH, ONEDNN, INT8, DEQUANT };
  Kind kind;
  Tensor weight;  // TORCH, ONEDNN; q for DEQUANT
  std::optional<Tensor> bias;
  std::optional<Tensor> layout;  // ONEDNN
  int64_t row_step = 0, max_rows = 0;  // ONEDNN
  c10::IValue packed;  // INT8
  bool reduce_range = false;  // INT8
  Tensor scale;  // DEQUANT

  Tensor operator()(const Tensor& x) const {
    switch (kind) {
      case ONEDNN: return onednn_linear(x, *layout, bias, row_step, max_rows);
      case INT8: return int8_linear(x, packed, reduce_range);
      case DEQUANT: return at::linear(x, weight * scale, bias);
      default: return at::linear(x, weight, bias);
    }
  }
  // the product without the bias, as LinearNormAct's fused path takes it (an
  // int8 or dequantizing one is built without a bias)
  Tensor product(const Tensor& x) const {
    switch (kind) {
      case ONEDNN: return onednn_linear(x, *layout, std::nullopt, row_step, max_rows);
      case TORCH: return at::mm(x, weight.t());
      default: return (*this)(x);
    }
  }
};

// functional.LinearNormAct on the fused kernel: product, then bias +
// LayerNorm + swish as a one-group GLT tail without shuffle
struct LinearNormAct {
  Linear linear;
  Tensor bias, norm_weight, norm_bias;

  Tensor operator()(const Tensor& x) const {
    return glt_tail_out(linear.product(x).unsqueeze(0), bias.unsqueeze(0),
                        norm_weight, norm_bias, false);
  }
};

// functional.GroupLinear on the fused kernel, g x N x in/g -> N x out, or
// qlayers.QGroupLinear (without ``weight``): g int8 products (``packed``),
// from ``min_int8_rows`` rows on or where there is no ``q``, else one batched
// product over q x scale
struct GroupLinear {
  int64_t groups;
  std::optional<Tensor> weight;
  Tensor bias, norm_weight, norm_bias;
  bool shuffle;
  std::vector<c10::IValue> packed;
  bool reduce_range = false;
  int64_t min_int8_rows = 0;
  std::optional<Tensor> q, scale;

  Tensor products(const Tensor& x) const {
    if (!packed.empty() && (!q || x.size(1) >= min_int8_rows)) {
      std::vector<Tensor> parts;
      for (size_t i = 0; i < packed.size(); ++i)
        parts.push_back(int8_linear(x.select(0, i), packed[i], reduce_range));
      return at::stack(parts);
    }
    if (q) return at::bmm(x, *q * *scale);
    return at::bmm(x, *weight);
  }
  Tensor operator()(const Tensor& x) const {
    return glt_tail_out(products(x), bias, norm_weight, norm_bias, shuffle);
  }
};

// functional.DExTra
struct DExTra {
  LinearNormAct input_layer;
  std::vector<GroupLinear> glts;
  LinearNormAct output_layer;
  int64_t proj;

  Tensor operator()(const Tensor& in) const {
    const Tensor x = input_layer(in);
    Tensor y = x;
    for (size_t i = 0; i < glts.size(); ++i) {
      const int64_t g = glts[i].groups;
      Tensor grouped;
      if (i == 0) {
        grouped = x.reshape({-1, g, proj / g}).transpose(0, 1).contiguous();
      } else {  // dextra.mix_grouped
        grouped = at::cat({x.reshape({x.size(0), g, -1}).transpose(0, 1),
                           y.reshape({y.size(0), g, -1}).transpose(0, 1)},
                          -1);
      }
      y = glts[i](grouped);
    }
    return output_layer(at::cat({x, y}, -1));
  }
};

// functional.Sublayer: a LayerNorm before the part (pre-norm) or after the
// residual sum (post-norm)
struct Sublayer {
  int64_t dim;
  Tensor weight, bias;
  double eps;
  bool before;

  Tensor norm(const Tensor& x) const {
    return at::layer_norm(x, {dim}, weight, bias, eps);
  }
  Tensor pre(const Tensor& x) const { return before ? norm(x) : x; }
  Tensor post(const Tensor& x, const Tensor& residual) const {
    const Tensor sum = residual + x;
    return before ? sum : norm(sum);
  }
};

}  // namespace delight_native
