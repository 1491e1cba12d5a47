// websmtpctl top's pure parts: rates from counter deltas, sparklines, the failures of a job,
// and the frame as screen lines and as a key=value line.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "top_view.hpp"

using namespace websmtp::ctl;
using namespace std::chrono_literals;

namespace {

QueueFigures totals(std::int64_t submitted, std::int64_t delivered, std::int64_t failed) {
  QueueFigures f;
  f.submitted_total = submitted;
  f.delivered_total = delivered;
  f.failed_total = failed;
  return f;
}

}  // namespace

TEST(RateHistory, RatesAreDeltasPerSecond) {
  RateHistory history(60, 800ms);
  const RateHistory::Clock::time_point t0{};
  history.add(t0, totals(10, 5, 1));
  EXPECT_TRUE(history.history().empty());  // the first sample is only a baseline
  history.add(t0 + 2s, totals(30, 9, 1));
  EXPECT_DOUBLE_EQ(history.current().submit, 10.0);
  EXPECT_DOUBLE_EQ(history.current().deliver, 2.0);
  EXPECT_DOUBLE_EQ(history.current().fail, 0.0);
  EXPECT_EQ(history.history().size(), 1u);
}

TEST(RateHistory, AnEarlySampleKeepsThePreviousRates) {
  RateHistory history(60, 800ms);
  const RateHistory::Clock::time_point t0{};
  history.add(t0, totals(0, 0, 0));
  history.add(t0 + 1s, totals(4, 0, 0));
  history.add(t0 + 1100ms, totals(5, 0, 0));  // a key press forced this refresh
  EXPECT_DOUBLE_EQ(history.current().submit, 4.0);
  EXPECT_EQ(history.history().size(), 1u);
  history.add(t0 + 2s, totals(6, 0, 0));  // measured from the last point, 1 s ago
  EXPECT_DOUBLE_EQ(history.current().submit, 2.0);
}

TEST(RateHistory, KeepsOnlyTheLastCapacityPoints) {
  RateHistory history(3, 800ms);
  const RateHistory::Clock::time_point t0{};
  for (int i = 0; i <= 10; ++i) history.add(t0 + std::chrono::seconds(i), totals(i * i, 0, 0));
  ASSERT_EQ(history.history().size(), 3u);
  EXPECT_DOUBLE_EQ(history.history().back().submit, 19.0);  // 100 - 81
}

TEST(RateHistory, ADaemonRestartIsANewBaselineNotANegativeRate) {
  RateHistory history(60, 800ms);
  const RateHistory::Clock::time_point t0{};
  history.add(t0, totals(100, 100, 0));
  history.add(t0 + 1s, totals(2, 1, 0));
  EXPECT_TRUE(history.history().empty());
  history.add(t0 + 2s, totals(5, 1, 0));
  EXPECT_DOUBLE_EQ(history.current().submit, 3.0);
}

TEST(Sparkline, ScalesToTheLargestValue) {
  EXPECT_EQ(sparkline({0, 1, 2, 4}, 4, false), "_-=#");
  EXPECT_EQ(sparkline({0, 1, 2, 4}, 6, false), "  _-=#");
  EXPECT_EQ(sparkline({0, 1, 2, 4}, 2, false), "=#");
  EXPECT_EQ(sparkline({0, 0}, 2, false), "__");
  EXPECT_EQ(sparkline({}, 3, true), "   ");
  EXPECT_EQ(sparkline({0, 100}, 2, true), "\u2581\u2588");
}

TEST(Sparkline, ATrickleIsAboveTheFloor) {
  EXPECT_EQ(sparkline({1, 1000}, 2, false), ".#");
}

TEST(LocaleIsUtf8, FollowsLcAllThenLcCtypeThenLang) {
  ::setenv("LC_ALL", "", 1);
  ::setenv("LC_CTYPE", "", 1);
  ::setenv("LANG", "en_US.UTF-8", 1);
  EXPECT_TRUE(locale_is_utf8());
  ::setenv("LC_CTYPE", "C", 1);
  EXPECT_FALSE(locale_is_utf8());
  ::setenv("LC_ALL", "C.utf8", 1);
  EXPECT_TRUE(locale_is_utf8());
  ::unsetenv("LC_ALL");
  ::unsetenv("LC_CTYPE");
  ::unsetenv("LANG");
  EXPECT_FALSE(locale_is_utf8());
}

TEST(FailureRows, OneRowPerFailedRecipientWithItsReply) {
  const auto job = nlohmann::json::parse(R"({
    "id": "r1", "status": "completed", "time_submitted": 100, "time_completed": 105,
    "recipients": [
      {"address": "ok@example.net", "state": "delivered", "smtp_code": 250, "smtp_reply": "2.0.0 Ok"},
      {"address": "no@example.net", "state": "failed", "smtp_code": 550, "smtp_reply": "5.1.1 user unknown",
       "time": 104},
      {"address": "old@example.net", "state": "failed", "reason": "expired",
       "history": [{"time": 101, "smtp_code": 451, "smtp_reply": "4.3.0 try later", "host": "mx"}]},
      {"address": "sup@example.net", "state": "failed", "reason": "suppressed"}
    ]})");
  const auto rows = failure_rows(job, "r1");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].address, "no@example.net");
  EXPECT_EQ(rows[0].smtp_code, 550);
  EXPECT_EQ(rows[0].reply, "5.1.1 user unknown");
  EXPECT_EQ(rows[0].time, 104);
  EXPECT_EQ(rows[1].smtp_code, 451);
  EXPECT_EQ(rows[1].reply, "4.3.0 try later");
  EXPECT_EQ(rows[1].time, 105);
  EXPECT_EQ(rows[1].reason, "expired");
  EXPECT_EQ(rows[2].reason, "suppressed");
  EXPECT_EQ(rows[2].reply, "");
  EXPECT_EQ(rows[2].ref, "r1");
}

TEST(FailureRows, ToleratesAnythingElse) {
  EXPECT_TRUE(failure_rows(nlohmann::json::parse(R"({"recipients": 3})"), "r").empty());
  EXPECT_TRUE(failure_rows(nlohmann::json::parse(R"({"recipients": [1, "x", null]})"), "r").empty());
  EXPECT_TRUE(job_refs(nlohmann::json::parse(R"({"jobs": [{"ref": 1}, {}, 7]})")).empty());
  EXPECT_EQ(job_refs(nlohmann::json::parse(R"({"jobs": [{"ref": "a"}, {"ref": "b"}]})")),
            (std::vector<std::string>{"a", "b"}));
}

TEST(Formatting, DurationsAndRates) {
  EXPECT_EQ(format_duration(45), "45s");
  EXPECT_EQ(format_duration(723), "12m03s");
  EXPECT_EQ(format_duration(3 * 3600 + 7 * 60 + 5), "3h07m");
  EXPECT_EQ(format_duration(2 * 86400 + 4 * 3600), "2d04h");
  EXPECT_EQ(format_duration(-5), "0s");
  EXPECT_EQ(format_rate(0), "0");
  EXPECT_EQ(format_rate(3.54), "3.5");
  EXPECT_EQ(format_rate(1234.4), "1234");
}

TEST(FitToWidth, CutsByCodePoints) {
  EXPECT_EQ(fit_to_width("abc", 2), "ab");
  EXPECT_EQ(fit_to_width("\u2581\u2582\u2583", 2), "\u2581\u2582");
  EXPECT_EQ(display_width("\u2581a"), 2u);
  EXPECT_EQ(fit_to_width("ab", 5), "ab");
}

TEST(RenderScreen, FillsTheScreenWithKeysOnTheLastLine) {
  TopFrame frame;
  frame.admin_url = "http://127.0.0.1:8081";
  QueueFigures f = totals(7, 5, 1);
  f.queued = 2;
  f.workers = 4;
  f.workers_busy = 1;
  f.paused = true;
  frame.figures = f;
  frame.status_line = "delivery paused";
  frame.failures.push_back({"01a21eac-badf-74e0-8343-46dcf93d9ae2", 0, "no@example.net", 550, "rejected", "5.1.1 user\r\nunknown\x1b[2J"});
  const auto lines = render_screen(frame, 60, 24);
  ASSERT_EQ(lines.size(), 24u);
  EXPECT_EQ(lines[23], "p pause/resume   r retry deferred   q quit");
  EXPECT_EQ(lines[22], "delivery paused");
  bool failure_shown = false;
  for (const auto& line : lines) {
    EXPECT_LE(display_width(line), 60u) << line;
    EXPECT_EQ(line.find('\x1b'), std::string::npos) << "a server's escape code reached the screen";
    if (line.find("no@example.net") != std::string::npos) {
      failure_shown = true;
      EXPECT_NE(line.find("ref ...f93d9ae2"), std::string::npos) << line;  // the random tail of a UUIDv7
    }
  }
  EXPECT_TRUE(failure_shown);
  EXPECT_TRUE(std::any_of(lines.begin(), lines.end(), [](const std::string& line) {
    return line.find("            rejected: 550 5.1.1 user unknown?[2J") == 0;  // reason and reply on their own row, defused
  }));
  const auto wide = render_screen(frame, 140, 24);
  EXPECT_TRUE(std::any_of(wide.begin(), wide.end(), [](const std::string& line) {
    return line.find("ref 01a21eac-badf-74e0-8343-46dcf93d9ae2") != std::string::npos;  // wide enough for the whole ref
  }));
  EXPECT_NE(lines[0].find("delivery PAUSED"), std::string::npos);
  EXPECT_NE(lines[2].find("queued 2"), std::string::npos);
  EXPECT_NE(lines[3].find("busy 1/4"), std::string::npos);
}

TEST(RenderScreen, ATinyScreenStillShowsTheKeys) {
  TopFrame frame;
  const auto lines = render_screen(frame, 10, 2);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1], "p pause/re");
  EXPECT_TRUE(render_screen(frame, 0, 0).empty());
}

TEST(RenderLine, KeyValuePairsOrTheError) {
  TopFrame frame;
  frame.now_unix = 1700000000;
  QueueFigures f = totals(7, 5, 1);
  f.queued = 2;
  frame.figures = f;
  frame.rates.submit = 1.5;
  EXPECT_EQ(render_line(frame),
            "time=1700000000 queued=2 in_flight=0 deferred=0 completed=0 failed=0 workers=0 workers_busy=0 "
            "oldest_queued_age_s=0 submitted_total=7 delivered_total=5 failed_total=1 uptime_s=0 "
            "submit_rate=1.50 deliver_rate=0.00 fail_rate=0.00 paused=false");
  frame.problem_code = "cannot_connect";
  frame.problem = "cannot connect to \"x\": refused";
  EXPECT_EQ(render_line(frame), "time=1700000000 error=cannot_connect detail=\"cannot connect to 'x': refused\"");
}

TEST(DescribeRefusal, ErrorAndCodeOrTheStatus) {
  EXPECT_EQ(describe_refusal(401, R"({"error":"admin token required","code":"unauthorized"})"),
            "admin token required (unauthorized)");
  EXPECT_EQ(describe_refusal(502, "<html>bad gateway</html>"), "HTTP 502");
}
