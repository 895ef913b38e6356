// The wall clock and the monotonic clock, read back to back: how the control
// plane turns the data plane's monotonic stamps into dates (src/binding-stats.ts).
#include <time.h>

#include <cerrno>
#include <cstdint>

#include "addon.h"
#include "errors.h"

namespace tubular {

namespace {

Napi::Value Clocks(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct timespec mono, wall;
  if (clock_gettime(CLOCK_MONOTONIC, &mono) < 0) ThrowErrno(env, "clock_gettime(CLOCK_MONOTONIC)", errno);
  if (clock_gettime(CLOCK_REALTIME, &wall) < 0) ThrowErrno(env, "clock_gettime(CLOCK_REALTIME)", errno);
  Napi::Object out = Napi::Object::New(env);
  out.Set("monoNs", Napi::BigInt::New(env, static_cast<uint64_t>(mono.tv_sec) * 1000000000u + static_cast<uint64_t>(mono.tv_nsec)));
  out.Set("wallMs", Napi::Number::New(env, static_cast<double>(wall.tv_sec) * 1e3 + static_cast<double>(wall.tv_nsec) / 1e6));
  return out;
}

}  // namespace

void InitClock(Napi::Env env, Napi::Object exports) {
  Export(env, exports, "clocks", Clocks);
}

}  // namespace tubular
