#include <gtest/gtest.h>

#include <set>

#include "websmtp/common/uuid.hpp"
#include "websmtp/common/units.hpp"
#include "websmtp/common/base64.hpp"

using namespace websmtp;

TEST(Uuid, IsVersion4AndUnique) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    auto u = new_uuid();
    ASSERT_TRUE(is_uuid(u)) << u;
    EXPECT_EQ(u[14], '4');
    EXPECT_NE(std::string("89ab").find(u[19]), std::string::npos);
    seen.insert(u);
  }
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(Uuid, RejectsMalformed) {
  EXPECT_FALSE(is_uuid(""));
  EXPECT_FALSE(is_uuid("f683a80c-ba2d-4285-8e1d-4aeaeb37a72"));
  EXPECT_FALSE(is_uuid("f683a80c-ba2d-4285-8e1d-4aeaeb37a72z"));
  EXPECT_FALSE(is_uuid("f683a80cXba2d-4285-8e1d-4aeaeb37a729"));
  EXPECT_TRUE(is_uuid("F683A80C-BA2D-4285-8E1D-4AEAEB37A729"));
}

TEST(Duration, ParsesUnits) {
  EXPECT_EQ(parse_duration_s("300"), 300);
  EXPECT_EQ(parse_duration_s("300s"), 300);
  EXPECT_EQ(parse_duration_s("5m"), 300);
  EXPECT_EQ(parse_duration_s("2h"), 7200);
  EXPECT_EQ(parse_duration_s("5d"), 432000);
  EXPECT_FALSE(parse_duration_s("-1"));
  EXPECT_FALSE(parse_duration_s("5x"));
  EXPECT_FALSE(parse_duration_s(""));
  EXPECT_FALSE(parse_duration_s("99999999999999999d"));
}

TEST(Size, ParsesUnits) {
  EXPECT_EQ(parse_size_bytes("10MiB"), 10 * 1024 * 1024);
  EXPECT_EQ(parse_size_bytes("64KiB"), 64 * 1024);
  EXPECT_EQ(parse_size_bytes("1000"), 1000);
  EXPECT_EQ(parse_size_bytes("1MB"), 1000 * 1000);
  EXPECT_FALSE(parse_size_bytes("ten"));
}

TEST(Base64, RoundTripsBinary) {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  for (std::size_t n = 0; n < all.size(); n += 7) {
    auto enc = base64_encode(all.substr(0, n));
    EXPECT_EQ(base64_decode(enc), all.substr(0, n));
  }
  EXPECT_EQ(base64_decode("aGVs\r\nbG8="), "hello");
  EXPECT_FALSE(base64_decode("a$b="));
  EXPECT_FALSE(base64_decode("aGVsbG8=x"));
}

TEST(Uuid, Version7IsTimeOrderedAndUnique) {
  std::set<std::string> seen;
  std::string prev;
  for (int i = 0; i < 1000; ++i) {
    auto u = new_uuid_v7(1'700'000'000'000 + i);
    ASSERT_TRUE(is_uuid(u)) << u;
    EXPECT_EQ(u[14], '7');
    EXPECT_NE(std::string("89ab").find(u[19]), std::string::npos);
    EXPECT_LT(prev, u);  // a later millisecond sorts later
    prev = u;
    seen.insert(u);
  }
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_EQ(new_uuid_v7(0x0123456789AB).substr(0, 13), "01234567-89ab");
}
