// The event loop: accept clients on the listening socket, read one request
// at a time from each, answer it. Everything runs on the main thread and
// nothing blocks it: each request is a few syscalls, and a write that finds
// the writers' lock taken waits on timers (lock-wait.ts), during which its
// client is not read from while the others are served. So a slow, silent
// or waiting client costs the others nothing. A client is dropped when it
// stays idle too long, and refused with EBUSY when admission.ts says there
// is no slot for it.
//
// A client's readability stays watched while its request is answered (a
// client that waits for its reply sends nothing meanwhile, and re-arming
// the watch for every request cost more than the request's own syscalls);
// only when it becomes readable while busy is the watch stopped, to be
// started again once the reply is sent.
import { native } from '../native.js';
import { type ClientLimits, refusal } from './admission.js';
import { handle, type HandlerContext } from './handler.js';
import type { Listener } from './listener.js';
import type { Peer } from './policy.js';
import { type ErrorReply, MAX_FDS, MAX_REQUEST_BYTES, type Reply } from './wire.js';

export interface ServerOptions extends ClientLimits {
  idleTimeoutMs: number;
  log: (line: string) => void;
}

interface Client {
  fd: number;
  peer: Peer;
  /** readability of fd; stopped when it fires while a request is being answered */
  watch: { stop(): void } | undefined;
  timer: NodeJS.Timeout | undefined;
  /** a request of this client is being answered */
  busy: boolean;
}

export class Server {
  private readonly listener: Listener;
  private readonly ctx: HandlerContext;
  private readonly opts: ServerOptions;
  private readonly clients = new Map<number, Client>();
  private acceptWatch: { stop(): void } | undefined;

  constructor(listener: Listener, ctx: HandlerContext, opts: ServerOptions) {
    this.listener = listener;
    this.ctx = ctx;
    this.opts = opts;
  }

  start(): void {
    this.acceptWatch = native().watch(this.listener.fd, () => this.acceptAll());
  }

  get clientCount(): number {
    return this.clients.size;
  }

  /** Stops listening and drops every client. */
  close(): void {
    this.acceptWatch?.stop();
    this.acceptWatch = undefined;
    for (const c of [...this.clients.values()]) this.drop(c);
    native().close(this.listener.fd);
  }

  private acceptAll(): void {
    const n = native();
    for (;;) {
      let fd: number;
      try {
        fd = n.accept(this.listener.fd);
      } catch (err) {
        this.opts.log(`accept failed: ${(err as Error).message}`);
        return; // e.g. EMFILE: the next readiness callback tries again
      }
      if (fd < 0) return;
      // Who connected, as the kernel recorded it at connect(): the
      // policy is decided on this, never on whoever holds the pid later.
      let peer: Peer;
      try {
        peer = { ...n.peerCred(fd), groups: n.peerGroups(fd) };
      } catch {
        n.close(fd);
        continue;
      }
      const refused = refusal([...this.clients.values()].map((c) => c.peer.uid), peer.uid, this.opts);
      if (refused !== undefined) {
        this.opts.log(`pid=${peer.pid} uid=${peer.uid} refused: ${refused}`);
        this.send(fd, error('EBUSY', refused));
        n.close(fd);
        continue;
      }
      const client: Client = { fd, peer, watch: undefined, timer: undefined, busy: false };
      this.clients.set(fd, client);
      this.listen(client);
    }
  }

  /** Waits for the client's next request, for at most the idle timeout. */
  private listen(c: Client): void {
    c.watch ??= native().watch(c.fd, () => this.readable(c));
    c.timer = this.idleTimer(c);
  }

  private idleTimer(c: Client): NodeJS.Timeout {
    const t = setTimeout(() => {
      this.opts.log(`pid=${c.peer.pid} uid=${c.peer.uid} dropped: idle for ${this.opts.idleTimeoutMs} ms`);
      this.send(c.fd, error('ETIMEDOUT', `no request for ${this.opts.idleTimeoutMs} ms: connect again when there is one`));
      this.drop(c);
    }, this.opts.idleTimeoutMs);
    t.unref();
    return t;
  }

  /**
   * Reads one message, then stops reading from this client until it is
   * answered: one request at a time per client, and a chatty client cannot
   * starve the others.
   */
  private readable(c: Client): void {
    if (this.clients.get(c.fd) !== c) return;
    if (c.busy) {
      // The next request (or the hang-up) waits until this one is answered.
      c.watch?.stop();
      c.watch = undefined;
      return;
    }
    let msg;
    try {
      msg = native().recvMessage(c.fd, MAX_REQUEST_BYTES, MAX_FDS + 1);
    } catch {
      this.drop(c); // ECONNRESET and the like
      return;
    }
    if (msg === null) return;
    if (msg.eof) {
      this.drop(c);
      return;
    }
    clearTimeout(c.timer);
    c.busy = true;
    void handle(this.ctx, msg, c.peer).then((done) => {
      c.busy = false;
      const label = done.label === undefined ? '' : ` label=${JSON.stringify(done.label)}`;
      this.opts.log(oneLine(`pid=${c.peer.pid} uid=${c.peer.uid} op=${done.op}${label} result=${done.result}`));
      if (this.clients.get(c.fd) !== c) return; // dropped meanwhile (the daemon is stopping)
      if (!this.send(c.fd, done.reply)) {
        this.opts.log(`pid=${c.peer.pid} uid=${c.peer.uid} dropped: it does not read its replies`);
        this.drop(c);
        return;
      }
      this.listen(c);
    });
  }

  /** Sends a reply without blocking; false when the client cannot take it. */
  private send(fd: number, reply: Reply): boolean {
    try {
      return native().sendMessage(fd, Buffer.from(JSON.stringify(reply)), []) >= 0;
    } catch {
      return false; // EPIPE: the client went away
    }
  }

  private drop(c: Client): void {
    if (!this.clients.delete(c.fd)) return;
    clearTimeout(c.timer);
    c.watch?.stop();
    native().close(c.fd);
  }
}

/** Escapes control characters, so that what a client sends cannot forge log lines. */
const oneLine = (text: string): string =>
  text.replace(/[\x00-\x1f\x7f]/g, (ch) => `\\x${ch.charCodeAt(0).toString(16).padStart(2, '0')}`);

const error = (code: ErrorReply['error']['code'], message: string): ErrorReply => ({ ok: false, error: { code, message } });
