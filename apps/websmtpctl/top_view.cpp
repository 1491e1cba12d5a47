#include "top_view.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include <nlohmann/json.hpp>

#include "output.hpp"

namespace websmtp::ctl {
namespace {

// Refs are UUIDv7: jobs submitted together share the leading (time) digits, so a line too
// narrow for the whole ref shows its random tail.
constexpr std::size_t kShortRef = 8;

std::string pad_right(std::string text, std::size_t columns) {
  const auto w = display_width(text);
  if (w < columns) text.append(columns - w, ' ');
  return text;
}

std::string rate_row(const char* label, double rate, const std::vector<double>& values, std::size_t width,
                     bool unicode) {
  std::string head = pad_right(std::string("  ") + label, 11) + pad_right(format_rate(rate), 7);
  const std::size_t spark = width > head.size() + 1 ? width - head.size() - 1 : 0;
  return head + sparkline(values, std::min<std::size_t>(spark, 120), unicode);
}

// The integers of GET /admin/queue, in api.md's order: read by parse_queue_figures, written
// by render_line under the same names.
constexpr std::pair<const char*, std::int64_t QueueFigures::*> kCounts[] = {
    {"queued", &QueueFigures::queued},
    {"in_flight", &QueueFigures::in_flight},
    {"deferred", &QueueFigures::deferred},
    {"completed", &QueueFigures::completed},
    {"failed", &QueueFigures::failed},
    {"workers", &QueueFigures::workers},
    {"workers_busy", &QueueFigures::workers_busy},
    {"oldest_queued_age_s", &QueueFigures::oldest_queued_age_s},
    {"submitted_total", &QueueFigures::submitted_total},
    {"delivered_total", &QueueFigures::delivered_total},
    {"failed_total", &QueueFigures::failed_total},
    {"uptime_s", &QueueFigures::uptime_s},
};

}  // namespace

std::string format_clock(std::int64_t unix_seconds) {
  const auto t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  if (localtime_r(&t, &tm) == nullptr) return std::to_string(unix_seconds);
  std::array<char, 16> buffer{};
  const auto n = std::strftime(buffer.data(), buffer.size(), "%H:%M:%S", &tm);
  return std::string(buffer.data(), n);
}

QueueFigures parse_queue_figures(const nlohmann::json& q) {
  QueueFigures f;
  for (const auto& [key, member] : kCounts) f.*member = json_int(q, key);
  f.paused = json_bool(q, "paused");
  if (const auto nodes = q.find("nodes"); nodes != q.end() && nodes->is_array()) {
    f.nodes = static_cast<std::int64_t>(nodes->size());
    f.nodes_live = std::count_if(nodes->begin(), nodes->end(), [](const auto& n) { return json_bool(n, "live"); });
  }
  return f;
}

void RateHistory::add(Clock::time_point now, const QueueFigures& f) {
  if (!base_) {
    base_.emplace(now, f);
    return;
  }
  const auto& [then, old] = *base_;
  const bool restarted = f.submitted_total < old.submitted_total || f.delivered_total < old.delivered_total ||
                         f.failed_total < old.failed_total;
  if (restarted) {
    base_.emplace(now, f);
    return;
  }
  if (now - then < min_gap_) return;
  const double seconds = std::chrono::duration<double>(now - then).count();
  current_.submit = static_cast<double>(f.submitted_total - old.submitted_total) / seconds;
  current_.deliver = static_cast<double>(f.delivered_total - old.delivered_total) / seconds;
  current_.fail = static_cast<double>(f.failed_total - old.failed_total) / seconds;
  history_.push_back(current_);
  while (history_.size() > capacity_) history_.pop_front();
  base_.emplace(now, f);
}

std::vector<FailureRow> failure_rows(const nlohmann::json& job, const std::string& ref) {
  std::vector<FailureRow> rows;
  const auto recipients = job.find("recipients");
  if (recipients == job.end() || !recipients->is_array()) return rows;
  for (const auto& r : *recipients) {
    if (json_string(r, "state") != "failed") continue;
    FailureRow row;
    row.ref = ref;
    row.address = json_string(r, "address", "?");
    row.smtp_code = json_int(r, "smtp_code");
    row.reply = json_string(r, "smtp_reply");
    row.time = json_int(r, "time", json_int(job, "time_completed", json_int(job, "time_submitted")));
    // The last attempt of the history holds the reply when the summary does not.
    const auto history = r.find("history");
    if (row.reply.empty() && history != r.end() && history->is_array() && !history->empty()) {
      const auto& last = history->back();
      row.smtp_code = json_int(last, "smtp_code", row.smtp_code);
      row.reply = json_string(last, "smtp_reply");
    }
    row.reason = json_string(r, "reason");
    rows.push_back(std::move(row));
  }
  return rows;
}

std::vector<std::string> job_refs(const nlohmann::json& listing) {
  std::vector<std::string> refs;
  const auto jobs = listing.find("jobs");
  if (jobs == listing.end() || !jobs->is_array()) return refs;
  for (const auto& j : *jobs) {
    auto ref = json_string(j, "ref", json_string(j, "id"));
    if (!ref.empty()) refs.push_back(std::move(ref));
  }
  return refs;
}

bool locale_is_utf8() {
  // The POSIX precedence: the first of these that is set and not empty decides.
  for (const char* name : {"LC_ALL", "LC_CTYPE", "LANG"}) {
    const char* value = std::getenv(name);
    if (value == nullptr || *value == '\0') continue;
    std::string lower;
    for (const char* p = value; *p != '\0'; ++p) {
      if (*p != '-') lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(*p))));
    }
    return lower.find("utf8") != std::string::npos;
  }
  return false;
}

std::string sparkline(const std::vector<double>& values, std::size_t width, bool unicode) {
  static constexpr std::array<const char*, 8> kBlocks = {"\u2581", "\u2582", "\u2583", "\u2584",
                                                         "\u2585", "\u2586", "\u2587", "\u2588"};
  static constexpr std::string_view kAscii = "_.-:=+*#";
  const std::size_t shown = std::min(values.size(), width);
  const auto first = values.end() - static_cast<std::ptrdiff_t>(shown);
  double top = 0;
  for (auto it = first; it != values.end(); ++it) top = std::max(top, *it);

  std::string out(width - shown, ' ');
  for (auto it = first; it != values.end(); ++it) {
    // Zero is the lowest bar; anything above zero at least the second, so that a trickle shows.
    std::size_t level = 0;
    if (*it > 0 && top > 0) level = std::clamp<std::size_t>(static_cast<std::size_t>(std::lround(*it / top * 7)), 1, 7);
    if (unicode) {
      out += kBlocks[level];
    } else {
      out += kAscii[level];
    }
  }
  return out;
}

std::string fit_to_width(std::string_view text, std::size_t columns) {
  std::size_t seen = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) continue;
    if (seen == columns) return std::string(text.substr(0, i));
    ++seen;
  }
  return std::string(text);
}

std::string format_duration(std::int64_t s) {
  if (s < 0) s = 0;
  char buffer[32];
  if (s < 60) {
    std::snprintf(buffer, sizeof buffer, "%llds", static_cast<long long>(s));
  } else if (s < 3600) {
    std::snprintf(buffer, sizeof buffer, "%lldm%02llds", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  } else if (s < 86400) {
    std::snprintf(buffer, sizeof buffer, "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>(s % 3600 / 60));
  } else {
    std::snprintf(buffer, sizeof buffer, "%lldd%02lldh", static_cast<long long>(s / 86400),
                  static_cast<long long>(s % 86400 / 3600));
  }
  return buffer;
}

std::string format_rate(double r) {
  if (!std::isfinite(r) || r <= 0) return "0";
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, r < 100 ? "%.1f" : "%.0f", r);
  return buffer;
}

std::string describe_refusal(int status, const std::string& body) {
  const auto answer = parse_json_object(body);
  const std::string error = answer ? json_string(*answer, "error") : std::string();
  if (error.empty()) return "HTTP " + std::to_string(status);
  const std::string code = json_string(*answer, "code");
  return printable_excerpt(error, 200) + (code.empty() ? std::string() : " (" + printable_excerpt(code, 60) + ")");
}

std::vector<std::string> render_screen(const TopFrame& frame, std::size_t width, std::size_t height) {
  std::vector<std::string> lines;
  const QueueFigures f = frame.figures.value_or(QueueFigures{});
  const bool known = frame.figures.has_value();
  auto num = [known](std::int64_t v) { return known ? std::to_string(v) : std::string("-"); };

  std::string state = !known ? "unknown" : (f.paused ? "PAUSED" : "running");
  // Most telling first: on a narrow screen the end of the line is what gets cut.
  lines.push_back("websmtpctl top  delivery " + state + "  up " + (known ? format_duration(f.uptime_s) : "-") + "  " +
                  format_clock(frame.now_unix) + "  " + frame.admin_url);
  lines.push_back(frame.problem);
  lines.push_back("Queue    queued " + num(f.queued) + "   in_flight " + num(f.in_flight) + "   deferred " +
                  num(f.deferred) + "   completed " + num(f.completed) + "   failed " + num(f.failed));
  lines.push_back("Workers  busy " + num(f.workers_busy) + "/" + num(f.workers) + "   oldest queued " +
                  (known ? format_duration(f.oldest_queued_age_s) : "-") +
                  (f.nodes ? "   nodes live " + num(*f.nodes_live) + "/" + num(*f.nodes) : std::string()));
  lines.push_back("Totals   submitted " + num(f.submitted_total) + "   delivered " + num(f.delivered_total) +
                  "   failed " + num(f.failed_total));
  lines.emplace_back();

  std::vector<double> submit, deliver, fail;
  for (const auto& r : frame.history) {
    submit.push_back(r.submit);
    deliver.push_back(r.deliver);
    fail.push_back(r.fail);
  }
  lines.emplace_back("Rates per second");
  lines.push_back(rate_row("submit", frame.rates.submit, submit, width, frame.unicode));
  lines.push_back(rate_row("deliver", frame.rates.deliver, deliver, width, frame.unicode));
  lines.push_back(rate_row("fail", frame.rates.fail, fail, width, frame.unicode));
  lines.emplace_back();

  // Whatever rows are left between here and the two bottom lines go to the failures.
  lines.emplace_back("Latest failures");
  if (!frame.failures_note.empty()) {
    lines.push_back("  " + frame.failures_note);
  } else if (frame.failures.empty()) {
    lines.emplace_back(known ? "  none" : "  -");
  } else {
    // Two rows each: when, who and which job; then the SMTP reply, which needs the width.
    for (const auto& row : frame.failures) {
      if (lines.size() + 4 > height) break;  // both rows, and the status and keys lines
      const std::string head = "  " + pad_right(format_clock(row.time), 10) + printable_excerpt(row.address, 200) + "  ref ";
      std::string ref = printable_excerpt(row.ref, 64);
      if (display_width(head) + ref.size() > width && ref.size() > kShortRef) {
        ref = "..." + ref.substr(ref.size() - kShortRef);
      }
      lines.push_back(head + ref);
      // "reason: code reply": the reason tells a cancel or a suppression from the peer's refusal.
      std::string why = row.smtp_code > 0 ? std::to_string(row.smtp_code) + " " : std::string();
      why += printable_excerpt(row.reply, 400);
      if (!row.reason.empty()) why = printable_excerpt(row.reason, 40) + (why.empty() ? "" : ": " + why);
      lines.push_back(std::string(12, ' ') + why);
    }
  }

  // The two last rows are the status line and the keys, wherever the bottom is.
  const std::size_t body = height > 2 ? height - 2 : 0;
  if (lines.size() > body) lines.resize(body);
  while (lines.size() < body) lines.emplace_back();
  lines.push_back(frame.status_line);
  lines.emplace_back("p pause/resume   r retry deferred   q quit");
  if (lines.size() > height) lines.erase(lines.begin(), lines.begin() + static_cast<std::ptrdiff_t>(lines.size() - height));
  for (auto& line : lines) line = fit_to_width(line, width);
  return lines;
}

std::string render_line(const TopFrame& frame) {
  std::string line = "time=" + std::to_string(frame.now_unix);
  if (!frame.problem_code.empty()) {
    std::string detail = printable_excerpt(frame.problem, 300);
    std::replace(detail.begin(), detail.end(), '"', '\'');
    return line + " error=" + frame.problem_code + " detail=\"" + detail + "\"";
  }
  if (!frame.figures) return line + " error=no_answer";
  const auto& f = *frame.figures;
  for (const auto& [key, member] : kCounts) line += std::string(" ") + key + "=" + std::to_string(f.*member);
  char rates[96];
  std::snprintf(rates, sizeof rates, " submit_rate=%.2f deliver_rate=%.2f fail_rate=%.2f", frame.rates.submit,
                frame.rates.deliver, frame.rates.fail);
  line += rates;
  line += std::string(" paused=") + (f.paused ? "true" : "false");
  if (f.nodes) line += " nodes=" + std::to_string(*f.nodes) + " nodes_live=" + std::to_string(*f.nodes_live);
  return line;
}

}  // namespace websmtp::ctl
