// What this machine charges for the kernel's parts of a lookup, before any
// code of ours: the empty program, a helper call, a hash-map lookup (keys
// shaped as the binding set's, and 8-byte keys to compare), and the
// hand-over of a socket (taken from a sockmap, assigned, released). Each is
// a program of its own (floor.bpf.c), timed with BPF_PROG_TEST_RUN in the
// same rounds, and checked for the right answer first. The least a hit of
// the dispatcher can cost is the floor, one lookup and the hand-over.
import net from 'node:net';
import { BINDING_VALUE_SIZE, writeU32, writeU64 } from '../src/layout.js';
import { native } from '../src/native.js';
import { lookupContext, selectedCookie } from '../src/probe.js';
import { type ReferenceProgram, type References, REFERENCE_PROGRAMS, REFERENCE_REPEAT } from './floor.js';
import { fdOf } from './sockets.js';
import { median } from './stats.js';

export interface PartsResult {
  /** keys in each hash map (as many as the binding set the targets are set for) */
  keys: number;
  /** median ns per run of each program */
  programs: Record<ReferenceProgram, number>;
  /** ns over the floor, per call or lookup (the floor itself: ns per run) */
  floor: number;
  call: number;
  lookup24: number;
  lookup8: number;
  take: number;
  handOver: number;
  /** the floor, one lookup of a 24-byte key and the hand-over */
  leastHit: number;
  rounds: Record<ReferenceProgram, number[]>;
}

const PROBE_PORT = 80;
/** The words after the first of the probe's key (floor.bpf.c builds the same). */
const PROBE_WORDS = [1, 2, 3, 4, 5];

/** `count` distinct keys of `words` u32 each, then the probe's: its first word the port, every other key's above any port. */
function keysOf(words: number, count: number): Buffer {
  const keys = Buffer.alloc((count + 1) * words * 4);
  for (let i = 0; i <= count; i++) {
    writeU32(keys, i < count ? 0x10000 + i : PROBE_PORT, i * words * 4);
    for (let w = 1; w < words; w++) writeU32(keys, PROBE_WORDS[w - 1], (i * words + w) * 4);
  }
  return keys;
}

/** Fills the reference programs' maps and times them; the caller closes `refs`. */
export async function measureParts(refs: References, opts: { keys: number; rounds: number; repeat: number; log: (line: string) => void }): Promise<PartsResult> {
  const n = native();
  const server = net.createServer((c) => c.destroy());
  try {
    for (const [map, words] of [['hash24', 6], ['hash8', 2]] as const) {
      n.mapUpdateBatch(refs.maps[map], keysOf(words, opts.keys), Buffer.alloc((opts.keys + 1) * BINDING_VALUE_SIZE), opts.keys + 1, 0);
    }
    await new Promise<void>((ok, fail) => { server.once('error', fail); server.listen({ host: '127.0.0.1', port: 0 }, ok); });
    const fd = fdOf(server);
    const value = Buffer.alloc(8);
    writeU64(value, BigInt(fd), 0);
    n.mapUpdate(refs.maps.one_socket, Buffer.alloc(4), value, 0);

    const ctx = lookupContext({ protocol: 'tcp', family: 4, address: Uint8Array.of(127, 0, 0, 1), port: PROBE_PORT });
    const cookie = n.socketInfo(fd).cookie;
    for (const name of REFERENCE_PROGRAMS) {
      const r = n.progTestRun(refs.progs[name], ctx, 1);
      const want = name === 'hand_over' ? cookie : 0n;
      if (r.retval !== 1 || selectedCookie(r.ctxOut) !== want) {
        throw new Error(`wrong answer from the reference program ${name}: retval ${r.retval} cookie ${selectedCookie(r.ctxOut)}, expected retval 1 cookie ${want}`);
      }
      n.progTestRun(refs.progs[name], ctx, opts.repeat); // warm caches
    }
    const rounds = Object.fromEntries(REFERENCE_PROGRAMS.map((p) => [p, [] as number[]])) as Record<ReferenceProgram, number[]>;
    for (let r = 0; r < opts.rounds; r++) {
      for (const name of REFERENCE_PROGRAMS) rounds[name].push(n.progTestRun(refs.progs[name], ctx, opts.repeat).durationNs);
    }
    const programs = Object.fromEntries(REFERENCE_PROGRAMS.map((p) => [p, median(rounds[p])])) as Record<ReferenceProgram, number>;
    const floor = programs.floor_prog;
    const each = (name: ReferenceProgram): number => (programs[name] - floor) / REFERENCE_REPEAT;
    const result: PartsResult = {
      keys: opts.keys, programs, floor,
      call: each('calls'), lookup24: each('lookups24'), lookup8: each('lookups8'),
      take: programs.take_socket - floor, handOver: programs.hand_over - floor,
      leastHit: programs.hand_over + each('lookups24'),
      rounds,
    };
    opts.log(`parts: floor ${floor.toFixed(1)} ns, call ${result.call.toFixed(1)}, lookup ${result.lookup24.toFixed(1)} (8-byte key ${result.lookup8.toFixed(1)}), hand-over ${result.handOver.toFixed(1)}`);
    return result;
  } finally {
    await new Promise<void>((ok) => server.close(() => ok()));
  }
}
