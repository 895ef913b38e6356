// struct bpf_sk_lookup as BPF_PROG_TEST_RUN takes it (linux/bpf.h): the
// context the kernel would build for a new connection, without a packet.
import { endianness } from 'node:os';

export const SK_LOOKUP_SIZE = 72;
const OFF = {
  cookie: 0,        // u64: out, the selected socket's cookie (0: none)
  family: 8,        // u32
  protocol: 12,     // u32
  remoteIp4: 16,    // u32, network order
  remoteIp6: 20,    // u32[4], network order
  remotePort: 36,   // be16
  localIp4: 40,     // u32, network order
  localIp6: 44,     // u32[4], network order
  localPort: 60,    // u32, host order
  ingressIfindex: 64, // must be zero for a test run
} as const;

export interface Lookup {
  protocol: 'tcp' | 'udp';
  family: 4 | 6;
  /** local (destination) address, 4 or 16 bytes */
  address: Uint8Array;
  port: number;
}

const LE = endianness() === 'LE';

/** The context bytes for one lookup, with a fixed remote end. */
export function skLookupContext(l: Lookup): Buffer {
  const b = Buffer.alloc(SK_LOOKUP_SIZE);
  const u32 = (v: number, off: number): void => { if (LE) b.writeUInt32LE(v, off); else b.writeUInt32BE(v, off); };
  u32(l.family === 4 ? 2 : 10, OFF.family);
  u32(l.protocol === 'tcp' ? 6 : 17, OFF.protocol);
  b.writeUInt16BE(40000, OFF.remotePort);
  if (l.family === 4) {
    b.set([192, 0, 2, 1], OFF.remoteIp4);
    b.set(l.address.subarray(0, 4), OFF.localIp4);
  } else {
    b.set([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], OFF.remoteIp6);
    b.set(l.address.subarray(0, 16), OFF.localIp6);
  }
  u32(l.port, OFF.localPort);
  return b;
}

/** The cookie of the socket the program selected, 0n for none. */
export function selectedCookie(ctxOut: Buffer): bigint {
  return LE ? ctxOut.readBigUInt64LE(OFF.cookie) : ctxOut.readBigUInt64BE(OFF.cookie);
}
