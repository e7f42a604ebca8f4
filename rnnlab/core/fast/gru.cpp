// GRU, reset after the recurrent GEMM (torch.nn / cuDNN) or before it (Cho et al. 2014).
//
//   after:  R = LN(W_hh h_{t-1}) + b_hh                        (one GEMM, blocks r, z, n)
//           r = sigmoid(x_r + R_r), z = sigmoid(x_z + R_z), n = tanh(x_n + r * R_n)
//   before: R1 = LN1(W_rz h_{t-1}) + b_rz,  r, z as above    (first GEMM)
//           R2 = LN2(W_n (r * h_{t-1})) + b_n,  n = tanh(x_n + R2)  (second GEMM)
//   both:   h_t = n + z (h_{t-1} - n)
//
// Saved for backward: seq (states), gates (T, N, 3H) = r, z, n; aux (T, N, H) = R_n (after) or
// r * h_{t-1} (before); and for layer norm xhat and rstd of each normalised block.
#include "kernels.h"

namespace rnnlab_fast {
namespace {

template <typename T>
void gru_forward_impl(const Params& p, const Tensor& xp, const Tensor& h0, const Tensor& mask,
                      bool save, std::vector<Tensor>& res) {
  const int64_t T_ = xp.size(0), N = xp.size(1), H = h0.size(1), GH = 3 * H;
  const auto opts = xp.options();
  const bool masked = mask.defined(), ln = p.g_hh.defined(), before = p.kind == kGruBefore;
  const bool pingpong = masked && !save;
  const T* zh = ptr_or_null<T>(p.zh);
  const int64_t S = save ? T_ : 1;  // slots of the per-step buffers
  Tensor out = at::empty({T_, N, H}, opts);
  Tensor seq = masked ? buffer({pingpong ? 2 : T_, N, H}, opts) : out;
  Tensor gates = buffer({S, N, GH}, opts);
  Tensor aux = buffer({S, N, H}, opts);
  const int64_t W1 = before ? 2 * H : GH;  // width of the first normalised block
  Tensor xhat1 = save && ln ? buffer({T_, N, W1}, opts) : Tensor();
  Tensor rstd1 = save && ln ? at::empty({T_, N}, opts) : Tensor();
  Tensor xhat2 = save && ln && before ? buffer({T_, N, H}, opts) : Tensor();
  Tensor rstd2 = save && ln && before ? at::empty({T_, N}, opts) : Tensor();
  Tensor w1 = before ? p.w_hh.narrow(0, 0, 2 * H) : p.w_hh;
  Tensor w2 = before ? p.w_hh.narrow(0, 2 * H, H) : Tensor();
  Tensor b1 = p.b_hh.defined() && before ? p.b_hh.narrow(0, 0, 2 * H).contiguous() : p.b_hh;
  Tensor b2 = p.b_hh.defined() && before ? p.b_hh.narrow(0, 2 * H, H).contiguous() : Tensor();
  Tensor R1 = at::empty({N, W1}, opts);
  Tensor R2 = before ? at::empty({N, H}, opts) : Tensor();
  const uint8_t* mk = masked ? mask.data_ptr<uint8_t>() : nullptr;
  const Vec<T> one(T(1));
  auto valid = [&](int64_t t, int64_t n) { return !masked || mk[t * N + n]; };

  for (int64_t t = 0; t < T_; ++t) {
    const int64_t s = save ? t : 0;
    const Tensor h_prev = t == 0 ? h0 : seq.select(0, pingpong ? (t - 1) % 2 : t - 1);
    recurrent_gemm(R1, h_prev, w1, b1, !ln);
    if (ln) {
      ln_rows_forward<T>(R1, p.g_hh, b1, p.eps_hh,
                         save ? xhat1.data_ptr<T>() + t * N * W1 : nullptr,
                         save ? rstd1.data_ptr<T>() + t * N : nullptr);
    }
    const T* x = xp.data_ptr<T>() + t * N * GH;
    const T* r1 = R1.data_ptr<T>();
    const T* hp = h_prev.data_ptr<T>();
    T* hs = seq.data_ptr<T>() + (pingpong ? t % 2 : t) * N * H;
    T* o = out.data_ptr<T>() + t * N * H;
    T* gt = gates.data_ptr<T>() + s * N * GH;
    T* ax = aux.data_ptr<T>() + s * N * H;
    if (before) {
      // r, z, and the reset state r * h_{t-1} that the second GEMM reads.
      for_rows(N, GH, [&](int64_t n) {
        const T *xn = x + n * GH, *rn = r1 + n * W1, *hpn = hp + n * H;
        T *gn = gt + n * GH, *an = ax + n * H;
        vloop<T>(H, [&](int64_t j, int64_t c) {
          const Vec<T> r = sigmoid(ld(xn, j, c) + ld(rn, j, c));
          st(r, gn, j, c);
          st(sigmoid(ld(xn + H, j, c) + ld(rn + H, j, c)), gn + H, j, c);
          st(r * ld(hpn, j, c), an, j, c);
        });
      });
      Tensor rh = aux.select(0, s);
      recurrent_gemm(R2, rh, w2, b2, !ln);
      if (ln) {
        ln_rows_forward<T>(R2, p.g_hn, b2, p.eps_hn,
                           save ? xhat2.data_ptr<T>() + t * N * H : nullptr,
                           save ? rstd2.data_ptr<T>() + t * N : nullptr);
      }
    }
    const T* r2 = before ? R2.data_ptr<T>() : nullptr;
    for_rows(N, GH, [&](int64_t n) {
      const T *xn = x + n * GH, *hpn = hp + n * H;
      T *hn = hs + n * H, *on = o + n * H, *gn = gt + n * GH, *an = ax + n * H;
      if (!valid(t, n)) {
        std::copy(hpn, hpn + H, hn);
        std::fill(on, on + H, T(0));
        return;
      }
      if (before) {
        const T* rn = r2 + n * H;
        vloop<T>(H, [&](int64_t j, int64_t c) {
          const Vec<T> z = ld(gn + H, j, c);
          const Vec<T> nn = tanh_(ld(xn + 2 * H, j, c) + ld(rn, j, c));
          st(nn, gn + 2 * H, j, c);
          st(nn + z * (ld(hpn, j, c) - nn), hn, j, c);
        });
      } else {
        const T* rn = r1 + n * GH;
        vloop<T>(H, [&](int64_t j, int64_t c) {
          const Vec<T> r = sigmoid(ld(xn, j, c) + ld(rn, j, c));
          const Vec<T> z = sigmoid(ld(xn + H, j, c) + ld(rn + H, j, c));
          const Vec<T> rhn = ld(rn + 2 * H, j, c);
          const Vec<T> nn = tanh_(ld(xn + 2 * H, j, c) + r * rhn);
          st(r, gn, j, c);
          st(z, gn + H, j, c);
          st(nn, gn + 2 * H, j, c);
          st(rhn, an, j, c);
          st(nn + z * (ld(hpn, j, c) - nn), hn, j, c);
        });
      }
      if (zh) zone_row<T>(hn, hpn, zh + (t * N + n) * H, H, nullptr);
      if (masked) std::copy(hn, hn + H, on);
    });
  }
  Tensor hT = seq[pingpong ? (T_ - 1) % 2 : T_ - 1].clone();
  res = {out, hT, seq, gates, aux, xhat1, rstd1, xhat2, rstd2};
}

template <typename T>
void gru_backward_impl(const Params& p, const std::vector<Tensor>& saved, const Tensor& h0,
                       const Tensor& grad_out, const Tensor& grad_h, const Tensor& mask,
                       std::vector<Tensor>& res) {
  const Tensor &seq = saved[0], &gates = saved[1], &aux = saved[2];
  const Tensor &xhat1 = saved[3], &rstd1 = saved[4], &xhat2 = saved[5], &rstd2 = saved[6];
  const int64_t T_ = seq.size(0), N = seq.size(1), H = seq.size(2), GH = 3 * H;
  const auto opts = seq.options();
  const bool masked = mask.defined(), ln = p.g_hh.defined(), before = p.kind == kGruBefore;
  const int64_t W1 = before ? 2 * H : GH;
  Tensor dxp = at::empty({T_, N, GH}, opts);
  // Gradient of the recurrent pre-activations (what the GEMMs see). Reset-before without layer
  // norm: dxp itself. Otherwise (reset-after scales the n block by r) a ring of a few steps.
  const bool ring = !before || ln;
  const int64_t K = chunk_steps(ring, N, T_);
  Tensor dR = ring ? buffer({K, N, GH}, opts) : dxp;
  Tensor dW = at::zeros({GH, H}, opts);
  Tensor dbias = p.b_hh.defined() && !ln ? at::zeros({GH}, opts) : Tensor();
  Tensor dg1 = partials(ln, W1, opts), dg2 = partials(ln && before, H, opts);
  Tensor db = partials(ln && p.b_hh.defined(), GH, opts);
  Tensor w1 = before ? p.w_hh.narrow(0, 0, 2 * H) : p.w_hh;
  Tensor w2 = before ? p.w_hh.narrow(0, 2 * H, H) : Tensor();
  Tensor dh = grad_h.defined() ? grad_h.clone() : at::zeros({N, H}, opts);
  Tensor dprev = at::empty({N, H}, opts);
  Tensor drh = before ? at::empty({N, H}, opts) : Tensor();
  const T* zh = ptr_or_null<T>(p.zh);
  Tensor dcand = zh ? at::empty({N, H}, opts) : Tensor();  // scratch: the step's share of dh_t
  const uint8_t* mk = masked ? mask.data_ptr<uint8_t>() : nullptr;
  const Vec<T> one(T(1));
  auto valid = [&](int64_t t, int64_t n) { return !masked || mk[t * N + n]; };

  for (int64_t e = T_; e > 0;) {
    const int64_t s = std::max<int64_t>(0, e - K), base = ring ? s : 0;
    for (int64_t t = e - 1; t >= s; --t) {
      const T* hp = t == 0 ? h0.data_ptr<T>() : seq.data_ptr<T>() + (t - 1) * N * H;
      const T* go = grad_out.defined() ? grad_out.data_ptr<T>() + t * N * H : nullptr;
      const T* gt = gates.data_ptr<T>() + t * N * GH;
      const T* ax = aux.data_ptr<T>() + t * N * H;
      const T* dc = dh.data_ptr<T>();
      T* dpv = dprev.data_ptr<T>();
      T* da = dxp.data_ptr<T>() + t * N * GH;
      T* dr = dR.data_ptr<T>() + (t - base) * N * GH;
      for_rows(N, GH, [&](int64_t n) {
        T *dan = da + n * GH, *drn = dr + n * GH, *dpn = dpv + n * H;
        const T* dcn = dc + n * H;
        if (!valid(t, n)) {  // frozen step: the gradient passes straight through
          std::fill(dan, dan + GH, T(0));
          std::fill(drn, drn + GH, T(0));
          std::copy(dcn, dcn + H, dpn);
          return;
        }
        const T *gon = go ? go + n * H : nullptr, *hpn = hp + n * H, *gn = gt + n * GH;
        const T* an = ax + n * H;
        const T* kn = zh ? zh + (t * N + n) * H : nullptr;
        if (kn) {  // the step's share (1 - k) dh_t, in place of dh_t and the output's gradient
          zone_split<T>(dcn, gon, kn, H, dcand.data_ptr<T>() + n * H);
          dcn = dcand.data_ptr<T>() + n * H;
          gon = nullptr;
        }
        vloop<T>(H, [&](int64_t j, int64_t c) {
          Vec<T> g = ld(dcn, j, c);
          if (gon) g = g + ld(gon, j, c);
          const Vec<T> z = ld(gn + H, j, c), nn = ld(gn + 2 * H, j, c);
          const Vec<T> dan_n = g * (one - z) * (one - nn * nn);
          st(g * (ld(hpn, j, c) - nn) * z * (one - z), dan + H, j, c);
          st(dan_n, dan + 2 * H, j, c);
          st(g * z, dpn, j, c);
          if (before) {
            st(dan_n, drn + 2 * H, j, c);
          } else {
            const Vec<T> r = ld(gn, j, c);
            const Vec<T> dar = dan_n * ld(an, j, c) * r * (one - r);
            st(dar, dan, j, c);
            st(dar, drn, j, c);
            st(ld(dan + H, j, c), drn + H, j, c);
            st(dan_n * r, drn + 2 * H, j, c);
          }
        });
        if (kn) zone_carry<T>(dc + n * H, go ? go + n * H : nullptr, kn, H, dpn);
        if (ln && before) {
          ln_row_backward<T>(drn + 2 * H, xhat2.data_ptr<T>() + (t * N + n) * H,
                             rstd2.data_ptr<T>()[t * N + n], H, p.g_hn.data_ptr<T>(), mine<T>(dg2),
                             db.defined() ? mine<T>(db) + 2 * H : nullptr, drn + 2 * H);
        } else if (ln) {
          ln_row_backward<T>(drn, xhat1.data_ptr<T>() + (t * N + n) * GH,
                             rstd1.data_ptr<T>()[t * N + n], GH, p.g_hh.data_ptr<T>(), mine<T>(dg1),
                             mine<T>(db), drn);
        }
      });
      Tensor dR_t = dR.select(0, t - base);
      if (before) {
        // Through the second GEMM to the reset state r * h_{t-1}, then to r and h_{t-1}.
        at::mm_out(drh, dR_t.narrow(1, 2 * H, H), w2);
        const T* d_rh = drh.data_ptr<T>();
        for_rows(N, GH, [&](int64_t n) {
          if (!valid(t, n)) return;
          const T *hpn = hp + n * H, *gn = gt + n * GH, *drhn = d_rh + n * H;
          T *dan = da + n * GH, *drn = dr + n * GH, *dpn = dpv + n * H;
          vloop<T>(H, [&](int64_t j, int64_t c) {
            const Vec<T> r = ld(gn, j, c), d = ld(drhn, j, c);
            const Vec<T> dar = d * ld(hpn, j, c) * r * (one - r);
            st(dar, dan, j, c);
            if (ln) {
              st(dar, drn, j, c);
              st(ld(dan + H, j, c), drn + H, j, c);
            }
            st(ld(dpn, j, c) + d * r, dpn, j, c);
          });
          if (ln) {
            ln_row_backward<T>(drn, xhat1.data_ptr<T>() + (t * N + n) * W1,
                               rstd1.data_ptr<T>()[t * N + n], W1, p.g_hh.data_ptr<T>(),
                               mine<T>(dg1), mine<T>(db), drn);
          }
        });
        dprev.addmm_(dR_t.narrow(1, 0, 2 * H), w1);
      } else {
        dprev.addmm_(dR_t, p.w_hh);
      }
      std::swap(dh, dprev);
    }
    const Tensor chunk = dR.narrow(0, s - base, e - s);
    if (before) {
      Tensor dW1 = dW.narrow(0, 0, 2 * H), dW2 = dW.narrow(0, 2 * H, H);
      add_weight_grad(dW1, chunk.narrow(2, 0, 2 * H), s, h0, seq);
      dW2.addmm_(chunk.narrow(2, 2 * H, H).reshape({-1, H}).t(),
                 aux.narrow(0, s, e - s).reshape({-1, H}));
    } else {
      add_weight_grad(dW, chunk, s, h0, seq);
    }
    if (dbias.defined()) dbias += sum_tn(chunk);
    e = s;
  }
  res = {dxp, dh, dW, ln ? reduce(db) : dbias, reduce(dg1), reduce(dg2)};
}

}  // namespace

RNNLAB_H_STATE_ENTRY_POINTS(gru)

}  // namespace rnnlab_fast
