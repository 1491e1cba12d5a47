// How the descriptor limit is shared out between client connections and everything else.
#include "http/descriptors.hpp"

#include <gtest/gtest.h>

using namespace websmtp::daemon::http;

TEST(Descriptors, MaxConnectionsFitsAGenerousLimit) {
  DescriptorPlan p = plan_descriptors(65536, 10000, 40, 4, 2);
  EXPECT_EQ(p.public_connections, 10000u);
  EXPECT_FALSE(p.lowered);
  EXPECT_EQ(p.admin_connections, kAdminConnections);
}

TEST(Descriptors, ALowLimitLowersTheCapAndKeepsTheReserve) {
  DescriptorPlan p = plan_descriptors(1024, 10000, 40, 4, 2);
  EXPECT_TRUE(p.lowered);
  EXPECT_GT(p.public_connections, 0u);
  EXPECT_EQ(p.public_connections + p.admin_connections + p.reserve, 1024u);
  EXPECT_GE(p.reserve, 40u + 4u);  // what is open, and the delivery threads' sockets
}

TEST(Descriptors, ALimitWithNoRoomForClientsIsRefused) {
  EXPECT_EQ(plan_descriptors(150, 10000, 40, 4, 2).public_connections, 0u);
  EXPECT_EQ(plan_descriptors(0, 10000, 40, 4, 2).public_connections, 0u);
  // A small MAX_CONNECTIONS that fits is kept as asked.
  EXPECT_EQ(plan_descriptors(65536, 3, 40, 4, 2).public_connections, 3u);
}

TEST(Descriptors, TheLimitIsRaisedToTheHardLimit) {
  DescriptorLimit l = raise_descriptor_limit();
  EXPECT_GE(l.now, l.before);
  EXPECT_GT(open_descriptors(), 2u);  // stdin, stdout, stderr at least
}
