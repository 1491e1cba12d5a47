#pragma once
// HTTP/1.1 messages as websmtpd reads and writes them (RFC 9112). Pure: parsing a request
// head and rendering a response do no I/O, so they are unit-tested without a server.
//
// websmtpd frames and parses requests itself on top of Pistache's TCP reactor: Pistache 0.0.5's
// HTTP layer parses one request per read (dropping what follows), reads bodies past any limit,
// and costs more per request than the rest of a submit (docs/architecture.md).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace websmtp::daemon::http {

enum class Method { kGet, kHead, kPost, kPut, kDelete, kPatch, kOptions, kOther };
std::string_view to_string(Method m);

struct Request {
  Method method = Method::kOther;
  std::string_view target;  // as sent: path and query
  std::string_view path;
  std::string_view query;                                              // after '?', without it
  int minor_version = 1;                                               // HTTP/1.x
  std::vector<std::pair<std::string_view, std::string_view>> headers;  // in order; names as sent
  std::string_view body;
  bool keep_alive = true;
  std::string raw;       // the head; the views above point into it
  std::string body_buf;  // the body; `body` views it

  Request() = default;
  // Moving a short string moves its bytes (small-string optimisation): the views are rebased
  // onto the new buffers. Copies are not needed and not allowed.
  Request(Request&& other) noexcept { *this = std::move(other); }
  Request& operator=(Request&& other) noexcept;
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;

  // The first header of that name (case-insensitive).
  std::optional<std::string_view> header(std::string_view name) const;
  // How many headers of that name were sent.
  std::size_t header_count(std::string_view name) const;
  // A query parameter, percent- and '+'-decoded; the first of its name.
  std::optional<std::string> query_param(std::string_view name) const;
};

// What the head of a request says about framing.
struct Head {
  std::int64_t content_length = 0;
  // "Expect: 100-continue" on HTTP/1.1: the client waits for "100 Continue" before the body
  // (RFC 9110 10.1.1; an HTTP/1.0 client's is ignored, as the RFC requires).
  bool expect_continue = false;
};

enum class HeadError {
  kNone,
  kMalformed,           // 400: not an HTTP/1.x request line or header field
  kBadLength,           // 400: Content-Length not one decimal number (or several that differ)
  kLengthRequired,      // 411: a Transfer-Encoding (bodies are framed by Content-Length only)
  kUnsupportedVersion,  // 505
  kExpectation,         // 417: an Expect other than 100-continue
};

// Parses the head (request line and header fields, up to but not including the blank line)
// into `req`, whose `raw` must already hold it at offset 0. Strict where laxness would let two
// parsers disagree: no whitespace before a field's colon (RFC 9112 5.1), no obs-fold, one
// Content-Length, no Transfer-Encoding.
HeadError parse_head(Request& req, std::size_t head_len, Head& head);

// The reason phrase of a status code ("Accepted").
std::string_view reason_phrase(int status);

struct Response {
  int status = 200;
  std::string_view content_type = "application/json; charset=utf-8";  // a literal; empty: none
  std::string headers;                                                // extra fields, each "Name: value\r\n"
  std::string body;

  void add_header(std::string_view name, std::string_view value);
};

// Appends "Name: value\r\n".
void append_header(std::string& headers, std::string_view name, std::string_view value);

// The bytes on the wire. A HEAD answer carries the GET answer's Content-Length, no body.
std::string render(const Response& r, bool head_request, bool keep_alive);

}  // namespace websmtp::daemon::http
