// Sparse-aware SAE products as XLA FFI custom calls on CPU (see sparse_ffi.py for why).
//
// Every array is float32 and row-major, with one leading "sweep" axis S (1 = shared by all
// members of a vmapped sweep):
//   decode       f (S,B,M), W (S,M,d)          -> out (S,B,d)  = f W over f's non-zeros
//   masked_dot   f (S,B,M), g (S,B,d), W (S,M,d) -> out (S,B,M) = g W^T where f != 0, else 0
//   outer        a (S,B,M), g (S,B,d)          -> out (S,M,d)  = a^T g over a's non-zeros
//   outer_t      a (S,B,M), g (S,B,d)          -> out (S,d,M)  = (a^T g)^T
//   kth_largest  z (..., M), attribute k       -> out (..., 1) = the k-th largest of each row
// Work is split with OpenMP over tokens (decode, masked_dot) or over blocks of latents
// (outer), so no two threads write the same output row.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include <omp.h>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kLatentBlock = 64;  // latents whose output rows one task accumulates

// (lead..., rows, cols) -> (prod(lead), rows, cols)
void Split(ffi::Buffer<ffi::F32>& a, int64_t* lead, int64_t* rows, int64_t* cols) {
  auto dims = a.dimensions();
  int64_t n = dims.size();
  *lead = 1;
  for (int64_t i = 0; i + 2 < n; ++i) *lead *= dims[i];
  *rows = n >= 2 ? dims[n - 2] : 1;
  *cols = n >= 1 ? dims[n - 1] : 1;
}

inline int64_t Member(int64_t s, int64_t lead) { return lead == 1 ? 0 : s; }

ffi::Error CheckLead(int64_t lead, int64_t S, const char* name) {
  if (lead != 1 && lead != S) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      std::string("sparse_ffi: the sweep axis of ") + name +
                          " is neither 1 nor the sweep size");
  }
  return ffi::Error::Success();
}

ffi::Error DecodeImpl(ffi::Buffer<ffi::F32> f, ffi::Buffer<ffi::F32> W,
                      ffi::ResultBuffer<ffi::F32> out) {
  int64_t Sf, B, M, SW, M2, d;
  Split(f, &Sf, &B, &M);
  Split(W, &SW, &M2, &d);
  int64_t S = std::max(Sf, SW);
  if (M != M2) return ffi::Error(ffi::ErrorCode::kInvalidArgument, "decode: f and W disagree on M");
  if (auto e = CheckLead(Sf, S, "f"); e.failure()) return e;
  if (auto e = CheckLead(SW, S, "W"); e.failure()) return e;
  const float* fp = f.typed_data();
  const float* Wp = W.typed_data();
  float* op = out->typed_data();
#pragma omp parallel for schedule(static)
  for (int64_t sb = 0; sb < S * B; ++sb) {
    int64_t s = sb / B, b = sb % B;
    const float* row = fp + (Member(s, Sf) * B + b) * M;
    const float* Ws = Wp + Member(s, SW) * M * d;
    float* o = op + (s * B + b) * d;
    std::fill(o, o + d, 0.0f);
    for (int64_t j = 0; j < M; ++j) {
      float v = row[j];
      if (v != 0.0f) {
        const float* w = Ws + j * d;
#pragma omp simd
        for (int64_t t = 0; t < d; ++t) o[t] += v * w[t];
      }
    }
  }
  return ffi::Error::Success();
}

ffi::Error MaskedDotImpl(ffi::Buffer<ffi::F32> f, ffi::Buffer<ffi::F32> g,
                         ffi::Buffer<ffi::F32> W, ffi::ResultBuffer<ffi::F32> out) {
  int64_t Sf, B, M, Sg, B2, d, SW, M2, d2;
  Split(f, &Sf, &B, &M);
  Split(g, &Sg, &B2, &d);
  Split(W, &SW, &M2, &d2);
  int64_t S = std::max({Sf, Sg, SW});
  if (B != B2 || M != M2 || d != d2)
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "masked_dot: shapes disagree");
  if (auto e = CheckLead(Sf, S, "f"); e.failure()) return e;
  if (auto e = CheckLead(Sg, S, "g"); e.failure()) return e;
  if (auto e = CheckLead(SW, S, "W"); e.failure()) return e;
  const float* fp = f.typed_data();
  const float* gp = g.typed_data();
  const float* Wp = W.typed_data();
  float* op = out->typed_data();
#pragma omp parallel for schedule(static)
  for (int64_t sb = 0; sb < S * B; ++sb) {
    int64_t s = sb / B, b = sb % B;
    const float* row = fp + (Member(s, Sf) * B + b) * M;
    const float* gb = gp + (Member(s, Sg) * B + b) * d;
    const float* Ws = Wp + Member(s, SW) * M * d;
    float* o = op + (s * B + b) * M;
    for (int64_t j = 0; j < M; ++j) {
      float acc = 0.0f;
      if (row[j] != 0.0f) {
        const float* w = Ws + j * d;
#pragma omp simd reduction(+ : acc)
        for (int64_t t = 0; t < d; ++t) acc += gb[t] * w[t];
      }
      o[j] = acc;
    }
  }
  return ffi::Error::Success();
}

// out[s, j, :] (or out[s, :, j]) = sum_b a[s, b, j] g[s, b, :] over a's non-zeros. Each task
// owns a block of latents: it scans the tokens' codes for that block (a short contiguous read
// per token) and accumulates into a block-local buffer that stays in cache.
ffi::Error OuterCommon(ffi::Buffer<ffi::F32>& a, ffi::Buffer<ffi::F32>& g, float* op,
                       bool transpose) {
  int64_t Sa, B, M, Sg, B2, d;
  Split(a, &Sa, &B, &M);
  Split(g, &Sg, &B2, &d);
  int64_t S = std::max(Sa, Sg);
  if (B != B2) return ffi::Error(ffi::ErrorCode::kInvalidArgument, "outer: a and g disagree on B");
  if (auto e = CheckLead(Sa, S, "a"); e.failure()) return e;
  if (auto e = CheckLead(Sg, S, "g"); e.failure()) return e;
  const float* ap = a.typed_data();
  const float* gp = g.typed_data();
  int64_t blocks = (M + kLatentBlock - 1) / kLatentBlock;
#pragma omp parallel
  {
    std::vector<float> buf(kLatentBlock * d);
#pragma omp for schedule(dynamic, 1)
    for (int64_t sk = 0; sk < S * blocks; ++sk) {
      int64_t s = sk / blocks, j0 = (sk % blocks) * kLatentBlock;
      int64_t nj = std::min(kLatentBlock, M - j0);
      const float* as = ap + Member(s, Sa) * B * M;
      const float* gs = gp + Member(s, Sg) * B * d;
      std::fill(buf.begin(), buf.begin() + nj * d, 0.0f);
      for (int64_t b = 0; b < B; ++b) {
        const float* arow = as + b * M + j0;
        const float* gb = gs + b * d;
        for (int64_t jj = 0; jj < nj; ++jj) {
          float v = arow[jj];
          if (v != 0.0f) {
            float* o = buf.data() + jj * d;
#pragma omp simd
            for (int64_t t = 0; t < d; ++t) o[t] += v * gb[t];
          }
        }
      }
      if (transpose) {
        float* os = op + s * d * M;
        for (int64_t t = 0; t < d; ++t)
          for (int64_t jj = 0; jj < nj; ++jj) os[t * M + j0 + jj] = buf[jj * d + t];
      } else {
        std::memcpy(op + (s * M + j0) * d, buf.data(), sizeof(float) * nj * d);
      }
    }
  }
  return ffi::Error::Success();
}

ffi::Error OuterImpl(ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> g,
                     ffi::ResultBuffer<ffi::F32> out) {
  return OuterCommon(a, g, out->typed_data(), false);
}

ffi::Error OuterTImpl(ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> g,
                      ffi::ResultBuffer<ffi::F32> out) {
  return OuterCommon(a, g, out->typed_data(), true);
}

// out[r] = the k-th largest entry of row r of z (R, M): a partition (nth_element), not a sort.
ffi::Error KthLargestImpl(ffi::Buffer<ffi::F32> z, ffi::ResultBuffer<ffi::F32> out, int64_t k) {
  int64_t R, rows, M;
  Split(z, &R, &rows, &M);
  rows *= R;
  if (k < 1 || k > M)
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "kth_largest: k outside [1, M]");
  const float* zp = z.typed_data();
  float* op = out->typed_data();
#pragma omp parallel
  {
    std::vector<float> buf(M);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      std::copy(zp + r * M, zp + (r + 1) * M, buf.begin());
      std::nth_element(buf.begin(), buf.begin() + (M - k), buf.end());
      op[r] = buf[M - k];
    }
  }
  return ffi::Error::Success();
}

}  // namespace

extern "C" int sae_sparse_num_threads() { return omp_get_max_threads(); }

XLA_FFI_DEFINE_HANDLER_SYMBOL(SaeDecode, DecodeImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(SaeMaskedDot, MaskedDotImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(SaeOuter, OuterImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(SaeKthLargest, KthLargestImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("k"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(SaeOuterT, OuterTImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
