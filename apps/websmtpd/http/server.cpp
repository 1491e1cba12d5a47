#include "server.hpp"

#include <pistache/http.h>
#include <pistache/peer.h>

#include <mutex>
#include <unordered_map>

#include "websmtp/common/thread.hpp"

namespace websmtp::daemon::http {

struct Server::Shared {
  ConnectionLimits limits;
  RequestHandler handler;
  // Every open connection, for the timeout reaper.
  std::mutex mu;
  std::unordered_map<Connection*, std::weak_ptr<Connection>> open;
};

namespace {

// Pistache's Http::Handler is what an Endpoint takes; only its TCP side is used: connection
// events and raw input. One clone per reactor thread, so `connections_` needs no lock.
class RawHandler final : public Pistache::Http::Handler {
 public:
  HTTP_PROTOTYPE(RawHandler)
  explicit RawHandler(std::shared_ptr<Server::Shared> shared) : shared_(std::move(shared)) {}

  void onConnection(const std::shared_ptr<Pistache::Tcp::Peer>& peer) override {
    std::string address;
    try {
      address = peer->address().host();
    } catch (...) {
    }
    // Pistache's endpoint looks every peer's HTTP parser up on its idle timer; it must exist
    // even though the parser is never fed (its timeouts are disabled below: ours close
    // connections through shutdown(2), so that we hear of the close before the descriptor goes).
    peer->putData(Pistache::Http::Handler::ParserData, std::make_shared<Pistache::Http::RequestParser>(4096));
    auto conn = std::make_shared<Connection>(peer->fd(), peer, shared_->limits, &shared_->handler, std::move(address));
    {
      std::lock_guard lock(shared_->mu);
      shared_->open.emplace(conn.get(), conn);
    }
    connections_[peer->fd()] = std::move(conn);
  }
  void onInput(const char* buffer, size_t len, const std::shared_ptr<Pistache::Tcp::Peer>& peer) override {
    auto it = connections_.find(peer->fd());
    if (it != connections_.end()) it->second->on_input(buffer, len);
  }
  void onDisconnection(const std::shared_ptr<Pistache::Tcp::Peer>& peer) override {
    auto it = connections_.find(peer->fd());
    if (it == connections_.end()) return;
    it->second->close();  // before Pistache closes the descriptor
    {
      std::lock_guard lock(shared_->mu);
      shared_->open.erase(it->second.get());
    }
    connections_.erase(it);
  }
  void onRequest(const Pistache::Http::Request&, Pistache::Http::ResponseWriter) override {}

 private:
  std::shared_ptr<Server::Shared> shared_;
  std::unordered_map<int, std::shared_ptr<Connection>> connections_;
};

}  // namespace

Server::Server(const ServerOptions& o, RequestHandler handler) : shared_(std::make_shared<Shared>()) {
  shared_->limits = o.limits;
  shared_->handler = std::move(handler);
  endpoint_ = std::make_unique<Pistache::Http::Endpoint>(
      Pistache::Address(o.host, Pistache::Port(static_cast<uint16_t>(o.port))));
  // Pistache's own timeouts close a descriptor without telling the handler; ours are used.
  constexpr auto kNever = std::chrono::hours(24 * 365 * 100);
  auto opts = Pistache::Http::Endpoint::options()
                  .threads(o.threads)
                  .flags(Pistache::Tcp::Options::ReuseAddr | Pistache::Tcp::Options::NoDelay)
                  .headerTimeout(kNever)
                  .bodyTimeout(kNever)
                  .keepaliveTimeout(kNever);
  endpoint_->init(opts);
  endpoint_->setHandler(std::make_shared<RawHandler>(shared_));
  endpoint_->serveThreaded();
  reaper_ = std::thread([this] { reap(); });
}

Server::~Server() { stop_reaper(); }

void Server::reap() {
  name_this_thread("ws-http-timer");
  std::unique_lock lock(reaper_mu_);
  while (!reaper_stop_) {
    reaper_cv_.wait_for(lock, std::chrono::seconds(1));
    std::vector<std::shared_ptr<Connection>> conns;
    {
      std::lock_guard l(shared_->mu);
      conns.reserve(shared_->open.size());
      for (auto& [_, weak] : shared_->open)
        if (auto c = weak.lock()) conns.push_back(std::move(c));
    }
    auto now =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
            .count();
    for (auto& c : conns) c->check_timeouts(now);
  }
}

void Server::stop_reaper() {
  {
    std::lock_guard lock(reaper_mu_);
    reaper_stop_ = true;
  }
  reaper_cv_.notify_all();
  if (reaper_.joinable()) reaper_.join();
}

int Server::port() const { return static_cast<uint16_t>(endpoint_->getPort()); }

void Server::shutdown() {
  stop_reaper();
  endpoint_->shutdown();
}

}  // namespace websmtp::daemon::http
