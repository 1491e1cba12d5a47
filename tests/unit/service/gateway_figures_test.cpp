// gateway_figures(): the sums GET /admin/queue shows on a shared store, from every node's row.
#include <gtest/gtest.h>

#include "websmtp/service/metrics.hpp"

using websmtp::service::gateway_figures;
using websmtp::service::kNodeLiveWindowMs;
using websmtp::store::NodeFigures;

namespace {

NodeFigures row(std::string id, std::int64_t age_ms, std::int64_t submitted, std::int64_t delivered, int workers) {
  NodeFigures f;
  f.node_id = std::move(id);
  f.age_ms = age_ms;
  f.submitted = submitted;
  f.delivered = delivered;
  f.failed = 1;
  f.workers = workers;
  f.workers_busy = 1;
  f.in_flight = 2;
  f.in_flight_first = 1;
  return f;
}

}  // namespace

TEST(GatewayFigures, TotalsOverEveryRowWorkersOverLiveNodesOnly) {
  auto dead = row("b", kNodeLiveWindowMs + 1, 30, 25, 4);
  auto stopped = row("c", 0, 5, 5, 4);
  stopped.stopped_ms = 1000;
  auto self = row("a", 0, 10, 9, 4);
  auto g = gateway_figures({row("a", 500, 7, 7, 4), dead, stopped, row("d", kNodeLiveWindowMs, 1, 1, 2)}, self);
  EXPECT_EQ(g.submitted, 10 + 30 + 5 + 1);
  EXPECT_EQ(g.delivered, 9 + 25 + 5 + 1);
  EXPECT_EQ(g.failed, 4);
  EXPECT_EQ(g.workers, 4 + 2);  // a (self) and d (just inside the window)
  EXPECT_EQ(g.workers_busy, 2);
  EXPECT_EQ(g.in_flight, 4);
  EXPECT_EQ(g.in_flight_first, 2);
  ASSERT_EQ(g.nodes.size(), 4u);
  EXPECT_TRUE(g.nodes[0].self);
  EXPECT_TRUE(g.nodes[0].live);
  EXPECT_EQ(g.nodes[0].figures.submitted, 10);  // taken live, not from its stale row
  EXPECT_FALSE(g.nodes[1].live);
  EXPECT_FALSE(g.nodes[1].self);
  EXPECT_FALSE(g.nodes[2].live);
  EXPECT_TRUE(g.nodes[3].live);
}

TEST(GatewayFigures, SelfWithoutARowYetIsAddedInOrder) {
  auto g = gateway_figures({row("a", 0, 1, 1, 1), row("c", 0, 1, 1, 1)}, row("b", 0, 3, 2, 2));
  ASSERT_EQ(g.nodes.size(), 3u);
  EXPECT_EQ(g.nodes[1].figures.node_id, "b");
  EXPECT_TRUE(g.nodes[1].self);
  EXPECT_EQ(g.submitted, 5);
  EXPECT_EQ(g.workers, 4);
}

TEST(GatewayFigures, SelfNeverCountsBelowItsRow) {
  // The process has not read its base yet (the store was away at start): its live counters are
  // smaller than what a previous process of the same node id reported.
  auto g = gateway_figures({row("a", 100, 50, 40, 4)}, row("a", 0, 2, 1, 4));
  EXPECT_EQ(g.submitted, 50);
  EXPECT_EQ(g.delivered, 40);
  EXPECT_EQ(g.nodes[0].figures.submitted, 50);
  EXPECT_EQ(g.nodes[0].figures.age_ms, 0);
}
