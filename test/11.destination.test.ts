import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeDestination, encodeDestinationKey, encodeDestinationValue } from '../src/destination.js';
import { DESTINATION_KEY_SIZE, DESTINATION_VALUE_SIZE, LABEL_MAX_BYTES } from '../src/layout.js';

test('a destination decodes as it was encoded, from packed dumps at any offset', () => {
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
  entries.forEach((e, i) => {
    assert.deepEqual(decodeDestination(keys, values, i * DESTINATION_KEY_SIZE, i * DESTINATION_VALUE_SIZE), e);
  });
  // One key alone, at offset 0.
  assert.deepEqual(decodeDestination(encodeDestinationKey(entries[1]), encodeDestinationValue(4095, 1000)), entries[1]);
  // Bytes after the first zero are not part of the label.
  const key = encodeDestinationKey(entries[0]);
  key[4 + 5] = 0x41;
  assert.equal(decodeDestination(key, encodeDestinationValue(0, null)).label, 'web');
});
