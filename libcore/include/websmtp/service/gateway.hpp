#pragma once
// The composition root of the core: it owns the store, the group commit, the dispatcher, the
// in-flight journal and the use cases (submit, status with long-polls, delivery workers,
// metrics), wires the commit's callbacks between them, and starts and stops them in order.
// It knows no HTTP framework.
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "websmtp/common/clock.hpp"
#include "websmtp/config/config.hpp"
#include "websmtp/message/dkim.hpp"
#include "websmtp/queue/dispatcher.hpp"
#include "websmtp/queue/inflight_journal.hpp"
#include "websmtp/store/postgres_store.hpp"
#include "websmtp/service/caller.hpp"
#include "websmtp/service/access.hpp"
#include "websmtp/service/admin.hpp"
#include "websmtp/service/delivery.hpp"
#include "websmtp/service/longpoll.hpp"
#include "websmtp/service/metrics.hpp"
#include "websmtp/service/status.hpp"
#include "websmtp/service/submit.hpp"
#include "websmtp/service/suppressions.hpp"
#include "websmtp/service/transport_factory.hpp"
#include "websmtp/store/store.hpp"
#include "websmtp/store/write_batcher.hpp"
#include "websmtp/webhook/sender.hpp"

namespace websmtp::service {

class Gateway {
 public:
  Gateway(const config::Config& config, std::unique_ptr<store::Store> store, TransportFactory transports,
          const Clock& clock);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Recovers interrupted attempts, then starts the commit, dispatch, delivery and long-poll
  // threads. Throws StoreError when the store cannot be brought up.
  void start();
  // Stops taking jobs, answers long-polls, lets in-flight SMTP transactions finish for up to
  // `grace`, then commits their outcomes. Returns false when a transaction was still running.
  bool stop(std::chrono::milliseconds grace);

  SubmitService& submits() { return *submit_; }
  Access& access() { return *access_; }
  StatusService& statuses() { return status_; }
  LongPollRegistry& longpolls() { return longpolls_; }
  const config::Config& config() const { return config_; }
  const message::dkim::Signer& dkim() const { return dkim_; }  // the keys, loaded by start()
  AdminService& admin() { return *admin_; }

  nlohmann::json queue_stats() const;
  // GET /metrics: the Prometheus text format.
  std::string metrics_text() const;
  Metrics& metrics() { return metrics_; }

 private:
  void outcome_committed(const store::JobUpdate& u);
  Metrics::Figures figures(std::int64_t now_ms) const;
  // An operator's edit (retry, cancel) is committed; true when a worker has the job now.
  bool edit_committed(const store::JobUpdate& u);
  void status_changed(const store::JobUpdate& u);

  void remote_change(const std::string& ref);

  // ---- This node's row in a shared store's nodes table (GatewayFigures).
  // Runs on the counting thread once start() is done: reads the row's counters as the base
  // (retried until the store answers), then writes the row every kNodeReportIntervalMs until
  // stop().
  void report_node_loop();
  // This node's figures from memory: the base plus this process's counters; `stopped_ms` set.
  store::NodeFigures own_node_figures(std::int64_t stopped_ms = 0) const;
  void report_stopped();

  config::Config config_;
  std::unique_ptr<store::Store> store_;
  store::SharedStore* shared_ = nullptr;  // store_ when it is shared by several nodes (PostgreSQL)
  TransportFactory transports_;
  const Clock& clock_;
  Metrics metrics_;
  StatusService status_;
  LongPollRegistry longpolls_;
  std::unique_ptr<queue::InflightJournal> journal_;
  std::unique_ptr<store::WriteBatcher> batcher_;
  std::unique_ptr<queue::Dispatcher> dispatcher_;
  std::unique_ptr<Access> access_;
  message::dkim::Signer dkim_;
  std::unique_ptr<SubmitService> submit_;
  std::unique_ptr<DeliveryWorkers> workers_;
  std::unique_ptr<Suppressions> suppressions_;
  std::unique_ptr<AdminService> admin_;
  std::unique_ptr<webhook::Sender> webhooks_;  // with WEBHOOK_SECRET only
  // The store's counts, for the metrics' base; then, on a shared store, report_node_loop().
  std::thread counting_;
  mutable std::mutex node_mu_;
  std::condition_variable node_cv_;
  bool node_reporting_ = false;  // start() is done: the workers and the dispatcher exist
  bool node_stop_ = false;
  // The node's row as a previous process of this NODE_ID left it (its counters); nullopt until read.
  std::optional<store::NodeFigures> node_base_;
  std::int64_t started_ms_ = 0;
  bool stopped_ = false;
};

}  // namespace websmtp::service
