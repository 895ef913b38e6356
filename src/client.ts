// The client side of the handoff protocol, for Node services that cannot use
// systemd socket activation: send your listening sockets to tubulard.
//
//   const server = net.createServer(...).listen(8080);
//   await registerSockets('web', [server._handle.fd]);
//
// The registration lasts while the socket is open: the daemon keeps no copy,
// and the kernel removes a closed socket from the dispatcher's socket map.
// Keep the server listening for as long as it should get traffic. Workers
// that each listen on a member of one SO_REUSEPORT group register the
// group: all its fds in one call (docs/PROTOCOL.md).
import { isSystemError } from './errors.js';
import { native } from './native.js';
import { DEFAULT_SOCKET, type ListedDestination, type RegisteredSocket, type Reply } from './daemon/wire.js';
import type { Domain, Protocol } from './protocol.js';

export type { ListedDestination, RegisteredSocket, Reply } from './daemon/wire.js';
export { DEFAULT_SOCKET } from './daemon/wire.js';

export interface ClientOptions {
  /** the daemon's socket; default /run/tubular/tubulard.sock */
  socketPath?: string;
  /** how long to wait for a reply, in ms; default 10000 */
  timeoutMs?: number;
}

/** An error reply from the daemon: `code` is one of docs/PROTOCOL.md's codes. */
export class HandoffError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'HandoffError';
    this.code = code;
  }
}

const MAX_REPLY_BYTES = 4 * 1024 * 1024;

/** One connection to the daemon; requests on it are answered in turn. */
export class HandoffClient {
  private fd: number;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(fd: number) {
    this.fd = fd;
  }

  /** Connects (a local, immediate operation); throws ENOENT/ECONNREFUSED/EACCES as system errors. */
  static connect(socketPath: string = DEFAULT_SOCKET): HandoffClient {
    const n = native();
    const fd = n.seqpacketConnect(socketPath);
    n.setNonBlocking(fd, true);
    return new HandoffClient(fd);
  }

  /**
   * Sends one request (an object, or raw bytes as they are) with fds attached
   * and resolves to the daemon's reply, ok or not. The fds stay yours.
   */
  request(payload: object | string | Buffer, fds: readonly number[] = [], timeoutMs = 10_000): Promise<Reply> {
    const data = Buffer.isBuffer(payload) ? payload : Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload));
    const run = (): Promise<Reply> => this.exchange(data, fds, timeoutMs);
    const next = this.queue.then(run, run);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Resolves to the next message the daemon sends, e.g. an EBUSY or ETIMEDOUT notice. */
  receive(timeoutMs = 10_000): Promise<Reply | null> {
    return this.wait(timeoutMs);
  }

  close(): void {
    if (this.fd < 0) return;
    native().close(this.fd);
    this.fd = -1;
  }

  private exchange(data: Buffer, fds: readonly number[], timeoutMs: number): Promise<Reply> {
    if (this.fd < 0) return Promise.reject(new Error('the connection to tubulard is closed'));
    let sent: number;
    try {
      sent = native().sendMessage(this.fd, data, [...fds]);
    } catch (err) {
      // Refused (EBUSY) and closed before the request went out: the notice
      // the daemon sent is still there to read, and is the answer.
      if (!isSystemError(err, 'EPIPE') && !isSystemError(err, 'ECONNRESET')) return Promise.reject(err);
      return this.wait(timeoutMs).then((r) => {
        if (r === null) throw err;
        return r;
      });
    }
    if (sent < 0) {
      return Promise.reject(new Error('the connection to tubulard is congested: read the replies before sending more'));
    }
    return this.wait(timeoutMs).then((r) => {
      if (r === null) throw new Error('tubulard closed the connection without a reply');
      return r;
    });
  }

  /** Waits for one message; null when the daemon closed the connection. */
  private wait(timeoutMs: number): Promise<Reply | null> {
    const n = native();
    const fd = this.fd;
    return new Promise((resolve, reject) => {
      let watch: { stop(): void } | undefined;
      const finish = (fn: () => void): void => {
        clearTimeout(timer);
        watch?.stop();
        fn();
      };
      const timer = setTimeout(() => finish(() => reject(new Error(`tubulard did not reply within ${timeoutMs} ms`))), timeoutMs);
      const poll = (): boolean => {
        let msg;
        try {
          msg = n.recvMessage(fd, MAX_REPLY_BYTES, 0);
        } catch (err) {
          if (!isSystemError(err, 'ECONNRESET')) {
            finish(() => reject(err));
            return true;
          }
          // The daemon closed the connection with our request unread (it
          // refused the connection): the kernel reports the reset first,
          // then still hands over what the daemon sent before closing.
          try {
            msg = n.recvMessage(fd, MAX_REPLY_BYTES, 0);
          } catch {
            msg = null;
          }
          if (msg === null || msg.eof) { finish(() => resolve(null)); return true; }
        }
        if (msg === null) return false;
        if (msg.eof) { finish(() => resolve(null)); return true; }
        try {
          const reply = JSON.parse(msg.data.toString('utf8')) as Reply;
          finish(() => resolve(reply));
        } catch (err) {
          finish(() => reject(new Error(`tubulard sent a reply that is not JSON: ${(err as Error).message}`)));
        }
        return true;
      };
      if (!poll()) watch = n.watch(fd, () => { poll(); });
    });
  }
}

async function once<T>(opts: ClientOptions, payload: object, fds: readonly number[], pick: (r: Reply & { ok: true }) => T): Promise<T> {
  const c = HandoffClient.connect(opts.socketPath);
  try {
    const r = await c.request(payload, fds, opts.timeoutMs);
    if (!r.ok) throw new HandoffError(r.error.code, r.error.message);
    return pick(r);
  } finally {
    c.close();
  }
}

/** The daemon's version; proves it is up and answering. */
export const ping = (opts: ClientOptions = {}): Promise<string> =>
  once(opts, { op: 'ping' }, [], (r) => ('version' in r ? r.version : ''));

/**
 * Registers 1 to 16 listening TCP or bound UDP sockets (by fd) under a label,
 * all or none: one per domain and protocol, or the members of one
 * SO_REUSEPORT group. Each replaces what its (label, domain, protocol) held.
 */
export const registerSockets = (label: string, fds: readonly number[], opts: ClientOptions = {}): Promise<RegisteredSocket[]> =>
  once(opts, { op: 'register', label }, fds, (r) => ('registered' in r ? r.registered : []));

/** Removes the socket registered for (label, domain, protocol). */
export const unregisterSocket = (label: string, domain: Domain, protocol: Protocol, opts: ClientOptions = {}): Promise<void> =>
  once(opts, { op: 'unregister', label, domain, protocol }, [], () => undefined);

/** Destinations with whether a socket is registered, and their counters. */
export const listDestinations = (opts: ClientOptions = {}): Promise<ListedDestination[]> =>
  once(opts, { op: 'list' }, [], (r) => ('destinations' in r ? r.destinations : []));
