// The decoding engine's encoder in C++ (CPU): the embedding's DExTra, the
// positions, the blocks and the final LayerNorm of functional.Encoder, after
// the look-up (which the quantized engine does its own way).
//
// The engine encodes each batch once; at beam 1 that is about a quarter of
// its time, in about 40 small ATen operations per block. As the decoder's
// blocks (decoder_blocks.h), EncoderBlocks runs functional.EncoderBlock's
// operations in the same order over the same parts (native_parts.h), so the
// floats are those of the Python loop, without the interpreter between them
// and without holding its lock. The weights are references collected by
// inference/native.py.

#include "native_parts.h"

namespace {

using at::Tensor;
using namespace delight_native;

// functional.EncoderBlock
struct EncoderBlock {
  DExTra dextra;
  Sublayer self_attn_norm, ffn_norm;
  Linear qkv, self_out, fc1, fc2;
  double scaling;
  int64_t heads;

  // x: S x B x d_m; padding: B x S (True at padding) or None
  Tensor operator()(const Tensor& x, const std::optional<Tensor>& padding) const {
    const int64_t length = x.size(0), bsz = x.size(1), d_m = x.size(2);
    const Tensor h = dextra(self_attn_norm.pre(x).reshape({-1, d_m}));
    const std::vector<Tensor> qkv_parts = qkv(h.view({length, bsz, -1})).chunk(3, -1);
    const Tensor q = qkv_parts[0] * scaling;  // S x B x C
    const int64_t depth = q.size(2) / heads;
    const auto by_head = [&](const Tensor& t) {  // S x B x C -> B x heads x S x D
      return t.unflatten(2, {heads, depth}).permute({1, 2, 0, 3});
    };
    // a sentence's S tokens are the queries of its group: B x S x C
    const Tensor attended =
        attend_one(q.unflatten(2, {heads, depth}).transpose(0, 1), by_head(qkv_parts[1]),
                   by_head(qkv_parts[2]), padding, std::nullopt);
    const Tensor y = self_attn_norm.post(self_out(attended.transpose(0, 1)), x);
    Tensor hidden = fc1(ffn_norm.pre(y));  // the light FFN, its swish in place
    return ffn_norm.post(fc2(at::silu_(hidden)), y);
  }
};

// functional.Encoder after the look-up
struct EncoderBlocks {
  DExTra embed_dextra;
  std::vector<EncoderBlock> blocks;
  std::optional<Sublayer> final_norm;  // its norm only

  // embedded: B x S x d (the look-up, scaled); positions: B x S x d_m;
  // padding: B x S (True at padding) or None. Returns S x B x d_m.
  Tensor forward(const Tensor& embedded, const Tensor& positions,
                 const std::optional<Tensor>& padding) const {
    const int64_t bsz = embedded.size(0), length = embedded.size(1);
    Tensor x = embed_dextra(embedded.reshape({bsz * length, embedded.size(2)}));
    x = (x.view({bsz, length, -1}) + positions).transpose(0, 1);
    for (const EncoderBlock& block : blocks) x = block(x, padding);
    return final_norm ? final_norm->norm(x) : x;
  }
};

}  // namespace

void register_encoder_blocks(pybind11::module& m) {
  namespace py = pybind11;
  py::class_<EncoderBlock>(m, "NativeEncoderBlock")
      .def(py::init<DExTra, Sublayer, Sublayer, Linear, Linear, Linear, Linear, double,
                    int64_t>(),
           py::arg("dextra"), py::arg("self_attn_norm"), py::arg("ffn_norm"),
           py::arg("qkv"), py::arg("self_out"), py::arg("fc1"), py::arg("fc2"),
           py::arg("scaling"), py::arg("heads"));
  py::class_<EncoderBlocks>(m, "NativeEncoderBlocks")
      .def(py::init<DExTra, std::vector<EncoderBlock>, std::optional<Sublayer>>(),
           py::arg("embed_dextra"), py::arg("blocks"), py::arg("final_norm"))
      .def("forward", &EncoderBlocks::forward, py::call_guard<py::gil_scoped_release>(),
           "B x S x d looked-up (and scaled) tokens, their positions and padding -> "
           "S x B x d_m");
}
