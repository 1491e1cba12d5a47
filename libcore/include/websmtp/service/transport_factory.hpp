#pragma once
// From the configuration to the delivery transport: each worker calls the factory once for
// its own transport.
#include <functional>
#include <memory>

#include "websmtp/config/config.hpp"
#include "websmtp/smtp/transport.hpp"

namespace websmtp::service {

using TransportFactory = std::function<std::unique_ptr<smtp::Transport>()>;

// Builds the transport the configuration asks for (relay or sandbox).
TransportFactory transport_factory(const config::Config& c);

}  // namespace websmtp::service
