#include "daemon.hpp"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "admin_guard.hpp"
#include "metrics_api.hpp"
#include "http/descriptors.hpp"
#include "http/server.hpp"
#include "logging.hpp"
#include "public_api.hpp"
#include "websmtp/service/gateway.hpp"
#include "websmtp/store/postgres_store.hpp"
#include "websmtp/store/store.hpp"

namespace websmtp::daemon {

namespace {

void write_ready_file(const std::string& path, int port, int admin_port) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "{\"pid\": " << ::getpid() << ", \"port\": " << port << ", \"admin_port\": " << admin_port << "}\n";
  }
  std::filesystem::rename(tmp, path);
}

http::RequestHandler routed(std::shared_ptr<http::Router> router) {
  return [router](http::Request&& req, http::Exchange ex) { router->dispatch(std::move(req), std::move(ex)); };
}

}  // namespace

int run(const config::Config& config) {
  // Signals are taken by sigwait below, never by a handler on a random thread.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  // Over a file size limit, writes must fail with EFBIG (the store then answers 503) rather
  // than the process being killed.
  ::signal(SIGXFSZ, SIG_IGN);

  // Before anything holds descriptors: as many as the system grants this process.
  http::DescriptorLimit fd_limit = http::raise_descriptor_limit();

  std::filesystem::create_directories(config.data_dir);
  SystemClock clock;
  std::unique_ptr<store::Store> store;
  if (config.store == "postgres") {
    store = store::open_postgres({config.database_url, config.node_id, static_cast<std::size_t>(config.threads) + 6});
    spdlog::info("store: PostgreSQL, node {} (claims lease {}s)", config.node_id, config.lease_timeout_s);
  } else {
    store = store::open_sqlite({config.data_dir + "/websmtp.db", config.store_sync == "full"});
  }
  service::Gateway gateway(config, std::move(store), service::transport_factory(config), clock);

  gateway.longpolls().set_max_waiters(static_cast<std::size_t>(config.max_longpolls));

  // The connection caps, kept below the descriptor limit (what is open now, the store and the
  // workers included, is counted in the reserve).
  http::DescriptorPlan fds =
      http::plan_descriptors(fd_limit.now, static_cast<std::size_t>(config.max_connections), http::open_descriptors(),
                             static_cast<std::size_t>(config.threads), static_cast<std::size_t>(config.http_threads));
  if (fds.public_connections == 0)
    throw std::runtime_error(
        "the descriptor limit (RLIMIT_NOFILE " + std::to_string(fd_limit.now) +
        ") leaves no room for client connections; raise it (ulimit -n, systemd LimitNOFILE) to "
        "at least " +
        std::to_string(fds.reserve + fds.admin_connections +
                       std::min<std::size_t>(http::kMinPublicConnections, config.max_connections)));
  if (fds.lowered)
    spdlog::warn(
        "MAX_CONNECTIONS {} does not fit the descriptor limit {}: public connections capped at {} ({} kept "
        "for the store, SMTP and the admin API); raise LimitNOFILE / ulimit -n",
        config.max_connections, fd_limit.now, fds.public_connections, fds.reserve + fds.admin_connections);
  spdlog::info("descriptor limit {}{}: up to {} public connections ({} per client), {} admin", fd_limit.now,
               fd_limit.now != fd_limit.before ? " (raised from " + std::to_string(fd_limit.before) + ")" : "",
               fds.public_connections,
               config.max_connections_per_client ? std::to_string(config.max_connections_per_client) : "no cap",
               fds.admin_connections);

  gateway.start();

  std::atomic<bool> draining{false};
  auto public_router = std::make_shared<http::Router>();
  build_public_api(*public_router, gateway, draining);
  auto admin_router = std::make_shared<http::Router>();
  // Host and ADMIN_TOKEN are checked before anything else on the admin port, unknown paths too.
  auto admin_port = std::make_shared<std::atomic<int>>(config.admin_port);
  admin_router->guard(admin_guard(AdminGuardOptions{config.admin_host, config.admin_token, admin_port}));
  build_admin_api(*admin_router, gateway);
  log_routes("public", *public_router);
  log_routes("admin", *admin_router);

  http::ServerOptions po;
  po.host = config.host;
  po.port = config.port;
  po.threads = config.http_threads;
  po.limits.max_body_bytes = config.max_body_bytes;
  po.limits.header_timeout_ms = config.http_header_timeout_s * 1000;
  po.limits.body_timeout_ms = config.http_body_timeout_s * 1000;
  po.limits.idle_timeout_ms = config.http_idle_timeout_s * 1000;
  po.name = "api";
  po.max_connections = fds.public_connections;
  po.max_connections_per_client = static_cast<std::size_t>(config.max_connections_per_client);
  http::Server api(po, routed(public_router));
  http::ServerOptions ao;
  ao.host = config.admin_host;
  ao.port = config.admin_port;
  ao.threads = 1;
  ao.name = "admin";
  ao.limits = po.limits;
  ao.limits.max_body_bytes = 64 * 1024;
  ao.max_connections = fds.admin_connections;
  http::Server admin(ao, routed(admin_router));
  admin_port->store(admin.port());

  spdlog::info("websmtpd listening on {}:{} (admin {}:{}), delivery={}{}, {} worker(s), store {}", config.host,
               api.port(), config.admin_host, admin.port(), config::to_string(config.delivery),
               config.delivery == config::Delivery::kRelay
                   ? " via " + config.smtp_server + ":" + std::to_string(config.smtp_port)
               : config.delivery == config::Delivery::kSandbox ? " into " + config.data_dir + "/sandbox"
                                                               : "",
               config.threads,
               config.store == "postgres" ? "postgres (node " + config.node_id + ")" : config.data_dir + "/websmtp.db");
  flush_logs();
  if (!config.ready_file.empty()) write_ready_file(config.ready_file, api.port(), admin.port());

  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("received {}: draining (a second signal exits at once)", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  flush_logs();
  // A second signal ends the process at once; queued jobs are safe in the store either way.
  std::thread([signals]() mutable {
    int again = 0;
    sigwait(&signals, &again);
    spdlog::warn("second signal: exiting now");
    flush_logs();
    std::_Exit(0);
  }).detach();

  // 1. Refuse new submits, answer long-polls now, and let answers owed go out.
  draining = true;
  gateway.longpolls().release_all();
  auto drain_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (http::answers_in_flight() > 0 && std::chrono::steady_clock::now() < drain_deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // answers queued in Pistache (full sockets)
  api.shutdown();
  admin.shutdown();
  // 2. Let in-flight SMTP transactions finish, commit their outcomes.
  bool clean = gateway.stop(std::chrono::seconds(config.shutdown_grace_s));
  spdlog::info("websmtpd stopped{}", clean ? "" : " (some transactions were cut off; their jobs will be retried)");
  if (!clean) {
    flush_logs();
    std::_Exit(0);  // worker threads are still blocked in SMTP I/O; do not run destructors under them
  }
  return 0;
}

}  // namespace websmtp::daemon
