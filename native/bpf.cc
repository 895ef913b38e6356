// BPF objects: programs, maps, links, pinning and test runs.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "addon.h"
#include "errors.h"

namespace tubular {

namespace {

// ---- libbpf log capture (loadObject only; the addon runs on one thread) ----

std::string g_libbpfLog;
bool g_verifierRefused = false;
const size_t kLogTail = 4096;

int CapturePrint(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  // libbpf prints the verifier's log between these marks when the kernel
  // refused a program (not when, say, a map could not be created). Noted
  // here: a long log pushes the mark out of the tail kept below.
  if (strstr(fmt, "BEGIN PROG LOAD LOG") != nullptr) g_verifierRefused = true;
  char buf[1024];
  va_list copy;
  va_copy(copy, args);
  int n = vsnprintf(buf, sizeof(buf), fmt, copy);
  va_end(copy);
  if (n < 0) return 0;
  if (static_cast<size_t>(n) < sizeof(buf)) {
    g_libbpfLog.append(buf, n);
  } else {
    std::vector<char> big(static_cast<size_t>(n) + 1);
    vsnprintf(big.data(), big.size(), fmt, args);
    g_libbpfLog.append(big.data(), n);
  }
  // Keep memory bounded: only the tail ends up in error messages.
  if (g_libbpfLog.size() > 16 * kLogTail) g_libbpfLog.erase(0, g_libbpfLog.size() - 4 * kLogTail);
  return n;
}

std::string LogTail() {
  std::string log = g_libbpfLog;
  if (log.size() > kLogTail) {
    log.erase(0, log.size() - kLogTail);
    size_t nl = log.find('\n');
    if (nl != std::string::npos) log.erase(0, nl + 1);
  }
  while (!log.empty() && (log.back() == '\n' || log.back() == ' ')) log.pop_back();
  return log.empty() ? std::string() : "\n" + log;
}

// Owns a bpf_object, the installed print hook and the fds dup'ed so far, so
// that every exit path (including C++ exceptions) cleans up.
struct LoadState {
  struct bpf_object* obj = nullptr;
  libbpf_print_fn_t oldPrint = nullptr;
  std::vector<int> fds;
  LoadState() {
    g_libbpfLog.clear();
    g_verifierRefused = false;
    oldPrint = libbpf_set_print(CapturePrint);
  }
  ~LoadState() {
    if (obj != nullptr) bpf_object__close(obj);
    libbpf_set_print(oldPrint);
    for (int fd : fds) close(fd);
    g_libbpfLog.clear();
  }
  [[noreturn]] void Fail(Napi::Env env, const char* op, int err, const std::string& detail) {
    if (err < 0) err = -err;
    char text[256];
    libbpf_strerror(err, text, sizeof(text));
    bool verifier = g_verifierRefused;
    std::string msg = std::string(op) + ": " + text + detail + LogTail();
    Napi::Error e = Napi::Error::New(env, msg);
    Napi::Object o = e.Value();
    o.Set("code", Napi::String::New(env, ErrnoName(err)));
    o.Set("errno", Napi::Number::New(env, err));
    o.Set("syscall", Napi::String::New(env, op));
    o.Set("verifier", Napi::Boolean::New(env, verifier));
    throw e;
  }
  int Dup(Napi::Env env, int fd, const std::string& what) {
    int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (nfd < 0) Fail(env, "dup", errno, ": " + what);
    fds.push_back(nfd);
    return nfd;
  }
};

Napi::Value LoadObject(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "path");
  std::string progName = ArgString(info, 1, "progName");
  if (!info[2].IsObject() || info[2].IsArray() || info[2].IsFunction())
    throw Napi::TypeError::New(env, "argument 'reuseMaps' must be an object");
  Napi::Object reuse = info[2].As<Napi::Object>();
  std::vector<std::pair<std::string, int>> reuseList;
  Napi::Array names = reuse.GetPropertyNames();
  for (uint32_t i = 0; i < names.Length(); i++) {
    std::string name = names.Get(i).ToString().Utf8Value();
    Napi::Value v = reuse.Get(name);
    if (!v.IsNumber() || v.As<Napi::Number>().DoubleValue() < 0 ||
        v.As<Napi::Number>().DoubleValue() != static_cast<double>(v.As<Napi::Number>().Int32Value()))
      throw Napi::TypeError::New(env, "argument 'reuseMaps' value for '" + name + "' must be an fd");
    reuseList.emplace_back(name, v.As<Napi::Number>().Int32Value());
  }

  LoadState st;
  st.obj = bpf_object__open_file(path.c_str(), nullptr);
  if (st.obj == nullptr) st.Fail(env, "bpf_object__open_file", errno, ": " + path);

  struct bpf_program* prog = bpf_object__find_program_by_name(st.obj, progName.c_str());
  if (prog == nullptr)
    st.Fail(env, "bpf_object__find_program_by_name", ENOENT, ": no program named '" + progName + "'");

  for (const auto& [name, fd] : reuseList) {
    struct bpf_map* map = bpf_object__find_map_by_name(st.obj, name.c_str());
    if (map == nullptr)
      st.Fail(env, "bpf_map__reuse_fd", ENOENT, ": no map named '" + name + "' in object");
    int r = bpf_map__reuse_fd(map, fd);
    if (r < 0) st.Fail(env, "bpf_map__reuse_fd", r, ": map '" + name + "'");
  }

  int r = bpf_object__load(st.obj);
  if (r < 0) st.Fail(env, "bpf_object__load", r, "");

  Napi::Object result = Napi::Object::New(env);
  Napi::Object maps = Napi::Object::New(env);
  int progFd = st.Dup(env, bpf_program__fd(prog), "program '" + progName + "'");
  struct bpf_map* map;
  bpf_object__for_each_map(map, st.obj) {
    int fd = bpf_map__fd(map);
    if (fd < 0) continue;  // not created (e.g. autocreate disabled)
    maps.Set(bpf_map__name(map), Napi::Number::New(env, st.Dup(env, fd, std::string("map '") + bpf_map__name(map) + "'")));
  }
  result.Set("progFd", Napi::Number::New(env, progFd));
  result.Set("maps", maps);
  st.fds.clear();  // ownership passes to the caller
  return result;
}

Napi::Value NumPossibleCpus(const Napi::CallbackInfo& info) {
  int n = libbpf_num_possible_cpus();
  if (n < 0) ThrowErrno(info.Env(), "libbpf_num_possible_cpus", -n);
  return Napi::Number::New(info.Env(), n);
}

Napi::Value MapCreate(const Napi::CallbackInfo& info) {
  uint32_t type = ArgU32(info, 0, "type");
  std::string name = ArgString(info, 1, "name");
  uint32_t keySize = ArgU32(info, 2, "keySize");
  uint32_t valueSize = ArgU32(info, 3, "valueSize");
  uint32_t maxEntries = ArgU32(info, 4, "maxEntries");
  uint32_t flags = ArgU32(info, 5, "flags");
  LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = flags);
  int fd = bpf_map_create(static_cast<enum bpf_map_type>(type), name.empty() ? nullptr : name.c_str(),
                          keySize, valueSize, maxEntries, &opts);
  if (fd < 0) ThrowErrno(info.Env(), "bpf_map_create", errno);
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value Pin(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "fd");
  std::string path = ArgString(info, 1, "path");
  if (bpf_obj_pin(fd, path.c_str()) < 0) ThrowErrno(info.Env(), "bpf_obj_pin", errno);
  return info.Env().Undefined();
}

Napi::Value GetPinned(const Napi::CallbackInfo& info) {
  std::string path = ArgString(info, 0, "path");
  uint32_t flags = ArgU32(info, 1, "flags");
  LIBBPF_OPTS(bpf_obj_get_opts, opts, .file_flags = flags);
  int fd = bpf_obj_get_opts(path.c_str(), &opts);
  if (fd < 0) ThrowErrno(info.Env(), "bpf_obj_get", errno);
  return Napi::Number::New(info.Env(), fd);
}

template <typename T>
void GetInfo(Napi::Env env, int fd, T* out) {
  memset(out, 0, sizeof(*out));
  __u32 len = sizeof(*out);
  if (bpf_obj_get_info_by_fd(fd, out, &len) < 0) ThrowErrno(env, "bpf_obj_get_info_by_fd", errno);
}

std::string FixedString(const char* s, size_t max) { return std::string(s, strnlen(s, max)); }

Napi::Value ProgInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  struct bpf_prog_info pi;
  GetInfo(env, fd, &pi);
  char tag[2 * BPF_TAG_SIZE + 1];
  for (int i = 0; i < BPF_TAG_SIZE; i++) snprintf(tag + 2 * i, 3, "%02x", pi.tag[i]);
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", Napi::Number::New(env, pi.id));
  o.Set("tag", Napi::String::New(env, tag));
  o.Set("name", Napi::String::New(env, FixedString(pi.name, sizeof(pi.name))));
  o.Set("type", Napi::Number::New(env, pi.type));
  return o;
}

Napi::Value MapInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  struct bpf_map_info mi;
  GetInfo(env, fd, &mi);
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", Napi::Number::New(env, mi.id));
  o.Set("type", Napi::Number::New(env, mi.type));
  o.Set("keySize", Napi::Number::New(env, mi.key_size));
  o.Set("valueSize", Napi::Number::New(env, mi.value_size));
  o.Set("maxEntries", Napi::Number::New(env, mi.max_entries));
  o.Set("flags", Napi::Number::New(env, mi.map_flags));
  o.Set("name", Napi::String::New(env, FixedString(mi.name, sizeof(mi.name))));
  return o;
}

Napi::Value LinkInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  struct bpf_link_info li;
  GetInfo(env, fd, &li);
  bool netns = li.type == BPF_LINK_TYPE_NETNS;
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", Napi::Number::New(env, li.id));
  o.Set("progId", Napi::Number::New(env, li.prog_id));
  o.Set("type", Napi::Number::New(env, li.type));
  o.Set("netnsIno", Napi::Number::New(env, netns ? li.netns.netns_ino : 0));
  o.Set("attachType", Napi::Number::New(env, netns ? li.netns.attach_type : 0));
  return o;
}

// The id of the next BPF link after `id` (0 starts), or 0 when there is none.
Napi::Value LinkNextId(const Napi::CallbackInfo& info) {
  uint32_t id = ArgU32(info, 0, "id");
  uint32_t next = 0;
  if (bpf_link_get_next_id(id, &next) < 0) {
    if (errno != ENOENT) ThrowErrno(info.Env(), "bpf_link_get_next_id", errno);
    next = 0;
  }
  return Napi::Number::New(info.Env(), next);
}

Napi::Value LinkFdById(const Napi::CallbackInfo& info) {
  uint32_t id = ArgU32(info, 0, "id");
  int fd = bpf_link_get_fd_by_id(id);
  if (fd < 0) ThrowErrno(info.Env(), "bpf_link_get_fd_by_id", errno);
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value LinkCreateNetns(const Napi::CallbackInfo& info) {
  int progFd = ArgFd(info, 0, "progFd");
  int netnsFd = ArgFd(info, 1, "netnsFd");
  int fd = bpf_link_create(progFd, netnsFd, BPF_SK_LOOKUP, nullptr);
  if (fd < 0) ThrowErrno(info.Env(), "bpf_link_create", errno);
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value LinkUpdate(const Napi::CallbackInfo& info) {
  int linkFd = ArgFd(info, 0, "linkFd");
  int progFd = ArgFd(info, 1, "progFd");
  if (bpf_link_update(linkFd, progFd, nullptr) < 0) ThrowErrno(info.Env(), "bpf_link_update", errno);
  return info.Env().Undefined();
}

Napi::Value LinkDetach(const Napi::CallbackInfo& info) {
  int linkFd = ArgFd(info, 0, "linkFd");
  if (bpf_link_detach(linkFd) < 0) ThrowErrno(info.Env(), "bpf_link_detach", errno);
  return info.Env().Undefined();
}

// A three-instruction sk_lookup program that passes every lookup; with
// `ifindex`, it first reads ctx->ingress_ifindex, which the verifier refuses
// on a kernel whose context lacks the field. Returns the fd, or -errno.
int LoadProbeProgram(bool ifindex) {
  struct bpf_insn insns[3] = {};
  int n = 0;
  if (ifindex) {
    insns[n].code = BPF_LDX | BPF_MEM | BPF_W;  // r0 = *(u32 *)(r1 + 64)
    insns[n].dst_reg = BPF_REG_0;
    insns[n].src_reg = BPF_REG_1;
    insns[n++].off = offsetof(struct bpf_sk_lookup, ingress_ifindex);
  }
  insns[n].code = BPF_ALU64 | BPF_MOV | BPF_K;  // r0 = SK_PASS
  insns[n].dst_reg = BPF_REG_0;
  insns[n++].imm = SK_PASS;
  insns[n++].code = BPF_JMP | BPF_EXIT;
  LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = BPF_SK_LOOKUP);
  int fd = bpf_prog_load(BPF_PROG_TYPE_SK_LOOKUP, nullptr, "GPL", insns, n, &opts);
  return fd < 0 ? -errno : fd;
}

// Whether BPF_PROG_TEST_RUN runs sk_lookup programs (Linux 5.13; 5.10.135).
bool ProbeTestRun() {
  int fd = LoadProbeProgram(false);
  if (fd < 0) return false;
  struct bpf_sk_lookup ctx = {};
  ctx.family = AF_INET;
  ctx.protocol = IPPROTO_TCP;
  LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &ctx, .ctx_size_in = sizeof(ctx));
  int r = bpf_prog_test_run_opts(fd, &opts);
  close(fd);
  return r == 0;
}

// What the kernel offers the dispatcher, asked with libbpf's probes (each
// loads a tiny program): sk_lookup programs, the helpers they call, the
// context field ingress_ifindex and test runs of sk_lookup programs.
Napi::Value ProbeFeatures(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto yes = [](int r) { return r == 1; };
  Napi::Object o = Napi::Object::New(env);
  o.Set("skLookup", Napi::Boolean::New(env, yes(libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SK_LOOKUP, nullptr))));
  o.Set("skAssign", Napi::Boolean::New(env, yes(libbpf_probe_bpf_helper(BPF_PROG_TYPE_SK_LOOKUP, BPF_FUNC_sk_assign, nullptr))));
  o.Set("loop", Napi::Boolean::New(env, yes(libbpf_probe_bpf_helper(BPF_PROG_TYPE_SK_LOOKUP, BPF_FUNC_loop, nullptr))));
  o.Set("ktimeCoarse", Napi::Boolean::New(env, yes(libbpf_probe_bpf_helper(BPF_PROG_TYPE_SK_LOOKUP, BPF_FUNC_ktime_get_coarse_ns, nullptr))));
  int fd = LoadProbeProgram(true);
  if (fd >= 0) close(fd);
  o.Set("ingressIfindex", Napi::Boolean::New(env, fd >= 0));
  o.Set("testRun", Napi::Boolean::New(env, ProbeTestRun()));
  return o;
}

// Loads the smallest sk_lookup program: 0 when the kernel took it, else its
// errno (EPERM: no privilege to load programs, which libbpf's probes above
// cannot tell from a missing feature).
Napi::Value ProbeLoad(const Napi::CallbackInfo& info) {
  int fd = LoadProbeProgram(false);
  if (fd >= 0) close(fd);
  return Napi::Number::New(info.Env(), fd >= 0 ? 0 : -fd);
}

Napi::Value ProgTestRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int progFd = ArgFd(info, 0, "progFd");
  Napi::Buffer<uint8_t> ctx = ArgBuffer(info, 1, "ctx");
  int repeat = static_cast<int>(ArgInt(info, 2, "repeat", 0, INT32_MAX));
  std::vector<uint8_t> out(ctx.Length());
  LIBBPF_OPTS(bpf_test_run_opts, opts);
  opts.ctx_in = ctx.Data();
  opts.ctx_size_in = static_cast<__u32>(ctx.Length());
  opts.ctx_out = out.data();
  opts.ctx_size_out = static_cast<__u32>(out.size());
  opts.repeat = repeat;
  if (bpf_prog_test_run_opts(progFd, &opts) < 0) ThrowErrno(env, "bpf_prog_test_run", errno);
  size_t outLen = opts.ctx_size_out < out.size() ? opts.ctx_size_out : out.size();
  Napi::Object o = Napi::Object::New(env);
  o.Set("retval", Napi::Number::New(env, opts.retval));
  o.Set("durationNs", Napi::Number::New(env, opts.duration));
  o.Set("ctxOut", Napi::Buffer<uint8_t>::Copy(env, out.data(), outLen));
  return o;
}

}  // namespace

void InitBpf(Napi::Env env, Napi::Object exports) {
  Export(env, exports, "numPossibleCpus", NumPossibleCpus);
  Export(env, exports, "loadObject", LoadObject);
  Export(env, exports, "mapCreate", MapCreate);
  Export(env, exports, "pin", Pin);
  Export(env, exports, "getPinned", GetPinned);
  Export(env, exports, "progInfo", ProgInfo);
  Export(env, exports, "mapInfo", MapInfo);
  Export(env, exports, "linkInfo", LinkInfo);
  Export(env, exports, "linkNextId", LinkNextId);
  Export(env, exports, "linkFdById", LinkFdById);
  Export(env, exports, "linkCreateNetns", LinkCreateNetns);
  Export(env, exports, "linkUpdate", LinkUpdate);
  Export(env, exports, "linkDetach", LinkDetach);
  Export(env, exports, "progTestRun", ProgTestRun);
  Export(env, exports, "probeFeatures", ProbeFeatures);
  Export(env, exports, "probeLoad", ProbeLoad);
}

}  // namespace tubular
