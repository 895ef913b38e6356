// The addon (or any object of functions) with each call passed through
// `wrap`: tests count, record, fail or kill at chosen calls this way,
// while the real call does the work.

/** `target` with every call of its functions made as `wrap(name, call, args)`; `call()` makes the real one. */
export function intercept<T extends object>(target: T, wrap: (name: string, call: () => unknown, args: unknown[]) => unknown): T {
  return new Proxy(target, {
    get(t, name, receiver) {
      const v = Reflect.get(t, name, receiver) as unknown;
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => wrap(String(name), () => (v as (...a: unknown[]) => unknown).apply(t, args), args);
    },
  });
}
