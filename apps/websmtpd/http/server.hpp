#pragma once
// An HTTP/1.1 endpoint on Pistache's TCP reactor: Pistache accepts connections and reads
// sockets on its reactor threads; each connection's bytes go to a Connection (framing,
// answer order, writes), its requests to a RequestHandler (the router).
#include <pistache/endpoint.h>

#include <condition_variable>
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
  ConnectionLimits limits;
};

class Server {
 public:
  Server(const ServerOptions& options, RequestHandler handler);
  ~Server();
  int port() const;
  void shutdown();

  struct Shared;  // what every reactor thread's handler shares

 private:
  void reap();
  void stop_reaper();

  std::shared_ptr<Shared> shared_;
  std::unique_ptr<Pistache::Http::Endpoint> endpoint_;
  std::mutex reaper_mu_;
  std::condition_variable reaper_cv_;
  bool reaper_stop_ = false;
  std::thread reaper_;
};

}  // namespace websmtp::daemon::http
