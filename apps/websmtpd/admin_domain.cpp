#include "admin_domain.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <charconv>
#include <memory>
#include <system_error>
#include <thread>

#include "http/error_status.hpp"
#include "websmtp/dns/domain_check.hpp"

namespace websmtp::daemon {

namespace {

constexpr std::string_view kSuffix = "/check";
// A check waits on DNS (seconds when a server does not answer): it runs on a thread of its own
// so the one admin reactor stays free, and a few at a time is plenty for an operator's command.
constexpr int kMaxConcurrentChecks = 4;

struct DomainCheckState {
  std::shared_ptr<smtp::DnsClient> dns;
  config::Config config;
  std::atomic<int> running{0};
};

// The path segment as sent: websmtpctl percent-encodes it (an IDN's UTF-8 bytes, say).
std::string unescaped(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    unsigned byte = 0;
    const char* hex = s.data() + i + 1;
    if (s[i] == '%' && i + 2 < s.size() && std::from_chars(hex, hex + 2, byte, 16).ptr == hex + 2) {
      out += static_cast<char>(byte);
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

const char* algorithm_tag(message::dkim::Algorithm a) {
  return a == message::dkim::Algorithm::kEd25519Sha256 ? "ed25519" : "rsa";
}

// OUTBOUND_IP, else the local address of the route towards the relay (DELIVERY=relay) or the
// Internet (DELIVERY=mx); asked on each check, since routes change.
void outbound(const config::Config& c, dns::DomainCheckOptions& o) {
  if (!c.outbound_ip.empty()) {
    o.outbound_ip = c.outbound_ip;
    o.outbound_ip_source = "OUTBOUND_IP";
    return;
  }
  auto ip = c.delivery == config::Delivery::kRelay ? dns::outbound_address(c.smtp_server, c.smtp_port)
                                                   : dns::outbound_address_to_internet();
  o.outbound_ip = ip.value_or("");
  o.outbound_ip_source = ip ? "route" : "unknown";
}

}  // namespace

void add_domain_check_route(http::Router& router, service::Gateway& gateway) {
  auto state = std::make_shared<DomainCheckState>();
  state->config = gateway.config();
  state->dns = smtp::make_system_dns_client(state->config.dns_server);
  router.add("/admin/domains/", true).on(http::Method::kGet, [state, &gateway](http::Context& ctx) {
    std::string_view param = ctx.param;
    if (param.size() <= kSuffix.size() || param.substr(param.size() - kSuffix.size()) != kSuffix)
      return ctx.answer(Error{ErrorKind::kNotFound, "not_found", "no such route: use /admin/domains/DOMAIN/check", ""});
    std::string raw = unescaped(param.substr(0, param.size() - kSuffix.size()));
    auto domain = smtp::to_ascii_domain(raw);
    if (domain && !domain->empty() && domain->back() == '.') domain->pop_back();
    if (!domain || !dns::is_checkable_domain(*domain))
      return ctx.answer(Error{ErrorKind::kInvalid, "invalid_domain",
                              "'" + raw.substr(0, 256) + "' is not a domain name like example.org", "domain"});
    if (state->running.fetch_add(1) >= kMaxConcurrentChecks) {
      state->running.fetch_sub(1);
      Error busy{ErrorKind::kUnavailable, "busy", "other domain checks are running; retry in a few seconds", ""};
      busy.retry_after_s = 5;
      return ctx.answer(busy);
    }
    dns::DomainCheckOptions options;
    options.helo = state->config.smtp_helo;
    // Copied now: the keys belong to the gateway, which may be gone before a slow check ends.
    if (const auto* keys = gateway.dkim().keys_for(*domain))
      for (const auto& k : *keys)
        options.dkim_keys.push_back(
            {k.selector, algorithm_tag(k.key.algorithm()), k.key.public_key_base64(), k.key.dns_record()});
    auto ex = std::make_shared<http::Exchange>(std::move(ctx.exchange));
    auto check = [state, ex, d = *domain, options = std::move(options)]() mutable {
      http::Response r;
      try {
        outbound(state->config, options);
        r.body =
            dns::check_domain(*state->dns, d, options).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      } catch (const std::exception& e) {
        spdlog::error("domain check of {}: {}", d, e.what());
        r = http::error_response(Error{ErrorKind::kInternal, "internal", "the domain check failed", ""});
      }
      ex->send(std::move(r));
      state->running.fetch_sub(1);
    };
    try {
      std::thread(std::move(check)).detach();
    } catch (const std::system_error& e) {  // no thread to be had: the check is not run
      state->running.fetch_sub(1);
      spdlog::error("domain check of {}: {}", *domain, e.what());
      ex->send(http::error_response(Error{ErrorKind::kUnavailable, "busy", "cannot start the check now; retry", ""}));
    }
  });
}

}  // namespace websmtp::daemon
