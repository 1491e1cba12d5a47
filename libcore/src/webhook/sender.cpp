// The webhook sender's threads and its Poco::Net HTTP client. Poco's exceptions stop here.
#include "websmtp/webhook/sender.hpp"

#include <Poco/Exception.h>
#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/SSLManager.h>
#include <Poco/Net/SecureStreamSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <spdlog/spdlog.h>

#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <system_error>

#include "websmtp/common/thread.hpp"
#include "websmtp/webhook/event.hpp"

#ifndef WEBSMTP_VERSION
#define WEBSMTP_VERSION "dev"
#endif

namespace websmtp::webhook {

namespace {

constexpr std::int64_t kNever = INT64_MAX;
// A due event that another node is claiming at this moment: look again this soon (its claim
// may not be committed; if that node died meanwhile nobody else would wake this one).
constexpr std::int64_t kClaimRaceMs = 1000;

Poco::Timespan ms(std::int64_t v) { return Poco::Timespan(std::max<std::int64_t>(v, 1) * 1000); }

std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// What the POSTs in progress share: cancel() (shutdown) ends them all at once.
struct Inflight {
  std::mutex mu;
  std::condition_variable cv;
  bool cancelled = false;
};

// Shuts a connected socket down when its deadline passes or the POSTs are cancelled, which
// ends any read or write blocked on it (the descriptor stays open: the session closes it).
// One short-lived thread per POST, which costs little next to the HTTP exchange it guards.
class Watchdog {
 public:
  Watchdog(Inflight& inflight, int fd, std::int64_t deadline_steady_ms)
      : inflight_(inflight), thread_([this, fd, deadline_steady_ms] {
          std::unique_lock lock(inflight_.mu);
          auto until = std::chrono::steady_clock::time_point(std::chrono::milliseconds(deadline_steady_ms));
          if (!inflight_.cv.wait_until(lock, until, [&] { return done_ || inflight_.cancelled; }) ||
              inflight_.cancelled) {
            fired_ = true;
            ::shutdown(fd, SHUT_RDWR);
          }
        }) {}
  ~Watchdog() {
    {
      std::lock_guard lock(inflight_.mu);
      done_ = true;
    }
    inflight_.cv.notify_all();
    thread_.join();
  }
  bool fired() {
    std::lock_guard lock(inflight_.mu);
    return fired_;
  }

 private:
  Inflight& inflight_;
  bool done_ = false;   // guarded by inflight_.mu
  bool fired_ = false;  // likewise
  std::thread thread_;  // last: started once the rest is built
};

}  // namespace

HttpPoster http_poster(const SenderOptions& options) {
  // One verifying client context for every https POST: the system CAs plus SMTP_CA_FILE.
  Poco::Net::initializeSSL();
  Poco::Net::Context::Ptr context = new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, "", "", options.ca_file,
                                                           Poco::Net::Context::VERIFY_RELAXED, 9, true);
  std::int64_t connect_ms = options.connect_timeout_ms, total_ms = options.total_timeout_ms;
  auto inflight = std::make_shared<Inflight>();
  HttpPoster poster;
  poster.cancel = [inflight] {
    {
      std::lock_guard lock(inflight->mu);
      inflight->cancelled = true;
    }
    inflight->cv.notify_all();
  };
  poster.post = [context, connect_ms, total_ms, inflight](
                    const CallbackUrl& url, const Address& address, const std::string& body,
                    const std::vector<std::pair<std::string, std::string>>& headers, std::int64_t budget_ms) {
    {
      std::lock_guard lock(inflight->mu);
      if (inflight->cancelled) return PostResult{0, "shutting down"};
    }
    if (budget_ms <= 0) return PostResult{0, "no answer within the total timeout"};
    const std::int64_t deadline = steady_ms() + std::min(total_ms, budget_ms);
    auto left = [&] { return ms(deadline - steady_ms()); };
    try {
      // The socket exists before it connects, so that the watchdog bounds everything from here
      // on: the connect, the TLS handshake, the request and the answer. Socket timeouts bound
      // each read and write; the watchdog the whole (a receiver that accepts the connection and
      // then drips its handshake or its answer a byte at a time would otherwise hold a sender
      // thread past the send's deadline, and so past its claim).
      Poco::Net::SocketAddress to(address.ip, url.port);
      Poco::Net::StreamSocket socket(to.family());
      std::unique_ptr<Poco::Net::HTTPClientSession> session;  // closes the descriptor: outlives the watchdog
      Watchdog watchdog(*inflight, socket.impl()->sockfd(), deadline);
      // Connected to the address that passed the check, so Poco never resolves anything itself.
      socket.connect(to, ms(std::min(connect_ms, deadline - steady_ms())));
      socket.setReceiveTimeout(left());
      socket.setSendTimeout(left());
      // For https the handshake, verified against the URL's host (also sent as SNI). The plain
      // session class over the TLS socket: HTTPSClientSession wants to connect it itself.
      session = std::make_unique<Poco::Net::HTTPClientSession>(
          url.https ? Poco::Net::StreamSocket(Poco::Net::SecureStreamSocket::attach(socket, url.host, context)) : socket);
      session->setKeepAlive(false);
      session->setTimeout(left(), left(), left());
      Poco::Net::HTTPRequest request(Poco::Net::HTTPRequest::HTTP_POST, url.target, Poco::Net::HTTPMessage::HTTP_1_1);
      for (const auto& [name, value] : headers) request.set(name, value);
      request.setContentLength(static_cast<std::streamsize>(body.size()));
      std::ostream& out = session->sendRequest(request);
      out.write(body.data(), static_cast<std::streamsize>(body.size()));
      out.flush();
      Poco::Net::HTTPResponse response;
      session->receiveResponse(response);  // the status is all we need: the body is not read
      if (watchdog.fired()) return PostResult{0, "no answer within the total timeout (or shutting down)"};
      return PostResult{static_cast<int>(response.getStatus()), {}};
    } catch (const Poco::Exception& e) {
      if (steady_ms() >= deadline) return PostResult{0, "no answer within the total timeout: " + e.displayText()};
      return PostResult{0, e.displayText()};
    } catch (const std::exception& e) {
      return PostResult{0, e.what()};
    }
  };
  return poster;
}

// A lookup runs on a thread of its own (getaddrinfo takes no timeout) that the send waits for
// until its deadline; one still running then is left to end by itself, and only touches this.
struct Sender::LookupWait {
  std::mutex mu;
  std::condition_variable cv;
  bool cancelled = false;  // stop(): every wait for a lookup ends now
};

Sender::Sender(store::Store& store, const Clock& clock, SenderOptions options, Poster poster,
               std::function<void()> cancel_posts, Resolver resolve)
    : store_(store),
      clock_(clock),
      options_(std::move(options)),
      poster_(std::move(poster)),
      cancel_posts_(std::move(cancel_posts)),
      resolve_(std::move(resolve)),
      lookups_(std::make_shared<LookupWait>()) {
  if (!resolve_)
    resolve_ = [allow_private = options_.allow_private](const CallbackUrl& url) {
      return checked_addresses(url, allow_private, "callback_url");
    };
}

Sender::~Sender() { stop(); }

void Sender::start() {
  for (int i = 0; i < std::max(1, options_.threads); ++i)
    threads_.emplace_back([this] {
      name_this_thread("ws-webhook");
      run();
    });
}

void Sender::wake() {
  std::lock_guard lock(mu_);
  ++wakes_;
  cv_.notify_all();
}

void Sender::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  // A POST in progress ends now, and so does a wait for a lookup; its event stays in the outbox
  // for the next start (or, with claims, goes back to the other nodes: attempt()).
  if (cancel_posts_) cancel_posts_();
  {
    std::lock_guard lock(lookups_->mu);
    lookups_->cancelled = true;
  }
  lookups_->cv.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

void Sender::run() {
  // Enough due events to find one that no other thread is sending. A claiming store returns only
  // events that nobody sends, each claimed for this thread: one is enough, and each must be sent.
  const bool claims = options_.claim_ms > 0;
  const std::size_t look = claims ? 1 : static_cast<std::size_t>(std::max(1, options_.threads)) + 1;
  std::unique_lock lock(mu_);
  while (!stopping_) {
    std::uint64_t seen = wakes_;
    lock.unlock();
    std::optional<store::WebhookEvent> pick;
    bool stale = false;
    std::int64_t wait_until = kNever;
    std::int64_t now = clock_.now_ms();
    try {
      auto due = store_.webhook_due(now, look, options_.claim_ms);
      {
        std::lock_guard l(mu_);
        // An event another thread finished meanwhile may still be in `due`: look again. (Not
        // a claimed one: it was due, so nobody was sending it.)
        stale = !claims && wakes_ != seen;
        for (auto& e : due)
          if (!stale && !sending_.contains(e.id)) {
            sending_.insert(e.id);
            pick = std::move(e);
            break;
          }
      }
      if (!pick && !stale) {
        // Nothing due that is free: sleep until the earliest retry (a due event another thread
        // is sending wakes us when it is done).
        auto next = store_.webhook_next_at();
        if (next && *next > now)
          wait_until = *next;
        else if (next && claims)
          wait_until = now + kClaimRaceMs;
      }
    } catch (const store::StoreError& e) {
      spdlog::warn("webhooks: cannot read the outbox: {}", e.what());
      wait_until = now + options_.retry_min_ms;
    }
    if (pick) {
      attempt(*pick);
      lock.lock();
      sending_.erase(pick->id);
      ++wakes_;  // its next attempt time changed: every thread looks again
      cv_.notify_all();
      continue;
    }
    lock.lock();
    while (!stopping_ && wakes_ == seen && clock_.now_ms() < wait_until) {
      if (wait_until == kNever)
        cv_.wait(lock);
      else
        clock_.wait_until(cv_, lock, wait_until);
    }
  }
}

void Sender::attempt(const store::WebhookEvent& e) {
  PostResult r = post(e);
  std::int64_t now = clock_.now_ms();
  bool ok = r.status >= 200 && r.status < 300;
  bool stopping;
  {
    std::lock_guard lock(mu_);
    stopping = stopping_;
  }
  try {
    if (stopping && !ok) {
      // Cut short by stop(): not the receiver's failure. Tried again after a restart, or by
      // another node as soon as this one gives its claim back (same attempts, due now).
      if (options_.claim_ms > 0) store_.webhook_failed(e.id, e.attempts, now);
      return;
    }
    if (ok) {
      spdlog::info("webhook {} for job {} delivered to {}: HTTP {}", e.id, e.job_ref, e.url, r.status);
      store_.webhook_delivered(e.id);
      return;
    }
    std::string why = r.status ? "HTTP " + std::to_string(r.status) : r.error;
    int failures = e.attempts + 1;
    if (now / 1000 - e.created >= options_.give_up_after_s) {
      spdlog::warn("webhook {} for job {} to {} dropped after {} attempts over {}s: {}", e.id, e.job_ref, e.url,
                   failures, options_.give_up_after_s, why);
      store_.webhook_delivered(e.id);
      return;
    }
    std::int64_t delay = retry_delay_ms(failures, options_.retry_min_ms, options_.retry_max_ms);
    spdlog::info("webhook {} for job {} to {} failed (attempt {}): {}; next in {}ms", e.id, e.job_ref, e.url, failures,
                 why, delay);
    store_.webhook_failed(e.id, failures, now + delay);
  } catch (const store::StoreError& err) {
    // The event stays as it was and is tried again (at least once: receivers dedupe on id).
    spdlog::warn("webhooks: cannot record the attempt of {}: {}", e.id, err.what());
  }
}

PostResult Sender::post(const store::WebhookEvent& e) {
  // One deadline for the whole send, the lookup included: with claims (several nodes) the
  // event is claimed for claim_ms >= 2 * total_timeout_ms, so a send that kept to it never
  // overlaps another node's send of the same event.
  const std::int64_t deadline = steady_ms() + options_.total_timeout_ms;
  auto url = parse_callback_url(e.url, "callback_url");
  if (!url) return PostResult{0, url.error().message};
  // Resolved again now and every address checked: a name that has changed to a private
  // address since the submit (DNS rebinding) is not followed.
  auto addresses = lookup(*url, deadline);
  if (!addresses) return PostResult{0, "no answer from the lookup of " + url->host + " within the total timeout"};
  if (!*addresses) return PostResult{0, addresses->error().message};
  std::vector<std::pair<std::string, std::string>> headers = {
      {"Host", url->host_header()},
      {"Content-Type", "application/json"},
      {"User-Agent", std::string("websmtp/") + WEBSMTP_VERSION},
      {"Websmtp-Signature", signature_header(options_.secret, clock_.now_s(), e.body)},
  };
  // The next address only when this one did not answer, with what is left of the deadline.
  PostResult r{0, "no answer within the total timeout"};
  for (const auto& a : **addresses) {
    std::int64_t left = deadline - steady_ms();
    if (left <= 0) break;
    r = poster_(*url, a, e.body, headers, left);
    if (r.status != 0) break;
  }
  return r;
}

std::optional<Result<std::vector<Address>>> Sender::lookup(const CallbackUrl& url, std::int64_t deadline_steady_ms) {
  if (classify_ip(url.host)) return resolve_(url);  // an IP literal: no lookup to wait for
  auto lookups = lookups_;
  auto found = std::make_shared<std::optional<Result<std::vector<Address>>>>();  // guarded by lookups->mu
  try {
    std::thread([lookups, found, resolve = resolve_, url] {
      auto r = resolve(url);
      {
        std::lock_guard lock(lookups->mu);
        *found = std::move(r);
      }
      lookups->cv.notify_all();
    }).detach();
  } catch (const std::system_error& err) {
    spdlog::warn("webhooks: cannot start the lookup of {}: {}", url.host, err.what());
    return std::nullopt;
  }
  std::unique_lock lock(lookups->mu);
  auto until = std::chrono::steady_clock::time_point(std::chrono::milliseconds(deadline_steady_ms));
  lookups->cv.wait_until(lock, until, [&] { return found->has_value() || lookups->cancelled; });
  return std::move(*found);
}

}  // namespace websmtp::webhook
