#include "websmtp/service/transport_factory.hpp"

#include "websmtp/common/clock.hpp"
#include "websmtp/smtp/connection.hpp"
#include "websmtp/smtp/mx_transport.hpp"

namespace websmtp::service {

TransportFactory transport_factory(const config::Config& c) {
  if (c.delivery == config::Delivery::kSandbox) {
    std::string dir = c.data_dir + "/sandbox";
    return [dir] { return smtp::make_sandbox(dir); };
  }
  if (!c.smtp_ca_file.empty()) smtp::set_extra_ca_file(c.smtp_ca_file);
  if (c.delivery == config::Delivery::kMx) {
    smtp::MxOptions o;
    o.port = static_cast<std::uint16_t>(c.smtp_port);
    o.tls = c.mx_tls;
    o.helo = c.smtp_helo;
    o.connect_timeout_ms = c.smtp_connect_timeout_s * 1000;
    o.command_timeout_ms = c.smtp_command_timeout_s * 1000;
    o.data_timeout_ms = c.smtp_data_timeout_s * 1000;
    static const SystemClock clock;
    auto resolver = std::make_shared<smtp::MxResolver>(
        std::shared_ptr<smtp::DnsClient>(smtp::make_system_dns_client(c.dns_server)), clock);
    auto pool = std::make_shared<smtp::SessionPool>(
        smtp::mx_session_options(o),
        smtp::PoolLimits{c.mx_max_per_host, c.mx_pool_size, std::chrono::seconds(c.mx_idle_timeout_s)});
    return [o, resolver, pool] { return smtp::make_mx(o, resolver, pool); };
  }
  smtp::RelayOptions o;
  o.host = c.smtp_server;
  o.port = static_cast<std::uint16_t>(c.smtp_port);
  o.helo = c.smtp_helo;
  o.user = c.smtp_user;
  o.password = c.smtp_pwd;
  o.tls = c.smtp_tls;
  o.verify_tls = c.smtp_tls_verify;
  o.connect_timeout_ms = c.smtp_connect_timeout_s * 1000;
  o.command_timeout_ms = c.smtp_command_timeout_s * 1000;
  o.data_timeout_ms = c.smtp_data_timeout_s * 1000;
  return [o] { return smtp::make_relay(o); };
}

}  // namespace websmtp::service
