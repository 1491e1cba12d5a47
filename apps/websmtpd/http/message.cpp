#include "message.hpp"

#include <algorithm>
#include <charconv>

#include "websmtp/common/text.hpp"

namespace websmtp::daemon::http {

namespace {

constexpr bool is_tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

Method method_from(std::string_view m) {
  if (m == "GET") return Method::kGet;
  if (m == "POST") return Method::kPost;
  if (m == "HEAD") return Method::kHead;
  if (m == "OPTIONS") return Method::kOptions;
  if (m == "PUT") return Method::kPut;
  if (m == "DELETE") return Method::kDelete;
  if (m == "PATCH") return Method::kPatch;
  return Method::kOther;
}

std::string_view trim_ows(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

std::string_view to_string(Method m) {
  switch (m) {
    case Method::kGet:
      return "GET";
    case Method::kHead:
      return "HEAD";
    case Method::kPost:
      return "POST";
    case Method::kPut:
      return "PUT";
    case Method::kDelete:
      return "DELETE";
    case Method::kPatch:
      return "PATCH";
    case Method::kOptions:
      return "OPTIONS";
    case Method::kOther:
      break;
  }
  return "?";
}

Request& Request::operator=(Request&& o) noexcept {
  if (this == &o) return *this;
  const char* old_raw = o.raw.data();
  const char* old_body = o.body_buf.data();
  auto rebase = [](std::string_view v, const char* from, const std::string& to) {
    if (v.data() == nullptr) return std::string_view();
    return std::string_view(to.data() + (v.data() - from), v.size());
  };
  raw = std::move(o.raw);
  body_buf = std::move(o.body_buf);
  method = o.method;
  minor_version = o.minor_version;
  keep_alive = o.keep_alive;
  target = rebase(o.target, old_raw, raw);
  path = rebase(o.path, old_raw, raw);
  query = rebase(o.query, old_raw, raw);
  body = rebase(o.body, old_body, body_buf);
  headers = std::move(o.headers);
  for (auto& [n, v] : headers) {
    n = rebase(n, old_raw, raw);
    v = rebase(v, old_raw, raw);
  }
  o.target = o.path = o.query = o.body = {};
  o.headers.clear();
  return *this;
}

std::optional<std::string_view> Request::header(std::string_view name) const {
  for (const auto& [n, v] : headers)
    if (iequals(n, name)) return v;
  return std::nullopt;
}

std::size_t Request::header_count(std::string_view name) const {
  return static_cast<std::size_t>(
      std::count_if(headers.begin(), headers.end(), [&](const auto& h) { return iequals(h.first, name); }));
}

std::optional<std::string> Request::query_param(std::string_view name) const {
  std::string_view q = query;
  while (!q.empty()) {
    std::size_t amp = q.find('&');
    std::string_view item = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    std::size_t eq = item.find('=');
    std::string_view key = item.substr(0, eq);
    if (percent_decode(key) != name) continue;
    return eq == std::string_view::npos ? std::string() : percent_decode(item.substr(eq + 1));
  }
  return std::nullopt;
}

HeadError parse_head(Request& req, std::size_t head_len, Head& head) {
  head = Head();
  std::string_view text(req.raw.data(), head_len);
  // Request line: method SP request-target SP HTTP-version.
  std::size_t eol = text.find("\r\n");
  std::string_view line = text.substr(0, eol);
  std::size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos || sp1 == 0) return HeadError::kMalformed;
  std::size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || sp2 == sp1 + 1) return HeadError::kMalformed;
  std::string_view method = line.substr(0, sp1);
  if (!std::all_of(method.begin(), method.end(), is_tchar)) return HeadError::kMalformed;
  req.method = method_from(method);
  req.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.') return HeadError::kMalformed;
  if (version[5] != '1') return HeadError::kUnsupportedVersion;
  if (version[7] != '0' && version[7] != '1') return HeadError::kUnsupportedVersion;
  req.minor_version = version[7] - '0';
  if (req.target.empty() || req.target.front() != '/') {
    // Absolute form (a proxy request) and asterisk form are not ours to serve.
    if (req.target != "*") return HeadError::kMalformed;
  }
  for (char c : req.target)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7F) return HeadError::kMalformed;
  std::size_t q = req.target.find('?');
  req.path = req.target.substr(0, q);
  req.query = q == std::string_view::npos ? std::string_view() : req.target.substr(q + 1);

  // Header fields: name ":" OWS value OWS.
  req.headers.clear();
  bool keep_alive = req.minor_version == 1;
  bool seen_length = false;
  std::size_t pos = eol == std::string_view::npos ? text.size() : eol + 2;
  while (pos < text.size()) {
    std::size_t end = text.find("\r\n", pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view field = text.substr(pos, end - pos);
    pos = end + 2;
    if (field.empty()) continue;
    if (field.front() == ' ' || field.front() == '\t') return HeadError::kMalformed;  // obs-fold
    std::size_t colon = field.find(':');
    if (colon == std::string_view::npos || colon == 0) return HeadError::kMalformed;
    std::string_view name = field.substr(0, colon);
    // Includes whitespace before the colon, which RFC 9112 5.1 requires a server to reject.
    if (!std::all_of(name.begin(), name.end(), is_tchar)) return HeadError::kMalformed;
    std::string_view value = trim_ows(field.substr(colon + 1));
    for (char c : value)
      if (c == '\0' || c == '\r' || c == '\n') return HeadError::kMalformed;
    req.headers.emplace_back(name, value);

    if (iequals(name, "content-length")) {
      std::int64_t n = 0;
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (value.empty() || value.size() > 15 || ec != std::errc() || p != value.data() + value.size() ||
          !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return HeadError::kBadLength;
      if (seen_length && n != head.content_length) return HeadError::kBadLength;
      seen_length = true;
      head.content_length = n;
    } else if (iequals(name, "transfer-encoding")) {
      return HeadError::kLengthRequired;
    } else if (iequals(name, "expect")) {
      // 100-continue is the only expectation HTTP defines; anything else cannot be met.
      std::string_view list = value;
      while (!list.empty()) {
        std::size_t comma = list.find(',');
        std::string_view token = trim_ows(list.substr(0, comma));
        if (iequals(token, "100-continue"))
          head.expect_continue = req.minor_version == 1;
        else if (!token.empty())
          return HeadError::kExpectation;
        list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
      }
    } else if (iequals(name, "connection")) {
      // A comma list; "close" wins, "keep-alive" asks for it on HTTP/1.0.
      std::string_view list = value;
      while (!list.empty()) {
        std::size_t comma = list.find(',');
        std::string_view token = trim_ows(list.substr(0, comma));
        if (iequals(token, "close"))
          keep_alive = false;
        else if (iequals(token, "keep-alive") && req.minor_version == 0)
          keep_alive = true;
        list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
      }
    }
  }
  if (!seen_length) head.content_length = 0;
  if (head.content_length == 0) head.expect_continue = false;  // nothing to wait for
  req.keep_alive = keep_alive;
  return HeadError::kNone;
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 415:
      return "Unsupported Media Type";
    case 417:
      return "Expectation Failed";
    case 422:
      return "Unprocessable Content";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

void append_header(std::string& headers, std::string_view name, std::string_view value) {
  headers.append(name);
  headers.append(": ");
  headers.append(value);
  headers.append("\r\n");
}

void Response::add_header(std::string_view name, std::string_view value) { append_header(headers, name, value); }

std::string render(const Response& r, bool head_request, bool keep_alive) {
  char digits[24];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, r.body.size());
  std::string_view length(digits, static_cast<std::size_t>(end - digits));
  std::string_view reason = reason_phrase(r.status);
  bool body = !head_request && r.status != 204 && r.status != 304;
  std::string out;
  out.reserve(96 + r.content_type.size() + r.headers.size() + (body ? r.body.size() : 0));
  out.append("HTTP/1.1 ");
  out.append(std::to_string(r.status));
  out += ' ';
  out.append(reason);
  out.append("\r\n");
  if (!r.content_type.empty() && r.status != 204) {
    out.append("Content-Type: ");
    out.append(r.content_type);
    out.append("\r\n");
  }
  out.append(r.headers);
  out.append(keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n");
  if (r.status != 204) {
    out.append("Content-Length: ");
    out.append(length);
    out.append("\r\n");
  }
  out.append("\r\n");
  if (body) out.append(r.body);
  return out;
}

}  // namespace websmtp::daemon::http
