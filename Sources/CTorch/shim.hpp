// What every translation unit of the shim shares: the tensor handle's layout and the rule that no
// C++ exception reaches Swift (CK_BEGIN … CK_END turns each into a malloc'd message).
#pragma once

#include <ATen/ATen.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "ctorch.h"

struct ck_tensor_s { at::Tensor t; };

namespace ck {

inline ck_error message(const char *m) {
  size_t n = std::strlen(m);
  char *p = static_cast<char *>(std::malloc(n + 1));
  if (p) std::memcpy(p, m, n + 1);
  return p;
}

// Keeps the first line-block of a c10 message: what_without_backtrace() still carries
// "Exception raised from ..." on some builds.
inline ck_error c10_message(const c10::Error &e) {
  std::string m = e.what_without_backtrace();
  auto cut = m.find("\nException raised from");
  if (cut != std::string::npos) m.resize(cut);
  return message(m.c_str());
}

inline const at::Tensor &T(ck_tensor h) {
  if (!h) throw std::invalid_argument("null tensor handle");
  if (!h->t.defined()) throw std::invalid_argument("undefined tensor");
  return h->t;
}
inline c10::optional<at::Tensor> OT(ck_tensor h) {
  if (!h) return c10::nullopt;
  return T(h);
}
inline void put(ck_tensor *out, at::Tensor t) {
  if (!out) throw std::invalid_argument("null output pointer");
  *out = new ck_tensor_s{std::move(t)};
}

}  // namespace ck

#define CK_BEGIN try {
#define CK_END                                                            \
  return nullptr;                                                         \
  }                                                                       \
  catch (const c10::Error &e) { return ck::c10_message(e); }              \
  catch (const std::exception &e) { return ck::message(e.what()); }       \
  catch (...) { return ck::message("unknown C++ exception in libtorch"); }
