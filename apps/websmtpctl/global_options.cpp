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
  app.add_option("--api-key", global.api_key, "Sent as 'Authorization: Bearer KEY'")
      ->type_name("KEY")
      ->envname("WEBSMTP_API_KEY");
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

std::optional<HttpClient> make_client(const GlobalOptions& global, const std::string& url_text) {
  auto parsed = parse_url(url_text);
  if (const auto* failure = std::get_if<HttpFailure>(&parsed)) {
    print_error(failure->detail);
    return std::nullopt;
  }
  if (!is_header_safe(global.api_key)) {
    print_error("the API key contains control characters");
    return std::nullopt;
  }
  const auto timeout = std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(global.timeout_s * 1000)));
  return HttpClient(std::get<Url>(std::move(parsed)), timeout, global.api_key);
}

}  // namespace websmtp::ctl
