// Each file registers its own functions on the module's exports.
#pragma once

#include <napi.h>

namespace tubular {

void InitClock(Napi::Env env, Napi::Object exports);
void InitFds(Napi::Env env, Napi::Object exports);
void InitBpf(Napi::Env env, Napi::Object exports);
void InitMaps(Napi::Env env, Napi::Object exports);
void InitSockets(Napi::Env env, Napi::Object exports);
void InitUnix(Napi::Env env, Napi::Object exports);
void InitWatch(Napi::Env env, Napi::Object exports);

inline void Export(Napi::Env env, Napi::Object exports, const char* name,
                   Napi::Value (*fn)(const Napi::CallbackInfo&)) {
  exports.Set(name, Napi::Function::New(env, fn, name));
}

}  // namespace tubular
