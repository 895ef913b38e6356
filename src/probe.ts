// Asking the data plane what it would do with a connection, without sending
// a packet: BPF_PROG_TEST_RUN on the sk_lookup program with a made-up
// struct bpf_sk_lookup. Used by tests and benchmarks.
import path from 'node:path';
import { PROGRAMS, type ProgramVariant } from './kernel.js';
import { AF, IPPROTO, OBJECT_MAPS, readU64, writeU32 } from './layout.js';
import { native } from './native.js';
import { programObjectPath } from './paths.js';
import type { Family } from './prefix.js';
import type { Protocol } from './protocol.js';

// struct bpf_sk_lookup (linux/bpf.h): cookie u64 @0, family @8, protocol @12,
// remote_ip4 @16, remote_ip6 @20, remote_port (be16) @36, local_ip4 @40,
// local_ip6 @44, local_port (host order) @60, ingress_ifindex @64; 72 bytes.
export const SK_LOOKUP_CTX_SIZE = 72;

export interface ProbePacket {
  protocol: Protocol;
  family: Family;
  /** local (destination) address: 4 or 16 bytes, network order */
  address: Uint8Array;
  port: number;
  /** remote (source) address, same family, network order; loopback unless given */
  remote?: Uint8Array;
}

export interface ProbeResult {
  /** SK_PASS (1) or SK_DROP (0) */
  verdict: 'pass' | 'drop';
  /** the selected socket's cookie, 0n when none was selected */
  cookie: bigint;
  /** the kernel's average run time in ns over `repeat` runs */
  durationNs: number;
}

const REMOTE_V4 = Uint8Array.of(127, 0, 0, 1);
const REMOTE_V6 = Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1);

/** Encodes the context of one lookup, as the kernel would fill it in. */
export function lookupContext(p: ProbePacket, remotePort = 40000): Buffer {
  const ctx = Buffer.alloc(SK_LOOKUP_CTX_SIZE);
  writeU32(ctx, AF[p.family], 8);
  writeU32(ctx, IPPROTO[p.protocol], 12);
  if (p.family === 4) {
    ctx.set(p.remote?.subarray(0, 4) ?? REMOTE_V4, 16);
    ctx.set(p.address.subarray(0, 4), 40);
  } else {
    ctx.set(p.remote?.subarray(0, 16) ?? REMOTE_V6, 20);
    ctx.set(p.address.subarray(0, 16), 44);
  }
  ctx.writeUInt16BE(remotePort, 36);
  writeU32(ctx, p.port, 60);
  return ctx;
}

/** The cookie of the socket the program selected (ctx_out.cookie), 0n for none. */
export function selectedCookie(ctxOut: Buffer): bigint {
  return ctxOut.length >= 8 ? readU64(ctxOut, 0) : 0n;
}

/**
 * Runs the program on one made-up lookup `repeat` times. A quiet question
 * (no interface, source port 0 from the unspecified address, which no real
 * packet has) is answered without counting a hit on the binding that
 * decides it: what tubectl explain asks. The full program tells it by the
 * interface and the port, the compat one by the port and the address.
 */
export function probe(progFd: number, p: ProbePacket, repeat = 1, opts: { quiet?: boolean } = {}): ProbeResult {
  const asked = opts.quiet ? { ...p, remote: new Uint8Array(16) } : p;
  const r = native().progTestRun(progFd, lookupContext(asked, opts.quiet ? 0 : 40000), repeat);
  return { verdict: r.retval === 1 ? 'pass' : 'drop', cookie: selectedCookie(r.ctxOut), durationNs: r.durationNs };
}

/**
 * Loads a variant of the program on the maps of a loaded dispatcher, not
 * attached: BPF_PROG_TEST_RUN needs no link, so both variants can be asked
 * the same questions about the same binding set. Returns its fd.
 */
export function loadProgramOn(stateDir: string, variant: ProgramVariant): number {
  const n = native();
  const reuse: Record<string, number> = {};
  try {
    for (const name of OBJECT_MAPS) reuse[name] = n.getPinned(path.join(stateDir, name), 0);
    const obj = n.loadObject(programObjectPath(PROGRAMS[variant].object), PROGRAMS[variant].name, reuse);
    for (const fd of Object.values(obj.maps)) n.close(fd);
    return obj.progFd;
  } finally {
    for (const fd of Object.values(reuse)) n.close(fd);
  }
}
