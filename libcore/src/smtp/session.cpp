#include "websmtp/smtp/session.hpp"

#include <algorithm>
#include <optional>

#include "websmtp/common/base64.hpp"
#include "websmtp/common/idn.hpp"

namespace websmtp::smtp {

namespace {
bool is_2xx(int code) { return code / 100 == 2; }
}  // namespace

const char* to_string(SessionState s) {
  switch (s) {
    case SessionState::kDisconnected:
      return "disconnected";
    case SessionState::kConnect:
      return "connect";
    case SessionState::kGreeting:
      return "greeting";
    case SessionState::kEhlo:
      return "EHLO";
    case SessionState::kStartTls:
      return "STARTTLS";
    case SessionState::kAuth:
      return "AUTH";
    case SessionState::kReady:
      return "ready";
    case SessionState::kMail:
      return "MAIL FROM";
    case SessionState::kRcpt:
      return "RCPT TO";
    case SessionState::kData:
      return "DATA";
    case SessionState::kDot:
      return "end of DATA";
    case SessionState::kRset:
      return "RSET";
    case SessionState::kQuit:
      return "QUIT";
    case SessionState::kBroken:
      return "broken";
  }
  return "?";
}

std::chrono::milliseconds timeout_for(SessionState s, const Timeouts& t) {
  switch (s) {
    case SessionState::kConnect:
      return t.connect;
    case SessionState::kGreeting:
    case SessionState::kEhlo:
    case SessionState::kStartTls:
    case SessionState::kAuth:
    case SessionState::kMail:
    case SessionState::kRcpt:
    case SessionState::kRset:
      return t.command;
    case SessionState::kQuit:
      return std::min(t.command, kQuitTimeout);
    case SessionState::kData:
      return t.data_ack;
    case SessionState::kDot:
      return t.dot;
    case SessionState::kDisconnected:
    case SessionState::kReady:
    case SessionState::kBroken:
      break;
  }
  return std::chrono::milliseconds::zero();
}

void apply_failure(std::vector<Reply>& replies, const Failure& f) {
  bool after_dot = f.state == SessionState::kDot;
  bool auth_refused = f.state == SessionState::kAuth && f.code >= 400;
  for (auto& r : replies) {
    if (r.code >= 400 || r.permanent) continue;  // answered already, or failed for good without being sent
    if (auth_refused) {
      r = Reply{f.code, f.reason.substr(0, 500), false, f.code >= 500};
      continue;
    }
    bool accepted = is_2xx(r.code);
    r.code = f.code / 100 == 4 ? f.code : 0;
    r.text = f.reason.substr(0, 500);
    r.uncertain = after_dot && accepted;  // the whole message went out; its fate is unknown
  }
}

Session::Session(SessionOptions options) : options_(std::move(options)) {}

Session::~Session() = default;

bool Session::tls() const { return connection_ && connection_->tls(); }

void Session::close() {
  if (connection_) connection_->close();
  connection_.reset();
  framer_.clear();
  capabilities_ = {};
  peer_closing_ = false;
  state_ = SessionState::kDisconnected;
}

void Session::quit() {
  bool can_talk = connection_ && !peer_closing_ && state_ != SessionState::kBroken;
  if (can_talk) {
    state_ = SessionState::kQuit;
    (void)command("QUIT");  // a courtesy: whatever the peer answers, the session ends
  }
  close();
}

tl::unexpected<Failure> Session::broken(std::string reason) {
  Failure f{state_, peer_closing_ ? 421 : 0, std::move(reason)};
  close();
  state_ = SessionState::kBroken;
  return tl::unexpected(std::move(f));
}

// The peer refused a step: the session stays in that step's state (it can still talk),
// unless the "reply" was not one at all.
tl::unexpected<Failure> Session::refused(std::string_view step, const Response& r) {
  std::string reason(step);
  if (r.code == 0) return broken(reason + ": no valid SMTP reply: " + r.text);
  return tl::unexpected(Failure{state_, r.code, reason + ": " + std::to_string(r.code) + " " + r.text});
}

IoResult<void> Session::write(std::string_view bytes) { return connection_->send(bytes, timeout()); }

IoResult<Response> Session::read() {
  auto r = read_reply(*connection_, framer_, timeout());
  if (r) {
    ++replies_read_;
    if (r->code == 421) peer_closing_ = true;
  }
  return r;
}

IoResult<Response> Session::command(std::string_view line) {
  wire_.assign(line);
  wire_ += "\r\n";
  if (auto sent = write(wire_); !sent) return tl::unexpected(sent.error());
  return read();
}

// Propagates an I/O failure out of a Status function as a broken session.
#define WEBSMTP_TRY(var, expr) \
  auto var = (expr);           \
  if (!var) return broken(std::move(var.error().why))

Status Session::open(const SessionKey& key) {
  close();
  state_ = SessionState::kConnect;
  auto c = Connection::open({key.host, key.port, key.tls == TlsMode::kImplicit, options_.verify_tls, timeout()});
  if (!c) return broken(std::move(c.error().why));
  connection_ = std::move(*c);
  if (auto s = greet(key); !s) return s;
  state_ = SessionState::kReady;
  return {};
}

Status Session::greet(const SessionKey& key) {
  state_ = SessionState::kGreeting;
  WEBSMTP_TRY(greeting, read());
  if (!is_2xx(greeting->code)) return refused("greeting", *greeting);
  if (auto s = ehlo(); !s) return s;
  bool offered = capabilities_.has("STARTTLS");
  if (key.tls == TlsMode::kStartTls && !offered) {
    state_ = SessionState::kStartTls;
    return tl::unexpected(
        Failure{state_, 0, "SMTP_TLS=starttls but the relay does not offer STARTTLS; not sending in plaintext"});
  }
  if ((key.tls == TlsMode::kStartTls || key.tls == TlsMode::kOpportunistic) && offered) {
    state_ = SessionState::kStartTls;
    WEBSMTP_TRY(r, command("STARTTLS"));
    if (r->code == 220) {
      if (auto s = start_tls(); !s) return s;
    } else if (key.tls == TlsMode::kStartTls || options_.starttls_refusal_fails) {
      return refused("STARTTLS", *r);
    }  // else opportunistic: a refused STARTTLS leaves the session in plaintext
  }
  if (!options_.user.empty()) return authenticate();
  return {};
}

Status Session::start_tls() {
  framer_.clear();  // nothing sent in plaintext before the handshake may count as a reply after it
  if (auto t = connection_->start_tls(timeout()); !t) return broken(std::move(t.error().why));
  return ehlo();
}

Status Session::ehlo() {
  state_ = SessionState::kEhlo;
  std::string name = options_.helo.empty() ? "localhost" : options_.helo;
  capabilities_ = {};
  WEBSMTP_TRY(r, command("EHLO " + name));
  if (is_2xx(r->code)) {
    capabilities_ = Capabilities::from_ehlo(r->lines);
    return {};
  }
  if (r->code / 100 == 5) {  // a pre-ESMTP peer
    WEBSMTP_TRY(helo, command("HELO " + name));
    if (is_2xx(helo->code)) return {};
    return refused("EHLO", *helo);
  }
  return refused("EHLO", *r);
}

Status Session::authenticate() {
  state_ = SessionState::kAuth;
  const auto& offered = capabilities_.auth_mechanisms();
  if (offered.empty()) return tl::unexpected(Failure{state_, 0, "SMTP_USER is set but the relay does not offer AUTH"});
  auto mechanism = choose_auth(capabilities_);
  if (!mechanism) {
    std::string list;
    for (const auto& m : offered) list += " " + m;
    return tl::unexpected(Failure{state_, 0, "the relay offers no AUTH method we support (PLAIN, LOGIN):" + list});
  }
  Response r;
  if (*mechanism == AuthMechanism::kPlain) {
    std::string credentials = std::string(1, '\0') + options_.user + std::string(1, '\0') + options_.password;
    WEBSMTP_TRY(plain, command("AUTH PLAIN " + base64_encode(credentials)));
    r = std::move(*plain);
  } else {
    WEBSMTP_TRY(login, command("AUTH LOGIN"));
    r = std::move(*login);
    if (r.code == 334) {
      WEBSMTP_TRY(user, command(base64_encode(options_.user)));
      r = std::move(*user);
    }
    if (r.code == 334) {
      WEBSMTP_TRY(password, command(base64_encode(options_.password)));
      r = std::move(*password);
    }
  }
  // Only 235 means logged in (Poco's own LOGIN accepts any positive reply).
  if (r.code != 235) return refused("AUTH", r);
  return {};
}

Status Session::reset() {
  state_ = SessionState::kRset;
  WEBSMTP_TRY(r, command("RSET"));
  if (!is_2xx(r->code)) return refused("RSET", *r);
  state_ = SessionState::kReady;
  return {};
}

Status Session::send(const Envelope& env, std::string_view message, std::vector<Reply>& replies) {
  if (state_ != SessionState::kReady || capabilities_.has("SMTPUTF8")) return transact(env, message, replies);
  // The peer does not offer SMTPUTF8: a UTF-8 address must not reach it at all (RFC 6531 3.4;
  // there is no downgrade for an address), so those recipients fail for good unsent and the
  // rest go in a transaction of their own. A header section with raw UTF-8 (an address in
  // From, To, Cc or Reply-To) needs SMTPUTF8 from every peer it goes to (RFC 6532), and it was
  // signed at submit, so it cannot be rewritten: then no recipient goes there (Postfix does the
  // same). A UTF-8 address only in Bcc is in no header: the per-recipient rule holds.
  const bool sender_utf8 = has_non_ascii(env.sender);
  const bool header_utf8 = !sender_utf8 && header_needs_smtputf8(message);
  std::vector<std::size_t> sendable;
  for (std::size_t i = 0; i < env.recipients.size(); ++i)
    if (!sender_utf8 && !header_utf8 && !has_non_ascii(env.recipients[i])) sendable.push_back(i);
  if (sendable.size() == env.recipients.size()) return transact(env, message, replies);
  Reply unsent;
  unsent.text = std::string("5.6.7 ") +
                (sender_utf8   ? "the sender has a UTF-8 address"
                 : header_utf8 ? "the message's headers hold a UTF-8 address"
                               : "the recipient has a UTF-8 address") +
                " and the peer does not offer SMTPUTF8; not sent";
  unsent.permanent = true;
  unsent.reason = kSmtputf8Required;
  replies.assign(env.recipients.size(), unsent);
  if (sendable.empty()) return {};  // nothing was sent: the session stays ready
  Envelope sub{env.ref, env.sender, {}, env.before_data};
  for (auto i : sendable) sub.recipients.push_back(env.recipients[i]);
  std::vector<Reply> sub_replies;
  Status s = transact(sub, message, sub_replies);
  for (std::size_t k = 0; k < sendable.size(); ++k) replies[sendable[k]] = std::move(sub_replies[k]);
  return s;
}

Status Session::transact(const Envelope& env, std::string_view message, std::vector<Reply>& replies) {
  replies.assign(env.recipients.size(), Reply{});
  if (state_ != SessionState::kReady)
    return tl::unexpected(Failure{state_, 0, std::string("no transaction in state ") + to_string(state_)});
  auto accepted = [&] {
    return std::any_of(replies.begin(), replies.end(), [](const Reply& r) { return is_2xx(r.code); });
  };
  auto mail_command = mail_from_command(env.sender, message, capabilities_, transaction_needs_smtputf8(env, message));
  if (!mail_command) {  // nothing was sent: the session stays ready for the next job
    for (auto& r : replies)
      r = Reply{554, "5.6.3 the message holds 8-bit data and the peer does not offer 8BITMIME", false};
    return {};
  }
  const std::string& mail = *mail_command;
  Response mail_reply;
  std::optional<Response> data_reply;  // already read when DATA was pipelined
  state_ = SessionState::kMail;
  if (capabilities_.has("PIPELINING")) {
    // RFC 2920: MAIL, every RCPT and DATA in one write, then the replies in order. A
    // server with no accepted recipient answers DATA with 554 (or 503), never 354.
    std::string wire = mail + "\r\n";
    for (auto rcpt : env.recipients) {
      wire += "RCPT TO:<";
      wire += rcpt;
      wire += ">\r\n";
    }
    wire += "DATA\r\n";
    WEBSMTP_TRY(sent, write(wire));
    WEBSMTP_TRY(m, read());
    mail_reply = std::move(*m);
    if (mail_reply.code == 0) return broken("MAIL FROM: no valid SMTP reply: " + mail_reply.text);
    state_ = SessionState::kRcpt;
    for (std::size_t i = 0; i < env.recipients.size(); ++i) {
      WEBSMTP_TRY(r, read());
      replies[i] = Reply{r->code, r->text, false};
      replies[i].rcpt_reply = true;
    }
    state_ = SessionState::kData;
    WEBSMTP_TRY(d, read());
    data_reply = std::move(*d);
  } else {
    WEBSMTP_TRY(m, command(mail));
    mail_reply = std::move(*m);
    if (mail_reply.code == 0) return broken("MAIL FROM: no valid SMTP reply: " + mail_reply.text);
    if (is_2xx(mail_reply.code)) {
      state_ = SessionState::kRcpt;
      for (std::size_t i = 0; i < env.recipients.size() && !peer_closing_; ++i) {
        WEBSMTP_TRY(r, command("RCPT TO:<" + std::string(env.recipients[i]) + ">"));
        replies[i] = Reply{r->code, r->text, false};
        replies[i].rcpt_reply = true;
      }
    }
  }
  if (data_reply && data_reply->code == 354 && (!is_2xx(mail_reply.code) || !accepted())) {
    // A non-conforming peer opened DATA with nobody to deliver to: send nothing.
    WEBSMTP_TRY(sent, write(".\r\n"));
    WEBSMTP_TRY(ignored, read());
  }
  if (!is_2xx(mail_reply.code)) {
    // The sender was refused: that reply is every recipient's answer.
    for (auto& r : replies) r = Reply{mail_reply.code, "MAIL FROM: " + mail_reply.text, false};
    if (peer_closing_) close();
    return {};
  }
  if (peer_closing_) {
    // A 421 to a RCPT: the peer is gone; those it had accepted, or never answered, wait.
    for (auto& r : replies)
      if (r.code == 0 || is_2xx(r.code)) r = Reply{421, "RCPT TO: the relay closed the session", false};
    close();
    return {};
  }
  for (auto& r : replies)
    if (r.code == 0) return broken("RCPT TO: no valid SMTP reply: " + r.text);
  if (!accepted()) return {};  // refused in kRcpt: RSET before the next transaction

  state_ = SessionState::kData;
  if (!data_reply) {
    WEBSMTP_TRY(d, command("DATA"));
    data_reply = std::move(*d);
  }
  if (data_reply->code != 354) {
    if (data_reply->code == 0) return broken("DATA: no valid SMTP reply: " + data_reply->text);
    for (auto& r : replies)
      if (is_2xx(r.code)) r = Reply{data_reply->code, "DATA: " + data_reply->text, false};
    if (peer_closing_) close();
    return {};
  }
  wire_.clear();
  append_dot_stuffed(wire_, message);
  if (env.before_data) env.before_data();
  WEBSMTP_TRY(sent, write(wire_));
  state_ = SessionState::kDot;  // the final dot is out: from here a lost reply leaves the outcome unknown
  WEBSMTP_TRY(final_reply, read());
  if (final_reply->code == 0) return broken("no valid reply to the end of DATA: " + final_reply->text);
  for (auto& r : replies)
    if (is_2xx(r.code)) r = Reply{final_reply->code, final_reply->text, false};
  if (peer_closing_)
    close();
  else if (is_2xx(final_reply->code))
    state_ = SessionState::kReady;
  return {};
}

#undef WEBSMTP_TRY

std::optional<std::string> mail_from_command(std::string_view sender, std::string_view message,
                                             const Capabilities& peer, bool utf8) {
  std::string mail = "MAIL FROM:<" + std::string(sender) + ">";
  const bool smtputf8 = utf8 && peer.has("SMTPUTF8");
  if (has_non_ascii(message)) {
    if (peer.has("8BITMIME"))
      mail += " BODY=8BITMIME";
    else if (!smtputf8)
      return std::nullopt;
  }
  if (smtputf8) mail += " SMTPUTF8";
  return mail;
}

bool transaction_needs_smtputf8(const Envelope& env, std::string_view message) {
  if (has_non_ascii(env.sender)) return true;
  if (std::any_of(env.recipients.begin(), env.recipients.end(), [](std::string_view r) { return has_non_ascii(r); }))
    return true;
  return header_needs_smtputf8(message);
}

bool header_needs_smtputf8(std::string_view message) { return has_non_ascii(message.substr(0, message.find("\r\n\r\n"))); }

void append_dot_stuffed(std::string& out, std::string_view message) {
  out.reserve(out.size() + message.size() + message.size() / 64 + 8);
  bool line_start = true;
  for (char c : message) {
    if (line_start && c == '.') out.push_back('.');
    out.push_back(c);
    line_start = (c == '\n');
  }
  if (!message.empty() && !line_start) out += "\r\n";
  out += ".\r\n";
}

}  // namespace websmtp::smtp
