#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "websmtp/smtp/transport.hpp"

TEST(Sandbox, WritesTheExactMessageAndAnswers250) {
  auto dir = std::filesystem::temp_directory_path() / ("websmtp-sandbox-" + std::to_string(::getpid()));
  auto t = websmtp::smtp::make_sandbox(dir.string());
  std::string msg = "Subject: hi\r\n\r\n.body\r\n";
  auto replies = t->deliver({"ref-1", "a@b.cc", {"x@y.zz", "z@y.zz"}}, msg);
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[0].code, 250);
  EXPECT_NE(replies[0].text.find("sandbox"), std::string::npos);
  std::ifstream in(dir / "ref-1.eml", std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(ss.str(), msg);
  std::filesystem::remove_all(dir);
}
