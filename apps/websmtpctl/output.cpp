#include "output.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <limits>
#include <vector>

#include <nlohmann/json.hpp>

#include "global_options.hpp"

namespace websmtp::ctl {
namespace {

constexpr std::size_t kExcerptBytes = 200;

// The figures api.md promises for GET /admin/queue, in its order.
constexpr std::array<const char*, 13> kQueueKeys = {
    "queued",       "in_flight",           "deferred",        "completed",       "failed",       "workers",
    "workers_busy", "oldest_queued_age_s", "submitted_total", "delivered_total", "failed_total", "uptime_s",
    "paused"};

std::string scalar_text(const nlohmann::json& value) {
  if (value.is_string()) return printable_excerpt(value.get_ref<const std::string&>(), std::string::npos);
  if (value.is_null()) return "-";
  // dump() cannot throw here: strings were handled above and numbers/bools are ASCII.
  return printable_excerpt(value.dump(), kExcerptBytes);
}

}  // namespace

std::size_t display_width(std::string_view text) {
  return static_cast<std::size_t>(
      std::count_if(text.begin(), text.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

namespace {
// Spaces that bring `text` to `columns` display columns.
std::string padding(std::string_view text, std::size_t columns) {
  const std::size_t w = display_width(text);
  return std::string(columns > w ? columns - w : 0, ' ');
}
}  // namespace

void print_error(std::string_view message) { std::cerr << "websmtpctl: " << message << '\n'; }

int report_failure(const HttpFailure& failure, const Url& url) {
  switch (failure.error) {
    case HttpError::kBadUrl:
      print_error(failure.detail);
      return kExitUsage;
    case HttpError::kCannotConnect:
      print_error("cannot connect to " + url.text + ": " + failure.detail);
      return kExitUnreachable;
    case HttpError::kTimeout:
      print_error("timed out talking to " + url.text + ": " + failure.detail);
      return kExitUnreachable;
    case HttpError::kProtocol:
      break;
  }
  print_error("bad answer from " + url.text + ": " + failure.detail);
  return kExitRefused;
}

namespace {
bool json_errors = false;
}  // namespace

void set_json_errors(bool on) { json_errors = on; }

int report_refusal(const HttpResponse& response) {
  const auto answer = parse_json_object(response.body);
  if (!answer || (!answer->contains("error") && !answer->contains("code"))) return report_unexpected(response);
  if (json_errors) {
    std::cout << answer->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n' << std::flush;
    return kExitRefused;
  }

  std::string line =
      printable_excerpt(json_string(*answer, "error", "HTTP " + std::to_string(response.status)), std::string::npos);
  std::string details = printable_excerpt(json_string(*answer, "code"), kExcerptBytes);
  const std::string field = printable_excerpt(json_string(*answer, "field"), kExcerptBytes);
  if (!field.empty()) details += (details.empty() ? "field " : ", field ") + field;
  if (!details.empty()) line += " (" + details + ")";
  print_error(line);

  // Rate limits and a full store are temporary: tell a human when trying again makes sense.
  if (const auto retry_after = response.header("Retry-After"); retry_after && !retry_after->empty()) {
    // Retry-After is either delay-seconds or an HTTP date.
    const bool seconds =
        std::all_of(retry_after->begin(), retry_after->end(), [](char c) { return c >= '0' && c <= '9'; });
    print_error("the server asks to retry " + std::string(seconds ? "in " : "after ") +
                printable_excerpt(*retry_after, 40) + (seconds ? " s" : ""));
  }
  return kExitRefused;
}

int report_unexpected(const HttpResponse& response) {
  const std::string excerpt = printable_excerpt(response.body, kExcerptBytes);
  print_error("unexpected answer (HTTP " + std::to_string(response.status) +
              "): " + (excerpt.empty() ? std::string("(empty body)") : excerpt));
  return kExitRefused;
}

std::optional<nlohmann::json> parse_json_object(const std::string& body) {
  auto parsed = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) return std::nullopt;
  return parsed;
}

void print_json_answer(const HttpResponse& response) {
  std::string_view body = response.body;
  while (!body.empty() && (body.back() == '\n' || body.back() == '\r' || body.back() == ' ')) body.remove_suffix(1);
  std::cout << body << '\n' << std::flush;
}

std::string printable_excerpt(std::string_view text, std::size_t max_bytes) {
  bool truncated = false;
  if (text.size() > max_bytes) {
    std::size_t cut = max_bytes;
    // Do not split a UTF-8 sequence: back up over continuation bytes.
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
    text = text.substr(0, cut);
    truncated = true;
  }
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\n' || c == '\r' || c == '\t') {
      // Multi-line SMTP replies arrive CRLF-joined: one space per line break reads best.
      if (out.empty() || out.back() != ' ') out.push_back(' ');
    } else if (u < 0x20 || u == 0x7f) {
      out.push_back('?');  // never let a server drive the terminal with escape codes
    } else {
      out.push_back(c);
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  if (truncated) out += " ...";
  return out;
}

std::string json_string(const nlohmann::json& object, const char* key, std::string fallback) {
  if (!object.is_object()) return fallback;
  const auto it = object.find(key);
  if (it == object.end() || !it->is_string()) return fallback;
  return it->get<std::string>();
}

std::int64_t json_int(const nlohmann::json& object, const char* key, std::int64_t fallback) {
  if (!object.is_object()) return fallback;
  const auto it = object.find(key);
  if (it == object.end()) return fallback;
  if (it->is_number_integer() && !it->is_number_unsigned()) return it->get<std::int64_t>();
  if (it->is_number_unsigned()) {
    const auto value = it->get<std::uint64_t>();
    return value > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())
               ? std::numeric_limits<std::int64_t>::max()
               : static_cast<std::int64_t>(value);
  }
  if (it->is_number_float()) {
    const double value = it->get<double>();
    // Converting an out-of-range double is undefined behaviour; 2^62 is far beyond any count here.
    if (std::isfinite(value) && std::fabs(value) < 4.6e18) return static_cast<std::int64_t>(value);
  }
  return fallback;
}

bool json_bool(const nlohmann::json& object, const char* key, bool fallback) {
  if (!object.is_object()) return fallback;
  const auto it = object.find(key);
  if (it == object.end() || !it->is_boolean()) return fallback;
  return it->get<bool>();
}

std::string format_local_time(std::int64_t unix_seconds) {
  const auto t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  if (localtime_r(&t, &tm) == nullptr) return std::to_string(unix_seconds);
  std::array<char, 64> buffer{};
  const auto n = std::strftime(buffer.data(), buffer.size(), "%Y-%m-%d %H:%M:%S %Z", &tm);
  return n == 0 ? std::to_string(unix_seconds) : std::string(buffer.data(), n);
}

std::string format_status(const nlohmann::json& status, const std::string& ref) {
  std::string out = printable_excerpt(json_string(status, "id", ref), kExcerptBytes) + "  " +
                    printable_excerpt(json_string(status, "status", "unknown"), kExcerptBytes) + '\n';

  struct Row {
    std::string address;
    std::string state;
    std::string rest;
  };
  std::vector<Row> rows;
  std::vector<std::string> listed;
  const auto recipients = status.find("recipients");
  if (recipients != status.end() && recipients->is_array()) {
    for (const auto& r : *recipients) {
      if (!r.is_object()) continue;
      Row row;
      row.address = printable_excerpt(json_string(r, "address", "?"), kExcerptBytes);
      row.state = printable_excerpt(json_string(r, "state", "?"), kExcerptBytes);
      listed.push_back(json_string(r, "address"));

      std::vector<std::string> parts;
      const auto code = json_int(r, "smtp_code");
      const auto reply = printable_excerpt(json_string(r, "smtp_reply"), std::string::npos);
      if (code > 0 || !reply.empty()) {
        std::string smtp = code > 0 ? std::to_string(code) : std::string("-");
        if (!reply.empty()) smtp += ' ' + reply;
        parts.push_back(std::move(smtp));
      }
      if (const auto attempts = json_int(r, "attempts"); attempts > 0) {
        parts.push_back("attempts " + std::to_string(attempts));
      }
      if (row.state == "deferred") {
        if (const auto next = json_int(r, "next_attempt"); next > 0) {
          parts.push_back("next attempt " + format_local_time(next));
        }
      }
      if (row.state == "failed") {
        if (const auto reason = json_string(r, "reason"); !reason.empty()) {
          parts.push_back("reason " + printable_excerpt(reason, kExcerptBytes));
        }
      }
      if (json_bool(r, "possible_duplicate")) parts.push_back("(possible duplicate)");
      for (const auto& part : parts) row.rest += "  " + part;
      rows.push_back(std::move(row));
    }
  }
  // The seed answered with a bare "failed" list and no per-recipient detail: show those too.
  const auto failed = status.find("failed");
  if (failed != status.end() && failed->is_array()) {
    for (const auto& f : *failed) {
      if (!f.is_string()) continue;
      const auto& address = f.get_ref<const std::string&>();
      if (std::find(listed.begin(), listed.end(), address) != listed.end()) continue;
      rows.push_back({printable_excerpt(address, kExcerptBytes), "failed", {}});
    }
  }

  std::size_t address_width = 0;
  std::size_t state_width = 0;
  for (const auto& row : rows) {
    address_width = std::max(address_width, display_width(row.address));
    state_width = std::max(state_width, display_width(row.state));
  }
  for (const auto& row : rows) {
    std::string line = "  " + row.address + padding(row.address, address_width) + "  " + row.state;
    if (!row.rest.empty()) line += padding(row.state, state_width) + row.rest;
    out += line + '\n';
  }
  return out;
}

std::string format_queue(const nlohmann::json& queue) {
  std::vector<std::pair<std::string, std::string>> rows;
  for (const char* key : kQueueKeys) {
    const auto it = queue.find(key);
    rows.emplace_back(key, it == queue.end() ? std::string("-") : scalar_text(*it));
  }
  // Later versions add figures; show them rather than hide them (the object is key-sorted).
  for (const auto& item : queue.items()) {
    const std::string& key = item.key();
    const auto known = [&key](const char* k) { return key == k; };
    if (std::find_if(kQueueKeys.begin(), kQueueKeys.end(), known) != kQueueKeys.end()) continue;
    if (key == "nodes" && item.value().is_array()) continue;  // a table of its own, below
    rows.emplace_back(printable_excerpt(key, kExcerptBytes), scalar_text(item.value()));
  }

  std::size_t width = 0;
  for (const auto& row : rows) width = std::max(width, display_width(row.first));
  std::string out;
  for (const auto& [key, value] : rows) out += key + padding(key, width) + "  " + value + '\n';
  const auto nodes = queue.find("nodes");
  if (nodes != queue.end() && nodes->is_array()) out += '\n' + format_nodes(*nodes);
  return out;
}

std::string format_nodes(const nlohmann::json& nodes) {
  std::vector<std::vector<std::string>> rows = {{"NODE", "STATE", "STARTED", "LAST SEEN", "WORKERS", "BUSY",
                                                 "IN FLIGHT", "SUBMITTED", "DELIVERED", "FAILED"}};
  for (const auto& n : nodes) {
    if (!n.is_object()) continue;
    std::string name = printable_excerpt(json_string(n, "node_id", "?"), 100);
    if (json_bool(n, "self")) name += " (this)";
    // Not live and not stopped: it died, or cannot reach the database.
    const char* state = json_bool(n, "live") ? "live" : json_bool(n, "stopped") ? "stopped" : "silent";
    const auto time = [&n](const char* key) {
      const auto t = json_int(n, key);
      return t > 0 ? format_local_time(t) : std::string("-");
    };
    const auto num = [&n](const char* key) { return std::to_string(json_int(n, key)); };
    rows.push_back({name, state, time("started"), time("seen"), num("workers"), num("workers_busy"), num("in_flight"),
                    num("submitted_total"), num("delivered_total"), num("failed_total")});
  }
  return format_table(rows);
}

std::string format_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width;
  for (const auto& r : rows) {
    if (width.size() < r.size()) width.resize(r.size(), 0);
    for (std::size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], display_width(r[i]));
  }
  std::string out;
  for (const auto& r : rows) {
    for (std::size_t i = 0; i < r.size(); ++i) {
      out += r[i];
      if (i + 1 < r.size()) out += padding(r[i], width[i] + 2);
    }
    out += '\n';
  }
  return out;
}

std::string format_jobs(const nlohmann::json& answer) {
  std::vector<std::vector<std::string>> rows = {{"REF", "STATUS", "SUBMITTED", "FROM", "RECIPIENTS", "NEXT ATTEMPT"}};
  const auto jobs = answer.find("jobs");
  if (jobs != answer.end() && jobs->is_array()) {
    for (const auto& j : *jobs) {
      if (!j.is_object()) continue;
      std::string recipients;
      std::int64_t n = 0;
      const auto rs = j.find("recipients");
      if (rs != j.end() && rs->is_array()) {
        for (const auto& r : *rs) {
          if (++n > 2) continue;
          if (!recipients.empty()) recipients += ", ";
          recipients += printable_excerpt(json_string(r, "address"), 60) + " (" + json_string(r, "state") + ")";
        }
        if (n > 2) recipients += " +" + std::to_string(n - 2);
      }
      std::string status = json_string(j, "status");
      if (json_bool(j, "in_flight")) status += " (in flight)";
      std::int64_t next = json_int(j, "next_attempt");
      rows.push_back({printable_excerpt(json_string(j, "ref"), kExcerptBytes), status,
                      format_local_time(json_int(j, "time_submitted")), printable_excerpt(json_string(j, "from"), 60),
                      recipients.empty() ? "-" : recipients, next ? format_local_time(next) : "-"});
    }
  }
  std::string out = format_table(rows);
  if (rows.size() == 1) out += "(no jobs)\n";
  const std::string next = json_string(answer, "next");
  if (!next.empty()) out += "more: --after " + printable_excerpt(next, kExcerptBytes) + "\n";
  return out;
}

std::string format_job(const nlohmann::json& job) {
  std::string out = format_status(job, json_string(job, "id"));
  out += "  from " + printable_excerpt(json_string(job, "from"), kExcerptBytes);
  const std::string by = json_string(job, "submitted_by");
  if (!by.empty()) out += ", submitted by " + printable_excerpt(by, kExcerptBytes);
  out += ", submitted " + format_local_time(json_int(job, "time_submitted"));
  if (json_bool(job, "in_flight")) out += ", in flight now";
  out += '\n';
  const auto recipients = job.find("recipients");
  if (recipients != job.end() && recipients->is_array()) {
    for (const auto& r : *recipients) {
      const auto history = r.find("history");
      if (history == r.end() || !history->is_array() || history->empty()) continue;
      out += "  attempts for " + printable_excerpt(json_string(r, "address"), kExcerptBytes) + ":\n";
      for (const auto& a : *history) {
        std::string host = json_string(a, "host");
        // "-": no SMTP reply (code 0: the connection failed, timed out), no host answered.
        const auto code = json_int(a, "smtp_code");
        out += "    " + format_local_time(json_int(a, "time")) + "  " + (code ? std::to_string(code) : "-") + " " +
               printable_excerpt(json_string(a, "smtp_reply"), kExcerptBytes) + "  (" +
               (host.empty() ? std::string("-") : printable_excerpt(host, 100)) + ")" + '\n';
      }
    }
  }
  const auto message = job.find("message");
  if (message != job.end()) {
    out += message->is_string() ? "\n" + message->get<std::string>() : "  (message no longer stored: the job is finished)\n";
    if (!out.empty() && out.back() != '\n') out += '\n';
  }
  return out;
}

std::string format_suppressions(const nlohmann::json& answer) {
  std::vector<std::vector<std::string>> rows = {{"ADDRESS", "REASON", "CREATED", "SMTP REPLY"}};
  const auto list = answer.find("suppressions");
  if (list != answer.end() && list->is_array()) {
    for (const auto& s : *list) {
      std::int64_t code = json_int(s, "smtp_code");
      std::string reply = printable_excerpt(json_string(s, "smtp_reply"), kExcerptBytes);
      rows.push_back({printable_excerpt(json_string(s, "address"), kExcerptBytes), json_string(s, "reason"),
                      format_local_time(json_int(s, "created")),
                      code ? std::to_string(code) + " " + reply : "-"});
    }
  }
  std::string out = format_table(rows);
  if (rows.size() == 1) out += "(no suppressed addresses)\n";
  return out;
}

bool stdin_is_terminal() { return ::isatty(STDIN_FILENO) == 1; }
bool stderr_is_terminal() { return ::isatty(STDERR_FILENO) == 1; }

void ProgressLine::show(const std::string& text) {
  if (!enabled_) return;
  std::string line = "\r" + text;
  if (text.size() < width_) line += std::string(width_ - text.size(), ' ');
  width_ = std::max(width_, text.size());
  std::cerr << line << std::flush;
}

void ProgressLine::clear() {
  if (!enabled_ || width_ == 0) return;
  std::cerr << '\r' << std::string(width_, ' ') << '\r' << std::flush;
  width_ = 0;
}

}  // namespace websmtp::ctl
