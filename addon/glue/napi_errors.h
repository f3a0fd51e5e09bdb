// JS errors with a `code` (the backend error codes of backend/backend.h, "closed" or "internal"): the TS
// side turns them into one-line messages. Newlines are folded so every message stays one line.
#pragma once
#include <napi.h>

#include <string>

namespace xllama::glue {

inline Napi::Error make_error(Napi::Env env, const std::string& code, std::string message) {
  for (char& c : message) if (c == '\n' || c == '\r') c = ' ';
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

[[noreturn]] inline void throw_error(Napi::Env env, const std::string& code, const std::string& message) {
  throw make_error(env, code, message);
}

}  // namespace xllama::glue
