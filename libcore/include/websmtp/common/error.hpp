#pragma once
// A client-facing error: what went wrong (a kind), a stable snake_case code, a human sentence
// and the JSON path of the field at fault. libcore says what kind of failure it is; the daemon
// alone turns a kind into an HTTP status (apps/websmtpd/http_status.cpp).
#include <cstdint>
#include <string>

#include <tl/expected.hpp>

namespace websmtp {

enum class ErrorKind {
  kInvalid,              // the request is malformed (JSON, types, addresses, injection)
  kUnprocessable,        // well-formed but over a limit of what one job may hold
  kTooLarge,             // the request body is over MAX_BODY_BYTES
  kHeadersTooLarge,      // the request head is too large
  kLengthRequired,       // no usable Content-Length
  kVersionNotSupported,  // not HTTP/1.x
  kUnauthorized,         // no credential, or one that is not valid
  kForbidden,            // a valid credential that may not do this
  kNotFound,             // no such job (or route)
  kMethodNotAllowed,     // the route exists, not with this method
  kConflict,             // the request collides with an earlier one (Idempotency-Key) or a state
  kRateLimited,          // over a rate limit
  kTimeout,              // the client was too slow
  kUnavailable,          // temporarily unable (store failing, shutting down)
  kInternal,             // a bug
};

struct Error {
  ErrorKind kind = ErrorKind::kInvalid;
  std::string code;     // stable snake_case
  std::string message;  // a human sentence
  std::string field;    // JSON path of the offending field, when one field is at fault
  std::int64_t retry_after_s = 0;  // kRateLimited, kUnavailable: when to come back (0: not said)
};

template <typename T>
using Result = tl::expected<T, Error>;

inline tl::unexpected<Error> fail(ErrorKind kind, std::string code, std::string message, std::string field = {}) {
  return tl::unexpected(Error{kind, std::move(code), std::move(message), std::move(field)});
}

}  // namespace websmtp
