#pragma once
// The SMTP envelope of a validated request. Pure: no I/O.
#include <string>
#include <string_view>
#include <vector>

#include "websmtp/job/model.hpp"

namespace websmtp::job {

// True when two addr-specs name one mailbox as far as the gateway can tell: the same local
// part (byte for byte: RFC 5321 2.4 leaves its case to the receiving host) and the same domain
// compared without ASCII case (domains are case-insensitive), an internationalised one by its
// A-labels ("bücher.example", "BÜCHER.example" and "xn--bcher-kva.example" are one domain).
bool same_mailbox(std::string_view a, std::string_view b);

// One recipient per distinct mailbox, in to, cc, bcc order: an address listed several times
// gets one RCPT and one status entry, the first occurrence kept (its spelling and its kind, so
// an address in both to and bcc is a "to" recipient). Headers are not this function's business:
// they show to and cc as the client wrote them.
std::vector<Recipient> envelope_recipients(const MailRequest& req);

}  // namespace websmtp::job
