// Per-thread scratch memory for kernels that pack tiles: kept per (OpenMP) thread and grown on
// demand, because a fresh multi-MiB allocation per call would page-fault through it every time.
#pragma once
#include <cstddef>
#include <cstdlib>
#include <new>
#include <string>
#include <utility>

namespace engine {

// A failed allocation with a message saying what was asked for (Python sees a MemoryError).
class KernelAllocError : public std::bad_alloc {
 public:
  explicit KernelAllocError(std::string msg) : msg_(std::move(msg)) {}
  explicit KernelAllocError(size_t bytes)
      : KernelAllocError("Unable to allocate " + std::to_string(bytes) + " bytes of kernel workspace") {}
  const char* what() const noexcept override { return msg_.c_str(); }

 private:
  std::string msg_;
};

class Workspace {
 public:
  Workspace() = default;
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  ~Workspace() { std::free(p_); }

  // At least `bytes` of 64-byte aligned memory; the contents are not kept across calls.
  void* get(size_t bytes) {
    if (bytes > size_) {
      std::free(p_);
      p_ = nullptr;
      size_ = 0;
      const size_t rounded = (bytes + 63) / 64 * 64;
      p_ = std::aligned_alloc(64, rounded);
      if (!p_) throw KernelAllocError(rounded);
      size_ = rounded;
    }
    return p_;
  }
  template <typename T>
  T* get(size_t count) {
    return static_cast<T*>(get(count * sizeof(T)));
  }

 private:
  void* p_ = nullptr;
  size_t size_ = 0;
};

}  // namespace engine
