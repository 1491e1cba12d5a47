#pragma once
// `websmtpctl top`, the pure part: the figures of GET /admin/queue, the rates computed from
// the counters' deltas with their short history, the latest failures, and the text they are
// drawn as (full screen or one key=value line). No I/O here: top_cmd.cpp fetches and draws.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "output.hpp"

namespace websmtp::ctl {

struct QueueFigures {
  std::int64_t queued = 0, in_flight = 0, deferred = 0, completed = 0, failed = 0;
  std::int64_t workers = 0, workers_busy = 0, oldest_queued_age_s = 0;
  std::int64_t submitted_total = 0, delivered_total = 0, failed_total = 0, uptime_s = 0;
  bool paused = false;
  // Several nodes (STORE=postgres): how many the answer lists, and how many of them are live.
  std::optional<std::int64_t> nodes, nodes_live;
};
QueueFigures parse_queue_figures(const nlohmann::json& queue);

struct Rates {
  double submit = 0, deliver = 0, fail = 0;  // per second
};

// Rates from the deltas of the *_total counters between samples at least `min_gap` apart (a
// refresh forced by a key press comes sooner and keeps the previous rates), and the last
// `capacity` of them for the sparklines. A counter that goes down (the daemon restarted)
// restarts the baseline instead of showing a negative rate.
class RateHistory {
 public:
  using Clock = std::chrono::steady_clock;
  RateHistory(std::size_t capacity, Clock::duration min_gap) : capacity_(capacity), min_gap_(min_gap) {}

  void add(Clock::time_point now, const QueueFigures& figures);
  const Rates& current() const { return current_; }
  const std::deque<Rates>& history() const { return history_; }

 private:
  std::size_t capacity_;
  Clock::duration min_gap_;
  std::optional<std::pair<Clock::time_point, QueueFigures>> base_;
  Rates current_;
  std::deque<Rates> history_;
};

// One failed recipient of a recent job, with the SMTP reply that failed it.
struct FailureRow {
  std::string ref;
  std::int64_t time = 0;  // Unix seconds of the failure (or of the submit when unknown)
  std::string address;
  std::int64_t smtp_code = 0;
  std::string reason;  // why it failed: rejected, expired, cancelled, suppressed, smtputf8_required, ...
  std::string reply;   // the last SMTP reply text, when there was one
};
// The failed recipients of one GET /admin/jobs/:ref answer, each with its last reply.
std::vector<FailureRow> failure_rows(const nlohmann::json& job, const std::string& ref);
// The refs of a GET /admin/jobs answer, in the server's order (newest first).
std::vector<std::string> job_refs(const nlohmann::json& listing);

// True when the locale (LC_ALL, else LC_CTYPE, else LANG) asks for UTF-8.
bool locale_is_utf8();

// The last `width` values as block characters scaled to the largest of them (Unicode
// U+2581..U+2588, or an ASCII ramp); right-aligned, padded with spaces on the left.
std::string sparkline(const std::vector<double>& values, std::size_t width, bool unicode);

// The string cut to at most `columns` code points (display_width, output.hpp).
std::string fit_to_width(std::string_view text, std::size_t columns);

// "14:05:09", local time.
std::string format_clock(std::int64_t unix_seconds);
// "45s", "12m03s", "3h07m", "2d04h".
std::string format_duration(std::int64_t seconds);
// "0", "3.5", "120" : one decimal below 100.
std::string format_rate(double per_second);

// Everything one frame shows.
struct TopFrame {
  std::string admin_url;
  std::optional<QueueFigures> figures;  // nullopt until the first answer
  // Non-empty while the last refresh failed: a stable word ("cannot_connect", "timeout",
  // "refused", "protocol") and the human line for the screen.
  std::string problem_code;
  std::string problem;
  Rates rates;
  std::vector<Rates> history;
  std::vector<FailureRow> failures;
  std::string failures_note;  // why failures are missing, when they are
  std::string status_line;    // the last action's result or the server's error
  std::int64_t now_unix = 0;
  bool unicode = true;
};

// "<error> (<code>)" from a JSON error answer, else "HTTP <status>".
std::string describe_refusal(int status, const std::string& body);

// The full-screen view as `height` lines of at most `width` columns.
std::vector<std::string> render_screen(const TopFrame& frame, std::size_t width, std::size_t height);

// The non-terminal mode: one "key=value ..." line (no newline) for each refresh.
std::string render_line(const TopFrame& frame);

}  // namespace websmtp::ctl
