#include "http_client.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <istream>
#include <ostream>

#include <Poco/Exception.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/NetException.h>
#include <Poco/Timespan.h>

#include "version.hpp"
#include "websmtp/common/text.hpp"

namespace websmtp::ctl {
namespace {

// An answer this large is not something websmtpd sends; stop rather than eat memory.
constexpr std::size_t kMaxAnswerBytes = std::size_t{16} * 1024 * 1024;

HttpFailure bad_url(std::string_view text, std::string_view why) {
  return {HttpError::kBadUrl, "invalid URL '" + std::string(text) + "': " + std::string(why)};
}

bool is_host_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '.' || c == '_';
}

bool is_ipv6_literal_char(char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0 || c == ':' || c == '.'; }

Poco::Timespan to_timespan(std::chrono::milliseconds ms) {
  return Poco::Timespan(static_cast<Poco::Timespan::TimeDiff>(ms.count()) * 1000);
}

std::string seconds_text(std::chrono::milliseconds ms) {
  const auto count = ms.count();
  if (count % 1000 == 0) return std::to_string(count / 1000) + " s";
  return std::to_string(count) + " ms";
}

}  // namespace

const char* to_string(HttpError error) {
  switch (error) {
    case HttpError::kCannotConnect:
      return "cannot_connect";
    case HttpError::kTimeout:
      return "timeout";
    case HttpError::kBadUrl:
      return "bad_url";
    case HttpError::kProtocol:
      return "protocol";
  }
  return "protocol";
}

std::optional<std::string> HttpResponse::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (iequals(key, name)) return value;
  }
  return std::nullopt;
}

std::variant<Url, HttpFailure> parse_url(std::string_view text) {
  const auto scheme_end = text.find("://");
  if (scheme_end == std::string_view::npos) return bad_url(text, "expected http://host[:port]");
  const auto scheme = text.substr(0, scheme_end);
  if (iequals(scheme, "https")) {
    return bad_url(text, "https is not supported by websmtpctl; use http:// (through an SSH tunnel or a local proxy)");
  }
  if (!iequals(scheme, "http")) return bad_url(text, "only http:// URLs are supported");

  auto rest = text.substr(scheme_end + 3);
  const auto authority_end = rest.find_first_of("/?#");
  const auto authority = rest.substr(0, authority_end);
  auto path = authority_end == std::string_view::npos ? std::string_view{} : rest.substr(authority_end);

  if (authority.find('@') != std::string_view::npos) {
    return bad_url(text, "user names in the URL are not supported (use --api-key)");
  }

  Url url;
  url.text = std::string(text);
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return bad_url(text, "unterminated IPv6 address");
    const auto host = authority.substr(1, close - 1);
    if (host.empty() || !std::all_of(host.begin(), host.end(), is_ipv6_literal_char)) {
      return bad_url(text, "invalid IPv6 address");
    }
    url.host = std::string(host);
    const auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad_url(text, "unexpected text after the IPv6 address");
      port_text = after.substr(1);
      if (port_text.empty()) return bad_url(text, "empty port");
    }
  } else {
    const auto colon = authority.find(':');
    const auto host = authority.substr(0, colon);
    if (host.empty()) return bad_url(text, "missing host");
    if (!std::all_of(host.begin(), host.end(), is_host_name_char)) return bad_url(text, "invalid host name");
    url.host = std::string(host);
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.empty()) return bad_url(text, "empty port");
    }
  }

  if (!port_text.empty()) {
    unsigned value = 0;
    const auto* end = port_text.data() + port_text.size();
    const auto [ptr, ec] = std::from_chars(port_text.data(), end, value);
    if (ec != std::errc{} || ptr != end || value == 0 || value > 65535 ||
        !std::all_of(port_text.begin(), port_text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return bad_url(text, "invalid port");
    }
    url.port = static_cast<std::uint16_t>(value);
  }

  if (path.find_first_of("?#") != std::string_view::npos) {
    return bad_url(text, "a query or fragment makes no sense in a base URL");
  }
  if (!std::all_of(path.begin(), path.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u > 0x20 && u < 0x7f;
      })) {
    return bad_url(text, "spaces or control characters in the path");
  }
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  url.base_path = std::string(path);
  return url;
}

std::string percent_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) != 0 || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0x0f]);
    }
  }
  return out;
}

bool is_header_safe(std::string_view value) {
  return std::all_of(value.begin(), value.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u >= 0x20 && u != 0x7f) || c == '\t';
  });
}

HttpClient::HttpClient(Url base, std::chrono::milliseconds timeout, std::string bearer)
    : base_(std::move(base)), timeout_(timeout), bearer_(std::move(bearer)) {}

HttpResult HttpClient::get(const std::string& target, std::chrono::milliseconds extra_wait) const {
  return request(Poco::Net::HTTPRequest::HTTP_GET, target, nullptr, {}, timeout_ + extra_wait);
}

HttpResult HttpClient::post_json(const std::string& target, const std::string& json_body,
                                 const std::vector<std::pair<std::string, std::string>>& extra_headers) const {
  return request(Poco::Net::HTTPRequest::HTTP_POST, target, &json_body, extra_headers, timeout_);
}

HttpResult HttpClient::del(const std::string& target) const {
  return request(Poco::Net::HTTPRequest::HTTP_DELETE, target, nullptr, {}, timeout_);
}

HttpResult HttpClient::put(const std::string& target) const {
  static const std::string kEmpty;
  return request(Poco::Net::HTTPRequest::HTTP_PUT, target, &kEmpty, {}, timeout_);
}

HttpResult HttpClient::request(const std::string& method, const std::string& target, const std::string* body,
                               const std::vector<std::pair<std::string, std::string>>& extra_headers,
                               std::chrono::milliseconds read_timeout) const {
  // Errors before the request is on the wire mean "could not reach the server"; after it,
  // the server was reached and misbehaved. The distinction picks the exit code (3 vs 1).
  bool connected = false;
  try {
    Poco::Net::HTTPClientSession session(base_.host, base_.port);
    session.setTimeout(to_timespan(timeout_), to_timespan(timeout_), to_timespan(read_timeout));
    session.setKeepAlive(false);

    Poco::Net::HTTPRequest req(method, base_.base_path + target, Poco::Net::HTTPMessage::HTTP_1_1);
    req.set("User-Agent", std::string("websmtpctl/") + kWebsmtpctlVersion);
    req.set("Accept", "application/json");
    if (!bearer_.empty()) req.set("Authorization", "Bearer " + bearer_);
    for (const auto& [name, value] : extra_headers) req.set(name, value);
    if (body != nullptr) {
      req.setContentType("application/json; charset=utf-8");
      req.setContentLength(static_cast<std::streamsize>(body->size()));
    }

    std::ostream& out = session.sendRequest(req);
    connected = true;
    // Let Poco's own exception (timeout, reset) surface instead of a silent badbit.
    out.exceptions(std::ios::badbit);
    if (body != nullptr) out.write(body->data(), static_cast<std::streamsize>(body->size()));

    Poco::Net::HTTPResponse resp;
    std::istream& in = session.receiveResponse(resp);
    in.exceptions(std::ios::badbit);

    HttpResponse result;
    result.status = static_cast<int>(resp.getStatus());
    for (const auto& [name, value] : resp) result.headers.emplace_back(name, value);
    std::array<char, 8192> buffer{};
    while (in) {
      in.read(buffer.data(), buffer.size());
      result.body.append(buffer.data(), static_cast<std::size_t>(in.gcount()));
      if (result.body.size() > kMaxAnswerBytes) return HttpFailure{HttpError::kProtocol, "answer larger than 16 MiB"};
    }
    return result;
  } catch (const Poco::TimeoutException&) {
    return HttpFailure{HttpError::kTimeout, connected ? "no answer within " + seconds_text(read_timeout)
                                                      : "no connection within " + seconds_text(timeout_)};
  } catch (const Poco::Net::ConnectionRefusedException& e) {
    return HttpFailure{HttpError::kCannotConnect, e.name()};
  } catch (const Poco::Net::DNSException&) {
    return HttpFailure{HttpError::kCannotConnect, "cannot resolve host '" + base_.host + "'"};
  } catch (const Poco::Net::NoMessageException&) {
    return HttpFailure{HttpError::kProtocol, "the server closed the connection without answering"};
  } catch (const Poco::Net::MessageException& e) {
    return HttpFailure{HttpError::kProtocol, "malformed HTTP answer (" + e.displayText() + ")"};
  } catch (const Poco::Exception& e) {
    // Anything else from the socket layer: unreachable network, reset, broken pipe...
    const std::string detail = e.message().empty() ? std::string(e.name()) : e.message();
    return HttpFailure{connected ? HttpError::kProtocol : HttpError::kCannotConnect, detail};
  } catch (const std::exception& e) {
    return HttpFailure{connected ? HttpError::kProtocol : HttpError::kCannotConnect, e.what()};
  }
}

}  // namespace websmtp::ctl
