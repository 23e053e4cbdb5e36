/**
 * The domain store: one LevelDB database per process, with a sublevel per concern (tree, nonces,
 * queue, results, ...). It is the single source of truth; actors are rebuilt from it on start.
 * LevelDB allows one process per database (LOCK file), so surfaces such as the CLI talk to the
 * owning process over its API instead of opening the files.
 */
import { mkdir } from 'node:fs/promises';
import { Level } from 'level';
import { GwError } from '../errors.ts';

/** A JSON-valued key/value section of the store. */
export interface Section<V> {
  get(key: string): Promise<V | undefined>;
  put(key: string, value: V): Promise<void>;
  del(key: string): Promise<void>;
  /** Entries whose key starts with `prefix`, in key order. */
  entries(prefix?: string, limit?: number): Promise<[string, V][]>;
  /** Atomically applies puts (value) and deletes (value undefined). */
  batch(ops: [key: string, value: V | undefined][]): Promise<void>;
}

/** An open store. */
export interface Store {
  /** Returns the named section (created on first use). */
  section<V>(name: string): Section<V>;
  /** Atomically applies writes across several sections. */
  batch(ops: { section: string; key: string; value: unknown }[]): Promise<void>;
  /** Where the store lives ('' for an in-memory store). */
  readonly location: string;
  close(): Promise<void>;
}

type Db = Level<string, unknown>;

function makeSection<V>(db: Db, name: string): Section<V> {
  const sub = db.sublevel<string, V>(name, { valueEncoding: 'json' });
  return {
    get: async (key) => (await sub.get(key)) ?? undefined,
    put: (key, value) => sub.put(key, value),
    del: (key) => sub.del(key),
    async entries(prefix = '', limit = -1) {
      const opts = prefix ? { gte: prefix, lt: prefix + '\uffff', limit } : { limit };
      return (await sub.iterator(opts).all()) as [string, V][];
    },
    batch: (ops) =>
      sub.batch(ops.map(([key, value]) => (value === undefined ? { type: 'del' as const, key } : { type: 'put' as const, key, value }))),
  };
}

/** Opens (creating if needed) the LevelDB store in `dir`. */
export async function openStore(dir: string): Promise<Store> {
  await mkdir(dir, { recursive: true });
  const db: Db = new Level<string, unknown>(dir, { valueEncoding: 'json' });
  try {
    await db.open();
  } catch (err) {
    const locked = String((err as { cause?: unknown }).cause ?? err).includes('LOCK');
    throw new GwError(
      locked ? 'STORE_LOCKED' : 'STORE_OPEN',
      locked ? `the data directory ${dir} is in use by another process` : `cannot open the store in ${dir}`,
      { status: 510, cause: err },
    );
  }
  const sections = new Map<string, Section<unknown>>();
  return {
    location: dir,
    section<V>(name: string): Section<V> {
      let s = sections.get(name);
      if (!s) sections.set(name, (s = makeSection<unknown>(db, name)));
      return s as Section<V>;
    },
    async batch(ops) {
      // One sublevel object per section of the batch (creating one per op was most of its CPU cost).
      const subs = new Map<string, ReturnType<typeof db.sublevel<string, unknown>>>();
      await db.batch(
        ops.map((op) => {
          let sub = subs.get(op.section);
          if (!sub) subs.set(op.section, (sub = db.sublevel<string, unknown>(op.section, { valueEncoding: 'json' })));
          return op.value === undefined
            ? { type: 'del' as const, key: op.key, sublevel: sub }
            : { type: 'put' as const, key: op.key, value: op.value, sublevel: sub };
        }),
      );
    },
    close: () => db.close(),
  };
}

/** Creates a store held in memory only (tests of pure logic, and throw-away devices). */
export function memoryStore(): Store {
  const data = new Map<string, Map<string, unknown>>();
  const clone = <T>(v: T): T => (v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T));
  const sec = (name: string): Map<string, unknown> => {
    let m = data.get(name);
    if (!m) data.set(name, (m = new Map()));
    return m;
  };
  return {
    location: '',
    section<V>(name: string): Section<V> {
      const m = sec(name);
      return {
        get: async (key) => clone(m.get(key) as V | undefined),
        put: async (key, value) => void m.set(key, clone(value)),
        del: async (key) => void m.delete(key),
        async entries(prefix = '', limit = -1) {
          const keys = [...m.keys()].filter((k) => k.startsWith(prefix)).sort();
          return (limit >= 0 ? keys.slice(0, limit) : keys).map((k) => [k, clone(m.get(k) as V)]);
        },
        async batch(ops) {
          for (const [k, v] of ops) v === undefined ? m.delete(k) : m.set(k, clone(v));
        },
      };
    },
    async batch(ops) {
      for (const op of ops) op.value === undefined ? sec(op.section).delete(op.key) : sec(op.section).set(op.key, clone(op.value));
    },
    close: async () => {},
  };
}
