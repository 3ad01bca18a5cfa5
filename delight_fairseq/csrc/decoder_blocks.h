// The decoding engine's decoder blocks for one step, in C++ (CPU).
//
// inference/step.py's DecoderStep runs a step's blocks as about 30 small
// ATen operations per block; at decoding's row counts the Python between them
// is 5-28 % of the time, and it holds the interpreter lock, so engines in
// threads (pool.py) wait on each other. DecoderBlocks runs the same operations,
// in the same order and on the same kernels (ATen's; oneDNN's inner product
// over the weights matmul.py packed; the int8 products of qlayers.py; this
// extension's GLT tail and attention, attend_one.cpp), so the floats are
// those of the Python loop; only the interpreter leaves. The weights are
// references to the model's tensors (and packed int8 weights), collected once
// per batch by inference/native.py. The parts (products, GLTs, DExTra,
// LayerNorms) are native_parts.h's, shared with encoder_blocks.cpp; the
// bindings are decoder_step.cpp's, and search.cpp runs the whole search over
// these blocks.

#pragma once

#include "native_parts.h"

namespace delight_native {

// functional.DecoderBlock
struct Block {
  DExTra dextra;
  Sublayer self_attn_norm, encoder_attn_norm, ffn_norm;
  Linear qkv, self_out, q, encoder_out, fc1, fc2;
  double self_scaling, encoder_scaling;
  int64_t heads;
};

// what follows the blocks (step.DecoderStep.finish): the final LayerNorm of a
// pre-norm stack, the projection to the table's width, the output layer and
// the float32 log-softmax into the step's reused buffers: in one product into
// ``logits`` (rows_at_a_time 0), or rows_at_a_time rows at a time
struct Head {
  std::optional<Sublayer> final_norm;  // its norm only
  std::optional<Linear> project_out;
  Linear output;
  int64_t rows_at_a_time;

  Tensor operator()(Tensor x, const Tensor& logits, const Tensor& lprobs) const {
    if (final_norm) x = final_norm->norm(x);
    if (project_out) x = (*project_out)(x);
    const int64_t rows = x.size(0);
    TORCH_CHECK(lprobs.size(0) >= rows && (rows_at_a_time || logits.size(0) >= rows),
                "decoder head: the buffers hold fewer rows than the step");
    Tensor out = lprobs.slice(0, 0, rows);
    if (rows_at_a_time == 0) {
      Tensor scores = logits.slice(0, 0, rows);
      if (output.bias)
        at::addmm_out(scores, *output.bias, x, output.weight.t());
      else
        at::mm_out(scores, x, output.weight.t());
      return at::log_softmax_out(out, scores, -1, at::kFloat);
    }
    for (int64_t start = 0; start < rows; start += rows_at_a_time) {
      const int64_t stop = std::min(start + rows_at_a_time, rows);
      Tensor part = out.slice(0, start, stop);
      at::log_softmax_out(part, output(x.slice(0, start, stop)), -1, at::kFloat);
    }
    return out;
  }
};

// step.DecoderStep's loop over the blocks
struct DecoderBlocks {
  std::vector<Block> blocks;
  int64_t head_dim;
  Head head;

  // x: rows x d_m (embedding + position); kv: the cache, rows x steps x
  // blocks x 2 x head_dim, and origin, rows x steps: the cache's row that holds
  // hypothesis r's keys and values of step t (step.KeyValueCache); keys /
  // values: per block, sentences x heads x S x width / heads; padding:
  // sentences x S (True at padding) or None
  Tensor forward(Tensor x, int64_t step, const Tensor& kv, const Tensor& origin,
                 const std::vector<Tensor>& enc_keys,
                 const std::vector<Tensor>& enc_values,
                 const std::optional<Tensor>& padding) const {
    TORCH_CHECK(enc_keys.size() == blocks.size() && enc_values.size() == blocks.size(),
                "decoder blocks: one encoder key and value entry per block");
    const int64_t rows = x.size(0);
    const int64_t dh = head_dim;
    const Tensor past_rows = origin.slice(0, 0, rows).slice(1, 0, step + 1);
    for (size_t i = 0; i < blocks.size(); ++i) {
      const Block& b = blocks[i];
      const int64_t heads = b.heads;
      // DExTra, then causal self-attention over the cache: rows x step + 1
      // keys and values, read in place
      Tensor residual = x;
      const Tensor qkv = b.qkv(b.dextra(b.self_attn_norm.pre(x)));
      Tensor q = qkv.slice(1, 0, dh) * b.self_scaling;
      kv.slice(0, 0, rows).select(1, step).select(1, i).copy_(
          qkv.slice(1, dh).view({rows, 2, dh}));
      const Tensor past = kv.slice(1, 0, step + 1).select(2, i);
      const auto by_head = [&](const Tensor& t) {  // rows x heads x steps x dh/heads
        return t.unflatten(2, {heads, dh / heads}).transpose(1, 2);
      };
      Tensor h = attend_one(q.view({rows, 1, heads, dh / heads}),
                            by_head(past.select(2, 0)), by_head(past.select(2, 1)),
                            std::nullopt, past_rows);
      x = b.self_attn_norm.post(b.self_out(h.view({rows, dh})), residual);

      // encoder-decoder attention: the beams of a sentence share its keys
      residual = x;
      q = b.q(b.encoder_attn_norm.pre(x)) * b.encoder_scaling;
      const int64_t n_sent = enc_keys[i].size(0);
      h = attend_one(q.view({n_sent, rows / n_sent, heads, -1}), enc_keys[i],
                     enc_values[i], padding, std::nullopt);
      x = b.encoder_attn_norm.post(b.encoder_out(h.view({rows, -1})), residual);

      // the light FFN, its swish in place
      Tensor hidden = b.fc1(b.ffn_norm.pre(x));
      x = b.ffn_norm.post(b.fc2(at::silu_(hidden)), x);
    }
    return x;
  }

  // the blocks, then the head: rows x V float32 log-probabilities in lprobs
  Tensor step(const Tensor& x, int64_t step, const Tensor& kv, const Tensor& origin,
              const std::vector<Tensor>& enc_keys, const std::vector<Tensor>& enc_values,
              const std::optional<Tensor>& padding, const Tensor& logits,
              const Tensor& lprobs) const {
    return head(forward(x, step, kv, origin, enc_keys, enc_values, padding), logits,
                lprobs);
  }
};

}  // namespace delight_native
