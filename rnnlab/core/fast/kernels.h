// rnnlab's fast path: the whole time loop of every cell in C++, forward and backward.
//
// Per step: one GEMM for the recurrent side of all gates (at::addmm, into a preallocated
// buffer), then one fused pointwise pass per row written with ATen's vector types (Sleef exp
// and tanh), saving what the hand-derived backward needs. Backward through time: per step one
// fused pointwise pass and one GEMM for dh_{t-1}; the weight gradient is one GEMM over all steps
// after the loop (dW_hh = sum_t dR_t^T h_{t-1}), as cuDNN does. The input projection (and its
// layer norm) stays outside, in autograd: it is one GEMM over all steps already.
//
// Layouts (all contiguous): xp (T, N, G*H) the projected inputs; states (N, H); weight_hh
// (G*H, H); mask (T, N) uint8, 1 inside a sequence. An LSTM with projections has h (N, P),
// c (N, H), weight_hh (G*H, P) and w_hr (P, H). Past a sequence's end the state is frozen
// and the output is zero, exactly as rnnlab.layers.scan does.
//
// Zoneout (Krueger et al. 2017; rnnlab/core/zoneout.py): with blend weights zh (T, N, P) (and
// the LSTM's zc (T, N, H)) each step's own result s~_t is blended with the previous state,
// s_t = z s_{t-1} + (1 - z) s~_t, after the step and before the length mask; backward, the
// gradient of s_t splits into (1 - z) ds_t for s~_t and z ds_t for s_{t-1}. Without weights
// every kernel runs exactly as before (one test of a pointer per row).
//
// The readable reference is rnnlab/cells.py; tests/test_fast.py checks every kernel against it.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <vector>

// The cell kinds (enum Kind : int64_t { kElmanTanh = 0, ... }): generated at build time from
// rnnlab.core.kernels.Kernel, the one definition, by rnnlab/core/fast/_build.py.
#include "kinds.h"

namespace rnnlab_fast {

using at::Tensor;
using OptTensor = std::optional<Tensor>;
template <typename T>
using Vec = at::vec::Vectorized<T>;

// Everything a cell's step reads besides xp and the state; absent tensors are undefined.
struct Params {
  int64_t kind;
  Tensor w_hh;  // (G*H, H)
  Tensor b_hh;  // (G*H,)
  Tensor g_hh;  // layer-norm gain of the recurrent pre-activations (G*H,), or (2H,) GRU-before;
                // MUT1-3: the gains of all recurrent groups, concatenated
  Tensor g_hn;  // GRU-before: gain of the candidate's recurrent pre-activation (H,)
  Tensor p_i, p_f, p_o;  // LSTM peepholes (H,)
  Tensor g_c, b_c;       // LSTM layer norm on c_t (H,)
  Tensor w_hr;           // LSTM projection (P, H): h_t = W_hr m_t; w_hh is then (G*H, P)
  double eps_hh, eps_hn, eps_c;
  Tensor zh, zc;  // zoneout's blend weights of h (T, N, P) and of the LSTM's c (T, N, H)
};

inline Tensor value_or_undefined(const OptTensor& t) {
  return t.has_value() ? t->contiguous() : Tensor();
}

template <typename T>
inline T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

// A vector loop over [0, n): f(j, count) with count = the lanes valid at j (a tail is partial).
template <typename T, typename F>
inline void vloop(int64_t n, const F& f) {
  constexpr int64_t W = Vec<T>::size();
  for (int64_t j = 0; j < n; j += W) f(j, std::min<int64_t>(W, n - j));
}

template <typename T>
inline Vec<T> ld(const T* p, int64_t j, int64_t c) {
  return Vec<T>::loadu(p + j, c);
}

template <typename T>
inline void st(const Vec<T>& v, T* p, int64_t j, int64_t c) {
  v.store(p + j, static_cast<int>(c));
}

template <typename T>
inline Vec<T> sigmoid(const Vec<T>& x) {
  const Vec<T> one(T(1));
  return one / (one + x.neg().exp());
}

// tanh(x) = 2 sigmoid(2x) - 1: one exp and one division instead of Sleef's tanh (2.5x as fast
// here); its error is a unit in the last place of 1, absolute, below what any test resolves.
template <typename T>
inline Vec<T> tanh_(const Vec<T>& x) {
  const Vec<T> one(T(1)), two(T(2));
  return two / (one + (x * Vec<T>(T(-2))).exp()) - one;
}

template <typename T>
inline T hsum(const Vec<T>& v) {
  T buf[Vec<T>::size()];
  v.store(buf);
  T s = 0;
  for (int64_t k = 0; k < Vec<T>::size(); ++k) s += buf[k];
  return s;
}

// Sum of x over one row (zero lanes past the tail do not count).
template <typename T>
inline T row_sum(const T* x, int64_t n) {
  Vec<T> acc(T(0));
  vloop<T>(n, [&](int64_t j, int64_t c) { acc = acc + ld(x, j, c); });
  return hsum(acc);
}

// Layer norm of one row in place: x <- (x - mean) * rstd * gain + bias, keeping xhat.
// Writes xhat and the mean (if not null) and returns rstd. Two-pass variance, biased, as
// torch.nn.LayerNorm.
template <typename T>
inline T ln_row_forward(T* x, int64_t n, const T* gain, const T* bias, double eps, T* xhat,
                        T* mean_out = nullptr) {
  const T mean = row_sum(x, n) / T(n);
  if (mean_out) *mean_out = mean;
  const Vec<T> vm(mean);
  Vec<T> acc(T(0));
  vloop<T>(n, [&](int64_t j, int64_t c) {
    Vec<T> d = ld(x, j, c) - vm;
    if (c < Vec<T>::size()) d = Vec<T>::set(Vec<T>(T(0)), d, c);
    acc = acc + d * d;
  });
  const T rstd = T(1) / std::sqrt(hsum(acc) / T(n) + T(eps));
  const Vec<T> vr(rstd);
  vloop<T>(n, [&](int64_t j, int64_t c) {
    Vec<T> xh = (ld(x, j, c) - vm) * vr;
    if (xhat) st(xh, xhat, j, c);
    Vec<T> y = xh * ld(gain, j, c);
    if (bias) y = y + ld(bias, j, c);
    st(y, x, j, c);
  });
  return rstd;
}

// Backward of ln_row_forward for one row: dy (gradient of the normalised output) -> dx,
// accumulating dgain += dy * xhat and dbias += dy. dx may alias dy.
template <typename T>
inline void ln_row_backward(const T* dy, const T* xhat, T rstd, int64_t n, const T* gain, T* dgain,
                            T* dbias, T* dx) {
  Vec<T> s1(T(0)), s2(T(0));
  vloop<T>(n, [&](int64_t j, int64_t c) {
    const Vec<T> g = ld(dy, j, c);
    const Vec<T> xh = ld(xhat, j, c);
    const Vec<T> d = g * ld(gain, j, c);
    s1 = s1 + d;
    s2 = s2 + d * xh;
    st(ld(dgain, j, c) + g * xh, dgain, j, c);
    if (dbias) st(ld(dbias, j, c) + g, dbias, j, c);
  });
  const Vec<T> m1(hsum(s1) / T(n)), m2(hsum(s2) / T(n)), vr(rstd);
  vloop<T>(n, [&](int64_t j, int64_t c) {
    const Vec<T> d = ld(dy, j, c) * ld(gain, j, c);
    st(vr * (d - m1 - ld(xhat, j, c) * m2), dx, j, c);
  });
}

// Zoneout on one row of a step: s <- k s_prev + (1 - k) s, the step's own result s~ first
// copied to `cand` where the backward needs it (else cand is null). In this form a weight of
// exactly 0 leaves s~ and exactly 1 gives s_prev, bit for bit.
template <typename T>
inline void zone_row(T* s, const T* prev, const T* k, int64_t n, T* cand) {
  const Vec<T> one(T(1));
  vloop<T>(n, [&](int64_t j, int64_t c) {
    const Vec<T> v = ld(s, j, c), kv = ld(k, j, c);
    if (cand) st(v, cand, j, c);
    st(kv * ld(prev, j, c) + (one - kv) * v, s, j, c);
  });
}

// Zoneout's backward, the step's share: cand <- (1 - k) g, with g = d (+ go) the gradient of
// the zoned s_t (go, the output's gradient, may be null).
template <typename T>
inline void zone_split(const T* d, const T* go, const T* k, int64_t n, T* cand) {
  const Vec<T> one(T(1));
  vloop<T>(n, [&](int64_t j, int64_t c) {
    Vec<T> g = ld(d, j, c);
    if (go) g = g + ld(go, j, c);
    st((one - ld(k, j, c)) * g, cand, j, c);
  });
}

// Zoneout's backward, the previous state's share: prev += k g (g as in zone_split).
template <typename T>
inline void zone_carry(const T* d, const T* go, const T* k, int64_t n, T* prev) {
  vloop<T>(n, [&](int64_t j, int64_t c) {
    Vec<T> g = ld(d, j, c);
    if (go) g = g + ld(go, j, c);
    st(ld(prev, j, c) + ld(k, j, c) * g, prev, j, c);
  });
}

// The rows of a step are independent: split them over threads when the step has enough work
// (below about kParallelWork elements a fork-join costs more than it saves).
constexpr int64_t kParallelWork = 4096;

template <typename F>
inline void for_rows(int64_t N, int64_t width, const F& f) {
  const int64_t grain = std::max<int64_t>(1, kParallelWork / std::max<int64_t>(width, 1));
  at::parallel_for(0, N, grain, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) f(n);
  });
}

// Per-thread partial sums of a gradient accumulated over rows (threads, M), or undefined.
inline Tensor partials(bool needed, int64_t M, const at::TensorOptions& opts) {
  return needed ? at::zeros({at::get_num_threads(), M}, opts) : Tensor();
}

template <typename T>
inline T* mine(const Tensor& partial) {
  if (!partial.defined()) return nullptr;
  const int64_t tid = at::get_thread_num();
  TORCH_CHECK(tid < partial.size(0), "rnnlab_fast: thread ", tid, " has no partial sum");
  return partial.data_ptr<T>() + tid * partial.size(1);
}

inline Tensor reduce(const Tensor& partial) {
  return partial.defined() ? partial.sum(0) : Tensor();
}

// R <- h W^T (+ b, unless layer norm follows: then the bias is added after the norm).
inline void recurrent_gemm(Tensor& out, const Tensor& h, const Tensor& w, const Tensor& b,
                           bool bias_now) {
  if (bias_now && b.defined()) {
    at::addmm_out(out, b, h, w.t());
  } else {
    at::mm_out(out, h, w.t());
  }
}

// Recurrent-side layer norm on the rows of R (N, M): R <- LN(R) * g + b, saving xhat and rstd.
template <typename T>
inline void ln_rows_forward(Tensor& R, const Tensor& gain, const Tensor& bias, double eps, T* xhat,
                            T* rstd) {
  const int64_t N = R.size(0), M = R.size(1);
  T* r = R.data_ptr<T>();
  const T* g = gain.data_ptr<T>();
  const T* b = ptr_or_null<T>(bias);
  for_rows(N, M, [&](int64_t n) {
    const T s = ln_row_forward(r + n * M, M, g, b, eps, xhat ? xhat + n * M : nullptr);
    if (rstd) rstd[n] = s;
  });
}

// Sum over the first two dimensions (T, N, M) -> (M,).
inline Tensor sum_tn(const Tensor& x) { return x.sum(at::IntArrayRef{0, 1}); }

// Backward through time walks the steps in chunks [s, e), last chunk first. The gradient of the
// recurrent pre-activations dR of a chunk feeds one weight-gradient GEMM at the chunk's end
// (dW_hh += sum_t dR_t^T h_{t-1}, as cuDNN does after the whole loop). Where dR is its own
// buffer (layer norm, GRU) it lives in a ring of about kChunkRows rows instead of (T, N, G*H):
// same GEMM efficiency, a fraction of the memory.
constexpr int64_t kChunkRows = 512;

inline int64_t chunk_steps(bool ring, int64_t N, int64_t T) {
  return ring ? std::min<int64_t>(T, std::max<int64_t>(1, (kChunkRows + N - 1) / N)) : T;
}

// dW += sum over steps t in [s, s + k) of A_t^T B_t, where A (k, N, M) holds those steps and
// B_t is the state before step t: h0 for t = 0, else seq[t - 1]. At most two GEMMs.
inline void add_weight_grad(Tensor& dW, const Tensor& A, int64_t s, const Tensor& h0,
                            const Tensor& seq) {
  const int64_t k = A.size(0), M = A.size(2), H = h0.size(1);
  int64_t first = 0;
  if (s == 0) {
    dW.addmm_(A.select(0, 0).t(), h0);
    first = 1;
  }
  if (k > first) {
    Tensor a = A.narrow(0, first, k - first).reshape({-1, M});
    Tensor b = seq.narrow(0, s + first - 1, k - first).reshape({-1, H});
    dW.addmm_(a.t(), b);
  }
}

// The float and double entry points of a cell family whose state is h alone (simple, GRU,
// MUT): FAMILY_forward / FAMILY_backward call the family's templates FAMILY_forward_impl<T> /
// FAMILY_backward_impl<T>, which fill `res`.
#define RNNLAB_H_STATE_ENTRY_POINTS(family)                                                  \
  std::vector<Tensor> family##_forward(const Params& p, const Tensor& xp, const Tensor& h0, \
                                       const Tensor& mask, bool save) {                     \
    std::vector<Tensor> res;                                                                \
    AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "rnnlab_" #family "_forward", [&] {        \
      family##_forward_impl<scalar_t>(p, xp, h0, mask, save, res);                          \
    });                                                                                     \
    return res;                                                                             \
  }                                                                                         \
  std::vector<Tensor> family##_backward(const Params& p, const std::vector<Tensor>& saved,  \
                                        const Tensor& h0, const Tensor& grad_out,           \
                                        const Tensor& grad_h, const Tensor& mask) {         \
    std::vector<Tensor> res;                                                                \
    AT_DISPATCH_FLOATING_TYPES(saved[0].scalar_type(), "rnnlab_" #family "_backward", [&] { \
      family##_backward_impl<scalar_t>(p, saved, h0, grad_out, grad_h, mask, res);          \
    });                                                                                     \
    return res;                                                                             \
  }

// A large internal buffer (saved for backward or scratch, never handed to the user) from the
// cache of freed buffers (cache.cpp), or at::empty below kCachedBytes or with the cache off.
constexpr size_t kCachedBytes = size_t(256) << 10;
Tensor buffer(at::IntArrayRef sizes, const at::TensorOptions& opts);
int64_t set_buffer_cache_limit(int64_t bytes);
int64_t buffer_cache_bytes();

// The cells' entry points (one file per family).
std::vector<Tensor> simple_forward(const Params& p, const Tensor& xp, const Tensor& h0,
                                   const Tensor& mask, bool save);
std::vector<Tensor> simple_backward(const Params& p, const std::vector<Tensor>& saved,
                                    const Tensor& h0, const Tensor& grad_out, const Tensor& grad_h,
                                    const Tensor& mask);
std::vector<Tensor> gru_forward(const Params& p, const Tensor& xp, const Tensor& h0,
                                const Tensor& mask, bool save);
std::vector<Tensor> gru_backward(const Params& p, const std::vector<Tensor>& saved,
                                 const Tensor& h0, const Tensor& grad_out, const Tensor& grad_h,
                                 const Tensor& mask);
std::vector<Tensor> mut_forward(const Params& p, const Tensor& xp, const Tensor& h0,
                                const Tensor& mask, bool save);
std::vector<Tensor> mut_backward(const Params& p, const std::vector<Tensor>& saved,
                                 const Tensor& h0, const Tensor& grad_out, const Tensor& grad_h,
                                 const Tensor& mask);
std::vector<Tensor> lstm_forward(const Params& p, const Tensor& xp, const Tensor& h0,
                                 const Tensor& c0, const Tensor& mask, bool save);
std::vector<Tensor> lstm_backward(const Params& p, const std::vector<Tensor>& saved,
                                  const Tensor& h0, const Tensor& c0, const Tensor& grad_out,
                                  const Tensor& grad_h, const Tensor& grad_c, const Tensor& mask);

}  // namespace rnnlab_fast
