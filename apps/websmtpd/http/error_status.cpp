#include "error_status.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace websmtp::daemon::http {

int http_status(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kInvalid:
      return 400;
    case ErrorKind::kUnauthorized:
      return 401;
    case ErrorKind::kForbidden:
      return 403;
    case ErrorKind::kNotFound:
      return 404;
    case ErrorKind::kMethodNotAllowed:
      return 405;
    case ErrorKind::kTimeout:
      return 408;
    case ErrorKind::kConflict:
      return 409;
    case ErrorKind::kLengthRequired:
      return 411;
    case ErrorKind::kTooLarge:
      return 413;
    case ErrorKind::kUnprocessable:
      return 422;
    case ErrorKind::kRateLimited:
      return 429;
    case ErrorKind::kHeadersTooLarge:
      return 431;
    case ErrorKind::kInternal:
      return 500;
    case ErrorKind::kUnavailable:
      return 503;
    case ErrorKind::kVersionNotSupported:
      return 505;
  }
  return 500;
}

Response error_response(const Error& e) {
  Response r;
  r.status = http_status(e.kind);
  nlohmann::json j = {{"error", e.message}, {"code", e.code}};
  if (!e.field.empty()) j["field"] = e.field;
  r.body = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (e.kind == ErrorKind::kUnavailable)
    r.add_header("Retry-After", std::to_string(e.retry_after_s > 0 ? e.retry_after_s : 5));
  if (e.kind == ErrorKind::kRateLimited) r.add_header("Retry-After", std::to_string(std::max<std::int64_t>(1, e.retry_after_s)));
  if (e.kind == ErrorKind::kUnauthorized) r.add_header("WWW-Authenticate", "Bearer");  // RFC 6750 3
  return r;
}

Response method_not_allowed_response(const std::string& allow) {
  Response r = error_response(Error{ErrorKind::kMethodNotAllowed, "method_not_allowed", "this path answers " + allow});
  r.add_header("Allow", allow);
  return r;
}

Response expectation_failed_response() {
  Response r = error_response(Error{ErrorKind::kInvalid, "expectation_failed",
                                    "the only expectation served is Expect: 100-continue", "Expect"});
  r.status = 417;
  return r;
}

}  // namespace websmtp::daemon::http
