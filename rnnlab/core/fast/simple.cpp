// One-GEMM cells: Elman (tanh, relu), the additive update and the minimal GRU.
//
//   a_t = xp_t + LN(W_hh h_{t-1}) + b_hh             (LN only with layer_norm)
//   Elman:       h_t = tanh(a_t) or relu(a_t)
//   additive:    h_t = h_{t-1} + tanh(a_t)
//   minimal GRU: u_t = sigmoid(a^u_t), n_t = tanh(a^c_t), h_t = h_{t-1} + u_t (n_t - h_{t-1})
//
// Saved for backward: seq (T, N, H) the state after every step (the output itself when there
// is no mask), act (the additive cell's tanh, the minimal GRU's u and n, the Elman cells' own
// h~_t under zoneout), and for layer norm xhat (T, N, G*H) and rstd (T, N).
#include "kernels.h"

namespace rnnlab_fast {
namespace {

template <typename T>
void simple_forward_impl(const Params& p, const Tensor& xp, const Tensor& h0, const Tensor& mask,
                         bool save, std::vector<Tensor>& res) {
  const int64_t T_ = xp.size(0), N = xp.size(1), H = h0.size(1), GH = xp.size(2);
  const auto opts = xp.options();
  const bool masked = mask.defined(), ln = p.g_hh.defined();
  const int64_t kind = p.kind;
  const bool elman = kind == kElmanTanh || kind == kElmanRelu;
  const T* zh = ptr_or_null<T>(p.zh);
  Tensor out = at::empty({T_, N, H}, opts);
  // Without a mask the states are the outputs; with one, a separate (or ping-pong) buffer.
  const bool pingpong = masked && !save;
  Tensor seq = masked ? buffer({pingpong ? 2 : T_, N, H}, opts) : out;
  // (under zoneout the Elman cells' backward needs their own h~_t, no longer the state)
  const int64_t act_width =
      kind == kAdditive ? H : (kind == kMinimalGru ? 2 * H : (elman && zh && save ? H : 0));
  Tensor act = act_width ? buffer({save ? T_ : 1, N, act_width}, opts) : Tensor();
  Tensor xhat = save && ln ? buffer({T_, N, GH}, opts) : Tensor();
  Tensor rstd = save && ln ? at::empty({T_, N}, opts) : Tensor();
  Tensor R = at::empty({N, GH}, opts);
  const uint8_t* mk = masked ? mask.data_ptr<uint8_t>() : nullptr;
  const Vec<T> zero(T(0)), one(T(1));

  for (int64_t t = 0; t < T_; ++t) {
    const Tensor h_prev = t == 0 ? h0 : seq.select(0, pingpong ? (t - 1) % 2 : t - 1);
    recurrent_gemm(R, h_prev, p.w_hh, p.b_hh, !ln);
    if (ln) {
      ln_rows_forward<T>(R, p.g_hh, p.b_hh, p.eps_hh,
                         save ? xhat.data_ptr<T>() + t * N * GH : nullptr,
                         save ? rstd.data_ptr<T>() + t * N : nullptr);
    }
    const T* x = xp.data_ptr<T>() + t * N * GH;
    const T* r = R.data_ptr<T>();
    const T* hp = h_prev.data_ptr<T>();
    T* hs = seq.data_ptr<T>() + (pingpong ? t % 2 : t) * N * H;
    T* o = out.data_ptr<T>() + t * N * H;
    T* ac = act_width ? act.data_ptr<T>() + (save ? t : 0) * N * act_width : nullptr;
    for_rows(N, GH, [&](int64_t n) {
      const T* xn = x + n * GH;
      const T* rn = r + n * GH;
      const T* hpn = hp + n * H;
      T* hn = hs + n * H;
      T* on = o + n * H;
      if (masked && !mk[t * N + n]) {
        std::copy(hpn, hpn + H, hn);
        std::fill(on, on + H, T(0));
        return;
      }
      if (kind == kElmanTanh || kind == kElmanRelu) {
        vloop<T>(H, [&](int64_t j, int64_t c) {
          const Vec<T> a = ld(xn, j, c) + ld(rn, j, c);
          st(kind == kElmanTanh ? tanh_(a) : at::vec::maximum(a, zero), hn, j, c);
        });
      } else if (kind == kAdditive) {
        T* gn = ac + n * H;
        vloop<T>(H, [&](int64_t j, int64_t c) {
          const Vec<T> g = tanh_(ld(xn, j, c) + ld(rn, j, c));
          st(g, gn, j, c);
          st(ld(hpn, j, c) + g, hn, j, c);
        });
      } else {  // minimal GRU: blocks u, c
        T* un = ac + n * 2 * H;
        vloop<T>(H, [&](int64_t j, int64_t c) {
          const Vec<T> u = sigmoid(ld(xn, j, c) + ld(rn, j, c));
          const Vec<T> cand = tanh_(ld(xn + H, j, c) + ld(rn + H, j, c));
          const Vec<T> h = ld(hpn, j, c);
          st(u, un, j, c);
          st(cand, un + H, j, c);
          st(h + u * (cand - h), hn, j, c);
        });
      }
      if (zh) zone_row<T>(hn, hpn, zh + (t * N + n) * H, H, elman && save ? ac + n * H : nullptr);
      if (masked) std::copy(hn, hn + H, on);
    });
  }
  Tensor hT = seq[pingpong ? (T_ - 1) % 2 : T_ - 1].clone();
  res = {out, hT, seq, act, xhat, rstd};
}

template <typename T>
void simple_backward_impl(const Params& p, const std::vector<Tensor>& saved, const Tensor& h0,
                          const Tensor& grad_out, const Tensor& grad_h, const Tensor& mask,
                          std::vector<Tensor>& res) {
  const Tensor& seq = saved[0];
  const Tensor& act = saved[1];
  const Tensor& xhat = saved[2];
  const Tensor& rstd = saved[3];
  const int64_t T_ = seq.size(0), N = seq.size(1), H = seq.size(2), GH = p.w_hh.size(0);
  const auto opts = seq.options();
  const bool masked = mask.defined(), ln = p.g_hh.defined();
  const int64_t kind = p.kind;
  const bool elman = kind == kElmanTanh || kind == kElmanRelu;
  const T* zh = ptr_or_null<T>(p.zh);
  // Elman cells have no direct path from h_t to h_{t-1}: dh_{t-1} is the GEMM alone.
  const bool direct = !elman || masked || zh;
  Tensor dxp = at::empty({T_, N, GH}, opts);
  // dR: the gradient of the recurrent pre-activations, a ring of a few steps under layer norm
  // (without it dR is dxp itself).
  const int64_t K = chunk_steps(ln, N, T_);
  Tensor dR = ln ? buffer({K, N, GH}, opts) : dxp;
  Tensor dW = at::zeros({GH, H}, opts);
  Tensor dg = partials(ln, GH, opts), db = partials(ln && p.b_hh.defined(), GH, opts);
  Tensor dh = grad_h.defined() ? grad_h.clone() : at::zeros({N, H}, opts);
  Tensor dprev = at::empty({N, H}, opts);
  Tensor dcand = zh ? at::empty({N, H}, opts) : Tensor();  // scratch: the step's share of dh_t
  const uint8_t* mk = masked ? mask.data_ptr<uint8_t>() : nullptr;
  const Vec<T> zero(T(0)), one(T(1));

  for (int64_t e = T_; e > 0;) {
    const int64_t s = std::max<int64_t>(0, e - K), base = ln ? s : 0;
    for (int64_t t = e - 1; t >= s; --t) {
      const T* hp = t == 0 ? h0.data_ptr<T>() : seq.data_ptr<T>() + (t - 1) * N * H;
      const T* hs = seq.data_ptr<T>() + t * N * H;
      const T* go = grad_out.defined() ? grad_out.data_ptr<T>() + t * N * H : nullptr;
      const T* ac = act.defined() ? act.data_ptr<T>() + t * N * act.size(2) : nullptr;
      T* dc = dh.data_ptr<T>();
      T* dpv = dprev.data_ptr<T>();
      T* da = dxp.data_ptr<T>() + t * N * GH;
      T* dr = dR.data_ptr<T>() + (t - base) * N * GH;
      for_rows(N, GH, [&](int64_t n) {
        T* dan = da + n * GH;
        const T* dcn = dc + n * H;
        T* dpn = dpv + n * H;
        if (masked && !mk[t * N + n]) {  // frozen step: the gradient passes straight through
          std::fill(dan, dan + GH, T(0));
          if (ln) std::fill(dr + n * GH, dr + (n + 1) * GH, T(0));
          std::copy(dcn, dcn + H, dpn);
          return;
        }
        const T* gon = go ? go + n * H : nullptr;
        const T* hpn = hp + n * H;
        // the step's own result: the state, or under zoneout the Elman cells' saved h~_t
        const T* hn = elman && zh ? ac + n * H : hs + n * H;
        const T* kn = zh ? zh + (t * N + n) * H : nullptr;
        if (kn) {  // the step's share (1 - k) dh_t, in place of dh_t and the output's gradient
          zone_split<T>(dcn, gon, kn, H, dcand.data_ptr<T>() + n * H);
          dcn = dcand.data_ptr<T>() + n * H;
          gon = nullptr;
        }
        vloop<T>(H, [&](int64_t j, int64_t c) {
          Vec<T> g = ld(dcn, j, c);
          if (gon) g = g + ld(gon, j, c);
          if (kind == kElmanTanh) {
            const Vec<T> h = ld(hn, j, c);
            st(g * (one - h * h), dan, j, c);
            if (direct) st(zero, dpn, j, c);
          } else if (kind == kElmanRelu) {
            st(Vec<T>::blendv(zero, g, ld(hn, j, c) > zero), dan, j, c);
            if (direct) st(zero, dpn, j, c);
          } else if (kind == kAdditive) {
            const Vec<T> th = ld(ac + n * H, j, c);
            st(g * (one - th * th), dan, j, c);
            st(g, dpn, j, c);
          } else {  // minimal GRU
            const T* un = ac + n * 2 * H;
            const Vec<T> u = ld(un, j, c), cand = ld(un + H, j, c), h = ld(hpn, j, c);
            st(g * (cand - h) * u * (one - u), dan, j, c);
            st(g * u * (one - cand * cand), dan + H, j, c);
            st(g * (one - u), dpn, j, c);
          }
        });
        if (kn) zone_carry<T>(dc + n * H, go ? go + n * H : nullptr, kn, H, dpn);
        if (ln) {
          ln_row_backward<T>(dan, xhat.data_ptr<T>() + (t * N + n) * GH,
                             rstd.data_ptr<T>()[t * N + n], GH, p.g_hh.data_ptr<T>(), mine<T>(dg),
                             mine<T>(db), dr + n * GH);
        }
      });
      if (direct) {
        dprev.addmm_(dR.select(0, t - base), p.w_hh);
      } else {
        at::mm_out(dprev, dR.select(0, t - base), p.w_hh);
      }
      std::swap(dh, dprev);
    }
    add_weight_grad(dW, dR.narrow(0, s - base, e - s), s, h0, seq);
    e = s;
  }
  db = p.b_hh.defined() && !ln ? sum_tn(dxp) : reduce(db);
  res = {dxp, dh, dW, db, reduce(dg)};
}

}  // namespace

RNNLAB_H_STATE_ENTRY_POINTS(simple)

}  // namespace rnnlab_fast
