// Relay delivery on Poco::Net. Poco's SMTPClientSession has traps this file works around:
// its host/port constructor has no connect timeout, it never sends RSET after a failed
// transaction (the session then answers 503 to everything), startTLS() returns false
// silently when the server does not offer it, its AUTH LOGIN can report success without
// logging in, and receiveStatusMessage() spins forever when the peer closes in the middle of
// a multi-line reply. So: we connect the socket ourselves, read replies line by line, and
// drive the SMTP dialogue (pipelined when offered) on the session's DialogSocket.
#include <Poco/Net/AcceptCertificateHandler.h>
#include <Poco/Net/Context.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/RejectCertificateHandler.h>
#include <Poco/Net/SSLManager.h>
#include <Poco/Net/SecureSMTPClientSession.h>
#include <Poco/Net/SecureStreamSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <mutex>
#include <optional>

#include "websmtp/common/base64.hpp"
#include "websmtp/smtp/transport.hpp"

namespace websmtp::smtp {

namespace {

// Exposes the session's DialogSocket, which Poco keeps protected.
class Session final : public Poco::Net::SecureSMTPClientSession {
 public:
  explicit Session(const Poco::Net::StreamSocket& s) : SecureSMTPClientSession(s) {}
  using SMTPClientSession::socket;
};

struct Response {
  int code = 0;      // 0: no valid reply (connection closed or garbage)
  std::string text;  // the reply text without codes, lines joined by "; "
  std::vector<std::string> lines;
};

// A failure of the connection itself (not an SMTP reply): every recipient is deferred.
struct ConnectionLost {
  std::string why;
  bool after_data = false;
};

Poco::Net::Context::Ptr tls_context(bool verify) {
  static std::once_flag once;
  std::call_once(once, [] {
    Poco::Net::initializeSSL();
    Poco::SharedPtr<Poco::Net::InvalidCertificateHandler> handler = new Poco::Net::RejectCertificateHandler(false);
    Poco::Net::Context::Ptr ctx = new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, "", "", "",
                                                         Poco::Net::Context::VERIFY_RELAXED, 9, true);
    Poco::Net::SSLManager::instance().initializeClient(nullptr, handler, ctx);
  });
  return new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, "", "", "",
                                verify ? Poco::Net::Context::VERIFY_RELAXED : Poco::Net::Context::VERIFY_NONE, 9, true);
}

class RelayTransport final : public Transport {
 public:
  explicit RelayTransport(RelayOptions o) : o_(std::move(o)) {
    if (o_.tls != TlsMode::kNone) context_ = tls_context(o_.verify_tls);
  }

  std::vector<smtp::Reply> deliver(const Envelope& env, std::string_view message) override {
    for (int round = 0;; ++round) {
      std::vector<smtp::Reply> out(env.recipients.size());
      bool reused = session_ != nullptr;
      replies_seen_ = 0;
      std::string why;
      bool after_data = false;
      try {
        if (!session_)
          connect();
        else if (needs_rset_)
          reset_transaction();
        transaction(env, message, out);
        in_data_ = false;
        return out;
      } catch (const ConnectionLost& e) {
        why = e.why;
        after_data = e.after_data;
      } catch (const Poco::Exception& e) {
        why = e.displayText();
      } catch (const std::exception& e) {
        why = e.what();
      }
      // A kept-open session that fails before the peer said anything in this transaction
      // was most likely closed by the relay while idle: try once more on a new connection
      // instead of deferring a job the relay never saw.
      if (reused && round == 0 && replies_seen_ == 0 && !in_data_) {
        spdlog::debug("relay {}:{}: idle session is gone ({}); reconnecting", o_.host, o_.port, why);
        close();
        continue;
      }
      // Once the final dot is out, any failure (timeout, reset, close) leaves the outcome unknown.
      fail_connection(out, why, after_data || in_data_);
      in_data_ = false;
      return out;
    }
  }

 private:
  // -- connection ----------------------------------------------------------------------
  void connect() {
    Poco::Net::SocketAddress addr(o_.host, o_.port);
    Poco::Net::StreamSocket socket;
    auto connect_timeout = Poco::Timespan(o_.connect_timeout_ms * 1000);
    if (o_.tls == TlsMode::kImplicit) {
      Poco::Net::SecureStreamSocket secure(context_);
      secure.setPeerHostName(o_.host);
      secure.connect(addr, connect_timeout);
      socket = secure;
    } else {
      socket.connect(addr, connect_timeout);
    }
    socket.setNoDelay(true);
    set_timeout(socket, o_.command_timeout_ms);
    session_ = std::make_unique<Session>(socket);

    Response greeting = read_reply();
    if (greeting.code / 100 != 2) throw_reply_as_connection("greeting", greeting);
    ehlo();
    bool offered_tls = has_ext("STARTTLS");
    if (o_.tls == TlsMode::kStartTls && !offered_tls)
      throw ConnectionLost{"SMTP_TLS=starttls but the relay does not offer STARTTLS; not sending in plaintext"};
    if ((o_.tls == TlsMode::kStartTls || o_.tls == TlsMode::kOpportunistic) && offered_tls) {
      Response r = command("STARTTLS");
      if (r.code != 220) {
        if (o_.tls == TlsMode::kStartTls) throw_reply_as_connection("STARTTLS", r);
      } else {
        auto& ds = session_->socket();
        inbuf_.clear();  // nothing sent in plaintext before the handshake may count as a reply after it
        Poco::Net::SecureStreamSocket secure = Poco::Net::SecureStreamSocket::attach(ds, o_.host, context_);
        ds = secure;
        set_timeout(ds, o_.command_timeout_ms);
        ehlo();
      }
    }
    if (!o_.user.empty()) authenticate();
  }

  void set_timeout(Poco::Net::StreamSocket& s, std::int64_t ms) {
    s.setReceiveTimeout(Poco::Timespan(ms * 1000));
    s.setSendTimeout(Poco::Timespan(ms * 1000));
    rcv_timeout_ms_ = ms;
  }

  void ehlo() {
    std::string name = o_.helo.empty() ? "localhost" : o_.helo;
    Response r = command("EHLO " + name);
    extensions_.clear();
    if (r.code / 100 != 2) {
      if (r.code / 100 == 5) r = command("HELO " + name);  // a pre-ESMTP peer
      if (r.code / 100 != 2) throw_reply_as_connection("EHLO", r);
      return;
    }
    for (std::size_t i = 1; i < r.lines.size(); ++i) {
      std::string upper = r.lines[i];
      std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char c) { return std::toupper(c); });
      extensions_.push_back(std::move(upper));
    }
  }

  bool has_ext(std::string_view name) const {
    return std::any_of(extensions_.begin(), extensions_.end(), [&](const std::string& e) {
      return e.compare(0, name.size(), name) == 0 && (e.size() == name.size() || e[name.size()] == ' ');
    });
  }

  std::string auth_methods() const {
    for (const auto& e : extensions_)
      if (e.rfind("AUTH ", 0) == 0 || e.rfind("AUTH=", 0) == 0) {
        std::string methods(" ");  // " PLAIN LOGIN ": each name space-delimited for find()
        methods.append(e, 5);
        methods += ' ';
        return methods;
      }
    return {};
  }

  void authenticate() {
    std::string methods = auth_methods();
    if (methods.empty()) throw ConnectionLost{"SMTP_USER is set but the relay does not offer AUTH"};
    Response r;
    if (methods.find(" PLAIN ") != std::string::npos) {
      r = command("AUTH PLAIN " + base64_encode(std::string("\0", 1) + o_.user + std::string("\0", 1) + o_.password));
    } else if (methods.find(" LOGIN ") != std::string::npos) {
      r = command("AUTH LOGIN");
      if (r.code == 334) r = command(base64_encode(o_.user));
      if (r.code == 334) r = command(base64_encode(o_.password));
    } else {
      throw ConnectionLost{"the relay offers no AUTH method we support (PLAIN, LOGIN):" + methods};
    }
    // Only 235 means logged in (Poco's own LOGIN accepts any positive reply).
    if (r.code != 235) throw_reply_as_connection("AUTH", r);
  }

  [[noreturn]] void throw_reply_as_connection(const char* stage, const Response& r) {
    std::string why =
        std::string(stage) + ": " + (r.code ? std::to_string(r.code) + " " + r.text : "no valid SMTP reply: " + r.text);
    last_code_ = r.code;
    throw ConnectionLost{why};
  }

  void fail_connection(std::vector<smtp::Reply>& out, const std::string& why, bool after_data) {
    for (auto& r : out) {
      if (r.code >= 400) continue;  // the peer already answered for this recipient
      bool accepted = r.code / 100 == 2;
      r.code = last_code_ / 100 == 4 ? last_code_ : 0;
      r.text = why.substr(0, 500);
      r.uncertain = after_data && accepted;  // the whole message went out; its fate is unknown
    }
    spdlog::debug("relay {}:{}: connection failed: {}", o_.host, o_.port, why);
    close();
  }

  void close() {
    if (session_) {
      try {
        session_->socket().close();
      } catch (...) {
      }
    }
    session_.reset();
    inbuf_.clear();
    needs_rset_ = false;
    last_code_ = 0;
  }

  // -- replies -------------------------------------------------------------------------
  // Reads one reply, however many lines, within `timeout_ms` in total (a peer that trickles
  // bytes cannot hold a worker past it), with lines of at most 4 KiB. Poco's own reader has
  // neither bound, and it spins forever when the peer closes in the middle of a reply.
  Response read_reply(std::int64_t timeout_ms = 0) {
    if (timeout_ms <= 0) timeout_ms = o_.command_timeout_ms;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    Response r;
    for (int n = 0; n < 200; ++n) {
      std::string line = read_line(deadline, timeout_ms, r.lines.empty());
      bool valid = line.size() >= 3 && std::isdigit(static_cast<unsigned char>(line[0])) &&
                   std::isdigit(static_cast<unsigned char>(line[1])) &&
                   std::isdigit(static_cast<unsigned char>(line[2])) &&
                   (line.size() == 3 || line[3] == ' ' || line[3] == '-');
      if (!valid) {
        r.code = 0;
        r.text = line.substr(0, 200);
        return r;  // garbage: the caller treats code 0 as a broken peer
      }
      int code = std::stoi(line.substr(0, 3));
      std::string text = line.size() > 4 ? line.substr(4) : std::string();
      if (r.lines.empty()) r.code = code;
      r.lines.push_back(text);
      if (!r.text.empty()) r.text += "; ";
      r.text += text;
      if (line.size() == 3 || line[3] == ' ') {
        ++replies_seen_;
        if (r.code == 421) last_code_ = 421;
        return r;
      }
    }
    throw ConnectionLost{"reply longer than 200 lines"};
  }

  std::string read_line(std::chrono::steady_clock::time_point deadline, std::int64_t timeout_ms, bool first) {
    auto& ds = session_->socket();
    for (;;) {
      auto nl = inbuf_.find('\n');
      if (nl != std::string::npos) {
        std::string line = inbuf_.substr(0, nl > 0 && inbuf_[nl - 1] == '\r' ? nl - 1 : nl);
        inbuf_.erase(0, nl + 1);
        return line;
      }
      if (inbuf_.size() > 4096) throw ConnectionLost{"reply line longer than 4 KiB"};
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0)
        throw ConnectionLost{"timed out after " + std::to_string(timeout_ms / 1000) + "s waiting for a reply"};
      // The socket's receive timeout bounds each recv; shorten it only when the deadline is nearer.
      std::int64_t want = std::min<std::int64_t>(left.count(), timeout_ms);
      if (want != rcv_timeout_ms_) {
        ds.setReceiveTimeout(Poco::Timespan(want * 1000));
        rcv_timeout_ms_ = want;
      }
      char buf[4096];
      int n = ds.receiveRawBytes(buf, sizeof buf);
      if (n <= 0)
        throw ConnectionLost{first && inbuf_.empty() ? "connection closed by the peer" : "connection closed mid-reply"};
      inbuf_.append(buf, static_cast<std::size_t>(n));
    }
  }

  Response command(const std::string& line) {
    session_->socket().sendMessage(line);
    return read_reply();
  }

  void reset_transaction() {
    Response r = command("RSET");
    needs_rset_ = false;
    if (r.code / 100 != 2) {
      close();
      connect();
    }
  }

  // -- one transaction -------------------------------------------------------------------
  void transaction(const Envelope& env, std::string_view message, std::vector<smtp::Reply>& out) {
    auto& ds = session_->socket();
    needs_rset_ = true;  // cleared only when the transaction ends cleanly
    bool pipelining = has_ext("PIPELINING");
    std::string mail = "MAIL FROM:<" + std::string(env.sender) + ">";
    Response mail_reply;
    std::optional<Response> data_reply;  // already read when DATA was pipelined
    if (pipelining) {
      // RFC 2920: MAIL, every RCPT and DATA in one write, then the replies in order. A
      // server with no accepted recipient answers DATA with 554 (or 503), never 354.
      wire_.clear();
      wire_ += mail;
      wire_ += "\r\n";
      for (auto rcpt : env.recipients) {
        wire_ += "RCPT TO:<";
        wire_ += rcpt;
        wire_ += ">\r\n";
      }
      wire_ += "DATA\r\n";
      send_all(ds, wire_);
      mail_reply = read_reply();
      for (std::size_t i = 0; i < env.recipients.size(); ++i) {
        Response r = read_reply();
        out[i] = smtp::Reply{r.code, r.text, false};
      }
      data_reply = read_reply();
    } else {
      mail_reply = command(mail);
      if (mail_reply.code / 100 == 2) {
        for (std::size_t i = 0; i < env.recipients.size(); ++i) {
          Response r = command("RCPT TO:<" + std::string(env.recipients[i]) + ">");
          out[i] = smtp::Reply{r.code, r.text, false};
          if (r.code == 421) break;
        }
      }
    }
    if (mail_reply.code == 0) throw ConnectionLost{"MAIL FROM: no valid SMTP reply: " + mail_reply.text};
    bool any_accepted = std::any_of(out.begin(), out.end(), [](const smtp::Reply& r) { return r.code / 100 == 2; });
    if (data_reply && data_reply->code == 354 && (mail_reply.code / 100 != 2 || !any_accepted)) {
      // A non-conforming peer opened DATA with nobody to deliver to: send nothing.
      send_all(ds, ".\r\n");
      read_reply();
    }
    if (mail_reply.code / 100 != 2) {
      // The sender was refused: that reply is every recipient's answer.
      for (auto& r : out) r = smtp::Reply{mail_reply.code, "MAIL FROM: " + mail_reply.text, false};
      if (mail_reply.code == 421) close();
      return;
    }
    for (auto& r : out)
      if (r.code == 0) throw ConnectionLost{"RCPT TO: no valid SMTP reply: " + r.text};
    if (last_code_ == 421) {
      for (auto& r : out)
        if (r.code / 100 == 2) r = smtp::Reply{421, "RCPT TO: the relay closed the session", false};
      close();
      return;
    }
    if (!any_accepted) return;  // RSET before the next job

    Response data = data_reply ? *data_reply : command("DATA");
    if (data.code != 354) {
      if (data.code == 0) throw ConnectionLost{"DATA: no valid SMTP reply: " + data.text};
      for (auto& r : out)
        if (r.code / 100 == 2) r = smtp::Reply{data.code, "DATA: " + data.text, false};
      if (data.code == 421) close();
      return;
    }
    wire_.clear();
    append_dot_stuffed(wire_, message);
    if (env.before_data) env.before_data();
    send_all(ds, wire_);
    in_data_ = true;  // the final dot is out: from here a lost reply leaves the outcome unknown
    Response final_reply = read_reply(o_.data_timeout_ms);
    in_data_ = false;
    if (final_reply.code == 0) throw ConnectionLost{"no valid reply to the end of DATA: " + final_reply.text, true};
    for (auto& r : out)
      if (r.code / 100 == 2) r = smtp::Reply{final_reply.code, final_reply.text, false};
    if (final_reply.code == 421) {
      close();
      return;
    }
    needs_rset_ = final_reply.code / 100 != 2;
  }

  static void send_all(Poco::Net::StreamSocket& s, const std::string& buf) {
    std::size_t sent = 0;
    while (sent < buf.size()) {
      int n = s.sendBytes(buf.data() + sent, static_cast<int>(std::min<std::size_t>(buf.size() - sent, 1 << 20)));
      if (n <= 0) throw ConnectionLost{"connection closed while sending"};
      sent += static_cast<std::size_t>(n);
    }
  }

  RelayOptions o_;
  Poco::Net::Context::Ptr context_;
  std::unique_ptr<Session> session_;
  std::vector<std::string> extensions_;
  std::string wire_;  // reused send buffer
  bool needs_rset_ = false;
  bool in_data_ = false;
  int replies_seen_ = 0;  // complete replies read in the current deliver() round
  std::string inbuf_;     // bytes received and not yet consumed as reply lines
  std::int64_t rcv_timeout_ms_ = 0;
  int last_code_ = 0;
};

}  // namespace

std::unique_ptr<Transport> make_relay(const RelayOptions& options) { return std::make_unique<RelayTransport>(options); }

}  // namespace websmtp::smtp
