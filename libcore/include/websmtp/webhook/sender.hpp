#pragma once
// The webhook sender: POSTs the events of the store's outbox to their callback URLs, signed,
// and retries the ones that fail. It runs on threads of its own, so a slow or dead receiver
// never holds up delivery; it sleeps until an event is due, woken by wake() (the group commit
// calls it after committing a completed job: its event is in the outbox from that commit on)
// or by the earliest retry time. Events survive restarts: they live in the store until they
// are delivered (a 2xx) or 24 h old.
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "websmtp/common/clock.hpp"
#include "websmtp/store/store.hpp"
#include "websmtp/webhook/destination.hpp"

namespace websmtp::webhook {

struct SenderOptions {
  std::string secret;  // WEBHOOK_SECRET
  std::int64_t retry_min_ms = 10'000;
  std::int64_t retry_max_ms = 3'600'000;
  std::int64_t give_up_after_s = 24 * 3600;
  bool allow_private = false;  // WEBHOOK_ALLOW_PRIVATE
  std::string ca_file;         // SMTP_CA_FILE: trusted besides the system's CAs
  int threads = 2;
  std::int64_t connect_timeout_ms = 10'000;
  // One send of an event: the lookup of its host and the POSTs to each of its addresses, all
  // within this from the start of the lookup (one deadline, not one per step).
  std::int64_t total_timeout_ms = 30'000;
  // A store shared by several nodes: each event sent is claimed for this long (Store::webhook_due),
  // which must outlast the send (total_timeout_ms). 0: the store is this process's alone.
  std::int64_t claim_ms = 0;
};

// What one POST came to: the HTTP status, or 0 and why there was none.
struct PostResult {
  int status = 0;
  std::string error;
};

// One POST of `body` to `url` at `address` (which passed the destination check), with the
// given headers (Host, Content-Type, User-Agent and the signature are among them), ended within
// `budget_ms` (what is left of the send's total timeout) whether or not it was answered.
using Poster = std::function<PostResult(const CallbackUrl& url, const Address& address, const std::string& body,
                                        const std::vector<std::pair<std::string, std::string>>& headers,
                                        std::int64_t budget_ms)>;

// The callback host's addresses, each one checked (checked_addresses, the default). It may
// block (getaddrinfo takes no timeout): the sender waits for it only until the send's deadline.
using Resolver = std::function<Result<std::vector<Address>>(const CallbackUrl& url)>;

// Poco::Net's HTTP(S) client: connect within the connect timeout, the whole exchange (connect,
// TLS handshake, request and answer) within the budget and never beyond the total timeout;
// https verified against the system CAs and `ca_file`; redirects not followed.
// cancel() ends every POST in progress at once (shutdown) and fails later ones quickly.
struct HttpPoster {
  Poster post;
  std::function<void()> cancel;
};
HttpPoster http_poster(const SenderOptions& options);

class Sender {
 public:
  // `cancel_posts`, when given, is called by stop() to end the POSTs in progress. `resolve`
  // replaces the system resolver (checked_addresses with options.allow_private).
  Sender(store::Store& store, const Clock& clock, SenderOptions options, Poster poster,
         std::function<void()> cancel_posts = {}, Resolver resolve = {});
  ~Sender();
  Sender(const Sender&) = delete;
  Sender& operator=(const Sender&) = delete;

  void start();
  // Events may be due: look now (cheap when none is).
  void wake();
  // Stops the threads, cancelling the POSTs in progress (their events stay in the outbox).
  void stop();

 private:
  void run();
  void attempt(const store::WebhookEvent& e);
  PostResult post(const store::WebhookEvent& e);
  // The resolver's answer, or nullopt when none came by the deadline (or stop() was called).
  std::optional<Result<std::vector<Address>>> lookup(const CallbackUrl& url, std::int64_t deadline_steady_ms);

  // What the lookups in progress share with their threads, which may outlive the sender.
  struct LookupWait;

  store::Store& store_;
  const Clock& clock_;
  SenderOptions options_;
  Poster poster_;
  std::function<void()> cancel_posts_;
  Resolver resolve_;
  std::shared_ptr<LookupWait> lookups_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::uint64_t wakes_ = 0;        // counts wake()s, so that none is lost between a look and a wait
  std::set<std::string> sending_;  // event ids being POSTed now
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace websmtp::webhook
