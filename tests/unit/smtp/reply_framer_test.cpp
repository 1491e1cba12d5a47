#include <gtest/gtest.h>

#include <string>

#include "websmtp/smtp/reply_reader.hpp"

using websmtp::smtp::ReplyFramer;
using websmtp::smtp::Response;
using Step = ReplyFramer::Step;

namespace {
// The one reply framed from `bytes`.
Response frame(std::string_view bytes) {
  ReplyFramer f;
  f.append(bytes);
  Response r;
  EXPECT_EQ(f.next(r), Step::kReply);
  EXPECT_FALSE(f.started()) << "nothing left over";
  return r;
}
}  // namespace

TEST(ReplyFramer, TakesASingleLineReplyOrABareCode) {
  Response r = frame("250 2.1.0 Ok\r\n");
  EXPECT_EQ(r.code, 250);
  EXPECT_EQ(r.text, "2.1.0 Ok");
  Response bare = frame("221\r\n");
  EXPECT_EQ(bare.code, 221);
  EXPECT_EQ(bare.text, "");
}

TEST(ReplyFramer, JoinsAMultiLineReplyAndKeepsItsLines) {
  Response r = frame("250-mail.example.net\r\n250-PIPELINING\r\n250 STARTTLS\r\n");
  EXPECT_EQ(r.code, 250);
  EXPECT_EQ(r.text, "mail.example.net; PIPELINING; STARTTLS");
  EXPECT_EQ(r.lines, (std::vector<std::string>{"mail.example.net", "PIPELINING", "STARTTLS"}));
}

TEST(ReplyFramer, WaitsForTheFinalLineAcrossReads) {
  ReplyFramer f;
  Response r;
  f.append("250-first\r");
  EXPECT_EQ(f.next(r), Step::kNeedMore);
  EXPECT_TRUE(f.started());
  f.append("\n250 la");
  EXPECT_EQ(f.next(r), Step::kNeedMore);
  EXPECT_TRUE(f.started());
  f.append("st\n");  // a bare LF ends a line too
  ASSERT_EQ(f.next(r), Step::kReply);
  EXPECT_EQ(r.text, "first; last");
}

TEST(ReplyFramer, SeparatesPipelinedReplies) {
  ReplyFramer f;
  f.append("250 sender ok\r\n550 5.1.1 no such user\r\n354 go ahead\r\n");
  Response r;
  std::vector<int> codes;
  while (f.next(r) == Step::kReply) codes.push_back(r.code);
  EXPECT_EQ(codes, (std::vector<int>{250, 550, 354}));
}

TEST(ReplyFramer, GarbageIsAReplyWithCodeZeroAndTheLineAsText) {
  Response r = frame("HTTP/1.1 400 Bad Request\r\n");
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.text, "HTTP/1.1 400 Bad Request");
  EXPECT_EQ(frame("250-ok\r\n25x broken\r\n").code, 0) << "a bad line in the middle of a multi-line reply";
}

TEST(ReplyFramer, LinesAreCappedAt4KiB) {
  ReplyFramer f;
  Response r;
  f.append("250 " + std::string(ReplyFramer::kMaxLineBytes - 4, 'a') + "\r\n");
  ASSERT_EQ(f.next(r), Step::kReply) << "a line of exactly 4 KiB is fine";
  f.append("250 " + std::string(ReplyFramer::kMaxLineBytes, 'a') + "\r\n");
  EXPECT_EQ(f.next(r), Step::kLineTooLong);
  ReplyFramer unterminated;
  unterminated.append(std::string(ReplyFramer::kMaxLineBytes + 1, 'a'));
  EXPECT_EQ(unterminated.next(r), Step::kLineTooLong) << "no need to wait for the end of an overlong line";
}

TEST(ReplyFramer, RepliesAreCappedAt200Lines) {
  ReplyFramer f;
  std::string reply;
  for (std::size_t i = 1; i < ReplyFramer::kMaxLines; ++i) reply += "250-line\r\n";
  f.append(reply + "250 last\r\n");
  Response r;
  ASSERT_EQ(f.next(r), Step::kReply);
  EXPECT_EQ(r.lines.size(), ReplyFramer::kMaxLines);
  f.append(reply + "250-one too many\r\n250 last\r\n");
  EXPECT_EQ(f.next(r), Step::kTooManyLines);
}

TEST(ReplyFramer, ClearForgetsWhatArrived) {
  ReplyFramer f;
  f.append("250-half a reply\r\n250 sent in plain");
  Response r;
  EXPECT_EQ(f.next(r), Step::kNeedMore);
  f.clear();
  EXPECT_FALSE(f.started());
  f.append("250 after the handshake\r\n");
  ASSERT_EQ(f.next(r), Step::kReply);
  EXPECT_EQ(r.text, "after the handshake");
}
