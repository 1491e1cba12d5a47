#include "daemon.hpp"

#include <pistache/endpoint.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "http_api.hpp"
#include "websmtp/service/gateway.hpp"
#include "websmtp/store/store.hpp"

namespace websmtp::daemon {

namespace {

std::unique_ptr<Pistache::Http::Endpoint> listen(const std::string& host, int port, int threads,
                                                 std::size_t max_request,
                                                 std::shared_ptr<Pistache::Http::Handler> handler) {
  auto ep =
      std::make_unique<Pistache::Http::Endpoint>(Pistache::Address(host, Pistache::Port(static_cast<uint16_t>(port))));
  auto opts = Pistache::Http::Endpoint::options()
                  .threads(threads)
                  .flags(Pistache::Tcp::Options::ReuseAddr | Pistache::Tcp::Options::NoDelay)
                  .maxRequestSize(max_request)
                  .maxResponseSize(16 * 1024 * 1024);
  ep->init(opts);
  ep->setHandler(handler);
  ep->serveThreaded();
  return ep;
}

void write_ready_file(const std::string& path, int port, int admin_port) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "{\"pid\": " << ::getpid() << ", \"port\": " << port << ", \"admin_port\": " << admin_port << "}\n";
  }
  std::filesystem::rename(tmp, path);
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

  std::filesystem::create_directories(config.data_dir);
  SystemClock clock;
  store::SqliteOptions so{config.data_dir + "/websmtp.db", config.store_sync == "full"};
  service::Gateway gateway(config, store::open_sqlite(so), service::transport_factory(config), clock);
  gateway.start();

  auto ctx = std::make_shared<HttpContext>();
  ctx->gateway = &gateway;
  ctx->cors_origins = config.cors_origins;
  ctx->max_body_bytes = config.max_body_bytes;
  // Pistache's own limit sits above ours so that our gate, not Pistache, answers 413.
  std::size_t max_request = static_cast<std::size_t>(config.max_body_bytes) + 128 * 1024;

  auto api = listen(config.host, config.port, config.http_threads, max_request, std::make_shared<PublicHandler>(ctx));
  auto admin = listen("127.0.0.1", config.admin_port, 1, 64 * 1024, std::make_shared<AdminHandler>(ctx));
  int port = static_cast<uint16_t>(api->getPort());
  int admin_port = static_cast<uint16_t>(admin->getPort());
  spdlog::info("websmtpd listening on {}:{} (admin 127.0.0.1:{}), delivery={}{}, {} worker(s), store {}", config.host,
               port, admin_port, config::to_string(config.delivery),
               config.delivery == config::Delivery::kRelay
                   ? " via " + config.smtp_server + ":" + std::to_string(config.smtp_port)
               : config.delivery == config::Delivery::kSandbox ? " into " + config.data_dir + "/sandbox"
                                                               : "",
               config.threads, so.path);
  if (!config.ready_file.empty()) write_ready_file(config.ready_file, port, admin_port);

  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("received {}: draining (a second signal exits at once)", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  // A second signal ends the process at once; queued jobs are safe in the store either way.
  std::thread([signals]() mutable {
    int again = 0;
    sigwait(&signals, &again);
    spdlog::warn("second signal: exiting now");
    std::_Exit(0);
  }).detach();

  // 1. Refuse new submits and let answers in flight go out (Pistache drops a response
  //    still queued when shutdown() runs).
  ctx->draining = true;
  gateway.release_watchers();  // long-polls answer now, with the current status
  auto drain_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (ctx->in_flight.load() > 0 && std::chrono::steady_clock::now() < drain_deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let the reactor flush the last writes
  api->shutdown();
  admin->shutdown();
  // 2. Let in-flight SMTP transactions finish, commit their outcomes.
  bool clean = gateway.stop(std::chrono::seconds(config.shutdown_grace_s));
  spdlog::info("websmtpd stopped{}", clean ? "" : " (some transactions were cut off; their jobs will be retried)");
  if (!clean) {
    spdlog::default_logger()->flush();
    std::_Exit(0);  // worker threads are still blocked in SMTP I/O; do not run destructors under them
  }
  return 0;
}

}  // namespace websmtp::daemon
