// Tests of <deepstruct/detail/atomic_file.hpp>: the temporary-file-and-rename helper every writer
// goes through. A failure at any step leaves an existing file as it was and no temporary file.
#include <deepstruct/detail/atomic_file.hpp>

#include <sys/stat.h>

#include <filesystem>
#include <stdexcept>
#include <string>

#include "file_faults.hpp"
#include "test_support.hpp"

namespace {

std::string dir_path(const std::string& name) {
  const std::string dir = std::string(DEEPSTRUCT_TEST_TMP_DIR) + "/atomic-" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

void write_text(const std::string& path, const std::string& text) {
  deepstruct::detail::write_file_atomically_text(path, text, "test: cannot write '" + path + "'");
}

std::string io_error_message(const std::function<void()>& f) {
  try {
    f();
  } catch (const deepstruct::io_error& e) {
    return e.what();
  }
  FAIL_CHECK("expected deepstruct::io_error, none thrown");
  return "";
}

}  // namespace

TEST_CASE("atomic_file: writes, replaces, keeps the replaced file's permissions", "[atomic_file]") {
  const std::string dir = dir_path("basic");
  const std::string path = dir + "/a.txt";
  write_text(path, "first");
  CHECK(test::file_text(path) == "first");
  ::chmod(path.c_str(), 0640);
  write_text(path, "second, longer");
  CHECK(test::file_text(path) == "second, longer");
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0640);
  write_text(path, "");
  CHECK(test::file_text(path).empty());
  CHECK(test::temporary_files(dir).empty());
  // A relative path (no directory part) works too.
  const auto cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir);
  write_text("relative.txt", "here");
  std::filesystem::current_path(cwd);
  CHECK(test::file_text(dir + "/relative.txt") == "here");
}

TEST_CASE("atomic_file: a write past the file size limit leaves the old file (EFBIG)", "[atomic_file]") {
  const std::string dir = dir_path("fsize");
  const std::string path = dir + "/big.txt";
  write_text(path, "old content");
  const std::string big(64 * 1024, 'x');
  std::string message;
  test::with_file_size_limit(4096, [&] { message = io_error_message([&] { write_text(path, big); }); });
  CHECK(test::file_text(path) == "old content");
  CHECK(test::temporary_files(dir).empty());
  CHECK_THAT(message, test::contains("test: cannot write '" + path + "'"));
  CHECK_THAT(message, test::contains("File too large"));
  CHECK_THAT(message, test::contains("after 4096 bytes"));
  CHECK_THAT(message, test::contains("left as it was"));
  // A new file that cannot be written is not created at all.
  test::with_file_size_limit(4096, [&] { CHECK_THROWS_AS(write_text(dir + "/new.txt", big), deepstruct::io_error); });
  CHECK_FALSE(std::filesystem::exists(dir + "/new.txt"));
  CHECK(test::temporary_files(dir).empty());
}

TEST_CASE("atomic_file: an exception from the writer removes the temporary file", "[atomic_file]") {
  const std::string dir = dir_path("throws");
  const std::string path = dir + "/x.bin";
  write_text(path, "kept");
  CHECK_THROWS_AS(deepstruct::detail::write_file_atomically(path,
                                                            [](deepstruct::detail::AtomicWriter& out) {
                                                              out.write(std::string(1000, 'y'));
                                                              CHECK(out.written() == 1000);
                                                              throw std::runtime_error("stop");
                                                            }),
                  std::runtime_error);
  CHECK(test::file_text(path) == "kept");
  CHECK(test::temporary_files(dir).empty());
}

TEST_CASE("atomic_file: errors name the path, the step and errno's reason", "[atomic_file]") {
  const std::string dir = dir_path("errors");
  // The target is a directory: the rename fails, the directory stays.
  const std::string target = dir + "/is-a-directory";
  std::filesystem::create_directories(target + "/inside");
  const std::string renamed = io_error_message([&] { write_text(target, "text"); });
  CHECK_THAT(renamed, test::contains("'" + target + "'"));
  CHECK_THAT(renamed, test::contains("renaming the temporary file"));
  CHECK_THAT(renamed, test::contains("Is a directory"));
  CHECK(std::filesystem::is_directory(target + "/inside"));
  CHECK(test::temporary_files(dir).empty());
  // No such directory: the temporary file cannot be created.
  const std::string missing = dir + "/no/such/dir/file.txt";
  const std::string created = io_error_message([&] { write_text(missing, "text"); });
  CHECK_THAT(created, test::contains("cannot create the temporary file"));
  CHECK_THAT(created, test::contains("No such file or directory"));
}

TEST_CASE("atomic_file: a full file system (small tmpfs) leaves the old file", "[atomic_file][tmpfs]") {
  test::SmallTmpfs fs(dir_path("tmpfs") + "/mnt", 64 * 1024);
  if (!fs.ok()) {
    WARN("cannot mount a tmpfs here (not root?): the full-disk test is skipped; the file size limit test covers the same path");
    return;
  }
  const std::string path = fs.path("model.txt");
  write_text(path, "the old file");
  CHECK(fs.fill() > 0);
  const std::string message = io_error_message([&] { write_text(path, std::string(8192, 'z')); });
  CHECK_THAT(message, test::contains("No space left on device"));
  CHECK(test::file_text(path) == "the old file");
  std::filesystem::remove(fs.path("filler"));
  CHECK(test::temporary_files(fs.path("")).empty());
  write_text(path, "room again");  // and once there is room, it works
  CHECK(test::file_text(path) == "room again");
}
