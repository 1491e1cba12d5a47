#pragma once
// A small blocking HTTP/1.1 client for websmtpctl. Expected network failures (refused,
// unreachable, timed out, garbled answer) come back as values so that each subcommand can
// map them to an exit code; Poco's exceptions never leave http_client.cpp.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace websmtp::ctl {

// A parsed --server / --admin value: http://host[:port][/base/path].
struct Url {
  std::string host;  // without the brackets of an IPv6 literal
  std::uint16_t port = 80;
  std::string base_path;  // "" or "/prefix" (no trailing slash); routes are appended to it
  std::string text;       // the URL as the user gave it, for messages
};

enum class HttpError {
  kCannotConnect,  // refused, unreachable, host not found
  kTimeout,        // connect or answer took longer than the timeout
  kBadUrl,         // the URL itself is unusable (a usage error)
  kProtocol,       // the connection worked but no well-formed HTTP answer came back
};

// Stable words for logs and tests: "cannot_connect", "timeout", "bad_url", "protocol".
const char* to_string(HttpError error);

struct HttpFailure {
  HttpError error = HttpError::kProtocol;
  std::string detail;  // a short human phrase, e.g. "Connection refused"
};

struct HttpResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  // The first header with this name (case-insensitive), if any.
  std::optional<std::string> header(std::string_view name) const;
};

// Either a response (whatever its status) or the reason there is none.
class HttpResult {
 public:
  HttpResult(HttpResponse response) : value_(std::move(response)) {}  // NOLINT: implicit by design
  HttpResult(HttpFailure failure) : value_(std::move(failure)) {}     // NOLINT: implicit by design

  explicit operator bool() const { return std::holds_alternative<HttpResponse>(value_); }
  const HttpResponse& value() const { return std::get<HttpResponse>(value_); }
  const HttpFailure& error() const { return std::get<HttpFailure>(value_); }

 private:
  std::variant<HttpResponse, HttpFailure> value_;
};

// Pure: parses "http://host[:port][/path]". https is refused with a clear message because
// this build links no TLS; put websmtpd behind a TLS proxy on its own host instead.
std::variant<Url, HttpFailure> parse_url(std::string_view text);

// Pure: percent-encodes everything but RFC 3986 unreserved characters, so the result is
// safe both as a path segment and as a query value ("not started" -> "not%20started").
std::string percent_encode(std::string_view text);

// Pure: true if `value` may go into an HTTP header (no control characters, no DEL).
bool is_header_safe(std::string_view value);

class HttpClient {
 public:
  // `timeout` bounds the connection and each wait for the answer. `bearer` (an API key for
  // the public API, the admin token for the admin API), when not empty, is sent as
  // "Authorization: Bearer <bearer>" (callers check is_header_safe first).
  HttpClient(Url base, std::chrono::milliseconds timeout, std::string bearer);

  const Url& base() const { return base_; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  // `target` is the route plus query ("/mail/status/x?wait=5"); `extra_wait` lengthens the
  // read timeout for long-polls, where the server is expected to hold the answer back.
  HttpResult get(const std::string& target, std::chrono::milliseconds extra_wait = {}) const;
  HttpResult post_json(const std::string& target, const std::string& json_body,
                       const std::vector<std::pair<std::string, std::string>>& extra_headers = {}) const;
  HttpResult del(const std::string& target) const;
  // PUT with an empty body (admin API: PUT /admin/suppressions/ADDR).
  HttpResult put(const std::string& target) const;

 private:
  HttpResult request(const std::string& method, const std::string& target, const std::string* body,
                     const std::vector<std::pair<std::string, std::string>>& extra_headers,
                     std::chrono::milliseconds read_timeout) const;

  Url base_;
  std::chrono::milliseconds timeout_;
  std::string bearer_;
};

}  // namespace websmtp::ctl
