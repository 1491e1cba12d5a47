#include <gtest/gtest.h>

#include "websmtp/job/validation.hpp"

using namespace websmtp;
using namespace websmtp::job;

namespace {
Result<MailRequest> parse(const std::string& body, int max_recipients = 1000) {
  return parse_request(body, Limits{max_recipients});
}
void expect_error(const std::string& body, ErrorKind kind, const std::string& code, const std::string& field = "") {
  auto r = parse(body);
  ASSERT_FALSE(r.has_value()) << body;
  EXPECT_EQ(r.error().kind, kind) << body;
  EXPECT_EQ(r.error().code, code) << body;
  if (!field.empty()) {
    EXPECT_EQ(r.error().field, field) << body;
  }
  EXPECT_FALSE(r.error().message.empty());
}
}  // namespace

TEST(Validation, AcceptsTheSeedRequest) {
  auto r = parse(
      R"({"from":"Alice <alice@example.org>","to":["bob@example.net","Carol <carol@example.com>"],"subject":"Hello World","body":"hello"})");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->from.display_name, "Alice");
  EXPECT_EQ(r->from.address, "alice@example.org");
  ASSERT_EQ(r->to.size(), 2u);
  EXPECT_EQ(r->to[1].display_name, "Carol");
  EXPECT_EQ(r->to[1].address, "carol@example.com");
  EXPECT_EQ(r->text, "hello");
}

TEST(Validation, AcceptsExtensions) {
  auto r = parse(R"({"from":"a@b.cc","to":["x@y.zz"],"cc":["c@y.zz"],"bcc":["d@y.zz"],"reply_to":"help@b.cc",
    "subject":"","html":"<p>hi</p>","headers":{"X-Campaign":"welcome"},
    "attachments":[{"filename":"a.txt","content_type":"text/plain","content":"aGVsbG8="}]})");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->bcc.size(), 1u);
  EXPECT_EQ(r->reply_to->address, "help@b.cc");
  EXPECT_FALSE(r->text);
  EXPECT_EQ(r->html, "<p>hi</p>");
  EXPECT_EQ(r->attachments.at(0).content, "hello");
  EXPECT_EQ(r->headers.at(0).first, "X-Campaign");
}

TEST(Validation, RefusesMalformedJson) {
  expect_error("{", ErrorKind::kInvalid, "invalid_json");
  expect_error("", ErrorKind::kInvalid, "invalid_json");
  expect_error("[1,2]", ErrorKind::kInvalid, "invalid_json");
  expect_error("\"string\"", ErrorKind::kInvalid, "invalid_json");
  expect_error("{\"from\":\"a@b.cc\",\"to\":[\"\xff\"]}", ErrorKind::kInvalid, "invalid_json");  // invalid UTF-8
}

TEST(Validation, RefusesWrongTypes) {
  expect_error(R"({"from":1,"to":["x@y.zz"],"subject":"s","body":"b"})", ErrorKind::kInvalid, "invalid_type", "from");
  expect_error(R"({"from":"a@b.cc","to":5,"subject":"s","body":"b"})", ErrorKind::kInvalid, "invalid_type", "to");
  expect_error(R"({"from":"a@b.cc","to":[5],"subject":"s","body":"b"})", ErrorKind::kInvalid, "invalid_type", "to[0]");
  expect_error(R"({"from":"a@b.cc","to":["x@y.zz"],"subject":1,"body":"b"})", ErrorKind::kInvalid, "invalid_type",
               "subject");
  expect_error(R"({"from":"a@b.cc","to":["x@y.zz"],"subject":"s","body":["b"]})", ErrorKind::kInvalid, "invalid_type",
               "body");
  expect_error(R"({"from":"a@b.cc","to":["x@y.zz"],"subject":"s","body":"b","headers":[]})", ErrorKind::kInvalid,
               "invalid_type", "headers");
  expect_error(R"({"from":"a@b.cc","to":["x@y.zz"],"subject":"s","body":"b","headers":{"X-A":1}})", ErrorKind::kInvalid,
               "invalid_type", "headers.X-A");
}

TEST(Validation, RefusesMissingFields) {
  expect_error(R"({"to":["x@y.zz"],"subject":"s","body":"b"})", ErrorKind::kInvalid, "missing_field", "from");
  expect_error(R"({"from":"a@b.cc","subject":"s","body":"b"})", ErrorKind::kInvalid, "missing_field", "to");
  expect_error(R"({"from":"a@b.cc","to":[],"subject":"s","body":"b"})", ErrorKind::kInvalid, "missing_field", "to");
  expect_error(R"({"from":"a@b.cc","to":["x@y.zz"],"body":"b"})", ErrorKind::kInvalid, "missing_field", "subject");
  expect_error(R"({"from":"a@b.cc","to":["x@y.zz"],"subject":"s"})", ErrorKind::kInvalid, "missing_field", "body");
}

TEST(Validation, RefusesBadAddresses) {
  for (const char* bad : {"nobody", "a b@c.dd", "a@b@c.dd", "<>", "a@", "@b.cc", "a..b@c.dd", "a@-b.cc", "a@b_c.dd",
                          "Name <a@b.cc", "Name a@b.cc>"}) {
    auto body = std::string(R"({"from":"a@b.cc","to":[")") + bad + R"("],"subject":"s","body":"b"})";
    expect_error(body, ErrorKind::kInvalid, "invalid_address", "to[0]");
  }
  EXPECT_TRUE(is_valid_address("first.last+tag@sub.example.co.uk"));
  EXPECT_TRUE(is_valid_address("\"quoted local\"@example.com"));
  EXPECT_TRUE(is_valid_address("user@[192.0.2.1]"));
  EXPECT_FALSE(is_valid_address(std::string(65, 'a') + "@example.com"));
  // A quoted pair escapes printable ASCII only (found by fuzz_address: "\<0x8F>" passed).
  EXPECT_TRUE(is_valid_address(R"("a\"b\\c"@example.com)"));
  EXPECT_FALSE(is_valid_address("\"a\\\x8f\"@example.com"));
  EXPECT_FALSE(is_valid_address("\"a\\\x01\"@example.com"));
  EXPECT_FALSE(is_valid_address("\"a\\\t\"@example.com"));
}

TEST(Validation, AcceptsAUtf8LocalPartAndRefusesBrokenUtf8) {
  // RFC 6531 3.3: UTF-8 in the local part; the SMTP session then needs a peer with SMTPUTF8.
  EXPECT_TRUE(is_valid_address("j\xC3\xBCrgen@example.de"));
  EXPECT_TRUE(is_valid_address("\xE7\x94\xA8\xE6\x88\xB7.\xF0\x9F\x98\x80@example.cn"));
  EXPECT_TRUE(is_valid_address("\"gr\xC3\xBC\xC3\x9F dich\"@example.de"));
  EXPECT_TRUE(parse_mailbox("J\xC3\xBCrgen <j\xC3\xBCrgen@example.de>", "to[0]"));
  EXPECT_FALSE(is_valid_address("j\xC3@example.de")) << "cut short";
  EXPECT_FALSE(is_valid_address("j\xC0\xBC@example.de")) << "overlong";
  EXPECT_FALSE(is_valid_address("j\xED\xA0\x80@example.de")) << "a surrogate";
  EXPECT_FALSE(is_valid_address("j\xBC@example.de")) << "a lone continuation byte";
}

TEST(Validation, AcceptsAnInternationalisedDomainInEveryAddressField) {
  // IDNA2008 U-labels; the address stays as given (the status shows it so), the envelope and
  // the headers carry its A-labels.
  EXPECT_TRUE(is_valid_address("user@bücher.example"));
  EXPECT_TRUE(is_valid_address("user@BÜCHER.example")) << "libidn2 maps case (UTS #46)";
  EXPECT_TRUE(is_valid_address("user@mail.bücher.example"));
  EXPECT_TRUE(is_valid_address("jürgen@bücher.example")) << "a UTF-8 local part too";
  EXPECT_TRUE(is_valid_address("user@xn--bcher-kva.example")) << "the A-label form as before";
  auto r = parse(R"({"from":"Anna <anna@bücher.example>","to":["user@bücher.example"],"cc":["c@straße.de"],)"
                 R"("bcc":["b@bücher.example"],"reply_to":"help@bücher.example","subject":"s","body":"b"})");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->from.address, "anna@bücher.example");
  EXPECT_EQ(r->to[0].address, "user@bücher.example");
  EXPECT_EQ(r->cc[0].address, "c@straße.de");
  EXPECT_EQ(r->bcc[0].address, "b@bücher.example");
  EXPECT_EQ(r->reply_to->address, "help@bücher.example");
}

TEST(Validation, RefusesAnInvalidInternationalisedDomainNamingTheField) {
  std::string long_label;  // 60 x "ü": a label over 63 octets once encoded
  for (int i = 0; i < 60; ++i) long_label += "ü";
  std::string encodes_to_64(60, 'a');  // "xn--", 60 a's, "-" and the code of "ü": over 63 octets
  encodes_to_64 += "ü";
  for (const std::string& bad :
       {std::string("u@\u2603.example"),  // DISALLOWED in IDNA2008
        "u@" + long_label + ".example", "u@" + encodes_to_64 + ".example", std::string("u@-bücher.example"),
        std::string("u@bücher..example"), std::string("u@a_b.bücher.example"), std::string("u@[bücher]")}) {
    expect_error(R"({"from":"a@b.cc","to":[")" + bad + R"("],"subject":"s","body":"b"})", ErrorKind::kInvalid,
                 "invalid_address", "to[0]");
    expect_error(R"({"from":"a@b.cc","to":["x@y.zz"],"cc":["c@y.zz",")" + bad + R"("],"subject":"s","body":"b"})",
                 ErrorKind::kInvalid, "invalid_address", "cc[1]");
    expect_error(R"({"from":"a@b.cc","to":["x@y.zz"],"bcc":[")" + bad + R"("],"subject":"s","body":"b"})",
                 ErrorKind::kInvalid, "invalid_address", "bcc[0]");
    expect_error(R"({"from":")" + bad + R"(","to":["x@y.zz"],"subject":"s","body":"b"})", ErrorKind::kInvalid,
                 "invalid_address", "from");
    expect_error(R"({"from":"a@b.cc","reply_to":")" + bad + R"(","to":["x@y.zz"],"subject":"s","body":"b"})",
                 ErrorKind::kInvalid, "invalid_address", "reply_to");
  }
  // The answer says why, in words a client can act on.
  auto mb = parse_mailbox("u@\xE2\x98\x83.example", "to[0]");
  ASSERT_FALSE(mb);
  EXPECT_NE(mb.error().message.find("IDNA2008"), std::string::npos) << mb.error().message;
  // Broken UTF-8 never comes through JSON, but is_valid_address sees raw text too.
  EXPECT_FALSE(is_valid_address(std::string("u@b\xFF") + "cher.example"));
  EXPECT_FALSE(is_valid_address(std::string("u@b\xC3") + "cher.example"));
  // 254 octets as given but longer with the domain in A-labels.
  std::string local(64, 'l');
  std::string domain;
  while (domain.size() < 180) domain += "ü.";
  domain += "de";
  ASSERT_LE(local.size() + 1 + domain.size(), 254u);
  EXPECT_FALSE(is_valid_address(local + "@" + domain));
}

TEST(Validation, QuotesABadAddressWithoutCuttingACharacter) {
  // 99 ASCII bytes then "ö" (2 bytes): a cut at byte 100 would split it (found by fuzz_address).
  std::string address(99, 'a');
  address += "\xc3\xb6@x.yz";
  auto mb = parse_mailbox(address, "to[0]");
  ASSERT_FALSE(mb);
  EXPECT_NE(mb.error().message.find(std::string(99, 'a') + "'"), std::string::npos) << mb.error().message;
  EXPECT_NO_THROW(nlohmann::json(mb.error().message).dump());  // valid UTF-8

  std::string name(79, 'X');
  name += "\xc3\xb6";
  auto err = check_custom_header(name, "v", "headers.x");
  ASSERT_TRUE(err);
  EXPECT_NO_THROW(nlohmann::json(err->message).dump());
}

TEST(Validation, ParsesQuotedDisplayNames) {
  auto mb = parse_mailbox(R"("Doe, John" <john@example.com>)", "from");
  ASSERT_TRUE(mb);
  EXPECT_EQ(mb->display_name, "Doe, John");
  EXPECT_EQ(mb->address, "john@example.com");
  auto utf8 = parse_mailbox("Jürgen Groß <j@example.de>", "from");
  ASSERT_TRUE(utf8);
  EXPECT_EQ(utf8->display_name, "Jürgen Groß");
}

TEST(Validation, RefusesCrLfAndNulInEveryHeaderValue) {
  expect_error(R"({"from":"a@b.cc","to":["x@y.zz"],"subject":"hi\r\nBcc: victim@example.com","body":"b"})",
               ErrorKind::kInvalid, "header_injection", "subject");
  expect_error(R"({"from":"a@b.cc","to":["x@y.zz"],"subject":"hi\nX: y","body":"b"})", ErrorKind::kInvalid,
               "header_injection", "subject");
  expect_error(R"({"from":"a@b.cc","to":["x@y.zz"],"subject":"hi\u0000","body":"b"})", ErrorKind::kInvalid,
               "header_injection", "subject");
  expect_error(R"({"from":"Eve\r\nBcc: v@x.yy <a@b.cc>","to":["x@y.zz"],"subject":"s","body":"b"})",
               ErrorKind::kInvalid, "header_injection", "from");
  expect_error(R"({"from":"a@b.cc","to":["x@y.zz\r\nRCPT TO:<v@x.yy>"],"subject":"s","body":"b"})", ErrorKind::kInvalid,
               "header_injection", "to[0]");
  expect_error(R"({"from":"a@b.cc","to":["x@y.zz"],"cc":["c@y.zz\n"],"subject":"s","body":"b"})", ErrorKind::kInvalid,
               "header_injection", "cc[0]");
  expect_error(R"({"from":"a@b.cc","to":["x@y.zz"],"reply_to":"r@y.zz\r","subject":"s","body":"b"})",
               ErrorKind::kInvalid, "header_injection", "reply_to");
  expect_error(R"({"from":"a@b.cc","to":["x@y.zz"],"subject":"s","body":"b","headers":{"X-A":"v\r\nBcc: v@x.yy"}})",
               ErrorKind::kInvalid, "header_injection", "headers.X-A");
  expect_error(R"({"from":"a@b.cc","to":["x@y.zz"],"subject":"s","body":"b","headers":{"X-A\r\nBcc":"v"}})",
               ErrorKind::kInvalid, "header_injection");
  expect_error(R"({"from":"a@b.cc","to":["x@y.zz"],"subject":"s","body":"b\u0000"})", ErrorKind::kInvalid,
               "invalid_body", "body");
}

TEST(Validation, RefusesReservedCustomHeaders) {
  for (const char* name : {"From", "to", "CC", "Bcc", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type",
                           "content-transfer-encoding", "Reply-To"}) {
    auto body =
        std::string(R"({"from":"a@b.cc","to":["x@y.zz"],"subject":"s","body":"b","headers":{")") + name + R"(":"v"}})";
    expect_error(body, ErrorKind::kInvalid, "reserved_header");
  }
  expect_error(R"({"from":"a@b.cc","to":["x@y.zz"],"subject":"s","body":"b","headers":{"X A":"v"}})",
               ErrorKind::kInvalid, "invalid_header");
}

TEST(Validation, CountsEveryRecipientAgainstTheLimit) {
  auto r = parse(
      R"({"from":"a@b.cc","to":["x@y.zz","y@y.zz"],"cc":["c@y.zz"],"bcc":["d@y.zz"],"subject":"s","body":"b"})", 3);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, ErrorKind::kUnprocessable);
  EXPECT_EQ(r.error().code, "too_many_recipients");
  EXPECT_TRUE(parse(R"({"from":"a@b.cc","to":["x@y.zz","y@y.zz"],"cc":["c@y.zz"],"subject":"s","body":"b"})", 3));
}

TEST(Validation, AcceptsThousandsOfRecipients) {
  std::string body = R"({"from":"a@b.cc","to":[)";
  for (int i = 0; i < 5000; ++i) {
    // Appended piece by piece: `"literal" + std::string&&` trips GCC 12's false -Wrestrict (its bug 105651).
    if (i > 0) body += ',';
    body += "\"user";
    body += std::to_string(i);
    body += "@example.com\"";
  }
  body += R"(],"subject":"s","body":"b"})";
  auto r = parse(body, 5000);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->to.size(), 5000u);
  EXPECT_EQ(r->to.front().address, "user0@example.com");
  EXPECT_EQ(r->to.back().address, "user4999@example.com");
}

TEST(Validation, RefusesBadAttachments) {
  expect_error(
      R"({"from":"a@b.cc","to":["x@y.zz"],"subject":"s","body":"b","attachments":[{"filename":"a","content":"@@@"}]})",
      ErrorKind::kInvalid, "invalid_attachment");
  expect_error(
      R"({"from":"a@b.cc","to":["x@y.zz"],"subject":"s","body":"b","attachments":[{"filename":"../etc/passwd","content":""}]})",
      ErrorKind::kInvalid, "invalid_attachment");
  expect_error(
      R"({"from":"a@b.cc","to":["x@y.zz"],"subject":"s","body":"b","attachments":[{"filename":"a\r\n","content":""}]})",
      ErrorKind::kInvalid, "header_injection");
  expect_error(
      R"({"from":"a@b.cc","to":["x@y.zz"],"subject":"s","body":"b","attachments":[{"filename":"a","content_type":"text/plain\r\nX: y","content":""}]})",
      ErrorKind::kInvalid, "invalid_attachment");
}

namespace {
// A job with html and the given attachments (a JSON array's inside).
std::string with_attachments(const std::string& attachments, bool html = true) {
  return std::string(R"({"from":"a@b.cc","to":["x@y.zz"],"subject":"s","body":"b",)") +
         (html ? R"("html":"<img src=\"cid:logo\">",)" : "") + R"("attachments":[)" + attachments + "]}";
}
std::string inline_part(const std::string& content_id_json) {
  return R"({"filename":"logo.png","content_type":"image/png","content":"iVBORw==","content_id":)" + content_id_json +
         "}";
}
}  // namespace

TEST(Validation, AcceptsContentIdsForInlineParts) {
  auto r = parse(with_attachments(inline_part(R"("logo")") + "," + inline_part(R"("part1.abc$x@mail.example.org")") +
                                  "," + R"({"filename":"a.pdf","content":"","content_id":null})"));
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->attachments.size(), 3u);
  EXPECT_EQ(r->attachments[0].content_id, "logo");
  EXPECT_EQ(r->attachments[1].content_id, "part1.abc$x@mail.example.org");
  EXPECT_EQ(r->attachments[2].content_id, "") << "null: a regular attachment";
  EXPECT_TRUE(parse(with_attachments(inline_part('"' + std::string(kMaxContentIdBytes, 'x') + '"'))));
}

TEST(Validation, RefusesMalformedContentIdsNamingTheField) {
  const std::string field = "attachments[1].content_id";
  for (const char* bad :
       {R"("")",    R"("<logo>")", R"("lo<go")", R"("logo>")",  R"("a b")",  R"("a@b@c")",     R"("@b")",
        R"("a@")",  R"(".logo")",  R"("logo.")", R"("lo..go")", R"("a@.b")", R"("a\"b")",      R"("a,b")",
        "\"a(b)\"", R"("a[b]")",   R"("a:b")",   R"("a;b")",    R"("a\\b")", R"("l\u00f6go")", R"("a\tb")"}) {
    SCOPED_TRACE(bad);
    expect_error(with_attachments(inline_part(R"("ok")") + "," + inline_part(bad)), ErrorKind::kInvalid,
                 "invalid_attachment", field);
  }
  expect_error(with_attachments(inline_part(R"("ok")") + "," +
                                inline_part('"' + std::string(kMaxContentIdBytes + 1, 'x') + '"')),
               ErrorKind::kInvalid, "invalid_attachment", field);
  expect_error(with_attachments(inline_part(R"("ok")") + "," + inline_part("7")), ErrorKind::kInvalid, "invalid_type",
               field);
  for (const char* injected : {R"("a\r\nX-Evil: 1")", R"("a\nb")", R"("a\u0000b")"}) {
    SCOPED_TRACE(injected);
    expect_error(with_attachments(inline_part(R"("ok")") + "," + inline_part(injected)), ErrorKind::kInvalid,
                 "header_injection", field);
  }
}

TEST(Validation, RefusesTheSameContentIdTwiceWhateverTheCase) {
  expect_error(
      with_attachments(inline_part(R"("logo")") + "," + inline_part(R"("banner")") + "," + inline_part(R"("LOGO")")),
      ErrorKind::kInvalid, "invalid_attachment", "attachments[2].content_id");
  auto r = parse(with_attachments(inline_part(R"("logo")")));
  ASSERT_TRUE(r);
}

TEST(Validation, RefusesAContentIdWithoutHtml) {
  auto r = parse(with_attachments(R"({"filename":"a.pdf","content":""},)" + inline_part(R"("logo")"), false));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "invalid_attachment");
  EXPECT_EQ(r.error().field, "attachments[1].content_id");
  EXPECT_NE(r.error().message.find("no html"), std::string::npos) << r.error().message;
  EXPECT_TRUE(parse(with_attachments(R"({"filename":"a.pdf","content":""})", false))) << "regular ones need no html";
}
