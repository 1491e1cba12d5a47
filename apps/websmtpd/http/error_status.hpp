#pragma once
// The one place where a kind of error becomes an HTTP status (userver's http_error.cpp):
// libcore and the handlers say what went wrong, never which number to answer.
#include "message.hpp"
#include "websmtp/common/error.hpp"

namespace websmtp::daemon::http {

int http_status(ErrorKind kind);

// {"error", "code", "field"} with the kind's status; Retry-After on 503.
Response error_response(const Error& e);

// 405 method_not_allowed with the Allow header naming the methods the path answers.
Response method_not_allowed_response(const std::string& allow);

// 417 for an Expect header other than 100-continue. The one answer with no ErrorKind: it is a
// matter of HTTP framing that libcore never sees, so it is decided here, beside the table.
Response expectation_failed_response();

}  // namespace websmtp::daemon::http
