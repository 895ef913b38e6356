// Error helpers and argument validation shared by every part of the addon.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

namespace tubular {

// Returns the symbolic name of an errno value ("ENOENT"), or "E<n>".
std::string ErrnoName(int err);

// Throws a Node-style system error: message "<syscall>: <strerror><detail>",
// properties code, errno (positive) and syscall.
[[noreturn]] void ThrowErrno(Napi::Env env, const char* syscall, int err,
                             const std::string& detail = std::string());

// Argument validation: throw TypeError/RangeError naming the argument.
int64_t ArgInt(const Napi::CallbackInfo& info, size_t i, const char* name,
               int64_t min, int64_t max);
int ArgFd(const Napi::CallbackInfo& info, size_t i, const char* name);
uint32_t ArgU32(const Napi::CallbackInfo& info, size_t i, const char* name);
bool ArgBool(const Napi::CallbackInfo& info, size_t i, const char* name);
std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* name);
Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo& info, size_t i, const char* name);
Napi::Function ArgFunction(const Napi::CallbackInfo& info, size_t i, const char* name);
[[noreturn]] void ThrowRange(Napi::Env env, const std::string& message);

}  // namespace tubular
