#include "support/NameMatch.h"

#include <algorithm>
#include <numeric>

namespace convgen {

size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> previous(b.size() + 1), current(b.size() + 1);
  std::iota(previous.begin(), previous.end(), size_t{0});
  for (size_t i = 1; i <= a.size(); ++i) {
    current[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      current[j] = std::min({previous[j] + 1, current[j - 1] + 1, substitution});
    }
    std::swap(previous, current);
  }
  return previous[b.size()];
}

std::optional<std::string> closestMatch(std::string_view name,
                                        const std::vector<std::string> &candidates) {
  const std::string *best = nullptr;
  size_t bestDistance = 0;
  for (const std::string &candidate : candidates) {
    size_t distance = editDistance(name, candidate);
    if (!best || distance < bestDistance) {
      best = &candidate;
      bestDistance = distance;
    }
  }
  size_t allowed = std::max<size_t>(1, name.size() / 3);
  if (best && bestDistance <= allowed)
    return *best;

  // "conv3" for "layer3.conv3": a unique containing candidate is a good guess too.
  std::vector<const std::string *> containing;
  for (const std::string &candidate : candidates)
    if (!name.empty() && candidate.find(name) != std::string::npos)
      containing.push_back(&candidate);
  if (containing.size() == 1)
    return *containing.front();
  return std::nullopt;
}

} // namespace convgen
