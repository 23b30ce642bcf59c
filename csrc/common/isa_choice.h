// Which instruction set a kernel family runs on: the widest the CPU has, unless a test or a
// benchmark pins another (gemm_use_isa, conv2d_use_path, attention_use_isa in _C).
#pragma once
#include <atomic>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "common/cpu_features.h"

namespace engine {

enum class Isa { portable, avx2, avx512, avx512_amx };  // narrowest first

// The widest set up to `cap` that the CPU runs (only a family that has AMX asks the OS for it).
inline Isa widest_isa(Isa cap) {
  if (cap >= Isa::avx512_amx && cpu_has_amx_bf16()) return Isa::avx512_amx;  // implies avx512
  if (cap >= Isa::avx512 && cpu_has_avx512()) return Isa::avx512;
  return cap >= Isa::avx2 && cpu_has_avx2_fma() ? Isa::avx2 : Isa::portable;
}

class IsaChoice {
 public:
  // `names` spells this family's sets from portable on: avx2 and avx512, and avx512_amx for a
  // family that has one; `setter` names it in errors.
  IsaChoice(const char* setter, std::vector<const char*> names)
      : setter_(setter), names_(std::move(names)), isa_(widest()) {}

  Isa get() const { return isa_.load(std::memory_order_relaxed); }
  const char* name() const { return names_[static_cast<int>(get())]; }

  // The names of the sets this CPU runs, widest first.
  std::vector<std::string> available() const {
    std::vector<std::string> out;
    for (int i = static_cast<int>(widest()); i >= 0; --i) out.emplace_back(names_[i]);
    return out;
  }

  // Pins the set called `name` (one of available()), or the widest again for "auto".
  void use(const std::string& name) {
    if (name == "auto") return isa_.store(widest(), std::memory_order_relaxed);
    for (int i = 0; i <= static_cast<int>(widest()); ++i)
      if (name == names_[i]) return isa_.store(static_cast<Isa>(i), std::memory_order_relaxed);
    std::string known;
    for (const std::string& n : available()) known += (known.empty() ? "'" : ", '") + n + "'";
    throw std::invalid_argument(std::string(setter_) + ": must be 'auto' or one this CPU runs (" +
                                known + "), got '" + name + "'");
  }

 private:
  // The widest set both the CPU and this family have.
  Isa widest() const { return widest_isa(static_cast<Isa>(static_cast<int>(names_.size()) - 1)); }

  const char* setter_;
  std::vector<const char*> names_;
  std::atomic<Isa> isa_;
};

}  // namespace engine
