// Fuzz harness: load_npz into an existing MaskedDeepDAN (with a skip connection and LayerNorm).
// Every error must be an io_error, and a failed load must leave every bit of the model's
// parameters and masks as they were.
#include <deepstruct/model_io.hpp>

#include <string>

#include "fuzz_common.hpp"
#include "fuzz_models.hpp"

DEEPSTRUCT_FUZZ_TARGET(fuzz_load_dan_npz) {
  static const deepstruct::MaskedDeepDAN<float> pristine = fuzz::dan_model();
  static const auto before = pristine.state_dict();
  const std::string path = fuzz::scratch_file("dan.npz", data, size);
  deepstruct::MaskedDeepDAN<float> model = pristine;
  try {
    deepstruct::load_npz(model, path);
  } catch (const deepstruct::io_error&) {
    FUZZ_CHECK(fuzz::same_bits(model.state_dict(), before), "a failed load_npz changed the MaskedDeepDAN");
  }
  return 0;
}
