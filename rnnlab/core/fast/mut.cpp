// Jozefowicz, Zaremba & Sutskever (2015)'s MUT1, MUT2 and MUT3 (rnnlab/mut.py is the reference).
//
//   MUT1: z = sigmoid(x_z)               r = sigmoid(x_r + A_r),  A = LN(W_r h_{t-1}) + b_r
//         n = tanh(C + tanh(x_n))
//   MUT2: [z r] = sigmoid([x_z x_r] + A),  A = LN(W_zr h_{t-1}) + b_zr   (one GEMM, one norm)
//         n = tanh(C + x_n)
//   MUT3: z = sigmoid(x_z + B),  B = LN(W_z tanh(h_{t-1})) + b_z
//         r = sigmoid(x_r + A),  A = LN(W_r h_{t-1}) + b_r
//         n = tanh(C + x_n)
//   all:  C = LN(W_n (r * h_{t-1})) + b_n,  h_t = h_{t-1} + z (n - h_{t-1})
//
// weight_hh stacks the recurrent groups in order (MUT1: r | n; MUT2: z r | n; MUT3: z | r | n)
// and g_hh concatenates their layer-norm gains in the same order: the "gate groups" feed z and
// r, the last block (the candidate's) reads r * h_{t-1}.
//
// Saved for backward: seq (states), gates (T, N, 3H) = z, r, n; rh = r * h_{t-1}; extra =
// tanh(x_n) (MUT1) or tanh(h_{t-1}) (MUT3); with layer norm xhat and rstd of every group.
#include "kernels.h"

namespace rnnlab_fast {
namespace {

// Where each kind's recurrent terms live: gate groups (rows lo..lo+width of weight_hh, reading
// h_{t-1} or tanh(h_{t-1})) and the columns of z, r and n in that row space (zcol < 0: z has
// no recurrent term).
struct Layout {
  int64_t groups;
  int64_t lo[2], width[2];
  bool on_tanh[2];
  int64_t zcol, rcol, ncol, rows;
};

Layout layout_of(int64_t kind, int64_t H) {
  if (kind == kMut1) return {1, {0, 0}, {H, 0}, {false, false}, -1, 0, H, 2 * H};
  if (kind == kMut2) return {1, {0, 0}, {2 * H, 0}, {false, false}, 0, H, 2 * H, 3 * H};
  return {2, {0, H}, {H, H}, {true, false}, 0, H, 2 * H, 3 * H};
}

template <typename T>
void mut_forward_impl(const Params& p, const Tensor& xp, const Tensor& h0, const Tensor& mask,
                      bool save, std::vector<Tensor>& res) {
  const int64_t T_ = xp.size(0), N = xp.size(1), H = h0.size(1), GH = 3 * H;
  const auto opts = xp.options();
  const bool masked = mask.defined(), ln = p.g_hh.defined(), bias = p.b_hh.defined();
  const bool mut1 = p.kind == kMut1, mut3 = p.kind == kMut3;
  const Layout L = layout_of(p.kind, H);
  const bool pingpong = masked && !save;
  const T* zh = ptr_or_null<T>(p.zh);
  const int64_t S = save ? T_ : 1;  // slots of the per-step buffers
  Tensor out = at::empty({T_, N, H}, opts);
  Tensor seq = masked ? buffer({pingpong ? 2 : T_, N, H}, opts) : out;
  Tensor gates = buffer({S, N, GH}, opts);
  Tensor rh = buffer({S, N, H}, opts);
  Tensor extra = mut1 || mut3 ? buffer({S, N, H}, opts) : Tensor();
  // Per group: weight rows, bias, gain, the step's buffer, saved xhat and rstd. Index 2 = n.
  Tensor W[3], B[3], G[3], R[3], xhat[3], rstd[3];
  const int64_t lo[3] = {L.lo[0], L.lo[1], L.ncol}, width[3] = {L.width[0], L.width[1], H};
  for (int64_t k = 0; k < 3; ++k) {
    if (k == 1 && L.groups < 2) continue;
    W[k] = p.w_hh.narrow(0, lo[k], width[k]);
    if (bias) B[k] = p.b_hh.narrow(0, lo[k], width[k]);
    if (ln) G[k] = p.g_hh.narrow(0, lo[k], width[k]);
    R[k] = at::empty({N, width[k]}, opts);
    if (save && ln) {
      xhat[k] = buffer({T_, N, width[k]}, opts);
      rstd[k] = at::empty({T_, N}, opts);
    }
  }
  auto norm = [&](int64_t k, int64_t t, double eps) {
    if (!ln) return;
    ln_rows_forward<T>(R[k], G[k], B[k], eps,
                       save ? xhat[k].data_ptr<T>() + t * N * width[k] : nullptr,
                       save ? rstd[k].data_ptr<T>() + t * N : nullptr);
  };
  // The recurrent term of column col of the gate groups: its group's buffer and row stride.
  auto term = [&](int64_t col, int64_t& stride) -> const T* {
    if (col < 0) return nullptr;
    const int64_t k = L.groups == 2 && col >= L.lo[1] ? 1 : 0;
    stride = width[k];
    return R[k].data_ptr<T>() + (col - lo[k]);
  };
  const uint8_t* mk = masked ? mask.data_ptr<uint8_t>() : nullptr;

  for (int64_t t = 0; t < T_; ++t) {
    const int64_t s = save ? t : 0;
    const Tensor h_prev = t == 0 ? h0 : seq.select(0, pingpong ? (t - 1) % 2 : t - 1);
    const T* hp = h_prev.data_ptr<T>();
    if (mut3) {  // z's group reads tanh(h_{t-1})
      T* th = extra.data_ptr<T>() + s * N * H;
      for_rows(N, H, [&](int64_t n) {
        const T* hpn = hp + n * H;
        T* thn = th + n * H;
        vloop<T>(H, [&](int64_t j, int64_t c) { st(tanh_(ld(hpn, j, c)), thn, j, c); });
      });
    }
    for (int64_t k = 0; k < L.groups; ++k) {
      recurrent_gemm(R[k], L.on_tanh[k] ? extra.select(0, s) : h_prev, W[k], B[k], !ln);
      norm(k, t, p.eps_hh);
    }
    int64_t zs = 0, rs = 0;
    const T *az = term(L.zcol, zs), *ar = term(L.rcol, rs);
    const T* x = xp.data_ptr<T>() + t * N * GH;
    T* gt = gates.data_ptr<T>() + s * N * GH;
    T* rht = rh.data_ptr<T>() + s * N * H;
    for_rows(N, GH, [&](int64_t n) {
      const T *xn = x + n * GH, *hpn = hp + n * H, *azn = az ? az + n * zs : nullptr;
      const T* arn = ar + n * rs;
      T *gn = gt + n * GH, *rhn = rht + n * H;
      vloop<T>(H, [&](int64_t j, int64_t c) {
        Vec<T> pz = ld(xn, j, c);
        if (azn) pz = pz + ld(azn, j, c);
        const Vec<T> r = sigmoid(ld(xn + H, j, c) + ld(arn, j, c));
        st(sigmoid(pz), gn, j, c);
        st(r, gn + H, j, c);
        st(r * ld(hpn, j, c), rhn, j, c);
      });
    });
    recurrent_gemm(R[2], rh.select(0, s), W[2], B[2], !ln);
    norm(2, t, p.eps_hn);
    const T* cr = R[2].data_ptr<T>();
    T* hs = seq.data_ptr<T>() + (pingpong ? t % 2 : t) * N * H;
    T* o = out.data_ptr<T>() + t * N * H;
    T* tx = mut1 ? extra.data_ptr<T>() + s * N * H : nullptr;
    for_rows(N, GH, [&](int64_t n) {
      const T *xn = x + n * GH, *hpn = hp + n * H, *crn = cr + n * H;
      T *hn = hs + n * H, *on = o + n * H, *gn = gt + n * GH;
      if (masked && !mk[t * N + n]) {
        std::copy(hpn, hpn + H, hn);
        std::fill(on, on + H, T(0));
        return;
      }
      vloop<T>(H, [&](int64_t j, int64_t c) {
        Vec<T> a = ld(xn + 2 * H, j, c);
        if (mut1) {
          a = tanh_(a);
          st(a, tx + n * H, j, c);
        }
        const Vec<T> nn = tanh_(a + ld(crn, j, c)), hv = ld(hpn, j, c);
        st(nn, gn + 2 * H, j, c);
        st(hv + ld(gn, j, c) * (nn - hv), hn, j, c);
      });
      if (zh) zone_row<T>(hn, hpn, zh + (t * N + n) * H, H, nullptr);
      if (masked) std::copy(hn, hn + H, on);
    });
  }
  Tensor hT = seq[pingpong ? (T_ - 1) % 2 : T_ - 1].clone();
  res = {out, hT, seq, gates, rh, extra, xhat[0], rstd[0], xhat[1], rstd[1], xhat[2], rstd[2]};
}

template <typename T>
void mut_backward_impl(const Params& p, const std::vector<Tensor>& saved, const Tensor& h0,
                       const Tensor& grad_out, const Tensor& grad_h, const Tensor& mask,
                       std::vector<Tensor>& res) {
  const Tensor &seq = saved[0], &gates = saved[1], &rh = saved[2], &extra = saved[3];
  const Tensor xhat[3] = {saved[4], saved[6], saved[8]}, rstd[3] = {saved[5], saved[7], saved[9]};
  const int64_t T_ = seq.size(0), N = seq.size(1), H = seq.size(2), GH = 3 * H;
  const auto opts = seq.options();
  const bool masked = mask.defined(), ln = p.g_hh.defined(), bias = p.b_hh.defined();
  const bool mut1 = p.kind == kMut1, mut3 = p.kind == kMut3;
  const Layout L = layout_of(p.kind, H);
  const int64_t M = L.rows;
  const int64_t lo[3] = {L.lo[0], L.lo[1], L.ncol}, width[3] = {L.width[0], L.width[1], H};
  Tensor dxp = at::empty({T_, N, GH}, opts);
  // Gradients of the recurrent terms (after layer norm, then in place before it), in the row
  // space of weight_hh, for a ring of a few steps; one weight-gradient GEMM per group per chunk.
  const int64_t K = chunk_steps(true, N, T_);
  Tensor dR = buffer({K, N, M}, opts);
  Tensor dW = at::zeros({M, H}, opts);
  Tensor dbias = bias && !ln ? at::zeros({M}, opts) : Tensor();
  Tensor dg = partials(ln, M, opts), db = partials(ln && bias, M, opts);
  Tensor dh = grad_h.defined() ? grad_h.clone() : at::zeros({N, H}, opts);
  Tensor dprev = at::empty({N, H}, opts), drh = at::empty({N, H}, opts);
  Tensor dth = mut3 ? at::empty({N, H}, opts) : Tensor();
  const T* zh = ptr_or_null<T>(p.zh);
  Tensor dcand = zh ? at::empty({N, H}, opts) : Tensor();  // scratch: the step's share of dh_t
  Tensor Wn = p.w_hh.narrow(0, L.ncol, H);
  Tensor Wg[2];  // the gate groups' rows of weight_hh
  for (int64_t k = 0; k < L.groups; ++k) Wg[k] = p.w_hh.narrow(0, lo[k], width[k]);
  const uint8_t* mk = masked ? mask.data_ptr<uint8_t>() : nullptr;
  const Vec<T> one(T(1));
  auto valid = [&](int64_t t, int64_t n) { return !masked || mk[t * N + n]; };
  // In place: the gradient after group k's norm -> before it (accumulating gain and bias).
  auto norm_back = [&](int64_t k, int64_t t, int64_t n, T* drn) {
    T* d = drn + lo[k];
    ln_row_backward<T>(d, xhat[k].data_ptr<T>() + (t * N + n) * width[k],
                       rstd[k].data_ptr<T>()[t * N + n], width[k], p.g_hh.data_ptr<T>() + lo[k],
                       mine<T>(dg) + lo[k], db.defined() ? mine<T>(db) + lo[k] : nullptr, d);
  };

  for (int64_t e = T_; e > 0;) {
    const int64_t s = std::max<int64_t>(0, e - K);
    for (int64_t t = e - 1; t >= s; --t) {
      const T* hp = t == 0 ? h0.data_ptr<T>() : seq.data_ptr<T>() + (t - 1) * N * H;
      const T* go = grad_out.defined() ? grad_out.data_ptr<T>() + t * N * H : nullptr;
      const T* gt = gates.data_ptr<T>() + t * N * GH;
      const T* ex = extra.defined() ? extra.data_ptr<T>() + t * N * H : nullptr;
      const T* dc = dh.data_ptr<T>();
      T* dpv = dprev.data_ptr<T>();
      T* da = dxp.data_ptr<T>() + t * N * GH;
      T* dr = dR.data_ptr<T>() + (t - s) * N * M;
      // h_t = h + z (n - h): to z, the candidate and h_{t-1} directly.
      for_rows(N, GH, [&](int64_t n) {
        T *dan = da + n * GH, *drn = dr + n * M, *dpn = dpv + n * H;
        const T* dcn = dc + n * H;
        if (!valid(t, n)) {  // frozen step: the gradient passes straight through
          std::fill(dan, dan + GH, T(0));
          std::fill(drn, drn + M, T(0));
          std::copy(dcn, dcn + H, dpn);
          return;
        }
        const T *gon = go ? go + n * H : nullptr, *hpn = hp + n * H, *gn = gt + n * GH;
        const T* exn = ex ? ex + n * H : nullptr;
        const T* kn = zh ? zh + (t * N + n) * H : nullptr;
        if (kn) {  // the step's share (1 - k) dh_t, in place of dh_t and the output's gradient
          zone_split<T>(dcn, gon, kn, H, dcand.data_ptr<T>() + n * H);
          dcn = dcand.data_ptr<T>() + n * H;
          gon = nullptr;
        }
        vloop<T>(H, [&](int64_t j, int64_t c) {
          Vec<T> g = ld(dcn, j, c);
          if (gon) g = g + ld(gon, j, c);
          const Vec<T> z = ld(gn, j, c), nn = ld(gn + 2 * H, j, c);
          const Vec<T> daz = g * (nn - ld(hpn, j, c)) * z * (one - z);
          const Vec<T> dan_n = g * z * (one - nn * nn);
          st(daz, dan, j, c);
          if (L.zcol >= 0) st(daz, drn + L.zcol, j, c);
          st(dan_n, drn + L.ncol, j, c);
          if (mut1) {
            const Vec<T> tx = ld(exn, j, c);
            st(dan_n * (one - tx * tx), dan + 2 * H, j, c);
          } else {
            st(dan_n, dan + 2 * H, j, c);
          }
          st(g * (one - z), dpn, j, c);
        });
        if (kn) zone_carry<T>(dc + n * H, go ? go + n * H : nullptr, kn, H, dpn);
        if (ln) norm_back(2, t, n, drn);
      });
      // Through the candidate's GEMM to r * h_{t-1}, then to r and h_{t-1}.
      Tensor dR_t = dR.select(0, t - s);
      at::mm_out(drh, dR_t.narrow(1, L.ncol, H), Wn);
      const T* d_rh = drh.data_ptr<T>();
      for_rows(N, GH, [&](int64_t n) {
        if (!valid(t, n)) return;
        const T *hpn = hp + n * H, *gn = gt + n * GH, *drhn = d_rh + n * H;
        T *dan = da + n * GH, *drn = dr + n * M, *dpn = dpv + n * H;
        vloop<T>(H, [&](int64_t j, int64_t c) {
          const Vec<T> r = ld(gn + H, j, c), d = ld(drhn, j, c);
          const Vec<T> dar = d * ld(hpn, j, c) * r * (one - r);
          st(dar, dan + H, j, c);
          st(dar, drn + L.rcol, j, c);
          st(ld(dpn, j, c) + d * r, dpn, j, c);
        });
        if (ln) {
          for (int64_t k = 0; k < L.groups; ++k) norm_back(k, t, n, drn);
        }
      });
      // Through the gate groups' GEMMs to h_{t-1} (MUT3's z group: via tanh(h_{t-1})).
      for (int64_t k = 0; k < L.groups; ++k) {
        if (!L.on_tanh[k]) {
          dprev.addmm_(dR_t.narrow(1, lo[k], width[k]), Wg[k]);
          continue;
        }
        at::mm_out(dth, dR_t.narrow(1, lo[k], width[k]), Wg[k]);
        const T* dt = dth.data_ptr<T>();
        for_rows(N, H, [&](int64_t n) {
          if (!valid(t, n)) return;
          const T *dtn = dt + n * H, *thn = ex + n * H;
          T* dpn = dpv + n * H;
          vloop<T>(H, [&](int64_t j, int64_t c) {
            const Vec<T> th = ld(thn, j, c);
            st(ld(dpn, j, c) + ld(dtn, j, c) * (one - th * th), dpn, j, c);
          });
        });
      }
      std::swap(dh, dprev);
    }
    const Tensor chunk = dR.narrow(0, 0, e - s);
    for (int64_t k = 0; k < L.groups; ++k) {
      Tensor dWk = dW.narrow(0, lo[k], width[k]);
      const Tensor part = chunk.narrow(2, lo[k], width[k]);
      if (L.on_tanh[k]) {
        dWk.addmm_(part.reshape({-1, width[k]}).t(), extra.narrow(0, s, e - s).reshape({-1, H}));
      } else {
        add_weight_grad(dWk, part, s, h0, seq);
      }
    }
    Tensor dWn = dW.narrow(0, L.ncol, H);
    dWn.addmm_(chunk.narrow(2, L.ncol, H).reshape({-1, H}).t(),
               rh.narrow(0, s, e - s).reshape({-1, H}));
    if (dbias.defined()) dbias += sum_tn(chunk);
    e = s;
  }
  res = {dxp, dh, dW, ln ? reduce(db) : dbias, reduce(dg)};
}

}  // namespace

RNNLAB_H_STATE_ENTRY_POINTS(mut)

}  // namespace rnnlab_fast
