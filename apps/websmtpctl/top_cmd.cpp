// `websmtpctl top`: a live view of the queue (GET {admin}/admin/queue and the latest failed
// jobs), with keys to pause, resume and retry. On a terminal it is full screen; otherwise it
// prints one key=value line per refresh, for scripts and logs.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <ctime>
#include <iostream>
#include <map>
#include <memory>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "output.hpp"
#include "terminal.hpp"
#include "top_view.hpp"

namespace websmtp::ctl {
namespace {

using Clock = std::chrono::steady_clock;

constexpr double kHistorySeconds = 60;

// What the view knows from the server, refreshed by TopSource::refresh.
class TopSource {
 public:
  TopSource(HttpClient client, int failure_limit) : client_(std::move(client)), failure_limit_(failure_limit) {}

  const Url& base() const { return client_.base(); }

  // Fetches the queue figures and the latest failures into `frame`; returns the exit code
  // this refresh stands for (0, 1 refused or garbled, 3 unreachable).
  int refresh(TopFrame& frame) {
    const auto result = client_.get("/admin/queue");
    if (!result) {
      const auto& failure = result.error();
      frame.problem_code = to_string(failure.error);
      const bool unreachable = failure.error == HttpError::kCannotConnect || failure.error == HttpError::kTimeout;
      frame.problem = std::string(unreachable ? "cannot connect to " : "bad answer from ") + client_.base().text +
                      ": " + failure.detail + " (retrying)";
      return unreachable ? kExitUnreachable : kExitRefused;
    }
    const auto& response = result.value();
    const auto answer = parse_json_object(response.body);
    if (response.status < 200 || response.status > 299) {
      frame.problem_code = "refused";
      frame.problem = "the server refused: " + describe_refusal(response.status, response.body);
      return kExitRefused;
    }
    if (!answer) {  // a proxy's page, or not websmtpd at all
      frame.problem_code = "protocol";
      frame.problem = "unexpected answer from " + client_.base().text + ": " + printable_excerpt(response.body, 80);
      return kExitRefused;
    }
    frame.problem_code.clear();
    frame.problem.clear();
    frame.figures = parse_queue_figures(*answer);
    refresh_failures(frame);
    return kExitOk;
  }

  // Runs the action of a key; returns the status line that tells how it went.
  std::string act(char key, const TopFrame& frame) {
    if (key == 'p') {
      const bool resume = frame.figures && frame.figures->paused;
      const auto outcome = post(resume ? "/admin/resume" : "/admin/pause");
      if (!outcome.empty()) return std::string(resume ? "resume" : "pause") + " failed: " + outcome;
      return resume ? "delivery resumed" : "delivery paused";
    }
    nlohmann::json answer;
    const auto outcome = post("/admin/retry", &answer);
    if (!outcome.empty()) return "retry failed: " + outcome;
    const auto retried = json_int(answer, "retried", -1);
    if (retried < 0) return "retry requested";
    return "retried " + std::to_string(retried) + " deferred job" + (retried == 1 ? "" : "s");
  }

 private:
  // POSTs to an admin route: "" when it answered 2xx, else why not.
  std::string post(const std::string& route, nlohmann::json* answer = nullptr) {
    const auto result = client_.post_json(route, "");
    if (!result) return "cannot connect to " + client_.base().text + ": " + result.error().detail;
    const auto& response = result.value();
    if (response.status < 200 || response.status > 299) return describe_refusal(response.status, response.body);
    if (answer != nullptr) *answer = parse_json_object(response.body).value_or(nlohmann::json::object());
    return {};
  }

  // The failed jobs are completed, so each one's detail is fetched once and kept while it is
  // among the latest.
  void refresh_failures(TopFrame& frame) {
    if (failure_limit_ == 0) return;
    const auto result = client_.get("/admin/jobs?state=failed&limit=" + std::to_string(failure_limit_));
    if (!result) return;  // the queue answered a moment ago: keep what is shown, try again next time
    const auto& response = result.value();
    const auto answer = parse_json_object(response.body);
    if (response.status < 200 || response.status > 299 || !answer) {
      frame.failures.clear();
      frame.failures_note = "not available: " + describe_refusal(response.status, response.body);
      return;
    }
    frame.failures.clear();
    frame.failures_note.clear();
    std::map<std::string, std::vector<FailureRow>> kept;
    for (const auto& ref : job_refs(*answer)) {
      auto cached = details_.find(ref);
      if (cached == details_.end()) {
        const auto detail = client_.get("/admin/jobs/" + percent_encode(ref));
        if (!detail || detail.value().status != 200) continue;
        const auto job = parse_json_object(detail.value().body);
        if (!job) continue;
        cached = details_.emplace(ref, failure_rows(*job, ref)).first;
      }
      frame.failures.insert(frame.failures.end(), cached->second.begin(), cached->second.end());
      kept.insert(*cached);
    }
    details_ = std::move(kept);
  }

  HttpClient client_;
  int failure_limit_;
  std::map<std::string, std::vector<FailureRow>> details_;
};

std::string clock_prefix() { return format_clock(std::time(nullptr)) + " "; }

RateHistory make_history(double interval_s) {
  const auto points = static_cast<std::size_t>(std::clamp(std::ceil(kHistorySeconds / interval_s), 2.0, 600.0));
  // A refresh forced by a key comes early: it updates the figures, not the rates.
  const auto gap = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(interval_s * 0.8));
  return RateHistory(points, gap);
}

void copy_rates(const RateHistory& history, TopFrame& frame) {
  frame.rates = history.current();
  frame.history.assign(history.history().begin(), history.history().end());
}

int run_plain(const TopOptions& options, TopSource& source, TopFrame& frame) {
  auto history = make_history(options.interval_s);
  const auto interval = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.interval_s));
  int code = kExitOk;
  for (std::int64_t i = 0; options.count == 0 || i < options.count; ++i) {
    const auto started = Clock::now();
    code = source.refresh(frame);
    if (code == kExitOk) history.add(started, *frame.figures);
    copy_rates(history, frame);
    frame.now_unix = std::time(nullptr);
    std::cout << render_line(frame) << std::endl;
    if (!std::cout) return kExitRefused;  // the reader went away
    if (options.count != 0 && i + 1 == options.count) break;
    std::this_thread::sleep_until(started + interval);
  }
  return code;
}

int run_screen(const TopOptions& options, TopSource& source, TopFrame& frame) {
  auto history = make_history(options.interval_s);
  const auto interval = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.interval_s));
  FullScreen screen;
  auto draw = [&] {
    const auto size = screen.size();
    frame.now_unix = std::time(nullptr);
    screen.draw(render_screen(frame, size.columns, size.rows));
  };

  std::int64_t refreshes = 0;
  auto next = Clock::now();
  while (!screen.quit_requested()) {
    if (Clock::now() >= next) {
      const auto started = Clock::now();
      if (source.refresh(frame) == kExitOk) history.add(started, *frame.figures);
      copy_rates(history, frame);
      draw();
      next = started + interval;
      if (options.count != 0 && ++refreshes >= options.count) break;
    }
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next - Clock::now());
    const auto key = screen.read_key(std::max(wait, std::chrono::milliseconds(0)) + std::chrono::milliseconds(1));
    if (screen.take_resized()) draw();
    if (!key) continue;
    switch (*key) {
      case 'q':
      case 'Q':
        return kExitOk;
      case 'p':
      case 'P':
      case 'r':
      case 'R':
        frame.status_line = clock_prefix() + source.act(static_cast<char>(std::tolower(*key)), frame);
        next = Clock::now();  // show the outcome with fresh figures at once
        break;
      case '\f':  // Ctrl-L: redraw
        draw();
        break;
      default:
        break;
    }
  }
  return kExitOk;
}

}  // namespace

Subcommand setup_top(CLI::App& app, const GlobalOptions& global) {
  auto options = std::make_shared<TopOptions>();
  options->global = &global;
  auto* sub = app.add_subcommand("top", "Live view of the queue, rates and latest failures (admin API)");
  auto* interval = sub->add_option("--interval", options->interval_s, "Seconds between refreshes")
                       ->type_name("SECONDS")
                       ->capture_default_str();
  check_seconds(*interval, 0.1, 3600);
  sub->add_option("--count", options->count, "Stop after N refreshes (0: until 'q' or Ctrl-C)")
      ->type_name("N")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  sub->add_option("--failures", options->failures, "How many of the latest failed jobs to show")
      ->type_name("N")
      ->check(CLI::Range(0, 50))
      ->capture_default_str();
  sub->add_flag("--plain", options->plain, "One key=value line per refresh even on a terminal");
  sub->footer(
      "On a terminal: full screen, refreshed every --interval; keys: p pause or resume delivery,\n"
      "r retry every deferred job now, q or Ctrl-C quit. The status line shows the last key's\n"
      "outcome or the server's error; when the server goes away the view says so and keeps trying.\n"
      "Otherwise (or with --plain): one line per refresh, e.g.\n"
      "  time=1764270000 queued=3 in_flight=1 deferred=0 ... submit_rate=2.00 ... paused=false\n"
      "or 'time=... error=cannot_connect detail=\"...\"'. The exit status is the last refresh's\n"
      "(0, 1 refused, 3 cannot connect).\n"
      "Examples:\n"
      "  websmtpctl top\n"
      "  websmtpctl top --count 10 --interval 5 > queue.log");
  return {sub, [options] { return run_top(*options); }};
}

int run_top(const TopOptions& options) {
  const GlobalOptions& global = *options.global;
  auto client = make_admin_client(global);
  if (!client) return kExitUsage;
  TopSource source(std::move(*client), options.failures);
  TopFrame frame;
  frame.admin_url = source.base().text;
  frame.unicode = locale_is_utf8();
  if (options.plain || !stdout_is_terminal()) return run_plain(options, source, frame);
  return run_screen(options, source, frame);
}

}  // namespace websmtp::ctl
