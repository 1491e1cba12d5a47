#pragma once
#include "websmtp/config/config.hpp"

namespace websmtp::daemon {

// Runs the daemon until SIGTERM/SIGINT; returns the process exit code.
int run(const config::Config& config);

}  // namespace websmtp::daemon
