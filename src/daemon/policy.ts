// Who may register or unregister which labels. Root always may; without a
// policy file nobody else may. A policy file grants users or groups (by name
// or id) the labels that match its patterns ("web-*", "dns", "*").
//
//   {"allow": [{"user": "alice", "labels": ["web-*"]},
//              {"group": "web", "labels": ["web-*", "static"]}]}
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import type { PeerCred } from '../native.js';

/**
 * Who is at the other end of a connection, as the kernel recorded it when
 * the peer connected (SO_PEERCRED, SO_PEERGROUPS). Never read from
 * /proc/<pid>: by the time a request comes, that pid may be another process.
 */
export interface Peer extends PeerCred {
  /** the peer's supplementary groups */
  readonly groups: readonly number[];
}

const PATTERN = /^[A-Za-z0-9_.:@+*-]+$/;
const pattern = z.string().regex(PATTERN, { message: 'a label pattern holds label characters and * only, e.g. "web-*"' });
const who = z.union([z.string().min(1), z.number().int().nonnegative()]);

const ruleSchema = z.union([
  z.strictObject({ user: who, labels: z.array(pattern).min(1) }),
  z.strictObject({ group: who, labels: z.array(pattern).min(1) }),
]);
export const policySchema = z.strictObject({ allow: z.array(ruleSchema) });
export type PolicyFile = z.infer<typeof policySchema>;

interface Rule { uid?: number; gid?: number; labels: RegExp[]; text: string }

export interface Policy {
  /** where it came from: a file path, or 'default' */
  readonly source: string;
  readonly rules: readonly Rule[];
}

export const DEFAULT_POLICY: Policy = { source: 'default (root only)', rules: [] };

const globToRegExp = (glob: string): RegExp =>
  new RegExp(`^${glob.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);

/** Resolves a user or group name through NSS (getent), so LDAP users work too. */
export function resolveId(db: 'passwd' | 'group', value: string | number): number {
  if (typeof value === 'number') return value;
  let line: string;
  try {
    line = execFileSync('getent', [db, value], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    throw new Error(`unknown ${db === 'passwd' ? 'user' : 'group'} "${value}": use an existing name or a numeric id`);
  }
  const id = Number(line.split(':')[2]);
  if (!Number.isInteger(id)) throw new Error(`getent ${db} ${value} gave no id`);
  return id;
}

/** Reads and checks a policy file; throws an Error whose message says what to fix. */
export function loadPolicy(file: string): Policy {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read policy file ${file}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`policy file ${file} is not valid JSON: ${(err as Error).message}`);
  }
  const parsed = policySchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue.path.length ? ` at ${issue.path.join('.')}` : '';
    throw new Error(`policy file ${file} is invalid${where}: ${issue.message} ` +
      '(expected {"allow":[{"user":NAME|UID,"labels":["web-*"]},{"group":NAME|GID,"labels":[...]}]})');
  }
  const rules = parsed.data.allow.map((r): Rule => {
    const labels = r.labels.map(globToRegExp);
    if ('user' in r) return { uid: resolveId('passwd', r.user), labels, text: `user ${r.user}` };
    return { gid: resolveId('group', r.group), labels, text: `group ${r.group}` };
  });
  return { source: file, rules };
}

/** Whether the peer may register or unregister the label. */
export function allows(policy: Policy, peer: Peer, label: string): boolean {
  if (peer.uid === 0) return true;
  for (const rule of policy.rules) {
    if (!rule.labels.some((re) => re.test(label))) continue;
    if (rule.uid !== undefined && rule.uid === peer.uid) return true;
    if (rule.gid !== undefined && (rule.gid === peer.gid || peer.groups.includes(rule.gid))) return true;
  }
  return false;
}
