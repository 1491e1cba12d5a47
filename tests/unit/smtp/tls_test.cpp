#include <gtest/gtest.h>

#include "websmtp/smtp/tls.hpp"

using websmtp::smtp::parse_tls_mode;
using websmtp::smtp::TlsMode;

TEST(TlsMode, EachModeReadsBackFromItsSmtpTlsWord) {
  for (auto m : {TlsMode::kOpportunistic, TlsMode::kNone, TlsMode::kStartTls, TlsMode::kImplicit})
    EXPECT_EQ(parse_tls_mode(to_string(m)), m);
  EXPECT_EQ(parse_tls_mode("tls"), TlsMode::kImplicit);
  EXPECT_EQ(parse_tls_mode("ssl"), std::nullopt);
}
