// Socket inspection and pidfds.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>

#include "addon.h"
#include "errors.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

namespace tubular {

namespace {

int IntOpt(Napi::Env env, int fd, int opt) {
  int v = 0;
  socklen_t len = sizeof(v);
  if (getsockopt(fd, SOL_SOCKET, opt, &v, &len) < 0) ThrowErrno(env, "getsockopt", errno);
  return v;
}

Napi::Value SocketInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  int domain = IntOpt(env, fd, SO_DOMAIN);
  int type = IntOpt(env, fd, SO_TYPE);
  int protocol = IntOpt(env, fd, SO_PROTOCOL);
  int listening = IntOpt(env, fd, SO_ACCEPTCONN);
  int reusePort = IntOpt(env, fd, SO_REUSEPORT);
  uint64_t cookie = 0;
  socklen_t clen = sizeof(cookie);
  if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &clen) < 0) ThrowErrno(env, "getsockopt", errno);

  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  socklen_t slen = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<struct sockaddr*>(&ss), &slen) < 0)
    ThrowErrno(env, "getsockname", errno);
  char text[INET6_ADDRSTRLEN] = "";
  int port = 0;
  if (ss.ss_family == AF_INET && slen >= sizeof(struct sockaddr_in)) {
    auto* sin = reinterpret_cast<struct sockaddr_in*>(&ss);
    port = ntohs(sin->sin_port);
    if (port != 0 || sin->sin_addr.s_addr != htonl(INADDR_ANY))
      inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
  } else if (ss.ss_family == AF_INET6 && slen >= sizeof(struct sockaddr_in6)) {
    auto* sin6 = reinterpret_cast<struct sockaddr_in6*>(&ss);
    port = ntohs(sin6->sin6_port);
    if (port != 0 || !IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr))
      inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
  }

  Napi::Object o = Napi::Object::New(env);
  o.Set("domain", Napi::Number::New(env, domain));
  o.Set("type", Napi::Number::New(env, type));
  o.Set("protocol", Napi::Number::New(env, protocol));
  o.Set("listening", Napi::Boolean::New(env, listening != 0));
  o.Set("reusePort", Napi::Boolean::New(env, reusePort != 0));
  o.Set("address", Napi::String::New(env, text));
  o.Set("port", Napi::Number::New(env, port));
  o.Set("cookie", Napi::BigInt::New(env, cookie));
  return o;
}

Napi::Value SocketType(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "fd");
  int v = 0;
  socklen_t len = sizeof(v);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len) < 0) {
    if (errno == ENOTSOCK) return Napi::Number::New(info.Env(), -1);
    ThrowErrno(info.Env(), "getsockopt", errno);
  }
  return Napi::Number::New(info.Env(), v);
}

Napi::Value SetNonBlocking(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "fd");
  bool on = ArgBool(info, 1, "on");
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) ThrowErrno(info.Env(), "fcntl", errno);
  int want = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (want != flags && fcntl(fd, F_SETFL, want) < 0) ThrowErrno(info.Env(), "fcntl", errno);
  return info.Env().Undefined();
}

// The inode of the network namespace a socket belongs to: SIOCGSKNS gives
// an fd of the namespace (needs CAP_NET_ADMIN over it), fstat names it.
Napi::Value SocketNetnsInode(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "fd");
  int ns = ioctl(fd, SIOCGSKNS);
  if (ns < 0) ThrowErrno(info.Env(), "ioctl(SIOCGSKNS)", errno);
  struct stat st;
  int r = fstat(ns, &st);
  int err = errno;
  close(ns);
  if (r < 0) ThrowErrno(info.Env(), "fstat", err);
  return Napi::Number::New(info.Env(), static_cast<double>(st.st_ino));
}

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

uint64_t NetnsCookie(Napi::Env env, int fd) {
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  if (getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) < 0) ThrowErrno(env, "getsockopt(SO_NETNS_COOKIE)", errno);
  return cookie;
}

// SO_NETNS_COOKIE (Linux 5.14): the cookie of a socket's network namespace.
Napi::Value SocketNetnsCookie(const Napi::CallbackInfo& info) {
  return Napi::BigInt::New(info.Env(), NetnsCookie(info.Env(), ArgFd(info, 0, "fd")));
}

// The cookie of the caller's own network namespace, from a socket made for the purpose.
Napi::Value OwnNetnsCookie(const Napi::CallbackInfo& info) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(info.Env(), "socket", errno);
  uint64_t cookie;
  try {
    cookie = NetnsCookie(info.Env(), fd);
  } catch (...) {
    close(fd);
    throw;
  }
  close(fd);
  return Napi::BigInt::New(info.Env(), cookie);
}

Napi::Value PidfdOpen(const Napi::CallbackInfo& info) {
  int pid = static_cast<int>(ArgInt(info, 0, "pid", 1, INT_MAX));
  long fd = syscall(SYS_pidfd_open, pid, 0);  // pidfds are always O_CLOEXEC
  if (fd < 0) ThrowErrno(info.Env(), "pidfd_open", errno);
  return Napi::Number::New(info.Env(), static_cast<double>(fd));
}

Napi::Value PidfdGetfd(const Napi::CallbackInfo& info) {
  int pidfd = ArgFd(info, 0, "pidfd");
  int target = ArgFd(info, 1, "targetFd");
  long fd = syscall(SYS_pidfd_getfd, pidfd, target, 0);  // new fd has O_CLOEXEC
  if (fd < 0) ThrowErrno(info.Env(), "pidfd_getfd", errno);
  return Napi::Number::New(info.Env(), static_cast<double>(fd));
}

}  // namespace

void InitSockets(Napi::Env env, Napi::Object exports) {
  Export(env, exports, "socketInfo", SocketInfo);
  Export(env, exports, "socketType", SocketType);
  Export(env, exports, "setNonBlocking", SetNonBlocking);
  Export(env, exports, "socketNetnsInode", SocketNetnsInode);
  Export(env, exports, "socketNetnsCookie", SocketNetnsCookie);
  Export(env, exports, "ownNetnsCookie", OwnNetnsCookie);
  Export(env, exports, "pidfdOpen", PidfdOpen);
  Export(env, exports, "pidfdGetfd", PidfdGetfd);
}

}  // namespace tubular
