// The handoff protocol as data: what a request may say, what a reply says,
// and the error codes, one per class of bad input. docs/PROTOCOL.md is the
// public description of the same thing; keep the two in step.
import { z } from 'zod';

/** Where the daemon listens unless told otherwise. */
export const DEFAULT_SOCKET = '/run/tubular/tubulard.sock';
/** Largest request payload, in bytes. */
export const MAX_REQUEST_BYTES = 64 * 1024;
/** Most sockets one register request may carry. */
export const MAX_FDS = 16;

export const ERROR_CODES = [
  'EBADMSG',         // the payload is not UTF-8 JSON of an object
  'EOPNOTSUPP',      // unknown op
  'EINVAL',          // a field is unknown, missing or of the wrong type or value
  'EBADLABEL',       // the label is empty or malformed
  'EMSGSIZE',        // the payload is larger than 64 KiB
  'ECTRUNC',         // the kernel dropped fds of the control message (MSG_CTRUNC)
  'EUNEXPECTEDFDS',  // fds attached to an op that takes none
  'ENOFDS',          // register without fds
  'E2BIG',           // more than 16 fds
  'ENOTSOCK',        // an fd is not a socket
  'EAFNOSUPPORT',    // a socket that is not IPv4 or IPv6
  'EPROTONOSUPPORT', // an IPv4/IPv6 socket that is neither TCP nor UDP
  'ENOTLISTENING',   // a TCP socket that is not listening
  'ENOTBOUND',       // a UDP socket that is not bound
  'EDUPLICATE',      // two sockets of one request go to one destination and are not one SO_REUSEPORT group
  'EBADSOCK',        // the dispatcher cannot use a socket: it belongs to another network namespace
  'EPERM',           // the policy does not allow this peer
  'EDQUOT',          // the peer holds as many registered destinations as one user may
  'ENOENT',          // unregister of something not registered
  'ENOTLOADED',      // no dispatcher is loaded
  'ENOSPC',          // the dispatcher is full
  'EBUSY',           // too many clients (sent right after accepting, then closed), or the lock stayed taken
  'ETIMEDOUT',       // the client was idle too long: sent, then closed
  'EIO',             // the dispatcher failed; the message says how
] as const;
export type HandoffErrorCode = typeof ERROR_CODES[number];

const domain = z.enum(['ipv4', 'ipv6']);
const protocol = z.enum(['tcp', 'udp']);
// The label is checked separately (labelSchema) so a bad one gets EBADLABEL.
const label = z.string();

export const pingRequest = z.strictObject({ op: z.literal('ping') });
export const listRequest = z.strictObject({ op: z.literal('list') });
export const registerRequest = z.strictObject({ op: z.literal('register'), label });
export const unregisterRequest = z.strictObject({ op: z.literal('unregister'), label, domain, protocol });

export const REQUESTS = {
  ping: pingRequest,
  list: listRequest,
  register: registerRequest,
  unregister: unregisterRequest,
} as const;
export type Op = keyof typeof REQUESTS;
export const OPS = Object.keys(REQUESTS) as Op[];

export type Request =
  | z.infer<typeof pingRequest>
  | z.infer<typeof listRequest>
  | z.infer<typeof registerRequest>
  | z.infer<typeof unregisterRequest>;

export interface RegisteredSocket {
  label: string;
  domain: 'ipv4' | 'ipv6';
  protocol: 'tcp' | 'udp';
  /** the socket's address and port as the service bound it */
  address: string;
  port: number;
  /** SO_COOKIE of the socket, as a decimal string */
  cookie: string;
  /** cookie of the socket this one replaced, or null */
  replaced: string | null;
}

export interface ListedDestination {
  label: string;
  domain: 'ipv4' | 'ipv6';
  protocol: 'tcp' | 'udp';
  /** whether a socket is registered */
  registered: boolean;
  /** the first registered socket's cookie as a decimal string, or null */
  cookie: string | null;
  /** the cookies of every registered socket (the members of one SO_REUSEPORT group) */
  cookies: string[];
  /** the uid that registered the sockets through tubulard, or null (none, or root's tools) */
  owner: number | null;
  bindings: number;
  lookups: number;
  misses: number;
  errors: number;
}

export interface ErrorReply { ok: false; error: { code: HandoffErrorCode; message: string } }
export type Reply =
  | { ok: true; version: string }
  | { ok: true; registered: RegisteredSocket[] }
  | { ok: true; destinations: ListedDestination[] }
  | { ok: true }
  | ErrorReply;

/** An error that becomes an error reply. */
export class RequestError extends Error {
  readonly code: HandoffErrorCode;
  constructor(code: HandoffErrorCode, message: string) {
    super(message);
    this.name = 'RequestError';
    this.code = code;
  }
}
