// BODY=8BITMIME (RFC 6152) and SMTPUTF8 (RFC 6531): the MAIL FROM parameters are chosen from the
// message, the envelope and the peer's EHLO, and a Session sends them (or nothing at all) to a
// real socket peer on 127.0.0.1.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "websmtp/smtp/session.hpp"

using namespace websmtp::smtp;
using std::chrono::milliseconds;

namespace {

Capabilities offering(std::vector<std::string> keywords) {
  std::vector<std::string> lines{"peer.test"};
  for (auto& k : keywords) lines.push_back(std::move(k));
  return Capabilities::from_ehlo(lines);
}

const std::string kSevenBit = "Subject: plain\r\n\r\nhello\r\n";
const std::string kEightBit = "Subject: raw\r\nContent-Transfer-Encoding: 8bit\r\n\r\ngr\xC3\xBC\xC3\x9F dich\r\n";

// An SMTP peer on 127.0.0.1:<ephemeral> for one connection, in a thread: it offers the given
// EHLO keywords, accepts everything and records the command lines it was sent. Every wait is
// bounded, so a client that misbehaves fails the test instead of hanging it.
class ScriptedPeer {
 public:
  explicit ScriptedPeer(std::vector<std::string> keywords) : keywords_(std::move(keywords)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (listener_ < 0 || ::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listener_, 1) != 0 || ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "cannot listen on 127.0.0.1";
      return;
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~ScriptedPeer() {
    if (thread_.joinable()) thread_.join();
    if (listener_ >= 0) ::close(listener_);
  }
  ScriptedPeer(const ScriptedPeer&) = delete;
  ScriptedPeer& operator=(const ScriptedPeer&) = delete;

  std::uint16_t port() const { return port_; }
  // Call after the session is closed (the destructor joins; so does finish()).
  void finish() {
    if (thread_.joinable()) thread_.join();
  }
  std::vector<std::string> commands() const {
    std::lock_guard lock(mutex_);
    return commands_;
  }
  std::string data() const {
    std::lock_guard lock(mutex_);
    return data_;
  }

 private:
  static constexpr int kWaitMs = 10'000;

  bool readable(int fd) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, kWaitMs) == 1;
  }

  // The next CRLF-terminated line, without its CRLF; false on EOF or timeout.
  bool read_line(int fd, std::string& line) {
    while (true) {
      const auto end = buffer_.find("\r\n");
      if (end != std::string::npos) {
        line = buffer_.substr(0, end);
        buffer_.erase(0, end + 2);
        return true;
      }
      if (!readable(fd)) return false;
      char chunk[4096];
      const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n <= 0) return false;
      buffer_.append(chunk, static_cast<std::size_t>(n));
    }
  }

  static void say(int fd, const std::string& text) {
    std::size_t sent = 0;
    while (sent < text.size()) {
      const ssize_t n = ::send(fd, text.data() + sent, text.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return;
      sent += static_cast<std::size_t>(n);
    }
  }

  void serve() {
    if (!readable(listener_)) return;
    const int fd = ::accept(listener_, nullptr, nullptr);
    if (fd < 0) return;
    say(fd, "220 peer.test ESMTP\r\n");
    std::string line;
    while (read_line(fd, line)) {
      {
        std::lock_guard lock(mutex_);
        commands_.push_back(line);
      }
      const std::string verb = line.substr(0, 4);
      if (verb == "EHLO") {
        std::string reply = "250-peer.test\r\n";
        for (const auto& k : keywords_) reply += "250-" + k + "\r\n";
        say(fd, reply + "250 HELP\r\n");
      } else if (verb == "DATA") {
        say(fd, "354 go ahead\r\n");
        std::string content;
        while (read_line(fd, line) && line != ".") content += line + "\r\n";
        {
          std::lock_guard lock(mutex_);
          data_ = content;
        }
        say(fd, "250 2.0.0 queued\r\n");
      } else if (verb == "QUIT") {
        say(fd, "221 bye\r\n");
        break;
      } else {
        say(fd, "250 ok\r\n");
      }
    }
    ::close(fd);
  }

  std::vector<std::string> keywords_;
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::thread thread_;
  std::string buffer_;  // the serving thread's only
  mutable std::mutex mutex_;
  std::vector<std::string> commands_;
  std::string data_;
};

struct Sent {
  Status status;
  std::vector<Reply> replies;
  std::vector<std::string> commands;
  std::string data;
};

Sent send_through(std::vector<std::string> keywords, const std::string& message,
                  std::vector<std::string_view> recipients = {"bob@example.net"},
                  std::string_view sender = "alice@example.org") {
  ScriptedPeer peer(std::move(keywords));
  SessionOptions options;
  options.timeouts = Timeouts{milliseconds(5'000), milliseconds(5'000), milliseconds(5'000), milliseconds(5'000)};
  Session session(options);
  Sent out;
  out.status = session.open(SessionKey{"127.0.0.1", peer.port(), TlsMode::kNone});
  if (out.status) {
    Envelope env;
    env.ref = "test";
    env.sender = sender;
    env.recipients = std::move(recipients);
    out.status = session.send(env, message, out.replies);
    EXPECT_EQ(session.state(), SessionState::kReady) << "either way the session is ready for the next job";
  }
  session.quit();
  peer.finish();
  out.commands = peer.commands();
  out.data = peer.data();
  return out;
}

bool has_command_starting(const std::vector<std::string>& commands, std::string_view prefix) {
  for (const auto& c : commands)
    if (c.starts_with(prefix)) return true;
  return false;
}

}  // namespace

TEST(MailFromCommand, SevenBitMessagesNeedNoBodyParameter) {
  EXPECT_EQ(mail_from_command("a@b.cc", kSevenBit, offering({"8BITMIME"})), "MAIL FROM:<a@b.cc>");
  EXPECT_EQ(mail_from_command("a@b.cc", kSevenBit, offering({})), "MAIL FROM:<a@b.cc>");
  EXPECT_EQ(mail_from_command("", kSevenBit, Capabilities()), "MAIL FROM:<>") << "the null sender too";
}

TEST(MailFromCommand, EightBitMessagesDeclareThemselvesWhereOffered) {
  EXPECT_EQ(mail_from_command("a@b.cc", kEightBit, offering({"PIPELINING", "8bitmime"})),
            "MAIL FROM:<a@b.cc> BODY=8BITMIME");
  const std::string last_byte_only = kSevenBit + "\xFF";
  EXPECT_EQ(mail_from_command("a@b.cc", last_byte_only, offering({"8BITMIME"})), "MAIL FROM:<a@b.cc> BODY=8BITMIME");
}

TEST(MailFromCommand, EightBitMessagesAreNeverSentToAPeerWithout8BitMime) {
  EXPECT_EQ(mail_from_command("a@b.cc", kEightBit, offering({"PIPELINING", "SMTPUTF8"})), std::nullopt);
  EXPECT_EQ(mail_from_command("a@b.cc", kEightBit, Capabilities()), std::nullopt) << "a HELO-only peer";
}

TEST(Session8BitMime, SendsBody8BitMimeToAPeerThatOffersIt) {
  const Sent s = send_through({"8BITMIME", "SIZE 1000000"}, kEightBit);
  ASSERT_TRUE(s.status) << s.status.error().reason;
  ASSERT_EQ(s.replies.size(), 1u);
  EXPECT_EQ(s.replies[0].code, 250);
  EXPECT_TRUE(has_command_starting(s.commands, "MAIL FROM:<alice@example.org> BODY=8BITMIME"));
  EXPECT_EQ(s.data, kEightBit) << "the 8-bit bytes arrive unchanged";
}

TEST(Session8BitMime, SendsSevenBitMessagesWithoutABodyParameter) {
  const Sent s = send_through({"8BITMIME"}, kSevenBit);
  ASSERT_TRUE(s.status) << s.status.error().reason;
  EXPECT_EQ(s.replies.at(0).code, 250);
  EXPECT_TRUE(has_command_starting(s.commands, "MAIL FROM:<alice@example.org>"));
  for (const auto& c : s.commands) EXPECT_EQ(c.find("BODY="), std::string::npos) << c;
  EXPECT_EQ(s.data, kSevenBit);
}

TEST(Session8BitMime, RefusesToSendEightBitToAPeerWithoutIt) {
  const Sent s = send_through({"PIPELINING"}, kEightBit);
  ASSERT_TRUE(s.status) << s.status.error().reason;
  ASSERT_EQ(s.replies.size(), 1u);
  EXPECT_EQ(s.replies[0].code, 554);
  EXPECT_NE(s.replies[0].text.find("8BITMIME"), std::string::npos) << s.replies[0].text;
  EXPECT_FALSE(has_command_starting(s.commands, "MAIL")) << "no transaction is even started";
  EXPECT_FALSE(has_command_starting(s.commands, "DATA"));
  EXPECT_TRUE(s.data.empty());
}

const std::string kUtf8Header = "To: j\xC3\xBCrgen@example.de\r\nSubject: x\r\n\r\nhello\r\n";

TEST(MailFromCommand, Smtputf8OnlyWhenTheTransactionNeedsItAndThePeerOffersIt) {
  EXPECT_EQ(mail_from_command("a@b.cc", kSevenBit, offering({"8BITMIME", "SMTPUTF8"}), true),
            "MAIL FROM:<a@b.cc> SMTPUTF8");
  EXPECT_EQ(mail_from_command("a@b.cc", kUtf8Header, offering({"8BITMIME", "SMTPUTF8"}), true),
            "MAIL FROM:<a@b.cc> BODY=8BITMIME SMTPUTF8");
  EXPECT_EQ(mail_from_command("a@b.cc", kUtf8Header, offering({"SMTPUTF8"}), true), "MAIL FROM:<a@b.cc> SMTPUTF8")
      << "a peer that offers SMTPUTF8 takes 8-bit data (RFC 6531 3.1)";
  EXPECT_EQ(mail_from_command("a@b.cc", kSevenBit, offering({"8BITMIME", "SMTPUTF8"}), false), "MAIL FROM:<a@b.cc>");
  EXPECT_EQ(mail_from_command("a@b.cc", kSevenBit, offering({"8BITMIME"}), true), "MAIL FROM:<a@b.cc>");
}

TEST(MailFromCommand, ATransactionNeedsSmtputf8ForAUtf8AddressOrHeader) {
  Envelope env;
  env.sender = "alice@example.org";
  env.recipients = {"bob@example.net"};
  EXPECT_FALSE(transaction_needs_smtputf8(env, kEightBit)) << "8-bit body text alone is 8BITMIME's business";
  EXPECT_TRUE(transaction_needs_smtputf8(env, kUtf8Header));
  env.recipients.push_back("j\xC3\xBCrgen@example.de");
  EXPECT_TRUE(transaction_needs_smtputf8(env, kSevenBit));
  env.recipients = {"bob@example.net"};
  env.sender = "\xC3\xA9lise@example.org";
  EXPECT_TRUE(transaction_needs_smtputf8(env, kSevenBit));
}

TEST(SessionSmtputf8, SendsAUtf8RecipientWithSmtputf8ToAPeerThatOffersIt) {
  const Sent s = send_through({"8BITMIME", "SMTPUTF8"}, kUtf8Header, {"j\xC3\xBCrgen@example.de", "bob@example.net"});
  ASSERT_TRUE(s.status) << s.status.error().reason;
  ASSERT_EQ(s.replies.size(), 2u);
  EXPECT_EQ(s.replies[0].code, 250);
  EXPECT_EQ(s.replies[1].code, 250);
  EXPECT_TRUE(has_command_starting(s.commands, "MAIL FROM:<alice@example.org> BODY=8BITMIME SMTPUTF8"));
  EXPECT_TRUE(has_command_starting(s.commands, "RCPT TO:<j\xC3\xBCrgen@example.de>"));
  EXPECT_EQ(s.data, kUtf8Header);
}

TEST(SessionSmtputf8, FailsOnlyTheUtf8RecipientUnsentWhenThePeerDoesNotOfferIt) {
  // The UTF-8 address is in the envelope only (a Bcc): the header section is ASCII.
  const Sent s = send_through({"8BITMIME"}, kEightBit, {"j\xC3\xBCrgen@example.de", "bob@example.net"});
  ASSERT_TRUE(s.status) << s.status.error().reason;
  ASSERT_EQ(s.replies.size(), 2u);
  EXPECT_TRUE(s.replies[0].permanent);
  EXPECT_EQ(s.replies[0].reason, kSmtputf8Required);
  EXPECT_EQ(s.replies[0].code, 0) << "no peer's reply: it was never sent";
  EXPECT_EQ(s.replies[1].code, 250) << "the ASCII recipient still goes";
  EXPECT_FALSE(s.replies[1].permanent);
  EXPECT_FALSE(has_command_starting(s.commands, "RCPT TO:<j\xC3\xBC"));
  EXPECT_TRUE(has_command_starting(s.commands, "MAIL FROM:<alice@example.org> BODY=8BITMIME"));
  for (const auto& c : s.commands) EXPECT_EQ(c.find("SMTPUTF8"), std::string::npos) << c;
}

TEST(SessionSmtputf8, AUtf8HeaderFailsEveryRecipientUnsentWithoutSmtputf8) {
  const Sent s = send_through({"8BITMIME", "PIPELINING"}, kUtf8Header, {"j\xC3\xBCrgen@example.de", "bob@example.net"});
  ASSERT_TRUE(s.status) << s.status.error().reason;
  ASSERT_EQ(s.replies.size(), 2u);
  for (const auto& r : s.replies) {
    EXPECT_EQ(r.reason, kSmtputf8Required);
    EXPECT_TRUE(r.permanent);
    EXPECT_NE(r.text.find("headers"), std::string::npos) << r.text;
  }
  EXPECT_FALSE(has_command_starting(s.commands, "MAIL")) << "the ASCII recipient does not go either";
  EXPECT_TRUE(s.data.empty());
  EXPECT_TRUE(header_needs_smtputf8(kUtf8Header));
  EXPECT_FALSE(header_needs_smtputf8(kEightBit)) << "8-bit body text alone is 8BITMIME's business";
}

TEST(SessionSmtputf8, AUtf8SenderFailsEveryRecipientUnsentWithoutSmtputf8) {
  const Sent s =
      send_through({"8BITMIME"}, kSevenBit, {"bob@example.net", "carol@example.net"}, "\xC3\xA9lise@example.org");
  ASSERT_TRUE(s.status) << s.status.error().reason;
  ASSERT_EQ(s.replies.size(), 2u);
  for (const auto& r : s.replies) EXPECT_EQ(r.reason, kSmtputf8Required);
  EXPECT_FALSE(has_command_starting(s.commands, "MAIL")) << "no transaction is even started";
}

TEST(SessionSmtputf8, AFailureLaterNeverOverwritesAnUnsentRecipient) {
  std::vector<Reply> replies(2);
  replies[0].permanent = true;
  replies[0].reason = kSmtputf8Required;
  apply_failure(replies, Failure{SessionState::kDot, 0, "connection reset"});
  EXPECT_EQ(replies[0].reason, kSmtputf8Required);
  EXPECT_TRUE(replies[0].text.empty());
  EXPECT_EQ(replies[1].text, "connection reset");
}
