#pragma once
// The daemon's log: stderr (journald under systemd), written in batches. At LOG_LEVEL=info a
// busy gateway logs a line per delivered recipient; one write(2) per line would cost more than
// the delivery's own bookkeeping. Lines are buffered and written at least once a second, at
// once for warnings and errors, and at exit.
#include <string>

namespace websmtp::daemon {

void setup_logging(const std::string& level);
// Writes what is buffered (before _Exit, at shutdown).
void flush_logs();

}  // namespace websmtp::daemon
