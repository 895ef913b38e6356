// watch(fd, cb): readability notifications from the libuv loop (uv_poll).
#include <uv.h>

#include <memory>

#include "addon.h"
#include "errors.h"

namespace tubular {

namespace {

// Lifetime: the Watch is freed once both the uv handle is closed and the JS
// stop() function has been garbage collected (so a late stop() is harmless).
// An async env cleanup hook stays registered until the uv handle is closed,
// so that a worker's teardown waits for the close callback before it unloads
// the addon.
struct Watch {
  uv_poll_t poll;
  napi_env env = nullptr;
  napi_async_cleanup_hook_handle cleanupHandle = nullptr;
  Napi::FunctionReference callback;  // strong: keeps the function alive
  std::unique_ptr<Napi::AsyncContext> async;
  bool stopped = false;
  bool closed = false;
  bool jsAlive = true;
  bool inCallback = false;

  static void Cleanup(napi_async_cleanup_hook_handle, void* arg) { static_cast<Watch*>(arg)->Stop(); }

  static void OnClose(uv_handle_t* h) {
    Watch* w = static_cast<Watch*>(h->data);
    w->closed = true;
    if (w->cleanupHandle != nullptr) napi_remove_async_cleanup_hook(w->cleanupHandle);
    if (!w->jsAlive) delete w;
  }

  static void OnFinalize(napi_env, void* data, void*) {
    Watch* w = static_cast<Watch*>(data);
    w->jsAlive = false;
    if (w->closed) delete w;
  }

  static void OnPoll(uv_poll_t* h, int /*status*/, int /*events*/) {
    // Errors (status < 0) are reported as readability too: the caller's
    // read then surfaces the actual error.
    Watch* w = static_cast<Watch*>(h->data);
    if (w->stopped) return;
    Napi::Env env(w->env);
    Napi::HandleScope scope(env);
    w->inCallback = true;
    try {
      w->callback.MakeCallback(env.Global(), {}, *w->async);
    } catch (const Napi::Error& e) {
      napi_fatal_exception(w->env, e.Value());
    }
    w->inCallback = false;
    if (w->stopped) w->async.reset();
  }

  // Idempotent. Called from JS or from the env cleanup hook, while the env
  // is alive.
  void Stop() {
    if (stopped) return;
    stopped = true;
    uv_poll_stop(&poll);
    callback.Reset();
    if (!inCallback) async.reset();
    uv_close(reinterpret_cast<uv_handle_t*>(&poll), OnClose);
  }
};

Napi::Value StopWatch(const Napi::CallbackInfo& info) {
  static_cast<Watch*>(info.Data())->Stop();
  return info.Env().Undefined();
}

Napi::Value WatchFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  Napi::Function cb = ArgFunction(info, 1, "onReadable");

  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr)
    throw Napi::Error::New(env, "watch: no event loop");

  auto w = std::make_unique<Watch>();
  w->env = env;
  int r = uv_poll_init(loop, &w->poll, fd);
  if (r < 0) ThrowErrno(env, "uv_poll_init", -r);
  w->poll.data = w.get();
  r = uv_poll_start(&w->poll, UV_READABLE | UV_DISCONNECT, Watch::OnPoll);
  if (r < 0) {
    // The handle was initialised: it must be closed before being freed.
    Watch* raw = w.release();
    raw->jsAlive = false;
    raw->stopped = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&raw->poll), Watch::OnClose);
    ThrowErrno(env, "uv_poll_start", -r);
  }
  Watch* raw = w.release();
  raw->callback = Napi::Persistent(cb);
  raw->async = std::make_unique<Napi::AsyncContext>(env, "tubular.watch");
  if (napi_add_async_cleanup_hook(env, Watch::Cleanup, raw, &raw->cleanupHandle) != napi_ok) {
    raw->Stop();
    raw->jsAlive = false;
    throw Napi::Error::New(env, "watch: napi_add_async_cleanup_hook failed");
  }

  Napi::Function stop = Napi::Function::New(env, StopWatch, "stop", raw);
  napi_add_finalizer(env, stop, raw, Watch::OnFinalize, nullptr, nullptr);
  Napi::Object handle = Napi::Object::New(env);
  handle.Set("stop", stop);
  return handle;
}

}  // namespace

void InitWatch(Napi::Env env, Napi::Object exports) { Export(env, exports, "watch", WatchFd); }

}  // namespace tubular
