// A random structural prior as deepstruct users build them: a Watts-Strogatz small world oriented
// into a DAG, its structure analysis (text, and JSON with --json FILE), and an SVG picture.
//
// Usage: watts_strogatz_prior [--n N] [--k K] [--p P] [--seed S] [--svg FILE] [--json FILE]
#include <deepstruct/graph.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  std::size_t n = 60, k = 4;
  double p = 0.3;
  std::uint64_t seed = 1;
  std::string svg = "watts_strogatz_prior.svg", json;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "usage: watts_strogatz_prior [--n N] [--k K] [--p P] [--seed S] [--svg FILE] [--json FILE]\n");
      return 2;
    }
    const std::string value = argv[++i];
    if (arg == "--n") n = std::stoul(value);
    else if (arg == "--k") k = std::stoul(value);
    else if (arg == "--p") p = std::stod(value);
    else if (arg == "--seed") seed = std::stoull(value);
    else if (arg == "--svg") svg = value;
    else if (arg == "--json") json = value;
    else {
      std::fprintf(stderr, "watts_strogatz_prior: unknown option %s\n", arg.c_str());
      return 2;
    }
  }
  try {
    deepstruct::Generator gen(seed);
    deepstruct::Dag prior = deepstruct::watts_strogatz(n, k, p, gen);
    deepstruct::assign_layers(prior);
    const deepstruct::StructureReport report = deepstruct::analyze(prior);
    std::printf("Watts-Strogatz prior: n = %zu, k = %zu, p = %.2f, seed %llu, oriented from lower to higher id\n\n", n, k, p,
                static_cast<unsigned long long>(seed));
    std::cout << deepstruct::to_text(report) << "\n";
    if (!json.empty()) {
      std::ofstream(json) << deepstruct::to_json(report) << "\n";
      std::printf("wrote %s\n", json.c_str());
    }
    deepstruct::SvgOptions options;
    options.title = "Watts-Strogatz(" + std::to_string(n) + ", " + std::to_string(k) + ", " + std::to_string(p).substr(0, 4) +
                    ") as a layered DAG";
    deepstruct::write_svg(svg, prior, options);
    std::printf("wrote %s\n", svg.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "watts_strogatz_prior: %s\n", e.what());
    return 1;
  }
  return 0;
}
