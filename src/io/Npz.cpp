#include "io/Npz.h"

#include "support/Error.h"

#include <algorithm>
#include <new>
#include <unordered_set>
#include <zip.h>

namespace convgen {

static constexpr const char *NpySuffix = ".npy";

void NpzArchive::ZipCloser::operator()(zip *archive) const {
  if (archive)
    zip_discard(archive); // read-only: nothing to write back
}

/// The message libzip gives for an error code, e.g. "Not a zip archive".
static std::string zipErrorMessage(int code) {
  zip_error_t error;
  zip_error_init_with_code(&error, code);
  std::string message = zip_error_strerror(&error);
  zip_error_fini(&error);
  return message;
}

static std::string zipErrorMessage(zip_error_t *error) {
  return zip_error_strerror(error);
}

static std::string describeOpenFailure(int code) {
  switch (code) {
  case ZIP_ER_NOZIP:
    return "not an .npz file: not a zip archive (or truncated: no end-of-central-directory record)";
  case ZIP_ER_INCONS:
    return "corrupt or truncated .npz: zip archive is inconsistent";
  case ZIP_ER_NOENT:
    return "no such file";
  case ZIP_ER_OPEN:
  case ZIP_ER_READ:
    return "cannot read file: " + zipErrorMessage(code);
  default:
    return "cannot open as .npz: " + zipErrorMessage(code);
  }
}

NpzArchive::NpzArchive(std::unique_ptr<zip, ZipCloser> archive,
                       std::shared_ptr<std::vector<uint8_t>> buffer, std::string name)
    : Buffer(std::move(buffer)), Archive(std::move(archive)), Name(std::move(name)) {
  zip_int64_t count = zip_get_num_entries(Archive.get(), 0);
  std::unordered_set<std::string> seen;
  for (zip_int64_t i = 0; i < count; ++i) {
    const char *member = zip_get_name(Archive.get(), static_cast<zip_uint64_t>(i), 0);
    if (!member)
      throw InputError({Name, "", ""}, "corrupt .npz: unreadable member name");
    std::string memberName = member;
    // numpy.load ignores members that are not .npy arrays; so does convgen.
    if (memberName.size() <= 4 || !memberName.ends_with(NpySuffix))
      continue;
    std::string key = memberName.substr(0, memberName.size() - 4);
    if (!seen.insert(key).second)
      throw InputError({Name, "", key}, "corrupt .npz: duplicate member '" + memberName + "'");
    Keys.push_back(std::move(key));
  }
}

NpzArchive::NpzArchive(NpzArchive &&) noexcept = default;
NpzArchive &NpzArchive::operator=(NpzArchive &&) noexcept = default;
NpzArchive::~NpzArchive() = default;

NpzArchive NpzArchive::open(const std::string &path) {
  int code = 0;
  zip *archive = zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &code);
  if (!archive)
    throw InputError({path, "", ""}, describeOpenFailure(code));
  return NpzArchive(std::unique_ptr<zip, ZipCloser>(archive), nullptr, path);
}

NpzArchive NpzArchive::fromBytes(std::vector<uint8_t> bytes, const std::string &name) {
  auto buffer = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t *source = zip_source_buffer_create(buffer->data(), buffer->size(), 0, &error);
  if (!source) {
    std::string message = zipErrorMessage(&error);
    zip_error_fini(&error);
    throw InputError({name, "", ""}, "cannot open as .npz: " + message);
  }
  zip *archive = zip_open_from_source(source, ZIP_RDONLY | ZIP_CHECKCONS, &error);
  if (!archive) {
    int code = zip_error_code_zip(&error);
    zip_source_free(source); // still ours when the open failed
    zip_error_fini(&error);
    throw InputError({name, "", ""}, describeOpenFailure(code));
  }
  zip_error_fini(&error);
  return NpzArchive(std::unique_ptr<zip, ZipCloser>(archive), std::move(buffer), name);
}

bool NpzArchive::contains(const std::string &key) const {
  return std::find(Keys.begin(), Keys.end(), key) != Keys.end();
}

NpyArray NpzArchive::read(const std::string &key) const {
  std::string source = Name + "[" + key + "]";
  if (!contains(key))
    throw InputError({Name, "", ""}, "no array '" + key + "' in the archive");

  std::string memberName = key + NpySuffix;
  zip_stat_t stat;
  zip_stat_init(&stat);
  if (zip_stat(Archive.get(), memberName.c_str(), 0, &stat) != 0 || !(stat.valid & ZIP_STAT_SIZE))
    throw InputError({source, "", ""},
                     "corrupt .npz member: " + zipErrorMessage(zip_get_error(Archive.get())));
  if (stat.size > MaxMemberBytes)
    throw InputError({source, "", ""}, "member of " + std::to_string(stat.size) +
                                           " bytes exceeds the limit of " +
                                           std::to_string(MaxMemberBytes));

  std::unique_ptr<zip_file_t, int (*)(zip_file_t *)> file(
      zip_fopen(Archive.get(), memberName.c_str(), 0), zip_fclose);
  if (!file)
    throw InputError({source, "", ""}, "cannot read .npz member: " +
                                           zipErrorMessage(zip_get_error(Archive.get())));

  // Grow with the data actually inflated rather than trusting the declared
  // size up front, so a lying header cannot make us allocate gigabytes.
  std::vector<uint8_t> bytes;
  try {
    bytes.reserve(std::min<uint64_t>(stat.size, 64 << 20));
  } catch (const std::bad_alloc &) {
    throw InputError({source, "", ""}, "out of memory reading a member of " +
                                           std::to_string(stat.size) + " bytes");
  }
  constexpr size_t Chunk = 1 << 20;
  for (;;) {
    size_t offset = bytes.size();
    bytes.resize(offset + Chunk);
    zip_int64_t n = zip_fread(file.get(), bytes.data() + offset, Chunk);
    if (n < 0)
      throw InputError({source, "", ""},
                       "corrupt .npz member: " + zipErrorMessage(zip_file_get_error(file.get())));
    bytes.resize(offset + static_cast<size_t>(n));
    if (n == 0)
      break;
    if (bytes.size() > stat.size)
      throw InputError({source, "", ""}, "corrupt .npz member: more data than its declared size");
  }
  if (bytes.size() != stat.size)
    throw InputError({source, "", ""}, "truncated .npz member: " + std::to_string(bytes.size()) +
                                           " of " + std::to_string(stat.size) + " bytes");
  return parseNpy(std::move(bytes), source);
}

} // namespace convgen
