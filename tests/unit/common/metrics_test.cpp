#include "websmtp/common/metrics.hpp"

#include <gtest/gtest.h>

#include "websmtp/common/error_codes.hpp"
#include "websmtp/service/metrics.hpp"

namespace websmtp {
namespace {

TEST(Histogram, CountsEachValueInTheFirstBucketItFits) {
  static constexpr std::array<double, 3> kBounds = {1, 2, 5};
  metrics::Histogram<3> h{kBounds};
  for (double v : {0.5, 1.0, 1.5, 5.0, 7.0, 100.0}) h.observe(v);
  auto c = h.counts();
  EXPECT_EQ((std::array<std::uint64_t, 4>{2, 1, 1, 2}), c);
  EXPECT_DOUBLE_EQ(115.0, h.sum());
}

TEST(TextWriter, WritesCumulativeBucketsWithInfEqualToCount) {
  static constexpr std::array<double, 2> kBounds = {0.005, 1};
  metrics::Histogram<2> h{kBounds};
  h.observe(0.001);
  h.observe(3);
  metrics::TextWriter w;
  w.family("x_seconds", "histogram", "help");
  w.histogram("x_seconds", "", h);
  EXPECT_EQ(
      "# HELP x_seconds help\n# TYPE x_seconds histogram\n"
      "x_seconds_bucket{le=\"0.005\"} 1\nx_seconds_bucket{le=\"1\"} 1\nx_seconds_bucket{le=\"+Inf\"} 2\n"
      "x_seconds_sum 3.001\nx_seconds_count 2\n",
      w.text());
}

TEST(TextWriter, EscapesLabelValuesAndHelp) {
  EXPECT_EQ("a\\\\b\\\"c\\nd", metrics::escape_label_value("a\\b\"c\nd"));
  metrics::TextWriter w;
  w.family("y_total", "counter", "one\ntwo \\");
  EXPECT_EQ("# HELP y_total one\\ntwo \\\\\n# TYPE y_total counter\n", w.text());
}

TEST(ErrorCodes, AreSortedAndFound) {
  for (std::size_t i = 1; i < kErrorCodes.size(); ++i) EXPECT_LT(kErrorCodes[i - 1], kErrorCodes[i]);
  EXPECT_EQ(kErrorCodes.size(), error_code_index("no_such_code"));
  EXPECT_EQ("invalid_json", kErrorCodes[error_code_index("invalid_json")]);
}

TEST(Metrics, CountsOutcomesByReplyClassAndLatencyFromTheRef) {
  service::Metrics m;
  m.start(1'700'000'000'000);
  m.set_base({});
  job::Recipient r;
  r.state = job::RecipientState::kDelivered;
  r.smtp_code = 250;
  r.attempts = 2;
  // A UUIDv7 whose first 48 bits are 1'700'000'000'000 ms (0x18bcfe56800).
  m.recipient_result(r, "018bcfe5-6800-7000-8000-000000000000", 1'699'999'999, 1'700'000'001'500);
  r.state = job::RecipientState::kDeferred;
  r.smtp_code = 0;
  m.recipient_result(r, "not-a-uuid", 1'700'000'000, 1'700'000'001'000);
  m.submit_refused("invalid_json");
  m.submit_refused("something_new");
  std::string text = m.prometheus_text({}, 1'700'000'002'000);
  EXPECT_NE(text.find("websmtp_deliveries_total{outcome=\"delivered\",class=\"2xx\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("websmtp_deliveries_total{outcome=\"deferred\",class=\"none\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("websmtp_delivery_latency_seconds_sum 1.5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("websmtp_delivery_attempts_bucket{le=\"2\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("websmtp_delivery_attempts_bucket{le=\"1\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("websmtp_submits_total{result=\"rejected\",code=\"invalid_json\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("websmtp_submits_total{result=\"rejected\",code=\"other\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("websmtp_uptime_seconds 2\n"), std::string::npos);
}

}  // namespace
}  // namespace websmtp
