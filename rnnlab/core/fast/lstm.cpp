// LSTM with or without forget gate, with optional peepholes and layer norm (gates i, f, g, o).
//
//   a = xp_t + LN(W_hh h_{t-1}) + b_hh
//   i = sigmoid(a_i + p_i c_{t-1}),  f = sigmoid(a_f + p_f c_{t-1}),  g = tanh(a_g)
//   c_t = f c_{t-1} + i g            (no forget gate: c_t = c_{t-1} + i g)
//   o = sigmoid(a_o + p_o c_t),  h_t = o tanh(LN_c(c_t))
//   with a projection (w_hr (P, H), Sak et al. 2014): m_t = o tanh(LN_c(c_t)), h_t = W_hr m_t,
//   one more GEMM per step; h is (N, P), c (N, H), w_hh (G*H, P).
//
// Saved for backward: seq (h states), cs (c states), gates (T, N, G*H) = i, (f,) g, o after
// their nonlinearity; for layer norm xhat and rstd of the recurrent pre-activations, and the
// mean and rstd of c_t. tanh(LN_c(c_t)) is recomputed in backward (one exp per element) rather
// than kept, which saves a (T, N, H) buffer; so is m_t with a projection (for dW_hr).
// Zoneout on c (zc) keeps the cell's own c~_t too (ctil), which the backward reads where it
// reads c_t without zoneout; zoneout on h needs nothing more (h~_t is recomputed from o, c~_t).
#include "kernels.h"

namespace rnnlab_fast {
namespace {

struct Offsets {  // where each gate's block starts in a row of G*H
  int64_t i, f, g, o;
  Offsets(bool forget, int64_t H)
      : i(0), f(forget ? H : -1), g(forget ? 2 * H : H), o(forget ? 3 * H : 2 * H) {}
};

template <typename T>
void lstm_forward_impl(const Params& p, const Tensor& xp, const Tensor& h0, const Tensor& c0,
                       const Tensor& mask, bool save, std::vector<Tensor>& res) {
  // P: the size of h, H that of c (equal without a projection)
  const int64_t T_ = xp.size(0), N = xp.size(1), P = h0.size(1), H = c0.size(1), GH = xp.size(2);
  const auto opts = xp.options();
  const bool masked = mask.defined(), ln = p.g_hh.defined(), lnc = p.g_c.defined();
  const bool forget = p.kind == kLstm, peep = p.p_i.defined(), proj = p.w_hr.defined();
  const Offsets off(forget, H);
  const int64_t S = save ? T_ : 1;
  const T *zh = ptr_or_null<T>(p.zh), *zc = ptr_or_null<T>(p.zc);
  const bool pingpong = !save;  // c states: all of them, or two slots
  const bool hping = masked && !save;
  Tensor out = at::empty({T_, N, P}, opts);
  Tensor seq = masked ? buffer({hping ? 2 : T_, N, P}, opts) : out;
  Tensor cs = buffer({pingpong ? 2 : T_, N, H}, opts);
  Tensor gates = buffer({S, N, GH}, opts);
  Tensor tc = at::empty({N, H}, opts);  // scratch: tanh(LN_c(c_t)), or LN_c(c_t) first
  Tensor xhat = save && ln ? buffer({T_, N, GH}, opts) : Tensor();
  Tensor rstd = save && ln ? at::empty({T_, N}, opts) : Tensor();
  Tensor meanc = lnc ? at::empty({S, N}, opts) : Tensor();
  Tensor rstdc = lnc ? at::empty({S, N}, opts) : Tensor();
  Tensor ctil = save && zc ? buffer({T_, N, H}, opts) : Tensor();  // c~_t under zoneout on c
  Tensor R = at::empty({N, GH}, opts);
  Tensor m = proj ? at::empty({N, H}, opts) : Tensor();  // scratch: m_t, projected into h_t
  const uint8_t* mk = masked ? mask.data_ptr<uint8_t>() : nullptr;
  const T *pi = ptr_or_null<T>(p.p_i), *pf = ptr_or_null<T>(p.p_f), *po = ptr_or_null<T>(p.p_o);
  const T *gc = ptr_or_null<T>(p.g_c), *bc = ptr_or_null<T>(p.b_c);

  for (int64_t t = 0; t < T_; ++t) {
    const int64_t s = save ? t : 0;
    const Tensor h_prev = t == 0 ? h0 : seq.select(0, hping ? (t - 1) % 2 : t - 1);
    const T* cp =
        t == 0 ? c0.data_ptr<T>() : cs.data_ptr<T>() + (pingpong ? (t - 1) % 2 : t - 1) * N * H;
    recurrent_gemm(R, h_prev, p.w_hh, p.b_hh, !ln);
    if (ln) {
      ln_rows_forward<T>(R, p.g_hh, p.b_hh, p.eps_hh,
                         save ? xhat.data_ptr<T>() + t * N * GH : nullptr,
                         save ? rstd.data_ptr<T>() + t * N : nullptr);
    }
    const T* x = xp.data_ptr<T>() + t * N * GH;
    const T* r = R.data_ptr<T>();
    const T* hp = h_prev.data_ptr<T>();
    T* hs = seq.data_ptr<T>() + (hping ? t % 2 : t) * N * P;
    T* cc = cs.data_ptr<T>() + (pingpong ? t % 2 : t) * N * H;
    T* o = out.data_ptr<T>() + t * N * P;
    T* gt = gates.data_ptr<T>() + s * N * GH;
    T* tct = tc.data_ptr<T>();
    for_rows(N, GH, [&](int64_t n) {
      const T *xn = x + n * GH, *rn = r + n * GH, *cpn = cp + n * H, *hpn = hp + n * P;
      T *hn = hs + n * P, *cn = cc + n * H, *on = o + n * P, *gn = gt + n * GH;
      T* tcn = tct + n * H;
      // the cell's output o tanh(LN_c(c_t)): h_t itself, or m_t to be projected
      T* mn = proj ? m.data_ptr<T>() + n * H : hn;
      if (masked && !mk[t * N + n]) {
        std::copy(cpn, cpn + H, cn);
        if (proj) {  // h_t and the output are written after the projection
          std::fill(mn, mn + H, T(0));
          return;
        }
        std::copy(hpn, hpn + H, hn);
        std::fill(on, on + H, T(0));
        return;
      }
      auto a = [&](int64_t block, int64_t j, int64_t c) {
        return ld(xn + block, j, c) + ld(rn + block, j, c);
      };
      // i, f, g and c_t; without layer norm on c_t also o and h_t in the same pass.
      vloop<T>(H, [&](int64_t j, int64_t c) {
        const Vec<T> cprev = ld(cpn, j, c);
        Vec<T> ai = a(off.i, j, c);
        if (peep) ai = ai + ld(pi, j, c) * cprev;
        const Vec<T> i = sigmoid(ai);
        const Vec<T> g = tanh_(a(off.g, j, c));
        Vec<T> cnew;
        if (forget) {
          Vec<T> af = a(off.f, j, c);
          if (peep) af = af + ld(pf, j, c) * cprev;
          const Vec<T> f = sigmoid(af);
          st(f, gn + off.f, j, c);
          cnew = f * cprev + i * g;
        } else {
          cnew = cprev + i * g;
        }
        st(i, gn + off.i, j, c);
        st(g, gn + off.g, j, c);
        st(cnew, cn, j, c);
        if (!lnc) {
          Vec<T> ao = a(off.o, j, c);
          if (peep) ao = ao + ld(po, j, c) * cnew;
          const Vec<T> og = sigmoid(ao);
          st(og, gn + off.o, j, c);
          st(og * tanh_(cnew), mn, j, c);
        }
      });
      if (lnc) {
        std::copy(cn, cn + H, tcn);
        rstdc.data_ptr<T>()[s * N + n] =
            ln_row_forward<T>(tcn, H, gc, bc, p.eps_c, nullptr, meanc.data_ptr<T>() + s * N + n);
        vloop<T>(H, [&](int64_t j, int64_t c) {
          Vec<T> ao = a(off.o, j, c);
          if (peep) ao = ao + ld(po, j, c) * ld(cn, j, c);
          const Vec<T> og = sigmoid(ao);
          st(og, gn + off.o, j, c);
          st(og * tanh_(ld(tcn, j, c)), mn, j, c);
        });
      }
      if (zc) {
        T* keep = save ? ctil.data_ptr<T>() + (t * N + n) * H : nullptr;
        zone_row<T>(cn, cpn, zc + (t * N + n) * H, H, keep);
      }
      if (zh && !proj) zone_row<T>(hn, hpn, zh + (t * N + n) * P, P, nullptr);
      if (masked && !proj) std::copy(hn, hn + H, on);
    });
    if (proj) {
      Tensor h_t = seq.select(0, hping ? t % 2 : t);
      at::mm_out(h_t, m, p.w_hr.t());  // h_t = m_t W_hr^T (N, P)
      if (masked || zh) {  // frozen rows keep h_{t-1} and output zeros; the others output h_t
        for_rows(N, P, [&](int64_t n) {
          T *hn = hs + n * P, *on = o + n * P;
          if (!masked || mk[t * N + n]) {
            if (zh) zone_row<T>(hn, hp + n * P, zh + (t * N + n) * P, P, nullptr);
            if (masked) std::copy(hn, hn + P, on);
          } else {
            std::copy(hp + n * P, hp + (n + 1) * P, hn);
            std::fill(on, on + P, T(0));
          }
        });
      }
    }
  }
  Tensor hT = seq[hping ? (T_ - 1) % 2 : T_ - 1].clone();
  Tensor cT = cs[pingpong ? (T_ - 1) % 2 : T_ - 1].clone();
  res = {out, hT, cT, seq, cs, gates, xhat, rstd, meanc, rstdc, ctil};
}

template <typename T>
void lstm_backward_impl(const Params& p, const std::vector<Tensor>& saved, const Tensor& h0,
                        const Tensor& c0, const Tensor& grad_out, const Tensor& grad_h,
                        const Tensor& grad_c, const Tensor& mask, std::vector<Tensor>& res) {
  const Tensor &seq = saved[0], &cs = saved[1], &gates = saved[2];
  const Tensor &xhat = saved[3], &rstd = saved[4], &meanc = saved[5], &rstdc = saved[6];
  const Tensor& ctil = saved[7];
  // P: the size of h, H that of c (equal without a projection)
  const int64_t T_ = seq.size(0), N = seq.size(1), P = seq.size(2), H = cs.size(2);
  const int64_t GH = gates.size(2);
  const auto opts = seq.options();
  const bool masked = mask.defined(), ln = p.g_hh.defined(), lnc = p.g_c.defined();
  const bool forget = p.kind == kLstm, peep = p.p_i.defined(), proj = p.w_hr.defined();
  const Offsets off(forget, H);
  Tensor dxp = at::empty({T_, N, GH}, opts);
  // dR: the gradient of the recurrent pre-activations, a ring of a few steps under layer norm
  // (without it dR is dxp itself). With a projection, rings of the same steps hold the whole
  // gradient of h_t (dHt) and the recomputed m_t (Mt), for dW_hr = sum_t dHt_t^T Mt_t.
  const int64_t K = chunk_steps(ln || proj, N, T_);
  Tensor dR = ln ? buffer({K, N, GH}, opts) : dxp;
  Tensor dW = at::zeros({GH, P}, opts);
  Tensor dWr = proj ? at::zeros({P, H}, opts) : Tensor();
  Tensor dHt = proj ? buffer({K, N, P}, opts) : Tensor();
  Tensor Mt = proj ? buffer({K, N, H}, opts) : Tensor();
  Tensor dm = proj ? at::empty({N, H}, opts) : Tensor();  // scratch: dL/dm_t = dh_t W_hr
  Tensor dg = partials(ln, GH, opts), db = partials(ln && p.b_hh.defined(), GH, opts);
  Tensor dgc = partials(lnc, H, opts), dbc = partials(lnc && p.b_c.defined(), H, opts);
  Tensor dpi = partials(peep, H, opts), dpf = partials(peep && forget, H, opts);
  Tensor dpo = partials(peep, H, opts);
  Tensor chat = lnc ? at::empty({N, H}, opts) : Tensor();  // scratch: LN_c's xhat of a step
  Tensor dh = grad_h.defined() ? grad_h.clone() : at::zeros({N, P}, opts);
  Tensor dc = grad_c.defined() ? grad_c.clone() : at::zeros({N, H}, opts);
  Tensor dph = at::empty({N, P}, opts), dpc = at::empty({N, H}, opts);
  const T *zh = ptr_or_null<T>(p.zh), *zc = ptr_or_null<T>(p.zc);
  // Under zoneout dh_{t-1} starts from the direct share z dh_t: dR W_hh is added to it.
  const bool accumulate = masked || zh;
  // scratch: the step's shares (1 - z) of dh_t (with a projection: dHt itself) and dc_t
  Tensor dhcand = zh && !proj ? at::empty({N, P}, opts) : Tensor();
  Tensor dccand = zc ? at::empty({N, H}, opts) : Tensor();
  const uint8_t* mk = masked ? mask.data_ptr<uint8_t>() : nullptr;
  const T *pi = ptr_or_null<T>(p.p_i), *pf = ptr_or_null<T>(p.p_f), *po = ptr_or_null<T>(p.p_o);
  const T *gc = ptr_or_null<T>(p.g_c), *bc = ptr_or_null<T>(p.b_c);
  const Vec<T> one(T(1));
  const Tensor& cstep = p.zc.defined() ? ctil : cs;  // the cell's own c~_t of every step

  for (int64_t e = T_; e > 0;) {
    const int64_t s = std::max<int64_t>(0, e - K), base = ln ? s : 0;
    for (int64_t t = e - 1; t >= s; --t) {
      const T* cp = t == 0 ? c0.data_ptr<T>() : cs.data_ptr<T>() + (t - 1) * N * H;
      const T* cc = cstep.data_ptr<T>() + t * N * H;
      const T* go = grad_out.defined() ? grad_out.data_ptr<T>() + t * N * P : nullptr;
      const T* gt = gates.data_ptr<T>() + t * N * GH;
      const T *dhp = dh.data_ptr<T>(), *dcp = dc.data_ptr<T>();
      T *dphp = dph.data_ptr<T>(), *dpcp = dpc.data_ptr<T>();
      T* da = dxp.data_ptr<T>() + t * N * GH;
      T* dr = dR.data_ptr<T>() + (t - base) * N * GH;
      T* dht = proj ? dHt.data_ptr<T>() + (t - s) * N * P : nullptr;
      T* mt = proj ? Mt.data_ptr<T>() + (t - s) * N * H : nullptr;
      if (proj || zh) {
        // dh_t in full (zero on frozen rows), then through the projection: dm_t. Under zoneout
        // on h: its share (1 - z) dh_t (into dHt, or a scratch without projection), and the
        // direct share z dh_t starts dh_{t-1}.
        for_rows(N, P, [&](int64_t n) {
          if (masked && !mk[t * N + n]) {
            if (proj) std::fill(dht + n * P, dht + (n + 1) * P, T(0));
            return;
          }
          const T *dhn = dhp + n * P, *gon = go ? go + n * P : nullptr;
          T* dst = proj ? dht + n * P : dhcand.data_ptr<T>() + n * P;
          if (zh) {
            const T* kn = zh + (t * N + n) * P;
            T* dphn = dphp + n * P;
            zone_split<T>(dhn, gon, kn, P, dst);
            std::fill(dphn, dphn + P, T(0));
            zone_carry<T>(dhn, gon, kn, P, dphn);
            return;
          }
          vloop<T>(P, [&](int64_t j, int64_t c) {
            Vec<T> gh = ld(dhn, j, c);
            if (gon) gh = gh + ld(gon, j, c);
            st(gh, dst, j, c);
          });
        });
        if (proj) at::mm_out(dm, dHt.select(0, t - s), p.w_hr);
      }
      for_rows(N, GH, [&](int64_t n) {
        T *dan = da + n * GH, *dphn = dphp + n * P, *dpcn = dpcp + n * H;
        const T *dhn = dhp + n * P, *dcn = dcp + n * H;
        T* mtn = proj ? mt + n * H : nullptr;
        if (masked && !mk[t * N + n]) {  // frozen step: the gradient passes straight through
          std::fill(dan, dan + GH, T(0));
          if (ln) std::fill(dr + n * GH, dr + (n + 1) * GH, T(0));
          if (proj) std::fill(mtn, mtn + H, T(0));  // its dh_t row is zero; no NaN from garbage
          std::copy(dhn, dhn + P, dphn);
          std::copy(dcn, dcn + H, dpcn);
          return;
        }
        if (masked && !zh) std::fill(dphn, dphn + P, T(0));  // dR W_hh is added after the rows
        // the gradient of the cell's output o tanh(LN_c(c_t)): dh_t (+ the output's), or dm_t;
        // under zoneout on h the step's share of them
        const T *gon = go && !proj && !zh ? go + n * P : nullptr, *gn = gt + n * GH;
        const T* dmn = proj ? dm.data_ptr<T>() + n * H : (zh ? dhcand.data_ptr<T>() + n * P : dhn);
        const T* kcn = zc ? zc + (t * N + n) * H : nullptr;
        if (kcn) {  // the step's share (1 - z) dc_t, in place of dc_t
          zone_split<T>(dcn, nullptr, kcn, H, dccand.data_ptr<T>() + n * H);
          dcn = dccand.data_ptr<T>() + n * H;
        }
        const T *cpn = cp + n * H, *ccn = cc + n * H;
        T* chn = lnc ? chat.data_ptr<T>() + n * H : nullptr;
        const Vec<T> vm(lnc ? meanc.data_ptr<T>()[t * N + n] : T(0));
        const Vec<T> vr(lnc ? rstdc.data_ptr<T>()[t * N + n] : T(0));
        // Pass 1: through h_t = o tanh(LN_c(c_t)) to a_o and to LN_c's output (kept in dpc).
        vloop<T>(H, [&](int64_t j, int64_t c) {
          Vec<T> gh = ld(dmn, j, c);
          if (gon) gh = gh + ld(gon, j, c);
          Vec<T> cn = ld(ccn, j, c);
          if (lnc) {
            const Vec<T> xh = (cn - vm) * vr;
            st(xh, chn, j, c);
            cn = xh * ld(gc, j, c);
            if (bc) cn = cn + ld(bc, j, c);
          }
          const Vec<T> og = ld(gn + off.o, j, c), th = tanh_(cn);
          st(gh * th * og * (one - og), dan + off.o, j, c);
          st(gh * og * (one - th * th), dpcn, j, c);
          if (proj) st(og * th, mtn, j, c);
        });
        if (lnc) {
          ln_row_backward<T>(dpcn, chn, rstdc.data_ptr<T>()[t * N + n], H, gc, mine<T>(dgc),
                             mine<T>(dbc), dpcn);
        }
        // Pass 2: dc_t in full, then i, f, g, dc_{t-1} and the peepholes' gradients.
        T *dpin = mine<T>(dpi), *dpfn = mine<T>(dpf), *dpon = mine<T>(dpo);
        vloop<T>(H, [&](int64_t j, int64_t c) {
          Vec<T> dct = ld(dcn, j, c) + ld(dpcn, j, c);
          const Vec<T> cprev = ld(cpn, j, c);
          if (peep) {
            const Vec<T> dao = ld(dan + off.o, j, c);
            dct = dct + dao * ld(po, j, c);
            st(ld(dpon, j, c) + dao * ld(ccn, j, c), dpon, j, c);
          }
          const Vec<T> i = ld(gn + off.i, j, c), g = ld(gn + off.g, j, c);
          const Vec<T> dai = dct * g * i * (one - i);
          st(dai, dan + off.i, j, c);
          st(dct * i * (one - g * g), dan + off.g, j, c);
          Vec<T> dcprev = dct;
          if (forget) {
            const Vec<T> f = ld(gn + off.f, j, c);
            const Vec<T> daf = dct * cprev * f * (one - f);
            st(daf, dan + off.f, j, c);
            dcprev = dct * f;
            if (peep) {
              dcprev = dcprev + daf * ld(pf, j, c);
              st(ld(dpfn, j, c) + daf * cprev, dpfn, j, c);
            }
          }
          if (peep) {
            dcprev = dcprev + dai * ld(pi, j, c);
            st(ld(dpin, j, c) + dai * cprev, dpin, j, c);
          }
          st(dcprev, dpcn, j, c);
        });
        if (kcn) zone_carry<T>(dcp + n * H, nullptr, kcn, H, dpcn);
        if (ln) {
          ln_row_backward<T>(dan, xhat.data_ptr<T>() + (t * N + n) * GH,
                             rstd.data_ptr<T>()[t * N + n], GH, p.g_hh.data_ptr<T>(), mine<T>(dg),
                             mine<T>(db), dr + n * GH);
        }
      });
      if (accumulate) {
        dph.addmm_(dR.select(0, t - base), p.w_hh);
      } else {
        at::mm_out(dph, dR.select(0, t - base), p.w_hh);
      }
      std::swap(dh, dph);
      std::swap(dc, dpc);
    }
    add_weight_grad(dW, dR.narrow(0, s - base, e - s), s, h0, seq);
    if (proj) {
      dWr.addmm_(dHt.narrow(0, 0, e - s).reshape({-1, P}).t(),
                 Mt.narrow(0, 0, e - s).reshape({-1, H}));
    }
    e = s;
  }
  db = p.b_hh.defined() && !ln ? sum_tn(dxp) : reduce(db);
  res = {dxp,         dh,          dc,          dW,          db,          reduce(dg),
         reduce(dpi), reduce(dpf), reduce(dpo), reduce(dgc), reduce(dbc), dWr};
}

}  // namespace

std::vector<Tensor> lstm_forward(const Params& p, const Tensor& xp, const Tensor& h0,
                                 const Tensor& c0, const Tensor& mask, bool save) {
  std::vector<Tensor> res;
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "rnnlab_lstm_forward",
                             [&] { lstm_forward_impl<scalar_t>(p, xp, h0, c0, mask, save, res); });
  return res;
}

std::vector<Tensor> lstm_backward(const Params& p, const std::vector<Tensor>& saved,
                                  const Tensor& h0, const Tensor& c0, const Tensor& grad_out,
                                  const Tensor& grad_h, const Tensor& grad_c, const Tensor& mask) {
  std::vector<Tensor> res;
  AT_DISPATCH_FLOATING_TYPES(saved[0].scalar_type(), "rnnlab_lstm_backward", [&] {
    lstm_backward_impl<scalar_t>(p, saved, h0, c0, grad_out, grad_h, grad_c, mask, res);
  });
  return res;
}

}  // namespace rnnlab_fast
