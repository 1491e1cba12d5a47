#include "descriptors.hpp"

#include <dirent.h>
#include <sys/resource.h>

#include <algorithm>
#include <fstream>

namespace websmtp::daemon::http {

namespace {
// Room for what opens descriptors later or now and then: SQLite's journal and temp files, log
// files, resolver sockets, the reactors' epoll/eventfd/timerfd sets, a spare per listener.
constexpr std::size_t kFixedReserve = 64;
constexpr std::size_t kPerDeliveryThread = 4;  // SMTP session, TLS, DNS, one being replaced
constexpr std::size_t kPerHttpThread = 8;      // a reactor's epoll and eventfds
}  // namespace

DescriptorLimit raise_descriptor_limit() {
  DescriptorLimit out;
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return out;
  out.before = out.now = rl.rlim_cur;
  rlim_t target = rl.rlim_max;
  if (target == RLIM_INFINITY) {
    // The kernel refuses an unlimited soft limit; fs.nr_open is the most it allows.
    std::uint64_t nr_open = 1 << 20;
    std::ifstream in("/proc/sys/fs/nr_open");
    in >> nr_open;
    target = static_cast<rlim_t>(nr_open);
  }
  if (target <= rl.rlim_cur) return out;
  rl.rlim_cur = target;
  if (::setrlimit(RLIMIT_NOFILE, &rl) == 0) out.now = target;
  return out;
}

std::size_t open_descriptors() {
  std::size_t n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') ++n;
    ::closedir(d);
    if (n > 0) --n;  // the directory stream's own
  }
  return n;
}

DescriptorPlan plan_descriptors(std::uint64_t limit, std::size_t max_connections, std::size_t in_use,
                                std::size_t delivery_threads, std::size_t http_threads) {
  DescriptorPlan p;
  p.admin_connections = kAdminConnections;
  p.reserve = in_use + kFixedReserve + kPerDeliveryThread * delivery_threads + kPerHttpThread * (http_threads + 1);
  std::uint64_t taken = p.reserve + p.admin_connections;
  std::uint64_t room = limit > taken ? limit - taken : 0;
  p.public_connections = static_cast<std::size_t>(std::min<std::uint64_t>(max_connections, room));
  p.lowered = p.public_connections < max_connections;
  if (p.public_connections < std::min(kMinPublicConnections, max_connections)) p.public_connections = 0;
  return p;
}

}  // namespace websmtp::daemon::http
