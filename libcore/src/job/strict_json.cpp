#include "websmtp/job/strict_json.hpp"

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace websmtp::job {

namespace {

using nlohmann::json;

// At most `max` bytes of a key for the error message, cut before a UTF-8 character.
std::string_view quote_prefix(std::string_view s, std::size_t max) {
  if (s.size() <= max) return s;
  while (max > 0 && (static_cast<unsigned char>(s[max]) & 0xC0) == 0x80) --max;
  return s.substr(0, max);
}

// nlohmann's own DOM builder (detail::json_sax_dom_parser) plus a depth limit and a duplicate
// check. The object being filled is its own key set: one map lookup per key, as before.
class StrictDomBuilder {
 public:
  StrictDomBuilder(json& root, std::size_t max_depth) : root_(root), max_depth_(max_depth) {}

  bool null() { return put(json(nullptr)); }
  bool boolean(bool v) { return put(json(v)); }
  bool number_integer(json::number_integer_t v) { return put(json(v)); }
  bool number_unsigned(json::number_unsigned_t v) { return put(json(v)); }
  bool number_float(json::number_float_t v, const json::string_t&) { return put(json(v)); }
  // The lexer clears its token buffer before the next token, so the string can be taken
  // rather than copied (a multi-megabyte body or attachment is not copied twice).
  bool string(json::string_t& v) { return put(json(std::move(v))); }
  bool binary(json::binary_t& v) { return put(json(std::move(v))); }  // not produced by JSON text

  bool start_object(std::size_t) { return open(json::value_t::object); }
  bool start_array(std::size_t) { return open(json::value_t::array); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }

  bool key(json::string_t& k) {
    Level& top = stack_.back();
    auto& object = top.value->get_ref<json::object_t&>();
    auto [it, inserted] = object.try_emplace(std::move(k));
    if (!inserted) {
      std::string where = path_to(nullptr);
      std::string message = where.empty() ? "the request body" : where;
      message += " names \"";
      message += quote_prefix(it->first, 100);
      message += "\" twice; a JSON object may name each key only once";
      error_ = Error{ErrorKind::kInvalid, "duplicate_key", std::move(message), path_to(&it->first)};
      return false;
    }
    top.key = &it->first;
    slot_ = &it->second;
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const json::exception&) {
    if (!error_) error_ = Error{ErrorKind::kInvalid, "invalid_json", "the request body is not valid JSON", {}};
    return false;
  }

  std::optional<Error>& error() { return error_; }

 private:
  struct Level {
    json* value;                       // an array or object still being filled
    const std::string* key = nullptr;  // object: the key whose value is being parsed
  };

  json* place(json&& v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    json& parent = *stack_.back().value;
    if (parent.is_array()) {
      auto& array = parent.get_ref<json::array_t&>();
      array.push_back(std::move(v));
      return &array.back();
    }
    *slot_ = std::move(v);
    return slot_;
  }

  bool put(json&& v) {
    place(std::move(v));
    return true;
  }

  bool open(json::value_t type) {
    if (stack_.size() >= max_depth_) {
      error_ = Error{ErrorKind::kInvalid,
                     "json_too_deep",
                     "the request body is nested deeper than " + std::to_string(max_depth_) + " levels",
                     {}};
      return false;
    }
    // The parent only grows once this child is closed, so the pointer stays valid meanwhile.
    stack_.push_back(Level{place(json(type))});
    return true;
  }

  bool close() {
    stack_.pop_back();
    return true;
  }

  // `jobs[2].from`: each open container's place in its parent, then the duplicate key (or,
  // without one, the path of the object holding it).
  std::string path_to(const std::string* duplicate) const {
    std::string path;
    auto append_key = [&path](const std::string& k) {
      if (!path.empty()) path += '.';
      path += k;
    };
    for (std::size_t i = 0; i + 1 < stack_.size(); ++i) {
      const Level& level = stack_[i];
      if (level.value->is_array()) {
        path += '[';
        path += std::to_string(level.value->size() - 1);
        path += ']';
      } else {
        append_key(*level.key);
      }
    }
    if (duplicate) append_key(*duplicate);
    return path;
  }

  json& root_;
  const std::size_t max_depth_;
  std::vector<Level> stack_;
  json* slot_ = nullptr;  // where an object's next value goes
  std::optional<Error> error_;
};

}  // namespace

Result<nlohmann::json> parse_strict_json(std::string_view text, std::size_t max_depth) {
  json root;
  StrictDomBuilder builder(root, max_depth);
  const char* begin = text.data();
  bool ok = json::sax_parse(begin, begin + text.size(), &builder, json::input_format_t::json, /*strict=*/true);
  if (!ok || builder.error()) {
    if (!builder.error()) return fail(ErrorKind::kInvalid, "invalid_json", "the request body is not valid JSON");
    return tl::unexpected(std::move(*builder.error()));
  }
  return root;
}

}  // namespace websmtp::job
