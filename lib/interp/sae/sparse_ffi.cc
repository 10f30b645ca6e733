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
#include <limits>
#include <vector>

#include <omp.h>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kLatentBlock = 64;  // latents whose output rows one task accumulates

// (lead..., rows, cols) -> (prod(lead), rows, cols)
template <class Buf>
void Split(Buf& a, int64_t* lead, int64_t* rows, int64_t* cols) {
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

// The k-th largest of n floats, exactly as nth_element on the whole row would give it, for
// k << n with a fraction of its work: the entries of a strided sample (every 8th) give a
// threshold t that about 2k + 64 entries of the row pass; those are gathered (one branch-free
// pass) and partitioned. If fewer than k pass (a sample that missed the row's large entries),
// the whole row is partitioned. Exact either way: when >= k entries are >= t, the k-th largest
// is >= t, so it is the k-th largest of the gathered entries. (Issue #16: nth_element over
// each row of 4608 was most of what a top-k step added to a ReLU step.)
class KthSelector {
 public:
  float operator()(const float* row, int64_t n, int64_t k) {  // 1 <= k <= n (callers check)
    constexpr int64_t kStride = 8;
    int64_t n_sample = n / kStride, rank = 2 * k / kStride + 8;
    if (n_sample >= 64 && rank < n_sample && 4 * k < n) {
      sample_.resize(n_sample);
      for (int64_t i = 0; i < n_sample; ++i) sample_[i] = row[i * kStride];
      std::nth_element(sample_.begin(), sample_.begin() + (n_sample - rank), sample_.end());
      float t = sample_[n_sample - rank];
      cand_.resize(n);
      int64_t c = 0;
      for (int64_t j = 0; j < n; ++j) {
        cand_[c] = row[j];
        c += row[j] >= t;
      }
      if (c >= k) {
        std::nth_element(cand_.begin(), cand_.begin() + (c - k), cand_.begin() + c);
        return cand_[c - k];
      }
    }
    cand_.assign(row, row + n);
    std::nth_element(cand_.begin(), cand_.begin() + (n - k), cand_.end());
    return cand_[n - k];
  }

 private:
  std::vector<float> sample_, cand_;
};

// out[r] = the k-th largest entry of row r of z (R, M): a selection (KthSelector), not a sort.
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
    KthSelector kth;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) op[r] = kth(zp + r * M, M, k);
  }
  return ffi::Error::Success();
}

// ---- the fused core of a ReLU or top-k SAE (one pass over the pre-activations forward, one
// over the codes backward; the (batch, latents) arrays XLA would otherwise sweep five or six
// times: bias, activation, sparsity sum, decoder product, firing counts, masks).
//   core_fwd  h (S,B,M), c (S,1,M), W (S,M,d), w (S,1,M), attribute k (0: ReLU, else top-k)
//     -> f (S,B,M) = act(h + c), xh (S,B,d) = f W, sp (S,B,1) = f . w,
//        fire (S,1,M) = number of tokens with f > 0
//   core_bwd  f, g (S,B,d) = dL/dxh, ds (S,B,1) = dL/dsp, df (S,B,M) or a (1,1,1) "none", x (S,B,d),
//             W, w -> dWenc (S,d,M) = x^T dz, dc (S,1,M) = sum_b dz, dW (S,M,d) = f^T g,
//             dw (S,1,M) = sum_b ds f, where dz = g W^T + ds w + df on f's support (f' = 1
//             there, 0 elsewhere: true of ReLU and of top-k)
//   core_dx   f, g, ds, df, W, w, WencT (S,M,d) -> dx (S,B,d) = dz Wenc^T

struct Lead {
  int64_t S = 1;
  bool ok = true;
  void Add(int64_t n) {
    if (n == 1) return;
    if (S == 1) S = n;
    else if (S != n) ok = false;
  }
};

inline float Dot(const float* a, const float* b, int64_t n) {
  float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
  for (int64_t t = 0; t < n; ++t) acc += a[t] * b[t];
  return acc;
}

inline void Axpy(float v, const float* x, float* y, int64_t n) {
#pragma omp simd
  for (int64_t t = 0; t < n; ++t) y[t] += v * x[t];
}

// Calls fn(j) for every j in [0, n) with row[j] != 0. At a realistic density (1-3%) most
// 16-wide chunks are all zero, so a vector test per chunk replaces 16 scalar branches (the scan
// of the codes, not the arithmetic on the active pairs, was the kernels' main cost).
template <class Fn>
inline void ForNonZero(const float* row, int64_t n, Fn&& fn) {
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    int any = 0;
#pragma omp simd reduction(| : any)
    for (int t = 0; t < 16; ++t) any |= (row[j + t] != 0.0f);
    if (any)
      for (int t = 0; t < 16; ++t)
        if (row[j + t] != 0.0f) fn(j + t);
  }
  for (; j < n; ++j)
    if (row[j] != 0.0f) fn(j);
}

ffi::Error CoreFwdImpl(ffi::Buffer<ffi::F32> h, ffi::Buffer<ffi::F32> c, ffi::Buffer<ffi::F32> W,
                       ffi::Buffer<ffi::F32> w, ffi::ResultBuffer<ffi::F32> f_out,
                       ffi::ResultBuffer<ffi::F32> xh_out, ffi::ResultBuffer<ffi::F32> sp_out,
                       ffi::ResultBuffer<ffi::F32> fire_out, int64_t k) {
  int64_t Sh, B, M, Sc, one_c, Mc, SW, MW, d, Sw, one_w, Mw;
  Split(h, &Sh, &B, &M);
  Split(c, &Sc, &one_c, &Mc);
  Split(W, &SW, &MW, &d);
  Split(w, &Sw, &one_w, &Mw);
  Lead lead;
  for (int64_t n : {Sh, Sc, SW, Sw}) lead.Add(n);
  if (!lead.ok || Mc != M || MW != M || Mw != M || one_c != 1 || one_w != 1)
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "core_fwd: shapes disagree");
  if (k < 0 || k > M)
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "core_fwd: k outside [0, M]");
  int64_t S = lead.S;
  const float *hp = h.typed_data(), *cp = c.typed_data(), *Wp = W.typed_data(),
              *wp = w.typed_data();
  float *fp = f_out->typed_data(), *xp = xh_out->typed_data(), *sp = sp_out->typed_data(),
        *firep = fire_out->typed_data();
  std::fill(firep, firep + S * M, 0.0f);
#pragma omp parallel
  {
    std::vector<float> fire(S * M, 0.0f), buf(k > 0 ? M : 0);
    KthSelector kth;
#pragma omp for schedule(static)
    for (int64_t sb = 0; sb < S * B; ++sb) {
      int64_t s = sb / B, b = sb % B;
      const float* hrow = hp + (Member(s, Sh) * B + b) * M;
      const float* cs = cp + Member(s, Sc) * M;
      const float* ws = wp + Member(s, Sw) * M;
      const float* Ws = Wp + Member(s, SW) * M * d;
      float* frow = fp + (s * B + b) * M;
      float* xo = xp + (s * B + b) * d;
      float* fs = fire.data() + s * M;
      float threshold = 0.0f;  // ReLU: keep z > 0
      bool topk = k > 0;
      if (topk) {
        for (int64_t j = 0; j < M; ++j) buf[j] = hrow[j] + cs[j];
        threshold = kth(buf.data(), M, k);
      }
      float keep = topk ? std::max(threshold, 0.0f) : 0.0f;
      bool strict = !topk || threshold <= 0.0f;  // z > 0 (ReLU), else z >= the k-th largest
#pragma omp simd
      for (int64_t j = 0; j < M; ++j) {
        float z = hrow[j] + cs[j];
        frow[j] = (strict ? z > keep : z >= keep) ? z : 0.0f;
      }
      std::fill(xo, xo + d, 0.0f);
      float spars = 0.0f;
      ForNonZero(frow, M, [&](int64_t j) {
        float v = frow[j];
        Axpy(v, Ws + j * d, xo, d);
        spars += v * ws[j];
        fs[j] += 1.0f;
      });
      sp[s * B + b] = spars;
    }
#pragma omp critical
    for (int64_t i = 0; i < S * M; ++i) firep[i] += fire[i];
  }
  return ffi::Error::Success();
}

struct CoreGrad {
  int64_t S, B, M, d, Sf, Sg, Sds, Sdf, Sx, SW, Sw;
  bool has_df;
  const float *f, *g, *ds, *df, *x, *W, *w;
  // dz of the active pair (s, b, j): g_b . W_j + ds_b w_j (+ df_bj)
  inline float Dz(int64_t s, int64_t b, int64_t j) const {
    const float* gb = g + (Member(s, Sg) * B + b) * d;
    const float* Wj = W + (Member(s, SW) * M + j) * d;
    float dz = Dot(gb, Wj, d) + ds[Member(s, Sds) * B + b] * w[Member(s, Sw) * M + j];
    if (has_df) dz += df[(Member(s, Sdf) * B + b) * M + j];
    return dz;
  }
};

ffi::Error ReadCoreGrad(ffi::Buffer<ffi::F32>& f, ffi::Buffer<ffi::F32>& g,
                        ffi::Buffer<ffi::F32>& ds, ffi::Buffer<ffi::F32>& df,
                        ffi::Buffer<ffi::F32>& x, ffi::Buffer<ffi::F32>& W,
                        ffi::Buffer<ffi::F32>& w, CoreGrad* cg) {
  int64_t B2, d2, B3, one, Bdf, Mdf, M2, Mw, one_w, d3, B4;
  Split(f, &cg->Sf, &cg->B, &cg->M);
  Split(g, &cg->Sg, &B2, &cg->d);
  Split(ds, &cg->Sds, &B3, &one);
  Split(df, &cg->Sdf, &Bdf, &Mdf);
  Split(W, &cg->SW, &M2, &d2);
  Split(w, &cg->Sw, &one_w, &Mw);
  Split(x, &cg->Sx, &B4, &d3);
  cg->has_df = !(cg->Sdf == 1 && Bdf == 1 && Mdf == 1 && cg->M * cg->B > 1);
  Lead lead;
  for (int64_t n : {cg->Sf, cg->Sg, cg->Sds, cg->has_df ? cg->Sdf : 1, cg->SW, cg->Sw, cg->Sx})
    lead.Add(n);
  bool df_ok = !cg->has_df || (Bdf == cg->B && Mdf == cg->M);
  if (!lead.ok || B2 != cg->B || B3 != cg->B || one != 1 || M2 != cg->M || d2 != cg->d ||
      Mw != cg->M || one_w != 1 || !df_ok || B4 != cg->B || d3 != cg->d)
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "core gradient: shapes disagree");
  cg->S = lead.S;
  cg->f = f.typed_data();
  cg->g = g.typed_data();
  cg->ds = ds.typed_data();
  cg->df = df.typed_data();
  cg->x = x.typed_data();
  cg->W = W.typed_data();
  cg->w = w.typed_data();
  return ffi::Error::Success();
}

// The active pairs of f (S,B,M) grouped by (member, latent): for each s*M + j, the tokens b
// (ascending) where f[s,b,j] != 0 and those values, in [col_ptr[s*M+j], col_ptr[s*M+j+1]).
struct PairsByLatent {
  std::vector<int64_t> col_ptr;
  std::vector<int32_t> tok;
  std::vector<float> val;
};

void GroupByLatent(const float* f, int64_t Sf, int64_t S, int64_t B, int64_t M,
                   PairsByLatent* out) {
  int64_t R = S * B;
  std::vector<int64_t> row_ptr(R + 1, 0);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    const float* frow = f + (Member(r / B, Sf) * B + r % B) * M;
    int64_t count = 0;
    ForNonZero(frow, M, [&](int64_t) { ++count; });
    row_ptr[r + 1] = count;
  }
  for (int64_t r = 0; r < R; ++r) row_ptr[r + 1] += row_ptr[r];
  int64_t nnz = row_ptr[R];
  std::vector<int32_t> lat(nnz);
  std::vector<float> lat_val(nnz);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    const float* frow = f + (Member(r / B, Sf) * B + r % B) * M;
    int64_t p = row_ptr[r];
    ForNonZero(frow, M, [&](int64_t j) {
      lat[p] = static_cast<int32_t>(j);
      lat_val[p++] = frow[j];
    });
  }
  out->col_ptr.assign(S * M + 1, 0);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t p = row_ptr[r]; p < row_ptr[r + 1]; ++p)
      ++out->col_ptr[(r / B) * M + lat[p] + 1];
  for (int64_t i = 0; i < S * M; ++i) out->col_ptr[i + 1] += out->col_ptr[i];
  std::vector<int64_t> fill(out->col_ptr.begin(), out->col_ptr.end() - 1);
  out->tok.resize(nnz);
  out->val.resize(nnz);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t p = row_ptr[r]; p < row_ptr[r + 1]; ++p) {
      int64_t q = fill[(r / B) * M + lat[p]]++;
      out->tok[q] = static_cast<int32_t>(r % B);
      out->val[q] = lat_val[p];
    }
}

constexpr int64_t kCoreBlock = 16;  // latents per task: their two gradient rows stay in L1/L2

ffi::Error CoreBwdImpl(ffi::Buffer<ffi::F32> f, ffi::Buffer<ffi::F32> g, ffi::Buffer<ffi::F32> ds,
                       ffi::Buffer<ffi::F32> df, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> W,
                       ffi::Buffer<ffi::F32> w, ffi::ResultBuffer<ffi::F32> dWenc_out,
                       ffi::ResultBuffer<ffi::F32> dc_out, ffi::ResultBuffer<ffi::F32> dW_out,
                       ffi::ResultBuffer<ffi::F32> dw_out) {
  CoreGrad cg;
  if (auto e = ReadCoreGrad(f, g, ds, df, x, W, w, &cg); e.failure()) return e;
  int64_t S = cg.S, B = cg.B, M = cg.M, d = cg.d;
  float *dWe = dWenc_out->typed_data(), *dc = dc_out->typed_data(), *dW = dW_out->typed_data(),
        *dw = dw_out->typed_data();
  PairsByLatent pairs;
  GroupByLatent(cg.f, cg.Sf, S, B, M, &pairs);
  int64_t blocks = (M + kCoreBlock - 1) / kCoreBlock;
#pragma omp parallel
  {
    std::vector<float> bufE(kCoreBlock * d);
#pragma omp for schedule(dynamic, 4)
    for (int64_t sk = 0; sk < S * blocks; ++sk) {
      int64_t s = sk / blocks, j0 = (sk % blocks) * kCoreBlock;
      int64_t nj = std::min(kCoreBlock, M - j0);
      for (int64_t jj = 0; jj < nj; ++jj) {
        int64_t j = j0 + jj;
        float* accD = dW + (s * M + j) * d;
        float* accE = bufE.data() + jj * d;
        std::fill(accD, accD + d, 0.0f);
        std::fill(accE, accE + d, 0.0f);
        float c_acc = 0.0f, w_acc = 0.0f;
        for (int64_t p = pairs.col_ptr[s * M + j]; p < pairs.col_ptr[s * M + j + 1]; ++p) {
          int64_t b = pairs.tok[p];
          float v = pairs.val[p];
          float dz = cg.Dz(s, b, j);
          float dsb = cg.ds[Member(s, cg.Sds) * B + b];
          Axpy(v, cg.g + (Member(s, cg.Sg) * B + b) * d, accD, d);
          Axpy(dz, cg.x + (Member(s, cg.Sx) * B + b) * d, accE, d);
          c_acc += dz;
          w_acc += dsb * v;
        }
        dc[s * M + j] = c_acc;
        dw[s * M + j] = w_acc;
      }
      float* es = dWe + s * d * M;
      for (int64_t t = 0; t < d; ++t)
        for (int64_t jj = 0; jj < nj; ++jj) es[t * M + j0 + jj] = bufE[jj * d + t];
    }
  }
  return ffi::Error::Success();
}

ffi::Error CoreDxImpl(ffi::Buffer<ffi::F32> f, ffi::Buffer<ffi::F32> g, ffi::Buffer<ffi::F32> ds,
                      ffi::Buffer<ffi::F32> df, ffi::Buffer<ffi::F32> W, ffi::Buffer<ffi::F32> w,
                      ffi::Buffer<ffi::F32> WencT, ffi::ResultBuffer<ffi::F32> dx_out) {
  CoreGrad cg;
  if (auto e = ReadCoreGrad(f, g, ds, df, g, W, w, &cg); e.failure()) return e;
  int64_t SE, ME, dE;
  Split(WencT, &SE, &ME, &dE);
  int64_t S = cg.S, B = cg.B, M = cg.M, d = cg.d;
  if ((SE != 1 && SE != S) || ME != M || dE != d)
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "core_dx: WencT's shape disagrees");
  const float* Ep = WencT.typed_data();
  float* dx = dx_out->typed_data();
#pragma omp parallel for schedule(static)
  for (int64_t sb = 0; sb < S * B; ++sb) {
    int64_t s = sb / B, b = sb % B;
    const float* frow = cg.f + (Member(s, cg.Sf) * B + b) * M;
    const float* Es = Ep + Member(s, SE) * M * d;
    float* o = dx + (s * B + b) * d;
    std::fill(o, o + d, 0.0f);
    ForNonZero(frow, M, [&](int64_t j) { Axpy(cg.Dz(s, b, j), Es + j * d, o, d); });
  }
  return ffi::Error::Success();
}

// ---- one iteration of non-negative gradient pursuit after the correlation matmul
// (interp.ito.pursuit; Blumensath & Davies 2008), per example row r of R:
//   g (R,M) = D r_t (the correlations), y (R,d), res (R,d) = r_t, idx (R,k) int32,
//   val (R,k), used (R,k) int32 0/1, open (1,M) = 0 or -inf (zero atoms), D (S,M,d) unit rows
//   -> idx, val, used, res after the iteration: add the best atom outside the support if its
//   correlation is > 0 (lowest index among ties), u = g on the support, c = u D_S,
//   eta = <c, r>/<c, c> (or the fixed step), val = max(val + eta u, 0), and the residual
//   y - val D_S (or r - eta c). The (batch, k, d) gathered atoms XLA would materialise are
//   read from D row by row instead.
ffi::Error GpStepImpl(ffi::Buffer<ffi::F32> g, ffi::Buffer<ffi::F32> y, ffi::Buffer<ffi::F32> res,
                      ffi::Buffer<ffi::S32> idx, ffi::Buffer<ffi::F32> val,
                      ffi::Buffer<ffi::S32> used, ffi::Buffer<ffi::F32> open,
                      ffi::Buffer<ffi::F32> D, ffi::ResultBuffer<ffi::S32> idx_out,
                      ffi::ResultBuffer<ffi::F32> val_out, ffi::ResultBuffer<ffi::S32> used_out,
                      ffi::ResultBuffer<ffi::F32> res_out, float fixed_step, int64_t exact_step,
                      int64_t exact_residual, int64_t nonzero_support) {
  // every operand is (lead, rows, cols) with lead 1 (shared) or the vmapped size S
  int64_t Sg, B, M, Sy, By, d, Sr, Br, dr, Si, Bi, k, Sv, Bv, kv, Su, Bu, ku, So, one, Mo, SD,
      MD, dD;
  Split(g, &Sg, &B, &M);
  Split(y, &Sy, &By, &d);
  Split(res, &Sr, &Br, &dr);
  Split(idx, &Si, &Bi, &k);
  Split(val, &Sv, &Bv, &kv);
  Split(used, &Su, &Bu, &ku);
  Split(open, &So, &one, &Mo);
  Split(D, &SD, &MD, &dD);
  Lead lead;
  for (int64_t n : {Sg, Sy, Sr, Si, Sv, Su, So, SD}) lead.Add(n);
  if (!lead.ok || By != B || Br != B || Bi != B || Bv != B || Bu != B || dr != d || dD != d ||
      kv != k || ku != k || one != 1 || Mo != M || MD != M)
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "gp_step: shapes disagree");
  int64_t S = lead.S;
  const float *gp = g.typed_data(), *yp = y.typed_data(), *rp = res.typed_data(),
              *vp = val.typed_data(), *op = open.typed_data(), *Dp = D.typed_data();
  const int32_t *ip = idx.typed_data(), *up = used.typed_data();
  int32_t *io = idx_out->typed_data(), *uo = used_out->typed_data();
  float *vo = val_out->typed_data(), *ro = res_out->typed_data();
#pragma omp parallel
  {
    std::vector<float> buf(M), c(d), u(k);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < S * B; ++r) {
      int64_t s = r / B, b = r % B;
      const float* grow = gp + (Member(s, Sg) * B + b) * M;
      const float* Ds = Dp + Member(s, SD) * M * d;
      const float* os = op + Member(s, So) * M;
      const int32_t* ir = ip + (Member(s, Si) * B + b) * k;
      const int32_t* ur = up + (Member(s, Su) * B + b) * k;
      const float* vr = vp + (Member(s, Sv) * B + b) * k;
      const float* yr = yp + (Member(s, Sy) * B + b) * d;
      const float* rr = rp + (Member(s, Sr) * B + b) * d;
      int32_t* iw = io + r * k;
      int32_t* uw = uo + r * k;
      float* vw = vo + r * k;
      std::copy(ir, ir + k, iw);
      std::copy(ur, ur + k, uw);
      std::copy(vr, vr + k, vw);
      // the best atom outside the support
#pragma omp simd
      for (int64_t j = 0; j < M; ++j) buf[j] = grow[j] + os[j];
      int64_t free_slot = -1;
      for (int64_t s = 0; s < k; ++s) {
        if (uw[s]) buf[iw[s]] = -std::numeric_limits<float>::infinity();
        else if (free_slot < 0) free_slot = s;
      }
      float best = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : best)
      for (int64_t j = 0; j < M; ++j) best = std::max(best, buf[j]);
      if (best > 0.0f && free_slot >= 0) {
        int64_t atom = 0;
        while (buf[atom] != best) ++atom;
        iw[free_slot] = static_cast<int32_t>(atom);
        uw[free_slot] = 1;
      }
      // gradient step on the support with the exact line search
      std::fill(c.begin(), c.end(), 0.0f);
      for (int64_t s = 0; s < k; ++s) {
        u[s] = uw[s] ? grow[iw[s]] : 0.0f;
        if (u[s] != 0.0f) Axpy(u[s], Ds + static_cast<int64_t>(iw[s]) * d, c.data(), d);
      }
      float eta = fixed_step;
      if (exact_step) {
        float cc = Dot(c.data(), c.data(), d), cr = Dot(c.data(), rr, d);
        eta = cc > 0.0f ? cr / cc : 0.0f;
      }
      for (int64_t s = 0; s < k; ++s) {
        float v = std::max(vw[s] + eta * u[s], 0.0f);
        if (nonzero_support && uw[s] && v <= 0.0f) uw[s] = 0;
        vw[s] = uw[s] ? v : 0.0f;
      }
      float* rw = ro + r * d;
      if (exact_residual) {
        std::copy(yr, yr + d, rw);
        for (int64_t s = 0; s < k; ++s)
          if (vw[s] != 0.0f) Axpy(-vw[s], Ds + static_cast<int64_t>(iw[s]) * d, rw, d);
      } else {
#pragma omp simd
        for (int64_t t = 0; t < d; ++t) rw[t] = rr[t] - eta * c[t];
      }
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

XLA_FFI_DEFINE_HANDLER_SYMBOL(SaeCoreFwd, CoreFwdImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("k"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(SaeCoreBwd, CoreBwdImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(SaeCoreDx, CoreDxImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(SaeGpStep, GpStepImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("fixed_step")
                                  .Attr<int64_t>("exact_step")
                                  .Attr<int64_t>("exact_residual")
                                  .Attr<int64_t>("nonzero_support"));
