#pragma once
// What websmtpctl prints: stderr diagnostics (one line each, prefixed "websmtpctl: "),
// the mapping of failures to exit codes, and the human renderings of the server's JSON.
// The format_* functions are pure so they can be tested without a server.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "http_client.hpp"

namespace websmtp::ctl {

void print_error(std::string_view message);

// Prints the line for a failed exchange and returns its exit code: 2 for a bad URL,
// 3 when the server could not be reached in time, 1 when it answered with garbage.
int report_failure(const HttpFailure& failure, const Url& url);

// Prints "<error> (<code>, field <field>)" from a 4xx/5xx JSON error, or the
// "unexpected answer" line when the body is not one; returns kExitRefused.
int report_refusal(const HttpResponse& response);
// With --json, report_refusal() prints the server's JSON error as it came, on stdout (what a
// script reads); the exit code is the same. Set once, after parsing.
void set_json_errors(bool on);

// Prints "unexpected answer (HTTP n): <first 200 bytes>"; returns kExitRefused.
int report_unexpected(const HttpResponse& response);

// The answer as a JSON object, or nullopt when it is anything else (HTML, text, array).
std::optional<nlohmann::json> parse_json_object(const std::string& body);

// Writes the server's JSON answer verbatim (it is already JSON) plus a final newline.
void print_json_answer(const HttpResponse& response);

// Up to max_bytes of text, control characters replaced, safe to print on one line.
std::string printable_excerpt(std::string_view text, std::size_t max_bytes);

// Code points in a UTF-8 string: the columns it takes (each code point counted as one column:
// what is shown is ASCII, block characters and printable_excerpt() output). Tables pad by it,
// so that a non-ASCII address does not push its row's columns left.
std::size_t display_width(std::string_view text);

// Lenient accessors: a missing field or one of the wrong type yields the fallback, so an
// older or newer server never makes the client throw.
std::string json_string(const nlohmann::json& object, const char* key, std::string fallback = {});
std::int64_t json_int(const nlohmann::json& object, const char* key, std::int64_t fallback = 0);
bool json_bool(const nlohmann::json& object, const char* key, bool fallback = false);

std::string format_local_time(std::int64_t unix_seconds);

// "REF  status" then one line per recipient; `ref` is used when the answer has no "id".
std::string format_status(const nlohmann::json& status, const std::string& ref);

// Aligned "key  value" lines for GET /admin/queue, in api.md's order, unknown keys last.
// With several nodes (STORE=postgres) the answer's "nodes" follow as a table (format_nodes).
std::string format_queue(const nlohmann::json& queue);
// The "nodes" of GET /admin/queue: one row per node, this one marked "(this)".
std::string format_nodes(const nlohmann::json& nodes);

// Rows of cells as left-aligned columns two spaces apart.
std::string format_table(const std::vector<std::vector<std::string>>& rows);

// GET /admin/jobs as a table (newest first) and the cursor of the next page, if any.
std::string format_jobs(const nlohmann::json& answer);
// GET /admin/jobs/REF: the status, then the envelope and each recipient's attempts.
std::string format_job(const nlohmann::json& job);
// GET /admin/suppressions as a table.
std::string format_suppressions(const nlohmann::json& answer);

bool stdin_is_terminal();
bool stderr_is_terminal();

// A single self-overwriting line on stderr, only when stderr is a terminal, so logs and
// pipes never see carriage returns.
class ProgressLine {
 public:
  explicit ProgressLine(bool enabled) : enabled_(enabled) {}
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;
  ~ProgressLine() { clear(); }

  void show(const std::string& text);
  void clear();

 private:
  bool enabled_;
  std::size_t width_ = 0;
};

}  // namespace websmtp::ctl
