#pragma once
// The connection unit: one TCP connection to an SMTP peer, opened with a timeout, with TLS
// from the first byte (implicit) or later (the STARTTLS upgrade) and the peer's certificate
// verified, and byte I/O bounded by timeouts. It knows no SMTP; Poco::Net stays behind it.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <tl/expected.hpp>

namespace websmtp::smtp {

// A failure of the connection itself, not an SMTP reply: refused, reset, closed, timed out,
// a TLS handshake or certificate that failed.
struct IoError {
  std::string why;
  bool timeout = false;  // the operation's timeout ran out
};
template <typename T>
using IoResult = tl::expected<T, IoError>;

struct ConnectOptions {
  std::string host;  // also the name the certificate must match
  std::uint16_t port = 25;
  bool implicit_tls = false;                  // TLS from the first byte (SMTP_TLS=tls, port 465)
  bool verify_tls = true;                     // refuse a certificate that does not verify for `host`
  std::chrono::milliseconds timeout{30'000};  // TCP connect, and the handshake of implicit TLS
};

// SMTP_CA_FILE: CAs trusted, besides the system's, when a certificate is verified. Set once,
// before the first connection.
void set_extra_ca_file(std::string path);

class Connection {
 public:
  static IoResult<std::unique_ptr<Connection>> open(const ConnectOptions& o);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Sends all of `bytes`; each write may wait `timeout` for the peer to take data.
  IoResult<void> send(std::string_view bytes, std::chrono::milliseconds timeout);
  // Receives what has arrived, waiting up to `timeout` for at least one byte; 0: the peer closed.
  IoResult<std::size_t> receive(char* buf, std::size_t size, std::chrono::milliseconds timeout);
  // The TLS handshake over this connection (after the peer's 220 to STARTTLS), verified as
  // ConnectOptions say.
  IoResult<void> start_tls(std::chrono::milliseconds timeout);
  bool tls() const;
  void close();  // idempotent

 private:
  struct Impl;
  explicit Connection(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace websmtp::smtp
