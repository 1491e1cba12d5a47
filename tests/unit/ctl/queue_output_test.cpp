// websmtpctl queue and top with several nodes: the nodes table after the figures, the live count.
#include <gtest/gtest.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "output.hpp"
#include "top_view.hpp"

using websmtp::ctl::format_queue;

TEST(FormatQueue, NodesFollowAsATableNotAsJson) {
  auto q = nlohmann::json::parse(R"({"queued": 2, "workers": 8, "submitted_total": 12, "nodes": [
      {"node_id": "node0", "self": true, "live": true, "stopped": false, "started": 0, "seen": 0, "workers": 4,
       "workers_busy": 1, "in_flight": 1, "submitted_total": 7, "delivered_total": 6, "failed_total": 0},
      {"node_id": "node1", "self": false, "live": false, "stopped": false, "started": 0, "seen": 0, "workers": 4,
       "workers_busy": 0, "in_flight": 0, "submitted_total": 5, "delivered_total": 5, "failed_total": 1},
      {"node_id": "node2", "self": false, "live": false, "stopped": true, "started": 0, "seen": 0, "workers": 4,
       "workers_busy": 0, "in_flight": 0, "submitted_total": 0, "delivered_total": 0, "failed_total": 0}]})");
  std::string out = format_queue(q);
  EXPECT_EQ(out.find("[{"), std::string::npos) << out;  // not dumped as JSON among the figures
  EXPECT_NE(out.find("submitted_total"), std::string::npos);
  EXPECT_NE(out.find("NODE"), std::string::npos) << out;
  EXPECT_NE(out.find("node0 (this)"), std::string::npos) << out;
  auto line_of = [&](const std::string& name) {
    auto at = out.find(name + " ");
    return out.substr(at, out.find('\n', at) - at);
  };
  EXPECT_NE(line_of("node0").find("live"), std::string::npos);
  EXPECT_NE(line_of("node1").find("silent"), std::string::npos) << out;
  EXPECT_NE(line_of("node2").find("stopped"), std::string::npos) << out;
}

TEST(FormatQueue, ASingleNodeAnswerHasNoNodesTable) {
  auto q = nlohmann::json::parse(R"({"queued": 2, "workers": 1})");
  EXPECT_EQ(format_queue(q).find("NODE"), std::string::npos);
}

TEST(TopView, CountsTheLiveNodesWhenTheAnswerListsThem) {
  auto q = nlohmann::json::parse(R"({"workers": 8, "nodes": [{"node_id": "a", "live": true},
      {"node_id": "b", "live": false}, {"node_id": "c", "live": true}]})");
  websmtp::ctl::TopFrame frame;
  frame.now_unix = 1700000000;
  frame.figures = websmtp::ctl::parse_queue_figures(q);
  ASSERT_TRUE(frame.figures->nodes);
  EXPECT_EQ(*frame.figures->nodes, 3);
  EXPECT_EQ(*frame.figures->nodes_live, 2);
  std::string line = websmtp::ctl::render_line(frame);
  EXPECT_EQ(line.substr(line.find(" nodes=")), " nodes=3 nodes_live=2");
  auto screen = websmtp::ctl::render_screen(frame, 120, 24);
  EXPECT_TRUE(std::any_of(screen.begin(), screen.end(),
                          [](const std::string& l) { return l.find("nodes live 2/3") != std::string::npos; }));
  EXPECT_FALSE(websmtp::ctl::parse_queue_figures(nlohmann::json::parse(R"({"workers": 1})")).nodes);
}
