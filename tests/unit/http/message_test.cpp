// The daemon's HTTP/1.1 request-head parser and answer rendering, without a server.
#include "http/message.hpp"

#include <gtest/gtest.h>

#include "http/error_status.hpp"

using namespace websmtp;
using namespace websmtp::daemon::http;

namespace {
HeadError parse(const std::string& head, Request& req, Head& h) {
  req.raw = head;
  return parse_head(req, req.raw.size(), h);
}
HeadError parse(const std::string& head) {
  Request req;
  Head h;
  return parse(head, req, h);
}
}  // namespace

TEST(HttpHead, ParsesRequestLineHeadersAndQuery) {
  Request req;
  Head h;
  ASSERT_EQ(parse("POST /mail/status/abc?wait=5&since=not%20started HTTP/1.1\r\nHost: x\r\nContent-Length:  12 \r\n"
                  "X-Empty:",
                  req, h),
            HeadError::kNone);
  EXPECT_EQ(req.method, Method::kPost);
  EXPECT_EQ(req.path, "/mail/status/abc");
  EXPECT_EQ(req.query_param("wait"), "5");
  EXPECT_EQ(req.query_param("since"), "not started");
  EXPECT_FALSE(req.query_param("nope"));
  EXPECT_EQ(h.content_length, 12);
  EXPECT_EQ(req.header("content-length"), "12");
  EXPECT_EQ(req.header("X-EMPTY"), "");
  EXPECT_TRUE(req.keep_alive);
}

TEST(HttpHead, ConnectionHeaderDecidesKeepAlive) {
  Request req;
  Head h;
  ASSERT_EQ(parse("GET / HTTP/1.1\r\nConnection: Keep-Alive, close", req, h), HeadError::kNone);
  EXPECT_FALSE(req.keep_alive);
  ASSERT_EQ(parse("GET / HTTP/1.0", req, h), HeadError::kNone);
  EXPECT_FALSE(req.keep_alive);
  ASSERT_EQ(parse("GET / HTTP/1.0\r\nConnection: keep-alive", req, h), HeadError::kNone);
  EXPECT_TRUE(req.keep_alive);
}

TEST(HttpHead, RefusesWhatTwoParsersCouldReadDifferently) {
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nContent-Length : 3"), HeadError::kMalformed);  // RFC 9112 5.1
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nX-A: 1\r\n folded"), HeadError::kMalformed);   // obs-fold
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4"), HeadError::kBadLength);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nContent-Length: +3"), HeadError::kBadLength);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nContent-Length: 3, 3"), HeadError::kBadLength);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nContent-Length: 99999999999999999999"), HeadError::kBadLength);
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked"), HeadError::kLengthRequired);
  EXPECT_EQ(parse("GET /a b HTTP/1.1"), HeadError::kMalformed);
  EXPECT_EQ(parse("GET http://x/ HTTP/1.1"), HeadError::kMalformed);
  EXPECT_EQ(parse("G(T / HTTP/1.1"), HeadError::kMalformed);
  EXPECT_EQ(parse("GET / HTTP/2.0"), HeadError::kUnsupportedVersion);
  EXPECT_EQ(parse("GET /"), HeadError::kMalformed);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nNoColon"), HeadError::kMalformed);
  EXPECT_EQ(parse(std::string("GET / HTTP/1.1\r\nX: a\0b", 22)), HeadError::kMalformed);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3"), HeadError::kNone);
}

TEST(HttpAnswer, RendersStatusHeadersAndLength) {
  Response r;
  r.status = 202;
  r.add_header("Location", "/mail/status/x");
  r.body = R"({"ref":"x"})";
  std::string out = render(r, false, true);
  EXPECT_EQ(out,
            "HTTP/1.1 202 Accepted\r\nContent-Type: application/json; charset=utf-8\r\nLocation: /mail/status/x\r\n"
            "Connection: keep-alive\r\nContent-Length: 11\r\n\r\n{\"ref\":\"x\"}");
}

TEST(HttpAnswer, HeadAnswersCarryNoBodyAndNoContentHasNoLength) {
  Response r;
  r.body = "\"ok\"";
  std::string head = render(r, true, false);
  EXPECT_NE(head.find("Content-Length: 4\r\n"), std::string::npos);
  EXPECT_EQ(head.substr(head.size() - 4), "\r\n\r\n");
  EXPECT_NE(head.find("Connection: close"), std::string::npos);
  Response none;
  none.status = 204;
  std::string n = render(none, false, true);
  EXPECT_EQ(n.find("Content-Length"), std::string::npos);
  EXPECT_EQ(n.find("Content-Type"), std::string::npos);
}

TEST(HttpStatus, EveryErrorKindHasOneStatus) {
  EXPECT_EQ(http_status(ErrorKind::kInvalid), 400);
  EXPECT_EQ(http_status(ErrorKind::kUnprocessable), 422);
  EXPECT_EQ(http_status(ErrorKind::kTooLarge), 413);
  EXPECT_EQ(http_status(ErrorKind::kNotFound), 404);
  EXPECT_EQ(http_status(ErrorKind::kConflict), 409);
  EXPECT_EQ(http_status(ErrorKind::kUnavailable), 503);
  EXPECT_EQ(http_status(ErrorKind::kTimeout), 408);
  auto r = error_response(Error{ErrorKind::kUnavailable, "store_unavailable", "retry", ""});
  EXPECT_EQ(r.status, 503);
  EXPECT_NE(r.headers.find("Retry-After: 5"), std::string::npos);
  EXPECT_EQ(r.body, R"({"code":"store_unavailable","error":"retry"})");
}

// Short strings live inside the object (small-string optimisation): moving a request moves
// their bytes, and its views must follow them (a 2-byte body once reached handlers as "\0}").
TEST(HttpHead, MovedRequestsKeepTheirViews) {
  Request req;
  Head h;
  ASSERT_EQ(parse("GET /a?b=c HTTP/1.1\r\nX: y", req, h), HeadError::kNone);
  req.body_buf = "{}";
  req.body = req.body_buf;
  Request moved(std::move(req));
  Request again;
  again = std::move(moved);
  EXPECT_EQ(again.body, "{}");
  EXPECT_EQ(again.body.data(), again.body_buf.data());
  EXPECT_EQ(again.path, "/a");
  EXPECT_EQ(again.query_param("b"), "c");
  EXPECT_EQ(again.header("x"), "y");
  EXPECT_EQ(again.path.data(), again.raw.data() + 4);
}

TEST(HttpHead, ExpectContinueIsNotedOnHttp11WithABody) {
  Request req;
  Head h;
  ASSERT_EQ(parse("POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 5", req, h), HeadError::kNone);
  EXPECT_TRUE(h.expect_continue);
  // Nothing to wait for without a body; an HTTP/1.0 client's expectation is ignored (RFC 9110 10.1.1).
  ASSERT_EQ(parse("POST / HTTP/1.1\r\nExpect: 100-continue", req, h), HeadError::kNone);
  EXPECT_FALSE(h.expect_continue);
  ASSERT_EQ(parse("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5", req, h), HeadError::kNone);
  EXPECT_FALSE(h.expect_continue);
  // A head parsed into a reused Head starts afresh.
  ASSERT_EQ(parse("POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5", req, h), HeadError::kNone);
  ASSERT_EQ(parse("POST / HTTP/1.1\r\nContent-Length: 5", req, h), HeadError::kNone);
  EXPECT_FALSE(h.expect_continue);
}

TEST(HttpHead, AnyOtherExpectationCannotBeMet) {
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nExpect: 200-ok\r\nContent-Length: 5"), HeadError::kExpectation);
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nExpect: 100-continue, x\r\nContent-Length: 5"), HeadError::kExpectation);
  auto r = expectation_failed_response();
  EXPECT_EQ(r.status, 417);
  EXPECT_NE(render(r, false, false).find("HTTP/1.1 417 Expectation Failed\r\n"), std::string::npos);
}

TEST(HttpHead, WhitespaceAroundAFieldNameIsRefused) {
  // RFC 9112 5.1: a server must reject whitespace between a field name and its colon (400).
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost : x"), HeadError::kMalformed);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost\t: x"), HeadError::kMalformed);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nExpect :100-continue\r\nContent-Length: 1"), HeadError::kMalformed);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost:x"), HeadError::kNone);  // no whitespace after the colon is fine
}
