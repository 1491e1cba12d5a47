#include <gtest/gtest.h>

#include "websmtp/smtp/capabilities.hpp"

using websmtp::smtp::AuthMechanism;
using websmtp::smtp::Capabilities;
using websmtp::smtp::choose_auth;

TEST(Capabilities, ReadsKeywordsCaseInsensitivelyAfterTheGreetingLine) {
  auto c = Capabilities::from_ehlo({"mail.example.net greets you", "pipelining", "SIZE 10240000", "STARTTLS"});
  EXPECT_TRUE(c.has("PIPELINING"));
  EXPECT_TRUE(c.has("Size"));
  EXPECT_TRUE(c.has("STARTTLS"));
  EXPECT_FALSE(c.has("MAIL.EXAMPLE.NET")) << "the first line names the server";
  EXPECT_FALSE(c.has("START"));
  EXPECT_FALSE(Capabilities::from_ehlo({"x", "STARTTLSX"}).has("STARTTLS"));
}

TEST(Capabilities, ReadsAuthMechanismsInBothSpellings) {
  auto c = Capabilities::from_ehlo({"x", "AUTH LOGIN plain", "AUTH=LOGIN CRAM-MD5"});
  EXPECT_EQ(c.auth_mechanisms(), (std::vector<std::string>{"LOGIN", "PLAIN", "CRAM-MD5"}));
  EXPECT_TRUE(c.has("AUTH"));
  EXPECT_TRUE(c.offers_auth("plain"));
  EXPECT_FALSE(Capabilities::from_ehlo({"x", "AUTH=PLAIN"}).has("AUTH")) << "AUTH= only lists mechanisms";
}

TEST(Capabilities, NothingIsOfferedWithoutEhlo) {
  Capabilities c;
  EXPECT_FALSE(c.has("PIPELINING"));
  EXPECT_TRUE(c.auth_mechanisms().empty());
  EXPECT_EQ(choose_auth(c), std::nullopt);
}

TEST(Capabilities, AuthPrefersPlainThenLogin) {
  EXPECT_EQ(choose_auth(Capabilities::from_ehlo({"x", "AUTH LOGIN PLAIN"})), AuthMechanism::kPlain);
  EXPECT_EQ(choose_auth(Capabilities::from_ehlo({"x", "AUTH CRAM-MD5 LOGIN"})), AuthMechanism::kLogin);
  EXPECT_EQ(choose_auth(Capabilities::from_ehlo({"x", "AUTH CRAM-MD5 XOAUTH2"})), std::nullopt);
}
