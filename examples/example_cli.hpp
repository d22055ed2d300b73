// Shared by the example programs (not part of the library): the command-line error they report
// with their usage line, and whole-number option values.
#pragma once

#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>

namespace examples {

/// A bad command line: main prints the message and the usage line, and exits with status 2.
struct usage_error : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

/// The value of `option` as a whole number from 0 to max; usage_error for anything else
/// ("-1", "5x", "", a number beyond max).
inline std::uint64_t whole_number(const std::string& option, const std::string& text, std::uint64_t max) {
  const std::string expected = "expected " + option + " to be a whole number from 0 to " + std::to_string(max) +
                               ", found '" + text + "'";
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) throw usage_error(expected);
  std::uint64_t value = 0;
  try {
    value = std::stoull(text);
  } catch (const std::out_of_range&) {
    throw usage_error(expected);
  }
  if (value > max) throw usage_error(expected);
  return value;
}

/// `text` as a number, all of it ("0.5", not "0.5x"); usage_error(expected) otherwise.
inline double number(const std::string& text, const std::string& expected) {
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    throw usage_error(expected);
  }
  if (used != text.size()) throw usage_error(expected);
  return value;
}

/// The value of `option` as a number in (0, 1]; usage_error for anything else ("0", "1.5", "x").
inline double fraction(const std::string& option, const std::string& text) {
  const std::string expected = "expected " + option + " to be a number greater than 0 and at most 1, found '" + text + "'";
  const double value = number(text, expected);
  if (!(value > 0.0 && value <= 1.0)) throw usage_error(expected);
  return value;
}

/// The value of `option` as a number from 0 to 1 (a probability); usage_error for anything else
/// ("-0.1", "1.5", "nan", "x").
inline double probability(const std::string& option, const std::string& text) {
  const std::string expected = "expected " + option + " to be a number from 0 to 1, found '" + text + "'";
  const double value = number(text, expected);
  if (!(value >= 0.0 && value <= 1.0)) throw usage_error(expected);
  return value;
}

/// The value after option argv[i] (advancing i to it); usage_error when there is none, or when the
/// next word is an option ("--json --quiet" would otherwise write a file named --quiet). A value
/// may start with one dash ("-1" reaches the number check and is refused there).
inline std::string option_value(int argc, char** argv, int& i) {
  if (i + 1 >= argc) throw usage_error("expected a value after " + std::string(argv[i]) + ", found none");
  const std::string value = argv[i + 1];
  if (value.size() > 2 && value.compare(0, 2, "--") == 0)
    throw usage_error("expected a value after " + std::string(argv[i]) + ", found the option " + value);
  ++i;
  return value;
}

/// main() of an example: runs run(argc, argv) and reports what it throws on stderr, prefixed by
/// the program's name: a usage_error with the usage line (exit status 2), anything else with
/// status 1.
template <typename Run>
int guarded_main(const char* program, const char* usage, Run&& run, int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const usage_error& e) {
    std::fprintf(stderr, "%s: %s\n%s\n", program, e.what(), usage);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return 1;
  }
}

}  // namespace examples
