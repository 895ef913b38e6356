// Transport protocols and socket domains, as operators spell them.
import { invalid } from './errors.js';
import type { Family } from './prefix.js';

export type Protocol = 'tcp' | 'udp';
export type Domain = 'ipv4' | 'ipv6';

export const PROTOCOLS: readonly Protocol[] = ['tcp', 'udp'];

export function parseProtocol(text: string): Protocol {
  const p = text.toLowerCase();
  if (p === 'tcp' || p === 'udp') return p;
  throw invalid(`invalid protocol "${text}": use tcp or udp`);
}

export function parseDomain(text: string): Domain {
  const d = text.toLowerCase();
  if (d === 'ipv4' || d === 'ipv6') return d;
  if (d === '4' || d === 'inet' || d === 'v4') return 'ipv4';
  if (d === '6' || d === 'inet6' || d === 'v6') return 'ipv6';
  throw invalid(`invalid domain "${text}": use ipv4 or ipv6`);
}

export const domainOf = (family: Family): Domain => (family === 4 ? 'ipv4' : 'ipv6');
export const familyOf = (domain: Domain): Family => (domain === 'ipv4' ? 4 : 6);

export function parsePort(text: string | number): number {
  const s = String(text).trim();
  if (!/^\d{1,5}$/.test(s) || Number(s) > 65535) {
    throw invalid(`invalid port "${text}": use a number 0-65535 (0 means every port)`);
  }
  return Number(s);
}
