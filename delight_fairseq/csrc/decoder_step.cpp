// The decoding engine's decoder blocks for one step, in C++ (CPU).
//
// inference/step.py's DecoderStep runs a step's blocks as about 30 small
// ATen operations per block; at decoding's row counts the Python between them
// is 5-28 % of the time, and it holds the interpreter lock, so engines in
// threads (pool.py) wait on each other. DecoderBlocks runs the same operations,
// in the same order and on the same kernels (ATen's; oneDNN's inner product
// over the weights matmul.py packed; the int8 products of qlayers.py; this
// extension's GLT tail), so the floats are those of the Python loop; only the
// interpreter leaves. The weights are references to the model's tensors (and
// packed int8 weights), collected once per batch by inference/native.py.

#include <torch/extension.h>

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/jit/api/object.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <string_view>
#include <vector>

// glt_tail.cpp: bias + shuffle + group LayerNorm + swish of g x N x m products
torch::Tensor glt_tail_out(torch::Tensor y, torch::Tensor bias, torch::Tensor w,
                           torch::Tensor beta, bool shuffle);

namespace {

using at::Tensor;

// mkldnn::_linear_pointwise, as matmul.onednn_linear calls it
Tensor onednn_call(const Tensor& x, const Tensor& layout,
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
Tensor onednn_linear(const Tensor& x, const Tensor& layout,
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
Tensor int8_linear(const Tensor& x, const c10::IValue& packed, bool reduce_range) {
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

// attention.split_heads / merge_heads
Tensor split_heads(const Tensor& x, int64_t heads) {
  if (heads == 1) return x;
  const int64_t b = x.size(0), length = x.size(1), width = x.size(2);
  return x.reshape({b, length, heads, width / heads})
      .transpose(1, 2)
      .reshape({b * heads, length, width / heads});
}

Tensor merge_heads(const Tensor& x, int64_t heads) {
  if (heads == 1) return x;
  const int64_t rows = x.size(0), length = x.size(1), width = x.size(2);
  return x.reshape({rows / heads, heads, length, width})
      .transpose(1, 2)
      .reshape({rows / heads, length, heads * width});
}

// functional.attend_heads: the softmax in float32
Tensor attend_heads(const Tensor& q, const Tensor& keys, const Tensor& values,
                    const std::optional<Tensor>& padding) {
  Tensor scores = at::bmm(q, keys.transpose(1, 2));
  if (padding)
    scores = scores.masked_fill(*padding, -std::numeric_limits<double>::infinity());
  const Tensor probs = at::softmax(scores, -1, at::kFloat).to(scores.scalar_type());
  return at::bmm(probs, values);
}

// functional.DecoderBlock
struct Block {
  DExTra dextra;
  Sublayer self_attn_norm, encoder_attn_norm, ffn_norm;
  Linear qkv, self_out, q, encoder_out, fc1, fc2;
  double self_scaling, encoder_scaling;
  int64_t heads;
};

// step.DecoderStep's loop over the blocks
struct DecoderBlocks {
  std::vector<Block> blocks;
  int64_t head_dim;

  // x: rows x d_m (embedding + position); kv: the cache's live tensor, rows x
  // steps x blocks x 2 x head_dim; keys / values: per block, sentences x heads
  // x S x width / heads; masks: per block, (sentences x heads) x 1 x S or None
  Tensor forward(Tensor x, int64_t step, const Tensor& kv,
                 const std::vector<Tensor>& enc_keys,
                 const std::vector<Tensor>& enc_values,
                 const std::vector<std::optional<Tensor>>& masks) const {
    TORCH_CHECK(enc_keys.size() == blocks.size() && enc_values.size() == blocks.size() &&
                    masks.size() == blocks.size(),
                "decoder blocks: one encoder key, value and mask entry per block");
    const int64_t rows = x.size(0);
    const int64_t n_sent = enc_keys.at(0).size(0);
    const int64_t dh = head_dim;
    const Tensor kv_all = kv.slice(0, 0, rows);
    for (size_t i = 0; i < blocks.size(); ++i) {
      const Block& b = blocks[i];
      // DExTra, then causal self-attention over the cache
      Tensor residual = x;
      const Tensor qkv = b.qkv(b.dextra(b.self_attn_norm.pre(x)));
      Tensor q = qkv.slice(1, 0, dh) * b.self_scaling;
      kv_all.select(1, step).select(1, i).copy_(qkv.slice(1, dh).view({rows, 2, dh}));
      const Tensor past = kv_all.slice(1, 0, step + 1).select(2, i);
      const Tensor keys = split_heads(past.select(2, 0), b.heads);
      const Tensor values = split_heads(past.select(2, 1), b.heads);
      Tensor h = merge_heads(
          attend_heads(split_heads(q.unsqueeze(1), b.heads), keys, values,
                       std::nullopt),
          b.heads);
      x = b.self_attn_norm.post(b.self_out(h.view({rows, dh})), residual);

      // encoder-decoder attention: the beams of a sentence share its keys
      residual = x;
      q = b.q(b.encoder_attn_norm.pre(x)) * b.encoder_scaling;
      q = split_heads(q.view({n_sent, rows / n_sent, -1}), b.heads);
      h = attend_heads(q, enc_keys[i].flatten(0, 1), enc_values[i].flatten(0, 1),
                       masks.at(i));
      h = merge_heads(h, b.heads);
      x = b.encoder_attn_norm.post(b.encoder_out(h.reshape({rows, -1})), residual);

      // the light FFN, its swish in place
      Tensor hidden = b.fc1(b.ffn_norm.pre(x));
      x = b.ffn_norm.post(b.fc2(at::silu_(hidden)), x);
    }
    return x;
  }
};

}  // namespace

void register_decoder_step(pybind11::module& m) {
  namespace py = pybind11;
  py::class_<Linear>(m, "NativeLinear")
      .def_static(
          "torch",
          [](Tensor weight, std::optional<Tensor> bias) {
            return Linear{Linear::TORCH, weight, bias};
          },
          py::arg("weight"), py::arg("bias"))
      .def_static(
          "onednn",
          [](Tensor weight, std::optional<Tensor> bias, Tensor layout,
             int64_t row_step, int64_t max_rows) {
            return Linear{Linear::ONEDNN, weight, bias, layout, row_step, max_rows};
          },
          py::arg("weight"), py::arg("bias"), py::arg("layout"), py::arg("row_step"),
          py::arg("max_rows"))
      .def_static(
          "int8",
          [](const torch::jit::Object& packed, bool reduce_range) {
            Linear out{Linear::INT8};
            out.packed = c10::IValue(packed._ivalue());
            out.reduce_range = reduce_range;
            return out;
          },
          py::arg("packed"), py::arg("reduce_range"))
      .def_static(
          "dequant",
          [](Tensor q, Tensor scale, std::optional<Tensor> bias) {
            Linear out{Linear::DEQUANT, q, bias};
            out.scale = scale;
            return out;
          },
          py::arg("q"), py::arg("scale"), py::arg("bias"));
  py::class_<LinearNormAct>(m, "NativeLinearNormAct")
      .def(py::init<Linear, Tensor, Tensor, Tensor>(), py::arg("linear"),
           py::arg("bias"), py::arg("norm_weight"), py::arg("norm_bias"));
  py::class_<GroupLinear>(m, "NativeGroupLinear")
      .def(py::init([](int64_t groups, std::optional<Tensor> weight, Tensor bias,
                       Tensor norm_weight, Tensor norm_bias, bool shuffle,
                       const std::vector<torch::jit::Object>& packed,
                       bool reduce_range, int64_t min_int8_rows,
                       std::optional<Tensor> q, std::optional<Tensor> scale) {
             std::vector<c10::IValue> values;
             for (const auto& p : packed) values.emplace_back(p._ivalue());
             return GroupLinear{groups,  weight, bias,          norm_weight,
                                norm_bias, shuffle, values, reduce_range,
                                min_int8_rows, q, scale};
           }),
           py::arg("groups"), py::arg("weight"), py::arg("bias"),
           py::arg("norm_weight"), py::arg("norm_bias"), py::arg("shuffle"),
           py::arg("packed"), py::arg("reduce_range"), py::arg("min_int8_rows"),
           py::arg("q"), py::arg("scale"));
  py::class_<DExTra>(m, "NativeDExTra")
      .def(py::init<LinearNormAct, std::vector<GroupLinear>, LinearNormAct, int64_t>(),
           py::arg("input_layer"), py::arg("glts"), py::arg("output_layer"),
           py::arg("proj"));
  py::class_<Sublayer>(m, "NativeSublayer")
      .def(py::init<int64_t, Tensor, Tensor, double, bool>(), py::arg("dim"),
           py::arg("weight"), py::arg("bias"), py::arg("eps"), py::arg("before"));
  py::class_<Block>(m, "NativeBlock")
      .def(py::init<DExTra, Sublayer, Sublayer, Sublayer, Linear, Linear, Linear,
                    Linear, Linear, Linear, double, double, int64_t>(),
           py::arg("dextra"), py::arg("self_attn_norm"), py::arg("encoder_attn_norm"),
           py::arg("ffn_norm"), py::arg("qkv"), py::arg("self_out"), py::arg("q"),
           py::arg("encoder_out"), py::arg("fc1"), py::arg("fc2"),
           py::arg("self_scaling"), py::arg("encoder_scaling"), py::arg("heads"));
  py::class_<DecoderBlocks>(m, "NativeDecoderBlocks")
      .def(py::init<std::vector<Block>, int64_t>(), py::arg("blocks"),
           py::arg("head_dim"))
      .def("forward", &DecoderBlocks::forward,
           py::call_guard<py::gil_scoped_release>(),
           "one step of every block: rows x d_m -> rows x d_m, writing the "
           "step's keys and values into the cache");
}
