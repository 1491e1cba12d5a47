#include "websmtp/common/metrics.hpp"

#include <charconv>
#include <cmath>

namespace websmtp::metrics {

Process& process() {
  static Process p;
  return p;
}

namespace {
// The shortest form that reads back as the same double ("0.005", "86400", "+Inf").
std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, ec == std::errc() ? end : buf);
}
}  // namespace

void TextWriter::family(std::string_view name, std::string_view type, std::string_view help) {
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  for (char c : help) {
    if (c == '\\')
      out_ += "\\\\";
    else if (c == '\n')
      out_ += "\\n";
    else
      out_ += c;
  }
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

void TextWriter::name_labels(std::string_view name, std::string_view labels) {
  out_ += name;
  if (!labels.empty()) {
    out_ += '{';
    out_ += labels;
    out_ += '}';
  }
  out_ += ' ';
}

void TextWriter::sample(std::string_view name, std::string_view labels, double value) {
  name_labels(name, labels);
  out_ += number(value);
  out_ += '\n';
}

void TextWriter::sample(std::string_view name, std::string_view labels, std::uint64_t value) {
  name_labels(name, labels);
  out_ += std::to_string(value);
  out_ += '\n';
}

void TextWriter::sample(std::string_view name, std::string_view labels, std::int64_t value) {
  name_labels(name, labels);
  out_ += std::to_string(value);
  out_ += '\n';
}

void TextWriter::histogram_series(std::string_view name, std::string_view labels, std::span<const double> bounds,
                                  std::span<const std::uint64_t> counts, double sum) {
  std::string bucket = std::string(name) + "_bucket";
  std::string prefix = labels.empty() ? std::string() : std::string(labels) + ",";
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    cumulative += counts[i];
    sample(bucket, prefix + "le=\"" + number(bounds[i]) + "\"", cumulative);
  }
  cumulative += counts[bounds.size()];
  sample(bucket, prefix + "le=\"+Inf\"", cumulative);
  sample(std::string(name) + "_sum", labels, sum);
  sample(std::string(name) + "_count", labels, cumulative);
}

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

}  // namespace websmtp::metrics
