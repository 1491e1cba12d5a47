// `websmtpctl queue`: the admin API's queue figures (GET {admin}/admin/queue).
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "output.hpp"

namespace websmtp::ctl {

Subcommand setup_queue(CLI::App& app, const GlobalOptions& global) {
  auto options = std::make_shared<QueueOptions>();
  options->global = &global;
  auto* sub = app.add_subcommand("queue", "Show the queue figures (admin API, loopback only)");
  return {sub, [options] { return run_queue(*options); }};
}

int run_queue(const QueueOptions& options) {
  const GlobalOptions& global = *options.global;
  auto client = make_client(global, global.admin_url);
  if (!client) return kExitUsage;

  const auto result = client->get("/admin/queue");
  if (!result) return report_failure(result.error(), client->base());
  const auto& response = result.value();
  if (response.status < 200 || response.status > 299) return report_refusal(response);
  const auto answer = parse_json_object(response.body);
  if (!answer) return report_unexpected(response);

  if (global.json) {
    print_json_answer(response);
  } else {
    std::cout << format_queue(*answer) << std::flush;
  }
  return kExitOk;
}

}  // namespace websmtp::ctl
