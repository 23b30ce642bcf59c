// Which instruction set a kernel family runs on: the widest the CPU has, unless a test or a
// benchmark pins another (gemm_use_isa, conv2d_use_path, attention_use_isa in _C).
#pragma once
#include <array>
#include <atomic>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/cpu_features.h"

namespace engine {

enum class Isa { portable, avx2, avx512 };  // narrowest first

inline Isa widest_isa() {
  return cpu_has_avx512() ? Isa::avx512 : cpu_has_avx2_fma() ? Isa::avx2 : Isa::portable;
}

class IsaChoice {
 public:
  // `names` spells portable, avx2 and avx512 for this family; `setter` names it in errors.
  IsaChoice(const char* setter, std::array<const char*, 3> names)
      : setter_(setter), names_(names), isa_(widest_isa()) {}

  Isa get() const { return isa_.load(std::memory_order_relaxed); }
  const char* name() const { return names_[static_cast<int>(get())]; }

  // The names of the sets this CPU runs, widest first.
  std::vector<std::string> available() const {
    std::vector<std::string> out;
    for (int i = static_cast<int>(widest_isa()); i >= 0; --i) out.emplace_back(names_[i]);
    return out;
  }

  // Pins the set called `name` (one of available()), or the widest again for "auto".
  void use(const std::string& name) {
    if (name == "auto") return isa_.store(widest_isa(), std::memory_order_relaxed);
    for (int i = 0; i <= static_cast<int>(widest_isa()); ++i)
      if (name == names_[i]) return isa_.store(static_cast<Isa>(i), std::memory_order_relaxed);
    std::string known;
    for (const std::string& n : available()) known += (known.empty() ? "'" : ", '") + n + "'";
    throw std::invalid_argument(std::string(setter_) + ": must be 'auto' or one this CPU runs (" +
                                known + "), got '" + name + "'");
  }

 private:
  const char* setter_;
  std::array<const char*, 3> names_;
  std::atomic<Isa> isa_;
};

}  // namespace engine
