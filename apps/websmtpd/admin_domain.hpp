#pragma once
// GET /admin/domains/:domain/check: the sending-domain check (dns/domain_check.hpp) on the
// admin port, for `websmtpctl domain check`.
#include "http/router.hpp"
#include "websmtp/service/gateway.hpp"

namespace websmtp::daemon {

void add_domain_check_route(http::Router& router, service::Gateway& gateway);

}  // namespace websmtp::daemon
