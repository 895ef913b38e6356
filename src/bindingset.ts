// A binding set as the data plane stores it: one hash map of
// binding_key -> binding_value. Encoding and decoding only; the dispatcher
// decides when to write.
import type { Binding } from './binding.js';
import {
  ACTION_REJECT, ACTION_STEER, BINDING_KEY_SIZE, BINDING_VALUE_SIZE, IPPROTO, NO_DESTINATION,
  decodeBindingKey, encodeBindingKey, readU32, writeU32,
} from './layout.js';
import type { DestinationKey } from './destination.js';
import { domainOf } from './protocol.js';

export function bindingKey(b: Pick<Binding, 'protocol' | 'prefix' | 'port'>, buf?: Buffer, off = 0): Buffer {
  return encodeBindingKey({ protocol: IPPROTO[b.protocol], family: b.prefix.family, prefixlen: b.prefix.length, port: b.port, addr: b.prefix.bytes }, buf, off);
}

export function bindingValue(destination: number, action: Binding['action'], buf = Buffer.alloc(BINDING_VALUE_SIZE), off = 0): Buffer {
  writeU32(buf, destination, off);
  writeU32(buf, action === 'reject' ? ACTION_REJECT : ACTION_STEER, off + 4);
  return buf;
}

/** The destination a binding names, or undefined for an unlabelled reject. */
export function destinationOf(b: Binding): DestinationKey | undefined {
  return b.label === '' ? undefined : { label: b.label, domain: domainOf(b.prefix.family), protocol: b.protocol };
}

/** Packs bindings for a batch update, given a resolver from destination to id. */
export function packBindings(bindings: readonly Binding[], idOf: (d: DestinationKey) => number): { keys: Buffer; values: Buffer } {
  const keys = Buffer.alloc(bindings.length * BINDING_KEY_SIZE);
  const values = Buffer.alloc(bindings.length * BINDING_VALUE_SIZE);
  bindings.forEach((b, i) => {
    const d = destinationOf(b);
    bindingKey(b, keys, i * BINDING_KEY_SIZE);
    bindingValue(d ? idOf(d) : NO_DESTINATION, b.action, values, i * BINDING_VALUE_SIZE);
  });
  return { keys, values };
}

/** Decodes a dump of the map; labelOf maps a destination id to its label. */
export function unpackBindings(keys: Buffer, values: Buffer, count: number, labelOf: (id: number) => string | undefined): Binding[] {
  const out: Binding[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const k = decodeBindingKey(keys, i * BINDING_KEY_SIZE);
    const id = readU32(values, i * BINDING_VALUE_SIZE);
    const action = readU32(values, i * BINDING_VALUE_SIZE + 4) === ACTION_REJECT ? 'reject' : 'steer';
    out[i] = {
      label: id === NO_DESTINATION ? '' : labelOf(id) ?? `#${id}`,
      protocol: k.protocol === IPPROTO.tcp ? 'tcp' : 'udp',
      prefix: { family: k.family, bytes: k.addr, length: k.prefixlen },
      port: k.port,
      action,
    };
  }
  return out;
}
