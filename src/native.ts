// The native addon: a thin syscall layer. Every function maps to one or two
// syscalls (or one libbpf call); policy lives in the TypeScript that calls it.
//
// Errors thrown by the addon look like Node's system errors: an Error with
// `code` ('ENOENT', 'EPERM', ...), `errno` (positive number), `syscall`
// (e.g. 'bpf_map_update_elem') and a message naming the operation,
// e.g. "bpf_map_update_elem: No such file or directory".
//
// File descriptors are plain numbers owned by the caller: close them with
// close(). Every fd the addon creates has O_CLOEXEC.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export interface LoadedObject {
  /** fd of the program named by progName */
  progFd: number;
  /** map name -> fd, for every map of the object (including reused ones, as fresh dups) */
  maps: Record<string, number>;
}

export interface ProgInfo { id: number; tag: string; name: string; type: number }
export interface MapInfo { id: number; type: number; keySize: number; valueSize: number; maxEntries: number; flags: number; name: string }
export interface LinkInfo { id: number; progId: number; type: number; netnsIno: number; attachType: number }

export interface SocketInfo {
  domain: number;       // SO_DOMAIN: AF_INET=2, AF_INET6=10, AF_UNIX=1 ...
  type: number;         // SO_TYPE: SOCK_STREAM=1, SOCK_DGRAM=2, SOCK_SEQPACKET=5
  protocol: number;     // SO_PROTOCOL: IPPROTO_TCP=6, IPPROTO_UDP=17
  listening: boolean;   // SO_ACCEPTCONN
  reusePort: boolean;   // SO_REUSEPORT
  address: string;      // getsockname: '' when unbound or not inet, else textual IP
  port: number;         // getsockname port, 0 when unbound
  cookie: bigint;       // SO_COOKIE
}

/** What libbpf's probes (and two of ours) find; src/kernel.ts says which Linux version has each. */
export interface KernelFeatures {
  skLookup: boolean;
  skAssign: boolean;
  loop: boolean;
  ktimeCoarse: boolean;
  /** the verifier lets an sk_lookup program read ctx->ingress_ifindex */
  ingressIfindex: boolean;
  /** BPF_PROG_TEST_RUN runs sk_lookup programs */
  testRun: boolean;
}

export interface TestRunResult { retval: number; durationNs: number; ctxOut: Buffer }

export interface PeerCred { pid: number; uid: number; gid: number }
export interface ReceivedMessage {
  data: Buffer;          // payload (empty Buffer on orderly EOF: check eof)
  fds: number[];         // fds received with SCM_RIGHTS (caller owns and must close)
  truncated: boolean;    // MSG_TRUNC: payload larger than the buffer
  ctrlTruncated: boolean;// MSG_CTRUNC: some fds were dropped by the kernel
  eof: boolean;          // recvmsg returned 0 on a stream/seqpacket: peer closed
}

/** A dump under way on a thread of its own (mapDumpStart). */
export type DumpHandle = { readonly __dump: unique symbol };
/** An update under way on a thread of its own (mapUpdateStart). */
export type PendingUpdate = { readonly __update: unique symbol };
/** A batch update under way on a thread of its own (mapUpdateBatchStart). */
export type PendingBatch = { readonly __batch: unique symbol };

export interface Native {
  // ---- generic fds ----
  close(fd: number): void;
  /** open(2) with O_CLOEXEC added; flags are numeric O_* values */
  open(path: string, flags: number): number;
  /** flock(2); op = LOCK_SH(1) | LOCK_EX(2) | LOCK_UN(8), optionally | LOCK_NB(4). Returns false on EWOULDBLOCK with LOCK_NB. */
  flock(fd: number, op: number): boolean;
  /** fstat inode number of an fd (e.g. of /proc/self/ns/net) */
  inode(fd: number): number;
  dup(fd: number): number;
  /** ioctl(NS_GET_NSTYPE): the CLONE_NEW* type of a namespace file */
  nsType(fd: number): number;
  /** renameat2(RENAME_NOREPLACE): EEXIST instead of replacing what is there */
  renameNoReplace(from: string, to: string): void;
  /** number of open fds of this process (counts /proc/self/fd entries) */
  fdCount(): number;

  // ---- clocks ----
  /** CLOCK_MONOTONIC (ns) and CLOCK_REALTIME (ms, to the nanosecond), read back to back */
  clocks(): { monoNs: bigint; wallMs: number };

  // ---- BPF objects ----
  /** libbpf_num_possible_cpus() */
  numPossibleCpus(): number;
  /**
   * Open an ELF BPF object, reuse the given already-existing maps (name -> fd,
   * via bpf_map__reuse_fd), load it into the kernel, and return dups of the
   * fds of the named program and of all maps. The bpf_object is closed before
   * returning. On a verifier failure the error message carries the tail of
   * the verifier log.
   */
  loadObject(path: string, progName: string, reuseMaps: Record<string, number>): LoadedObject;
  /** bpf_map_create(type, name, keySize, valueSize, maxEntries, {map_flags}) */
  mapCreate(type: number, name: string, keySize: number, valueSize: number, maxEntries: number, flags: number): number;
  /** bpf_obj_pin */
  pin(fd: number, path: string): void;
  /** bpf_obj_get_opts with file_flags (0, BPF_F_RDONLY=8, BPF_F_WRONLY=16) */
  getPinned(path: string, flags: number): number;
  progInfo(fd: number): ProgInfo;
  mapInfo(fd: number): MapInfo;
  linkInfo(fd: number): LinkInfo;
  /** bpf_link_get_next_id: the id of the next link after `id` (0 starts), 0 when none is left (root) */
  linkNextId(id: number): number;
  /** bpf_link_get_fd_by_id -> link fd (root; ENOENT when it went away) */
  linkFdById(id: number): number;
  /** bpf_link_create(progFd, netnsFd, BPF_SK_LOOKUP) -> link fd */
  linkCreateNetns(progFd: number, netnsFd: number): number;
  /** bpf_link_update(linkFd, newProgFd) */
  linkUpdate(linkFd: number, progFd: number): void;
  /** bpf_link_detach: the link stays, its program no longer runs */
  linkDetach(linkFd: number): void;
  /** libbpf's probes (root): sk_lookup programs, the helpers the dispatcher calls, ctx->ingress_ifindex, test runs */
  probeFeatures(): KernelFeatures;
  /** loads the smallest sk_lookup program: 0 when the kernel took it, else its errno (EPERM, EACCES: no privilege) */
  probeLoad(): number;
  /** BPF_PROG_TEST_RUN with ctx_in = ctx (struct bpf_sk_lookup), repeat times */
  progTestRun(progFd: number, ctx: Buffer, repeat: number): TestRunResult;

  // ---- map elements (keys/values are raw bytes; sizes must match the map) ----
  /** returns false on ENOENT; fills `value` */
  mapLookup(fd: number, key: Buffer, value: Buffer): boolean;
  /** looks up `count` packed keys into `values` (missing ones zeroed); returns how many were found */
  mapLookupMany(fd: number, keys: Buffer, values: Buffer, count: number): number;
  /** flags: BPF_ANY=0, BPF_NOEXIST=1, BPF_EXIST=2 */
  mapUpdate(fd: number, key: Buffer, value: Buffer, flags: number): void;
  /** returns false on ENOENT */
  mapDelete(fd: number, key: Buffer): boolean;
  /** returns false when the map is empty / key was last; fills nextKey */
  mapNextKey(fd: number, key: Buffer | null, nextKey: Buffer): boolean;
  /**
   * bpf_map_update_batch over `count` packed keys and values; falls back to
   * a loop of bpf_map_update_elem inside C++ when the kernel lacks batch ops
   * for this map type. Returns the number of elements written.
   */
  mapUpdateBatch(fd: number, keys: Buffer, values: Buffer, count: number, flags: number): number;
  /** mapUpdate on a thread of its own, on a duplicate of fd (an update of a map-in-map waits for an RCU grace period); keep the value's fd (an inner map) open until mapUpdateFinish */
  mapUpdateStart(fd: number, key: Buffer, value: Buffer, flags: number): PendingUpdate;
  /** waits for the update mapUpdateStart began; throws its error */
  mapUpdateFinish(handle: PendingUpdate): void;
  /**
   * mapUpdateBatch on a thread of its own, on a duplicate of fd: returns at
   * once. The buffers are held until mapUpdateBatchFinish and must not
   * change before it.
   */
  mapUpdateBatchStart(fd: number, keys: Buffer, values: Buffer, count: number, flags: number): PendingBatch;
  /** waits for the batch mapUpdateBatchStart began; returns the elements written, or throws its error */
  mapUpdateBatchFinish(handle: PendingBatch): number;
  /** values[i] = array[indices[i]], read through a mapping of an mmapable array (BPF_F_MMAPABLE); values packed, the map's value size */
  arrayGather(fd: number, indices: Uint32Array, values: Buffer): void;
  /** array[indices[i]] = values[i], written through a mapping of an mmapable array: a copy instead of a syscall per element */
  arrayScatter(fd: number, indices: Uint32Array, values: Buffer): void;
  /** bpf_map_delete_batch (with the same C++-side fallback); ENOENT elements are skipped. Returns number deleted. */
  mapDeleteBatch(fd: number, keys: Buffer, count: number): number;
  /**
   * Read the whole map: bpf_map_lookup_batch in chunks (fallback:
   * get_next_key + lookup in C++). valueSize is the per-element size as the
   * syscall sees it (for per-CPU maps: roundup(valueSize, 8) * possible CPUs).
   */
  mapDump(fd: number, keySize: number, valueSize: number): { keys: Buffer; values: Buffer; count: number };
  /**
   * mapDump on a thread of its own, so that the caller can go on meanwhile:
   * returns at once; mapDumpFinish waits for the dump and returns it. It
   * only reads the map. Keep fd open until then.
   */
  mapDumpStart(fd: number, keySize: number, valueSize: number): DumpHandle;
  mapDumpFinish(handle: DumpHandle): { keys: Buffer; values: Buffer; count: number };

  // ---- sockets ----
  socketInfo(fd: number): SocketInfo;
  /** ioctl(SIOCGSKNS) + fstat: the inode of the socket's network namespace */
  socketNetnsInode(fd: number): number;
  /** SO_NETNS_COOKIE (Linux 5.14): the cookie of the socket's network namespace */
  socketNetnsCookie(fd: number): bigint;
  /** the cookie of the caller's own network namespace */
  ownNetnsCookie(): bigint;
  /** pidfd_open(pid, 0) */
  pidfdOpen(pid: number): number;
  /** pidfd_getfd(pidfd, targetFd, 0) */
  pidfdGetfd(pidfd: number, targetFd: number): number;

  // ---- Unix SOCK_SEQPACKET for the handoff daemon and its clients ----
  /** socket(AF_UNIX, SOCK_SEQPACKET|SOCK_NONBLOCK|SOCK_CLOEXEC) + bind(path) + listen(backlog) */
  seqpacketListen(path: string, backlog: number): number;
  /** socket(AF_UNIX, SOCK_SEQPACKET|SOCK_CLOEXEC) + connect(path); blocking */
  seqpacketConnect(path: string): number;
  /** accept4(fd, SOCK_NONBLOCK|SOCK_CLOEXEC); returns -1 on EAGAIN */
  accept(fd: number): number;
  /** SO_PEERCRED */
  peerCred(fd: number): PeerCred;
  /** SO_PEERGROUPS: supplementary gids of the peer at connect time */
  peerGroups(fd: number): number[];
  /** sendmsg with optional SCM_RIGHTS fds; returns bytes sent, -1 on EAGAIN */
  sendMessage(fd: number, data: Buffer, fds: number[]): number;
  /** recvmsg into a buffer of maxBytes with room for maxFds fds; returns null on EAGAIN */
  recvMessage(fd: number, maxBytes: number, maxFds: number): ReceivedMessage | null;
  /** sets/clears O_NONBLOCK */
  setNonBlocking(fd: number, on: boolean): void;
  /** socket(AF_UNIX, SOCK_DGRAM) + sendto(path) of one datagram (a leading NUL: abstract namespace); returns bytes sent */
  unixDatagramSend(path: string, data: Buffer): number;
  /** getsockopt SO_TYPE on an fd, or -1 when it is not a socket (ENOTSOCK) */
  socketType(fd: number): number;

  /**
   * Watch an fd for readability on the libuv loop (uv_poll). The callback
   * runs on the main thread with no arguments each time the fd is readable
   * (or hung up). Returns a handle; stop() it before closing the fd.
   */
  watch(fd: number, onReadable: () => void): { stop(): void };
}

const here = path.dirname(fileURLToPath(import.meta.url));

function findAddon(): string {
  // dist/src/native.js -> ../../build/Release/tubular.node
  const candidates = [
    path.resolve(here, '../../build/Release/tubular.node'),
    path.resolve(here, '../build/Release/tubular.node'),
  ];
  for (const c of candidates) if (existsSync(c)) return c;
  throw new Error(`native addon not built (looked for ${candidates[0]}): run scripts/setup`);
}

let cached: Native | undefined;

/** The addon, loaded on first use so commands that need no syscalls stay fast. */
export function native(): Native {
  if (!cached) {
    const require = createRequire(import.meta.url);
    cached = require(findAddon()) as Native;
  }
  return cached;
}
