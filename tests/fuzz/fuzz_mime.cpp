// Message building: a request assembled from the input, validated as the API validates it,
// then rendered (build_message). The rendering must be a 7-bit, CRLF-only RFC 5322 message
// whose header section the client cannot extend or break.
//
// Input: fields separated by 0xFF, list items and header name/value by 0xFE (bytes that never
// occur in UTF-8): from, to, cc, bcc, subject, body, html, reply_to, headers, then one field
// per attachment (filename, content type, raw content). A missing field is left out of the
// request, and so is an empty body next to a non-empty html; invalid UTF-8 is replaced as any
// JSON client would have to.
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.hpp"
#include "websmtp/common/base64.hpp"
#include "websmtp/common/text.hpp"
#include "websmtp/job/validation.hpp"
#include "websmtp/message/mime.hpp"

using namespace websmtp;
using nlohmann::json;

namespace {

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    auto at = s.find(sep, start);
    out.push_back(s.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start));
    if (at == std::string_view::npos) return out;
    start = at + 1;
  }
}

json list(std::string_view field) {
  json out = json::array();
  for (auto item : split(field, '\xFE')) out.push_back(std::string(item));
  return out;
}

std::string request_body(std::string_view input) {
  auto fields = split(input, '\xFF');
  auto field = [&](std::size_t i) -> const std::string_view* { return i < fields.size() ? &fields[i] : nullptr; };
  json req = json::object();
  if (auto f = field(0)) req["from"] = std::string(*f);
  if (auto f = field(1)) req["to"] = list(*f);
  if (auto f = field(2); f && !f->empty()) req["cc"] = list(*f);
  if (auto f = field(3); f && !f->empty()) req["bcc"] = list(*f);
  req["subject"] = field(4) ? std::string(*field(4)) : std::string();
  const bool html = field(6) && !field(6)->empty();
  if (auto f = field(5); f && (!f->empty() || !html)) req["body"] = std::string(*f);
  if (html) req["html"] = std::string(*field(6));
  if (auto f = field(7); f && !f->empty()) req["reply_to"] = std::string(*f);
  if (auto f = field(8); f && !f->empty()) {
    json headers = json::object();
    auto items = split(*f, '\xFE');
    for (std::size_t i = 0; i + 1 < items.size(); i += 2) headers[std::string(items[i])] = std::string(items[i + 1]);
    req["headers"] = std::move(headers);
  }
  json attachments = json::array();
  for (std::size_t i = 9; i < fields.size(); ++i) {
    auto parts = split(fields[i], '\xFE');
    json a = {{"filename", std::string(parts[0])}};
    if (parts.size() > 1 && !parts[1].empty()) a["content_type"] = std::string(parts[1]);
    a["content"] = base64_encode(parts.size() > 2 ? parts[2] : std::string_view());
    attachments.push_back(std::move(a));
  }
  if (!attachments.empty()) req["attachments"] = std::move(attachments);
  return req.dump(-1, ' ', false, json::error_handler_t::replace);
}

void check_message(const std::string& msg, const job::MailRequest& req) {
  FUZZ_CHECK(msg.size() >= 2 && msg.compare(msg.size() - 2, 2, "\r\n") == 0, "does not end with CRLF");
  // CRLF line ends only, lines of at most 998 octets, 7-bit (but for a message/rfc822 attachment
  // that holds 8-bit text: it goes unencoded, RFC 2046 5.2.1), no NUL.
  const bool eight_bit = std::any_of(req.attachments.begin(), req.attachments.end(), [](const job::Attachment& a) {
    return message::is_message_rfc822(a.content_type) && std::any_of(a.content.begin(), a.content.end(), [](char ch) {
             return static_cast<unsigned char>(ch) >= 0x80;
           });
  });
  std::size_t line_start = 0;
  for (std::size_t i = 0; i < msg.size(); ++i) {
    const auto c = static_cast<unsigned char>(msg[i]);
    FUZZ_CHECK(c != 0 && (c < 0x80 || eight_bit), "a NUL or 8-bit byte at " + std::to_string(i));
    if (c == '\r') FUZZ_CHECK(i + 1 < msg.size() && msg[i + 1] == '\n', "bare CR at " + std::to_string(i));
    if (c == '\n') {
      FUZZ_CHECK(i > 0 && msg[i - 1] == '\r', "bare LF at " + std::to_string(i));
      FUZZ_CHECK(i - 1 - line_start <= 998, "a line over 998 octets at " + std::to_string(line_start));
      line_start = i + 1;
    }
  }
  // The header section: field lines ("Name:" with a printable name) and folded continuations;
  // exactly one of each field the gateway writes once, no Bcc.
  const auto end = msg.find("\r\n\r\n");
  FUZZ_CHECK(end != std::string::npos, "no end of header");
  std::string_view head(msg.data(), end + 2);
  int from = 0, subject = 0, content_type = 0, to = 0;
  for (std::size_t pos = 0; pos < head.size();) {
    auto eol = head.find("\r\n", pos);
    std::string_view line = head.substr(pos, eol - pos);
    pos = eol + 2;
    FUZZ_CHECK(!line.empty(), "empty header line");
    if (line.front() == ' ' || line.front() == '\t') {
      FUZZ_CHECK(line.find_first_not_of(" \t") != std::string_view::npos, "whitespace-only continuation");
      continue;
    }
    auto colon = line.find(':');
    FUZZ_CHECK(colon != std::string_view::npos && colon > 0, std::string(line));
    std::string_view name = line.substr(0, colon);
    for (char c : name) FUZZ_CHECK(c > 32 && c < 127, std::string(line));
    FUZZ_CHECK(!iequals(name, "Bcc"), "a Bcc header");
    from += iequals(name, "From");
    to += iequals(name, "To");
    subject += iequals(name, "Subject");
    content_type += iequals(name, "Content-Type");
  }
  FUZZ_CHECK(from == 1 && subject == 1 && content_type == 1 && to == (req.to.empty() ? 0 : 1),
             "a header the gateway writes is missing or repeated");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string body = request_body(std::string_view(reinterpret_cast<const char*>(data), size));
  auto req = job::parse_request(body, job::Limits{100});
  if (!req) return 0;
  message::BuildOptions opts;
  opts.date_unix = static_cast<std::int64_t>(size) * 86'400 * 97;  // any date; kept deterministic
  opts.message_id = "<fuzz@example.org>";
  check_message(message::build_message(*req, opts), *req);
  return 0;
}
