#pragma once
// Renders a validated MailRequest as an RFC 5322 / MIME message. Pure: it does no I/O (apart
// from seeding a thread-local random engine once), so the submit path can render a job once and
// every delivery attempt sends the same bytes.
#include <cstdint>
#include <string>
#include <string_view>

#include "websmtp/job/model.hpp"

namespace websmtp::message {

struct BuildOptions {
  std::string message_id_domain;  // domain for Message-ID; empty => the From address's domain (A-labels)
  std::int64_t date_unix = 0;     // Date header (Unix seconds, rendered in UTC "+0000")
  std::string message_id;         // full "<...>" value to use; empty => generate a random one
};

// The complete message: headers, a blank line, the body. CRLF line ends, no line reaches 998
// octets whatever the input, and NOT dot-stuffed (that is the SMTP transport's job).
// Header order: Date, From, To (if any), Cc (if any), Reply-To (if set), Subject, Message-ID,
// MIME-Version, the custom headers, then Content-Type / Content-Transfer-Encoding.
// Bcc recipients are never written. Custom headers for which is_reserved_header() holds are
// dropped: the caller's validation rejects them already, and a second Content-Type or a Bcc
// header would corrupt the message or leak recipients.
//
// Body structure, each multipart level present only when it holds more than one part:
//   multipart/mixed                       (when there are regular attachments)
//     multipart/alternative               (when there are both body and html)
//       text/plain                        (body)
//       multipart/related; type="text/html"  (when there are inline parts)
//         text/html                       (html)
//         <inline part>...                (attachments with a content_id, in request order)
//     <attachment>...                     (attachments without one, in request order)
// An inline part has `Content-Disposition: inline` and `Content-ID: <content_id>`, which the html
// names as "cid:content_id". Inline parts need html: validation refuses a content_id in a job
// without html (nothing would show the part, and mail clients would list it as an unnamed
// attachment or hide it); should one reach here anyway it is sent as a regular attachment.
// Text parts are 7bit or quoted-printable and attachments base64, so the message is 7-bit
// ASCII whatever the input and needs no 8BITMIME from the peer.
// Attachment names: Content-Disposition `filename` is quoted when it is printable ASCII that
// fits a line, else RFC 2231 (`filename*=UTF-8''...`, with `filename*0*=`, `filename*1*=`, ...
// continuations for long names); Content-Type `name` carries the same name for clients that
// predate RFC 2231, quoted or as RFC 2047 encoded-words inside the quotes.
std::string build_message(const job::MailRequest& req, const BuildOptions& opts);

// True for the headers a client may not set in "headers" (case-insensitive): those the gateway
// writes (Date, From, To, Cc, Reply-To, Subject, Message-ID, MIME-Version, every Content-*),
// the envelope's (Bcc, Sender, Return-Path). Validation and building share this one list.
bool is_reserved_header(std::string_view name);

// RFC 2047 encoded-words ("=?UTF-8?B?...?=", each at most 75 characters, split only on UTF-8
// character boundaries, separated by single spaces) when the text is not plain printable ASCII;
// otherwise the text unchanged. ASCII text containing "=?" is encoded too, so that no decoder
// can mistake it for an encoded-word.
std::string encode_word(std::string_view utf8);

// "addr", or "Display <addr>" with the display name quoted per RFC 5322 when it holds specials
// (or leading, trailing or doubled spaces), RFC 2047 encoded when it is not printable ASCII.
// An internationalised domain is written in A-labels (common/idn.hpp), so the header stays
// ASCII for a peer without SMTPUTF8; unless the local part is UTF-8 (an RFC 6532 header,
// sent only with SMTPUTF8), where the address is written as given.
std::string format_mailbox(const job::Mailbox& m);

// RFC 5322 date-time in UTC, e.g. "Sat, 03 Jan 2026 10:04:05 +0000".
std::string format_date(std::int64_t unix_seconds);

// "<32 lowercase hex chars@domain>" from a thread-local engine seeded by std::random_device.
std::string random_message_id(std::string_view domain);

}  // namespace websmtp::message
