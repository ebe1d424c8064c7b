// Library errors: C++ exceptions carrying a stable code. Nothing in zofo calls
// exit() or abort(); the N-API boundary turns these into JS Errors with `code`.
#pragma once

#include <stdexcept>
#include <string>

namespace zofo {

struct Error : std::runtime_error {
  std::string code;  // e.g. "ZOFO_INVALID_ARG", "ZOFO_CUDA"
  Error(std::string code_, const std::string& message) : std::runtime_error(message), code(std::move(code_)) {}
};

inline Error invalid_arg(const std::string& message) { return Error("ZOFO_INVALID_ARG", message); }

}  // namespace zofo
