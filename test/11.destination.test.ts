import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeDestination, decodeDestinations, encodeDestinationKey, encodeDestinationValue } from '../src/destination.js';
import { LABEL_MAX_BYTES } from '../src/layout.js';

test('destinations decode as they were encoded, from packed dumps and alone', () => {
  const entries = [
    { label: 'web', domain: 'ipv4', protocol: 'tcp', id: 0, owner: null },
    // A label that fills its field has no zero byte after it.
    { label: 'l'.repeat(LABEL_MAX_BYTES), domain: 'ipv6', protocol: 'udp', id: 4095, owner: 1000 },
    { label: 'dns.internal:53@edge+v2', domain: 'ipv6', protocol: 'tcp', id: 17, owner: 0 },
    { label: 'x', domain: 'ipv4', protocol: 'udp', id: 1, owner: null },
  ] as const;
  // As a dump returns them: keys and values packed, one after another.
  const keys = Buffer.concat(entries.map((e) => encodeDestinationKey(e)));
  const values = Buffer.concat(entries.map((e) => encodeDestinationValue(e.id, e.owner)));
  assert.deepEqual(decodeDestinations(keys, values, entries.length), entries);
  // The last key fills its field, and the buffer ends there.
  const last = entries.slice(0, 2);
  assert.deepEqual(decodeDestinations(keys.subarray(0, 2 * keys.length / entries.length), values, 2), last);
  // One key alone, at offset 0.
  assert.deepEqual(decodeDestination(encodeDestinationKey(entries[1]), encodeDestinationValue(4095, 1000)), entries[1]);
  // Bytes after the first zero are not part of the label.
  const key = encodeDestinationKey(entries[0]);
  key[4 + 5] = 0x41;
  assert.equal(decodeDestination(key, encodeDestinationValue(0, null)).label, 'web');
});
