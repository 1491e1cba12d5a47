#pragma once
// One SMTP client session (RFC 5321) as explicit states, each with its timeout. It is told
// where to connect and how (a SessionKey) and does one step at a time: open (greeting,
// EHLO, STARTTLS, AUTH), a mail transaction, RSET, QUIT. Which host to use and whether a
// session is kept for the next job are decided outside it (relay_transport, session_reuse).
#include <chrono>
#include <compare>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <tl/expected.hpp>

#include "websmtp/smtp/capabilities.hpp"
#include "websmtp/smtp/reply.hpp"
#include "websmtp/smtp/reply_reader.hpp"
#include "websmtp/smtp/tls.hpp"
#include "websmtp/smtp/transport.hpp"

namespace websmtp::smtp {

// What the session is doing: each state but kReady, kDisconnected and kBroken waits for the
// peer. A transaction refused part-way leaves the session in the state it was refused in
// (kMail .. kDot), which then needs RSET before the next one.
enum class SessionState {
  kDisconnected,  // no connection (not yet, or closed cleanly)
  kConnect,       // TCP connect (and the handshake of implicit TLS)
  kGreeting,      // waiting for the 220 greeting
  kEhlo,          // EHLO (HELO for a pre-ESMTP peer)
  kStartTls,      // STARTTLS and the TLS handshake
  kAuth,          // AUTH PLAIN or LOGIN
  kReady,         // idle, ready for a transaction
  kMail,          // MAIL FROM
  kRcpt,          // RCPT TO
  kData,          // DATA and the message content
  kDot,           // the final dot is out, waiting for the reply that says what became of the message
  kRset,          // RSET
  kQuit,          // QUIT
  kBroken,        // the connection failed (timeout, reset, garbage) and was closed
};
const char* to_string(SessionState s);

struct Timeouts {
  std::chrono::milliseconds connect{30'000};    // SMTP_CONNECT_TIMEOUT
  std::chrono::milliseconds command{300'000};   // SMTP_COMMAND_TIMEOUT: greeting, each command
  std::chrono::milliseconds data_ack{300'000};  // the 354 to DATA, and writing the message
  std::chrono::milliseconds dot{600'000};       // SMTP_DATA_TIMEOUT: the reply to the final dot
};
// The per-state timeout table: how long the step a state names may wait for the peer (zero
// for the states that wait for nothing). QUIT waits at most kQuitTimeout: the outcome is
// known by then, so a silent peer must not hold the worker.
constexpr std::chrono::milliseconds kQuitTimeout{5'000};
std::chrono::milliseconds timeout_for(SessionState s, const Timeouts& t);

// Where a session goes: sessions are kept and reused per key.
struct SessionKey {
  std::string host;
  std::uint16_t port = 25;
  TlsMode tls = TlsMode::kOpportunistic;
  friend auto operator<=>(const SessionKey&, const SessionKey&) = default;
};

struct SessionOptions {
  std::string helo;  // EHLO name; "localhost" when empty
  std::string user;  // AUTH when set
  std::string password;
  bool verify_tls = true;
  // Under TlsMode::kOpportunistic, what a STARTTLS the peer refuses (4xx/5xx) does: false
  // (the relay's way) goes on in plaintext on the same connection; true fails the open in
  // kStartTls, as a broken handshake does, so that the caller retries the host in plaintext on
  // a new connection (Postfix's "may" level; direct MX delivery).
  bool starttls_refusal_fails = false;
  Timeouts timeouts;
};

// Why a step did not succeed.
struct Failure {
  SessionState state = SessionState::kBroken;  // the step that failed (kAuth: the login was refused)
  // The peer's reply code when its reply ended the step; 421 when the peer had announced
  // that it was closing before the connection failed; else 0 (no valid reply at all).
  int code = 0;
  std::string reason;  // for logs and the recipients' status, e.g. "greeting: 554 go away"
};
using Status = tl::expected<void, Failure>;

// What a failed step means for the recipients the peer has not answered (code below 400, and
// not already failed for good without being sent, such as smtputf8_required):
// the failure's code when it is a 4xx, else none (code 0), with the failure's reason; once
// the final dot is out, an accepted recipient's outcome is unknown (uncertain). A refused
// AUTH is the relay's own answer, code and text, for every recipient, as a soft bounce.
void apply_failure(std::vector<Reply>& replies, const Failure& f);

class Session {
 public:
  explicit Session(SessionOptions options);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Connects to `key` and makes the session ready for mail: greeting, EHLO, STARTTLS as
  // key.tls asks, AUTH when a user is set. Closes whatever was open before.
  Status open(const SessionKey& key);
  // One mail transaction (MAIL, RCPTs, DATA; pipelined when offered): `replies` gets the
  // peer's answer for each recipient. Success means the peer answered in order: kReady when
  // the message was accepted; still in a transaction state when the peer refused part-way;
  // kDisconnected when the peer said 421 (closing). A failure is a broken connection.
  // A recipient with a UTF-8 address (every recipient, when the sender has one or the header
  // section holds raw UTF-8) is never sent to a peer that does not offer SMTPUTF8: its reply is
  // permanent with reason
  // kSmtputf8Required, and the others go without it (RFC 6531 3.4).
  Status send(const Envelope& env, std::string_view message, std::vector<Reply>& replies);
  // RSET: from a refused transaction back to kReady.
  Status reset();
  // Ends the session: QUIT (its reply awaited briefly) when the session can still talk, then
  // closes. A session that failed is never kept: the next job opens a new one.
  void quit();
  // Closes the connection without a word.
  void close();

  SessionState state() const { return state_; }
  const Capabilities& capabilities() const { return capabilities_; }
  bool tls() const;
  // Complete replies read since the session was made (the caller compares counts).
  std::uint64_t replies_read() const { return replies_read_; }

 private:
  Status greet(const SessionKey& key);
  Status ehlo();
  Status start_tls();
  Status authenticate();
  Status transact(const Envelope& env, std::string_view message, std::vector<Reply>& replies);
  IoResult<Response> command(std::string_view line);
  IoResult<Response> read();
  IoResult<void> write(std::string_view bytes);
  std::chrono::milliseconds timeout() const { return timeout_for(state_, options_.timeouts); }
  tl::unexpected<Failure> broken(std::string reason);
  tl::unexpected<Failure> refused(std::string_view step, const Response& r);

  SessionOptions options_;
  SessionState state_ = SessionState::kDisconnected;
  std::unique_ptr<Connection> connection_;
  ReplyFramer framer_;
  Capabilities capabilities_;
  bool peer_closing_ = false;  // the peer said 421: it closes the connection
  std::uint64_t replies_read_ = 0;
  std::string wire_;  // reused send buffer
};

// The MAIL FROM command for `message`: with " BODY=8BITMIME" (RFC 6152) when the message holds
// a byte over 0x7F and the peer offers 8BITMIME, plain otherwise. nullopt when the message holds
// such a byte and the peer does not offer 8BITMIME: 8-bit data must then not be sent at all
// (RFC 6152 3 leaves converting it or returning it; a message is rendered, and signed, once, so
// there is nothing to convert it with). build_message() writes 7-bit messages only, so this is
// a guard for messages that come from elsewhere.
//
// With `utf8` (the transaction holds a UTF-8 address or header: transaction_needs_smtputf8) and a
// peer that offers SMTPUTF8, the command also says " SMTPUTF8" (RFC 6531 3.4); such a peer takes
// 8-bit data (RFC 6531 3.1), so it gets the message even when it does not name 8BITMIME.
std::optional<std::string> mail_from_command(std::string_view sender, std::string_view message,
                                             const Capabilities& peer, bool utf8 = false);

// The reason a recipient fails with when it needs SMTPUTF8 and the peer does not offer it.
inline constexpr const char* kSmtputf8Required = "smtputf8_required";
// Whether a transaction needs SMTPUTF8: a UTF-8 sender or recipient, or raw UTF-8 in the header
// section (RFC 6532), as build_message() writes for a UTF-8 address in To or Cc.
bool transaction_needs_smtputf8(const Envelope& env, std::string_view message);
// Whether the message's header section holds raw UTF-8 (RFC 6532): then the whole transaction
// needs SMTPUTF8, whichever recipients it has.
bool header_needs_smtputf8(std::string_view message);

// Dot-stuffs the message and appends the terminating ".\r\n" (RFC 5321 4.5.2).
void append_dot_stuffed(std::string& out, std::string_view message);

}  // namespace websmtp::smtp
