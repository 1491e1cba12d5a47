// Poco::Net's SMTPClientSession has traps this unit works around: its host/port constructor
// has no connect timeout and its startTLS() returns false silently when the server does not
// offer STARTTLS. So we connect the socket ourselves, hand it to a SecureSMTPClientSession
// and do the STARTTLS handshake on that session's DialogSocket when the SMTP dialogue
// (session.cpp) has got the peer's 220. Poco's exceptions stop here.
#include "websmtp/smtp/connection.hpp"

#include <Poco/Exception.h>
#include <Poco/Net/Context.h>
#include <Poco/Net/RejectCertificateHandler.h>
#include <Poco/Net/SSLManager.h>
#include <Poco/Net/SecureSMTPClientSession.h>
#include <Poco/Net/SecureStreamSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <sched.h>
#include <sys/socket.h>

#include <algorithm>
#include <limits>
#include <mutex>

namespace websmtp::smtp {

namespace {

// Exposes the session's DialogSocket, which Poco keeps protected.
class PocoSession final : public Poco::Net::SecureSMTPClientSession {
 public:
  explicit PocoSession(const Poco::Net::StreamSocket& s) : SecureSMTPClientSession(s) {}
  using SMTPClientSession::socket;
};

std::string& extra_ca_file() {
  static std::string path;
  return path;
}

// One client context per verification mode, shared by every connection (an SSL_CTX is
// made for that; building one per connection would reload the CA store each time).
Poco::Net::Context::Ptr tls_context(bool verify) {
  static std::once_flag once;
  static Poco::Net::Context::Ptr verifying, trusting;
  std::call_once(once, [] {
    Poco::Net::initializeSSL();
    Poco::SharedPtr<Poco::Net::InvalidCertificateHandler> handler = new Poco::Net::RejectCertificateHandler(false);
    Poco::Net::Context::Ptr ctx = new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, "", "", extra_ca_file(),
                                                         Poco::Net::Context::VERIFY_RELAXED, 9, true);
    Poco::Net::SSLManager::instance().initializeClient(nullptr, handler, ctx);
    verifying = ctx;
    trusting = new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, "", "", "", Poco::Net::Context::VERIFY_NONE,
                                      9, true);
  });
  return verify ? verifying : trusting;
}

Poco::Timespan timespan(std::chrono::milliseconds t) { return Poco::Timespan(t.count() * 1000); }

IoError io_error(const Poco::Exception& e) {
  return IoError{e.displayText(), dynamic_cast<const Poco::TimeoutException*>(&e) != nullptr};
}

}  // namespace

void set_extra_ca_file(std::string path) { extra_ca_file() = std::move(path); }

// Non-blocking tries (with a yield between them) before a reply read blocks.
constexpr int kReplySpins = 4;

struct Connection::Impl {
  ConnectOptions options;
  std::unique_ptr<PocoSession> session;  // holds the DialogSocket everything goes through
  bool tls = false;
  std::chrono::milliseconds receive_timeout{-1}, send_timeout{-1};  // as last set on the socket

  Poco::Net::DialogSocket& socket() { return session->socket(); }
  // Socket options are system calls, and the per-state timeouts would change them twice per
  // message. Waits of a second or more use a socket timeout of one second, set once, and the
  // caller loops until its deadline (a silent peer costs one wake-up a second); only the
  // last fraction of a deadline sets an exact timeout.
  static std::chrono::milliseconds quantum(std::chrono::milliseconds left) {
    return std::min(left, std::chrono::milliseconds(kTimeoutQuantumMs));
  }
  void set_receive_timeout(std::chrono::milliseconds t) {
    t = quantum(t);
    if (t != receive_timeout) socket().setReceiveTimeout(timespan(t));
    receive_timeout = t;
  }
  void set_send_timeout(std::chrono::milliseconds t) {
    t = quantum(t);
    if (t != send_timeout) socket().setSendTimeout(timespan(t));
    send_timeout = t;
  }
  static constexpr std::int64_t kTimeoutQuantumMs = 1000;
};

Connection::Connection(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Connection::~Connection() { close(); }

IoResult<std::unique_ptr<Connection>> Connection::open(const ConnectOptions& o) {
  auto impl = std::make_unique<Impl>();
  impl->options = o;
  try {
    Poco::Net::SocketAddress addr(o.host, o.port);
    Poco::Net::StreamSocket socket;
    if (o.implicit_tls) {
      Poco::Net::SecureStreamSocket secure(tls_context(o.verify_tls));
      secure.setPeerHostName(o.host);
      secure.connect(addr, timespan(o.timeout));
      socket = secure;
      impl->tls = true;
    } else {
      socket.connect(addr, timespan(o.timeout));
    }
    socket.setNoDelay(true);
    impl->session = std::make_unique<PocoSession>(socket);
  } catch (const Poco::Exception& e) {
    return tl::unexpected(io_error(e));
  }
  return std::unique_ptr<Connection>(new Connection(std::move(impl)));
}

IoResult<void> Connection::send(std::string_view bytes, std::chrono::milliseconds timeout) {
  if (!impl_->session) return tl::unexpected(IoError{"not connected"});
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return tl::unexpected(IoError{"timed out while sending", true});
    try {
      impl_->set_send_timeout(left);
      int n = impl_->socket().sendBytes(bytes.data() + sent,
                                        static_cast<int>(std::min<std::size_t>(bytes.size() - sent, 1 << 20)));
      if (n <= 0) return tl::unexpected(IoError{"connection closed while sending"});
      sent += static_cast<std::size_t>(n);
    } catch (const Poco::TimeoutException&) {
      continue;  // one quantum passed; the deadline decides
    } catch (const Poco::Exception& e) {
      return tl::unexpected(io_error(e));
    }
  }
  return {};
}

IoResult<std::size_t> Connection::receive(char* buf, std::size_t size, std::chrono::milliseconds timeout) {
  if (!impl_->session) return tl::unexpected(IoError{"not connected"});
  if (!impl_->tls && kReplySpins > 0) {
    // A peer on a fast link answers within microseconds. Sleeping in recv(2) for that costs
    // a wake-up on another core per reply, which dominates delivery on a virtual machine; a
    // few yields let the peer run and usually find the reply already there.
    int fd = impl_->socket().impl()->sockfd();
    for (int i = 0; i < kReplySpins; ++i) {
      ssize_t n = ::recv(fd, buf, size, MSG_DONTWAIT);
      if (n > 0) return static_cast<std::size_t>(n);
      if (n == 0) return std::size_t{0};
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) break;  // the blocking read reports it
      ::sched_yield();
    }
  }
  try {
    impl_->set_receive_timeout(timeout);
    int n = impl_->socket().receiveRawBytes(
        buf, static_cast<int>(std::min<std::size_t>(size, std::numeric_limits<int>::max())));
    return n > 0 ? static_cast<std::size_t>(n) : 0;
  } catch (const Poco::Exception& e) {
    return tl::unexpected(io_error(e));
  }
}

IoResult<void> Connection::start_tls(std::chrono::milliseconds timeout) {
  if (!impl_->session) return tl::unexpected(IoError{"not connected"});
  try {
    // The handshake is one call: it gets its whole timeout, not a quantum.
    impl_->socket().setReceiveTimeout(timespan(timeout));
    impl_->socket().setSendTimeout(timespan(timeout));
    impl_->receive_timeout = impl_->send_timeout = timeout;
    auto& ds = impl_->socket();
    Poco::Net::SecureStreamSocket secure =
        Poco::Net::SecureStreamSocket::attach(ds, impl_->options.host, tls_context(impl_->options.verify_tls));
    ds = secure;
    impl_->tls = true;
  } catch (const Poco::Exception& e) {
    return tl::unexpected(io_error(e));
  }
  return {};
}

bool Connection::tls() const { return impl_->tls; }

void Connection::close() {
  if (!impl_->session) return;
  try {
    impl_->socket().close();
  } catch (...) {
  }
  impl_->session.reset();
}

}  // namespace websmtp::smtp
