#include "loader/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "backend/backend.h"

namespace xllama {

MappedFile::MappedFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw BackendError("bad_model", "cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw BackendError("bad_model", "cannot stat " + path + ": " + std::strerror(err));
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw BackendError("bad_model", "cannot map " + path + ": " + std::strerror(err));
    }
    data_ = p;
  }
  ::close(fd);  // the mapping stays valid without the descriptor
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(data_, size_);
}

const void* MappedFile::range(uint64_t offset, uint64_t bytes, const std::string& what) const {
  if (offset > size_ || bytes > size_ - offset) {
    throw BackendError("bad_model", "tensor " + what + " (bytes " + std::to_string(offset) + ".." +
                                        std::to_string(offset + bytes) + ") lies outside " + path_ + " (" +
                                        std::to_string(size_) + " bytes)");
  }
  return static_cast<const char*>(data_) + offset;
}

}  // namespace xllama
