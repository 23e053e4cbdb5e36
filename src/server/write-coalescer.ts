/**
 * Group commit for the DM server's store: writes issued while an earlier write is on its way to
 * LevelDB are gathered and go to disk as one atomic batch when it completes. Each write's promise
 * still resolves only once its batch is written (and rejects with the batch's error), and batches
 * are applied in the order the writes were issued, so callers keep the durability they had with
 * one LevelDB operation per write; what changes is the number of operations under load (each one a
 * round trip through libuv's thread pool, and on a small machine a context switch or two): a busy
 * server wrote some ten records per DM session one at a time.
 *
 * Reads see every write already issued (read-your-writes): `get` answers a pending write's value
 * (kept as the JSON LevelDB would store, so each read returns a fresh copy, as LevelDB's does), and
 * `entries` waits for the pending writes in its range first.
 */
import type { Section, Store } from '../store/store.ts';

interface Pending {
  section: string;
  key: string;
  /** JSON of the value; undefined for a delete. */
  json: string | undefined;
  /** The group that writes it (set when queued). */
  group?: Group;
}

interface Group {
  ops: Pending[];
  waiters: { resolve: () => void; reject: (err: unknown) => void }[];
  /** Settles (never rejects) once the group's batch is written or failed. */
  settled: Promise<void>;
  settle: () => void;
}

function newGroup(): Group {
  let settle!: () => void;
  const settled = new Promise<void>((r) => (settle = r));
  return { ops: [], waiters: [], settled, settle };
}

/** A store whose writes are group-committed; `flush()` waits for every write issued so far. */
export interface CoalescingStore extends Store {
  flush(): Promise<void>;
  /** `batch` with values already in JSON (a caller that keeps the JSON itself saves a stringify). */
  batchJson(ops: { section: string; key: string; json: string | undefined }[]): Promise<void>;
}

/** True for a store made by `coalesceWrites`. */
export function isCoalescing(store: Store): store is CoalescingStore {
  return typeof (store as Partial<CoalescingStore>).batchJson === 'function';
}

/** Wraps a store so that concurrent writes are group-committed (see the module comment). */
export function coalesceWrites(inner: Store): CoalescingStore {
  /** Issued, not yet written: section -> key -> the latest op on it. */
  const overlay = new Map<string, Map<string, Pending>>();
  let queued: Group | undefined;
  let inflight: Promise<void> | undefined;
  const sections = new Map<string, Section<unknown>>();

  const enqueue = (ops: Pending[]): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      if (!queued) queued = newGroup();
      for (const op of ops) {
        let m = overlay.get(op.section);
        if (!m) overlay.set(op.section, (m = new Map()));
        m.set(op.key, op);
        op.group = queued;
        queued.ops.push(op);
      }
      queued.waiters.push({ resolve, reject });
      if (!inflight) inflight = run();
    });

  // Writes the queued group, then whatever queued up meanwhile, until nothing is left.
  const run = async (): Promise<void> => {
    // Let the writes of the current job (and its microtasks) join the first group.
    await Promise.resolve();
    while (queued) {
      const g = queued;
      queued = undefined;
      let error: unknown;
      try {
        await inner.batch(g.ops.map((op) => ({ section: op.section, key: op.key, value: op.json === undefined ? undefined : JSON.parse(op.json) })));
      } catch (err) {
        error = err ?? new Error('store write failed');
      }
      // A later write of the same key stays visible; this group's are now in LevelDB (or failed).
      for (const op of g.ops) {
        const m = overlay.get(op.section);
        if (m?.get(op.key) === op) m.delete(op.key);
      }
      g.settle();
      for (const w of g.waiters) error === undefined ? w.resolve() : w.reject(error);
    }
    inflight = undefined;
  };

  const section = <V>(name: string): Section<V> => {
    let s = sections.get(name);
    if (s) return s as Section<V>;
    const base = inner.section<V>(name);
    const pendingOf = (key: string): Pending | undefined => overlay.get(name)?.get(key);
    const sec: Section<V> = {
      async get(key) {
        const p = pendingOf(key);
        if (p) return p.json === undefined ? undefined : (JSON.parse(p.json) as V);
        return base.get(key);
      },
      // async: a value JSON cannot encode rejects, as the store's own put does, rather than throwing.
      put: async (key, value) => enqueue([{ section: name, key, json: JSON.stringify(value) }]),
      del: async (key) => enqueue([{ section: name, key, json: undefined }]),
      batch: async (ops) => enqueue(ops.map(([key, value]) => ({ section: name, key, json: value === undefined ? undefined : JSON.stringify(value) }))),
      async entries(prefix = '', limit = -1) {
        // Writes issued in the range before this read are waited for (they are few: the server's
        // hot paths do not list ranges), so the read sees them, or not when they failed.
        const m = overlay.get(name);
        const groups = new Set<Group>();
        if (m) for (const p of m.values()) if (p.key.startsWith(prefix) && p.group) groups.add(p.group);
        if (groups.size) await Promise.all([...groups].map((g) => g.settled));
        return base.entries(prefix, limit);
      },
    };
    sections.set(name, sec as Section<unknown>);
    return sec;
  };

  const flush = async (): Promise<void> => {
    while (inflight) await inflight.catch(() => undefined);
  };

  return {
    location: inner.location,
    section,
    batch: async (ops) => enqueue(ops.map((op) => ({ section: op.section, key: op.key, json: op.value === undefined ? undefined : JSON.stringify(op.value) }))),
    batchJson: async (ops) => enqueue(ops.map((op) => ({ section: op.section, key: op.key, json: op.json }))),
    flush,
    async close() {
      await flush();
      await inner.close();
    },
  };
}
