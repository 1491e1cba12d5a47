#pragma once
// The delivery transport the configuration asks for (relay or sandbox), one per worker.
#include <functional>
#include <memory>

#include "websmtp/config/config.hpp"
#include "websmtp/smtp/transport.hpp"

namespace websmtp::service {

using TransportFactory = std::function<std::unique_ptr<smtp::Transport>()>;

TransportFactory transport_factory(const config::Config& c);

}  // namespace websmtp::service
