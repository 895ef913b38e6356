// Module init: the addon is a thin syscall layer; see src/native.ts.
#include "addon.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  using namespace tubular;
  InitClock(env, exports);
  InitFds(env, exports);
  InitBpf(env, exports);
  InitMaps(env, exports);
  InitSockets(env, exports);
  InitUnix(env, exports);
  InitWatch(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(tubular, Init)
