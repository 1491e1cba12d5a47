#include "global_options.hpp"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <variant>

#include <CLI/CLI.hpp>

#include "output.hpp"

namespace websmtp::ctl {

void setup_global_options(CLI::App& app, GlobalOptions& global) {
  app.add_option("--server", global.server_url, "Public API base URL")
      ->type_name("URL")
      ->envname("WEBSMTP_URL")
      ->capture_default_str();
  app.add_option("--admin", global.admin_url, "Admin API base URL (loopback only)")
      ->type_name("URL")
      ->envname("WEBSMTP_ADMIN_URL")
      ->capture_default_str();
  app.add_flag("--json", global.json, "Print the server's JSON answer instead of text");
  auto* timeout = app.add_option("--timeout", global.timeout_s, "Seconds to wait for a connection or an answer")
                      ->type_name("SECONDS")
                      ->capture_default_str();
  check_seconds(*timeout, 0.001, 3600);
  app.add_option("--api-key", global.api_key, "API key for the public API, sent as 'Authorization: Bearer KEY'")
      ->type_name("KEY")
      ->envname("WEBSMTP_API_KEY");
  app.add_option("--admin-token", global.admin_token,
                 "websmtpd's ADMIN_TOKEN, sent to the admin API as 'Authorization: Bearer TOKEN'")
      ->type_name("TOKEN")
      ->envname("WEBSMTP_ADMIN_TOKEN");
}

void check_seconds(CLI::Option& option, double min_s, double max_s) {
  option.check(CLI::Validator(
      [min_s, max_s](std::string& text) -> std::string {
        char* end = nullptr;
        const double value = std::strtod(text.c_str(), &end);
        if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(value) || value < min_s ||
            value > max_s) {
          return "expected a number of seconds between " + CLI::detail::to_string(min_s) + " and " +
                 CLI::detail::to_string(max_s) + ", got '" + text + "'";
        }
        return {};
      },
      ""));
}

namespace {

std::optional<HttpClient> client_for(const GlobalOptions& global, const std::string& url_text, bool admin) {
  auto parsed = parse_url(url_text);
  if (const auto* failure = std::get_if<HttpFailure>(&parsed)) {
    print_error(failure->detail);
    return std::nullopt;
  }
  // Each API gets its own credential only: an admin token never goes to the public port
  // (which may be a proxy or another host), an API key never to the admin port.
  const std::string& credential = admin ? global.admin_token : global.api_key;
  if (!is_header_safe(credential)) {
    print_error(admin ? "the admin token contains control characters" : "the API key contains control characters");
    return std::nullopt;
  }
  const auto timeout = std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(global.timeout_s * 1000)));
  return HttpClient(std::get<Url>(std::move(parsed)), timeout, credential);
}

}  // namespace

std::optional<HttpClient> make_client(const GlobalOptions& global, const std::string& url_text) {
  // Subcommands pass global.admin_url or global.server_url themselves; compared by identity
  // first, so that equal URLs (an unusual set-up) still pick the API the caller meant.
  const bool admin =
      &url_text == &global.admin_url || (&url_text != &global.server_url && url_text == global.admin_url);
  return client_for(global, url_text, admin);
}

std::optional<HttpClient> make_public_client(const GlobalOptions& global) {
  return client_for(global, global.server_url, false);
}

std::optional<HttpClient> make_admin_client(const GlobalOptions& global) {
  return client_for(global, global.admin_url, true);
}

}  // namespace websmtp::ctl
