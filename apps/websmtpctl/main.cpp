// websmtpctl: the command-line client of websmtp. It only speaks HTTP to websmtpd's
// public and admin APIs; each subcommand lives in its own *_cmd.cpp.
#include <csignal>
#include <exception>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "output.hpp"
#include "version.hpp"

int main(int argc, char** argv) {
  using namespace websmtp::ctl;

  // A server that hangs up mid-request must become an error value, not a silent SIGPIPE death.
  std::signal(SIGPIPE, SIG_IGN);

  CLI::App app{"Command-line client for the websmtp HTTP-to-SMTP gateway.", "websmtpctl"};
  app.set_version_flag("--version", std::string("websmtpctl ") + kWebsmtpctlVersion);
  // Global options may also follow the subcommand: `websmtpctl status REF --json`.
  app.fallthrough();
  app.require_subcommand(1);

  GlobalOptions global;
  setup_global_options(app, global);
  std::vector<Subcommand> commands = {
      setup_send(app, global),
      setup_status(app, global),
      setup_queue(app, global),
      setup_dkim(app, global),
      setup_domain(app, global),
      setup_top(app, global),
  };
  for (auto& c : setup_keys(app, global)) commands.push_back(std::move(c));
  for (auto& c : setup_admin(app, global)) commands.push_back(std::move(c));
  // These two read the whole command tree: they come after every other command.
  commands.push_back(setup_completion(app));
  commands.push_back(setup_man(app));
  add_help_texts(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11's own codes (105, 106, ...) are not ours: every parse error is a usage error.
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }

  set_json_errors(global.json);
  try {
    for (const auto& command : commands) {
      if (command.app->parsed()) return command.run();
    }
  } catch (const std::exception& e) {
    // Expected failures are values; this is the last guard so a bug still ends in one line.
    print_error(std::string("internal error: ") + e.what());
    return kExitRefused;
  }
  return kExitUsage;
}
