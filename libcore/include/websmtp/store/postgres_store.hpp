#pragma once
// PostgreSQL implementation of the Store: any number of websmtpd nodes share one database
// (STORE=postgres). Claims are columns (claimed_by, lease_until) taken with SKIP LOCKED; an
// outcome is written only by the node that still holds the job's claim; a node notes in the
// job's row that its message is on the wire, so the node that takes a dead node's job over
// flags the retry `possible_duplicate` (Job::interrupted_on_wire).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "websmtp/store/store.hpp"

namespace websmtp::store {

struct PostgresOptions {
  std::string url;      // postgresql://user:pass@host:port/db
  std::string node_id;  // this node's claims (the WriteBatcher's and the Dispatcher's owner)
  std::size_t pool = 8;  // connections at most (libpq connections are not thread-safe)
};

// One node's row in the `nodes` table: what GET /admin/queue sums over the gateway. Each node
// writes its own row about once a second (Gateway). The counters are cumulative over every
// process that ran under this node id (a process starts from its row's values), so the sum over
// all rows is the gateway's since the database was created, and a dead node's share stays.
struct NodeFigures {
  std::string node_id;
  std::int64_t started_ms = 0;  // Unix ms: when the process that wrote the row started
  std::int64_t seen_ms = 0;     // Unix ms, the database's clock: the row's last report
  std::int64_t stopped_ms = 0;  // Unix ms: the process stopped cleanly; 0 while it runs (or died)
  // Read only (nodes()): how long ago the row was written, by the database's clock, so that
  // the nodes' clocks need not agree for the liveness test.
  std::int64_t age_ms = 0;
  std::int64_t submitted = 0;  // jobs accepted
  std::int64_t delivered = 0;  // recipients delivered
  std::int64_t failed = 0;     // recipients failed for good
  std::int64_t workers = 0;
  std::int64_t workers_busy = 0;
  std::int64_t in_flight = 0;
  std::int64_t in_flight_first = 0;  // of in_flight, the jobs on their first attempt (counted queued)
};

// The shared store's extras beyond the Store interface.
class SharedStore : public Store {
 public:
  // The worker is about to send the message of job `seq`, which `owner` holds: noted in the row
  // (a round trip) so that a node taking the job over knows the peer may have the message.
  virtual void note_on_wire(std::int64_t seq, std::string_view owner) = 0;
  // Starts a thread on a LISTEN connection of its own that calls `on_remote_change(ref)` when
  // another node committed the outcome of an attempt at job `ref`, `on_remote_change("~<ref>")`
  // when an operator's edit changed job `ref` (a cancel, a retry), `on_remote_change("")` when
  // new unclaimed jobs were committed or claims released, `on_remote_change("!")` when webhook
  // events became due, `on_remote_change("=<key>")` when a node changed the setting <key>, and
  // `on_remote_change("*")` when notifications may have been missed (the LISTEN connection was
  // (re)established): anything may have changed. Stopped by the destructor.
  virtual void start_listening(std::function<void(const std::string& ref)> on_remote_change) = 0;
  // Writes this node's row (insert or replace; seen_ms is set to the database's now, age_ms is
  // ignored). Called by one thread of the node, never on the submit or delivery path.
  virtual void report_node(const NodeFigures& figures) = 0;
  // Every node's row, by node_id, with age_ms filled in.
  virtual std::vector<NodeFigures> nodes() = 0;
  // Stops that thread (before what the callback touches goes away).
  virtual void stop_listening() = 0;
};

// Connects, creates or migrates the schema (under an advisory lock: several nodes may start at
// once). Throws StoreError when the database cannot be reached or is newer than this binary.
std::unique_ptr<SharedStore> open_postgres(const PostgresOptions& options);

}  // namespace websmtp::store
