// A read-only view of a file for loading checkpoints: mmap on POSIX, positioned
// reads where mapping is unavailable (other platforms, empty files, mmap failure,
// or ZOFO_MMAP=0 in the environment).
// Every read is bounds-checked against the size seen at open, so a hostile or
// truncated header can never make us read outside the file. Nothing here knows
// about safetensors: the caller decides which byte ranges are tensors.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <mutex>
#include <string>

#include "../common/dtype.h"

namespace zofo::io {

class MappedFile {
 public:
  // Opens `path` read-only; throws zofo::Error ZOFO_IO naming the path and the reason.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }
  bool mapped() const { return map_ != nullptr; }

  // Throws ZOFO_INVALID_ARG unless [offset, offset + nbytes) lies inside the file.
  void check_range(uint64_t offset, uint64_t nbytes) const;

  // dst[0 .. nbytes) ← file bytes [offset, offset + nbytes).
  void read(uint64_t offset, uint64_t nbytes, void* dst) const;

  // out[0 .. count) ← the `count` little-endian values of `dtype` stored from `offset`,
  // converted to fp32 (exact: every f16/bf16 value is an f32). threads 0 = default.
  void read_f32(uint64_t offset, DType dtype, uint64_t count, float* out, int threads) const;

  // Gives back the memory of bytes [offset, offset + nbytes) once they have been read:
  // mapped pages are dropped (they refault from the file if read again) and the page
  // cache is told they are not needed, so loading a checkpoint never holds a second copy.
  void release(uint64_t offset, uint64_t nbytes) const;

 private:
  std::string path_;
  uint64_t size_ = 0;
  const uint8_t* map_ = nullptr;  // whole file when mapped, else null
#ifdef _WIN32
  void* file_ = nullptr;  // FILE*: seek+read is not atomic, so reads take the lock
  mutable std::mutex lock_;
#else
  int fd_ = -1;  // pread is positionless: no lock needed
#endif
};

}  // namespace zofo::io
