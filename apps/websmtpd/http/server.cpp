#include "server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <pistache/net.h>
#include <pistache/peer.h>
#include <pistache/tcp.h>
#include <pistache/transport.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#include <spdlog/spdlog.h>

#include "websmtp/common/thread.hpp"

namespace websmtp::daemon::http {

namespace {

constexpr int kBacklog = 1024;
constexpr int kAcceptBatch = 64;                  // accepts per wake-up before looking at the stop signal
constexpr int kAcceptPauseMs = 100;               // no descriptor at all: accepting waits this long
constexpr std::int64_t kMinIdleToEvictMs = 1000;  // a connection just answered may be about to send again
constexpr std::int64_t kIdleScanBackoffMs = 100;  // after a scan found nothing idle, refuse without scanning
constexpr std::int64_t kLogEveryMs = 10'000;      // refusals are logged at most this often

std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string hex_prefix64(const unsigned char* bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 8; ++i) {
    if (i > 0 && i % 2 == 0) out += ':';
    out += kHex[bytes[i] >> 4];
    out += kHex[bytes[i] & 0x0f];
  }
  return out + "::/64";
}

std::string key_of_v6(const in6_addr& a) {
  if (IN6_IS_ADDR_V4MAPPED(&a)) {
    char text[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, a.s6_addr + 12, text, sizeof text);
    return text;
  }
  return hex_prefix64(a.s6_addr);
}

std::string key_of(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) {
    char text[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(ss).sin_addr, text, sizeof text);
    return text;
  }
  if (ss.ss_family == AF_INET6) return key_of_v6(reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr);
  return "?";
}

int open_spare() { return ::open("/dev/null", O_RDONLY | O_CLOEXEC); }

}  // namespace

std::string client_key(std::string_view address) {
  std::string text(address);
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') text = text.substr(1, text.size() - 2);
  in_addr v4{};
  if (::inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    char out[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &v4, out, sizeof out);
    return out;
  }
  in6_addr v6{};
  if (::inet_pton(AF_INET6, text.c_str(), &v6) == 1) return key_of_v6(v6);
  return text;
}

struct Server::Shared {
  ConnectionLimits limits;
  RequestHandler handler;
  std::size_t max_connections = 0;
  std::size_t max_per_client = 0;

  std::mutex mu;
  struct Slot {
    std::string client;              // client_key
    std::weak_ptr<Connection> conn;  // set once the reactor has taken the connection
  };
  // Every admitted connection, by descriptor, from accept until the reactor closes it: the
  // caps count these, the reaper and the idle search walk them.
  std::unordered_map<int, Slot> slots;
  std::unordered_map<std::string, std::size_t> per_client;
  ServerCounters counters;
  std::int64_t no_idle_until_ms = 0;
};

namespace {

// Pistache's Tcp::Handler: connection events and raw input on a reactor thread. One clone per
// reactor thread, so `connections_` needs no lock.
class RawHandler final : public Pistache::Tcp::Handler {
 public:
  PROTOTYPE_OF(Pistache::Tcp::Handler, RawHandler)
  explicit RawHandler(std::shared_ptr<Server::Shared> shared) : shared_(std::move(shared)) {}

  void onConnection(const std::shared_ptr<Pistache::Tcp::Peer>& peer) override {
    std::string address;
    try {
      address = peer->address().host();
    } catch (...) {
    }
    auto conn = std::make_shared<Connection>(peer->fd(), peer, shared_->limits, &shared_->handler, std::move(address));
    {
      std::lock_guard lock(shared_->mu);
      shared_->slots[peer->fd()].conn = conn;
    }
    connections_[peer->fd()] = std::move(conn);
  }
  void onInput(const char* buffer, size_t len, const std::shared_ptr<Pistache::Tcp::Peer>& peer) override {
    auto it = connections_.find(peer->fd());
    if (it != connections_.end()) it->second->on_input(buffer, len);
  }
  void onDisconnection(const std::shared_ptr<Pistache::Tcp::Peer>& peer) override {
    auto it = connections_.find(peer->fd());
    if (it != connections_.end()) {
      it->second->close();  // before Pistache closes the descriptor
      connections_.erase(it);
    }
    std::lock_guard lock(shared_->mu);
    auto slot = shared_->slots.find(peer->fd());
    if (slot == shared_->slots.end()) return;
    if (auto n = shared_->per_client.find(slot->second.client); n != shared_->per_client.end() && --n->second == 0)
      shared_->per_client.erase(n);
    shared_->slots.erase(slot);
  }

 private:
  std::shared_ptr<Server::Shared> shared_;
  std::unordered_map<int, std::shared_ptr<Connection>> connections_;
};

}  // namespace

Server::Server(const ServerOptions& o, RequestHandler handler) : options_(o), shared_(std::make_shared<Shared>()) {
  shared_->limits = o.limits;
  shared_->handler = std::move(handler);
  shared_->max_connections = o.max_connections;
  shared_->max_per_client = o.max_connections_per_client;

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  std::string host = o.host;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  addrinfo* found = nullptr;
  std::string port_text = std::to_string(o.port);
  if (int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port_text.c_str(), &hints, &found); rc != 0)
    throw std::runtime_error("cannot resolve " + o.host + ": " + ::gai_strerror(rc));
  std::string why = "no address";
  // One listening socket, on the first address that binds; IPv4 first, so that "localhost"
  // listens where http://127.0.0.1 (websmtpctl's default) connects.
  std::vector<addrinfo*> candidates;
  for (addrinfo* a = found; a; a = a->ai_next) candidates.push_back(a);
  std::stable_partition(candidates.begin(), candidates.end(), [](addrinfo* a) { return a->ai_family == AF_INET; });
  for (addrinfo* a : candidates) {
    if (listen_fd_ >= 0) break;
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      why = std::strerror(errno);
      continue;
    }
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // inherited by accepted sockets
    if (::bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, kBacklog) != 0) {
      why = std::strerror(errno);
      ::close(fd);
      continue;
    }
    listen_fd_ = fd;
  }
  ::freeaddrinfo(found);
  if (listen_fd_ < 0) throw std::runtime_error("cannot listen on " + o.host + ":" + port_text + ": " + why);
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &len);
  port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(bound).sin6_port
                                            : reinterpret_cast<sockaddr_in&>(bound).sin_port);
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  spare_fd_ = open_spare();
  if (wake_fd_ < 0 || spare_fd_ < 0) {
    ::close(listen_fd_);
    if (wake_fd_ >= 0) ::close(wake_fd_);
    throw std::runtime_error(std::string("cannot create the listener's descriptors: ") + std::strerror(errno));
  }

  reactor_.init(Pistache::Aio::AsyncContext(static_cast<std::size_t>(o.threads), "ws-" + o.name + "-io"));
  transport_key_ =
      reactor_.addHandler(std::make_shared<Pistache::Tcp::Transport>(std::make_shared<RawHandler>(shared_)));
  reactor_.run();
  acceptor_ = std::thread([this] { accept_loop(); });
  reaper_ = std::thread([this] { reap(); });
}

Server::~Server() { shutdown(); }

std::size_t Server::open_connections() const {
  std::lock_guard lock(shared_->mu);
  return shared_->slots.size();
}

ServerCounters Server::counters() const {
  std::lock_guard lock(shared_->mu);
  return shared_->counters;
}

void Server::accept_loop() {
  name_this_thread(("ws-" + options_.name + "-acc").substr(0, 15).c_str());
  bool paused = false;
  std::int64_t last_log_ms = 0;
  for (;;) {
    pollfd fds[2] = {{paused ? -1 : listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    int n = ::poll(fds, 2, paused ? kAcceptPauseMs : -1);
    if (n < 0 && errno != EINTR) {
      spdlog::error("{} listener: poll: {}", options_.name, std::strerror(errno));
      paused = true;
      continue;
    }
    if (fds[1].revents) return;
    if (paused) {
      paused = false;
      if (spare_fd_ < 0) spare_fd_ = open_spare();
      continue;
    }
    if (n <= 0) continue;
    for (int i = 0; i < kAcceptBatch; ++i) {
      sockaddr_storage address{};
      socklen_t len = sizeof address;
      int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&address), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        admit(fd, address);
        continue;
      }
      int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK) break;
      if (err == EINTR || err == ECONNABORTED || err == EPROTO || err == EPERM || err == ENETDOWN ||
          err == ENOPROTOOPT || err == EHOSTDOWN || err == ENONET || err == EHOSTUNREACH || err == EOPNOTSUPP ||
          err == ENETUNREACH)
        continue;  // that connection failed; the next one may not
      // Out of descriptors (or kernel memory): the waiting connection is shed rather than left
      // to make poll(2) return at once, forever.
      bool shed = (err == EMFILE || err == ENFILE) && shed_one();
      if (!shed) {
        paused = true;
        std::lock_guard lock(shared_->mu);
        ++shared_->counters.accept_pauses;
      }
      if (std::int64_t now = steady_ms(); now - last_log_ms > kLogEveryMs) {
        last_log_ms = now;
        spdlog::warn("{} listener: accept: {}; {} (open connections: {})", options_.name, std::strerror(err),
                     shed ? "closing waiting connections at once" : "pausing accepts for 100 ms", open_connections());
      }
      break;
    }
  }
}

bool Server::shed_one() {
  if (spare_fd_ < 0) spare_fd_ = open_spare();
  if (spare_fd_ < 0) return false;
  ::close(spare_fd_);
  spare_fd_ = -1;
  int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd >= 0) ::close(fd);
  spare_fd_ = open_spare();  // may fail if another thread took the slot: then the next EMFILE pauses
  if (fd < 0) return false;
  std::lock_guard lock(shared_->mu);
  ++shared_->counters.shed_out_of_descriptors;
  return true;
}

void Server::admit(int fd, sockaddr_storage& address) {
  std::string client = key_of(address);
  std::shared_ptr<Connection> evict;
  {
    std::lock_guard lock(shared_->mu);
    auto& c = shared_->counters;
    ++c.accepted;
    std::size_t& from_client = shared_->per_client[client];
    if (shared_->max_per_client && from_client >= shared_->max_per_client) {
      // Closed before anything is read or written: answering would hold the descriptor the
      // cap is there to save. The client sees the connection closed, as from a full server.
      ++c.refused_client_cap;
      if (from_client == 0) shared_->per_client.erase(client);
      ::close(fd);
      return;
    }
    if (shared_->slots.size() >= shared_->max_connections) {
      // Full: the connection idle the longest makes room, if one has idled long enough; idle
      // keep-alive connections (or connect-only floods) then cannot lock new clients out.
      std::int64_t now = steady_ms();
      if (now >= shared_->no_idle_until_ms) {
        std::int64_t oldest = now - kMinIdleToEvictMs;
        for (auto& [_, slot] : shared_->slots) {
          auto conn = slot.conn.lock();
          if (!conn) continue;
          std::int64_t since = conn->idle_since_ms();
          if (since > 0 && since <= oldest) {
            oldest = since;
            evict = std::move(conn);
          }
        }
        if (!evict) shared_->no_idle_until_ms = now + kIdleScanBackoffMs;
      }
      if (!evict) {
        ++c.refused_total_cap;
        if (from_client == 0) shared_->per_client.erase(client);
        ::close(fd);
        return;
      }
      ++c.evicted_idle;
    }
    ++from_client;
    shared_->slots[fd].client = std::move(client);
  }
  // Outside the lock: evict() takes the connection's own. If it stopped idling meanwhile it
  // stays, and this one is still admitted: the cap is overshot by one for a moment, which the
  // descriptor reserve allows for.
  if (evict) evict->evict();

  std::shared_ptr<Pistache::Tcp::Peer> peer;
  try {
    peer = Pistache::Tcp::Peer::Create(fd, Pistache::Address::fromUnix(reinterpret_cast<sockaddr*>(&address)));
  } catch (const std::exception& e) {
    spdlog::warn("{} listener: cannot take a connection: {}", options_.name, e.what());
    std::lock_guard lock(shared_->mu);
    auto slot = shared_->slots.find(fd);
    if (auto n = shared_->per_client.find(slot->second.client); n != shared_->per_client.end() && --n->second == 0)
      shared_->per_client.erase(n);
    shared_->slots.erase(slot);
    ::close(fd);
    return;
  }
  auto handlers = reactor_.handlers(transport_key_);
  auto transport =
      std::static_pointer_cast<Pistache::Tcp::Transport>(handlers[static_cast<std::size_t>(fd) % handlers.size()]);
  transport->handleNewPeer(peer);
}

void Server::reap() {
  name_this_thread("ws-http-timer");
  std::unique_lock lock(reaper_mu_);
  std::int64_t last_log_ms = 0;
  ServerCounters logged;
  while (!reaper_stop_) {
    reaper_cv_.wait_for(lock, std::chrono::seconds(1));
    std::vector<std::shared_ptr<Connection>> conns;
    ServerCounters now_counters;
    {
      std::lock_guard l(shared_->mu);
      conns.reserve(shared_->slots.size());
      for (auto& [_, slot] : shared_->slots)
        if (auto c = slot.conn.lock()) conns.push_back(std::move(c));
      now_counters = shared_->counters;
    }
    std::int64_t now = steady_ms();
    for (auto& c : conns) c->check_timeouts(now);
    // Connections refused over a cap, summed up now and then rather than one line each.
    if (now - last_log_ms >= kLogEveryMs) {
      auto total = now_counters.refused_total_cap - logged.refused_total_cap;
      auto client = now_counters.refused_client_cap - logged.refused_client_cap;
      auto evicted = now_counters.evicted_idle - logged.evicted_idle;
      if (total || client || evicted)
        spdlog::warn(
            "{} listener: {} connection(s) closed over MAX_CONNECTIONS, {} over MAX_CONNECTIONS_PER_CLIENT, "
            "{} idle one(s) closed to make room ({} open)",
            options_.name, total, client, evicted, conns.size());
      logged = now_counters;
      last_log_ms = now;
    }
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

void Server::shutdown() {
  if (stopped_) return;
  stopped_ = true;
  stop_reaper();
  std::uint64_t one = 1;
  (void)::write(wake_fd_, &one, sizeof one);
  if (acceptor_.joinable()) acceptor_.join();
  ::close(listen_fd_);
  ::close(wake_fd_);
  if (spare_fd_ >= 0) ::close(spare_fd_);
  reactor_.shutdown();
}

}  // namespace websmtp::daemon::http
