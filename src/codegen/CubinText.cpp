#include "codegen/CubinText.h"

#include "support/Error.h"

#include <cstring>
#include <elf.h>

namespace convgen {

/// A copy of the T at \p offset of \p file, if it lies inside it (ELF
/// structures in a byte string need not be aligned for T).
template <typename T>
static bool readAt(std::string_view file, uint64_t offset, T &out) {
  if (offset > file.size() || file.size() - offset < sizeof(T))
    return false;
  std::memcpy(&out, file.data() + offset, sizeof(T));
  return true;
}

std::map<std::string, int64_t> kernelTextBytes(std::string_view cubin, const std::string &what) {
  auto fail = [&what](const std::string &problem) {
    return CheckFailure(what + ": ptxas's cubin " + problem);
  };
  Elf64_Ehdr header;
  if (!readAt(cubin, 0, header) || std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0 ||
      header.e_ident[EI_CLASS] != ELFCLASS64 || header.e_ident[EI_DATA] != ELFDATA2LSB)
    throw fail("is not a 64-bit little-endian ELF file");
  if (header.e_shentsize != sizeof(Elf64_Shdr) || header.e_shstrndx >= header.e_shnum)
    throw fail("has a malformed section table");
  auto section = [&](uint64_t index) {
    Elf64_Shdr entry;
    if (!readAt(cubin, header.e_shoff + index * sizeof(Elf64_Shdr), entry))
      throw fail("has a section header past its end");
    return entry;
  };
  const Elf64_Shdr names = section(header.e_shstrndx);
  if (names.sh_offset > cubin.size() || cubin.size() - names.sh_offset < names.sh_size)
    throw fail("has its section names past its end");
  const std::string_view nameTable = cubin.substr(names.sh_offset, names.sh_size);

  const std::string_view prefix = ".text.";
  std::map<std::string, int64_t> sizes;
  for (uint64_t index = 0; index < header.e_shnum; ++index) {
    const Elf64_Shdr entry = section(index);
    if (entry.sh_name >= nameTable.size())
      throw fail("has a section name past its name table");
    std::string_view name = nameTable.substr(entry.sh_name);
    name = name.substr(0, name.find('\0'));
    if (name.substr(0, prefix.size()) == prefix)
      sizes[std::string(name.substr(prefix.size()))] = int64_t(entry.sh_size);
  }
  return sizes;
}

} // namespace convgen
