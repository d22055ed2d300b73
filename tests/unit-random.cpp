// Tests of <deepstruct/random.hpp>: portable, seeded draws.
#include <deepstruct/random.hpp>

#include <algorithm>
#include <numeric>
#include <vector>

#include "test_support.hpp"

TEST_CASE("random: the same seed gives the same draws; values are fixed by the standard", "[random]") {
  deepstruct::Generator a(42), b(42), c(43);
  std::vector<double> da, db, dc;
  for (int i = 0; i < 100; ++i) {
    da.push_back(deepstruct::random::uniform01(a));
    db.push_back(deepstruct::random::uniform01(b));
    dc.push_back(deepstruct::random::uniform01(c));
  }
  CHECK(da == db);
  CHECK(da != dc);
  // std::mt19937_64's 10000th output for the default seed is fixed by the C++ standard, so
  // uniform01 (its top 53 bits) is the same with every standard library.
  deepstruct::Generator standard;
  standard.discard(9999);
  const std::uint64_t x = standard();
  CHECK(x == 9981545732273789042ull);
  deepstruct::Generator again;
  again.discard(9999);
  CHECK(deepstruct::random::uniform01(again) == static_cast<double>(x >> 11) * 0x1.0p-53);
}

TEST_CASE("random: uniform_index of an empty range is a value_error, not a division by zero", "[random]") {
  deepstruct::Generator gen(7);
  CHECK_THROWS_AS(deepstruct::random::uniform_index(gen, 0), deepstruct::value_error);
  CHECK_THROWS_WITH(deepstruct::random::uniform_index(gen, 0), test::contains("expected n > 0"));
  CHECK(deepstruct::random::uniform_index(gen, 1) == 0);
}

TEST_CASE("random: ranges and distributions", "[random]") {
  deepstruct::Generator gen(7);
  const int n = 200000;
  double sum = 0, sum_sq = 0, normal_sum = 0, normal_sq = 0;
  std::vector<int> counts(7, 0);
  int heads = 0;
  double lo = 1e9, hi = -1e9;
  for (int i = 0; i < n; ++i) {
    const double u = deepstruct::random::uniform(gen, -2.0, 3.0);
    lo = std::min(lo, u);
    hi = std::max(hi, u);
    sum += u;
    sum_sq += u * u;
    const auto k = deepstruct::random::uniform_index(gen, 7);
    ++counts[k < 7 ? k : 0];
    if (k >= 7) FAIL("uniform_index(7) gave " << k);
    heads += deepstruct::random::bernoulli(gen, 0.3);
    const double z = deepstruct::random::normal(gen);
    normal_sum += z;
    normal_sq += z * z;
  }
  CHECK(lo >= -2.0);
  CHECK(hi < 3.0);
  CHECK(lo < -1.99);
  CHECK(hi > 2.99);
  // Means and variances within about five standard errors.
  CHECK(sum / n == Approx(0.5).margin(5 * std::sqrt(25.0 / 12 / n)));
  CHECK(sum_sq / n - (sum / n) * (sum / n) == Approx(25.0 / 12).margin(0.03));
  for (int c : counts) CHECK(c == Approx(n / 7.0).margin(5 * std::sqrt(n / 7.0)));
  CHECK(heads == Approx(0.3 * n).margin(5 * std::sqrt(n * 0.21)));
  CHECK(normal_sum / n == Approx(0.0).margin(5 / std::sqrt(double(n))));
  CHECK(normal_sq / n == Approx(1.0).margin(0.02));
}

TEST_CASE("random: shuffle is a seeded permutation", "[random]") {
  std::vector<int> v(50), w(50);
  std::iota(v.begin(), v.end(), 0);
  std::iota(w.begin(), w.end(), 0);
  deepstruct::Generator a(1), b(1);
  deepstruct::random::shuffle(v.begin(), v.end(), a);
  deepstruct::random::shuffle(w.begin(), w.end(), b);
  CHECK(v == w);
  std::vector<int> sorted = v;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int> expected(50);
  std::iota(expected.begin(), expected.end(), 0);
  CHECK(sorted == expected);
  CHECK(v != expected);
  // Every position receives every value about equally often (first position over many shuffles).
  std::vector<int> first(5, 0);
  deepstruct::Generator gen(3);
  for (int t = 0; t < 50000; ++t) {
    std::vector<int> s{0, 1, 2, 3, 4};
    deepstruct::random::shuffle(s.begin(), s.end(), gen);
    ++first[s[0]];
  }
  for (int c : first) CHECK(c == Approx(10000).margin(5 * std::sqrt(8000.0)));
}
