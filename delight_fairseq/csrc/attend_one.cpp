// Attention in one pass (CPU): the decoding engine's self-attention over its
// key/value cache and its encoder-decoder attention at each step (one query
// per hypothesis), and its encoder's self-attention.
//
// In ATen each is a split of the heads (a copy of every cached key and value,
// since the cache interleaves the blocks and steps), a batched product of
// one-row matrices, a softmax over a short last dimension (a scalar loop in
// ATen, at 10-20 ns a value), a second product and a merge of the heads (a
// copy), and the cache had to be copied in the beams' new order at every
// step. Here one task per (query, head) reads the keys and values where they
// lie, through their strides and, for the cache, a table of the rows the
// beams descend from, and writes its slice of the merged output.
//
// The arithmetic is attention.SingleHeadAttention's in eval mode: scores
// q . k in the tensors' dtype, -inf at padding, a softmax in float32 and the
// weighted sum of the values in the tensors' dtype. The sums run in another
// order than the products of a BLAS, so the floats differ from the ATen path
// in their last bits (tests/test_native_step.py bounds that, and the engine's
// hypotheses equal fairseq's).

#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <vector>

namespace {

using at::Tensor;

// One task per (group, query, head). DEPTH: the head's width where attend_any
// lists it (known to the compiler, so that the loops over it, most of the
// work, unroll and vectorize), else 0 (the width read from q).
template <typename T, int DEPTH>
void attend_range(const Tensor& q, const Tensor& keys, const Tensor& values,
                  const bool* mask, int64_t mask_g, int64_t mask_t,
                  const int64_t* index, int64_t index_g, int64_t index_t,
                  Tensor& out, int64_t begin, int64_t end) {
  const int64_t queries = q.size(1), heads = q.size(2);
  const int64_t depth = DEPTH > 0 ? DEPTH : q.size(3);
  const int64_t length = keys.size(2);
  const T* qp = q.data_ptr<T>();
  const T* kp = keys.data_ptr<T>();
  const T* vp = values.data_ptr<T>();
  T* op = out.data_ptr<T>();
  const int64_t qg = q.stride(0), ql = q.stride(1), qh = q.stride(2);
  const int64_t kg = keys.stride(0), kh = keys.stride(1), kt = keys.stride(2);
  const int64_t vg = values.stride(0), vh = values.stride(1), vt = values.stride(2);
  std::vector<float> probs(length);
  std::vector<T> sums(depth);
  T* __restrict__ acc = sums.data();
  for (int64_t task = begin; task < end; ++task) {
    const int64_t head = task % heads, query = task / heads % queries;
    const int64_t group = task / heads / queries;
    const T* __restrict__ qv = qp + group * qg + query * ql + head * qh;
    const T* __restrict__ k = kp + head * kh;
    const T* __restrict__ v = vp + head * vh;
    const bool* m = mask ? mask + group * mask_g : nullptr;
    const int64_t* rows = index ? index + group * index_g : nullptr;
    // the row of keys and values that position t reads
    const auto row = [&](int64_t t) { return rows ? rows[t * index_t] : group; };
    float top = -std::numeric_limits<float>::infinity();
    for (int64_t t = 0; t < length; ++t) {
      if (m && m[t * mask_t]) {
        probs[t] = -std::numeric_limits<float>::infinity();
        continue;
      }
      const T* __restrict__ kv = k + row(t) * kg + t * kt;
      T score = 0;
      for (int64_t d = 0; d < depth; ++d) score += qv[d] * kv[d];
      probs[t] = static_cast<float>(score);
      top = probs[t] > top ? probs[t] : top;
    }
    float sum = 0;
    for (int64_t t = 0; t < length; ++t) {
      probs[t] = std::exp(probs[t] - top);
      sum += probs[t];
    }
    const float inverse = 1.0f / sum;
    std::fill(acc, acc + depth, T(0));
    for (int64_t t = 0; t < length; ++t) {
      const T p = static_cast<T>(probs[t] * inverse);
      const T* __restrict__ vv = v + row(t) * vg + t * vt;
      for (int64_t d = 0; d < depth; ++d) acc[d] += p * vv[d];
    }
    std::copy(acc, acc + depth, op + task * depth);
  }
}

template <typename T, typename... Args>
void attend_any(const Tensor& q, Args&&... args) {
#define DELIGHT_ATTEND(D) \
  case D:                  \
    return attend_range<T, D>(q, args...);
  switch (q.size(3)) {
    DELIGHT_ATTEND(16)
    DELIGHT_ATTEND(20)
    DELIGHT_ATTEND(32)
    DELIGHT_ATTEND(40)
    DELIGHT_ATTEND(64)
    DELIGHT_ATTEND(80)
    default:
      return attend_range<T, 0>(q, args...);
  }
#undef DELIGHT_ATTEND
}

}  // namespace

// q: G x Q x heads x D (scaled): Q queries per group (a sentence's beams
// share its encoder keys; one query per hypothesis over its own cache; a
// source sentence's tokens over its keys); keys, values: G x heads x S x D,
// any strides but the last; padding: G x S, True at padding, or None; index:
// G x S, the row of keys and values that group g reads at position t (the
// cache's rows where beams moved: step.KeyValueCache), or None (row g; then
// keys and values have G rows, else any number). Returns G x Q x (heads x D),
// the heads side by side.
Tensor attend_one(const Tensor& q, const Tensor& keys, const Tensor& values,
                  const std::optional<Tensor>& padding,
                  const std::optional<Tensor>& index) {
  TORCH_CHECK(q.dim() == 4 && keys.dim() == 4 && values.sizes() == keys.sizes(),
              "attend_one: q G x Q x heads x D, keys and values G x heads x S x D");
  TORCH_CHECK((index || keys.size(0) == q.size(0)) && keys.size(1) == q.size(2) &&
                  keys.size(3) == q.size(3),
              "attend_one: q's groups, heads and depth must be the keys'");
  TORCH_CHECK(q.stride(3) == 1 && keys.stride(3) == 1 && values.stride(3) == 1,
              "attend_one: the last dimension must be contiguous");
  TORCH_CHECK(keys.scalar_type() == q.scalar_type() &&
                  values.scalar_type() == q.scalar_type(),
              "attend_one: q, keys and values of one dtype");
  const bool* mask = nullptr;
  int64_t mask_g = 0, mask_t = 0;
  if (padding) {
    TORCH_CHECK(padding->scalar_type() == at::kBool && padding->dim() == 2 &&
                    padding->size(0) == q.size(0) && padding->size(1) == keys.size(2),
                "attend_one: padding G x S of bool");
    mask = padding->data_ptr<bool>();
    mask_g = padding->stride(0);
    mask_t = padding->stride(1);
  }
  const int64_t* rows = nullptr;
  int64_t index_g = 0, index_t = 0;
  if (index) {
    TORCH_CHECK(index->scalar_type() == at::kLong && index->dim() == 2 &&
                    index->size(0) == q.size(0) && index->size(1) == keys.size(2),
                "attend_one: index G x S of int64");
    if (index->numel()) {
      const auto [low, high] = at::aminmax(*index);
      TORCH_CHECK(low.item<int64_t>() >= 0 && high.item<int64_t>() < keys.size(0),
                  "attend_one: index out of the keys' rows");
    }
    rows = index->data_ptr<int64_t>();
    index_g = index->stride(0);
    index_t = index->stride(1);
  }
  Tensor out = at::empty({q.size(0), q.size(1), q.size(2) * q.size(3)}, q.options());
  const int64_t tasks = q.size(0) * q.size(1) * q.size(2);
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "attend_one", [&] {
    at::parallel_for(0, tasks, 64, [&](int64_t begin, int64_t end) {
      attend_any<scalar_t>(q, keys, values, mask, mask_g, mask_t, rows, index_g,
                           index_t, out, begin, end);
    });
  });
  return out;
}
