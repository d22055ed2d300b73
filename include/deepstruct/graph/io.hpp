// SPDX-License-Identifier: MIT
#pragma once

/// \file graph/io.hpp
/// Files: GraphML in and out (interoperating with networkx.read_graphml / write_graphml and
/// deepstruct's save/load), and DOT out for Graphviz. GraphML is parsed by a small XML reader of
/// our own (header-only, no Boost library to link) that knows the line of everything it reads, so
/// every error names the file and the line.

#include <algorithm>
#include <cerrno>
#include <clocale>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <limits>
#include <locale>
#include <map>
#include <ostream>
#include <sstream>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "deepstruct/detail/atomic_file.hpp"
#include "deepstruct/detail/text_output.hpp"
#include "deepstruct/errors.hpp"
#include "deepstruct/graph/dag.hpp"
#include "deepstruct/graph/layer_index.hpp"
#include "deepstruct/graph/layered.hpp"

namespace deepstruct {

namespace detail {

/// One XML element: local name (namespace prefix dropped), attributes in file order, the text
/// directly inside it (entities decoded, CDATA included) and its child elements.
struct XmlElement {
  std::string name;
  std::vector<std::pair<std::string, std::string>> attributes;
  std::string text;
  std::vector<XmlElement> children;
  std::size_t line = 0;

  const std::string* attribute(const std::string& key) const {
    for (const auto& [k, v] : attributes)
      if (k == key) return &v;
    return nullptr;
  }
};

/// A non-validating XML 1.0 reader for data files: elements, attributes, character data,
/// entity and character references, CDATA, comments, processing instructions and a DOCTYPE
/// (skipped). Every error throws io_error "<source>:<line>: <what>".
class XmlReader {
 public:
  XmlReader(const std::string& text, std::string source) : s_(text), source_(std::move(source)) {}

  XmlElement parse_document() {
    if (s_.compare(0, 3, "\xEF\xBB\xBF") == 0) pos_ = 3;  // UTF-8 byte order mark
    skip_misc(true);
    if (at_end()) fail("expected an XML root element, found " + std::string(s_.empty() ? "an empty file" : "no element"));
    if (s_[pos_] != '<' || !name_start(peek(1))) fail("expected an XML root element, found " + found());
    XmlElement root = parse_element(0);
    skip_misc(false);
    if (!at_end()) fail("expected nothing after the root element </" + root.name + ">, found " + found());
    return root;
  }

  [[noreturn]] void fail(const std::string& what) const { fail_at(line_, what); }
  [[noreturn]] void fail_at(std::size_t line, const std::string& what) const {
    DEEPSTRUCT_THROW(io_error, source_ + ":" + std::to_string(line) + ": " + what);
  }

 private:
  static constexpr std::size_t max_depth = 256;

  bool at_end() const { return pos_ >= s_.size(); }
  char peek(std::size_t ahead = 0) const { return pos_ + ahead < s_.size() ? s_[pos_ + ahead] : '\0'; }
  bool starts(const char* lit) const { return s_.compare(pos_, std::char_traits<char>::length(lit), lit) == 0; }
  void advance(std::size_t n = 1) {
    const std::size_t end = std::min(s_.size(), pos_ + n);
    line_ += static_cast<std::size_t>(std::count(s_.begin() + static_cast<std::ptrdiff_t>(pos_), s_.begin() + static_cast<std::ptrdiff_t>(end), '\n'));
    pos_ = end;
  }
  static bool space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
  static bool name_start(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c == ':' || static_cast<unsigned char>(c) >= 0x80;
  }
  static bool name_char(char c) { return name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.'; }
  void skip_space() {
    while (!at_end() && space(s_[pos_])) advance();
  }
  std::string found() const {
    if (at_end()) return "the end of the file";
    std::string shown = s_.substr(pos_, 12);
    for (char& c : shown)
      if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    return "'" + shown + (pos_ + 12 < s_.size() ? "...'" : "'");
  }
  void skip_past(const char* end, const char* what) {
    const std::size_t start_line = line_;
    const std::size_t at = s_.find(end, pos_);
    if (at == std::string::npos) fail_at(start_line, std::string("unterminated ") + what);
    advance(at + std::char_traits<char>::length(end) - pos_);
  }
  // Whitespace, comments and processing instructions; before the root also a DOCTYPE.
  void skip_misc(bool prolog) {
    for (;;) {
      skip_space();
      if (starts("<?")) {
        skip_past("?>", "processing instruction");
      } else if (starts("<!--")) {
        skip_past("-->", "comment");
      } else if (prolog && starts("<!DOCTYPE")) {
        const std::size_t start_line = line_;
        int bracket = 0;
        while (!at_end() && !(s_[pos_] == '>' && bracket == 0)) {
          if (s_[pos_] == '[') ++bracket;
          if (s_[pos_] == ']') --bracket;
          advance();
        }
        if (at_end()) fail_at(start_line, "unterminated DOCTYPE");
        advance();
      } else {
        return;
      }
    }
  }
  std::string parse_name(const char* what) {
    if (at_end() || !name_start(s_[pos_])) fail(std::string("expected ") + what + ", found " + found());
    const std::size_t start = pos_;
    while (!at_end() && name_char(s_[pos_])) advance();
    return s_.substr(start, pos_ - start);
  }
  static void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  // At '&': decodes one reference into out.
  void parse_reference(std::string& out) {
    const std::size_t semi = s_.find(';', pos_);
    if (semi == std::string::npos || semi - pos_ > 12) fail("expected an entity reference like &amp; found " + found());
    const std::string ref = s_.substr(pos_ + 1, semi - pos_ - 1);
    if (ref == "lt") out += '<';
    else if (ref == "gt") out += '>';
    else if (ref == "amp") out += '&';
    else if (ref == "quot") out += '"';
    else if (ref == "apos") out += '\'';
    else if (ref.size() >= 2 && ref[0] == '#') {
      const bool hex = ref[1] == 'x';
      const std::string digits = ref.substr(hex ? 2 : 1);
      char* end = nullptr;
      const unsigned long cp = digits.empty() ? 0 : std::strtoul(digits.c_str(), &end, hex ? 16 : 10);
      if (digits.empty() || *end != '\0' || cp == 0 || cp > 0x10FFFF || digits[0] == '-' || digits[0] == '+')
        fail("expected a character reference, found '&" + ref + ";'");
      append_utf8(out, static_cast<std::uint32_t>(cp));
    } else {
      fail("unknown entity '&" + ref + ";'");
    }
    advance(semi + 1 - pos_);
  }
  XmlElement parse_element(std::size_t depth) {
    if (depth > max_depth) fail("elements nested deeper than " + std::to_string(max_depth));
    XmlElement e;
    e.line = line_;
    advance();  // '<'
    const std::string qname = parse_name("an element name");
    const std::size_t colon = qname.find(':');
    e.name = colon == std::string::npos ? qname : qname.substr(colon + 1);
    for (;;) {
      const bool had_space = !at_end() && space(s_[pos_]);
      skip_space();
      if (starts("/>")) {
        advance(2);
        return e;
      }
      if (peek() == '>') {
        advance();
        break;
      }
      if (!had_space) fail("expected whitespace, '>' or '/>' in <" + qname + ">, found " + found());
      const std::string key = parse_name("an attribute name");
      skip_space();
      if (peek() != '=') fail("expected '=' after attribute " + key + ", found " + found());
      advance();
      skip_space();
      const char quote = peek();
      if (quote != '"' && quote != '\'') fail("expected a quoted value for attribute " + key + ", found " + found());
      advance();
      std::string value;
      while (!at_end() && s_[pos_] != quote) {
        if (s_[pos_] == '<') fail("'<' in the value of attribute " + key);
        if (s_[pos_] == '&') {
          parse_reference(value);
        } else {
          std::size_t end = s_.find_first_of(quote == '"' ? "\"<&" : "'<&", pos_);
          if (end == std::string::npos) end = s_.size();
          value.append(s_, pos_, end - pos_);
          advance(end - pos_);
        }
      }
      if (at_end()) fail_at(e.line, "unterminated value of attribute " + key + " in <" + qname + ">");
      advance();
      // Duplicates: a scan of the few attributes most elements have; past that a hash set of the
      // names, so an element with very many attributes still parses in linear time.
      constexpr std::size_t scan_limit = 16;
      if (e.attributes.size() < scan_limit) {
        if (e.attribute(key) != nullptr) fail("attribute " + key + " given twice in <" + qname + ">");
      } else {
        if (e.attributes.size() == scan_limit) {
          names_.clear();
          for (const auto& kv : e.attributes) names_.insert(kv.first);
        }
        if (!names_.insert(key).second) fail("attribute " + key + " given twice in <" + qname + ">");
      }
      e.attributes.emplace_back(key, std::move(value));
    }
    for (;;) {  // content
      if (at_end()) fail_at(e.line, "element <" + qname + "> is never closed (expected </" + qname + ">)");
      if (starts("</")) {
        advance(2);
        const std::string closing = parse_name("a closing tag name");
        if (closing != qname) fail("expected </" + qname + "> (opened at line " + std::to_string(e.line) + "), found </" + closing + ">");
        skip_space();
        if (peek() != '>') fail("expected '>' to end </" + closing + ">, found " + found());
        advance();
        return e;
      }
      if (starts("<!--")) {
        skip_past("-->", "comment");
      } else if (starts("<![CDATA[")) {
        const std::size_t start_line = line_;
        const std::size_t end = s_.find("]]>", pos_);
        if (end == std::string::npos) fail_at(start_line, "unterminated CDATA section");
        e.text += s_.substr(pos_ + 9, end - pos_ - 9);
        advance(end + 3 - pos_);
      } else if (starts("<?")) {
        skip_past("?>", "processing instruction");
      } else if (peek() == '<') {
        if (!name_start(peek(1))) fail("expected an element, comment or closing tag, found " + found());
        e.children.push_back(parse_element(depth + 1));
      } else if (peek() == '&') {
        parse_reference(e.text);
      } else {  // a run of character data
        std::size_t end = s_.find_first_of("<&", pos_);
        if (end == std::string::npos) end = s_.size();
        e.text.append(s_, pos_, end - pos_);
        advance(end - pos_);
      }
    }
  }

  const std::string& s_;
  std::string source_;
  std::size_t pos_ = 0;
  std::size_t line_ = 1;
  std::unordered_set<std::string> names_;  // attribute names of the element being read, when it has many
};

inline std::string trim(const std::string& s) {
  const char* ws = " \t\r\n";
  const std::size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

/// A double in the C locale (strtod's "inf", "nan" included); false when s is not exactly one.
inline bool parse_double(const std::string& s, double& value) {
  const std::string t = trim(s);
  if (t.empty()) return false;
  char* end = nullptr;
  // strtod depends on the C locale's decimal point; GraphML (and Python) always use '.'.
  std::string buffer = t;
  const char point = *std::localeconv()->decimal_point;
  if (point != '.') {
    for (char& c : buffer)
      if (c == '.') c = point;
  }
  value = std::strtod(buffer.c_str(), &end);
  return end == buffer.c_str() + buffer.size();
}

/// A non-negative decimal integer that fits size_t; false otherwise.
inline bool parse_index(const std::string& s, std::size_t& value) {
  const std::string t = trim(s);
  std::size_t i = t.size() > 0 && t[0] == '+' ? 1 : 0;
  if (i == t.size()) return false;
  std::size_t v = 0;
  for (; i < t.size(); ++i) {
    if (t[i] < '0' || t[i] > '9') return false;
    const std::size_t d = static_cast<std::size_t>(t[i] - '0');
    if (v > (std::numeric_limits<std::size_t>::max() - d) / 10) return false;
    v = v * 10 + d;
  }
  value = v;
  return true;
}

/// xml_escape of a text xml_forbidden has already passed.
inline std::string xml_escape_checked(const std::string& s) {
  std::string out;
  for (const char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      case '\r': out += "&#13;"; break;
      default: out += c;
    }
  }
  return out;
}

/// Text for XML 1.0 element content that reads back as `s`: markup escaped, a carriage return as
/// a character reference (readers turn a raw one into a newline). value_error for what XML 1.0
/// cannot hold at all, control characters and bytes that are not UTF-8 (detail/text_output.hpp;
/// a file with one is not well-formed: networkx and other readers refuse it).
inline std::string xml_escape(const std::string& s) {
  const std::size_t bad = xml_forbidden(s);
  if (bad != std::string::npos) DEEPSTRUCT_THROW(value_error, "XML: " + xml_forbidden_message(s, bad, "a text"));
  return xml_escape_checked(s);
}

/// Shortest-enough decimal for an exact round trip of a double (15 to 17 significant digits).
inline std::string format_double(double x) { return number_str(x, 15); }

inline std::string read_file_text(const std::string& path) {
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) DEEPSTRUCT_THROW(io_error, "cannot open " + path + " for reading: " + errno_text(errno));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) DEEPSTRUCT_THROW(io_error, "error while reading " + path);
  return text;
}

}  // namespace detail

/// What read_graphml does with an undirected edge (edgedefault="undirected", or directed="false").
enum class UndirectedEdges {
  reject,       ///< throw io_error: a DAG needs directions (the default)
  orient_by_id  ///< direct it from the node that comes first in the file to the later one
};

struct GraphmlReadOptions {
  UndirectedEdges undirected = UndirectedEdges::reject;
};

/// Parses GraphML text; `source` names it in error messages. Vertices: when the node ids are the
/// numbers 0..n-1 in any order (as write_graphml and deepstruct's export script write them), node
/// "v" is vertex v; otherwise the nodes become vertices 0..n-1 in the order of the <node> elements
/// (as deepstruct's load numbers them) and each keeps its id as its label. `node_ids`, when given,
/// receives the original id of every vertex. A node's `layer` and `position` data (non-negative
/// integers) and `label` data (a string) go to the vertex bundle, an edge's `weight` data (a
/// double) to the edge bundle; keys are matched through their attr.name (for "node"/"edge"/"all"),
/// <default> values apply, other data are ignored. Edges
/// are kept as they are (parallel edges and cycles included; layer_index() rejects cycles).
/// Reads the first <graph> of the file. A graph without edgedefault is undirected (as networkx
/// reads it). Throws io_error "<source>:<line>: ..." for: malformed XML, a root other than
/// <graphml>, no <graph>, a node without id or with an id seen before, an edge whose end is not a
/// node, an undirected edge under UndirectedEdges::reject, data with an undeclared key, a layer or
/// weight that is not a number, a layer or position not below the number of nodes (no layering
/// of n vertices has one), nested graphs, hyperedges. Linear in the size of the text.
inline Dag parse_graphml(const std::string& text, const std::string& source = "<graphml>", const GraphmlReadOptions& options = {},
                         std::vector<std::string>* node_ids = nullptr) {
  detail::XmlReader reader(text, source);
  const detail::XmlElement root = reader.parse_document();
  if (root.name != "graphml") reader.fail_at(root.line, "expected the root element <graphml>, found <" + root.name + ">");

  struct Key {
    std::string name, domain;
    const std::string* default_value = nullptr;
    std::size_t line = 0;
  };
  std::unordered_map<std::string, Key> keys;
  const detail::XmlElement* graph = nullptr;
  for (const auto& child : root.children) {
    if (child.name == "key") {
      const std::string* id = child.attribute("id");
      if (id == nullptr) reader.fail_at(child.line, "expected an id attribute in <key>, found none");
      Key key;
      key.line = child.line;
      if (const std::string* n = child.attribute("attr.name")) key.name = *n;
      key.domain = child.attribute("for") != nullptr ? *child.attribute("for") : "all";
      for (const auto& d : child.children)
        if (d.name == "default") key.default_value = &d.text;
      if (!keys.emplace(*id, key).second) reader.fail_at(child.line, "key id '" + *id + "' declared twice");
    } else if (child.name == "graph" && graph == nullptr) {
      graph = &child;
    }
  }
  if (graph == nullptr) reader.fail_at(root.line, "expected a <graph> element inside <graphml>, found none");

  bool directed_default = false;
  if (const std::string* ed = graph->attribute("edgedefault")) {
    if (*ed == "directed") directed_default = true;
    else if (*ed != "undirected")
      reader.fail_at(graph->line, "expected edgedefault=\"directed\" or \"undirected\", found \"" + *ed + "\"");
  }

  auto key_of = [&](const detail::XmlElement& data) -> const Key& {
    const std::string* k = data.attribute("key");
    if (k == nullptr) reader.fail_at(data.line, "expected a key attribute in <data>, found none");
    const auto it = keys.find(*k);
    if (it == keys.end()) reader.fail_at(data.line, "<data> refers to key '" + *k + "', which no <key> declares");
    return it->second;
  };
  auto applies = [](const Key& key, const char* name, const char* domain) {
    return key.name == name && (key.domain == domain || key.domain == "all");
  };
  auto read_layer = [&](const std::string& value, std::size_t line) {
    std::size_t layer = 0;
    if (!detail::parse_index(value, layer))
      reader.fail_at(line, "expected a non-negative integer as layer, found '" + detail::trim(value) + "'");
    return layer;
  };
  auto read_weight = [&](const std::string& value, std::size_t line) {
    double weight = 0;
    if (!detail::parse_double(value, weight)) reader.fail_at(line, "expected a number as weight, found '" + detail::trim(value) + "'");
    return weight;
  };
  auto read_position = [&](const std::string& value, std::size_t line) {
    std::size_t position = 0;
    if (!detail::parse_index(value, position))
      reader.fail_at(line, "expected a non-negative integer as position, found '" + detail::trim(value) + "'");
    return position;
  };
  std::size_t default_layer = 0, default_position = no_position;
  std::size_t default_layer_line = 0, default_position_line = 0;  // where they come from (0: nowhere)
  std::string default_label;
  double default_weight = 1.0;
  for (const auto& [id, key] : keys) {
    if (key.default_value == nullptr) continue;
    if (applies(key, "layer", "node")) {
      default_layer = read_layer(*key.default_value, key.line);
      default_layer_line = key.line;
    }
    if (applies(key, "position", "node")) {
      default_position = read_position(*key.default_value, key.line);
      default_position_line = key.line;
    }
    if (applies(key, "label", "node")) default_label = *key.default_value;
    if (applies(key, "weight", "edge")) default_weight = read_weight(*key.default_value, key.line);
  }

  std::unordered_map<std::string, std::size_t> index;  // node id -> its place in the file
  std::vector<std::size_t> node_line;
  std::vector<const std::string*> ids;
  std::vector<VertexProperties> nodes;
  std::vector<char> labelled;
  std::vector<std::pair<std::size_t, std::size_t>> data_line;  // the lines of each node's layer and position
  std::vector<const detail::XmlElement*> edge_elements;
  for (const auto& child : graph->children) {
    if (child.name == "node") {
      const std::string* id = child.attribute("id");
      if (id == nullptr) reader.fail_at(child.line, "expected an id attribute in <node>, found none");
      const auto [it, inserted] = index.emplace(*id, nodes.size());
      if (!inserted)
        reader.fail_at(child.line, "duplicate node id '" + *id + "' (first declared at line " + std::to_string(node_line[it->second]) + ")");
      node_line.push_back(child.line);
      ids.push_back(id);
      VertexProperties node{default_layer, default_position, default_label};
      std::pair<std::size_t, std::size_t> lines{default_layer_line, default_position_line};
      bool has_label = !default_label.empty();
      for (const auto& d : child.children) {
        if (d.name == "graph") reader.fail_at(d.line, "nested graphs are not supported (inside node '" + *id + "')");
        if (d.name != "data") continue;
        const Key& key = key_of(d);  // an undeclared key is an error even when unused
        if (applies(key, "layer", "node")) {
          node.layer = read_layer(d.text, d.line);
          lines.first = d.line;
        }
        if (applies(key, "position", "node")) {
          node.position = read_position(d.text, d.line);
          lines.second = d.line;
        }
        if (applies(key, "label", "node")) {
          node.label = d.text;
          has_label = true;
        }
      }
      nodes.push_back(std::move(node));
      labelled.push_back(has_label ? 1 : 0);
      data_line.push_back(lines);
    } else if (child.name == "edge") {
      edge_elements.push_back(&child);
    } else if (child.name == "hyperedge") {
      reader.fail_at(child.line, "hyperedges are not supported");
    }
  }

  // A layer or a position is at most n - 1 in any layering of n vertices (and so in any file
  // write_graphml writes); larger values cannot be one and would overflow whoever sizes arrays by
  // them (layer + 1), so they are rejected here, naming their line.
  const std::size_t n = nodes.size();
  for (std::size_t i = 0; i < n; ++i) {
    if (nodes[i].layer >= n)
      reader.fail_at(data_line[i].first, "expected a layer below the number of nodes (" + std::to_string(n) + ") for node '" + *ids[i] +
                                             "', found " + std::to_string(nodes[i].layer));
    if (nodes[i].position != no_position || data_line[i].second != 0)
      if (nodes[i].position >= n)
        reader.fail_at(data_line[i].second, "expected a position below the number of nodes (" + std::to_string(n) + ") for node '" +
                                                *ids[i] + "', found " + std::to_string(nodes[i].position));
  }

  // Node ids that are exactly the numbers 0..n-1 (in any order) name the vertices; any other ids
  // number the vertices in file order and stay as labels.
  std::vector<std::size_t> vertex_of(n);
  bool numbered = true;
  {
    std::vector<char> seen(n, 0);
    for (std::size_t i = 0; i < n && numbered; ++i) {
      const std::string& id = *ids[i];
      std::size_t v = 0;
      numbered = !id.empty() && id.size() <= 20 && (id == "0" || id[0] != '0') &&
                 std::all_of(id.begin(), id.end(), [](char c) { return c >= '0' && c <= '9'; }) && detail::parse_index(id, v) && v < n &&
                 !seen[v];
      if (numbered) {
        seen[v] = 1;
        vertex_of[i] = v;
      }
    }
  }
  Dag g(n);
  if (node_ids != nullptr) node_ids->assign(n, std::string());
  for (std::size_t i = 0; i < n; ++i) {
    if (!numbered) {
      vertex_of[i] = i;
      if (!labelled[i]) nodes[i].label = *ids[i];
    }
    g[vertex_of[i]] = std::move(nodes[i]);
    if (node_ids != nullptr) (*node_ids)[vertex_of[i]] = *ids[i];
  }
  for (auto& [id, i] : index) i = vertex_of[i];
  std::vector<std::size_t> file_position(n);  // of each vertex: undirected edges run from the earlier node
  for (std::size_t i = 0; i < n; ++i) file_position[vertex_of[i]] = i;
  for (const detail::XmlElement* e : edge_elements) {
    std::size_t ends[2] = {0, 0};
    const char* names[2] = {"source", "target"};
    for (int i = 0; i < 2; ++i) {
      const std::string* id = e->attribute(names[i]);
      if (id == nullptr) reader.fail_at(e->line, std::string("expected a ") + names[i] + " attribute in <edge>, found none");
      const auto it = index.find(*id);
      if (it == index.end()) reader.fail_at(e->line, std::string("edge ") + names[i] + " '" + *id + "' is not a node of the graph");
      ends[i] = it->second;
    }
    bool directed = directed_default;
    if (const std::string* d = e->attribute("directed")) {
      if (*d == "true") directed = true;
      else if (*d == "false") directed = false;
      else reader.fail_at(e->line, "expected directed=\"true\" or \"false\", found \"" + *d + "\"");
    }
    if (!directed) {
      if (options.undirected == UndirectedEdges::reject)
        reader.fail_at(e->line, "expected a directed edge, found the undirected edge " + *e->attribute("source") + " -- " +
                                    *e->attribute("target") +
                                    (e->attribute("directed") != nullptr ? std::string(" (directed=\"false\")")
                                                                         : std::string(" (the graph's edgedefault is \"undirected\" or missing)")) +
                                    "; read with UndirectedEdges::orient_by_id to orient it");
      if (file_position[ends[0]] > file_position[ends[1]]) std::swap(ends[0], ends[1]);
    }
    double weight = default_weight;
    for (const auto& d : e->children) {
      if (d.name != "data") continue;
      const Key& key = key_of(d);  // an undeclared key is an error even when unused
      if (applies(key, "weight", "edge")) weight = read_weight(d.text, d.line);
    }
    add_edge(ends[0], ends[1], EdgeProperties{weight}, g);
  }
  return g;
}

/// parse_graphml of what `in` holds; `source` names it in errors.
inline Dag read_graphml(std::istream& in, const std::string& source = "<stream>", const GraphmlReadOptions& options = {},
                        std::vector<std::string>* node_ids = nullptr) {
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) DEEPSTRUCT_THROW(io_error, "error while reading " + source);
  return parse_graphml(text, source, options, node_ids);
}

/// parse_graphml of the file at `path` (io_error naming the path when it cannot be read).
inline Dag read_graphml(const std::string& path, const GraphmlReadOptions& options = {}, std::vector<std::string>* node_ids = nullptr) {
  return parse_graphml(detail::read_file_text(path), path, options, node_ids);
}

/// Where write_graphml takes the `layer` it writes from.
enum class GraphmlLayers {
  /// The stored g[v].layer when it is a layering of g (every edge goes to a strictly higher stored
  /// layer, as the builders, the generators, assign_layers() and a layered GraphML file leave
  /// it); otherwise, e.g. for a graph built by add_edge whose layers were never set (all 0),
  /// layer_index(g), which throws not_a_dag when g has a cycle. The default.
  automatic,
  stored,      ///< g[v].layer as it is, whatever it holds
  layer_index  ///< layer_index(g) (the longest path from a source), ignoring what is stored
};

/// What write_graphml writes beside the structure.
struct GraphmlWriteOptions {
  bool layer = true;     ///< each vertex's layer (from `layers`) as node data, attr.type int; nodes listed layer by layer
  bool weight = true;    ///< each edge's `weight` as edge data, attr.type double (round-trip exact)
  GraphmlLayers layers = GraphmlLayers::automatic;
  bool position = true;  ///< with `layer`: each vertex's place in its layer (the neuron order) as node data, attr.type int
  bool label = true;     ///< each vertex's label as node data, when some vertex has one
};

/// The layers write_graphml writes for g (see GraphmlLayers). Every layer is below the number of
/// vertices, as read_graphml requires: with GraphmlLayers::stored a stored layer that is not
/// throws value_error (naming the vertex), and automatic takes the stored layers only when they
/// all are. O(V + E).
inline std::vector<std::size_t> graphml_layers(const Dag& g, GraphmlLayers which = GraphmlLayers::automatic) {
  const std::size_t n = num_vertices(g);
  std::vector<std::size_t> stored(n);
  bool in_range = true;
  for (std::size_t v = 0; v < n; ++v) {
    stored[v] = g[v].layer;
    if (stored[v] >= n) {
      if (which == GraphmlLayers::stored)
        DEEPSTRUCT_THROW(value_error, "graphml_layers: expected stored layers below the number of vertices (" + std::to_string(n) +
                                          "), found layer " + std::to_string(stored[v]) + " at vertex " + std::to_string(v));
      in_range = false;
    }
  }
  if (which == GraphmlLayers::stored) return stored;
  if (which == GraphmlLayers::automatic && in_range) {
    bool layering = true;
    for (auto [e, e_end] = edges(g); e != e_end && layering; ++e) layering = stored[source(*e, g)] < stored[target(*e, g)];
    if (layering) return stored;
  }
  return layer_index(g);
}

/// Writes g as directed GraphML, readable by networkx.read_graphml (node_type=int gives back the
/// integer ids), by read_graphml and by deepstruct's LayeredGraph.load. Node ids are the vertex ids
/// "0".."n-1"; the nodes are listed in LayeredView's order (the layers of layer_index, each in its
/// neuron order: stored position, then id), with `layer` data (see GraphmlLayers) and `position`
/// data (the place in LayeredView's layer). That is what makes a network built from the file the
/// same in both libraries, and the same as one built from g: read_graphml takes the positions, and
/// deepstruct's loader, which numbers vertices in file order, then orders each layer as the file
/// lists it. Labels, when some vertex has one, go to `label` data. The layers are chosen (and may
/// throw not_a_dag) before anything is written; without layer data (options.layer = false; no
/// position data then either) the nodes are listed by id and a cyclic graph can be written.
/// O(V log V + E).
inline void write_graphml(std::ostream& out, const Dag& g, const GraphmlWriteOptions& options = {});

namespace detail {

inline void write_graphml_text(std::ostream& out, const Dag& g, const GraphmlWriteOptions& options) {
  const std::size_t n = num_vertices(g);
  const bool layered = options.layer;
  const std::vector<std::size_t> layers = layered ? graphml_layers(g, options.layers) : std::vector<std::size_t>{};
  // The file order: LayeredView's (the layers of layer_index, each in its neuron order) and a
  // vertex's written position its place in that layer, whatever layers are written: both readers
  // order a layer of layer_index by them (read_graphml through the positions, deepstruct's loader
  // by file order), so the file gives back the view's neurons in the view's order, also where a
  // stored layer is not layer_index's (a neuron without inputs). A cyclic graph (only with
  // GraphmlLayers::stored) has no view: by stored layer, then stored position, then id.
  std::vector<std::size_t> order(n), position(n, 0);
  for (std::size_t v = 0; v < n; ++v) order[v] = v;
  if (layered) {
    try {  // (graphml_layers has thrown for a cyclic graph unless the layers are the stored ones)
      const LayeredView view(g);
      std::size_t i = 0;
      for (std::size_t l = 0; l < view.num_layers(); ++l)
        for (const std::size_t v : view.vertices(l)) {
          order[i++] = v;
          position[v] = view.position_in_layer(v);
        }
    } catch (const not_a_dag&) {
      std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        if (layers[a] != layers[b]) return layers[a] < layers[b];
        return g[a].position < g[b].position;
      });
      for (std::size_t i = 0; i < n; ++i)
        position[order[i]] = i > 0 && layers[order[i - 1]] == layers[order[i]] ? position[order[i - 1]] + 1 : 0;
    }
  }
  bool labels = false;
  for (std::size_t v = 0; v < n && options.label && !labels; ++v) labels = !g[v].label.empty();
  // A label XML cannot hold throws, naming the vertex (the labels are then escaped unchecked).
  for (std::size_t v = 0; v < n && labels; ++v)
    if (const std::size_t bad = detail::xml_forbidden(g[v].label); bad != std::string::npos)
      DEEPSTRUCT_THROW(value_error, "write_graphml: " + detail::xml_forbidden_message(g[v].label, bad, "the label of vertex " + std::to_string(v)));
  out << "<?xml version='1.0' encoding='utf-8'?>\n"
         "<graphml xmlns=\"http://graphml.graphdrawing.org/xmlns\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" "
         "xsi:schemaLocation=\"http://graphml.graphdrawing.org/xmlns http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd\">\n";
  if (options.layer) out << "  <key id=\"d0\" for=\"node\" attr.name=\"layer\" attr.type=\"int\"/>\n";
  const bool positions = layered && options.position;
  if (positions) out << "  <key id=\"d2\" for=\"node\" attr.name=\"position\" attr.type=\"int\"/>\n";
  if (labels) out << "  <key id=\"d3\" for=\"node\" attr.name=\"label\" attr.type=\"string\"/>\n";
  if (options.weight) out << "  <key id=\"d1\" for=\"edge\" attr.name=\"weight\" attr.type=\"double\"/>\n";
  out << "  <graph edgedefault=\"directed\">\n";
  for (const std::size_t v : order) {
    out << "    <node id=\"" << v << '"';
    const bool label = labels && !g[v].label.empty();
    if (!layered && !label) {
      out << "/>\n";
      continue;
    }
    out << '>';
    if (options.layer) out << "<data key=\"d0\">" << layers[v] << "</data>";
    if (positions) out << "<data key=\"d2\">" << position[v] << "</data>";
    if (label) out << "<data key=\"d3\">" << detail::xml_escape_checked(g[v].label) << "</data>";
    out << "</node>\n";
  }
  for (auto [e, e_end] = edges(g); e != e_end; ++e) {
    out << "    <edge source=\"" << source(*e, g) << "\" target=\"" << target(*e, g) << '"';
    if (options.weight) out << "><data key=\"d1\">" << detail::format_double(g[*e].weight) << "</data></edge>\n";
    else out << "/>\n";
  }
  out << "  </graph>\n</graphml>\n";
}

}  // namespace detail

/// (In the classic locale whatever `out`'s or the global one: see detail/text_output.hpp.)
inline void write_graphml(std::ostream& out, const Dag& g, const GraphmlWriteOptions& options) {
  detail::write_in_classic_locale(out, [&](std::ostream& text) { detail::write_graphml_text(text, g, options); });
}

namespace detail {

/// Writes text to the file at path (created or replaced) atomically (write_file_atomically: a
/// temporary file beside it, fsync, rename; on failure an existing file is left as it was);
/// io_error naming the path, the step that failed and errno's reason. `who` starts the message.
inline void write_file_text(const std::string& path, const std::string& text, const std::string& who = "") {
  write_file_atomically_text(path, text, (who.empty() ? std::string() : who + ": ") + "cannot write '" + path + "'");
}

}  // namespace detail

/// write_graphml to the file at `path`; io_error naming the path and errno's reason when it
/// cannot be written. The document is made in memory first and written atomically (a temporary
/// file beside `path`, renamed over it): when anything fails (not_a_dag, a full disk), an existing
/// file is left as it was and no partial file remains.
inline void write_graphml(const std::string& path, const Dag& g, const GraphmlWriteOptions& options = {}) {
  const std::string text = detail::classic_text([&](std::ostream& out) { detail::write_graphml_text(out, g, options); });
  detail::write_file_text(path, text, "write_graphml");
}

/// How write_dot draws the graph.
struct DotOptions {
  bool group_by_layer = true;      ///< one `{ rank=same; ... }` group per layer (layer_index(): throws not_a_dag on a cycle)
  bool edge_weights = false;       ///< label every edge with its weight
  std::string rankdir = "LR";      ///< Graphviz rankdir: "LR", "TB", "RL" or "BT"
  std::string name = "deepstruct"; ///< the digraph's name
};

/// Writes g in Graphviz's DOT language: vertices by id, one rank=same group per layer (in layer
/// order, vertices ascending), then the edges in Boost's edge order. Throws value_error for a
/// rankdir Graphviz does not know and, with group_by_layer, not_a_dag for a cyclic graph; both
/// before anything is written to `out`. O(V + E).
inline void write_dot(std::ostream& out, const Dag& g, const DotOptions& options = {});

namespace detail {

inline void write_dot_text(std::ostream& out, const Dag& g, const DotOptions& options) {
  if (options.rankdir != "LR" && options.rankdir != "TB" && options.rankdir != "RL" && options.rankdir != "BT")
    DEEPSTRUCT_THROW(value_error, "write_dot: expected rankdir LR, TB, RL or BT, found \"" + options.rankdir + "\"");
  const LayeredView view = options.group_by_layer ? LayeredView(g) : LayeredView();  // may throw not_a_dag
  std::string name;
  for (const char c : options.name) {
    if (c == '"' || c == '\\') name += '\\';
    name += c;
  }
  out << "digraph \"" << name << "\" {\n  rankdir=" << options.rankdir << ";\n  node [shape=circle];\n";
  if (options.group_by_layer) {
    for (std::size_t l = 0; l < view.num_layers(); ++l) {
      out << "  { rank=same;";
      for (const std::size_t v : view.vertices(l)) out << ' ' << v << ';';
      out << " }  // layer " << l << '\n';
    }
  } else {
    for (std::size_t v = 0; v < num_vertices(g); ++v) out << "  " << v << ";\n";
  }
  for (auto [e, e_end] = edges(g); e != e_end; ++e) {
    out << "  " << source(*e, g) << " -> " << target(*e, g);
    if (options.edge_weights) out << " [label=\"" << detail::format_double(g[*e].weight) << "\"]";
    out << ";\n";
  }
  out << "}\n";
}

}  // namespace detail

/// (In the classic locale, as write_graphml.)
inline void write_dot(std::ostream& out, const Dag& g, const DotOptions& options) {
  detail::write_in_classic_locale(out, [&](std::ostream& text) { detail::write_dot_text(text, g, options); });
}

/// write_dot to the file at `path`; io_error naming the path and errno's reason when it cannot
/// be written. The document is made in memory first and written atomically (as write_graphml):
/// when anything fails (value_error, not_a_dag, a full disk), an existing file is left as it was.
inline void write_dot(const std::string& path, const Dag& g, const DotOptions& options = {}) {
  const std::string text = detail::classic_text([&](std::ostream& out) { detail::write_dot_text(out, g, options); });
  detail::write_file_text(path, text, "write_dot");
}

}  // namespace deepstruct
