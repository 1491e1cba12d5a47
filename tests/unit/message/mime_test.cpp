#include "websmtp/message/mime.hpp"
#include "websmtp/job/validation.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace websmtp::message {
namespace {

using namespace std::string_literals;

// Tiny decoders: the tests check that what the renderer writes decodes back to the input, which
// is what a mail client will do, rather than pinning exact encoded bytes.

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;  // padding, CR, LF
}

std::string decode_base64(std::string_view s) {
  std::string out;
  unsigned bits = 0;
  int count = 0;
  for (char c : s) {
    const int v = base64_value(c);
    if (v < 0) continue;
    bits = (bits << 6) | static_cast<unsigned>(v);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out += static_cast<char>((bits >> count) & 0xFF);
    }
  }
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -100;  // lowercase or garbage: RFC 2045 wants uppercase, so fail loudly
}

std::string decode_quoted_printable(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '=') {
      out += s[i];
    } else if (s.substr(i + 1, 2) == "\r\n") {
      i += 2;  // soft line break
    } else {
      const int v = hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]);
      EXPECT_GE(v, 0) << "bad escape at " << i;
      out += static_cast<char>(v);
      i += 2;
    }
  }
  return out;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// RFC 2047 for the only form the renderer writes (UTF-8, B); whitespace between adjacent
// encoded-words is dropped as section 6.2 requires.
std::string decode_words(std::string_view v) {
  std::string out;
  std::string pending_space;
  bool previous_encoded = false;
  std::size_t i = 0;
  while (i < v.size()) {
    if (v[i] == ' ' || v[i] == '\t') {
      pending_space += v[i++];
      continue;
    }
    std::size_t end = v.find_first_of(" \t", i);
    if (end == std::string_view::npos) end = v.size();
    const std::string_view token = v.substr(i, end - i);
    const bool encoded = token.size() >= 12 && token.starts_with("=?UTF-8?B?") && token.ends_with("?=");
    if (!(encoded && previous_encoded)) out += pending_space;
    pending_space.clear();
    out += encoded ? decode_base64(token.substr(10, token.size() - 12)) : std::string(token);
    previous_encoded = encoded;
    i = end;
  }
  return out + pending_space;
}

bool is_valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (std::size_t k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += len;
  }
  return true;
}

std::vector<std::string_view> split_lines(std::string_view msg) {
  std::vector<std::string_view> lines;
  std::size_t start = 0;
  while (start < msg.size()) {
    std::size_t end = msg.find("\r\n", start);
    if (end == std::string_view::npos) end = msg.size();
    lines.push_back(msg.substr(start, end - start));
    start = end + 2;
  }
  return lines;
}

// CRLF everywhere (no bare CR or LF), the message ends with CRLF, and no line is longer than `limit`.
void expect_lines(std::string_view msg, std::size_t limit) {
  ASSERT_FALSE(msg.empty());
  EXPECT_TRUE(msg.ends_with("\r\n"));
  std::size_t longest = 0;
  for (std::string_view line : split_lines(msg)) {
    EXPECT_EQ(line.find_first_of("\r\n"), std::string_view::npos) << "bare CR or LF in: " << line.substr(0, 80);
    longest = std::max(longest, line.size());
  }
  EXPECT_LE(longest, limit);
}

struct Parsed {
  std::vector<std::pair<std::string, std::string>> headers;  // unfolded values
  std::string body;

  std::optional<std::string> header(std::string_view name) const {
    for (const auto& [n, v] : headers) {
      if (n == name) return v;
    }
    return std::nullopt;
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& h : headers) out.push_back(h.first);
    return out;
  }
};

Parsed parse(std::string_view msg) {
  Parsed p;
  const std::size_t end = msg.find("\r\n\r\n");
  EXPECT_NE(end, std::string_view::npos);
  for (std::string_view line : split_lines(msg.substr(0, end + 2))) {
    if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
      p.headers.back().second += line;  // unfolding removes only the CRLF
      continue;
    }
    const std::size_t colon = line.find(':');
    EXPECT_NE(colon, std::string_view::npos) << line;
    std::string_view value = line.substr(colon + 1);
    if (value.starts_with(' ')) value.remove_prefix(1);
    p.headers.emplace_back(std::string(line.substr(0, colon)), std::string(value));
  }
  p.body = std::string(msg.substr(end + 4));
  return p;
}

std::string boundary_of(std::string_view content_type) {
  const std::size_t at = content_type.find("boundary=\"");
  EXPECT_NE(at, std::string_view::npos) << content_type;
  const std::size_t start = at + 10;
  return std::string(content_type.substr(start, content_type.find('"', start) - start));
}

// The body parts between delimiters; expects the closing delimiter.
std::vector<std::string> split_multipart(std::string_view body, const std::string& boundary) {
  const std::string delimiter = "--" + boundary;
  std::vector<std::string> parts;
  std::size_t pos = body.starts_with(delimiter) ? 0 : body.find("\r\n" + delimiter) + 2;
  while (true) {
    const std::size_t after = pos + delimiter.size();
    if (body.substr(after, 2) == "--") break;  // close-delimiter
    EXPECT_EQ(body.substr(after, 2), "\r\n");
    const std::size_t start = after + 2;
    const std::size_t next = body.find("\r\n" + delimiter, start);
    if (next == std::string_view::npos) {
      ADD_FAILURE() << "no closing delimiter for " << boundary;
      break;
    }
    parts.emplace_back(body.substr(start, next - start));
    pos = next + 2;
  }
  return parts;
}

job::MailRequest basic_request() {
  job::MailRequest req;
  req.from = {"Sender", "sender@sender.example.org"};
  req.to = {{"", "alice@example.com"}};
  req.subject = "Hello";
  req.text = "Hi there.\n";
  return req;
}

BuildOptions fixed_options() {
  BuildOptions opts;
  opts.message_id_domain = "mail.example.net";
  opts.date_unix = 1767434645;
  return opts;
}

std::string build(const job::MailRequest& req) { return build_message(req, fixed_options()); }

bool is_hex_id(std::string_view id, std::string_view domain) {
  if (id.size() != 32 + domain.size() + 3 || id.front() != '<' || id.back() != '>') return false;
  for (char c : id.substr(1, 32)) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return id.substr(33, 1) == "@" && id.substr(34, domain.size()) == domain;
}

TEST(Mime, WritesHeadersInOrder) {
  auto req = basic_request();
  req.cc = {{"", "carol@example.com"}};
  req.reply_to = job::Mailbox{"", "replies@example.com"};
  req.headers = {{"X-Campaign", "spring"}, {"List-Unsubscribe", "<mailto:unsub@example.com>"}};
  const Parsed p = parse(build(req));
  const std::vector<std::string> expected = {"Date",         "From",
                                             "To",           "Cc",
                                             "Reply-To",     "Subject",
                                             "Message-ID",   "MIME-Version",
                                             "X-Campaign",   "List-Unsubscribe",
                                             "Content-Type", "Content-Transfer-Encoding"};
  EXPECT_EQ(p.names(), expected);
  EXPECT_EQ(p.header("Date"), "Sat, 03 Jan 2026 10:04:05 +0000");
  EXPECT_EQ(p.header("From"), "Sender <sender@sender.example.org>");
  EXPECT_EQ(p.header("To"), "alice@example.com");
  EXPECT_EQ(p.header("Cc"), "carol@example.com");
  EXPECT_EQ(p.header("Reply-To"), "replies@example.com");
  EXPECT_EQ(p.header("Subject"), "Hello");
  EXPECT_EQ(p.header("MIME-Version"), "1.0");
  EXPECT_EQ(p.header("X-Campaign"), "spring");
  EXPECT_EQ(p.header("List-Unsubscribe"), "<mailto:unsub@example.com>");
  EXPECT_EQ(p.header("Content-Type"), "text/plain; charset=utf-8");
  EXPECT_EQ(p.header("Content-Transfer-Encoding"), "7bit");
  EXPECT_EQ(p.body, "Hi there.\r\n");
}

TEST(Mime, OmitsEmptyOptionalHeadersButKeepsSubject) {
  auto req = basic_request();
  req.to.clear();
  req.bcc = {{"", "hidden@example.com"}};
  req.subject.clear();
  const Parsed p = parse(build(req));
  const std::vector<std::string> expected = {
      "Date", "From", "Subject", "Message-ID", "MIME-Version", "Content-Type", "Content-Transfer-Encoding"};
  EXPECT_EQ(p.names(), expected);
  EXPECT_EQ(p.header("Subject"), "");
}

TEST(Mime, NeverWritesBcc) {
  auto req = basic_request();
  req.bcc = {{"Secret Person", "secret@hidden.example"}, {"", "other-secret@hidden.example"}};
  req.headers = {{"Bcc", "secret@hidden.example"}, {"bcc", "x@hidden.example"}};
  const std::string msg = build(req);
  EXPECT_EQ(msg.find("hidden.example"), std::string::npos);
  EXPECT_EQ(msg.find("Secret"), std::string::npos);
  for (const auto& name : parse(msg).names()) EXPECT_FALSE(name == "Bcc" || name == "bcc") << name;
}

TEST(Mime, DropsCustomHeadersThatDuplicateGeneratedOnes) {
  auto req = basic_request();
  req.headers = {{"content-type", "text/html"}, {"Subject", "spoof"}, {"X-Keep", "yes"}, {"Content-Language", "de"}};
  const Parsed p = parse(build(req));
  int content_types = 0;
  for (const auto& [name, value] : p.headers) {
    EXPECT_NE(value, "spoof");
    if (name == "Content-Type" || name == "content-type") ++content_types;
  }
  EXPECT_EQ(content_types, 1);
  EXPECT_EQ(p.header("X-Keep"), "yes");
  // Every Content-* header belongs to the MIME structure the gateway writes.
  EXPECT_FALSE(p.header("Content-Language"));
}

// Validation refuses exactly the headers that building would drop: one list, no disagreement.
TEST(Mime, ReservedHeadersAreTheOnesValidationRefuses) {
  for (std::string name : {"From", "to", "CC", "Bcc", "Subject", "Date", "Message-ID", "MIME-Version", "Reply-To",
                           "Sender", "Return-Path", "Content-Type", "content-transfer-encoding", "Content-Language",
                           "X-Campaign", "List-Unsubscribe", "Keywords", "Comments"}) {
    bool refused = job::check_custom_header(name, "v", "headers." + name).has_value();
    auto req = basic_request();
    req.headers = {{name, "custom-value"}};
    bool dropped = build(req).find(name + ": custom-value") == std::string::npos;
    EXPECT_EQ(refused, dropped) << name;
    EXPECT_EQ(refused, message::is_reserved_header(name)) << name;
  }
}

TEST(Mime, UsesCrlfEverywhere) {
  auto req = basic_request();
  req.text = "line1\nline2\rline3\r\nline4\n\n\r\rend";
  req.html = "<p>a</p>\n<p>b</p>\r";
  req.attachments = {{"a.txt", "text/plain", "x\ny\r"}};
  const std::string msg = build(req);
  expect_lines(msg, 78);
  const Parsed p = parse(msg);
  const auto mixed = split_multipart(p.body, boundary_of(*p.header("Content-Type")));
  ASSERT_EQ(mixed.size(), 2u);
  const Parsed alternative = parse(mixed[0]);
  const auto parts = split_multipart(alternative.body, boundary_of(*alternative.header("Content-Type")));
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parse(parts[0]).body, "line1\r\nline2\r\nline3\r\nline4\r\n\r\n\r\n\r\nend");
  EXPECT_EQ(parse(parts[1]).body, "<p>a</p>\r\n<p>b</p>\r\n");
}

TEST(Mime, EncodesNonAsciiSubject) {
  auto req = basic_request();
  req.subject = "Grüße 🎉";
  const std::string msg = build(req);
  const auto subject = parse(msg).header("Subject");
  ASSERT_TRUE(subject);
  EXPECT_TRUE(subject->starts_with("=?UTF-8?B?")) << *subject;
  EXPECT_EQ(decode_words(*subject), "Grüße 🎉");
  expect_lines(msg, 78);
  for (char c : msg) EXPECT_LT(static_cast<unsigned char>(c), 0x80);
}

TEST(Mime, FoldsLongEncodedSubjectOnCharacterBoundaries) {
  std::string subject;
  for (int i = 0; i < 40; ++i) subject += "Grüße 🎉 ñ ";
  auto req = basic_request();
  req.subject = subject;
  const std::string msg = build(req);
  expect_lines(msg, 78);
  const auto header = parse(msg).header("Subject");
  ASSERT_TRUE(header);
  EXPECT_EQ(decode_words(*header), subject);
  const std::string encoded = encode_word(subject);
  std::size_t start = 0;
  while (start < encoded.size()) {
    std::size_t end = encoded.find(' ', start);
    if (end == std::string::npos) end = encoded.size();
    const std::string_view word = std::string_view(encoded).substr(start, end - start);
    EXPECT_LE(word.size(), 75u);
    EXPECT_TRUE(is_valid_utf8(decode_base64(word.substr(10, word.size() - 12)))) << word;
    start = end + 1;
  }
}

TEST(Mime, EncodeWordLeavesPlainAsciiUnchanged) {
  EXPECT_EQ(encode_word(""), "");
  EXPECT_EQ(encode_word("Quarterly report, v2 (final)!"), "Quarterly report, v2 (final)!");
  const std::string tricky = encode_word("looks like =?UTF-8?B?eA==?= but is not");
  EXPECT_TRUE(tricky.starts_with("=?UTF-8?B?"));
  EXPECT_EQ(decode_words(tricky), "looks like =?UTF-8?B?eA==?= but is not");
  EXPECT_EQ(decode_words(encode_word("tab\there")), "tab\there");
  EXPECT_EQ(decode_words(encode_word("bell\a")), "bell\a");
}

TEST(Mime, FoldsLongAsciiSubjectAtSpaces) {
  std::string subject;
  for (int i = 0; i < 60; ++i) subject += "word" + std::to_string(i) + " ";
  subject += "end";
  auto req = basic_request();
  req.subject = subject;
  const std::string msg = build(req);
  expect_lines(msg, 78);
  EXPECT_EQ(parse(msg).header("Subject"), subject);
}

TEST(Mime, EncodesUnfoldableAsciiSubject) {
  auto req = basic_request();
  req.subject = std::string(2000, 'x');
  const std::string msg = build(req);
  expect_lines(msg, 78);
  EXPECT_EQ(decode_words(*parse(msg).header("Subject")), req.subject);
}

TEST(Mime, EncodesNonAsciiDisplayName) {
  const std::string formatted = format_mailbox({"Jürgen Müller 🎉", "j@example.com"});
  EXPECT_TRUE(formatted.starts_with("=?UTF-8?B?")) << formatted;
  ASSERT_TRUE(formatted.ends_with(" <j@example.com>")) << formatted;
  EXPECT_EQ(decode_words(formatted.substr(0, formatted.size() - 16)), "Jürgen Müller 🎉");

  auto req = basic_request();
  req.from = {"Grüße GmbH", "info@example.de"};
  const std::string from = *parse(build(req)).header("From");
  EXPECT_EQ(from, encode_word("Grüße GmbH") + " <info@example.de>");
}

TEST(Mime, QuotesDisplayNamesWithSpecials) {
  EXPECT_EQ(format_mailbox({"", "bare@example.com"}), "bare@example.com");
  EXPECT_EQ(format_mailbox({"John Doe", "john@example.com"}), "John Doe <john@example.com>");
  EXPECT_EQ(format_mailbox({"Doe, John", "john@example.com"}), "\"Doe, John\" <john@example.com>");
  EXPECT_EQ(format_mailbox({"J. Doe", "j@example.com"}), "\"J. Doe\" <j@example.com>");
  EXPECT_EQ(format_mailbox({"Say \"hi\" \\o/", "s@example.com"}), "\"Say \\\"hi\\\" \\\\o/\" <s@example.com>");

  auto req = basic_request();
  req.to = {{"Doe, John", "john@example.com"}, {"Roe, Jane", "jane@example.com"}};
  EXPECT_EQ(parse(build(req)).header("To"), "\"Doe, John\" <john@example.com>, \"Roe, Jane\" <jane@example.com>");
}

TEST(Mime, PureAsciiBodyIsSevenBit) {
  auto req = basic_request();
  req.text = std::string(998, 'a') + "\n" + "short line";
  const std::string msg = build(req);
  const Parsed p = parse(msg);
  EXPECT_EQ(p.header("Content-Transfer-Encoding"), "7bit");
  EXPECT_EQ(p.body, std::string(998, 'a') + "\r\nshort line\r\n");
  expect_lines(msg, 998);
}

TEST(Mime, NonAsciiBodyRoundTripsThroughQuotedPrintable) {
  auto req = basic_request();
  req.text = "é = x \nend\t\nGrüße 🎉 and a NUL \0 byte\n"s;
  const std::string msg = build(req);
  const Parsed p = parse(msg);
  EXPECT_EQ(p.header("Content-Transfer-Encoding"), "quoted-printable");
  EXPECT_TRUE(p.body.starts_with("=C3=A9 =3D x=20\r\nend=09\r\n")) << p.body;
  EXPECT_EQ(decode_quoted_printable(p.body), "é = x \r\nend\t\r\nGrüße 🎉 and a NUL \0 byte\r\n"s);
  expect_lines(msg, 78);
}

TEST(Mime, LongSingleLineBodyUsesShortQuotedPrintableLines) {
  std::string text;
  for (std::size_t i = 0; text.size() < 100 * 1024; ++i) text += "lorem ipsum=dolor " + std::to_string(i) + " ";
  auto req = basic_request();
  req.text = text;
  const std::string msg = build(req);
  const Parsed p = parse(msg);
  EXPECT_EQ(p.header("Content-Transfer-Encoding"), "quoted-printable");
  for (std::string_view line : split_lines(p.body)) EXPECT_LE(line.size(), 76u);
  EXPECT_EQ(decode_quoted_printable(p.body), text + "\r\n");
  expect_lines(msg, 78);
}

TEST(Mime, FiveMegabyteBodyKeepsLinesShort) {
  std::string text;
  text.reserve(5 * 1024 * 1024 + 64);
  for (std::size_t i = 0; text.size() < 5 * 1024 * 1024; ++i) {
    text += "Größe ";
    text += std::to_string(i * 7919 % 10007);
    text += i % 1000 == 999 ? "\n" : " =\t";  // lines of ~14 KB, far over 998 octets
  }
  auto req = basic_request();
  req.text = text;
  req.html = "<pre>" + text + "</pre>";
  const std::string msg = build(req);
  expect_lines(msg, 78);
  const Parsed p = parse(msg);
  const auto parts = split_multipart(p.body, boundary_of(*p.header("Content-Type")));
  ASSERT_EQ(parts.size(), 2u);
  std::string normalised;
  for (char c : text) normalised += c == '\n' ? std::string("\r\n") : std::string(1, c);
  EXPECT_EQ(decode_quoted_printable(parse(parts[0]).body), normalised);
}

TEST(Mime, TextAndHtmlMakeMultipartAlternative) {
  auto req = basic_request();
  req.text = "Hello, plain.\n";
  req.html = "<p>Hello, <b>html</b>.</p>\n";
  const std::string msg = build(req);
  expect_lines(msg, 78);
  const Parsed p = parse(msg);
  const std::string type = *p.header("Content-Type");
  EXPECT_TRUE(type.starts_with("multipart/alternative;")) << type;
  EXPECT_EQ(p.header("Content-Transfer-Encoding"), std::nullopt);
  const std::string boundary = boundary_of(type);
  ASSERT_EQ(boundary.size(), 26u);
  EXPECT_TRUE(boundary.starts_with("=_"));
  EXPECT_TRUE(msg.ends_with("\r\n--" + boundary + "--\r\n"));
  const auto parts = split_multipart(p.body, boundary);
  ASSERT_EQ(parts.size(), 2u);
  const Parsed text = parse(parts[0]);
  const Parsed html = parse(parts[1]);
  EXPECT_EQ(text.header("Content-Type"), "text/plain; charset=utf-8");
  EXPECT_EQ(text.body, "Hello, plain.\r\n");
  EXPECT_EQ(html.header("Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(html.body, "<p>Hello, <b>html</b>.</p>\r\n");
}

TEST(Mime, HtmlOnlyIsSingleHtmlPart) {
  auto req = basic_request();
  req.text.reset();
  req.html = "<p>only html</p>";
  const Parsed p = parse(build(req));
  EXPECT_EQ(p.header("Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(p.body, "<p>only html</p>\r\n");
}

TEST(Mime, NoBodyGivesEmptyTextPart) {
  auto req = basic_request();
  req.text.reset();
  const std::string msg = build(req);
  const Parsed p = parse(msg);
  EXPECT_EQ(p.header("Content-Type"), "text/plain; charset=utf-8");
  EXPECT_EQ(p.body, "");
  EXPECT_TRUE(msg.ends_with("7bit\r\n\r\n"));
}

TEST(Mime, AttachmentRoundTripsThroughBase64) {
  std::string content;
  for (int i = 0; i < 5000; ++i) content += static_cast<char>(i * 31 % 256);
  auto req = basic_request();
  req.html = "<p>see attached</p>";
  req.attachments = {{"report.pdf", "application/pdf", content}, {"empty.bin", "", ""}};
  const std::string msg = build(req);
  expect_lines(msg, 78);
  const Parsed p = parse(msg);
  const std::string type = *p.header("Content-Type");
  EXPECT_TRUE(type.starts_with("multipart/mixed;")) << type;
  const auto mixed = split_multipart(p.body, boundary_of(type));
  ASSERT_EQ(mixed.size(), 3u);
  EXPECT_TRUE(parse(mixed[0]).header("Content-Type")->starts_with("multipart/alternative;"));

  const Parsed pdf = parse(mixed[1]);
  EXPECT_EQ(pdf.header("Content-Type"), "application/pdf; name=\"report.pdf\"");
  EXPECT_EQ(pdf.header("Content-Disposition"), "attachment; filename=\"report.pdf\"");
  EXPECT_EQ(pdf.header("Content-Transfer-Encoding"), "base64");
  const auto lines = split_lines(pdf.body);
  for (std::size_t i = 0; i + 1 < lines.size(); ++i) EXPECT_EQ(lines[i].size(), 76u);
  EXPECT_EQ(decode_base64(pdf.body), content);

  const Parsed empty = parse(mixed[2]);
  EXPECT_EQ(empty.header("Content-Type"), "application/octet-stream; name=\"empty.bin\"");
  EXPECT_EQ(empty.body, "");
}

TEST(Mime, NonAsciiAttachmentNameUsesRfc2231) {
  auto req = basic_request();
  req.attachments = {{"Bericht Übersicht €.pdf", "application/pdf", "%PDF"}};
  const Parsed p = parse(build(req));
  const auto mixed = split_multipart(p.body, boundary_of(*p.header("Content-Type")));
  ASSERT_EQ(mixed.size(), 2u);
  const Parsed part = parse(mixed[1]);
  EXPECT_EQ(part.header("Content-Disposition"),
            "attachment; filename*=UTF-8''Bericht%20%C3%9Cbersicht%20%E2%82%AC.pdf");
  const std::string type = *part.header("Content-Type");
  ASSERT_TRUE(type.starts_with("application/pdf; name=\"=?UTF-8?B?")) << type;
  ASSERT_TRUE(type.ends_with("?=\"")) << type;
  EXPECT_EQ(decode_words(type.substr(23, type.size() - 24)), "Bericht Übersicht €.pdf") << type;
  EXPECT_EQ(decode_base64(part.body), "%PDF");
}

TEST(Mime, LongAttachmentNameUsesRfc2231Continuations) {
  std::string filename;
  for (int i = 0; i < 30; ++i) filename += "Übersicht-";
  filename += ".pdf";
  auto req = basic_request();
  req.attachments = {{filename, "application/pdf", "x"}};
  const std::string msg = build(req);
  expect_lines(msg, 78);
  const Parsed p = parse(msg);
  const auto mixed = split_multipart(p.body, boundary_of(*p.header("Content-Type")));
  ASSERT_EQ(mixed.size(), 2u);
  const std::string disposition = *parse(mixed[1]).header("Content-Disposition");
  std::string joined;
  for (int k = 0;; ++k) {
    const std::string key = "filename*" + std::to_string(k) + "*=";
    const std::size_t at = disposition.find(key);
    if (at == std::string::npos) break;
    const std::size_t start = at + key.size();
    const std::size_t end = disposition.find(';', start);
    joined += disposition.substr(start, end == std::string::npos ? std::string::npos : end - start);
  }
  ASSERT_TRUE(joined.starts_with("UTF-8''")) << disposition;
  EXPECT_EQ(percent_decode(joined.substr(7)), filename);
}

TEST(Mime, FoldsThousandsOfRecipients) {
  auto req = basic_request();
  req.to.clear();
  std::string expected;
  for (int i = 0; i < 3000; ++i) {
    req.to.push_back({i % 3 == 0 ? "User " + std::to_string(i) : "", "user" + std::to_string(i) + "@example.com"});
    if (i > 0) expected += ", ";
    expected += format_mailbox(req.to.back());
  }
  req.cc = req.to;
  const std::string msg = build(req);
  expect_lines(msg, 78);
  const Parsed p = parse(msg);
  EXPECT_EQ(p.header("To"), expected);
  EXPECT_EQ(p.header("Cc"), expected);
}

TEST(Mime, KeepsLinesUnder998WithHugeDisplayNames) {
  auto req = basic_request();
  req.to = {{std::string(3000, 'n'), "a@example.com"},
            {"Quote \"" + std::string(1500, '"') + "\"", "b@example.com"},
            {std::string(1200, 'w') + " x", "c@example.com"}};
  req.headers = {{"X-Long", std::string(1500, 'v')}};
  const std::string msg = build(req);
  expect_lines(msg, 78);
  const std::string to = *parse(msg).header("To");
  EXPECT_NE(to.find("<a@example.com>"), std::string::npos);
  EXPECT_EQ(decode_words(*parse(msg).header("X-Long")), std::string(1500, 'v'));
}

TEST(Mime, EncodesNonAsciiCustomHeaderValues) {
  auto req = basic_request();
  req.headers = {{"X-Greeting", "Schöne Grüße"}};
  const auto value = parse(build(req)).header("X-Greeting");
  ASSERT_TRUE(value);
  EXPECT_TRUE(value->starts_with("=?UTF-8?B?"));
  EXPECT_EQ(decode_words(*value), "Schöne Grüße");
}

TEST(Mime, WritesAnInternationalisedDomainAsALabels) {
  auto req = basic_request();
  req.from = {"Anna", "anna@bücher.example"};
  req.to = {{"", "user@bücher.example"}, {"Bob Ü", "Bob@Straße.de"}};
  req.cc = {{"", "c@mail.bücher.example"}};
  req.reply_to = job::Mailbox{"", "help@bücher.example"};
  const std::string message = build(req);
  const Parsed p = parse(message);
  EXPECT_EQ(p.header("From"), "Anna <anna@xn--bcher-kva.example>");
  EXPECT_EQ(p.header("To"), "user@xn--bcher-kva.example, =?UTF-8?B?Qm9iIMOc?= <Bob@xn--strae-oqa.de>");
  EXPECT_EQ(p.header("Cc"), "c@mail.xn--bcher-kva.example");
  EXPECT_EQ(p.header("Reply-To"), "help@xn--bcher-kva.example");
  // The whole message stays ASCII: a peer without SMTPUTF8 (or 8BITMIME) takes it.
  EXPECT_TRUE(std::all_of(message.begin(), message.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; }));
}

TEST(Mime, KeepsAnAddressWithAUtf8LocalPartAsGiven) {
  // Its header is an RFC 6532 one anyway (sent only with SMTPUTF8): the domain may stay in U-labels.
  auto req = basic_request();
  req.to = {{"", "jürgen@bücher.example"}, {"", "user@bücher.example"}};
  const Parsed p = parse(build(req));
  EXPECT_EQ(p.header("To"), "jürgen@bücher.example, user@xn--bcher-kva.example");
}

TEST(Mime, MessageIdOfAnInternationalisedSenderUsesItsALabels) {
  BuildOptions opts = fixed_options();
  opts.message_id_domain.clear();
  auto req = basic_request();
  req.from = {"", "anna@Bücher.example"};
  const auto id = parse(build_message(req, opts)).header("Message-ID");
  ASSERT_TRUE(id);
  EXPECT_TRUE(is_hex_id(*id, "xn--bcher-kva.example")) << *id;
}

TEST(Mime, MessageIdUsesConfiguredDomain) {
  const auto id = parse(build(basic_request())).header("Message-ID");
  ASSERT_TRUE(id);
  EXPECT_TRUE(is_hex_id(*id, "mail.example.net")) << *id;
}

TEST(Mime, MessageIdFallsBackToSenderDomain) {
  BuildOptions opts = fixed_options();
  opts.message_id_domain.clear();
  const auto id = parse(build_message(basic_request(), opts)).header("Message-ID");
  ASSERT_TRUE(id);
  EXPECT_TRUE(is_hex_id(*id, "sender.example.org")) << *id;
}

TEST(Mime, UsesGivenMessageId) {
  BuildOptions opts = fixed_options();
  opts.message_id = "<fixed.123@example.net>";
  EXPECT_EQ(parse(build_message(basic_request(), opts)).header("Message-ID"), "<fixed.123@example.net>");
}

TEST(Mime, RandomMessageIdsAreHexAndDistinct) {
  const std::string a = random_message_id("example.com");
  const std::string b = random_message_id("example.com");
  EXPECT_TRUE(is_hex_id(a, "example.com")) << a;
  EXPECT_TRUE(is_hex_id(b, "example.com")) << b;
  EXPECT_NE(a, b);
}

TEST(Mime, FormatsDateInUtc) {
  EXPECT_EQ(format_date(1767434645), "Sat, 03 Jan 2026 10:04:05 +0000");
  EXPECT_EQ(format_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
  EXPECT_EQ(format_date(951782400), "Tue, 29 Feb 2000 00:00:00 +0000");
  EXPECT_EQ(format_date(-1), "Wed, 31 Dec 1969 23:59:59 +0000");
  EXPECT_EQ(format_date(4102444799), "Thu, 31 Dec 2099 23:59:59 +0000");
}

// --- Inline parts, attachment names, 7-bit output ------------------------------------------

// The value of parameter `name` as a mail client reads it: quoted (unescaped), RFC 2231
// (`name*=`, or continuations `name*0*=` ...) or RFC 2047 encoded-words inside the quotes.
std::optional<std::string> param(std::string_view header, std::string_view name) {
  const std::string plain = "; " + std::string(name) + "=\"";
  if (const std::size_t at = header.find(plain); at != std::string_view::npos) {
    std::string value;
    for (std::size_t i = at + plain.size(); i < header.size() && header[i] != '"'; ++i) {
      if (header[i] == '\\') ++i;
      value += header[i];
    }
    return decode_words(value);
  }
  std::string joined;
  const std::string single = std::string(name) + "*=";
  if (const std::size_t at = header.find(single); at != std::string_view::npos) {
    const std::size_t start = at + single.size();
    joined = std::string(header.substr(start, header.find(';', start) - start));
  } else {
    for (int k = 0;; ++k) {
      const std::string key = std::string(name) + "*" + std::to_string(k) + "*=";
      const std::size_t at = header.find(key);
      if (at == std::string_view::npos) break;
      const std::size_t start = at + key.size();
      joined += header.substr(start, header.find(';', start) - start);
    }
  }
  if (!joined.starts_with("UTF-8''")) return std::nullopt;
  return percent_decode(joined.substr(7));
}

std::string content_type_of(const std::string& entity) { return parse(entity).header("Content-Type").value_or(""); }

std::vector<std::string> parts_of(const std::string& entity) {
  const Parsed p = parse(entity);
  return split_multipart(p.body, boundary_of(*p.header("Content-Type")));
}

std::string binary_content() {
  std::string content;
  for (int i = 0; i < 512; ++i) content += static_cast<char>(i % 256);
  return content;
}

job::MailRequest rich_request() {
  auto req = basic_request();
  req.text = "Plain text.\n";
  req.html = "<p><img src=\"cid:logo\"> <img src=\"cid:banner@example.org\"></p>\n";
  req.attachments = {{"report.pdf", "application/pdf", "%PDF-1.4"},
                     {"logo.png", "image/png", binary_content(), "logo"},
                     {"Übersicht.csv", "text/csv", "a;b\r\n", ""},
                     {"bänner.gif", "image/gif", "GIF89a", "banner@example.org"}};
  return req;
}

TEST(Mime, InlinePartsTravelWithTheHtmlInMultipartRelated) {
  const std::string msg = build(rich_request());
  expect_lines(msg, 78);
  EXPECT_TRUE(content_type_of(msg).starts_with("multipart/mixed;"));
  const auto mixed = parts_of(msg);
  ASSERT_EQ(mixed.size(), 3u) << "the body, then the regular attachments in order";
  EXPECT_TRUE(content_type_of(mixed[0]).starts_with("multipart/alternative;"));
  EXPECT_EQ(param(*parse(mixed[1]).header("Content-Disposition"), "filename"), "report.pdf");
  EXPECT_EQ(param(*parse(mixed[2]).header("Content-Disposition"), "filename"), "Übersicht.csv");
  EXPECT_EQ(parse(mixed[1]).header("Content-ID"), std::nullopt);

  const auto alternative = parts_of(mixed[0]);
  ASSERT_EQ(alternative.size(), 2u);
  EXPECT_EQ(content_type_of(alternative[0]), "text/plain; charset=utf-8");
  const std::string related_type = content_type_of(alternative[1]);
  EXPECT_TRUE(related_type.starts_with("multipart/related; type=\"text/html\";")) << related_type;

  const auto related = parts_of(alternative[1]);
  ASSERT_EQ(related.size(), 3u) << "the html first (the root), then the inline parts in order";
  EXPECT_EQ(content_type_of(related[0]), "text/html; charset=utf-8");
  EXPECT_EQ(parse(related[0]).body, "<p><img src=\"cid:logo\"> <img src=\"cid:banner@example.org\"></p>\r\n");

  const Parsed logo = parse(related[1]);
  EXPECT_EQ(logo.header("Content-Type"), "image/png; name=\"logo.png\"");
  EXPECT_EQ(logo.header("Content-Disposition"), "inline; filename=\"logo.png\"");
  EXPECT_EQ(logo.header("Content-ID"), "<logo>");
  EXPECT_EQ(logo.header("Content-Transfer-Encoding"), "base64");
  EXPECT_EQ(decode_base64(logo.body), binary_content());

  const Parsed banner = parse(related[2]);
  EXPECT_EQ(banner.header("Content-ID"), "<banner@example.org>");
  EXPECT_TRUE(banner.header("Content-Disposition")->starts_with("inline; "));
  EXPECT_EQ(param(*banner.header("Content-Disposition"), "filename"), "bänner.gif");
  EXPECT_EQ(param(*banner.header("Content-Type"), "name"), "bänner.gif");
  EXPECT_EQ(decode_base64(banner.body), "GIF89a");
}

TEST(Mime, HtmlWithInlinePartsAloneIsMultipartRelated) {
  auto req = rich_request();
  req.text.reset();
  req.attachments = {req.attachments[1]};
  const std::string msg = build(req);
  expect_lines(msg, 78);
  EXPECT_TRUE(content_type_of(msg).starts_with("multipart/related; type=\"text/html\";")) << content_type_of(msg);
  const auto related = parts_of(msg);
  ASSERT_EQ(related.size(), 2u);
  EXPECT_EQ(content_type_of(related[0]), "text/html; charset=utf-8");
  EXPECT_EQ(parse(related[1]).header("Content-ID"), "<logo>");
  EXPECT_TRUE(msg.ends_with("--\r\n"));
}

TEST(Mime, HtmlWithInlinePartsAndAttachmentsNeedsNoAlternative) {
  auto req = rich_request();
  req.text.reset();
  const auto mixed = parts_of(build(req));
  ASSERT_EQ(mixed.size(), 3u);
  EXPECT_TRUE(content_type_of(mixed[0]).starts_with("multipart/related;")) << content_type_of(mixed[0]);
  EXPECT_EQ(parts_of(mixed[0]).size(), 3u);
}

TEST(Mime, TextHtmlAndInlinePartsNeedNoMixed) {
  auto req = rich_request();
  req.attachments = {req.attachments[1], req.attachments[3]};
  const std::string msg = build(req);
  EXPECT_TRUE(content_type_of(msg).starts_with("multipart/alternative;")) << content_type_of(msg);
  const auto alternative = parts_of(msg);
  ASSERT_EQ(alternative.size(), 2u);
  EXPECT_EQ(parts_of(alternative[1]).size(), 3u);
}

TEST(Mime, InlinePartsWithoutHtmlAreSentAsAttachments) {
  // Validation refuses this; the renderer still loses nothing.
  auto req = rich_request();
  req.html.reset();
  const auto mixed = parts_of(build(req));
  ASSERT_EQ(mixed.size(), 5u);
  EXPECT_EQ(content_type_of(mixed[0]), "text/plain; charset=utf-8");
  EXPECT_EQ(parse(mixed[2]).header("Content-ID"), std::nullopt);
  EXPECT_TRUE(parse(mixed[2]).header("Content-Disposition")->starts_with("attachment;"));
}

TEST(Mime, BoundariesOfEveryLevelAreDistinct) {
  const std::string msg = build(rich_request());
  const auto mixed = parts_of(msg);
  const std::string b1 = boundary_of(content_type_of(msg));
  const std::string b2 = boundary_of(content_type_of(mixed[0]));
  const std::string b3 = boundary_of(content_type_of(parts_of(mixed[0])[1]));
  EXPECT_NE(b1, b2);
  EXPECT_NE(b2, b3);
  EXPECT_NE(b1, b3);
}

TEST(Mime, AttachmentNamesDecodeBackExactly) {
  std::string long_name;
  for (int i = 0; i < 20; ++i) long_name += "Größenänderung-日本語-";
  long_name += ".pdf";
  std::string long_ascii(200, 'a');
  long_ascii += " b.txt";
  const std::vector<std::string> names = {"plain.txt",     "with space & \"quotes\" \\ back.txt",
                                          "Bericht €.pdf", "=?UTF-8?B?Zm9v?=.txt",
                                          "tab\there.txt", long_name,
                                          long_ascii,      "\xF0\x9F\x98\x80 emoji.png"};
  auto req = basic_request();
  for (const auto& n : names) req.attachments.push_back({n, "application/octet-stream", "x"});
  const std::string msg = build(req);
  expect_lines(msg, 78);
  const auto mixed = parts_of(msg);
  ASSERT_EQ(mixed.size(), names.size() + 1);
  for (std::size_t i = 0; i < names.size(); ++i) {
    SCOPED_TRACE(names[i]);
    const Parsed part = parse(mixed[i + 1]);
    EXPECT_EQ(param(*part.header("Content-Disposition"), "filename"), names[i]) << *part.header("Content-Disposition");
    EXPECT_EQ(param(*part.header("Content-Type"), "name"), names[i]) << *part.header("Content-Type");
  }
  EXPECT_TRUE(parse(mixed[4]).header("Content-Disposition")->starts_with("attachment; filename*=UTF-8''%3D%3F"))
      << "an ASCII name that looks like an encoded-word is not left for a decoder to decode";
}

TEST(Mime, MessagesAreSevenBitWhateverTheInput) {
  auto req = rich_request();
  req.subject = "Grüße aus Köln 🎉";
  req.text = "Grüße\n";
  req.html = "<p>日本語 <img src=\"cid:logo\"></p>";
  req.from.display_name = "Jürgen";
  req.headers = {{"X-Note", "naïve"}};
  const std::string msg = build(req);
  EXPECT_TRUE(std::all_of(msg.begin(), msg.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; }));
}

}  // namespace
}  // namespace websmtp::message
