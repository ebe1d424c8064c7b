// See mapped_file.h. POSIX: open + fstat + mmap (PROT_READ, MAP_PRIVATE), falling back
// to pread when the file cannot be mapped. Windows: a FILE* with 64-bit seeks.
#include "mapped_file.h"

#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "../common/error.h"
#include "../cpu/parallel.h"

#ifdef _WIN32
#include <stdio.h>
#include <filesystem>
#else
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

namespace zofo::io {

namespace {

zofo::Error io_error(const std::string& path, const std::string& what) {
  return zofo::Error("ZOFO_IO", path + ": " + what);
}

#ifndef _WIN32
std::string errno_text() { return strerror(errno); }
#endif

// Elements converted per step on the unmapped path: 256 KiB of f32 staging at most.
constexpr uint64_t kChunkElems = 1 << 16;

}  // namespace

#ifdef _WIN32

MappedFile::MappedFile(const std::string& path) : path_(path) {
  FILE* f = _wfopen(std::filesystem::u8path(path).c_str(), L"rb");
  if (!f) throw io_error(path, "cannot open for reading");
  if (_fseeki64(f, 0, SEEK_END) != 0) {
    fclose(f);
    throw io_error(path, "cannot seek to find its size");
  }
  const long long end = _ftelli64(f);
  if (end < 0) {
    fclose(f);
    throw io_error(path, "cannot tell its size");
  }
  size_ = (uint64_t)end;
  file_ = f;
}

MappedFile::~MappedFile() {
  if (file_) fclose(static_cast<FILE*>(file_));
}

void MappedFile::read(uint64_t offset, uint64_t nbytes, void* dst) const {
  check_range(offset, nbytes);
  if (nbytes == 0) return;
  std::lock_guard<std::mutex> hold(lock_);
  FILE* f = static_cast<FILE*>(file_);
  if (_fseeki64(f, (long long)offset, SEEK_SET) != 0 || fread(dst, 1, (size_t)nbytes, f) != nbytes)
    throw io_error(path_, "read of " + std::to_string(nbytes) + " bytes at offset " + std::to_string(offset) +
                              " failed (was the file truncated?)");
}

#else

MappedFile::MappedFile(const std::string& path) : path_(path) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
  // It is cleared below once fstat has shown a regular file.
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd_ < 0) throw io_error(path, "cannot open for reading: " + errno_text());
  struct stat st;
  if (fstat(fd_, &st) != 0) {
    const std::string why = "cannot stat: " + errno_text();
    ::close(fd_);
    throw io_error(path, why);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd_);
    throw io_error(path, S_ISDIR(st.st_mode) ? "is a directory" : "is not a regular file");
  }
  const int flags = fcntl(fd_, F_GETFL);
  if (flags >= 0) fcntl(fd_, F_SETFL, flags & ~O_NONBLOCK);
  size_ = (uint64_t)st.st_size;
  // ZOFO_MMAP=0 forces positioned reads: how the tests reach the fallback path.
  const char* mmap_env = getenv("ZOFO_MMAP");
  const bool want_map = !(mmap_env && strcmp(mmap_env, "0") == 0);
  if (want_map && size_ > 0 && size_ <= SIZE_MAX) {
    void* p = mmap(nullptr, (size_t)size_, PROT_READ, MAP_PRIVATE, fd_, 0);
    if (p != MAP_FAILED) {
      map_ = static_cast<const uint8_t*>(p);
      ::close(fd_);  // the mapping keeps the file alive
      fd_ = -1;
    }
  }
}

MappedFile::~MappedFile() {
  if (map_) munmap(const_cast<uint8_t*>(map_), (size_t)size_);
  if (fd_ >= 0) ::close(fd_);
}

void MappedFile::read(uint64_t offset, uint64_t nbytes, void* dst) const {
  check_range(offset, nbytes);
  if (nbytes == 0) return;  // dst may be null (an empty typed array): memcpy(null, .., 0) is UB
  if (map_) {
    memcpy(dst, map_ + offset, (size_t)nbytes);
    return;
  }
  uint8_t* out = static_cast<uint8_t*>(dst);
  while (nbytes > 0) {
    const ssize_t got = pread(fd_, out, (size_t)std::min<uint64_t>(nbytes, 1u << 30), (off_t)offset);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) throw io_error(path_, "read at offset " + std::to_string(offset) + " failed: " + errno_text());
    if (got == 0) throw io_error(path_, "file ended at offset " + std::to_string(offset) + " (was it truncated?)");
    out += got;
    offset += (uint64_t)got;
    nbytes -= (uint64_t)got;
  }
}

#endif

void MappedFile::check_range(uint64_t offset, uint64_t nbytes) const {
  if (offset > size_ || nbytes > size_ - offset)
    throw zofo::invalid_arg(path_ + ": byte range [" + std::to_string(offset) + ", " + std::to_string(offset) + " + " +
                            std::to_string(nbytes) + ") is outside the file of " + std::to_string(size_) + " bytes");
}

void MappedFile::read_f32(uint64_t offset, DType dtype, uint64_t count, float* out, int threads) const {
  const uint64_t width = dtype_size(dtype);
  if (count > UINT64_MAX / width) throw zofo::invalid_arg(path_ + ": element count too large");
  check_range(offset, count * width);
  if (count == 0) return;  // out may be null
  // Converts elements [lo, hi) whose bytes start at `src` (little-endian host assumed,
  // as on every platform Node supports).
  auto convert = [dtype, out](const uint8_t* src, uint64_t lo, uint64_t hi) {
    if (dtype == DType::F32) {
      memcpy(out + lo, src, (size_t)(hi - lo) * 4);
      return;
    }
    for (uint64_t i = lo; i < hi; ++i) {
      uint16_t h;
      memcpy(&h, src + 2 * (i - lo), 2);
      out[i] = dtype == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
    }
  };
  zofo::cpu::parallel_ranges(count, threads, 1 << 20, [&](uint64_t lo, uint64_t hi) {
    if (map_) {
      convert(map_ + offset + lo * width, lo, hi);
      return;
    }
    std::vector<uint8_t> staging((size_t)(std::min(hi - lo, kChunkElems) * width));
    for (uint64_t c = lo; c < hi; c += kChunkElems) {
      const uint64_t end = std::min(hi, c + kChunkElems);
      read(offset + c * width, (end - c) * width, staging.data());
      convert(staging.data(), c, end);
    }
  });
}

void MappedFile::release(uint64_t offset, uint64_t nbytes) const {
  check_range(offset, nbytes);
#ifndef _WIN32
  const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
  const uint64_t lo = (offset + page - 1) / page * page, hi = (offset + nbytes) / page * page;  // whole pages inside
  if (map_ && hi > lo) madvise(const_cast<uint8_t*>(map_) + lo, (size_t)(hi - lo), MADV_DONTNEED);
  if (fd_ >= 0 && nbytes > 0) posix_fadvise(fd_, (off_t)offset, (off_t)nbytes, POSIX_FADV_DONTNEED);
#else
  (void)offset;
  (void)nbytes;
#endif
}

}  // namespace zofo::io
