#include <gtest/gtest.h>

#include "websmtp/smtp/session.hpp"

using websmtp::smtp::append_dot_stuffed;

TEST(DotStuffing, DoublesLeadingDotsAndTerminates) {
  std::string out;
  append_dot_stuffed(out, ".first\r\nmiddle .\r\n.\r\n..two\r\n");
  EXPECT_EQ(out, "..first\r\nmiddle .\r\n..\r\n...two\r\n.\r\n");
}

TEST(DotStuffing, AddsTheMissingFinalLineBreak) {
  std::string out;
  append_dot_stuffed(out, "no newline");
  EXPECT_EQ(out, "no newline\r\n.\r\n");
}
