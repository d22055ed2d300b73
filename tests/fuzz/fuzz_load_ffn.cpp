// Fuzz harness: load_npz into an existing MaskedDeepFFN, and load_ffn_npz. Every error must be
// an io_error, and a load that fails must leave every bit of the model's parameters and masks
// as they were (compared through state_dict before and after).
#include <deepstruct/model_io.hpp>

#include <string>

#include "fuzz_common.hpp"
#include "fuzz_models.hpp"

DEEPSTRUCT_FUZZ_TARGET(fuzz_load_ffn) {
  static const deepstruct::MaskedDeepFFN<float> pristine = fuzz::ffn_model();
  static const auto before = pristine.state_dict();
  const std::string path = fuzz::scratch_file("ffn.npz", data, size);
  deepstruct::MaskedDeepFFN<float> model = pristine;
  try {
    deepstruct::load_npz(model, path);
  } catch (const deepstruct::io_error&) {
    FUZZ_CHECK(fuzz::same_bits(model.state_dict(), before), "a failed load_npz changed the MaskedDeepFFN");
  }
  try {
    const auto loaded = deepstruct::load_ffn_npz<float>(path);
    FUZZ_CHECK(loaded.num_parameters() > 0, "load_ffn_npz returned an empty network");
  } catch (const deepstruct::io_error&) {
  }
  return 0;
}
