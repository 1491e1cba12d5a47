#pragma once
// Options every subcommand shares, the exit codes, and how a subcommand gets its client.
#include <optional>
#include <string>

#include "http_client.hpp"

namespace CLI {
class App;
class Option;
}  // namespace CLI

namespace websmtp::ctl {

// The process exit codes promised in api.md ("Command line"); scripts depend on them.
inline constexpr int kExitOk = 0;
inline constexpr int kExitRefused = 1;      // 4xx/5xx, a failed recipient, a wait that timed out
inline constexpr int kExitUsage = 2;        // bad arguments, unreadable input file, bad URL
inline constexpr int kExitUnreachable = 3;  // cannot connect, or no answer in time

struct GlobalOptions {
  std::string server_url = "http://127.0.0.1:8080";
  std::string admin_url = "http://127.0.0.1:8081";
  bool json = false;
  double timeout_s = 10;
  std::string api_key;
};

void setup_global_options(CLI::App& app, GlobalOptions& global);

// Accepts a finite number of seconds in [min_s, max_s] ("nan" and "inf" are refused).
void check_seconds(CLI::Option& option, double min_s, double max_s);

// A client for `url_text` (--server or --admin) with the global timeout and API key, or
// nullopt after printing why not; the caller then exits with kExitUsage.
std::optional<HttpClient> make_client(const GlobalOptions& global, const std::string& url_text);

}  // namespace websmtp::ctl
