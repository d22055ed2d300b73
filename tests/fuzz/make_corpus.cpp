// Writes the seed corpora of the fuzz harnesses (tests/fuzz/corpus/<harness>/) with the library
// itself: small valid files and near-valid variants (truncated, a byte changed, a size field
// changed). Run from the repository root after changing a file format:
//   cmake --build build --target fuzz_make_corpus && build/tests/fuzz/fuzz_make_corpus tests/fuzz/corpus
// Compressed .npz seeds come from numpy (make_corpus.py), as numpy.savez_compressed writes them.
#include <deepstruct/graph.hpp>
#include <deepstruct/io/idx.hpp>
#include <deepstruct/model_io.hpp>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz_models.hpp"

namespace {

using Bytes = std::vector<unsigned char>;
std::string root;

void put(const std::string& harness, const std::string& name, const Bytes& bytes) {
  std::filesystem::create_directories(root + "/" + harness);
  std::ofstream out(root + "/" + harness + "/" + name, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}
void put(const std::string& harness, const std::string& name, const std::string& text) {
  put(harness, name, Bytes(text.begin(), text.end()));
}
Bytes read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}
/// A valid file, and near-valid variants: cut in half, one byte flipped in the middle.
void put_variants(const std::string& harness, const std::string& name, const Bytes& bytes) {
  put(harness, name, bytes);
  put(harness, name + ".half", Bytes(bytes.begin(), bytes.begin() + static_cast<long>(bytes.size() / 2)));
  Bytes flipped = bytes;
  if (!flipped.empty()) flipped[flipped.size() / 2] ^= 0x5A;
  put(harness, name + ".flip", flipped);
}

Bytes idx(const std::vector<std::uint32_t>& shape, std::size_t values, unsigned char type = 0x08) {
  Bytes b = {0, 0, type, static_cast<unsigned char>(shape.size())};
  for (const std::uint32_t d : shape)
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<unsigned char>((d >> s) & 0xFF));
  for (std::size_t i = 0; i < values; ++i) b.push_back(static_cast<unsigned char>(i * 37));
  return b;
}

Bytes npz_of(const deepstruct::NpzArchive& a, bool zip64 = false) {
  const std::string tmp = root + "/.tmp.npz";
  deepstruct::detail::save_npz(a, tmp, zip64);
  Bytes b = read(tmp);
  std::filesystem::remove(tmp);
  return b;
}

std::string graphml_of(const deepstruct::Dag& g, const deepstruct::GraphmlWriteOptions& o = {}) {
  std::ostringstream out;
  deepstruct::write_graphml(out, g, o);
  return out.str();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: " << argv[0] << " <corpus directory>\n";
    return 2;
  }
  root = argv[1];

  // ---- fuzz_idx
  put_variants("fuzz_idx", "labels", idx({10}, 10));
  put_variants("fuzz_idx", "images", idx({3, 4, 5}, 60));
  put("fuzz_idx", "four-dims", idx({2, 2, 2, 2}, 16));
  put("fuzz_idx", "empty-images", idx({0, 28, 28}, 0));
  put("fuzz_idx", "truncated", idx({4, 4, 4}, 20));
  put("fuzz_idx", "float-type", idx({4}, 4, 0x0D));

  // ---- fuzz_npz
  {
    deepstruct::NpzArchive a;
    Eigen::MatrixXf w(2, 3);
    w << 1, 2, 3, 4, 5, 6;
    a.set("w", deepstruct::from_matrix(w));
    a.set("b", deepstruct::from_vector(Eigen::VectorXd::LinSpaced(3, -1, 1)));
    Eigen::Matrix<bool, -1, -1> m(2, 2);
    m << true, false, false, true;
    a.set("layer._mask", deepstruct::from_mask(m));
    a.set("i64", deepstruct::from_vector(Eigen::Matrix<std::int64_t, -1, 1>::LinSpaced(4, 0, 3)));
    put_variants("fuzz_npz", "mixed", npz_of(a));
    put_variants("fuzz_npz", "mixed-zip64", npz_of(a, true));
    deepstruct::NpzArchive one;
    one.set("x", deepstruct::from_vector(Eigen::VectorXf::Ones(2)));
    put("fuzz_npz", "one", npz_of(one));
    put("fuzz_npz", "empty", npz_of(deepstruct::NpzArchive()));
  }

  // ---- fuzz_graphml
  {
    deepstruct::Generator gen(3);
    deepstruct::Dag ws = deepstruct::watts_strogatz(12, 4, 0.3, gen);
    const std::string text = graphml_of(ws);
    put_variants("fuzz_graphml", "watts_strogatz", Bytes(text.begin(), text.end()));
    deepstruct::GraphmlWriteOptions plain;
    plain.layer = false;
    plain.weight = false;
    put("fuzz_graphml", "plain", graphml_of(deepstruct::erdos_renyi_gnp(8, 0.4, gen), plain));
    deepstruct::DagBuilder b;
    b.add_edge("in", "h1");
    b.add_edge("in", "h2");
    b.add_edge("h1", "out");
    b.add_edge("h2", "out");
    put("fuzz_graphml", "labelled", graphml_of(b.build()));
    put("fuzz_graphml", "undirected",
        "<?xml version='1.0'?>\n<graphml xmlns=\"http://graphml.graphdrawing.org/xmlns\">\n"
        "<key id=\"l\" for=\"node\" attr.name=\"layer\" attr.type=\"int\"><default>0</default></key>\n"
        "<key id=\"w\" for=\"edge\" attr.name=\"weight\" attr.type=\"double\"/>\n"
        "<graph edgedefault=\"undirected\"><node id=\"a\"/><node id=\"b\"><data key=\"l\">1</data></node>\n"
        "<edge source=\"a\" target=\"b\"><data key=\"w\">-2.5e-3</data></edge>\n"
        "<edge source=\"b\" target=\"a\" directed=\"true\"/></graph></graphml>\n");
    put("fuzz_graphml", "xml-features",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE graphml [ <!ENTITY x \"y\"> ]>\n<!-- comment -->\n"
        "<graphml><graph edgedefault='directed'><?pi data?><node id=\"&#48;\"><![CDATA[text]]></node>"
        "<node id=\"1\" extra=\"&amp;&lt;&gt;&quot;&apos;&#x41;\"/><edge source=\"0\" target=\"1\"/></graph></graphml>\n");
  }

  // ---- fuzz_load_ffn: the harness's model (every key), another shape, and variants.
  {
    const auto model = fuzz::ffn_model();
    put_variants("fuzz_load_ffn", "fits", npz_of(deepstruct::to_npz(model.state_dict())));
    deepstruct::MaskedDeepFFN<float> other(4, 2, {3});
    put("fuzz_load_ffn", "other-shape", npz_of(deepstruct::to_npz(other.state_dict())));
    auto sd = model.state_dict();
    sd.matrices.erase(sd.matrices.begin());
    put("fuzz_load_ffn", "missing-key", npz_of(deepstruct::to_npz(sd)));
  }

  // ---- fuzz_load_dan_npz
  {
    const auto model = fuzz::dan_model();
    put_variants("fuzz_load_dan_npz", "fits", npz_of(deepstruct::to_npz(model.state_dict())));
    auto sd = model.state_dict();
    sd.masks.begin()->second.setConstant(false);
    put("fuzz_load_dan_npz", "masks-cleared", npz_of(deepstruct::to_npz(sd)));
    auto d = fuzz::dan_structure();
    d.connections.erase(d.connections.begin() + 1);  // no skip
    deepstruct::MaskedDeepDAN<float> no_skip(5, 3, d);
    put("fuzz_load_dan_npz", "no-skip", npz_of(deepstruct::to_npz(no_skip.state_dict())));
  }

  // ---- fuzz_load_dan: GraphML + "\n#NPZ#\n" + npz, as save_dan writes the pair.
  {
    deepstruct::Generator gen(5);
    for (const bool layer_norm : {false, true}) {
      const deepstruct::Dag g = deepstruct::watts_strogatz(8, 2, 0.5, gen);
      deepstruct::DANOptions o;
      o.use_layer_norm = layer_norm;
      const auto model = deepstruct::make_dan<float>(3, 2, g, o);
      const std::string prefix = root + "/.tmp-dan";
      deepstruct::save_dan(prefix, model, g);
      Bytes pair = read(prefix + ".graphml");
      const std::string sep = "\n#NPZ#\n";
      pair.insert(pair.end(), sep.begin(), sep.end());
      const Bytes npz = read(prefix + ".npz");
      pair.insert(pair.end(), npz.begin(), npz.end());
      std::filesystem::remove(prefix + ".graphml");
      std::filesystem::remove(prefix + ".npz");
      put_variants("fuzz_load_dan", layer_norm ? "watts_strogatz-ln" : "watts_strogatz", pair);
    }
  }
  std::cout << "wrote the corpora under " << root << "\n";
  return 0;
}
