#include "websmtp/service/transport_factory.hpp"

namespace websmtp::service {

TransportFactory transport_factory(const config::Config& c) {
  if (c.delivery == config::Delivery::kSandbox) {
    std::string dir = c.data_dir + "/sandbox";
    return [dir] { return smtp::make_sandbox(dir); };
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
