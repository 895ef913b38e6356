// Unix SOCK_SEQPACKET sockets with SCM_RIGHTS fd passing.
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "addon.h"
#include "errors.h"

namespace tubular {

namespace {

const int kMaxFds = 253;  // SCM_MAX_FD

// Fills a sockaddr_un; a leading NUL selects the abstract namespace.
socklen_t UnixAddr(Napi::Env env, const std::string& path, const char* syscall, struct sockaddr_un* sun) {
  memset(sun, 0, sizeof(*sun));
  sun->sun_family = AF_UNIX;
  bool abstract = !path.empty() && path[0] == '\0';
  if (path.empty() || path.size() + (abstract ? 0 : 1) > sizeof(sun->sun_path))
    ThrowErrno(env, syscall, path.empty() ? EINVAL : ENAMETOOLONG, ": " + path);
  memcpy(sun->sun_path, path.data(), path.size());
  return static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + path.size() + (abstract ? 0 : 1));
}

Napi::Value SeqpacketListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "path");
  int backlog = static_cast<int>(ArgInt(info, 1, "backlog", 0, INT_MAX));
  struct sockaddr_un sun;
  socklen_t len = UnixAddr(env, path, "bind", &sun);
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(env, "socket", errno);
  if (bind(fd, reinterpret_cast<struct sockaddr*>(&sun), len) < 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, "bind", err, ": " + path);
  }
  if (listen(fd, backlog) < 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, "listen", err);
  }
  return Napi::Number::New(env, fd);
}

Napi::Value SeqpacketConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "path");
  struct sockaddr_un sun;
  socklen_t len = UnixAddr(env, path, "connect", &sun);
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(env, "socket", errno);
  if (connect(fd, reinterpret_cast<struct sockaddr*>(&sun), len) < 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, "connect", err, ": " + path);
  }
  return Napi::Number::New(env, fd);
}

Napi::Value Accept(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "fd");
  int c;
  do {
    c = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  } while (c < 0 && errno == EINTR);
  if (c < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(info.Env(), -1);
    ThrowErrno(info.Env(), "accept4", errno);
  }
  return Napi::Number::New(info.Env(), c);
}

Napi::Value PeerCred(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  struct ucred cred;
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) ThrowErrno(env, "getsockopt", errno);
  Napi::Object o = Napi::Object::New(env);
  o.Set("pid", Napi::Number::New(env, cred.pid));
  o.Set("uid", Napi::Number::New(env, cred.uid));
  o.Set("gid", Napi::Number::New(env, cred.gid));
  return o;
}

// SO_PEERGROUPS: the supplementary groups of the peer when it connected.
Napi::Value PeerGroups(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  std::vector<gid_t> groups(64);
  socklen_t len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
  while (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) < 0) {
    if (errno != ERANGE || len <= groups.size() * sizeof(gid_t)) ThrowErrno(env, "getsockopt", errno);
    groups.resize(len / sizeof(gid_t));
  }
  size_t n = len / sizeof(gid_t);
  Napi::Array out = Napi::Array::New(env, n);
  for (size_t i = 0; i < n; i++) out.Set(static_cast<uint32_t>(i), Napi::Number::New(env, groups[i]));
  return out;
}

Napi::Value SendMessage(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  Napi::Buffer<uint8_t> data = ArgBuffer(info, 1, "data");
  if (!info[2].IsArray()) throw Napi::TypeError::New(env, "argument 'fds' must be an array of fds");
  Napi::Array arr = info[2].As<Napi::Array>();
  if (arr.Length() > static_cast<uint32_t>(kMaxFds)) ThrowRange(env, "argument 'fds' has too many fds");
  std::vector<int> fds;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Value v = arr.Get(i);
    if (!v.IsNumber() || v.As<Napi::Number>().DoubleValue() < 0 ||
        v.As<Napi::Number>().DoubleValue() != static_cast<double>(v.As<Napi::Number>().Int32Value()))
      throw Napi::TypeError::New(env, "argument 'fds' must be an array of fds");
    fds.push_back(v.As<Napi::Number>().Int32Value());
  }

  struct iovec iov;
  iov.iov_base = data.Data();
  iov.iov_len = data.Length();
  struct msghdr msg;
  memset(&msg, 0, sizeof(msg));
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> ctrl;
  if (!fds.empty()) {
    size_t bytes = fds.size() * sizeof(int);
    ctrl.assign(CMSG_SPACE(bytes), 0);
    msg.msg_control = ctrl.data();
    msg.msg_controllen = ctrl.size();
    struct cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(bytes);
    memcpy(CMSG_DATA(cm), fds.data(), bytes);
  }
  ssize_t n;
  do {
    n = sendmsg(fd, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, -1);
    ThrowErrno(env, "sendmsg", errno);
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

Napi::Value RecvMessage(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  uint32_t maxBytes = static_cast<uint32_t>(ArgInt(info, 1, "maxBytes", 0, 64 * 1024 * 1024));
  int maxFds = static_cast<int>(ArgInt(info, 2, "maxFds", 0, kMaxFds));

  // Not zeroed: the kernel fills the first n bytes and only those are
  // copied out. (Zeroing maxBytes, 4 MiB for a client, cost more than the
  // whole exchange.)
  std::unique_ptr<uint8_t[]> buf(new uint8_t[maxBytes > 0 ? maxBytes : 1]);
  struct iovec iov;
  iov.iov_base = buf.get();
  iov.iov_len = maxBytes;
  struct msghdr msg;
  memset(&msg, 0, sizeof(msg));
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> ctrl;
  if (maxFds > 0) {
    ctrl.assign(CMSG_SPACE(static_cast<size_t>(maxFds) * sizeof(int)), 0);
    msg.msg_control = ctrl.data();
    msg.msg_controllen = ctrl.size();
  }
  ssize_t n;
  do {
    n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return env.Null();
    ThrowErrno(env, "recvmsg", errno);
  }

  Napi::Array fds = Napi::Array::New(env);
  uint32_t nfds = 0;
  if (msg.msg_controllen > 0) {
    for (struct cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm != nullptr; cm = CMSG_NXTHDR(&msg, cm)) {
      if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      const unsigned char* p = CMSG_DATA(cm);
      for (size_t i = 0; i < count; i++) {
        int rfd;
        memcpy(&rfd, p + i * sizeof(int), sizeof(int));
        fds.Set(nfds++, Napi::Number::New(env, rfd));
      }
    }
  }

  Napi::Object o = Napi::Object::New(env);
  o.Set("data", Napi::Buffer<uint8_t>::Copy(env, buf.get(), static_cast<size_t>(n)));
  o.Set("fds", fds);
  o.Set("truncated", Napi::Boolean::New(env, (msg.msg_flags & MSG_TRUNC) != 0));
  o.Set("ctrlTruncated", Napi::Boolean::New(env, (msg.msg_flags & MSG_CTRUNC) != 0));
  o.Set("eof", Napi::Boolean::New(env, n == 0 && nfds == 0));
  return o;
}

// One datagram to a Unix SOCK_DGRAM socket (e.g. systemd's $NOTIFY_SOCKET).
Napi::Value UnixDatagramSend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "path");
  Napi::Buffer<uint8_t> data = ArgBuffer(info, 1, "data");
  struct sockaddr_un sun;
  socklen_t len = UnixAddr(env, path, "sendto", &sun);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(env, "socket", errno);
  ssize_t n;
  do {
    n = sendto(fd, data.Data(), data.Length(), MSG_NOSIGNAL, reinterpret_cast<struct sockaddr*>(&sun), len);
  } while (n < 0 && errno == EINTR);
  int err = errno;
  close(fd);
  if (n < 0) ThrowErrno(env, "sendto", err, ": " + path);
  return Napi::Number::New(env, static_cast<double>(n));
}

}  // namespace

void InitUnix(Napi::Env env, Napi::Object exports) {
  Export(env, exports, "seqpacketListen", SeqpacketListen);
  Export(env, exports, "seqpacketConnect", SeqpacketConnect);
  Export(env, exports, "accept", Accept);
  Export(env, exports, "peerCred", PeerCred);
  Export(env, exports, "peerGroups", PeerGroups);
  Export(env, exports, "sendMessage", SendMessage);
  Export(env, exports, "recvMessage", RecvMessage);
  Export(env, exports, "unixDatagramSend", UnixDatagramSend);
}

}  // namespace tubular
