// "Did you mean ...?" for layer names and npz keys.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace convgen {

/// Levenshtein distance between two strings.
size_t editDistance(std::string_view a, std::string_view b);

/// The candidate closest to \p name, if one is close enough to be a plausible
/// typo (distance at most a third of the name's length, and at least 1 allowed),
/// or the only candidate that contains \p name.
std::optional<std::string> closestMatch(std::string_view name,
                                        const std::vector<std::string> &candidates);

} // namespace convgen
