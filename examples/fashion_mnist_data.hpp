// Shared by the Fashion-MNIST examples (not part of the library): finds Debian's
// dataset-fashion-mnist files (gzipped or not), reads and standardises them, and says clearly
// what to install when they are missing.
#pragma once

#include <deepstruct/io/idx.hpp>

#include <Eigen/Core>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

namespace examples {

/// The standardisation every image gets, (pixel / 255 - mean) / stddev with the training set's
/// pixel mean and standard deviation: a saved model expects its inputs so.
inline constexpr double pixel_mean = 0.2860, pixel_stddev = 0.3530;

struct FashionMnist {
  Eigen::MatrixXf x_train, x_test;  // 784 x N, one standardised image per column
  deepstruct::Labels y_train, y_test;
};

/// The data set's file `base` in `dir`, compressed (Debian ships .gz) or not; "" if neither exists.
inline std::string find_file(const std::string& dir, const std::string& base) {
  for (const std::string& name : {base + ".gz", base}) {
    const std::string path = dir + "/" + name;
    if (std::ifstream(path).good()) return path;
  }
  return "";
}

/// Throws io_error naming the files unless `images` holds n images of 28 x 28 pixels and `labels`
/// n labels from 0 to 9: the examples' networks take 784 pixels and 10 classes.
inline void check_images_and_labels(const deepstruct::IdxArray& images, const std::string& images_path,
                                    const deepstruct::IdxArray& labels, const std::string& labels_path) {
  if (images.shape.size() != 3 || images.shape[1] != 28 || images.shape[2] != 28)
    throw deepstruct::io_error(images_path + ": expected images of 28 x 28 pixels (Fashion-MNIST), found the shape " +
                               deepstruct::detail::idx_shape_str(images.shape));
  if (labels.shape.size() != 1 || labels.shape[0] != images.shape[0])
    throw deepstruct::io_error(labels_path + ": expected " + std::to_string(images.shape[0]) + " labels, one per image of " +
                               images_path + ", found the shape " + deepstruct::detail::idx_shape_str(labels.shape));
  for (std::size_t i = 0; i < labels.data.size(); ++i)
    if (labels.data[i] > 9)
      throw deepstruct::io_error(labels_path + ": expected labels from 0 to 9 (the 10 classes), found " +
                                 std::to_string(labels.data[i]) + " for image " + std::to_string(i));
}

/// Reads the four files from `dir` into `data` (the first `train_samples` training images if
/// that is positive and smaller than the set) and prints their sizes. Returns 0, or 2 after a
/// message on stderr naming `program` when a file is missing or unreadable, or does not hold
/// Fashion-MNIST's 28 x 28 images and one label from 0 to 9 per image.
inline int load_fashion_mnist(const char* program, const std::string& dir, long train_samples, FashionMnist& data) {
  const char* names[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                          "t10k-labels-idx1-ubyte"};
  std::string paths[4];
  for (int i = 0; i < 4; ++i) {
    paths[i] = find_file(dir, names[i]);
    if (paths[i].empty()) {
      std::fprintf(stderr,
                   "%s: Fashion-MNIST not found: no %s(.gz) in %s\n"
                   "  install it with: apt-get install dataset-fashion-mnist   (or pass --data DIR)\n",
                   program, names[i], dir.c_str());
      return 2;
    }
  }
  const double mean = pixel_mean, stddev = pixel_stddev;
  try {
    for (int set = 0; set < 2; ++set) {
      const deepstruct::IdxArray images = deepstruct::read_idx(paths[2 * set]);
      const deepstruct::IdxArray labels = deepstruct::read_idx(paths[2 * set + 1]);
      check_images_and_labels(images, paths[2 * set], labels, paths[2 * set + 1]);
      (set == 0 ? data.x_train : data.x_test) = deepstruct::idx_images<float>(images, paths[2 * set], mean, stddev);
      (set == 0 ? data.y_train : data.y_test) = deepstruct::idx_labels(labels, paths[2 * set + 1]);
    }
  } catch (const deepstruct::io_error& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return 2;
  }
  if (train_samples > 0 && train_samples < data.x_train.cols()) {
    data.x_train.conservativeResize(Eigen::NoChange, train_samples);
    data.y_train.conservativeResize(train_samples);
  }
  std::printf("Fashion-MNIST: %ld training and %ld test images of %ld pixels\n", static_cast<long>(data.x_train.cols()),
              static_cast<long>(data.x_test.cols()), static_cast<long>(data.x_train.rows()));
  return 0;
}

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace examples
