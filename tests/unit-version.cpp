// Tests of <deepstruct/version.hpp> and <deepstruct/errors.hpp>.
#include <deepstruct/errors.hpp>
#include <deepstruct/version.hpp>

#include <string>

#include "test_support.hpp"

TEST_CASE("version: macros and constexpr values agree", "[version]") {
  static_assert(deepstruct::version == DEEPSTRUCT_VERSION, "");
  CHECK(deepstruct::version == deepstruct::version_major * 10000 + deepstruct::version_minor * 100 + deepstruct::version_patch);
  CHECK(std::string(deepstruct::version_string) == std::to_string(DEEPSTRUCT_VERSION_MAJOR) + "." +
                                                       std::to_string(DEEPSTRUCT_VERSION_MINOR) + "." +
                                                       std::to_string(DEEPSTRUCT_VERSION_PATCH));
}

TEST_CASE("errors: the exception types and their messages", "[errors]") {
  try {
    DEEPSTRUCT_THROW(deepstruct::shape_error, "expected 3, found 4");
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()).find("expected 3, found 4 [unit-version.cpp:") == 0);
  }
  CHECK_THROWS_AS(DEEPSTRUCT_THROW(deepstruct::io_error, "x"), std::runtime_error);
  CHECK_THROWS_AS(DEEPSTRUCT_THROW(deepstruct::value_error, "x"), std::invalid_argument);
  const deepstruct::not_a_dag cycle("cycle through vertex 2", 2);
  CHECK(cycle.vertex() == 2);
  CHECK_NOTHROW([] { DEEPSTRUCT_CHECK(1 + 1 == 2, deepstruct::value_error, "never"); }());
  CHECK_THROWS_AS([] { DEEPSTRUCT_CHECK(1 + 1 == 3, deepstruct::value_error, "always"); }(), deepstruct::value_error);
}
