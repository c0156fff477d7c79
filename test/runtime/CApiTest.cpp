// The C API without a GPU: every failure is an error code and one line from
// convgen_last_error(), never an exception or a crash.
#include "convgen.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <thread>

using ::testing::HasSubstr;

TEST(CApi, LoadWithoutADriverReportsIt) {
  convgen_layer *layer = reinterpret_cast<convgen_layer *>(0x1);
  int status = convgen_layer_load("/nonexistent/layer.json", 0, &layer);
  EXPECT_EQ(status, 2);
  EXPECT_EQ(layer, nullptr);
  // No driver here: the driver is what fails first (on a GPU machine the
  // missing manifest would).
  EXPECT_THAT(convgen_last_error(),
              ::testing::AnyOf(HasSubstr("no NVIDIA driver"), HasSubstr("layer.json")));
}

TEST(CApi, NullHandlesAreErrorsNotCrashes) {
  EXPECT_EQ(convgen_layer_launch(nullptr, 0, 0, 1, 0), 2);
  EXPECT_THAT(convgen_last_error(), HasSubstr("no layer"));
  int valuesOnly = -1;
  EXPECT_EQ(convgen_layer_reload(nullptr, &valuesOnly), 2);
  int64_t in[3], out[3];
  EXPECT_EQ(convgen_layer_shape(nullptr, in, out), 2);
  int64_t count = 0;
  EXPECT_EQ(convgen_layer_unread_channels(nullptr, nullptr, 0, &count), 2);
  EXPECT_EQ(convgen_model_unread_channels(nullptr, "a", nullptr, 0, &count), 2);
  EXPECT_EQ(convgen_layer_load(nullptr, 0, nullptr), 2);
  convgen_layer_free(nullptr);
}

TEST(CApi, LastErrorIsPerThread) {
  EXPECT_EQ(convgen_layer_launch(nullptr, 0, 0, 1, 0), 2);
  EXPECT_STRNE(convgen_last_error(), "");
  // Another thread has made no failing call: its message is empty.
  std::string other;
  std::thread([&other] { other = convgen_last_error(); }).join();
  EXPECT_EQ(other, "");
}
