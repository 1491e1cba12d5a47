#pragma once
// A client-facing error: the one shape every HTTP error takes ({error, code, field}).
// libcore produces these as values; the daemon maps `status` to the HTTP status in one place.
#include <string>

#include <tl/expected.hpp>

namespace websmtp {

struct ApiError {
  int status = 400;     // HTTP status to answer with
  std::string code;     // stable snake_case
  std::string message;  // a human sentence
  std::string field;    // JSON path of the offending field, when one field is at fault
};

template <typename T>
using Result = tl::expected<T, ApiError>;

inline tl::unexpected<ApiError> fail(int status, std::string code, std::string message, std::string field = {}) {
  return tl::unexpected(ApiError{status, std::move(code), std::move(message), std::move(field)});
}

}  // namespace websmtp
