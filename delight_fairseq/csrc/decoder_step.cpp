// pybind11 bindings of decoder_blocks.h (the C++ decoder step) and of the
// products and parts of native_parts.h that inference/native.py assembles.

#include "decoder_blocks.h"

using at::Tensor;
using namespace delight_native;

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
  py::class_<Head>(m, "NativeHead")
      .def(py::init<std::optional<Sublayer>, std::optional<Linear>, Linear, int64_t>(),
           py::arg("final_norm"), py::arg("project_out"), py::arg("output"),
           py::arg("rows_at_a_time"));
  py::class_<DecoderBlocks>(m, "NativeDecoderBlocks")
      .def(py::init<std::vector<Block>, int64_t, Head>(),
           py::arg("blocks"), py::arg("head_dim"), py::arg("head"))
      .def("step", &DecoderBlocks::step, py::call_guard<py::gil_scoped_release>(),
           "one step of every block (writing the step's keys and values into the "
           "cache), then the head: rows x V log-probabilities in lprobs");
}
