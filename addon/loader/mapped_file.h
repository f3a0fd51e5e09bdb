// A file mapped read-only into memory for as long as the object lives (weights are read in place).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace xllama {

class MappedFile {
 public:
  // Throws BackendError("bad_model", ...) naming the path when it can't be opened or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  size_t size() const { return size_; }
  const char* data() const { return static_cast<const char*>(data_); }  // null for an empty file

  // The bytes [offset, offset + bytes), after checking they lie inside the file; `what` names the tensor.
  const void* range(uint64_t offset, uint64_t bytes, const std::string& what) const;

 private:
  std::string path_;
  void* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace xllama
