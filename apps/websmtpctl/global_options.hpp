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
  std::string api_key;      // public API: "Authorization: Bearer <api_key>"
  std::string admin_token;  // admin API: "Authorization: Bearer <admin_token>" (websmtpd's ADMIN_TOKEN)
};

void setup_global_options(CLI::App& app, GlobalOptions& global);

// Accepts a finite number of seconds in [min_s, max_s] ("nan" and "inf" are refused).
void check_seconds(CLI::Option& option, double min_s, double max_s);

// A client for `url_text` (--server or --admin) with the global timeout and the credential of
// that API: --admin-token for global.admin_url, --api-key otherwise. Nullopt after printing why
// not; the caller then exits with kExitUsage.
std::optional<HttpClient> make_client(const GlobalOptions& global, const std::string& url_text);
// The same for the public and the admin API by name.
std::optional<HttpClient> make_public_client(const GlobalOptions& global);
std::optional<HttpClient> make_admin_client(const GlobalOptions& global);

}  // namespace websmtp::ctl
