// The minimal RNNs' linear recurrence (rnnlab/core/minimal.py), elementwise:
//
//   h_t = a_t * h_{t-1} + b_t        a, b, h (T, N, H); h_{-1} = h0 (N, H)
//
// as a sequential loop over t, vectorised and threaded over the N*H independent lanes. The
// log-space parallel scan (minimal.linear_scan) pays an exp and a log per element, forward and
// backward, to shorten a dependency chain that a CPU does not need shortened: the lanes alone
// fill its cores and vector units. Here each element costs one multiply-add, in linear space:
// with |a_t| <= 1 the loop is as stable as the cell's own step, and needs no chunking.
//
// Backward, with g the gradient of h_t flowing back through the recurrence:
//
//   g = grad_final (or 0); for t = T-1 .. 0:
//     g += grad_h[t];  grad_b[t] = g;  grad_a[t] = g * h_{t-1};  g *= a_t
//   grad_h0 = g
//
// Threads: the lanes are cut into tiles of at most kTile (a multiple of every vector width, so
// tiles start on cache-line boundaries); a thread runs all T steps of a tile before the next,
// so its state row (h_{t-1} forward, g backward) stays in L1 between steps.
#include <torch/library.h>

#include "kernels.h"

namespace rnnlab_fast {
namespace {

constexpr int64_t kTile = 512;    // lanes per tile at most (2 KiB of float32)
constexpr int64_t kAlign = 16;    // tiles are multiples of this many lanes
constexpr int64_t kSerial = 1 << 15;  // below this many elements, one thread

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Runs f(j0, width) on every tile [j0, j0 + width) of L lanes, over threads; tiles are shrunk
// (not below kAlign) so that every thread gets at least one.
template <typename F>
void for_tiles(int64_t T_, int64_t L, const F& f) {
  const int64_t per_thread = ceil_div(L, std::max<int64_t>(1, at::get_num_threads()));
  const int64_t tile = std::clamp(ceil_div(per_thread, kAlign) * kAlign, kAlign, kTile);
  const int64_t tiles = ceil_div(L, tile);
  const int64_t grain = T_ * L < kSerial ? tiles : 1;
  at::parallel_for(0, tiles, grain, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) f(k * tile, std::min(tile, L - k * tile));
  });
}

template <typename T>
void forward_impl(const Tensor& a, const Tensor& b, const Tensor& h0, Tensor& h) {
  const int64_t T_ = a.size(0), L = a.size(1) * a.size(2);
  const T* pa = a.data_ptr<T>();
  const T* pb = b.data_ptr<T>();
  const T* p0 = h0.data_ptr<T>();
  T* ph = h.data_ptr<T>();
  for_tiles(T_, L, [&](int64_t j0, int64_t w) {
    for (int64_t t = 0; t < T_; ++t) {
      const int64_t row = t * L + j0;
      const T* prev = t == 0 ? p0 + j0 : ph + row - L;
      const T* at_ = pa + row;
      const T* bt = pb + row;
      T* ht = ph + row;
      vloop<T>(w, [&](int64_t j, int64_t c) {
        st(at::vec::fmadd(ld(at_, j, c), ld(prev, j, c), ld(bt, j, c)), ht, j, c);
      });
    }
  });
}

template <typename T>
void backward_impl(const Tensor& a, const Tensor& h, const Tensor& h0, const Tensor& grad_h,
                   Tensor& grad_a, Tensor& grad_b, Tensor& g) {
  const int64_t T_ = a.size(0), L = a.size(1) * a.size(2);
  const T* pa = a.data_ptr<T>();
  const T* ph = h.data_ptr<T>();
  const T* p0 = h0.data_ptr<T>();
  const T* pgh = ptr_or_null<T>(grad_h);
  T* pga = grad_a.data_ptr<T>();
  T* pgb = grad_b.data_ptr<T>();
  T* pg = g.data_ptr<T>();  // the running gradient, grad_h0 at the end
  for_tiles(T_, L, [&](int64_t j0, int64_t w) {
    T* gt = pg + j0;
    for (int64_t t = T_ - 1; t >= 0; --t) {
      const int64_t row = t * L + j0;
      const T* prev = t == 0 ? p0 + j0 : ph + row - L;
      const T* at_ = pa + row;
      const T* dh = pgh ? pgh + row : nullptr;
      T* da = pga + row;
      T* db = pgb + row;
      vloop<T>(w, [&](int64_t j, int64_t c) {
        Vec<T> gv = ld(gt, j, c);
        if (dh) gv = gv + ld(dh, j, c);
        st(gv, db, j, c);
        st(gv * ld(prev, j, c), da, j, c);
        st(gv * ld(at_, j, c), gt, j, c);
      });
    }
  });
}

void check_floating_cpu(const Tensor& t, const char* name, const Tensor& like) {
  TORCH_CHECK(t.device().is_cpu(), "rnnlab_fast::linrec: ", name, " must be a CPU tensor");
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), "rnnlab_fast::linrec: ", name, " is ",
              t.scalar_type(), ", expected ", like.scalar_type());
}

void check_inputs(const Tensor& a, const Tensor& b_or_h, const Tensor& h0, const char* name) {
  TORCH_CHECK(a.dim() == 3, "rnnlab_fast::linrec: expected a (T, N, H), got ", a.sizes());
  TORCH_CHECK(a.scalar_type() == at::kFloat || a.scalar_type() == at::kDouble,
              "rnnlab_fast::linrec: expected float32 or float64, got ", a.scalar_type());
  TORCH_CHECK(b_or_h.sizes() == a.sizes(), "rnnlab_fast::linrec: expected ", name, " ",
              a.sizes(), " like a, got ", b_or_h.sizes());
  TORCH_CHECK(h0.dim() == 2 && h0.size(0) == a.size(1) && h0.size(1) == a.size(2),
              "rnnlab_fast::linrec: expected h0 (N, H) = (", a.size(1), ", ", a.size(2),
              "), got ", h0.sizes());
  check_floating_cpu(a, "a", a);
  check_floating_cpu(b_or_h, name, a);
  check_floating_cpu(h0, "h0", a);
}

Tensor linrec_forward(const Tensor& a, const Tensor& b, const Tensor& h0) {
  check_inputs(a, b, h0, "b");
  const Tensor ac = a.contiguous(), bc = b.contiguous(), h0c = h0.contiguous();
  Tensor h = at::empty(a.sizes(), a.options());
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "rnnlab_linrec_forward",
                             [&] { forward_impl<scalar_t>(ac, bc, h0c, h); });
  return h;
}

std::vector<Tensor> linrec_backward(const Tensor& a, const Tensor& h, const Tensor& h0,
                                    const std::optional<Tensor>& grad_h,
                                    const std::optional<Tensor>& grad_final) {
  check_inputs(a, h, h0, "h");
  const Tensor gh = value_or_undefined(grad_h);
  if (gh.defined()) {
    TORCH_CHECK(gh.sizes() == a.sizes(), "rnnlab_fast::linrec: expected grad_h ", a.sizes(),
                ", got ", gh.sizes());
    check_floating_cpu(gh, "grad_h", a);
  }
  Tensor g;  // the running gradient, starting at grad_final
  if (grad_final.has_value()) {
    TORCH_CHECK(grad_final->sizes() == h0.sizes(), "rnnlab_fast::linrec: expected grad_final ",
                h0.sizes(), ", got ", grad_final->sizes());
    check_floating_cpu(*grad_final, "grad_final", a);
    g = grad_final->clone(at::MemoryFormat::Contiguous);
  } else {
    g = at::zeros(h0.sizes(), h0.options());
  }
  const Tensor ac = a.contiguous(), hc = h.contiguous(), h0c = h0.contiguous();
  Tensor grad_a = at::empty(a.sizes(), a.options()), grad_b = at::empty(a.sizes(), a.options());
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "rnnlab_linrec_backward",
                             [&] { backward_impl<scalar_t>(ac, hc, h0c, gh, grad_a, grad_b, g); });
  return {grad_a, grad_b, g};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(rnnlab_fast, m) {
  m.def("linrec_forward(Tensor a, Tensor b, Tensor h0) -> Tensor", &linrec_forward);
  m.def(
      "linrec_backward(Tensor a, Tensor h, Tensor h0, Tensor? grad_h, Tensor? grad_final) "
      "-> Tensor[]",
      &linrec_backward);
}

}  // namespace rnnlab_fast
