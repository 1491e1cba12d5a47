#include "websmtp/smtp/mx_transport.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <optional>

#include "websmtp/smtp/session_reuse.hpp"

namespace websmtp::smtp {

const char* to_string(MxTls t) {
  switch (t) {
    case MxTls::kOpportunistic:
      return "opportunistic";
    case MxTls::kRequire:
      return "require";
    case MxTls::kNone:
      return "none";
  }
  return "?";
}

std::optional<MxTls> parse_mx_tls(std::string_view word) {
  for (auto t : {MxTls::kOpportunistic, MxTls::kRequire, MxTls::kNone})
    if (word == to_string(t)) return t;
  return std::nullopt;
}

bool retry_at_next_mx(const Reply& r) { return !r.uncertain && !r.permanent && (r.code == 0 || r.code / 100 == 4); }

SessionOptions mx_session_options(const MxOptions& o) {
  SessionOptions s;
  s.helo = o.helo;
  s.verify_tls = false;
  s.starttls_refusal_fails = true;  // a refused STARTTLS is retried in plaintext on a new connection
  s.timeouts.connect = std::chrono::milliseconds(o.connect_timeout_ms);
  s.timeouts.command = std::chrono::milliseconds(o.command_timeout_ms);
  s.timeouts.data_ack = std::chrono::milliseconds(o.command_timeout_ms);
  s.timeouts.dot = std::chrono::milliseconds(o.data_timeout_ms);
  return s;
}

SessionKey mx_session_key(const std::string& address, const MxOptions& o) {
  // The session connects to the address the resolver found (DNS_SERVER's answer, not the
  // system resolver's); no certificate is verified, so no name is needed for it.
  TlsMode mode = o.tls == MxTls::kRequire ? TlsMode::kStartTls
                 : o.tls == MxTls::kNone  ? TlsMode::kNone
                                          : TlsMode::kOpportunistic;
  return SessionKey{address, o.port, mode};
}

namespace {

std::string_view domain_of(std::string_view address) {
  auto at = address.rfind('@');
  return at == std::string_view::npos ? std::string_view{} : address.substr(at + 1);
}

class MxTransport final : public Transport {
 public:
  MxTransport(const MxOptions& o, std::shared_ptr<MxResolver> resolver, std::shared_ptr<SessionPool> pool)
      : options_(o), resolver_(std::move(resolver)), pool_(std::move(pool)) {}

  std::vector<Reply> deliver(const Envelope& env, std::string_view message) override {
    std::vector<Reply> replies(env.recipients.size());
    // Recipients grouped by domain, in the order the domains first appear.
    std::vector<std::pair<std::string, std::vector<std::size_t>>> groups;
    for (std::size_t i = 0; i < env.recipients.size(); ++i) {
      std::string domain(domain_of(env.recipients[i]));
      std::transform(domain.begin(), domain.end(), domain.begin(), [](unsigned char c) { return std::tolower(c); });
      auto g = std::find_if(groups.begin(), groups.end(), [&](const auto& x) { return x.first == domain; });
      if (g == groups.end())
        groups.push_back({domain, {i}});
      else
        g->second.push_back(i);
    }
    bool data_noted = false;
    auto before_data = [&] {
      if (!data_noted && env.before_data) env.before_data();
      data_noted = true;
    };
    for (const auto& [domain, indexes] : groups) {
      auto group = deliver_domain(env, domain, indexes, before_data, message);
      for (std::size_t k = 0; k < indexes.size(); ++k) replies[indexes[k]] = std::move(group[k]);
    }
    return replies;
  }

 private:
  std::vector<Reply> fail_all(std::size_t n, Reply r) { return std::vector<Reply>(n, r); }

  std::vector<Reply> deliver_domain(const Envelope& env, const std::string& domain,
                                    const std::vector<std::size_t>& indexes, const std::function<void()>& before_data,
                                    std::string_view message) {
    auto ascii = to_ascii_domain(domain);
    if (!ascii) {
      Reply r{0, "domain " + domain + " is not a valid (internationalised) domain name"};
      r.permanent = true;
      r.reason = "no_such_domain";
      return fail_all(indexes.size(), r);
    }
    MxRoute route = resolver_->route(*ascii);
    if (route.kind != MxRoute::Kind::kHosts) {
      Reply r{0, route.detail};
      if (route.kind == MxRoute::Kind::kNullMx) {
        r.permanent = true;
        r.reason = "null_mx";
      } else if (route.kind == MxRoute::Kind::kNoDomain) {
        r.permanent = true;
        r.reason = "no_such_domain";
      }
      spdlog::debug("mx {}: {}", *ascii, route.detail);
      return fail_all(indexes.size(), r);
    }

    // The envelope of this domain's transaction, with the domain as an A-label.
    std::vector<std::string> rcpts;
    for (auto i : indexes) {
      std::string_view a = env.recipients[i];
      rcpts.push_back(std::string(a.substr(0, a.rfind('@') + 1)) + *ascii);
    }

    // Each recipient's reply so far. Those a host answered 4xx (or never answered) go on to the
    // next host in this attempt; when no host is left, the last reply stands (deferred).
    std::vector<Reply> result(indexes.size());
    std::vector<std::size_t> remaining(indexes.size());
    std::iota(remaining.begin(), remaining.end(), std::size_t{0});
    bool answered = false;  // some host was tried in this attempt
    bool give_up = false;
    std::string why;
    int connections = 0;
    int hosts = 0;
    for (const auto& host : route.hosts) {
      if (give_up || ++hosts > options_.max_hosts || connections >= options_.max_connections) break;
      std::string detail;
      auto addresses = resolver_->addresses(host, &detail);
      if (addresses.empty()) {
        why = detail;
        continue;
      }
      for (const auto& address : addresses) {
        if (connections++ >= options_.max_connections) break;
        Envelope sub{env.ref, env.sender, {}, before_data};
        for (auto k : remaining) sub.recipients.push_back(rcpts[k]);
        SessionKey key = mx_session_key(address, options_);
        auto tried = try_address(key, sub, message);
        if (tried && tried->failed && tried->failed_in == SessionState::kStartTls &&
            options_.tls == MxTls::kOpportunistic) {
          // STARTTLS was offered but failed (refused, or a broken handshake): the same host in
          // plaintext on a new connection, as Postfix does at its "may" level. Never under
          // MX_TLS=require (mx_session_key asks for kStartTls there).
          spdlog::info("mx {}: STARTTLS with {} [{}] failed ({}); retrying in plaintext", *ascii, host, address,
                       tried->replies.empty() ? "" : tried->replies.front().text);
          key.tls = TlsMode::kNone;
          tried = try_address(key, sub, message);
        }
        if (!tried) {
          // The host has MX_MAX_PER_HOST sessions in use: a worker never waits for one (a
          // hanging host would hold every worker). Untried, the domain's recipients are due
          // again shortly; once a host has answered, its replies stand for this attempt.
          spdlog::debug("mx {}: {} [{}] has every session in use", *ascii, host, address);
          if (!answered) return busy_all(indexes.size(), host + ": every session to " + address + " is in use");
          give_up = true;
          break;
        }
        answered = true;
        Tried& d = *tried;
        for (auto& r : d.replies) {
          if (d.failed && d.failed_in == SessionState::kStartTls && options_.tls == MxTls::kRequire &&
              r.text.find("does not offer STARTTLS") != std::string::npos)
            r.text = "MX_TLS=require but " + host + " does not offer STARTTLS; not sending in plaintext";
          else if (r.code == 0 && !r.permanent)
            r.text = host + " [" + address + "]: " + r.text;
          if (r.code != 0 || r.permanent) {  // the host answered, or its EHLO decided (smtputf8_required)
            r.host = host;
            r.tls = d.tls;
          }
        }
        std::vector<std::size_t> next;
        for (std::size_t k = 0; k < remaining.size(); ++k) {
          result[remaining[k]] = std::move(d.replies[k]);
          if (retry_at_next_mx(result[remaining[k]])) next.push_back(remaining[k]);
        }
        if (next.empty()) {
          spdlog::debug("mx {}: {} [{}] answered over a {} session", *ascii, host, address, d.kept ? "kept" : "new");
          return result;
        }
        spdlog::debug("mx {}: {} [{}] did not take {} recipient(s) ({}); trying the next", *ascii, host, address,
                      next.size(), result[next.front()].text);
        remaining = std::move(next);
        // Unreachable: this host's next address may do. Anything else was the host's own word.
        if (!(d.failed && d.failed_in == SessionState::kConnect)) break;
      }
    }
    if (answered) return result;
    return fail_all(indexes.size(), Reply{0, why.empty() ? "no MX host of " + *ascii + " could be tried" : why});
  }

  std::vector<Reply> busy_all(std::size_t n, std::string why) {
    Reply r{0, std::move(why)};
    r.busy = true;
    return fail_all(n, r);
  }

  struct Tried : Delivered {
    bool kept = false;  // over a session kept from an earlier job
  };
  // One delivery to one address over a pooled session; nullopt when the host has no session free
  // (never waited for).
  std::optional<Tried> try_address(const SessionKey& key, const Envelope& sub, std::string_view message) {
    auto session = pool_->acquire(key, std::chrono::milliseconds::zero());
    if (!session) return std::nullopt;
    Tried t;
    t.kept = session->state() != SessionState::kDisconnected;
    static_cast<Delivered&>(t) = deliver_reusing_detailed(*session, key, sub, message);
    pool_->release(key, std::move(session));
    return t;
  }

  MxOptions options_;
  std::shared_ptr<MxResolver> resolver_;
  std::shared_ptr<SessionPool> pool_;
};

}  // namespace

std::unique_ptr<Transport> make_mx(const MxOptions& options, std::shared_ptr<MxResolver> resolver,
                                   std::shared_ptr<SessionPool> pool) {
  return std::make_unique<MxTransport>(options, std::move(resolver), std::move(pool));
}

}  // namespace websmtp::smtp
