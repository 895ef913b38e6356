// sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET. A path
// starting with @ names a socket in the abstract namespace.
import { native } from '../native.js';

/** Sends state lines such as READY=1 to the service manager; a no-op outside systemd. */
export function sdNotify(state: string, env: NodeJS.ProcessEnv = process.env): boolean {
  const target = env.NOTIFY_SOCKET;
  if (!target) return false;
  const address = target.startsWith('@') ? `\0${target.slice(1)}` : target;
  native().unixDatagramSend(address, Buffer.from(state));
  return true;
}
