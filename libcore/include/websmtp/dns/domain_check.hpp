#pragma once
// The sending-domain check behind `websmtpctl domain check` (GET /admin/domains/:domain/check):
// whether mail from a domain, sent by this gateway, passes receivers' checks. It looks up the
// domain's SPF record and evaluates it for the gateway's outbound address, each DKIM selector
// the gateway holds a key for (the TXT against the key), DMARC and MX, and says for each what
// to publish. DNS goes through a DnsClient (uncached: an operator who just published a record
// wants it read now), so everything but outbound_address() runs against a fake DNS in tests.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "websmtp/smtp/resolver.hpp"

namespace websmtp::dns {

// A DKIM key the gateway holds for the domain.
struct HeldDkimKey {
  std::string selector;
  std::string algorithm;          // the k= value: "rsa" or "ed25519"
  std::string public_key_base64;  // the p= value it needs
  std::string dns_record;         // the whole TXT value to publish ("v=DKIM1; k=rsa; p=...")
};

struct DomainCheckOptions {
  std::string outbound_ip;         // the address receivers see; empty: unknown
  std::string outbound_ip_source;  // "OUTBOUND_IP", "route" or "unknown", reported as is
  std::string helo;                // for SPF's %{h}
  std::vector<HeldDkimKey> dkim_keys;
};

// The report: {"domain", "ok", "outbound_ip", "outbound_ip_source", "spf", "dkim", "dmarc",
// "mx", "problems"}; each record {"found", "valid", "value", "result"/"details", "publish"}.
// `domain` must be a lower-case A-label name (see is_checkable_domain).
nlohmann::json check_domain(smtp::DnsClient& dns, const std::string& domain, const DomainCheckOptions& options);

// A multi-label DNS name of letters, digits and hyphens (IDNs as A-labels); what the admin
// route accepts.
bool is_checkable_domain(std::string_view domain);

// RFC 6376 3.2 tag=value lists (DKIM key records, DMARC records): tags in order; nullopt when
// the list is malformed or names a tag twice. Whitespace around tags and values is dropped.
std::optional<std::vector<std::pair<std::string, std::string>>> parse_tag_list(std::string_view text);

// The local address a UDP socket connect()ed to host:port would send from (connecting a UDP
// socket sends nothing); nullopt when there is no route (or the host does not resolve).
std::optional<std::string> outbound_address(const std::string& host, int port);
// The same towards the public Internet (IPv4, else IPv6).
std::optional<std::string> outbound_address_to_internet();

}  // namespace websmtp::dns
