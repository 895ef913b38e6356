// Who may take a connection slot. At most --max-clients connections are
// served at once; the last --root-clients of them only root may take, and
// no other user holds more than --max-clients-per-user. So a member of the
// socket's group who holds idle connections locks out neither root nor the
// other members.

export interface ClientLimits {
  /** connections served at once, root's included */
  maxClients: number;
  /** how many of them only root may take */
  rootClients: number;
  /** most connections one user other than root may hold */
  maxClientsPerUser: number;
}

/** ROOT_CLIENTS slots are kept for root unless --root-clients says otherwise (at most all but one). */
export const ROOT_CLIENTS = 8;
export const MAX_CLIENTS_PER_USER = 8;

export const defaultRootClients = (maxClients: number): number => Math.min(ROOT_CLIENTS, maxClients - 1);

/**
 * Why a new connection from `uid` is refused, given the uids of the
 * connections already served; undefined when it is admitted.
 */
export function refusal(connected: Iterable<number>, uid: number, limits: ClientLimits): string | undefined {
  let total = 0;
  let mine = 0;
  for (const u of connected) {
    total++;
    if (u === uid) mine++;
  }
  if (total >= limits.maxClients) return `too many clients (${limits.maxClients}) are connected: try again shortly`;
  if (uid === 0) return undefined;
  if (mine >= limits.maxClientsPerUser) {
    return `uid ${uid} already has ${mine} connections, as many as one user may (--max-clients-per-user): close one first`;
  }
  if (total >= limits.maxClients - limits.rootClients) {
    return `${total} clients are connected and the last ${limits.rootClients} of ${limits.maxClients} connections are kept for root: try again shortly`;
  }
  return undefined;
}
