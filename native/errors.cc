#include "errors.h"

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>

namespace tubular {

namespace {

#ifndef ENOTSUPP
#define ENOTSUPP 524  // kernel-internal, leaks out of the bpf syscall
#endif

struct ErrnoEntry {
  int value;
  const char* name;
};

#define E(x) {x, #x}
const ErrnoEntry kErrnos[] = {
    E(EPERM),        E(ENOENT),       E(ESRCH),           E(EINTR),
    E(EIO),          E(ENXIO),        E(E2BIG),           E(ENOEXEC),
    E(EBADF),        E(ECHILD),       E(EAGAIN),          E(ENOMEM),
    E(EACCES),       E(EFAULT),       E(ENOTBLK),         E(EBUSY),
    E(EEXIST),       E(EXDEV),        E(ENODEV),          E(ENOTDIR),
    E(EISDIR),       E(EINVAL),       E(ENFILE),          E(EMFILE),
    E(ENOTTY),       E(ETXTBSY),      E(EFBIG),           E(ENOSPC),
    E(ESPIPE),       E(EROFS),        E(EMLINK),          E(EPIPE),
    E(EDOM),         E(ERANGE),       E(EDEADLK),         E(ENAMETOOLONG),
    E(ENOLCK),       E(ENOSYS),       E(ENOTEMPTY),       E(ELOOP),
    E(ENOMSG),       E(EIDRM),        E(ENODATA),         E(ETIME),
    E(EPROTO),       E(EBADMSG),      E(EOVERFLOW),       E(EILSEQ),
    E(ENOTSOCK),     E(EDESTADDRREQ), E(EMSGSIZE),        E(EPROTOTYPE),
    E(ENOPROTOOPT),  E(EPROTONOSUPPORT), E(EOPNOTSUPP),   E(EAFNOSUPPORT),
    E(EADDRINUSE),   E(EADDRNOTAVAIL), E(ENETDOWN),       E(ENETUNREACH),
    E(ENETRESET),    E(ECONNABORTED), E(ECONNRESET),      E(ENOBUFS),
    E(EISCONN),      E(ENOTCONN),     E(ESHUTDOWN),       E(ETIMEDOUT),
    E(ECONNREFUSED), E(EHOSTDOWN),    E(EHOSTUNREACH),    E(EALREADY),
    E(EINPROGRESS),  E(ESTALE),       E(EDQUOT),          E(ECANCELED),
    E(EOWNERDEAD),   E(ENOTRECOVERABLE), E(ENOTSUPP),
};
#undef E

}  // namespace

std::string ErrnoName(int err) {
  for (const auto& e : kErrnos)
    if (e.value == err) return e.name;
  return "E" + std::to_string(err);
}

void ThrowErrno(Napi::Env env, const char* syscall, int err, const std::string& detail) {
  if (err < 0) err = -err;
  std::string text = err == ENOTSUPP ? "Operation not supported" : strerror(err);
  Napi::Error e = Napi::Error::New(env, std::string(syscall) + ": " + text + detail);
  Napi::Object o = e.Value();
  o.Set("code", Napi::String::New(env, ErrnoName(err)));
  o.Set("errno", Napi::Number::New(env, err));
  o.Set("syscall", Napi::String::New(env, syscall));
  throw e;
}

void ThrowRange(Napi::Env env, const std::string& message) {
  throw Napi::RangeError::New(env, message);
}

int64_t ArgInt(const Napi::CallbackInfo& info, size_t i, const char* name,
               int64_t min, int64_t max) {
  Napi::Env env = info.Env();
  if (!info[i].IsNumber())
    throw Napi::TypeError::New(env, std::string("argument '") + name + "' must be a number");
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::trunc(d) != d)
    throw Napi::TypeError::New(env, std::string("argument '") + name + "' must be an integer");
  if (d < static_cast<double>(min) || d > static_cast<double>(max))
    ThrowRange(env, std::string("argument '") + name + "' is out of range");
  return static_cast<int64_t>(d);
}

int ArgFd(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return static_cast<int>(ArgInt(info, i, name, 0, INT_MAX));
}

uint32_t ArgU32(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return static_cast<uint32_t>(ArgInt(info, i, name, 0, UINT32_MAX));
}

bool ArgBool(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsBoolean())
    throw Napi::TypeError::New(info.Env(), std::string("argument '") + name + "' must be a boolean");
  return info[i].As<Napi::Boolean>().Value();
}

std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsString())
    throw Napi::TypeError::New(info.Env(), std::string("argument '") + name + "' must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsBuffer())
    throw Napi::TypeError::New(info.Env(), std::string("argument '") + name + "' must be a Buffer");
  return info[i].As<Napi::Buffer<uint8_t>>();
}

Napi::Function ArgFunction(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsFunction())
    throw Napi::TypeError::New(info.Env(), std::string("argument '") + name + "' must be a function");
  return info[i].As<Napi::Function>();
}

}  // namespace tubular
