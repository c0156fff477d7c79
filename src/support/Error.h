// Typed errors for convgen's library code.
//
// Library code never exits and never asserts on user input: it throws one of
// these, with enough context (file, layer, field, API) for a tool's main to
// print a single clear line. Each type maps to a process exit code, so every
// tool agrees: 1 for a failed check, 2 for bad input or usage.
#pragma once

#include <stdexcept>
#include <string>

namespace convgen {

enum ExitCode : int {
  ExitSuccess = 0,
  ExitCheckFailed = 1,
  ExitBadInput = 2,
};

/// Where a problem was found. Empty parts are left out of the message.
struct ErrorContext {
  std::string file;   ///< a path, or "path[key]" for an array inside an .npz
  std::string layer;  ///< layer name from the geometry sidecar
  std::string field;  ///< JSON field, array key or option name

  /// "file: layer 'x': field 'y'" (only the parts that are set).
  std::string describe() const;
};

/// Base of every convgen error. The message is the full line to print.
class Error : public std::runtime_error {
public:
  explicit Error(const std::string &message) : std::runtime_error(message) {}
  virtual ExitCode exitCode() const { return ExitBadInput; }
};

/// The user's input (files, JSON, weights, options) is wrong.
class InputError : public Error {
public:
  InputError(const ErrorContext &context, const std::string &problem);
  const ErrorContext &context() const { return Context; }
  const std::string &problem() const { return Problem; }

private:
  ErrorContext Context;
  std::string Problem;
};

/// The input is valid but asks for something convgen does not do (yet).
class UnsupportedError : public Error {
public:
  using Error::Error;
};

/// The operating system refused an operation (open, write, rename, ...).
class SystemError : public Error {
public:
  SystemError(const std::string &operation, const std::string &path, int errnoValue);
};

/// A check that convgen ran (verification, validation by ptxas) failed.
class CheckFailure : public Error {
public:
  using Error::Error;
  ExitCode exitCode() const override { return ExitCheckFailed; }
};

} // namespace convgen
