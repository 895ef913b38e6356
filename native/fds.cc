// Generic file descriptor operations.
#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/syscall.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>

#include "addon.h"
#include "errors.h"

namespace tubular {

namespace {

Napi::Value Close(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "fd");
  // On Linux the fd is released even when close() reports EINTR.
  if (close(fd) < 0 && errno != EINTR) ThrowErrno(info.Env(), "close", errno);
  return info.Env().Undefined();
}

Napi::Value Open(const Napi::CallbackInfo& info) {
  std::string path = ArgString(info, 0, "path");
  int flags = static_cast<int>(ArgInt(info, 1, "flags", 0, INT_MAX));
  int fd;
  do {
    fd = open(path.c_str(), flags | O_CLOEXEC, 0666);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) ThrowErrno(info.Env(), "open", errno);
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value Flock(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "fd");
  int op = static_cast<int>(ArgInt(info, 1, "op", 0, INT_MAX));
  int r;
  do {
    r = flock(fd, op);
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    if ((op & LOCK_NB) && errno == EWOULDBLOCK) return Napi::Boolean::New(info.Env(), false);
    ThrowErrno(info.Env(), "flock", errno);
  }
  return Napi::Boolean::New(info.Env(), true);
}

// renameat2(RENAME_NOREPLACE): fails with EEXIST instead of replacing.
Napi::Value RenameNoReplace(const Napi::CallbackInfo& info) {
  std::string from = ArgString(info, 0, "from");
  std::string to = ArgString(info, 1, "to");
  if (syscall(SYS_renameat2, AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) < 0)
    ThrowErrno(info.Env(), "rename", errno, ": " + to);
  return info.Env().Undefined();
}

// ioctl(NS_GET_NSTYPE) on a namespace file: its CLONE_NEW* type.
Napi::Value NsType(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "fd");
  int type = ioctl(fd, 0xb703 /* NS_GET_NSTYPE */);
  if (type < 0) ThrowErrno(info.Env(), "ioctl(NS_GET_NSTYPE)", errno);
  return Napi::Number::New(info.Env(), type);
}

Napi::Value Inode(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "fd");
  struct stat st;
  if (fstat(fd, &st) < 0) ThrowErrno(info.Env(), "fstat", errno);
  return Napi::Number::New(info.Env(), static_cast<double>(st.st_ino));
}

Napi::Value Dup(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "fd");
  int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (nfd < 0) ThrowErrno(info.Env(), "dup", errno);
  return Napi::Number::New(info.Env(), nfd);
}

Napi::Value FdCount(const Napi::CallbackInfo& info) {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) ThrowErrno(info.Env(), "opendir", errno);
  int count = 0;
  errno = 0;
  struct dirent* ent;
  while ((ent = readdir(dir)) != nullptr) {
    if (ent->d_name[0] == '.') continue;  // "." and ".."
    count++;
  }
  int err = errno;
  closedir(dir);
  if (err != 0) ThrowErrno(info.Env(), "readdir", err);
  return Napi::Number::New(info.Env(), count - 1);  // minus the directory's own fd
}

}  // namespace

void InitFds(Napi::Env env, Napi::Object exports) {
  Export(env, exports, "close", Close);
  Export(env, exports, "open", Open);
  Export(env, exports, "flock", Flock);
  Export(env, exports, "renameNoReplace", RenameNoReplace);
  Export(env, exports, "inode", Inode);
  Export(env, exports, "nsType", NsType);
  Export(env, exports, "dup", Dup);
  Export(env, exports, "fdCount", FdCount);
}

}  // namespace tubular
