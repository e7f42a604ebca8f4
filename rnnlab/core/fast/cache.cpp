// A cache of the kernels' large internal buffers (saved for backward, scratch).
//
// Without it every call allocates its (T, N, G*H) buffers afresh. When a call frees them, glibc
// returns the top of the heap to the system (its trim threshold is twice its adaptive mmap
// threshold), so the next call touches fresh pages: at (32, 100, 128) the layer-norm LSTM took
// about 2,800 minor page faults and 9.5 ms of system time per forward+backward, about 12% of
// the call (docs/PERFORMANCE.md). Here a freed buffer is kept, keyed by its exact size, and
// handed to the next request of that size: repeated calls of one shape, which is what
// training is, reuse the same pages.
//
// Bounded: at most the limit's worth of freed buffers is kept (default 256 MiB,
// RNNLAB_FAST_CACHE_MB, 0 turns the cache off); a buffer freed beyond it goes back to the
// system. Buffers handed to the user (outputs, input gradients) never come from here.
#include <cstdlib>
#include <mutex>
#include <unordered_map>
#include <vector>

#include <c10/core/impl/alloc_cpu.h>
#include <c10/util/accumulate.h>

#include "kernels.h"

namespace rnnlab_fast {
namespace {

class BufferCache {
 public:
  BufferCache() {
    // RNNLAB_FAST_CACHE_MB: a whole number of MiB >= 0; anything else keeps the default.
    const char* env = std::getenv("RNNLAB_FAST_CACHE_MB");
    if (env != nullptr && *env != '\0') {
      char* end = nullptr;
      const long long mib = std::strtoll(env, &end, 10);
      if (*end == '\0' && mib >= 0 && mib <= (1LL << 30)) limit_ = static_cast<size_t>(mib) << 20;
    }
  }

  void* take(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(bytes);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_ -= bytes;
        return p;
      }
    }
    return c10::alloc_cpu(bytes);
  }

  void give(void* p, size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_ + bytes <= limit_) {
        free_[bytes].push_back(p);
        cached_ += bytes;
        return;
      }
    }
    c10::free_cpu(p);
  }

  bool enabled() {
    std::lock_guard<std::mutex> lock(mutex_);
    return limit_ > 0;
  }

  // Sets the limit (bytes) and returns the previous one; frees what no longer fits.
  size_t set_limit(size_t bytes) {
    std::vector<void*> release;
    size_t old;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      old = limit_;
      limit_ = bytes;
      for (auto& [size, list] : free_) {
        while (cached_ > limit_ && !list.empty()) {
          release.push_back(list.back());
          list.pop_back();
          cached_ -= size;
        }
      }
    }
    for (void* p : release) c10::free_cpu(p);
    return old;
  }

  size_t cached() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_;
  }

 private:
  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0;
  size_t limit_ = size_t(256) << 20;
};

BufferCache& cache() {
  static BufferCache* instance = new BufferCache();  // never destroyed: deleters may run late
  return *instance;
}

}  // namespace

Tensor buffer(at::IntArrayRef sizes, const at::TensorOptions& opts) {
  const size_t numel = static_cast<size_t>(c10::multiply_integers(sizes));
  const size_t bytes = numel * opts.dtype().itemsize();
  if (bytes < kCachedBytes || !cache().enabled()) return at::empty(sizes, opts);
  void* p = cache().take(bytes);
  return at::from_blob(p, sizes, [bytes](void* q) { cache().give(q, bytes); }, opts);
}

int64_t set_buffer_cache_limit(int64_t bytes) {
  TORCH_CHECK(bytes >= 0, "rnnlab_fast: the cache limit must be >= 0 bytes");
  return static_cast<int64_t>(cache().set_limit(static_cast<size_t>(bytes)));
}

int64_t buffer_cache_bytes() { return static_cast<int64_t>(cache().cached()); }

}  // namespace rnnlab_fast
