// SPDX-License-Identifier: MIT
#pragma once

/// \file io/detail/zip.hpp
/// The ZIP layer under <deepstruct/io/npz.hpp>: CRC-32, the central directory (with ZIP64 sizes
/// and offsets), stored and deflated members, and an archive writer for stored members that
/// writes through detail::write_file_atomically (a temporary file beside the target, renamed
/// over it). Nothing here knows about .npy.
///
/// Every length and offset read from a file is checked against the file size before it is used;
/// a malformed file throws deepstruct::io_error naming the path and what is wrong.
///
/// Deflated members (numpy.savez_compressed) need zlib: define DEEPSTRUCT_WITH_ZLIB and link
/// zlib (CMake: ZLIB::ZLIB). Without it, such a member throws io_error.

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "deepstruct/detail/atomic_file.hpp"
#include "deepstruct/errors.hpp"

#if defined(DEEPSTRUCT_WITH_ZLIB)
#if __has_include(<zlib.h>)
#include <zlib.h>
#else
#error "DEEPSTRUCT_WITH_ZLIB is defined but <zlib.h> is not found: install zlib or undefine DEEPSTRUCT_WITH_ZLIB"
#endif
#endif

namespace deepstruct {
namespace detail {
namespace zip {

// ---- CRC-32 (ISO 3309, the one ZIP uses) ---------------------------------------------------------

constexpr std::array<std::uint32_t, 256> make_crc32_table() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1u) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}

inline constexpr std::array<std::uint32_t, 256> crc32_table = make_crc32_table();

/// Running CRC-32: update() over the bytes in order, then value().
class Crc32 {
 public:
  void update(const unsigned char* bytes, std::size_t n) {
    std::uint32_t c = state_;
    for (std::size_t i = 0; i < n; ++i) c = crc32_table[(c ^ bytes[i]) & 0xFFu] ^ (c >> 8);
    state_ = c;
  }
  std::uint32_t value() const { return ~state_; }

 private:
  std::uint32_t state_ = 0xFFFFFFFFu;
};

inline std::uint32_t crc32(const unsigned char* bytes, std::size_t n) {
  Crc32 crc;
  crc.update(bytes, n);
  return crc.value();
}

// ---- little-endian fields -------------------------------------------------------------------------

inline std::uint16_t get_u16(const unsigned char* p) {
  return static_cast<std::uint16_t>(p[0] | (p[1] << 8));
}
inline std::uint32_t get_u32(const unsigned char* p) {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
         (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}
inline std::uint64_t get_u64(const unsigned char* p) {
  return static_cast<std::uint64_t>(get_u32(p)) | (static_cast<std::uint64_t>(get_u32(p + 4)) << 32);
}
inline void put_u16(std::vector<unsigned char>& out, std::uint32_t v) {
  out.push_back(static_cast<unsigned char>(v & 0xFFu));
  out.push_back(static_cast<unsigned char>((v >> 8) & 0xFFu));
}
inline void put_u32(std::vector<unsigned char>& out, std::uint32_t v) {
  put_u16(out, v & 0xFFFFu);
  put_u16(out, v >> 16);
}
inline void put_u64(std::vector<unsigned char>& out, std::uint64_t v) {
  put_u32(out, static_cast<std::uint32_t>(v & 0xFFFFFFFFu));
  put_u32(out, static_cast<std::uint32_t>(v >> 32));
}

// ---- record layout --------------------------------------------------------------------------------

inline constexpr std::uint32_t local_header_sig = 0x04034b50u;
inline constexpr std::uint32_t central_header_sig = 0x02014b50u;
inline constexpr std::uint32_t eocd_sig = 0x06054b50u;
inline constexpr std::uint32_t zip64_eocd_sig = 0x06064b50u;
inline constexpr std::uint32_t zip64_locator_sig = 0x07064b50u;
inline constexpr std::size_t local_header_size = 30;
inline constexpr std::size_t central_header_size = 46;
inline constexpr std::size_t eocd_size = 22;
inline constexpr std::size_t zip64_eocd_size = 56;
inline constexpr std::size_t zip64_locator_size = 20;
inline constexpr std::uint16_t zip64_extra_id = 0x0001;
inline constexpr std::uint32_t u32_max = 0xFFFFFFFFu;
inline constexpr std::uint16_t u16_max = 0xFFFFu;
inline constexpr std::uint16_t method_stored = 0;
inline constexpr std::uint16_t method_deflated = 8;
/// 1980-01-01 00:00:00, the earliest DOS date; numpy.savez writes the same, so files are
/// byte-for-byte reproducible.
inline constexpr std::uint16_t dos_date_1980 = (1u << 5) | 1u;

/// "npz file 'path'" - the start of every message about a file.
inline std::string where(const std::string& path) { return "npz file '" + path + "'"; }

inline std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", static_cast<unsigned>(v));
  return buf;
}

// ---- reading --------------------------------------------------------------------------------------

/// A file (or a buffer in memory) read at known offsets; every read is bounds-checked.
class InputFile {
 public:
  explicit InputFile(const std::string& path) : path_(path) {
    errno = 0;
    in_.open(path, std::ios::binary);
    if (!in_)
      DEEPSTRUCT_THROW(io_error, "cannot open " + where(path) + " for reading: " + errno_text(errno));
    in_.seekg(0, std::ios::end);
    const std::streamoff end = in_.tellg();
    if (!in_ || end < 0) DEEPSTRUCT_THROW(io_error, "cannot read " + where(path) + ": cannot determine its size");
    size_ = static_cast<std::uint64_t>(end);
    if (size_ != 0) {  // a directory opens and seeks, but does not read
      in_.seekg(0, std::ios::beg);
      errno = 0;
      char first = 0;
      in_.read(&first, 1);
      if (!in_) DEEPSTRUCT_THROW(io_error, "cannot read " + where(path) + ": " + errno_text(errno));
    }
  }

  /// The `size` bytes at `data` (not copied: they must outlive the reader), named `name` in messages.
  InputFile(const unsigned char* data, std::size_t size, const std::string& name)
      : path_(name), memory_(data), size_(size) {}

  const std::string& path() const { return path_; }
  std::uint64_t size() const { return size_; }

  /// True when [offset, offset + n) lies inside the file.
  bool contains(std::uint64_t offset, std::uint64_t n) const { return offset <= size_ && n <= size_ - offset; }

  /// Throws unless [offset, offset + n) lies inside the file; `what` names the record.
  void require(std::uint64_t offset, std::uint64_t n, const std::string& what) const {
    if (!contains(offset, n))
      DEEPSTRUCT_THROW(io_error, where(path_) + ": truncated or corrupt: expected " + what + " at bytes " +
                                     std::to_string(offset) + " to " + std::to_string(offset) + " + " +
                                     std::to_string(n) + ", found a file of " + std::to_string(size_) + " bytes");
  }

  /// Reads n bytes at offset into dst; `what` names the record for the message.
  void read_at(std::uint64_t offset, unsigned char* dst, std::uint64_t n, const std::string& what) {
    require(offset, n, what);
    if (n == 0) return;
    if (memory_ != nullptr) {
      std::memcpy(dst, memory_ + offset, static_cast<std::size_t>(n));
      return;
    }
    in_.clear();
    in_.seekg(static_cast<std::streamoff>(offset), std::ios::beg);
    // istream::read takes a signed count; read in chunks that fit it.
    const std::uint64_t chunk_max = static_cast<std::uint64_t>(std::numeric_limits<std::streamsize>::max());
    std::uint64_t done = 0;
    while (in_ && done < n) {
      const std::uint64_t chunk = std::min<std::uint64_t>(n - done, chunk_max);
      in_.read(reinterpret_cast<char*>(dst + done), static_cast<std::streamsize>(chunk));
      done += static_cast<std::uint64_t>(in_.gcount());
    }
    if (done != n)
      DEEPSTRUCT_THROW(io_error, "cannot read " + where(path_) + ": " + what + ": expected " + std::to_string(n) +
                                     " bytes at offset " + std::to_string(offset) + ", read " + std::to_string(done));
  }

  std::vector<unsigned char> read_vector(std::uint64_t offset, std::uint64_t n, const std::string& what) {
    require(offset, n, what);  // n fits in the file, so it fits in memory as far as the file goes
    std::vector<unsigned char> out(static_cast<std::size_t>(n));
    read_at(offset, out.data(), n, what);
    return out;
  }

 private:
  std::string path_;
  std::ifstream in_;
  const unsigned char* memory_ = nullptr;
  std::uint64_t size_ = 0;
};

/// One member as the central directory describes it.
struct Entry {
  std::string name;
  std::uint16_t flags = 0;
  std::uint16_t method = 0;
  std::uint32_t crc32 = 0;
  std::uint64_t compressed_size = 0;
  std::uint64_t uncompressed_size = 0;
  std::uint64_t local_header_offset = 0;
  std::uint64_t data_offset = 0;  ///< first byte of the member's data, after its local header
};

/// The central directory: position, size and entry count (ZIP64 values when present).
struct Directory {
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
  std::uint64_t entries = 0;
  std::uint64_t end = 0;  ///< where the records after the central directory start
};

inline Directory read_end_records(InputFile& file) {
  const std::string& path = file.path();
  const std::uint64_t size = file.size();
  if (size < eocd_size) {
    if (size >= 6) {
      unsigned char magic[6];
      file.read_at(0, magic, 6, "magic");
      if (std::memcmp(magic, "\x93NUMPY", 6) == 0)
        DEEPSTRUCT_THROW(io_error, where(path) + ": expected a zip archive (.npz), found a single .npy array");
    }
    DEEPSTRUCT_THROW(io_error, where(path) + ": not a zip archive: expected at least " + std::to_string(eocd_size) +
                                   " bytes (end-of-central-directory record), found " + std::to_string(size));
  }
  // The end record sits at the very end, followed only by a comment of at most 65535 bytes.
  const std::uint64_t tail_size = std::min<std::uint64_t>(size, eocd_size + u16_max);
  const std::uint64_t tail_start = size - tail_size;
  const std::vector<unsigned char> tail = file.read_vector(tail_start, tail_size, "end of archive");
  std::uint64_t eocd = size;  // absolute position; size means not found
  for (std::size_t i = static_cast<std::size_t>(tail_size - eocd_size) + 1; i-- > 0;) {
    if (get_u32(&tail[i]) != eocd_sig) continue;
    const std::uint64_t comment = get_u16(&tail[i + 20]);
    if (i + eocd_size + comment <= tail_size) {
      eocd = tail_start + i;
      break;
    }
  }
  if (eocd == size) {
    unsigned char magic[6];
    file.read_at(0, magic, 6, "magic");
    if (std::memcmp(magic, "\x93NUMPY", 6) == 0)
      DEEPSTRUCT_THROW(io_error, where(path) + ": expected a zip archive (.npz), found a single .npy array");
    DEEPSTRUCT_THROW(io_error, where(path) + ": not a zip archive (or truncated): expected an end-of-central-"
                                   "directory record in the last bytes, found none");
  }
  const unsigned char* e = &tail[static_cast<std::size_t>(eocd - tail_start)];
  const std::uint16_t disk = get_u16(e + 4), cd_disk = get_u16(e + 6);
  Directory dir;
  dir.entries = get_u16(e + 10);
  dir.size = get_u32(e + 12);
  dir.offset = get_u32(e + 16);
  dir.end = eocd;
  const std::uint16_t entries_on_disk = get_u16(e + 8);
  if ((disk != 0 && disk != u16_max) || (cd_disk != 0 && cd_disk != u16_max) ||
      (entries_on_disk != dir.entries))
    DEEPSTRUCT_THROW(io_error, where(path) + ": expected a single-file zip archive, found a multi-disk (split) one");

  // ZIP64: a locator right before the end record points to the ZIP64 end record.
  if (eocd >= zip64_locator_size) {
    unsigned char loc[zip64_locator_size];
    file.read_at(eocd - zip64_locator_size, loc, zip64_locator_size, "ZIP64 locator");
    if (get_u32(loc) == zip64_locator_sig) {
      const std::uint32_t z_disk = get_u32(loc + 4), total_disks = get_u32(loc + 16);
      const std::uint64_t z_offset = get_u64(loc + 8);
      if (z_disk != 0 || total_disks > 1)
        DEEPSTRUCT_THROW(io_error, where(path) + ": expected a single-file zip archive, found a multi-disk (split) one");
      if (z_offset > eocd - zip64_locator_size || eocd - zip64_locator_size - z_offset < zip64_eocd_size)
        DEEPSTRUCT_THROW(io_error, where(path) + ": corrupt ZIP64 locator: expected the ZIP64 end record before "
                                       "byte " + std::to_string(eocd - zip64_locator_size) + ", found offset " +
                                       std::to_string(z_offset));
      unsigned char z[zip64_eocd_size];
      file.read_at(z_offset, z, zip64_eocd_size, "ZIP64 end record");
      if (get_u32(z) != zip64_eocd_sig)
        DEEPSTRUCT_THROW(io_error, where(path) + ": corrupt ZIP64 end record at byte " + std::to_string(z_offset) +
                                       ": expected signature 0x06064b50, found " + hex32(get_u32(z)));
      if (get_u32(z + 16) != 0 || get_u32(z + 20) != 0 || get_u64(z + 24) != get_u64(z + 32))
        DEEPSTRUCT_THROW(io_error, where(path) + ": expected a single-file zip archive, found a multi-disk (split) one");
      dir.entries = get_u64(z + 32);
      dir.size = get_u64(z + 40);
      dir.offset = get_u64(z + 48);
      dir.end = z_offset;
    }
  }
  if (dir.offset > dir.end || dir.size > dir.end - dir.offset)
    DEEPSTRUCT_THROW(io_error, where(path) + ": truncated or corrupt: expected the central directory (" +
                                   std::to_string(dir.size) + " bytes at offset " + std::to_string(dir.offset) +
                                   ") before byte " + std::to_string(dir.end) + ", found it outside");
  if (dir.entries > dir.size / central_header_size)
    DEEPSTRUCT_THROW(io_error, where(path) + ": corrupt central directory: " + std::to_string(dir.entries) +
                                   " entries cannot fit in " + std::to_string(dir.size) + " bytes");
  return dir;
}

/// Reads the ZIP64 extended-information extra field of a central header: the 64-bit values of
/// the fields whose 32-bit value is 0xFFFFFFFF, in the order uncompressed, compressed, offset.
inline void apply_zip64_extra(const unsigned char* extra, std::size_t extra_len, Entry& entry,
                              bool uncompressed_marked, bool compressed_marked, bool offset_marked,
                              const std::string& path) {
  std::size_t pos = 0;
  while (pos + 4 <= extra_len) {
    const std::uint16_t id = get_u16(extra + pos), len = get_u16(extra + pos + 2);
    if (len > extra_len - pos - 4)
      DEEPSTRUCT_THROW(io_error, where(path) + ": member '" + entry.name + "': corrupt extra field: expected " +
                                     std::to_string(len) + " bytes, found " + std::to_string(extra_len - pos - 4));
    if (id == zip64_extra_id) {
      const unsigned char* f = extra + pos + 4;
      const std::size_t need = 8 * static_cast<std::size_t>(int{uncompressed_marked} + int{compressed_marked} +
                                                             int{offset_marked});
      if (len < need)
        DEEPSTRUCT_THROW(io_error, where(path) + ": member '" + entry.name + "': corrupt ZIP64 extra field: expected " +
                                       std::to_string(need) + " bytes, found " + std::to_string(len));
      if (uncompressed_marked) entry.uncompressed_size = get_u64(f), f += 8;
      if (compressed_marked) entry.compressed_size = get_u64(f), f += 8;
      if (offset_marked) entry.local_header_offset = get_u64(f);
      return;
    }
    pos += 4 + std::size_t{len};
  }
}

/// Every entry of the central directory, with its data offset resolved through its local
/// header. Checks signatures, bounds, encryption, compression method and name agreement.
inline std::vector<Entry> read_directory(InputFile& file) {
  const std::string& path = file.path();
  const Directory dir = read_end_records(file);
  const std::vector<unsigned char> cd = file.read_vector(dir.offset, dir.size, "central directory");
  std::vector<Entry> entries;
  entries.reserve(static_cast<std::size_t>(dir.entries));
  std::size_t pos = 0;
  for (std::uint64_t k = 0; k < dir.entries; ++k) {
    const std::string nth = "central directory entry " + std::to_string(k + 1) + " of " + std::to_string(dir.entries);
    if (cd.size() - pos < central_header_size || get_u32(&cd[pos]) != central_header_sig)
      DEEPSTRUCT_THROW(io_error, where(path) + ": corrupt central directory: " + nth +
                                     ": expected a central file header (signature 0x02014b50), found " +
                                     (cd.size() - pos < central_header_size ? std::string("the end of the directory")
                                                                            : std::string("other bytes")));
    const unsigned char* h = &cd[pos];
    Entry entry;
    entry.flags = get_u16(h + 8);
    entry.method = get_u16(h + 10);
    entry.crc32 = get_u32(h + 16);
    entry.compressed_size = get_u32(h + 20);
    entry.uncompressed_size = get_u32(h + 24);
    const std::size_t name_len = get_u16(h + 28), extra_len = get_u16(h + 30), comment_len = get_u16(h + 32);
    entry.local_header_offset = get_u32(h + 42);
    if (cd.size() - pos - central_header_size < name_len + extra_len + comment_len)
      DEEPSTRUCT_THROW(io_error, where(path) + ": corrupt central directory: " + nth + ": name, extra field and "
                                     "comment run past the end of the directory");
    entry.name.assign(reinterpret_cast<const char*>(h + central_header_size), name_len);
    apply_zip64_extra(h + central_header_size + name_len, extra_len, entry, entry.uncompressed_size == u32_max,
                      entry.compressed_size == u32_max, entry.local_header_offset == u32_max, path);
    pos += central_header_size + name_len + extra_len + comment_len;

    const std::string member = where(path) + ": member '" + entry.name + "'";
    if ((entry.flags & 0x0001u) != 0 || (entry.flags & 0x0040u) != 0)
      DEEPSTRUCT_THROW(io_error, member + ": expected an unencrypted member, found an encrypted one");
    if (entry.method != method_stored && entry.method != method_deflated)
      DEEPSTRUCT_THROW(io_error, member + ": expected compression method 0 (stored) or 8 (deflated, "
                                          "numpy.savez_compressed), found method " + std::to_string(entry.method));
    if (entry.method == method_stored && entry.compressed_size != entry.uncompressed_size)
      DEEPSTRUCT_THROW(io_error, member + ": stored member: expected equal compressed and uncompressed sizes, found " +
                                     std::to_string(entry.compressed_size) + " and " +
                                     std::to_string(entry.uncompressed_size));

    // The local header repeats the name; its extra field may differ from the central one.
    unsigned char local[local_header_size];
    if (entry.local_header_offset > dir.offset || dir.offset - entry.local_header_offset < local_header_size)
      DEEPSTRUCT_THROW(io_error, member + ": corrupt: expected its local header before the central directory "
                                          "(byte " + std::to_string(dir.offset) + "), found offset " +
                                          std::to_string(entry.local_header_offset));
    file.read_at(entry.local_header_offset, local, local_header_size, "local header of '" + entry.name + "'");
    if (get_u32(local) != local_header_sig)
      DEEPSTRUCT_THROW(io_error, member + ": corrupt: expected a local file header (signature 0x04034b50) at byte " +
                                     std::to_string(entry.local_header_offset) + ", found other bytes");
    const std::uint64_t local_name_len = get_u16(local + 26), local_extra_len = get_u16(local + 28);
    const std::uint64_t header_end = entry.local_header_offset + local_header_size + local_name_len + local_extra_len;
    if (header_end > dir.offset)
      DEEPSTRUCT_THROW(io_error, member + ": corrupt: its local header runs into the central directory");
    if (local_name_len != name_len ||
        file.read_vector(entry.local_header_offset + local_header_size, local_name_len, "local name") !=
            std::vector<unsigned char>(entry.name.begin(), entry.name.end()))
      DEEPSTRUCT_THROW(io_error, member + ": corrupt: the local header names a different member");
    entry.data_offset = header_end;
    if (entry.compressed_size > dir.offset - header_end)
      DEEPSTRUCT_THROW(io_error, member + ": truncated or corrupt: expected " + std::to_string(entry.compressed_size) +
                                     " bytes of data at offset " + std::to_string(header_end) +
                                     ", found only " + std::to_string(dir.offset - header_end) +
                                     " before the central directory");
    entries.push_back(std::move(entry));
  }
  // No two members may share bytes: a member's local header and data end before the next
  // member's local header (in file order) starts. Overlapping members let a small file expand
  // into many large arrays (numpy refuses them too: "Overlapped entries (possible zip bomb)").
  std::vector<const Entry*> by_offset;
  by_offset.reserve(entries.size());
  for (const Entry& e : entries) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const Entry* a, const Entry* b) { return a->local_header_offset < b->local_header_offset; });
  for (std::size_t k = 0; k + 1 < by_offset.size(); ++k) {
    const Entry& a = *by_offset[k];
    const Entry& b = *by_offset[k + 1];
    const std::uint64_t end = a.data_offset + a.compressed_size;  // <= dir.offset, checked above
    if (end > b.local_header_offset)
      DEEPSTRUCT_THROW(io_error, where(path) + ": member '" + a.name + "' (bytes " + std::to_string(a.local_header_offset) + " to " +
                                     std::to_string(end) + ") overlaps member '" + b.name + "' (starting at byte " +
                                     std::to_string(b.local_header_offset) +
                                     "): expected members that do not share bytes, found overlapped entries (possible zip bomb)");
  }
  return entries;
}

/// Whether this build reads deflated members (DEEPSTRUCT_WITH_ZLIB and zlib).
inline constexpr bool has_zlib() {
#if defined(DEEPSTRUCT_WITH_ZLIB)
  return true;
#else
  return false;
#endif
}

/// The uncompressed bytes of one member, read piece by piece: a stored member straight from the
/// file, a deflated one inflated as it is read (compressed input in 64 KiB chunks). Nothing is
/// allocated in proportion to the sizes the headers claim: the caller's buffers grow with the
/// bytes the member really yields. finish() checks that the member ends where its header says
/// and that the CRC-32 matches.
class MemberReader {
 public:
  MemberReader(InputFile& file, const Entry& entry)
      : file_(file), entry_(entry), member_(where(file.path()) + ": member '" + entry.name + "'") {
    if (entry.method == method_deflated) {
#if defined(DEEPSTRUCT_WITH_ZLIB)
      // Deflate cannot expand beyond 1032:1; a larger claim is a corrupt (or hostile) header.
      if (entry.uncompressed_size / 1032 > entry.compressed_size + 1)
        DEEPSTRUCT_THROW(io_error, member_ + ": corrupt: " + std::to_string(entry.compressed_size) + " deflated bytes at offset " +
                                       std::to_string(entry.data_offset) + " cannot hold the " +
                                       std::to_string(entry.uncompressed_size) + " bytes the header claims");
      if (inflateInit2(&zs_, -MAX_WBITS) != Z_OK) DEEPSTRUCT_THROW(io_error, member_ + ": zlib inflateInit2 failed");
      inflating_ = true;
#else
      DEEPSTRUCT_THROW(io_error, member_ + ": compressed npz (numpy.savez_compressed) needs zlib: define "
                                           "DEEPSTRUCT_WITH_ZLIB and link zlib, or save with numpy.savez");
#endif
    }
  }
  MemberReader(const MemberReader&) = delete;
  MemberReader& operator=(const MemberReader&) = delete;
  ~MemberReader() {
#if defined(DEEPSTRUCT_WITH_ZLIB)
    if (inflating_) inflateEnd(&zs_);
#endif
  }

  /// "npz file 'path': member 'name'", the start of messages about the member.
  const std::string& name() const { return member_; }
  /// The uncompressed size the central directory claims.
  std::uint64_t claimed_size() const { return entry_.uncompressed_size; }
  /// Uncompressed bytes delivered so far.
  std::uint64_t delivered() const { return out_pos_; }

  /// Up to n uncompressed bytes into dst, never past the claimed size; fewer only when the member
  /// ends (then finish() reports the shortfall). Throws io_error for a corrupt or truncated stream.
  std::size_t read(unsigned char* dst, std::size_t n) {
    const std::uint64_t left = entry_.uncompressed_size - out_pos_;
    if (static_cast<std::uint64_t>(n) > left) n = static_cast<std::size_t>(left);
    if (n == 0) return 0;
    std::size_t got = 0;
    if (entry_.method == method_stored) {
      file_.read_at(entry_.data_offset + out_pos_, dst, n, "data of '" + entry_.name + "'");
      got = n;
    } else {
      got = inflate_into(dst, n);
    }
    crc_.update(dst, got);
    out_pos_ += got;
    return got;
  }

  /// Throws io_error unless the member ended exactly at its claimed size (no more, no fewer
  /// bytes; for a deflated member, the end of the deflate stream) with the CRC-32 its header has.
  void finish() {
    if (out_pos_ != entry_.uncompressed_size)
      DEEPSTRUCT_THROW(io_error, member_ + ": corrupt " + std::string(inflating_ ? "deflate stream" : "member") +
                                     ": expected " + std::to_string(entry_.uncompressed_size) + " bytes, " +
                                     (inflating_ ? "inflated " : "read ") + std::to_string(out_pos_) + zlib_note());
    if (inflating_ && !stream_end_) {
      unsigned char spare = 0;  // one byte past the claimed size: detects a stream that is too long
      if (inflate_into(&spare, 1, true) != 0)
        DEEPSTRUCT_THROW(io_error, member_ + ": corrupt deflate stream: expected " + std::to_string(entry_.uncompressed_size) +
                                       " bytes, inflated more");
      if (!stream_end_)
        DEEPSTRUCT_THROW(io_error, member_ + ": corrupt deflate stream: expected its end after " +
                                       std::to_string(entry_.uncompressed_size) + " bytes, found none" + zlib_note());
    }
    const std::uint32_t crc = crc_.value();
    if (crc != entry_.crc32)
      DEEPSTRUCT_THROW(io_error, member_ + ": CRC-32 mismatch (corrupt data): expected " + hex32(entry_.crc32) + ", found " + hex32(crc));
  }

 private:
  InputFile& file_;
  const Entry& entry_;
  std::string member_;
  Crc32 crc_;
  std::uint64_t out_pos_ = 0;
  bool inflating_ = false;
  bool stream_end_ = false;
#if defined(DEEPSTRUCT_WITH_ZLIB)
  z_stream zs_{};
  std::vector<unsigned char> packed_;  // the current chunk of compressed input
  std::uint64_t in_pos_ = 0;           // compressed bytes read from the file so far
  std::string zmsg_;
#endif

  std::string zlib_note() const {
#if defined(DEEPSTRUCT_WITH_ZLIB)
    if (!zmsg_.empty()) return " (zlib: " + zmsg_ + ")";
#endif
    return std::string();
  }

  // Inflates up to n bytes into dst; stops early at the end of the stream. At the end of the
  // compressed data without the stream's end, throws (truncated) unless `probe`.
  std::size_t inflate_into(unsigned char* dst, std::size_t n, bool probe = false) {
#if defined(DEEPSTRUCT_WITH_ZLIB)
    constexpr std::size_t chunk = std::size_t{1} << 16;
    std::size_t got = 0;
    while (got < n && !stream_end_) {
      if (zs_.avail_in == 0 && in_pos_ < entry_.compressed_size) {
        const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(chunk, entry_.compressed_size - in_pos_));
        packed_.resize(take);
        file_.read_at(entry_.data_offset + in_pos_, packed_.data(), take, "data of '" + entry_.name + "'");
        in_pos_ += take;
        zs_.next_in = packed_.data();
        zs_.avail_in = static_cast<uInt>(take);
      }
      const std::size_t room = std::min<std::size_t>(n - got, std::size_t{1} << 30);  // zlib counts in uInt
      zs_.next_out = dst + got;
      zs_.avail_out = static_cast<uInt>(room);
      const uInt in_before = zs_.avail_in;
      const int rc = inflate(&zs_, Z_NO_FLUSH);
      const std::size_t produced = room - zs_.avail_out;
      got += produced;
      if (zs_.msg != nullptr) zmsg_ = zs_.msg;
      if (rc == Z_STREAM_END) {
        stream_end_ = true;
        break;
      }
      if (rc != Z_OK && rc != Z_BUF_ERROR)
        DEEPSTRUCT_THROW(io_error, member_ + ": corrupt deflate stream at byte " + std::to_string(out_pos_ + got) +
                                       " of its data (compressed data at offset " + std::to_string(entry_.data_offset) + ")" +
                                       zlib_note());
      if (produced == 0 && zs_.avail_in == in_before && in_pos_ >= entry_.compressed_size) {  // no progress, no input left
        if (probe) break;
        DEEPSTRUCT_THROW(io_error, member_ + ": corrupt deflate stream: expected " + std::to_string(entry_.uncompressed_size) +
                                       " bytes, the " + std::to_string(entry_.compressed_size) + " compressed bytes at offset " +
                                       std::to_string(entry_.data_offset) + " end after " + std::to_string(out_pos_ + got) +
                                       " (truncated)" + zlib_note());
      }
    }
    return got;
#else
    (void)dst;
    (void)n;
    (void)probe;
    return 0;
#endif
  }
};

/// Reads n more bytes of `reader` onto the end of `out`, growing it as the bytes arrive (at most
/// doubling), so a header that claims more than the member yields costs no more memory than the
/// member's real bytes. Returns false (out holding what came) when the member ends first.
inline bool read_growing(MemberReader& reader, std::vector<unsigned char>& out, std::uint64_t n) {
  if (n > std::numeric_limits<std::size_t>::max() - out.size())
    DEEPSTRUCT_THROW(io_error, reader.name() + ": too large for this platform: " + std::to_string(n) + " bytes");
  const std::size_t target = out.size() + static_cast<std::size_t>(n);
  while (out.size() < target) {
    const std::size_t step = std::min(target - out.size(), std::max<std::size_t>(out.size(), std::size_t{1} << 16));
    const std::size_t old = out.size();
    out.resize(old + step);
    const std::size_t got = reader.read(out.data() + old, step);
    if (got < step) {
      out.resize(old + got);
      return false;
    }
  }
  return true;
}

// ---- writing --------------------------------------------------------------------------------------

/// A member to write: its name and its bytes, given as consecutive pieces (no copy).
struct OutputMember {
  std::string name;
  std::vector<std::pair<const unsigned char*, std::size_t>> pieces;
};

/// The file an archive is written to (the temporary file of detail::write_file_atomically).
using OutputFile = detail::AtomicWriter;

inline bool is_ascii(const std::string& s) {
  for (const char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}

/// Writes a zip archive of stored members. ZIP64 records are written where a size or offset
/// does not fit 32 bits (members of 4 GiB and more), or everywhere with force_zip64.
inline void write_stored_archive(OutputFile& out, const std::vector<OutputMember>& members, bool force_zip64,
                                 const std::string& path) {
  std::vector<unsigned char> central;
  for (const OutputMember& m : members) {
    if (m.name.size() > u16_max)
      DEEPSTRUCT_THROW(io_error, "cannot save " + where(path) + ": member name of " + std::to_string(m.name.size()) +
                                     " bytes, expected at most 65535");
    std::uint64_t size = 0;
    Crc32 crc;
    for (const auto& piece : m.pieces) {
      crc.update(piece.first, piece.second);
      size += piece.second;
    }
    const std::uint64_t offset = out.written();
    const bool big = force_zip64 || size >= u32_max;
    const bool far = force_zip64 || offset >= u32_max;
    const std::uint16_t flags = is_ascii(m.name) ? 0 : 0x0800u;  // bit 11: UTF-8 name
    const std::uint16_t version = (big || far) ? 45 : 20;

    std::vector<unsigned char> local;
    put_u32(local, local_header_sig);
    put_u16(local, version);
    put_u16(local, flags);
    put_u16(local, method_stored);
    put_u16(local, 0);  // time
    put_u16(local, dos_date_1980);
    put_u32(local, crc.value());
    put_u32(local, big ? u32_max : static_cast<std::uint32_t>(size));
    put_u32(local, big ? u32_max : static_cast<std::uint32_t>(size));
    put_u16(local, static_cast<std::uint32_t>(m.name.size()));
    put_u16(local, big ? 20 : 0);
    local.insert(local.end(), m.name.begin(), m.name.end());
    if (big) {
      put_u16(local, zip64_extra_id);
      put_u16(local, 16);
      put_u64(local, size);
      put_u64(local, size);
    }
    out.write(local);
    for (const auto& piece : m.pieces) out.write(piece.first, piece.second);

    const std::uint32_t extra_len = (big ? 16u : 0u) + (far ? 8u : 0u);
    put_u32(central, central_header_sig);
    put_u16(central, (3u << 8) | version);  // made by: Unix
    put_u16(central, version);
    put_u16(central, flags);
    put_u16(central, method_stored);
    put_u16(central, 0);
    put_u16(central, dos_date_1980);
    put_u32(central, crc.value());
    put_u32(central, big ? u32_max : static_cast<std::uint32_t>(size));
    put_u32(central, big ? u32_max : static_cast<std::uint32_t>(size));
    put_u16(central, static_cast<std::uint32_t>(m.name.size()));
    put_u16(central, extra_len == 0 ? 0 : extra_len + 4);
    put_u16(central, 0);  // comment
    put_u16(central, 0);  // disk
    put_u16(central, 0);  // internal attributes
    put_u32(central, 0100644u << 16);  // external attributes: regular file, rw-r--r--
    put_u32(central, far ? u32_max : static_cast<std::uint32_t>(offset));
    central.insert(central.end(), m.name.begin(), m.name.end());
    if (extra_len != 0) {
      put_u16(central, zip64_extra_id);
      put_u16(central, extra_len);
      if (big) {
        put_u64(central, size);
        put_u64(central, size);
      }
      if (far) put_u64(central, offset);
    }
  }
  const std::uint64_t cd_offset = out.written();
  const std::uint64_t cd_size = central.size();
  const std::uint64_t count = members.size();
  out.write(central);

  const bool zip64_end = force_zip64 || count >= u16_max || cd_size >= u32_max || cd_offset >= u32_max;
  std::vector<unsigned char> end;
  if (zip64_end) {
    const std::uint64_t z_offset = out.written();
    put_u32(end, zip64_eocd_sig);
    put_u64(end, zip64_eocd_size - 12);  // size of the rest of the record
    put_u16(end, (3u << 8) | 45u);
    put_u16(end, 45);
    put_u32(end, 0);
    put_u32(end, 0);
    put_u64(end, count);
    put_u64(end, count);
    put_u64(end, cd_size);
    put_u64(end, cd_offset);
    put_u32(end, zip64_locator_sig);
    put_u32(end, 0);
    put_u64(end, z_offset);
    put_u32(end, 1);
  }
  const bool many = force_zip64 || count >= u16_max;
  put_u32(end, eocd_sig);
  put_u16(end, 0);
  put_u16(end, 0);
  put_u16(end, many ? u16_max : static_cast<std::uint32_t>(count));
  put_u16(end, many ? u16_max : static_cast<std::uint32_t>(count));
  put_u32(end, (force_zip64 || cd_size >= u32_max) ? u32_max : static_cast<std::uint32_t>(cd_size));
  put_u32(end, (force_zip64 || cd_offset >= u32_max) ? u32_max : static_cast<std::uint32_t>(cd_offset));
  put_u16(end, 0);  // comment
  out.write(end);
}

/// Calls write(OutputFile&) on a new temporary file beside `path`, then renames it to `path`
/// (detail::write_file_atomically): on any failure the temporary file is removed and `path` is
/// left as it was. Messages start "cannot save npz file '<path>'".
template <typename Write>
void write_file_atomically(const std::string& path, Write&& write) {
  detail::write_file_atomically(path, std::forward<Write>(write), "cannot save " + where(path));
}

}  // namespace zip
}  // namespace detail
}  // namespace deepstruct
