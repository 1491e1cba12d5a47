// websmtpd: the HTTP-to-SMTP gateway daemon. main only wires things together:
// flags -> configuration -> logging -> daemon::run.
#include <spdlog/spdlog.h>

#include <pthread.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "daemon.hpp"
#include "logging.hpp"
#include "websmtp/config/config.hpp"

namespace {

std::string flag_name(const std::string& key) {
  std::string f = "--";
  for (char c : key) f += c == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return f;
}

std::map<std::string, std::string> read_dotenv(const std::string& path) {
  std::ifstream in(path);
  if (!in) return {};
  std::stringstream ss;
  ss << in.rdbuf();
  return websmtp::config::parse_dotenv(ss.str());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "websmtpd: accepts mail jobs over HTTP and delivers them over SMTP.\n"
      "Every setting is an environment variable (or a line in .env); a flag overrides both."};
  std::string env_file = ".env";
  app.add_option("--env-file", env_file, "file read for keys the environment does not set")->capture_default_str();
  std::map<std::string, std::string> flags;
  for (const auto& k : websmtp::config::keys()) {
    std::string help = std::string(k.help) + " [env " + k.name +
                       (k.default_value.empty() ? std::string() : ", default " + k.default_value) + "]";
    app.add_option_function<std::string>(
        flag_name(k.name), [&flags, name = std::string(k.name)](const std::string& v) { flags[name] = v; }, help);
  }
  CLI11_PARSE(app, argc, argv);

  // SIGTERM/SIGINT are taken by sigwait in daemon::run; every thread (the log flusher's
  // too) must be started with them blocked, or one of them would die of the signal.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  websmtp::daemon::setup_logging("info");

  websmtp::config::Config config;
  try {
    auto dotenv = read_dotenv(env_file);
    config = websmtp::config::load(
        [&](const std::string& key) -> std::optional<std::string> {
          if (auto it = flags.find(key); it != flags.end()) return it->second;
          if (const char* v = std::getenv(key.c_str())) return std::string(v);
          return std::nullopt;
        },
        dotenv);
  } catch (const websmtp::config::ConfigError& e) {
    std::cerr << "websmtpd: " << e.what() << "\n";
    return 2;
  }
  spdlog::set_level(spdlog::level::from_str(config.log_level));
  int rc = 1;
  try {
    rc = websmtp::daemon::run(config);
  } catch (const std::exception& e) {
    spdlog::critical("websmtpd cannot start: {}", e.what());
  }
  spdlog::shutdown();  // writes what is buffered
  return rc;
}
