// CubinText on ELF images built in memory: the size of each .text.NAME
// section, and clear failures on what is not a 64-bit ELF file.
#include "codegen/CubinText.h"
#include "support/Error.h"

#include <cstring>
#include <elf.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

using namespace convgen;
using ::testing::HasSubstr;

namespace {

/// A minimal ELF64 file: the section name table, then one PROGBITS section
/// per (name, size), then the section headers.
std::string elfWith(const std::vector<std::pair<std::string, size_t>> &sections) {
  std::string names(1, '\0');
  std::vector<uint32_t> nameOffsets;
  names += ".shstrtab";
  names += '\0';
  for (const auto &[name, size] : sections) {
    nameOffsets.push_back(uint32_t(names.size()));
    names += name;
    names += '\0';
  }
  std::string file(sizeof(Elf64_Ehdr), '\0');
  const size_t namesOffset = file.size();
  file += names;
  std::vector<Elf64_Shdr> headers(2 + sections.size());
  std::memset(headers.data(), 0, headers.size() * sizeof(Elf64_Shdr));
  headers[1].sh_name = 1;
  headers[1].sh_type = SHT_STRTAB;
  headers[1].sh_offset = namesOffset;
  headers[1].sh_size = names.size();
  for (size_t i = 0; i < sections.size(); ++i) {
    Elf64_Shdr &h = headers[2 + i];
    h.sh_name = nameOffsets[i];
    h.sh_type = SHT_PROGBITS;
    h.sh_offset = file.size();
    h.sh_size = sections[i].second;
    file += std::string(sections[i].second, '\x42');
  }
  Elf64_Ehdr header;
  std::memset(&header, 0, sizeof(header));
  std::memcpy(header.e_ident, ELFMAG, SELFMAG);
  header.e_ident[EI_CLASS] = ELFCLASS64;
  header.e_ident[EI_DATA] = ELFDATA2LSB;
  header.e_shoff = file.size();
  header.e_shentsize = sizeof(Elf64_Shdr);
  header.e_shnum = uint16_t(headers.size());
  header.e_shstrndx = 1;
  std::memcpy(file.data(), &header, sizeof(header));
  file.append(reinterpret_cast<const char *>(headers.data()), headers.size() * sizeof(Elf64_Shdr));
  return file;
}

} // namespace

TEST(CubinText, SizesOfEachKernelsTextSection) {
  auto sizes = kernelTextBytes(
      elfWith({{".text.convgen_a", 160}, {".nv.info", 24}, {".text.convgen_b_k1", 32}}), "t");
  ASSERT_EQ(sizes.size(), 2u);
  EXPECT_EQ(sizes.at("convgen_a"), 160);
  EXPECT_EQ(sizes.at("convgen_b_k1"), 32);
  EXPECT_EQ(sizes.at("convgen_a") / SassInstructionBytes, 10);
}

TEST(CubinText, NotAnElfFileIsACheckFailure) {
  EXPECT_THROW(kernelTextBytes("", "layer 'x'"), CheckFailure);
  try {
    kernelTextBytes(std::string(100, 'x'), "layer 'x'");
    FAIL() << "accepted garbage";
  } catch (const CheckFailure &e) {
    EXPECT_THAT(e.what(), HasSubstr("layer 'x': ptxas's cubin is not a 64-bit"));
  }
  std::string truncated = elfWith({{".text.k", 16}});
  truncated.resize(truncated.size() - 10); // section headers cut short
  EXPECT_THROW(kernelTextBytes(truncated, "t"), CheckFailure);
}
