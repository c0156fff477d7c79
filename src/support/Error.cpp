#include "support/Error.h"

#include <cstring>

namespace convgen {

std::string ErrorContext::describe() const {
  std::string out;
  auto append = [&out](const std::string &part) {
    if (!out.empty())
      out += ": ";
    out += part;
  };
  if (!file.empty())
    append(file);
  if (!layer.empty())
    append("layer '" + layer + "'");
  if (!field.empty())
    append(field.starts_with("--") ? field : "'" + field + "'"); // options stay unquoted
  return out;
}

static std::string withContext(const ErrorContext &context, const std::string &problem) {
  std::string where = context.describe();
  return where.empty() ? problem : where + ": " + problem;
}

InputError::InputError(const ErrorContext &context, const std::string &problem)
    : Error(withContext(context, problem)), Context(context), Problem(problem) {}

SystemError::SystemError(const std::string &operation, const std::string &path,
                         int errnoValue)
    : Error(path + ": " + operation + " failed: " + std::strerror(errnoValue)) {}

} // namespace convgen
