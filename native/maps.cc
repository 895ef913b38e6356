// Map element operations, single and batched.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <sched.h>
#include <new>
#include <sys/mman.h>
#include <unistd.h>
#include <string>
#include <thread>
#include <vector>

#include "addon.h"
#include "errors.h"

#ifndef ENOTSUPP
#define ENOTSUPP 524
#endif

namespace tubular {

namespace {

// Key and value sizes as the syscalls see them. The kernel reads/writes
// exactly these many bytes through our pointers, so buffers are checked
// against them to keep out-of-bounds accesses impossible. Also the rest of
// what one bpf_obj_get_info_by_fd says that callers need.
struct MapShape {
  uint32_t keySize;
  uint32_t valueSize;
  uint32_t maxEntries;
  uint32_t type;
  uint32_t flags;
};

bool IsPerCpu(uint32_t type) {
  return type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_ARRAY ||
         type == BPF_MAP_TYPE_LRU_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
}

MapShape Shape(Napi::Env env, int fd, const char* syscall) {
  struct bpf_map_info mi = {};
  __u32 len = sizeof(mi);
  if (bpf_obj_get_info_by_fd(fd, &mi, &len) < 0) ThrowErrno(env, syscall, errno);
  MapShape s{mi.key_size, mi.value_size, mi.max_entries, mi.type, mi.map_flags};
  if (IsPerCpu(mi.type)) {
    int ncpus = libbpf_num_possible_cpus();
    if (ncpus < 0) ThrowErrno(env, "libbpf_num_possible_cpus", -ncpus);
    s.valueSize = ((s.valueSize + 7) & ~7u) * static_cast<uint32_t>(ncpus);
  }
  return s;
}

void CheckSize(Napi::Env env, const char* name, size_t have, size_t need) {
  if (have < need)
    ThrowRange(env, std::string("argument '") + name + "' is " + std::to_string(have) +
                        " bytes, the map needs " + std::to_string(need));
}

bool NoBatchSupport(int err) { return err == EINVAL || err == ENOTSUPP || err == EOPNOTSUPP; }

std::string After(uint32_t n) { return " (after " + std::to_string(n) + " elements)"; }

Napi::Value MapLookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  Napi::Buffer<uint8_t> key = ArgBuffer(info, 1, "key");
  Napi::Buffer<uint8_t> value = ArgBuffer(info, 2, "value");
  MapShape s = Shape(env, fd, "bpf_map_lookup_elem");
  CheckSize(env, "key", key.Length(), s.keySize);
  CheckSize(env, "value", value.Length(), s.valueSize);
  if (bpf_map_lookup_elem(fd, key.Data(), value.Data()) < 0) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    ThrowErrno(env, "bpf_map_lookup_elem", errno);
  }
  return Napi::Boolean::New(env, true);
}

// Looks up `count` packed keys, one syscall each, in one call: values of
// keys that are missing are left zero. Returns how many were found.
Napi::Value MapLookupMany(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  Napi::Buffer<uint8_t> keys = ArgBuffer(info, 1, "keys");
  Napi::Buffer<uint8_t> values = ArgBuffer(info, 2, "values");
  uint32_t count = ArgU32(info, 3, "count");
  MapShape s = Shape(env, fd, "bpf_map_lookup_elem");
  CheckSize(env, "keys", keys.Length(), static_cast<size_t>(count) * s.keySize);
  CheckSize(env, "values", values.Length(), static_cast<size_t>(count) * s.valueSize);
  uint32_t found = 0;
  for (uint32_t i = 0; i < count; i++) {
    uint8_t* v = values.Data() + static_cast<size_t>(i) * s.valueSize;
    if (bpf_map_lookup_elem(fd, keys.Data() + static_cast<size_t>(i) * s.keySize, v) == 0) {
      found++;
    } else if (errno == ENOENT) {
      memset(v, 0, s.valueSize);
    } else {
      ThrowErrno(env, "bpf_map_lookup_elem", errno);
    }
  }
  return Napi::Number::New(env, found);
}

// The arguments of an update, (fd, key, value, flags), checked against the map.
struct UpdateArgs {
  int fd;
  const uint8_t* key;
  const uint8_t* value;
  uint64_t flags;
  MapShape shape;
};

UpdateArgs ArgUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  Napi::Buffer<uint8_t> key = ArgBuffer(info, 1, "key");
  Napi::Buffer<uint8_t> value = ArgBuffer(info, 2, "value");
  uint64_t flags = static_cast<uint64_t>(ArgInt(info, 3, "flags", 0, UINT32_MAX));
  MapShape s = Shape(env, fd, "bpf_map_update_elem");
  CheckSize(env, "key", key.Length(), s.keySize);
  CheckSize(env, "value", value.Length(), s.valueSize);
  return {fd, key.Data(), value.Data(), flags, s};
}

Napi::Value MapUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  UpdateArgs a = ArgUpdate(info);
  if (bpf_map_update_elem(a.fd, a.key, a.value, a.flags) < 0)
    ThrowErrno(env, "bpf_map_update_elem", errno);
  return env.Undefined();
}

Napi::Value MapDelete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  Napi::Buffer<uint8_t> key = ArgBuffer(info, 1, "key");
  MapShape s = Shape(env, fd, "bpf_map_delete_elem");
  CheckSize(env, "key", key.Length(), s.keySize);
  if (bpf_map_delete_elem(fd, key.Data()) < 0) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    ThrowErrno(env, "bpf_map_delete_elem", errno);
  }
  return Napi::Boolean::New(env, true);
}

Napi::Value MapNextKey(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  const void* key = nullptr;
  size_t keyLen = 0;
  if (!info[1].IsNull() && !info[1].IsUndefined()) {
    Napi::Buffer<uint8_t> k = ArgBuffer(info, 1, "key");
    key = k.Data();
    keyLen = k.Length();
  }
  Napi::Buffer<uint8_t> next = ArgBuffer(info, 2, "nextKey");
  MapShape s = Shape(env, fd, "bpf_map_get_next_key");
  if (key != nullptr) CheckSize(env, "key", keyLen, s.keySize);
  CheckSize(env, "nextKey", next.Length(), s.keySize);
  if (bpf_map_get_next_key(fd, key, next.Data()) < 0) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    ThrowErrno(env, "bpf_map_get_next_key", errno);
  }
  return Napi::Boolean::New(env, true);
}

// Why a batch or a dump that runs without JavaScript (perhaps on a thread
// of its own) failed: the syscall and its errno.
struct SyscallError {
  const char* syscall = nullptr;
  int err = 0;
};

// bpf_map_update_batch over `count` packed keys and values, or a loop of
// bpf_map_update_elem where the kernel has no batch for the map. Touches
// no JavaScript value, so that it can run on a thread of its own
// (MapUpdateBatchStart). Returns false with *e set; *written is how many
// elements were written either way.
bool UpdateBatch(int fd, const MapShape& s, const uint8_t* keys, const uint8_t* values, uint32_t count,
                 uint64_t flags, uint32_t* written, SyscallError* e) {
  uint32_t done = 0;
  bool batch = true;
  int busy = 0;
  LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = flags);
  while (done < count) {
    const uint8_t* k = keys + static_cast<size_t>(done) * s.keySize;
    const uint8_t* v = values + static_cast<size_t>(done) * s.valueSize;
    if (!batch) {
      if (bpf_map_update_elem(fd, k, v, flags) < 0) {
        *written = done;
        *e = {"bpf_map_update_elem", errno};
        return false;
      }
      done++;
      continue;
    }
    uint32_t n = count - done;
    int r = bpf_map_update_batch(fd, k, v, &n, &opts);
    int err = errno;
    // A call the kernel refused before its loop leaves the count as it was:
    // a failed call never wrote all it was given.
    if (r < 0 && n >= count - done) n = 0;
    done += std::min(n, count - done);
    if (r < 0) {
      // Some kernels (5.11-6.0 with full preemption, without a later fix)
      // answer EBUSY to two writers of one hash map that meet on a CPU: go
      // on from where it stopped (64 times in all, at most).
      if (err == EBUSY && ++busy <= 64) {
        sched_yield();
        continue;
      }
      if (!NoBatchSupport(err)) {
        *written = done;
        *e = {"bpf_map_update_batch", err};
        return false;
      }
      batch = false;  // element loop for the rest; it reports real errors itself
    }
  }
  *written = done;
  return true;
}

// The arguments of mapUpdateBatch and mapUpdateBatchStart, checked.
struct BatchArgs {
  int fd;
  MapShape shape;
  Napi::Buffer<uint8_t> keys, values;
  uint32_t count;
  uint64_t flags;
};

BatchArgs ArgBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  Napi::Buffer<uint8_t> keys = ArgBuffer(info, 1, "keys");
  Napi::Buffer<uint8_t> values = ArgBuffer(info, 2, "values");
  uint32_t count = ArgU32(info, 3, "count");
  uint64_t flags = static_cast<uint64_t>(ArgInt(info, 4, "flags", 0, UINT32_MAX));
  MapShape s = Shape(env, fd, "bpf_map_update_batch");
  CheckSize(env, "keys", keys.Length(), static_cast<size_t>(count) * s.keySize);
  CheckSize(env, "values", values.Length(), static_cast<size_t>(count) * s.valueSize);
  return {fd, s, keys, values, count, flags};
}

Napi::Value MapUpdateBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  BatchArgs a = ArgBatch(info);
  SyscallError e;
  uint32_t written = 0;
  if (!UpdateBatch(a.fd, a.shape, a.keys.Data(), a.values.Data(), a.count, a.flags, &written, &e))
    ThrowErrno(env, e.syscall, e.err, After(written));
  return Napi::Number::New(env, written);
}

Napi::Value MapDeleteBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  Napi::Buffer<uint8_t> keys = ArgBuffer(info, 1, "keys");
  uint32_t count = ArgU32(info, 2, "count");
  MapShape s = Shape(env, fd, "bpf_map_delete_batch");
  CheckSize(env, "keys", keys.Length(), static_cast<size_t>(count) * s.keySize);

  uint32_t pos = 0, deleted = 0;
  bool batch = true, single = false;
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  while (pos < count) {
    const uint8_t* k = keys.Data() + static_cast<size_t>(pos) * s.keySize;
    if (batch && !single) {
      uint32_t n = count - pos;
      int r = bpf_map_delete_batch(fd, k, &n, &opts);
      int err = errno;
      if (r < 0 && n >= count - pos) n = 0;  // refused before the kernel's loop: nothing deleted
      n = std::min(n, count - pos);
      pos += n;
      deleted += n;
      if (r < 0) {
        if (err == ENOENT) {
          single = true;  // the batch stopped at a missing key: skip it, then resume
        } else if (NoBatchSupport(err)) {
          batch = false;  // element loop for the rest
        } else {
          ThrowErrno(env, "bpf_map_delete_batch", err, After(deleted));
        }
      }
      continue;
    }
    single = false;
    if (bpf_map_delete_elem(fd, k) == 0) {
      deleted++;
    } else if (errno != ENOENT) {
      ThrowErrno(env, "bpf_map_delete_elem", errno, After(deleted));
    }
    pos++;
  }
  return Napi::Number::New(env, deleted);
}

// Room for keys and values, not zeroed: pages the kernel never writes
// are never touched, so a map's capacity costs no memory beyond its count.
struct Block {
  uint8_t* data = nullptr;
  size_t size = 0;
  Block() = default;
  Block(const Block&) = delete;
  Block& operator=(const Block&) = delete;
  ~Block() { free(data); }
  void Grow(size_t need) {
    if (need <= size) return;
    size_t want = std::max(need, size * 2);
    auto* p = static_cast<uint8_t*>(realloc(data, want));
    if (p == nullptr) throw std::bad_alloc();
    data = p;
    size = want;
  }
  uint8_t* Release() {
    uint8_t* p = data;
    data = nullptr;
    size = 0;
    return p;
  }
};

struct Dump {
  Block keys, values;
  uint32_t count = 0;
  void Reserve(const MapShape& s, uint32_t more) {
    size_t need = static_cast<size_t>(count) + more;
    keys.Grow(need * s.keySize);
    values.Grow(need * s.valueSize);
  }
};

// The dumps below touch no JavaScript value, so that one can run on a
// thread of its own (MapDumpStart). They return false with *e set.
bool DumpByIteration(int fd, const MapShape& s, Dump* d, SyscallError* e) {
  std::vector<uint8_t> prev(s.keySize), next(s.keySize), value(s.valueSize);
  bool first = true;
  for (;;) {
    if (bpf_map_get_next_key(fd, first ? nullptr : prev.data(), next.data()) < 0) {
      if (errno == ENOENT) return true;
      *e = {"bpf_map_get_next_key", errno};
      return false;
    }
    first = false;
    if (bpf_map_lookup_elem(fd, next.data(), value.data()) == 0) {
      d->Reserve(s, 1);
      std::copy(next.begin(), next.end(), d->keys.data + static_cast<size_t>(d->count) * s.keySize);
      std::copy(value.begin(), value.end(), d->values.data + static_cast<size_t>(d->count) * s.valueSize);
      d->count++;
    } else if (errno != ENOENT) {  // ENOENT: deleted concurrently, skip it
      *e = {"bpf_map_lookup_elem", errno};
      return false;
    }
    prev.swap(next);
  }
}

bool DumpMap(int fd, const MapShape& s, Dump* d, SyscallError* e) {
  // The batch token is a key for array-like maps and a bucket index for hashes.
  std::vector<uint8_t> inTok(std::max<uint32_t>(s.keySize, 8)), outTok(inTok.size());
  // Room for the whole map at once: one allocation, and few syscalls.
  uint32_t chunk = std::max<uint32_t>(1024, std::min<uint32_t>(s.maxEntries, 1u << 20));
  bool first = true;
  int retries = 0;
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  for (;;) {
    d->Reserve(s, chunk);
    uint32_t n = chunk;
    int r = bpf_map_lookup_batch(fd, first ? nullptr : inTok.data(), outTok.data(),
                                 d->keys.data + static_cast<size_t>(d->count) * s.keySize,
                                 d->values.data + static_cast<size_t>(d->count) * s.valueSize, &n, &opts);
    int err = r < 0 ? errno : 0;
    if (r < 0 && n == 0 && err == ENOSPC) {  // a hash bucket holds more than `chunk` entries
      if (chunk >= (1u << 24)) {
        *e = {"bpf_map_lookup_batch", err};
        return false;
      }
      chunk *= 2;
      continue;
    }
    if (r < 0 && first && d->count == 0 && NoBatchSupport(err)) return DumpByIteration(fd, s, d, e);
    if (r < 0 && err != ENOENT && err != EINTR) {
      *e = {"bpf_map_lookup_batch", err};
      return false;
    }
    n = std::min(n, chunk);
    d->count += n;
    if (err == ENOENT) return true;  // end of map
    if (err == EINTR) {              // elements vanished under us; resume from the token
      if (++retries > 16) {
        *e = {"bpf_map_lookup_batch", err};
        return false;
      }
      if (n == 0) continue;
    } else {
      retries = 0;
    }
    inTok.swap(outTok);
    first = false;
  }
}

// The work of a ...Start function on a thread of its own: what the thread
// reads and writes (`job`), a duplicate of the caller's fd for it (a caller
// that closed its fd early cannot make the thread act on another file that
// took the number), and the thread. The destructor's body runs before the
// members go, so a handle dropped without its ...Finish waits for the
// thread instead of freeing the job under it. Each Job names a type tag,
// so that a handle is only ever finished by its own kind of Finish.
template <typename Job>
struct Pending {
  Job job;
  int fd = -1;
  std::thread thread;
  void CloseFd() {
    if (fd >= 0) close(fd);
    fd = -1;
  }
  ~Pending() {
    if (thread.joinable()) thread.join();
    CloseFd();
  }
};

// Starts `work(job, fd)` on a duplicate of fd, with the job of `p` (filled
// by the caller, and owned from here on), and returns the handle that owns
// both.
template <typename Job, typename Work>
Napi::Value StartPending(Napi::Env env, Pending<Job>* p, int fd, Work work) {
  std::unique_ptr<Pending<Job>> owned(p);
  p->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (p->fd < 0) ThrowErrno(env, "fcntl", errno);
  Napi::External<Pending<Job>> handle =
      Napi::External<Pending<Job>>::New(env, p, [](Napi::Env, Pending<Job>* q) { delete q; });
  owned.release();  // the handle's finalizer deletes it from here on
  if (napi_type_tag_object(env, handle, &Job::kTag) != napi_ok) {
    p->CloseFd();
    throw Napi::Error::New(env, "cannot tag a handle");
  }
  try {
    p->thread = std::thread([p, work] { work(p->job, p->fd); });
  } catch (const std::exception& e) {
    p->CloseFd();
    throw Napi::Error::New(env, std::string("cannot start a thread: ") + e.what());
  }
  return handle;
}

// Waits for the work of a handle from StartPending (once); returns its job.
template <typename Job>
Job& JoinPending(const Napi::CallbackInfo& info, const char* start, const char* finish) {
  Napi::Env env = info.Env();
  bool ours = false;
  if (info.Length() >= 1 && info[0].IsExternal()) napi_check_object_type_tag(env, info[0], &Job::kTag, &ours);
  if (!ours) throw Napi::TypeError::New(env, std::string("argument 'handle' must come from ") + start);
  Pending<Job>* p = info[0].As<Napi::External<Pending<Job>>>().Data();
  if (!p->thread.joinable()) throw Napi::Error::New(env, std::string(finish) + ": this one was already finished");
  p->thread.join();
  p->CloseFd();
  return p->job;
}

// A buffer over the first `bytes` of a block, which it takes over (no copy).
Napi::Buffer<uint8_t> TakeBuffer(Napi::Env env, Block& b, size_t bytes) {
  if (bytes == 0) return Napi::Buffer<uint8_t>::New(env, 0);
  return Napi::Buffer<uint8_t>::New(env, b.Release(), bytes, [](Napi::Env, uint8_t* p) { free(p); });
}

Napi::Object DumpResult(Napi::Env env, const MapShape& s, Dump& d) {
  Napi::Object o = Napi::Object::New(env);
  uint32_t count = d.count;
  o.Set("keys", TakeBuffer(env, d.keys, static_cast<size_t>(count) * s.keySize));
  o.Set("values", TakeBuffer(env, d.values, static_cast<size_t>(count) * s.valueSize));
  o.Set("count", Napi::Number::New(env, count));
  return o;
}

// The map's shape, checked against what the caller expects.
MapShape DumpShape(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  uint32_t keySize = ArgU32(info, 1, "keySize");
  uint32_t valueSize = ArgU32(info, 2, "valueSize");
  MapShape s = Shape(env, fd, "bpf_map_lookup_batch");
  if (keySize != s.keySize || valueSize != s.valueSize)
    ThrowRange(env, "keySize/valueSize (" + std::to_string(keySize) + "/" + std::to_string(valueSize) +
                        ") do not match the map (" + std::to_string(s.keySize) + "/" +
                        std::to_string(s.valueSize) + ")");
  return s;
}

Napi::Value MapDump(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MapShape s = DumpShape(info);
  Dump d;
  SyscallError e;
  if (!DumpMap(info[0].As<Napi::Number>().Int32Value(), s, &d, &e)) ThrowErrno(env, e.syscall, e.err);
  return DumpResult(env, s, d);
}

// A dump on a thread of its own, so that the caller can go on (parse a
// file) while the kernel copies the map out: MapDumpStart starts it,
// MapDumpFinish waits for it. It only reads the map.
struct DumpJob {
  static constexpr napi_type_tag kTag = {0x7475627564756d70ULL, 0x6d61704475d9a001ULL};
  MapShape shape;
  Dump dump;
  SyscallError error;
  bool ok = false;
};

Napi::Value MapDumpStart(const Napi::CallbackInfo& info) {
  MapShape s = DumpShape(info);
  int fd = info[0].As<Napi::Number>().Int32Value();
  auto* p = new Pending<DumpJob>();
  p->job.shape = s;
  return StartPending(info.Env(), p, fd, [s](DumpJob& j, int own) { j.ok = DumpMap(own, s, &j.dump, &j.error); });
}

Napi::Value MapDumpFinish(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DumpJob& j = JoinPending<DumpJob>(info, "mapDumpStart", "mapDumpFinish");
  if (!j.ok) ThrowErrno(env, j.error.syscall, j.error.err);
  return DumpResult(env, j.shape, j.dump);
}

// An update on a thread of its own, for an update that waits: one of a
// map-in-map returns only after an RCU grace period (5-20 ms), and the
// caller can parse a file meanwhile. MapUpdateStart copies the key and
// value and starts it; MapUpdateFinish waits for it and throws its error.
// An inner map's fd in the value must stay open until then.
struct UpdateJob {
  static constexpr napi_type_tag kTag = {0x7475627570646174ULL, 0x6d61705570d9a002ULL};
  std::vector<uint8_t> key, value;
  int err = 0;
};

Napi::Value MapUpdateStart(const Napi::CallbackInfo& info) {
  UpdateArgs a = ArgUpdate(info);
  auto* p = new Pending<UpdateJob>();
  p->job.key.assign(a.key, a.key + a.shape.keySize);
  p->job.value.assign(a.value, a.value + a.shape.valueSize);
  uint64_t flags = a.flags;
  return StartPending(info.Env(), p, a.fd, [flags](UpdateJob& j, int own) {
    if (bpf_map_update_elem(own, j.key.data(), j.value.data(), flags) < 0) j.err = errno;
  });
}

Napi::Value MapUpdateFinish(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  UpdateJob& j = JoinPending<UpdateJob>(info, "mapUpdateStart", "mapUpdateFinish");
  if (j.err != 0) ThrowErrno(env, "bpf_map_update_elem", j.err);
  return env.Undefined();
}

// A batch update on a thread of its own, so that the caller can go on
// (compute and write a generation's filters) while the kernel fills a
// binding set. The job holds references to the key and value buffers, so
// they outlive it, until mapUpdateBatchFinish, which lets them go and
// returns the elements written or throws; the caller must not change them
// until then.
struct BatchJob {
  static constexpr napi_type_tag kTag = {0x7475627562617463ULL, 0x6d61704261d9a003ULL};
  Napi::Reference<Napi::Buffer<uint8_t>> keys, values;
  MapShape shape{};
  const uint8_t* k = nullptr;
  const uint8_t* v = nullptr;
  uint32_t count = 0;
  uint64_t flags = 0;
  uint32_t written = 0;
  SyscallError error;
  bool ok = false;
};

Napi::Value MapUpdateBatchStart(const Napi::CallbackInfo& info) {
  BatchArgs a = ArgBatch(info);
  auto* p = new Pending<BatchJob>();
  BatchJob& j = p->job;
  j.keys = Napi::Persistent(a.keys);
  j.values = Napi::Persistent(a.values);
  j.shape = a.shape;
  j.k = a.keys.Data();
  j.v = a.values.Data();
  j.count = a.count;
  j.flags = a.flags;
  return StartPending(info.Env(), p, a.fd, [](BatchJob& b, int own) {
    b.ok = UpdateBatch(own, b.shape, b.k, b.v, b.count, b.flags, &b.written, &b.error);
  });
}

Napi::Value MapUpdateBatchFinish(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  BatchJob& j = JoinPending<BatchJob>(info, "mapUpdateBatchStart", "mapUpdateBatchFinish");
  j.keys.Reset();
  j.values.Reset();
  if (!j.ok) ThrowErrno(env, j.error.syscall, j.error.err, After(j.written));
  return Napi::Number::New(env, j.written);
}

// Array elements through a shared mapping of an mmapable array
// (BPF_F_MMAPABLE): the pages spanning the lowest to the highest index are
// mapped, the entries copied, the mapping removed. A batch update writes
// each element through its own copy from user memory (about 200 ns each);
// a copy into the mapping is a memcpy. Keys are u32 indices in host order,
// values packed, value size as the map's.
struct MmapSpan {
  uint8_t* base = nullptr;  // the mapping
  size_t length = 0;
  size_t skew = 0;          // bytes from the mapping's start to index `low`'s entry
  uint32_t low = 0;         // the lowest index asked for

  uint8_t* Entry(uint32_t index, uint32_t valueSize) const {
    return base + skew + static_cast<size_t>(index - low) * valueSize;
  }
};

MmapSpan MapArraySpan(Napi::Env env, int fd, const uint32_t* idx, uint32_t count, uint32_t valueSize,
                      uint32_t maxEntries, bool writable) {
  uint32_t low = UINT32_MAX, high = 0;
  for (uint32_t i = 0; i < count; i++) {
    if (idx[i] >= maxEntries)
      ThrowRange(env, "index " + std::to_string(idx[i]) + " is past the array's " + std::to_string(maxEntries) + " entries");
    low = std::min(low, idx[i]);
    high = std::max(high, idx[i]);
  }
  size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  size_t from = static_cast<size_t>(low) * valueSize;
  size_t to = (static_cast<size_t>(high) + 1) * valueSize;
  size_t offset = from & ~(page - 1);
  MmapSpan m;
  m.length = ((to - offset) + page - 1) & ~(page - 1);
  m.skew = from - offset;
  m.low = low;
  void* p = mmap(nullptr, m.length, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, static_cast<off_t>(offset));
  if (p == MAP_FAILED) ThrowErrno(env, "mmap", errno);
  m.base = static_cast<uint8_t*>(p);
  return m;
}

struct ArrayArgs {
  int fd;
  const uint32_t* idx;
  uint32_t count;
  uint8_t* values;
  uint32_t valueSize;
  uint32_t maxEntries;
};

ArrayArgs ArrayCall(const Napi::CallbackInfo& info, const char* syscall) {
  Napi::Env env = info.Env();
  ArrayArgs a{};
  a.fd = ArgFd(info, 0, "fd");
  if (info.Length() < 2 || !info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array)
    throw Napi::TypeError::New(env, "argument 'indices' must be a Uint32Array");
  Napi::Uint32Array indices = info[1].As<Napi::Uint32Array>();
  Napi::Buffer<uint8_t> values = ArgBuffer(info, 2, "values");
  MapShape s = Shape(env, a.fd, syscall);
  if (s.type != BPF_MAP_TYPE_ARRAY || !(s.flags & BPF_F_MMAPABLE))
    throw Napi::Error::New(env, std::string(syscall) + ": the map is not an mmapable array");
  a.idx = indices.Data();
  a.count = static_cast<uint32_t>(indices.ElementLength());
  a.values = values.Data();
  a.valueSize = s.valueSize;
  a.maxEntries = s.maxEntries;
  CheckSize(env, "values", values.Length(), static_cast<size_t>(a.count) * a.valueSize);
  return a;
}

// arrayGather(fd, indices, values): values[i] = array[indices[i]].
Napi::Value ArrayGather(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArrayArgs a = ArrayCall(info, "arrayGather");
  if (a.count == 0) return env.Undefined();
  MmapSpan m = MapArraySpan(env, a.fd, a.idx, a.count, a.valueSize, a.maxEntries, false);
  for (uint32_t i = 0; i < a.count; i++)
    memcpy(a.values + static_cast<size_t>(i) * a.valueSize, m.Entry(a.idx[i], a.valueSize), a.valueSize);
  munmap(m.base, m.length);
  return env.Undefined();
}

// arrayScatter(fd, indices, values): array[indices[i]] = values[i].
Napi::Value ArrayScatter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArrayArgs a = ArrayCall(info, "arrayScatter");
  if (a.count == 0) return env.Undefined();
  MmapSpan m = MapArraySpan(env, a.fd, a.idx, a.count, a.valueSize, a.maxEntries, true);
  for (uint32_t i = 0; i < a.count; i++)
    memcpy(m.Entry(a.idx[i], a.valueSize), a.values + static_cast<size_t>(i) * a.valueSize, a.valueSize);
  munmap(m.base, m.length);
  return env.Undefined();
}

}  // namespace

void InitMaps(Napi::Env env, Napi::Object exports) {
  Export(env, exports, "mapLookup", MapLookup);
  Export(env, exports, "mapLookupMany", MapLookupMany);
  Export(env, exports, "mapUpdate", MapUpdate);
  Export(env, exports, "mapDelete", MapDelete);
  Export(env, exports, "mapNextKey", MapNextKey);
  Export(env, exports, "mapUpdateBatch", MapUpdateBatch);
  Export(env, exports, "mapDeleteBatch", MapDeleteBatch);
  Export(env, exports, "mapDump", MapDump);
  Export(env, exports, "mapDumpStart", MapDumpStart);
  Export(env, exports, "mapDumpFinish", MapDumpFinish);
  Export(env, exports, "mapUpdateStart", MapUpdateStart);
  Export(env, exports, "mapUpdateFinish", MapUpdateFinish);
  Export(env, exports, "mapUpdateBatchStart", MapUpdateBatchStart);
  Export(env, exports, "mapUpdateBatchFinish", MapUpdateBatchFinish);
  Export(env, exports, "arrayGather", ArrayGather);
  Export(env, exports, "arrayScatter", ArrayScatter);
}

}  // namespace tubular
