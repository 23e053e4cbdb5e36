/**
 * A store section read through an in-memory cache, for the small per-account records the DM
 * server reads at every session (nonces, device records): it is their only writer, so after the
 * first read a record comes from memory, not from LevelDB. A write shows in the cache as soon as it
 * is issued (as it does in the store's group commit); when it fails, the key is dropped from the
 * cache, so the next read goes to the store again. Values are kept as JSON, so every read returns
 * a fresh copy, as the store's does.
 */
import type { Section } from '../store/store.ts';

/** Wraps a section with a read cache (see the module comment). */
export function cachedSection<V>(base: Section<V>): Section<V> {
  const cache = new Map<string, string | undefined>();
  /** Bumped by each write of a key: a read that started before a write must not cache what it read. */
  const version = new Map<string, number>();
  const bump = (key: string): number => {
    const v = (version.get(key) ?? 0) + 1;
    version.set(key, v);
    return v;
  };
  return {
    async get(key) {
      if (cache.has(key)) {
        const json = cache.get(key);
        return json === undefined ? undefined : (JSON.parse(json) as V);
      }
      const before = version.get(key);
      const v = await base.get(key);
      // Misses are not cached: keys come from requests (the API), which must not grow the cache.
      if (v !== undefined && version.get(key) === before) cache.set(key, JSON.stringify(v));
      return v;
    },
    async put(key, value) {
      bump(key);
      cache.set(key, JSON.stringify(value));
      try {
        await base.put(key, value);
      } catch (err) {
        cache.delete(key);
        throw err;
      }
    },
    async del(key) {
      bump(key);
      cache.set(key, undefined);
      try {
        await base.del(key);
      } catch (err) {
        cache.delete(key);
        throw err;
      }
    },
    async batch(ops) {
      for (const [key, value] of ops) {
        bump(key);
        cache.set(key, value === undefined ? undefined : JSON.stringify(value));
      }
      try {
        await base.batch(ops);
      } catch (err) {
        for (const [key] of ops) cache.delete(key);
        throw err;
      }
    },
    entries: (prefix, limit) => base.entries(prefix, limit),
  };
}
