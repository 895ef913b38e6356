// Transport protocols and socket domains, as operators spell them.
import { invalid } from './errors.js';
import type { Family } from './prefix.js';
import { quote } from './quote.js';

export type Protocol = 'tcp' | 'udp';
export type Domain = 'ipv4' | 'ipv6';

export const PROTOCOLS: readonly Protocol[] = ['tcp', 'udp'];

export function parseProtocol(text: string): Protocol {
  const p = text.toLowerCase();
  if (p === 'tcp' || p === 'udp') return p;
  throw invalid(`invalid protocol ${quote(text)}: use tcp or udp`);
}

export function parseDomain(text: string): Domain {
  const d = text.toLowerCase();
  if (d === 'ipv4' || d === 'ipv6') return d;
  if (d === '4' || d === 'inet' || d === 'v4') return 'ipv4';
  if (d === '6' || d === 'inet6' || d === 'v6') return 'ipv6';
  throw invalid(`invalid domain ${quote(text)}: use ipv4 or ipv6`);
}

export const domainOf = (family: Family): Domain => (family === 4 ? 'ipv4' : 'ipv6');
export const familyOf = (domain: Domain): Family => (domain === 'ipv4' ? 4 : 6);

/**
 * A port: text of decimal digits without a leading zero (0 alone is fine),
 * or an integer; 0-65535. " 80", "080", "+80", "0x50", "80.0" and "1e2" are
 * refused: each is a typo or a guess at another syntax.
 */
export function parsePort(text: string | number): number {
  const ok = typeof text === 'number'
    ? Number.isInteger(text) && text >= 0 && text <= 65535 && !Object.is(text, -0)
    : /^(0|[1-9][0-9]{0,4})$/.test(text) && Number(text) <= 65535;
  if (!ok) {
    throw invalid(`invalid port ${quote(String(text))}: a port is decimal digits without a leading zero, sign or spaces, 0-65535 (0 means every port)`);
  }
  return Number(text);
}
