#pragma once
// File descriptors: how many the process may hold and how they are shared out. Every client
// connection holds one; so do the store, the SMTP sessions, the listeners and the admin API.
// The connection caps are kept below the limit with a reserve for the rest, so that a flood of
// connections meets a cap (a connection closed at once) before it can meet EMFILE.
#include <cstddef>
#include <cstdint>

namespace websmtp::daemon::http {

struct DescriptorLimit {
  std::uint64_t before = 0;  // the soft RLIMIT_NOFILE the process started with
  std::uint64_t now = 0;     // after raising it to the hard limit (or as far as the kernel allows)
};

// Raises RLIMIT_NOFILE's soft limit to its hard limit (capped at fs.nr_open when unlimited).
DescriptorLimit raise_descriptor_limit();

// Descriptors open in this process now.
std::size_t open_descriptors();

struct DescriptorPlan {
  std::size_t public_connections = 0;  // MAX_CONNECTIONS, or less when the limit is lower
  std::size_t admin_connections = 0;
  std::size_t reserve = 0;  // for everything else
  bool lowered = false;     // public_connections is below what MAX_CONNECTIONS asked for
};

// Fewest public connections worth starting with; below it websmtpd refuses to start.
inline constexpr std::size_t kMinPublicConnections = 16;
inline constexpr std::size_t kAdminConnections = 64;

// Pure: shares out `limit` descriptors. `in_use` are open already (store, logs, threads),
// `delivery_threads` may each hold SMTP (and DNS) sockets. Returns public_connections 0 when
// the limit is too low to serve (the caller then refuses to start).
DescriptorPlan plan_descriptors(std::uint64_t limit, std::size_t max_connections, std::size_t in_use,
                                std::size_t delivery_threads, std::size_t http_threads);

}  // namespace websmtp::daemon::http
