// `websmtpctl status REF [--wait]`: read a job's status once, or follow it until every
// recipient is delivered or failed.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <memory>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "output.hpp"

namespace websmtp::ctl {
namespace {

using Clock = std::chrono::steady_clock;

// The longest long-poll we ask for: well under the server's 60 s cap and under the idle
// timeouts of the proxies that usually sit in front of it.
constexpr int kMaxHoldSeconds = 25;
// A server without long-poll answers at once; an answer this quick with no news means
// "poll later", and kPollPause keeps such a loop from hammering it.
constexpr auto kQuickAnswer = std::chrono::milliseconds(200);
constexpr auto kPollPause = std::chrono::milliseconds(250);

struct Counts {
  int total = 0;
  int delivered = 0;
  int failed = 0;
};

Counts count_recipients(const nlohmann::json& status) {
  Counts counts;
  const auto recipients = status.find("recipients");
  if (recipients != status.end() && recipients->is_array()) {
    for (const auto& r : *recipients) {
      ++counts.total;
      const auto state = json_string(r, "state");
      if (state == "delivered") ++counts.delivered;
      if (state == "failed") ++counts.failed;
    }
  }
  // The seed only listed failures; count them when there is no per-recipient detail.
  const auto failed = status.find("failed");
  if (failed != status.end() && failed->is_array()) {
    counts.failed = std::max(counts.failed, static_cast<int>(failed->size()));
  }
  return counts;
}

std::string progress_text(const nlohmann::json& status, Clock::duration elapsed) {
  const auto counts = count_recipients(status);
  std::string text = printable_excerpt(json_string(status, "status", "unknown"), 40);
  if (counts.total > 0) {
    text += "  " + std::to_string(counts.delivered) + "/" + std::to_string(counts.total) + " delivered";
  }
  if (counts.failed > 0) text += ", " + std::to_string(counts.failed) + " failed";
  text += "  " + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(elapsed).count()) + "s";
  return text;
}

// Seconds of server-side hold for the next poll: never past the deadline, never above the cap.
int hold_seconds(Clock::duration remaining) {
  const auto whole = std::chrono::duration_cast<std::chrono::seconds>(remaining).count();
  return static_cast<int>(std::clamp<std::int64_t>(whole, 0, kMaxHoldSeconds));
}

std::string seconds_text(double seconds) {
  const auto rounded = std::llround(seconds);
  return std::fabs(seconds - static_cast<double>(rounded)) < 1e-9 ? std::to_string(rounded)
                                                                  : CLI::detail::to_string(seconds);
}

}  // namespace

Subcommand setup_status(CLI::App& app, const GlobalOptions& global) {
  auto options = std::make_shared<StatusOptions>();
  options->global = &global;
  auto* sub = app.add_subcommand("status", "Show a message's delivery status");
  sub->add_option("ref", options->ref, "The ref printed by send")->type_name("REF")->required();
  sub->add_flag("--wait", options->wait, "Wait until every recipient is delivered or failed");
  auto* wait_timeout = sub->add_option("--wait-timeout", options->wait_timeout_s, "Give up waiting after SECONDS")
                           ->type_name("SECONDS")
                           ->capture_default_str();
  check_seconds(*wait_timeout, 0, 7 * 24 * 3600);
  return {sub, [options] { return run_status(*options); }};
}

int run_status(const StatusOptions& options) {
  const GlobalOptions& global = *options.global;
  if (options.ref.empty()) {
    print_error("the ref must not be empty");
    return kExitUsage;
  }
  auto client = make_client(global, global.server_url);
  if (!client) return kExitUsage;
  return show_status(*client, options.ref, global.json, options.wait, options.wait_timeout_s);
}

int show_status(const HttpClient& client, const std::string& ref, bool json, bool wait, double wait_timeout_s) {
  const std::string route = "/mail/status/" + percent_encode(ref);
  const auto start = Clock::now();
  const auto deadline =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(wait_timeout_s));
  ProgressLine progress(wait && stderr_is_terminal());

  HttpResponse last_response;
  nlohmann::json last;
  std::string since;  // the status word the server should wait to change from
  bool timed_out = false;
  for (bool first = true;; first = false) {
    std::string target = route;
    int hold = 0;
    if (!first) {
      hold = hold_seconds(deadline - Clock::now());
      target += "?wait=" + std::to_string(hold) + "&since=" + percent_encode(since);
    }
    const auto asked = Clock::now();
    auto result = client.get(target, std::chrono::seconds(hold));
    if (!result) {
      progress.clear();
      return report_failure(result.error(), client.base());
    }
    const auto& response = result.value();
    if (response.status < 200 || response.status > 299) {
      progress.clear();
      return report_refusal(response);
    }
    auto answer = parse_json_object(response.body);
    if (!answer) {
      progress.clear();
      return report_unexpected(response);
    }

    const std::string word = json_string(*answer, "status");
    const bool changed = first || word != since;
    since = word;
    last = std::move(*answer);
    last_response = response;

    if (!wait || word == "completed") break;
    const auto now = Clock::now();
    progress.show(progress_text(last, now - start));
    if (now >= deadline) {
      timed_out = true;
      break;
    }
    if (!changed && now - asked < kQuickAnswer)
      std::this_thread::sleep_for(std::min<Clock::duration>(kPollPause, deadline - now));
  }
  progress.clear();

  if (json) {
    print_json_answer(last_response);
  } else {
    std::cout << format_status(last, ref) << std::flush;
  }
  if (!wait) return kExitOk;

  const std::string shown_ref = printable_excerpt(ref, 200);
  if (timed_out) {
    print_error("gave up after " + seconds_text(wait_timeout_s) + " s: " + shown_ref + " is still " +
                printable_excerpt(since.empty() ? std::string("unknown") : since, 40));
    return kExitRefused;
  }
  if (const auto counts = count_recipients(last); counts.failed > 0) {
    print_error(shown_ref + " completed with " + std::to_string(counts.failed) + " failed recipient" +
                (counts.failed == 1 ? "" : "s"));
    return kExitRefused;
  }
  return kExitOk;
}

}  // namespace websmtp::ctl
