// SPDX-License-Identifier: MIT
#pragma once

/// \file detail/text_output.hpp
/// What the text writers (GraphML, DOT, SVG, JSON) share: numbers in the classic "C" locale
/// whatever the program's global locale, its C locale or the caller's stream (a German locale
/// made node 1000 "1.000" and 0.5 "0,5", which no reader takes back), and the characters XML 1.0
/// can hold (the files declare UTF-8).

#include <clocale>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <locale>
#include <ostream>
#include <sstream>
#include <string>

namespace deepstruct {
namespace detail {

/// What write(stream) writes to a string stream in the classic locale.
template <typename Write>
std::string classic_text(Write&& write) {
  std::ostringstream text;
  text.imbue(std::locale::classic());
  write(text);
  return text.str();
}

/// classic_text(write) copied to `out` (nothing reaches `out` when write throws).
template <typename Write>
void write_in_classic_locale(std::ostream& out, Write&& write) {
  out << classic_text(write);
}

/// A double printed by snprintf with `format` ("%.17g", "%.2f") with a '.' as the decimal point
/// whatever the C locale (a program's setlocale(LC_ALL, "de_DE.UTF-8"), or std::locale::global of
/// a named locale, which sets it, makes snprintf write "0,5"). No grouping: snprintf's %g and %f
/// do not group.
inline std::string c_number(const char* format, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, x);
  std::string out = buf;
  const char* point = std::localeconv()->decimal_point;
  if (point != nullptr && point[0] != '\0' && std::string(point) != ".") {
    const std::size_t at = out.find(point);
    if (at != std::string::npos) out.replace(at, std::string(point).size(), ".");
  }
  return out;
}

/// At byte i of s: the length of the character that starts there when XML 1.0 can hold it (tab,
/// newline, carriage return, or a code point from U+0020 in well-formed UTF-8, but not a
/// surrogate, U+FFFE or U+FFFF), else 0.
inline std::size_t xml_char_length(const std::string& s, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned c = byte(i);
  if (c < 0x80) return c >= 0x20 || c == '\t' || c == '\n' || c == '\r' ? 1 : 0;
  std::size_t len = 0;
  std::uint32_t cp = 0, least = 0;
  if ((c & 0xE0) == 0xC0) {
    len = 2, cp = c & 0x1F, least = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3, cp = c & 0x0F, least = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4, cp = c & 0x07, least = 0x10000;
  } else {
    return 0;
  }
  if (len > s.size() - i) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  if (cp < least || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0xFFFE || cp == 0xFFFF) return 0;
  return len;
}

/// The first byte of s where no character XML 1.0 can hold starts, or npos.
inline std::size_t xml_forbidden(const std::string& s) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t len = xml_char_length(s, i);
    if (len == 0) return i;
    i += len;
  }
  return std::string::npos;
}

/// "expected ..., found ... at byte i of <what>" about xml_forbidden's byte i.
inline std::string xml_forbidden_message(const std::string& s, std::size_t i, const std::string& what) {
  const auto c = static_cast<unsigned char>(s[i]);
  char code[8];
  std::snprintf(code, sizeof code, "%02X", static_cast<unsigned>(c));
  const std::string found = c < 0x20 ? "the control character U+00" + std::string(code)
                                     : "byte 0x" + std::string(code) + " (not UTF-8, or a code point XML 1.0 cannot hold)";
  return "expected UTF-8 text XML 1.0 can hold (no control characters but tab, newline and carriage return), found " + found +
         " at byte " + std::to_string(i) + " of " + what;
}

}  // namespace detail
}  // namespace deepstruct
