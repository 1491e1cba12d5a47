#pragma once
// Daemon configuration: the seed's keys plus ours. Values come from flags, then the process
// environment, then `.env` in the working directory (the seed's rule), then defaults.
// Every value is validated at start; a bad one stops the daemon with a message naming the key.
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "websmtp/smtp/mx_transport.hpp"
#include "websmtp/smtp/tls.hpp"

namespace websmtp::config {

enum class Delivery { kRelay, kMx, kSandbox };
using smtp::TlsMode;  // SMTP_TLS: one enum, owned by the SMTP client
enum class AfterDataTimeout { kRetry, kFail };

struct Config {
  std::string host = "0.0.0.0";
  int port = 8080;
  int admin_port = 8081;
  int threads = 1;       // delivery workers
  int http_threads = 2;  // Pistache reactor threads
  std::int64_t http_header_timeout_s = 10;
  std::int64_t http_body_timeout_s = 30;
  std::int64_t http_idle_timeout_s = 300;
  int worker_nice = 10;  // CPU priority of delivery workers (accepting mail goes first)
  std::string log_level = "info";
  Delivery delivery = Delivery::kMx;
  std::string smtp_server;
  int smtp_port = 25;
  std::string smtp_user;
  std::string smtp_pwd;
  TlsMode smtp_tls = TlsMode::kOpportunistic;
  bool smtp_tls_verify = true;
  std::string smtp_helo;  // EHLO name; empty: this host's name
  std::string data_dir = "./data";
  std::string store_sync = "normal";  // SQLite synchronous: normal (survives kill -9) or full (power loss)
  std::int64_t status_ttl_s = 7 * 86400;
  std::int64_t max_body_bytes = 10 * 1024 * 1024;
  int max_recipients = 1000;
  std::vector<std::string> cors_origins;
  // Authentication (AUTH_MODE: none, keys, jwt, keys,jwt) and limits.
  bool auth_keys = false;
  bool auth_jwt = false;
  std::string rate_limit_ip;    // "120/m"; empty: off
  std::string trusted_proxies;  // CIDR list whose X-Forwarded-For is believed
  std::string jwt_hs256_secret;
  std::string jwt_public_key_file;
  std::string jwt_jwks_file;
  std::string jwt_issuer;
  std::string jwt_audience;
  std::int64_t jwt_rate_per_minute = 0;  // jobs per minute per token subject; 0: no limit
  std::string message_id_domain;
  // DKIM signing (message/dkim.hpp): keys named <selector>._domainkey.<domain>.pem in a directory,
  // and/or one key given by domain, selector and file. The files are read by the Gateway at start.
  std::string dkim_keys_dir;
  std::string dkim_domain;
  std::string dkim_selector;
  std::string dkim_key_file;
  std::int64_t retry_min_s = 300;
  std::int64_t retry_max_s = 4000;
  std::int64_t max_lifetime_s = 5 * 86400;
  AfterDataTimeout after_data_timeout = AfterDataTimeout::kRetry;
  std::int64_t shutdown_grace_s = 30;
  std::int64_t smtp_connect_timeout_s = 30;
  std::int64_t smtp_command_timeout_s = 300;
  std::int64_t smtp_data_timeout_s = 600;
  int status_cache_size = 10000;
  std::string ready_file;  // written with the bound ports once serving (tests, supervisors)

  // Abuse limits and the admin API's guard (issue 7).
  int max_connections = 10000;           // open client connections on the public port
  int max_connections_per_client = 256;  // from one client address (IPv6: one /64); 0: no cap
  int max_longpolls = 1000;              // ?wait= requests waiting at once; over it they answer at once
  std::string admin_host = "127.0.0.1";  // the admin listener's address
  std::string admin_token;               // when set, required as "Authorization: Bearer" on the admin API
  // Direct delivery (DELIVERY=mx).
  std::string dns_server;  // "ip[:port]" or "[v6]:port"; empty: /etc/resolv.conf
  smtp::MxTls mx_tls = smtp::MxTls::kOpportunistic;
  std::string smtp_ca_file;  // extra trusted CAs (PEM), relay and MX
  int mx_max_per_host = 4;   // sessions to one MX host at a time
  int mx_pool_size = 32;     // idle sessions kept in all
  std::int64_t mx_idle_timeout_s = 30;
  // Sending-domain check (issue 8).
  std::string outbound_ip;  // the address receivers see mail come from (SPF); empty: found by route
  // Several nodes on one PostgreSQL database (issue 10).
  std::string store = "sqlite";  // sqlite | postgres
  std::string database_url;      // postgresql://user:pass@host:port/db (STORE=postgres)
  std::int64_t lease_timeout_s = 60;  // a dead node's claims come back after this
  std::string node_id;                // this node's claim owner; empty: hostname:pid
  // Webhooks (issue 9): job.completed events POSTed to a job's callback_url, signed.
  std::string webhook_secret;  // empty: a job with a callback_url is refused (unsigned webhooks are not sent)
  std::int64_t webhook_retry_min_s = 10;
  std::int64_t webhook_retry_max_s = 3600;
  bool webhook_allow_private = false;  // true: loopback, private, link-local... destinations too
};

struct ConfigError : std::runtime_error {
  ConfigError(const std::string& key, const std::string& why)
      : std::runtime_error("configuration " + key + ": " + why), key(key) {}
  std::string key;
};

// Describes one key, for flags, the README and `websmtpd --help`.
struct KeyInfo {
  const char* name;
  std::string default_value;  // as an operator would write it; empty: none
  const char* help;
};
const std::vector<KeyInfo>& keys();

// Reads KEY=VALUE lines (comments, blank lines, `export `, single/double quotes).
std::map<std::string, std::string> parse_dotenv(const std::string& text);

// Builds the configuration. `lookup` answers a key from flags or the environment (nullopt
// when unset); `dotenv` supplies keys the environment lacks. Throws ConfigError.
Config load(const std::function<std::optional<std::string>(const std::string&)>& lookup,
            const std::map<std::string, std::string>& dotenv);

const char* to_string(Delivery d);

// localhost, 127.0.0.0/8 or ::1 (brackets allowed): ADMIN_HOST without ADMIN_TOKEN must be one.
bool is_loopback_host(std::string_view host);

}  // namespace websmtp::config
