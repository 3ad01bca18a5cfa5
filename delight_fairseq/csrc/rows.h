// What the CPU kernels share: how rows are split among threads, and an exp
// that the compiler vectorizes.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace {

// Rows per task: small inputs (decoding steps, tiny batches) stay on one
// thread, as ATen's own kernels do (GRAIN_SIZE elements per task). Opening an
// OpenMP region for a few hundred values costs more than the work, and far
// more when processes share the cores (CPU data-parallel training).
inline int64_t row_grain(int64_t row_size) {
  return std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(row_size, 1));
}

// exp for float that GCC vectorizes (glibc's expf is a scalar call): Cody-Waite
// range reduction x = n ln2 + r, |r| <= ln2 / 2, and Cephes' degree-7
// polynomial for e^r, relative error about 2e-7; the double version (used by
// the float64 tests) is std::exp.
inline float vexp(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  const float n = std::nearbyint(x * 1.44269504088896341f);
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}
inline double vexp(double x) { return std::exp(x); }

}  // namespace
