#pragma once
// Internationalised domain names (IDNA2008): the one place that turns a domain written in
// U-labels ("bücher.example") into its A-labels ("xn--bcher-kva.example"). Validation decides
// with it whether a domain is acceptable, the message writer and the delivery path write that
// form into headers and the envelope, and the MX resolver looks it up. Pure: no I/O.
#include <optional>
#include <string>
#include <string_view>

namespace websmtp {

// Whether `text` holds a byte over 0x7F (a U-label domain, a UTF-8 local part).
bool has_non_ascii(std::string_view text);

// Lower case, and the A-label form of an internationalised domain: libidn2's
// idn2_to_ascii_8z with IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT (IDNA2008 with the UTS #46
// non-transitional mapping, so "BÜCHER.example" and "bücher.example" are one domain; what
// libidn2 refuses is refused). nullopt when it cannot be converted (broken UTF-8, a disallowed
// code point, a label too long once encoded, ...); then `why`, when given, says why. The result
// is not checked further: a caller that needs LDH labels checks it (job validation does).
std::optional<std::string> to_ascii_domain(std::string_view domain, std::string* why = nullptr);

// local@domain with the domain in A-labels (to_ascii_domain) and the local part as given.
// An address whose domain is ASCII comes back byte for byte as given (its case kept), so ASCII
// addresses are never rewritten. nullopt when the domain cannot be converted.
std::optional<std::string> to_ascii_address(std::string_view address, std::string* why = nullptr);

// to_ascii_address(address), or the address as given when it cannot be converted (it was
// validated, or it is not ours to judge here).
std::string ascii_domain_address(std::string_view address);

}  // namespace websmtp
