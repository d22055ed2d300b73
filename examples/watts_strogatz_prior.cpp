// A random structural prior as deepstruct users build them: a Watts-Strogatz small world oriented
// into a DAG, its structure analysis (text, and JSON with --json FILE), and an SVG picture.
//
// Usage: watts_strogatz_prior [--n N] [--k K] [--p P] [--seed S] [--svg FILE] [--json FILE]
#include <deepstruct/graph.hpp>

#include "example_cli.hpp"

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <limits>
#include <stdexcept>
#include <string>

namespace {

const char* const usage = "usage: watts_strogatz_prior [--n N] [--k K] [--p P] [--seed S] [--svg FILE] [--json FILE]";

using examples::whole_number;

int run(int argc, char** argv) {
  std::size_t n = 60, k = 4;
  double p = 0.3;
  std::uint64_t seed = 1;
  std::string svg = "watts_strogatz_prior.svg", json;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&] { return examples::option_value(argc, argv, i); };
    if (arg == "--n") n = static_cast<std::size_t>(whole_number(arg, value(), std::numeric_limits<std::size_t>::max()));
    else if (arg == "--k") k = static_cast<std::size_t>(whole_number(arg, value(), std::numeric_limits<std::size_t>::max()));
    else if (arg == "--p") p = examples::probability(arg, value());
    else if (arg == "--seed") seed = whole_number(arg, value(), std::numeric_limits<std::uint64_t>::max());
    else if (arg == "--svg") svg = value();
    else if (arg == "--json") json = value();
    else throw examples::usage_error("expected one of the options below, found '" + arg + "'");
  }
  deepstruct::Generator gen(seed);
  deepstruct::Dag prior = deepstruct::watts_strogatz(n, k, p, gen);
  deepstruct::assign_layers(prior);
  const deepstruct::StructureReport report = deepstruct::analyze(prior);
  std::printf("Watts-Strogatz prior: n = %zu, k = %zu, p = %.2f, seed %llu, oriented from lower to higher id\n\n", n, k, p,
              static_cast<unsigned long long>(seed));
  std::cout << deepstruct::to_text(report) << "\n";
  if (!json.empty()) {
    std::ofstream out(json);
    if (out) out << deepstruct::to_json(report) << "\n";
    if (out) out.close();
    if (!out)
      throw std::runtime_error("expected a file --json can write, found '" + json + "' cannot be written (" + std::strerror(errno) + ")");
    std::printf("wrote %s\n", json.c_str());
  }
  deepstruct::SvgOptions options;
  options.title = "Watts-Strogatz(" + std::to_string(n) + ", " + std::to_string(k) + ", " + std::to_string(p).substr(0, 4) +
                  ") as a layered DAG";
  deepstruct::write_svg(svg, prior, options);
  std::printf("wrote %s\n", svg.c_str());
  return 0;
}

}  // namespace

// Exit status: 0 done, 1 an error while running (a prior watts_strogatz refuses, a file that cannot
// be written), 2 a bad command line.
int main(int argc, char** argv) { return examples::guarded_main("watts_strogatz_prior", usage, run, argc, argv); }
