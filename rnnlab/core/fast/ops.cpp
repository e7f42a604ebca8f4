// The two operators Python calls (torch.ops.rnnlab_fast.forward / backward): check inputs,
// gather the parameters, dispatch on the cell kind.
#include <torch/library.h>

#include "kernels.h"

namespace rnnlab_fast {
namespace {

using OptList = c10::List<std::optional<Tensor>>;

bool is_lstm(int64_t kind) { return kind == kLstm || kind == kLstmNoForget; }
bool is_gru(int64_t kind) { return kind == kGruAfter || kind == kGruBefore; }
bool is_mut(int64_t kind) { return kind >= kMut1 && kind <= kMut3; }

// params: b_hh, g_hh, g_hn, p_i, p_f, p_o, g_c, b_c[, w_hr] (each optional); eps: hh, hn, c.
Params make_params(int64_t kind, const Tensor& w_hh, const OptList& params,
                   at::ArrayRef<double> eps) {
  TORCH_CHECK(kind >= kElmanTanh && kind <= kMut3, "rnnlab_fast: unknown cell kind ", kind);
  TORCH_CHECK((params.size() == 8 || params.size() == 9) && eps.size() == 3,
              "rnnlab_fast: expected 8 or 9 params, 3 eps");
  Params p;
  p.kind = kind;
  p.w_hh = w_hh.contiguous();
  Tensor* slots[] = {&p.b_hh, &p.g_hh, &p.g_hn, &p.p_i, &p.p_f, &p.p_o, &p.g_c, &p.b_c, &p.w_hr};
  for (size_t k = 0; k < params.size(); ++k) {
    *slots[k] = value_or_undefined(params.get(k));
    TORCH_CHECK(!slots[k]->defined() || slots[k]->scalar_type() == w_hh.scalar_type(),
                "rnnlab_fast: parameter dtypes differ");
  }
  TORCH_CHECK(!p.w_hr.defined() || is_lstm(kind), "rnnlab_fast: only the LSTM has a projection");
  p.eps_hh = eps[0];
  p.eps_hn = eps[1];
  p.eps_c = eps[2];
  return p;
}

Tensor mask_or_undefined(const std::optional<Tensor>& mask) {
  if (!mask.has_value()) return Tensor();
  TORCH_CHECK(mask->scalar_type() == at::kByte, "rnnlab_fast: mask must be uint8 (T, N)");
  return mask->contiguous();
}

// Zoneout's blend weights of one part of the state, (T, N, size) of the weights' dtype.
Tensor zoneout_or_undefined(const std::optional<Tensor>& z, const char* name, int64_t T,
                            int64_t N, int64_t size, const Tensor& w_hh) {
  if (!z.has_value()) return Tensor();
  TORCH_CHECK(z->dim() == 3 && z->size(0) == T && z->size(1) == N && z->size(2) == size,
              "rnnlab_fast: expected ", name, " (T, N, size) = (", T, ", ", N, ", ", size,
              "), got ", z->sizes());
  TORCH_CHECK(z->scalar_type() == w_hh.scalar_type(), "rnnlab_fast: ", name,
              "'s dtype differs from the weights'");
  return z->contiguous();
}

std::vector<Tensor> forward(int64_t kind, const Tensor& xp, const Tensor& h0,
                            const std::optional<Tensor>& c0, const Tensor& w_hh,
                            const OptList& params, at::ArrayRef<double> eps,
                            const std::optional<Tensor>& mask, bool save,
                            const std::optional<Tensor>& zh, const std::optional<Tensor>& zc) {
  TORCH_CHECK(xp.device().is_cpu(), "rnnlab_fast runs on CPU tensors only");
  TORCH_CHECK(xp.dim() == 3 && h0.dim() == 2 && xp.size(0) > 0 && xp.size(1) > 0,
              "rnnlab_fast: expected xp (T, N, G*H) and h0 (N, H)");
  TORCH_CHECK(xp.scalar_type() == w_hh.scalar_type() && h0.scalar_type() == w_hh.scalar_type(),
              "rnnlab_fast: input, state and weight dtypes differ");
  Params p = make_params(kind, w_hh, params, eps);
  const Tensor x = xp.contiguous(), h = h0.contiguous(), m = mask_or_undefined(mask);
  const int64_t T_ = xp.size(0), N = xp.size(1);
  p.zh = zoneout_or_undefined(zh, "zh", T_, N, h0.size(1), w_hh);
  TORCH_CHECK(!zc.has_value() || is_lstm(kind), "rnnlab_fast: zc zones the LSTM's c alone");
  p.zc = zoneout_or_undefined(zc, "zc", T_, N, c0.has_value() ? c0->size(1) : 0, w_hh);
  if (is_lstm(kind)) {
    TORCH_CHECK(c0.has_value(), "rnnlab_fast: the LSTM needs c0");
    const int64_t P = h0.size(1), H = c0->size(1);  // P == H without a projection
    TORCH_CHECK(c0->dim() == 2 && w_hh.size(1) == P &&
                    (p.w_hr.defined() ? p.w_hr.size(0) == P && p.w_hr.size(1) == H : P == H),
                "rnnlab_fast: expected h0 (N, P), c0 (N, H), w_hh (G*H, P) and w_hr (P, H)");
    return lstm_forward(p, x, h, c0->contiguous(), m, save);
  }
  if (is_gru(kind)) return gru_forward(p, x, h, m, save);
  if (is_mut(kind)) return mut_forward(p, x, h, m, save);
  return simple_forward(p, x, h, m, save);
}

std::vector<Tensor> backward(int64_t kind, const std::vector<Tensor>& saved, const Tensor& h0,
                             const std::optional<Tensor>& c0, const Tensor& w_hh,
                             const OptList& params, at::ArrayRef<double> eps,
                             const std::optional<Tensor>& mask,
                             const std::optional<Tensor>& grad_out,
                             const std::optional<Tensor>& grad_h,
                             const std::optional<Tensor>& grad_c,
                             const std::optional<Tensor>& zh, const std::optional<Tensor>& zc) {
  Params p = make_params(kind, w_hh, params, eps);
  TORCH_CHECK(!saved.empty() && saved[0].dim() == 3, "rnnlab_fast: expected the saved states");
  const int64_t T_ = saved[0].size(0), N = saved[0].size(1);
  p.zh = zoneout_or_undefined(zh, "zh", T_, N, h0.size(1), w_hh);
  TORCH_CHECK(!zc.has_value() || is_lstm(kind), "rnnlab_fast: zc zones the LSTM's c alone");
  p.zc = zoneout_or_undefined(zc, "zc", T_, N, c0.has_value() ? c0->size(1) : 0, w_hh);
  // Python passes empty tensors for the saved slots a configuration does not use.
  std::vector<Tensor> sv;
  for (const Tensor& s : saved) sv.push_back(s.numel() == 0 ? Tensor() : s.contiguous());
  const Tensor h = h0.contiguous(), m = mask_or_undefined(mask);
  const Tensor go = value_or_undefined(grad_out), gh = value_or_undefined(grad_h);
  if (is_lstm(kind)) {
    return lstm_backward(p, sv, h, c0->contiguous(), go, gh, value_or_undefined(grad_c), m);
  }
  if (is_gru(kind)) return gru_backward(p, sv, h, go, gh, m);
  if (is_mut(kind)) return mut_backward(p, sv, h, go, gh, m);
  return simple_backward(p, sv, h, go, gh, m);
}

}  // namespace

TORCH_LIBRARY(rnnlab_fast, m) {
  m.def("set_buffer_cache_limit(int bytes) -> int", &set_buffer_cache_limit);
  m.def("buffer_cache_bytes() -> int", &buffer_cache_bytes);
  m.def(
      "forward(int kind, Tensor xp, Tensor h0, Tensor? c0, Tensor w_hh, Tensor?[] params, "
      "float[] eps, Tensor? mask, bool save, Tensor? zh=None, Tensor? zc=None) -> Tensor[]",
      &forward);
  m.def(
      "backward(int kind, Tensor[] saved, Tensor h0, Tensor? c0, Tensor w_hh, "
      "Tensor?[] params, float[] eps, Tensor? mask, Tensor? grad_out, Tensor? grad_h, "
      "Tensor? grad_c, Tensor? zh=None, Tensor? zc=None) -> Tensor[]",
      &backward);
}

}  // namespace rnnlab_fast
