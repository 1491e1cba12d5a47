// Relay delivery: every job goes to the one relay (SMTP_SERVER), over a session kept open
// across jobs. Talking SMTP is session.cpp's job, keeping sessions session_reuse.cpp's.
#include "websmtp/smtp/session_reuse.hpp"
#include "websmtp/smtp/transport.hpp"

namespace websmtp::smtp {

namespace {

SessionOptions session_options(const RelayOptions& o) {
  SessionOptions s;
  s.helo = o.helo;
  s.user = o.user;
  s.password = o.password;
  s.verify_tls = o.verify_tls;
  s.timeouts.connect = std::chrono::milliseconds(o.connect_timeout_ms);
  s.timeouts.command = std::chrono::milliseconds(o.command_timeout_ms);
  s.timeouts.data_ack = std::chrono::milliseconds(o.command_timeout_ms);
  s.timeouts.dot = std::chrono::milliseconds(o.data_timeout_ms);
  return s;
}

class RelayTransport final : public Transport {
 public:
  explicit RelayTransport(const RelayOptions& o) : relay_{o.host, o.port, o.tls}, session_(session_options(o)) {}

  std::vector<Reply> deliver(const Envelope& env, std::string_view message) override {
    Delivered d = deliver_reusing_detailed(session_, relay_, env, message);
    for (auto& r : d.replies) {
      if (r.code == 0 && !r.permanent) continue;  // nobody answered (a permanent one was the relay's offer)
      r.host = relay_.host;
      r.tls = d.tls;
    }
    return std::move(d.replies);
  }

 private:
  SessionKey relay_;
  Session session_;  // kept open across jobs
};

}  // namespace

std::unique_ptr<Transport> make_relay(const RelayOptions& options) { return std::make_unique<RelayTransport>(options); }

}  // namespace websmtp::smtp
