/**
 * A store whose writes can be made to fail, the way a full disk or a failing device makes
 * LevelDB fail (a simulator with an injectable behaviour, used by the fault tests): reads keep
 * working, every put, delete and batch throws `STORE_WRITE` while `failWrites()` says so.
 */
import { GwError } from '../errors.ts';
import type { Section, Store } from './store.ts';

/** When writes fail, and why (e.g. `ENOSPC`). */
export interface WriteFaults {
  failWrites(): string | undefined;
}

function check(f: WriteFaults, what: string): void {
  const why = f.failWrites();
  if (why) throw new GwError('STORE_WRITE', `cannot write ${what}: ${why}`, { status: 500 });
}

/** Wraps a store so that its writes fail on demand. */
export function withWriteFaults(inner: Store, faults: WriteFaults): Store {
  const sections = new Map<string, Section<unknown>>();
  return {
    location: inner.location,
    section<V>(name: string): Section<V> {
      let s = sections.get(name);
      if (!s) {
        const base = inner.section<unknown>(name);
        s = {
          get: (k) => base.get(k),
          entries: (p, l) => base.entries(p, l),
          put: async (k, v) => {
            check(faults, `${name}/${k}`);
            return base.put(k, v);
          },
          del: async (k) => {
            check(faults, `${name}/${k}`);
            return base.del(k);
          },
          batch: async (ops) => {
            check(faults, `${ops.length} entries of ${name}`);
            return base.batch(ops);
          },
        };
        sections.set(name, s);
      }
      return s as Section<V>;
    },
    batch: async (ops) => {
      check(faults, `${ops.length} entries`);
      return inner.batch(ops);
    },
    close: () => inner.close(),
  };
}
