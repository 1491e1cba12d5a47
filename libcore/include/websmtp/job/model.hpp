#pragma once
// The job model: what a client asked for (MailRequest, after validation) and what the
// gateway tracks per recipient. Pure data; no I/O.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace websmtp::job {

// One RFC 5322 mailbox. `address` is the bare addr-spec (local@domain) used in the SMTP
// envelope; `display_name` is the optional phrase shown in headers (UTF-8, unencoded).
struct Mailbox {
  std::string display_name;
  std::string address;
  bool operator==(const Mailbox&) const = default;
};

struct Attachment {
  std::string filename;      // UTF-8, validated: no CR/LF/NUL, no path separators
  std::string content_type;  // e.g. "application/pdf"; validated type/subtype token
  std::string content;       // decoded bytes
  // Empty: a regular attachment. Otherwise an inline part of the html, which refers to it as
  // "cid:<content_id>"; validated: RFC 5322 msg-id characters without the angle brackets
  // (atext, '.', at most one '@'), at most kMaxContentIdBytes, unique within the job
  // (case-insensitively), and only in a job that has html.
  std::string content_id;
};
inline constexpr std::size_t kMaxContentIdBytes = 128;

struct MailRequest {
  Mailbox from;
  std::vector<Mailbox> to;
  std::vector<Mailbox> cc;
  std::vector<Mailbox> bcc;  // envelope only: never written to a header
  std::optional<Mailbox> reply_to;
  std::string subject;                                       // UTF-8, may be empty
  std::optional<std::string> text;                           // the text/plain part ("body" in JSON)
  std::optional<std::string> html;                           // the text/html part
  std::vector<std::pair<std::string, std::string>> headers;  // validated custom headers
  std::vector<Attachment> attachments;
  std::optional<std::string> callback_url;  // webhook on completion; form checked (webhook/destination.hpp)
};

enum class RecipientKind { kTo, kCc, kBcc };
enum class RecipientState { kQueued, kDelivered, kDeferred, kFailed };

struct Recipient {
  std::string address;
  RecipientKind kind = RecipientKind::kTo;
  RecipientState state = RecipientState::kQueued;
  int attempts = 0;
  int smtp_code = 0;
  std::string smtp_reply;
  std::int64_t time = 0;          // Unix seconds of the last state change (0: none yet)
  std::int64_t next_attempt = 0;  // Unix seconds; meaningful while deferred
  std::string reason;             // why it failed: rejected, expired, cancelled, ...
  bool possible_duplicate = false;
  std::string host;  // the SMTP host that answered the last attempt (relay or MX); empty: none
  bool tls = false;  // whether that attempt's session was encrypted
};

bool is_final(RecipientState s);
const char* to_string(RecipientState s);
const char* to_string(RecipientKind k);
std::optional<RecipientState> recipient_state_from(std::string_view s);
std::optional<RecipientKind> recipient_kind_from(std::string_view s);

// A job as the store and the delivery path see it. The message is rendered once, at
// submit time, so every attempt sends the same bytes (same Message-ID, same Date).
struct Job {
  std::int64_t seq = 0;  // store order (assigned on insert)
  std::string ref;       // public UUID
  std::string sender;    // envelope MAIL FROM (bare address)
  std::string message;   // rendered RFC 5322 message, CRLF line ends, not dot-stuffed
  std::vector<Recipient> recipients;
  std::int64_t submitted = 0;  // Unix seconds
  std::int64_t completed = 0;  // Unix seconds, 0 while any recipient is pending
  bool started = false;        // at least one delivery attempt was made
  std::string idempotency_key;
  std::string request_hash;
  std::string submitted_by;  // the caller's identity ("key:<id>", "sub:<subject>"); empty: anonymous
  // Not stored as such: a shared store (PostgreSQL) hands a job over from a node that died or
  // lost its claim while the message was on the wire; the peer may have it already.
  bool interrupted_on_wire = false;
  std::string callback_url;  // where the job.completed webhook goes; empty: none (stored at insert only)
};

// The seed's job status words: "not started", "processing", "completed".
const char* job_status(const Job& job);
bool all_final(const Job& job);

}  // namespace websmtp::job
