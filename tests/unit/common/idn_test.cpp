// Internationalised domains: the one converter to A-labels (libidn2, IDNA2008).
#include "websmtp/common/idn.hpp"

#include <gtest/gtest.h>

#include <string>

using namespace websmtp;

TEST(Idn, ConvertsULabelsFollowingLibidn2sMapping) {
  EXPECT_EQ(to_ascii_domain("bücher.example"), "xn--bcher-kva.example");
  // UTS #46 maps case and width, and NFC input: all one domain.
  EXPECT_EQ(to_ascii_domain("BÜCHER.Example"), "xn--bcher-kva.example");
  EXPECT_EQ(to_ascii_domain("\uFF22\u00FCcher.example"), "xn--bcher-kva.example");  // fullwidth B
  EXPECT_EQ(to_ascii_domain("bu\u0308cher.example"), "xn--bcher-kva.example");      // u + combining diaeresis
  // Non-transitional: ß stays ß (IDNA2008), it does not become "ss".
  EXPECT_EQ(to_ascii_domain("straße.de"), "xn--strae-oqa.de");
  EXPECT_EQ(to_ascii_domain("mail.bücher.example"), "mail.xn--bcher-kva.example");
}

TEST(Idn, RefusesWhatLibidn2RefusesAndSaysWhy) {
  std::string why;
  EXPECT_FALSE(to_ascii_domain("\xE2\x98\x83.example", &why)) << "U+2603 is DISALLOWED in IDNA2008";
  EXPECT_FALSE(why.empty());
  EXPECT_FALSE(to_ascii_domain(std::string("b\xFF") + "cher.example")) << "broken UTF-8";
  EXPECT_FALSE(to_ascii_domain("-bücher.example")) << "a leading hyphen";
  std::string long_label;
  for (int i = 0; i < 60; ++i) long_label += "ü";  // 120 octets of UTF-8, over 63 once encoded
  EXPECT_FALSE(to_ascii_domain(long_label + ".example"));
  EXPECT_FALSE(to_ascii_domain(std::string("b\0ü.example", 12))) << "an embedded NUL";
  EXPECT_FALSE(to_ascii_domain(""));
}

TEST(Idn, AddressesKeepTheirLocalPartAndAsciiOnesStayAsGiven) {
  EXPECT_EQ(to_ascii_address("User@Bücher.example"), "User@xn--bcher-kva.example");
  EXPECT_EQ(to_ascii_address("jürgen@bücher.example"), "jürgen@xn--bcher-kva.example");
  EXPECT_EQ(to_ascii_address("\"a@b\"@bücher.example"), "\"a@b\"@xn--bcher-kva.example");
  // ASCII domains are not rewritten, not even lower-cased: what the client gave goes out.
  EXPECT_EQ(to_ascii_address("Bob@Example.NET"), "Bob@Example.NET");
  EXPECT_EQ(to_ascii_address("jürgen@example.de"), "jürgen@example.de");
  EXPECT_EQ(to_ascii_address("a@[IPv6:::1]"), "a@[IPv6:::1]");
  EXPECT_FALSE(to_ascii_address("a@\xE2\x98\x83.example"));
  EXPECT_EQ(ascii_domain_address("a@\xE2\x98\x83.example"), "a@\xE2\x98\x83.example");
  EXPECT_EQ(ascii_domain_address("a@bücher.example"), "a@xn--bcher-kva.example");
}
