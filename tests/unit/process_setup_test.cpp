// Process-wide set-up of the unit test binary (gtest_main has no hook for it). spdlog's
// registry, which holds the default logger, is created on first use; a test whose first log
// line comes from two of its threads at once would create it on one while the other reads it
// (ThreadSanitizer reports that race inside libspdlog). websmtpd creates it in main() before any
// thread starts; here it is created while the binary loads, on the main thread.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

namespace {
const bool kLoggerReady = [] {
  spdlog::default_logger_raw();
  return true;
}();
}  // namespace

TEST(ProcessSetup, TheDefaultLoggerExistsBeforeAnyTestThread) {
  EXPECT_TRUE(kLoggerReady);
  EXPECT_NE(spdlog::default_logger_raw(), nullptr);
}
