#pragma once
// An HTTP/1.1 endpoint: our own accept loop in front of Pistache's TCP reactor. Pistache reads
// and writes sockets on its reactor threads; each connection's bytes go to a Connection
// (framing, answer order, writes), its requests to a RequestHandler (the router).
//
// Accepting is ours, not Pistache's Listener, because Pistache 0.0.5's Listener spins when
// accept(2) fails: its listening socket is level-triggered in epoll, and on EMFILE/ENFILE it
// logs (to a null logger) and polls again at once, so a process out of descriptors burns a
// core for as long as a connection waits in the backlog. Here a connection over a cap is closed
// before Pistache ever sees it, and running out of descriptors sheds the waiting connection
// (the spare-descriptor trick) or pauses accepting briefly; it never spins.
#include <pistache/reactor.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "connection.hpp"

namespace websmtp::daemon::http {

struct ServerOptions {
  std::string host;
  int port = 0;
  int threads = 1;
  std::string name = "http";  // in thread names and log lines
  ConnectionLimits limits;
  // Open connections. At the cap a new connection takes the place of the connection idle the
  // longest (idle for a second at least), or is closed at once when none is.
  std::size_t max_connections = 10000;
  // Open connections from one client address (an IPv6 client: its /64); over it a new
  // connection is closed at once. 0: no cap.
  std::size_t max_connections_per_client = 0;
};

// What the accept loop has done, for logs and tests.
struct ServerCounters {
  std::uint64_t accepted = 0;
  std::uint64_t refused_total_cap = 0;        // closed at once: MAX_CONNECTIONS, nothing idle to replace
  std::uint64_t refused_client_cap = 0;       // closed at once: MAX_CONNECTIONS_PER_CLIENT
  std::uint64_t evicted_idle = 0;             // idle connections closed to make room
  std::uint64_t shed_out_of_descriptors = 0;  // accepted with the spare descriptor and closed (EMFILE)
  std::uint64_t accept_pauses = 0;            // accepting paused for a moment (no descriptor at all)
};

// The key that MAX_CONNECTIONS_PER_CLIENT counts by: the IPv4 address, or an IPv6 address's
// /64 (one subscriber's usual allocation; per address would be no limit at all).
std::string client_key(std::string_view address);

class Server {
 public:
  // Binds and starts serving; throws std::runtime_error when the address cannot be bound.
  Server(const ServerOptions& options, RequestHandler handler);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int port() const { return port_; }
  std::size_t open_connections() const;
  ServerCounters counters() const;
  void shutdown();

  struct Shared;  // what the accept loop, every reactor thread's handler and the reaper share

 private:
  void accept_loop();
  // Accepted `fd` from `address`: hands it to the reactor, or closes it over a cap.
  void admit(int fd, struct sockaddr_storage& address);
  // EMFILE/ENFILE: frees the spare descriptor, accepts the waiting connection with it and
  // closes it, takes the spare back. False when that was not possible either.
  bool shed_one();
  void reap();
  void stop_reaper();

  ServerOptions options_;
  std::shared_ptr<Shared> shared_;
  int listen_fd_ = -1;
  int wake_fd_ = -1;   // eventfd: ends the accept loop
  int spare_fd_ = -1;  // /dev/null, held for the moment the process has no descriptor left
  int port_ = 0;
  Pistache::Aio::Reactor reactor_;
  Pistache::Aio::Reactor::Key transport_key_;
  std::thread acceptor_;
  bool stopped_ = false;

  std::mutex reaper_mu_;
  std::condition_variable reaper_cv_;
  bool reaper_stop_ = false;
  std::thread reaper_;
};

}  // namespace websmtp::daemon::http
