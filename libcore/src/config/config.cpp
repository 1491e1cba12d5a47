#include "websmtp/config/config.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <sstream>

#include <spdlog/spdlog.h>

#include "websmtp/auth/client_address.hpp"
#include "websmtp/auth/rate_limit.hpp"
#include "websmtp/common/units.hpp"

namespace websmtp::config {

namespace {
std::string num(std::int64_t v) { return std::to_string(v); }
// 604800 -> "7d", 300 -> "5m"... the way an operator would write it.
std::string dur(std::int64_t s) {
  if (s > 0 && s % 86400 == 0) return std::to_string(s / 86400) + "d";
  if (s > 0 && s % 3600 == 0) return std::to_string(s / 3600) + "h";
  return std::to_string(s) + "s";
}
std::string size(std::int64_t b) {
  if (b > 0 && b % (1024 * 1024) == 0) return std::to_string(b / (1024 * 1024)) + "MiB";
  if (b > 0 && b % 1024 == 0) return std::to_string(b / 1024) + "KiB";
  return std::to_string(b);
}
}  // namespace

// The defaults shown here are read from a default Config: its member initializers are the one
// place a default is written.
const std::vector<KeyInfo>& keys() {
  static const Config d;
  static const std::vector<KeyInfo> k = {
      {"HOST", d.host, "address the public API listens on"},
      {"PORT", num(d.port), "public API port (0: pick a free one, see READY_FILE)"},
      {"ADMIN_PORT", num(d.admin_port), "admin API port, on ADMIN_HOST (0: pick a free one)"},
      {"THREADS", num(d.threads), "delivery workers (each keeps one SMTP session open)"},
      {"HTTP_THREADS", num(d.http_threads), "HTTP reactor threads"},
      {"HTTP_HEADER_TIMEOUT", dur(d.http_header_timeout_s),
       "a request's head must arrive within this (408 and close otherwise)"},
      {"HTTP_BODY_TIMEOUT", dur(d.http_body_timeout_s), "a request's body must arrive within this after its head"},
      {"HTTP_IDLE_TIMEOUT", dur(d.http_idle_timeout_s), "a kept-alive connection with no request is closed after this"},
      {"WORKER_NICE", num(d.worker_nice),
       "nice value of delivery workers (0-19): under CPU contention accepting mail goes first"},
      {"GIN_MODE", "", "seed alias of the log level: release = info, debug = debug"},
      {"LOG_LEVEL", d.log_level, "trace, debug, info, warn, error (wins over GIN_MODE)"},
      {"DELIVERY", "", "relay (default when SMTP_SERVER is set), mx, or sandbox (write .eml files, send nothing)"},
      {"SMTP_SERVER", "", "relay host; empty means direct MX delivery"},
      {"SMTP_PORT", num(d.smtp_port), "relay port, and the MX hosts' port in direct delivery"},
      {"SMTP_USER", "", "relay AUTH user (PLAIN preferred, LOGIN otherwise)"},
      {"SMTP_PWD", "", "relay AUTH password (never logged)"},
      {"SMTP_TLS", std::string(smtp::to_string(d.smtp_tls)),
       "opportunistic (STARTTLS when offered), none, starttls (required), tls (implicit)"},
      {"SMTP_TLS_VERIFY", std::string(d.smtp_tls_verify ? "true" : "false"),
       "verify the relay's certificate (true/false)"},
      {"SMTP_HELO", "", "name sent in EHLO; empty: localhost"},
      {"DATA_DIR", d.data_dir, "where the embedded SQLite store and sandbox/ live"},
      {"STORE_SYNC", d.store_sync, "SQLite synchronous mode: normal survives a process crash, full also a power loss"},
      {"STATUS_TTL", dur(d.status_ttl_s), "how long a finished job's status is kept, then 404"},
      {"MAX_BODY_BYTES", size(d.max_body_bytes), "largest accepted request body (413 above)"},
      {"MAX_RECIPIENTS", num(d.max_recipients), "most recipients (to+cc+bcc) per job (422 above)"},
      {"CORS_ORIGINS", "", "comma list of origins allowed to call the public API from a browser; * for any"},
      {"AUTH_MODE", "none", "none, keys (API keys), jwt (OAuth2 bearer tokens) or keys,jwt"},
      {"RATE_LIMIT_IP", "", "requests per client address, e.g. 120/m or 10/s; empty: no limit"},
      {"TRUSTED_PROXIES", "", "comma list of proxy addresses/CIDRs whose X-Forwarded-For is believed"},
      {"JWT_HS256_SECRET", "", "shared secret for HS256 tokens (at least 32 bytes)"},
      {"JWT_PUBLIC_KEY_FILE", "", "PEM public key for RS256 or ES256 tokens"},
      {"JWT_JWKS_FILE", "", "JWKS document with the token issuer's public keys (picked by kid)"},
      {"JWT_ISSUER", "", "when set, a token's iss must be this"},
      {"JWT_AUDIENCE", "", "when set, a token's aud must hold this"},
      {"JWT_RATE_PER_MINUTE", num(d.jwt_rate_per_minute), "jobs per minute per token subject (0: no limit)"},
      {"MESSAGE_ID_DOMAIN", "", "domain of generated Message-IDs; empty: the sender's domain"},
      {"DKIM_KEYS_DIR", "",
       "directory of DKIM private keys named <selector>._domainkey.<domain>.pem; mail whose From domain has one is "
       "signed"},
      {"DKIM_DOMAIN", "", "domain (d=) of the one DKIM key in DKIM_KEY_FILE"},
      {"DKIM_SELECTOR", "", "selector (s=) of the one DKIM key in DKIM_KEY_FILE"},
      {"DKIM_KEY_FILE", "", "PEM private key (RSA >= 1024 bits, or Ed25519) signing mail from DKIM_DOMAIN"},
      {"RETRY_MIN", dur(d.retry_min_s), "first retry delay after a temporary failure"},
      {"RETRY_MAX", dur(d.retry_max_s), "largest retry delay"},
      {"MAX_LIFETIME", dur(d.max_lifetime_s), "a recipient still failing temporarily after this fails as expired"},
      {"AFTER_DATA_TIMEOUT", std::string(d.after_data_timeout == AfterDataTimeout::kFail ? "fail" : "retry"),
       "retry or fail a recipient when the reply to DATA is lost"},
      {"SHUTDOWN_GRACE", dur(d.shutdown_grace_s), "how long SIGTERM waits for in-flight SMTP transactions"},
      {"SMTP_CONNECT_TIMEOUT", dur(d.smtp_connect_timeout_s), "TCP connect timeout"},
      {"SMTP_COMMAND_TIMEOUT", dur(d.smtp_command_timeout_s), "greeting and each command's reply"},
      {"SMTP_DATA_TIMEOUT", dur(d.smtp_data_timeout_s), "reply to the final dot of DATA"},
      {"STATUS_CACHE_SIZE", num(d.status_cache_size), "entries in the in-memory status cache"},
      {"READY_FILE", "", "if set, a JSON file {pid, port, admin_port} written once serving"},
      // Abuse limits and the admin API's guard (issue 7).
      {"MAX_CONNECTIONS", num(d.max_connections),
       "open client connections on the public port; at the cap a new one replaces the longest-idle one or is "
       "closed at once (lowered to fit the descriptor limit)"},
      {"MAX_CONNECTIONS_PER_CLIENT", num(d.max_connections_per_client),
       "open public connections from one client address (IPv6: one /64); over it a new one is closed at once; "
       "0: no cap (behind a reverse proxy every client has the proxy's address)"},
      {"MAX_LONGPOLLS", num(d.max_longpolls),
       "status requests waiting with ?wait= at once; over it they answer at once with the current status"},
      {"ADMIN_HOST", d.admin_host, "address the admin API listens on; beyond loopback ADMIN_TOKEN is required"},
      {"ADMIN_TOKEN", "",
       "when set, every admin request needs 'Authorization: Bearer <ADMIN_TOKEN>' (16+ visible ASCII characters)"},
      {"DNS_SERVER", "", "ip[:port] ([v6]:port) of the DNS server for MX lookups; empty: /etc/resolv.conf's"},
      {"MX_TLS", std::string(smtp::to_string(d.mx_tls)),
       "TLS with MX hosts: opportunistic (STARTTLS when offered, certificate not verified), require, none"},
      {"SMTP_CA_FILE", "", "PEM file of CAs trusted in addition to the system's (relay and MX)"},
      {"MX_MAX_PER_HOST", num(d.mx_max_per_host), "SMTP sessions to one MX host at a time"},
      {"MX_POOL_SIZE", num(d.mx_pool_size), "idle SMTP sessions to MX hosts kept for reuse, in all"},
      {"MX_IDLE_TIMEOUT", dur(d.mx_idle_timeout_s), "an idle session to an MX host is closed after this"},
      // Sending-domain check (issue 8).
      {"OUTBOUND_IP", "",
       "the public address mail leaves from, for SPF in `websmtpctl domain check`; empty: the local address of the "
       "route to the relay or the Internet"},
      // Several nodes on one PostgreSQL database (issue 10).
      {"STORE", d.store, "sqlite (embedded, one node) or postgres (any number of nodes sharing DATABASE_URL)"},
      {"DATABASE_URL", "", "STORE=postgres: postgresql://user:pass@host:port/db"},
      {"LEASE_TIMEOUT", dur(d.lease_timeout_s),
       "STORE=postgres: a node's claim on a job lasts this long without renewal; a dead node's jobs are taken over "
       "after it"},
      {"NODE_ID", "", "STORE=postgres: this node's name in claims; empty: hostname:pid"},
      // Webhooks (issue 9).
      {"WEBHOOK_SECRET", "",
       "HMAC-SHA256 key of the Websmtp-Signature header (16+ bytes); unset: jobs with a callback_url are refused"},
      {"WEBHOOK_RETRY_MIN", dur(d.webhook_retry_min_s), "first retry delay of a webhook that failed (doubling)"},
      {"WEBHOOK_RETRY_MAX", dur(d.webhook_retry_max_s), "largest retry delay of a webhook (retried for 24h)"},
      {"WEBHOOK_ALLOW_PRIVATE", std::string(d.webhook_allow_private ? "true" : "false"),
       "allow callback URLs on loopback, private, link-local and other non-public addresses"},
  };
  return k;
}

std::map<std::string, std::string> parse_dotenv(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string line;
  auto trim = [](std::string s) {
    auto ws = [](unsigned char c) { return c == ' ' || c == '\t' || c == '\r'; };
    while (!s.empty() && ws(static_cast<unsigned char>(s.back()))) s.pop_back();
    std::size_t i = 0;
    while (i < s.size() && ws(static_cast<unsigned char>(s[i]))) ++i;
    return s.substr(i);
  };
  while (std::getline(in, line)) {
    line = trim(line);
    if (line.empty() || line[0] == '#') continue;
    if (line.rfind("export ", 0) == 0) line = trim(line.substr(7));
    auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string key = trim(line.substr(0, eq));
    std::string value = trim(line.substr(eq + 1));
    if (!value.empty() && value.front() == '#') {
      value.clear();  // "KEY=   # comment": an empty value
    } else if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') && value.back() == value.front()) {
      value = value.substr(1, value.size() - 2);
    } else {
      auto hash = value.find(" #");  // trailing comment on an unquoted value
      if (hash != std::string::npos) value = trim(value.substr(0, hash));
    }
    if (!key.empty()) out[key] = value;
  }
  return out;
}

namespace {

struct Reader {
  const std::function<std::optional<std::string>(const std::string&)>& lookup;
  const std::map<std::string, std::string>& dotenv;

  std::optional<std::string> raw(const std::string& key) const {
    if (auto v = lookup(key)) return v;
    if (auto it = dotenv.find(key); it != dotenv.end()) return it->second;
    return std::nullopt;
  }
  // Empty values count as unset, as in the seed's .env (`SMTP_SERVER=` means "none").
  std::optional<std::string> get(const std::string& key) const {
    auto v = raw(key);
    if (v && v->empty()) return std::nullopt;
    return v;
  }
  std::int64_t integer(const std::string& key, std::int64_t def, std::int64_t lo, std::int64_t hi) const {
    auto v = get(key);
    if (!v) return def;
    std::int64_t out = 0;
    auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
    if (ec != std::errc() || p != v->data() + v->size()) throw ConfigError(key, "'" + *v + "' is not a whole number");
    if (out < lo || out > hi)
      throw ConfigError(key,
                        std::to_string(out) + " is out of range " + std::to_string(lo) + ".." + std::to_string(hi));
    return out;
  }
  std::int64_t duration(const std::string& key, std::int64_t def, std::int64_t lo) const {
    auto v = get(key);
    if (!v) return def;
    auto d = parse_duration_s(*v);
    if (!d) throw ConfigError(key, "'" + *v + "' is not a duration (seconds, or a number with s, m, h or d)");
    if (*d < lo) throw ConfigError(key, "must be at least " + std::to_string(lo) + "s");
    return *d;
  }
  std::string choice(const std::string& key, const std::string& def, std::initializer_list<const char*> allowed) const {
    auto v = get(key);
    if (!v) return def;
    std::string lower = *v;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    for (auto a : allowed)
      if (lower == a) return lower;
    std::string list;
    for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
    throw ConfigError(key, "'" + *v + "' is not one of: " + list);
  }
  bool boolean(const std::string& key, bool def) const {
    auto v = choice(key, def ? "true" : "false", {"true", "false", "1", "0", "yes", "no"});
    return v == "true" || v == "1" || v == "yes";
  }
};

}  // namespace

Config load(const std::function<std::optional<std::string>(const std::string&)>& lookup,
            const std::map<std::string, std::string>& dotenv) {
  Reader r{lookup, dotenv};
  Config c;
  c.host = r.get("HOST").value_or(c.host);
  c.port = static_cast<int>(r.integer("PORT", c.port, 0, 65535));
  c.admin_port = static_cast<int>(r.integer("ADMIN_PORT", c.admin_port, 0, 65535));
  c.threads = static_cast<int>(r.integer("THREADS", c.threads, 1, 256));
  c.http_threads = static_cast<int>(r.integer("HTTP_THREADS", c.http_threads, 1, 64));
  c.http_header_timeout_s = r.duration("HTTP_HEADER_TIMEOUT", c.http_header_timeout_s, 1);
  c.http_body_timeout_s = r.duration("HTTP_BODY_TIMEOUT", c.http_body_timeout_s, 1);
  c.http_idle_timeout_s = r.duration("HTTP_IDLE_TIMEOUT", c.http_idle_timeout_s, 1);
  c.worker_nice = static_cast<int>(r.integer("WORKER_NICE", c.worker_nice, 0, 19));

  std::string gin = r.choice("GIN_MODE", "", {"release", "debug", "test"});
  if (gin == "debug") c.log_level = "debug";
  c.log_level = r.choice("LOG_LEVEL", c.log_level, {"trace", "debug", "info", "warn", "error", "critical", "off"});

  c.smtp_server = r.get("SMTP_SERVER").value_or("");
  c.smtp_port = static_cast<int>(r.integer("SMTP_PORT", c.smtp_port, 1, 65535));
  c.smtp_user = r.get("SMTP_USER").value_or("");
  c.smtp_pwd = r.raw("SMTP_PWD").value_or("");
  if (!c.smtp_user.empty() && c.smtp_pwd.empty())
    throw ConfigError("SMTP_PWD", "SMTP_USER is set but SMTP_PWD is empty");
  c.smtp_tls = *smtp::parse_tls_mode(r.choice("SMTP_TLS", to_string(c.smtp_tls),
                                              {to_string(TlsMode::kOpportunistic), to_string(TlsMode::kNone),
                                               to_string(TlsMode::kStartTls), to_string(TlsMode::kImplicit)}));
  c.smtp_tls_verify = r.boolean("SMTP_TLS_VERIFY", c.smtp_tls_verify);
  c.smtp_helo = r.get("SMTP_HELO").value_or("");

  std::string delivery = r.choice("DELIVERY", c.smtp_server.empty() ? "mx" : "relay", {"relay", "mx", "sandbox"});
  c.delivery = delivery == "relay" ? Delivery::kRelay : delivery == "sandbox" ? Delivery::kSandbox : Delivery::kMx;
  if (c.delivery == Delivery::kRelay && c.smtp_server.empty())
    throw ConfigError("SMTP_SERVER", "DELIVERY=relay needs SMTP_SERVER (the relay host)");
  if (c.delivery == Delivery::kMx && !c.smtp_server.empty())  // not an error: a relay kept for later is no mistake
    spdlog::warn(
        "DELIVERY=mx: SMTP_SERVER={} is ignored, mail goes to each domain's MX hosts; unset SMTP_SERVER, "
        "or set DELIVERY=relay to send through it",
        c.smtp_server);

  c.data_dir = r.get("DATA_DIR").value_or(c.data_dir);
  c.store_sync = r.choice("STORE_SYNC", c.store_sync, {"normal", "full"});
  c.status_ttl_s = r.duration("STATUS_TTL", c.status_ttl_s, 1);
  if (auto v = r.get("MAX_BODY_BYTES")) {
    auto b = parse_size_bytes(*v);
    if (!b || *b < 1024 || *b > (1LL << 30))
      throw ConfigError("MAX_BODY_BYTES", "'" + *v + "' is not a size between 1KiB and 1GiB");
    c.max_body_bytes = *b;
  }
  c.max_recipients = static_cast<int>(r.integer("MAX_RECIPIENTS", c.max_recipients, 1, 100000));
  if (auto v = r.get("CORS_ORIGINS")) {
    std::string item;
    std::istringstream in(*v);
    while (std::getline(in, item, ',')) {
      while (!item.empty() && item.front() == ' ') item.erase(0, 1);
      while (!item.empty() && (item.back() == ' ' || item.back() == '/')) item.pop_back();
      if (item.empty()) continue;
      if (item != "*" && item.find("://") == std::string::npos)
        throw ConfigError("CORS_ORIGINS", "'" + item + "' is not an origin like https://app.example.com or *");
      c.cors_origins.push_back(item);
    }
  }
  std::string auth = r.choice("AUTH_MODE", "none", {"none", "keys", "jwt", "keys,jwt", "jwt,keys"});
  c.auth_keys = auth.find("keys") != std::string::npos;
  c.auth_jwt = auth.find("jwt") != std::string::npos;
  c.rate_limit_ip = r.get("RATE_LIMIT_IP").value_or("");
  if (auto q = auth::parse_quota(c.rate_limit_ip, "RATE_LIMIT_IP"); !q)
    throw ConfigError("RATE_LIMIT_IP", q.error().message);
  c.trusted_proxies = r.get("TRUSTED_PROXIES").value_or("");
  if (auto t = auth::TrustedProxies::parse(c.trusted_proxies); !t)
    throw ConfigError("TRUSTED_PROXIES", t.error().message);
  c.jwt_hs256_secret = r.raw("JWT_HS256_SECRET").value_or("");
  c.jwt_public_key_file = r.get("JWT_PUBLIC_KEY_FILE").value_or("");
  c.jwt_jwks_file = r.get("JWT_JWKS_FILE").value_or("");
  c.jwt_issuer = r.get("JWT_ISSUER").value_or("");
  c.jwt_audience = r.get("JWT_AUDIENCE").value_or("");
  c.jwt_rate_per_minute = r.integer("JWT_RATE_PER_MINUTE", c.jwt_rate_per_minute, 0, 1'000'000'000);
  if (c.auth_jwt) {
    int sources = !c.jwt_hs256_secret.empty() + !c.jwt_public_key_file.empty() + !c.jwt_jwks_file.empty();
    if (sources != 1)
      throw ConfigError("AUTH_MODE", "jwt needs exactly one of JWT_HS256_SECRET, JWT_PUBLIC_KEY_FILE, JWT_JWKS_FILE");
    if (!c.jwt_hs256_secret.empty() && c.jwt_hs256_secret.size() < 32)
      throw ConfigError("JWT_HS256_SECRET", "must be at least 32 bytes (256 bits) long");
  }
  c.message_id_domain = r.get("MESSAGE_ID_DOMAIN").value_or("");
  c.dkim_keys_dir = r.get("DKIM_KEYS_DIR").value_or("");
  c.dkim_domain = r.get("DKIM_DOMAIN").value_or("");
  c.dkim_selector = r.get("DKIM_SELECTOR").value_or("");
  c.dkim_key_file = r.get("DKIM_KEY_FILE").value_or("");
  // The one-key form needs all three; the key files themselves are read when the Gateway starts
  // (dkim::load_signer), which refuses to start on a key it cannot use.
  if (!c.dkim_domain.empty() || !c.dkim_selector.empty() || !c.dkim_key_file.empty()) {
    const char* missing = c.dkim_domain.empty()     ? "DKIM_DOMAIN"
                          : c.dkim_selector.empty() ? "DKIM_SELECTOR"
                          : c.dkim_key_file.empty() ? "DKIM_KEY_FILE"
                                                    : nullptr;
    if (missing) throw ConfigError(missing, "is empty; DKIM_DOMAIN, DKIM_SELECTOR and DKIM_KEY_FILE go together");
  }
  c.retry_min_s = r.duration("RETRY_MIN", c.retry_min_s, 1);
  c.retry_max_s = r.duration("RETRY_MAX", c.retry_max_s, 1);
  if (c.retry_max_s < c.retry_min_s) throw ConfigError("RETRY_MAX", "must not be below RETRY_MIN");
  c.max_lifetime_s = r.duration("MAX_LIFETIME", c.max_lifetime_s, 1);
  c.after_data_timeout =
      r.choice("AFTER_DATA_TIMEOUT", c.after_data_timeout == AfterDataTimeout::kFail ? "fail" : "retry",
               {"retry", "fail"}) == "fail"
          ? AfterDataTimeout::kFail
          : AfterDataTimeout::kRetry;
  c.shutdown_grace_s = r.duration("SHUTDOWN_GRACE", c.shutdown_grace_s, 0);
  c.smtp_connect_timeout_s = r.duration("SMTP_CONNECT_TIMEOUT", c.smtp_connect_timeout_s, 1);
  c.smtp_command_timeout_s = r.duration("SMTP_COMMAND_TIMEOUT", c.smtp_command_timeout_s, 1);
  c.smtp_data_timeout_s = r.duration("SMTP_DATA_TIMEOUT", c.smtp_data_timeout_s, 1);
  c.status_cache_size = static_cast<int>(r.integer("STATUS_CACHE_SIZE", c.status_cache_size, 0, 10'000'000));
  c.ready_file = r.get("READY_FILE").value_or("");

  // Abuse limits and the admin API's guard (issue 7).
  c.max_connections = static_cast<int>(r.integer("MAX_CONNECTIONS", c.max_connections, 1, 10'000'000));
  c.max_connections_per_client =
      static_cast<int>(r.integer("MAX_CONNECTIONS_PER_CLIENT", c.max_connections_per_client, 0, 10'000'000));
  c.max_longpolls = static_cast<int>(r.integer("MAX_LONGPOLLS", c.max_longpolls, 0, 10'000'000));
  c.admin_host = r.get("ADMIN_HOST").value_or(c.admin_host);
  c.admin_token = r.raw("ADMIN_TOKEN").value_or("");
  if (!c.admin_token.empty()) {
    // It travels as a bearer token in a header, and guards the whole queue: no blanks, no control
    // characters, and long enough not to be guessed.
    if (!std::all_of(c.admin_token.begin(), c.admin_token.end(), [](char ch) { return ch > 0x20 && ch < 0x7f; }))
      throw ConfigError("ADMIN_TOKEN", "must be visible ASCII characters only (no spaces)");
    if (c.admin_token.size() < 16) throw ConfigError("ADMIN_TOKEN", "must be at least 16 characters long");
  }
  if (!is_loopback_host(c.admin_host) && c.admin_token.empty())
    throw ConfigError("ADMIN_HOST", "'" + c.admin_host +
                                        "' is not a loopback address: set ADMIN_TOKEN so that the admin API asks "
                                        "for it, or keep ADMIN_HOST on 127.0.0.1");
  c.dns_server = r.get("DNS_SERVER").value_or("");
  if (!c.dns_server.empty() && !smtp::parse_dns_server(c.dns_server))
    throw ConfigError("DNS_SERVER", "'" + c.dns_server +
                                        "' is not an IPv4 or IPv6 address with an optional port (1.2.3.4:53, "
                                        "[::1]:5353, ::1)");
  c.mx_tls = *smtp::parse_mx_tls(r.choice("MX_TLS", smtp::to_string(c.mx_tls), {"opportunistic", "require", "none"}));
  c.smtp_ca_file = r.get("SMTP_CA_FILE").value_or("");
  if (!c.smtp_ca_file.empty() && ::access(c.smtp_ca_file.c_str(), R_OK) != 0)
    throw ConfigError("SMTP_CA_FILE", "cannot read '" + c.smtp_ca_file + "'");
  c.mx_max_per_host = static_cast<int>(r.integer("MX_MAX_PER_HOST", c.mx_max_per_host, 1, 1000));
  c.mx_pool_size = static_cast<int>(r.integer("MX_POOL_SIZE", c.mx_pool_size, 0, 100000));
  c.mx_idle_timeout_s = r.duration("MX_IDLE_TIMEOUT", c.mx_idle_timeout_s, 1);
  // Sending-domain check (issue 8).
  c.outbound_ip = r.get("OUTBOUND_IP").value_or("");
  if (!c.outbound_ip.empty()) {
    in_addr v4{};
    in6_addr v6{};
    if (inet_pton(AF_INET, c.outbound_ip.c_str(), &v4) != 1 && inet_pton(AF_INET6, c.outbound_ip.c_str(), &v6) != 1)
      throw ConfigError("OUTBOUND_IP", "'" + c.outbound_ip + "' is not an IPv4 or IPv6 address");
  }
  // Several nodes on one PostgreSQL database (issue 10).
  c.store = r.choice("STORE", c.store, {"sqlite", "postgres"});
  c.database_url = r.raw("DATABASE_URL").value_or("");
  if (c.store == "postgres" && c.database_url.rfind("postgresql://", 0) != 0 &&
      c.database_url.rfind("postgres://", 0) != 0)
    throw ConfigError("DATABASE_URL", "STORE=postgres needs DATABASE_URL=postgresql://user:pass@host:port/db");
  c.lease_timeout_s = r.duration("LEASE_TIMEOUT", c.lease_timeout_s, 1);
  c.node_id = r.get("NODE_ID").value_or("");
  if (c.node_id.size() > 200 || c.node_id.find('\n') != std::string::npos)
    throw ConfigError("NODE_ID", "must be one line of at most 200 characters");
  if (c.node_id.empty()) {
    // Unique per start: a restarted node does not mistake its predecessor's claims for its own.
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    c.node_id = std::string(host) + ":" + std::to_string(::getpid());
  }
  // Webhooks (issue 9).
  c.webhook_secret = r.raw("WEBHOOK_SECRET").value_or("");
  if (!c.webhook_secret.empty() && c.webhook_secret.size() < 16)
    throw ConfigError("WEBHOOK_SECRET", "must be at least 16 bytes long");
  c.webhook_retry_min_s = r.duration("WEBHOOK_RETRY_MIN", c.webhook_retry_min_s, 1);
  c.webhook_retry_max_s = r.duration("WEBHOOK_RETRY_MAX", c.webhook_retry_max_s, 1);
  if (c.webhook_retry_max_s < c.webhook_retry_min_s)
    throw ConfigError("WEBHOOK_RETRY_MAX", "must not be below WEBHOOK_RETRY_MIN");
  c.webhook_allow_private = r.boolean("WEBHOOK_ALLOW_PRIVATE", c.webhook_allow_private);
  return c;
}

bool is_loopback_host(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  std::string h(host);
  std::transform(h.begin(), h.end(), h.begin(), [](unsigned char ch) { return std::tolower(ch); });
  if (h == "localhost" || h == "::1") return true;
  in_addr v4{};
  if (::inet_pton(AF_INET, h.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;  // 127.0.0.0/8
  in6_addr v6{};
  if (::inet_pton(AF_INET6, h.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

const char* to_string(Delivery d) {
  switch (d) {
    case Delivery::kRelay:
      return "relay";
    case Delivery::kMx:
      return "mx";
    case Delivery::kSandbox:
      return "sandbox";
  }
  return "?";
}

}  // namespace websmtp::config
