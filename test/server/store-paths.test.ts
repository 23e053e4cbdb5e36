/**
 * The DM server's store paths made for throughput (bench/http.bench.ts): group commit of writes,
 * the in-memory index of open queue entries, and the read cache of per-account records. Each keeps
 * the store's semantics: a write is durable when its promise resolves, a failed write changes
 * nothing, reads see what was written.
 */
import { describe, expect, it } from 'vitest';
import { cachedSection } from '../../src/server/cached-section.ts';
import { CommandQueue } from '../../src/server/queue.ts';
import { coalesceWrites } from '../../src/server/write-coalescer.ts';
import { withWriteFaults } from '../../src/store/faults.ts';
import { memoryStore, type Store } from '../../src/store/store.ts';

/** A store that counts the batches that reach it. */
function counting(inner: Store): Store & { batches: number } {
  const s = {
    batches: 0,
    location: inner.location,
    section: <V>(name: string) => inner.section<V>(name),
    batch: async (ops: Parameters<Store['batch']>[0]) => {
      s.batches++;
      await inner.batch(ops);
    },
    close: () => inner.close(),
  };
  return s;
}

describe('group commit (coalesceWrites)', () => {
  it('writes concurrent puts in one batch, resolving each only once it is stored', async () => {
    const inner = counting(memoryStore());
    const store = coalesceWrites(inner);
    const a = store.section<{ n: number }>('a');
    const b = store.section<string>('b');
    const writes = [a.put('x', { n: 1 }), a.put('y', { n: 2 }), b.put('z', 'zz'), a.del('nothing')];
    expect(inner.batches).toBe(0);
    await Promise.all(writes);
    expect(inner.batches).toBe(1);
    expect(await inner.section('a').get('x')).toEqual({ n: 1 });
    expect(await inner.section('b').get('z')).toBe('zz');
  });

  it('lets reads see writes still pending, as copies, and keeps the order of writes', async () => {
    const store = coalesceWrites(memoryStore());
    const s = store.section<{ v: number[] }>('s');
    const value = { v: [1] };
    const first = s.put('k', value);
    value.v.push(2); // changed after the put: the write keeps what was put
    const second = s.put('k', { v: [3] });
    expect(await s.get('k')).toEqual({ v: [3] });
    const entries = s.entries('');
    await Promise.all([first, second, entries]);
    expect(await entries).toEqual([['k', { v: [3] }]]);
    const copy = (await s.get('k'))!;
    copy.v.push(9);
    expect(await s.get('k')).toEqual({ v: [3] });
  });

  it('rejects every write of a failing batch, keeps nothing of it, and writes again once the store does', async () => {
    let full: string | undefined = 'ENOSPC';
    const inner = memoryStore();
    const store = coalesceWrites(withWriteFaults(inner, { failWrites: () => full }));
    const s = store.section<number>('s');
    const results = await Promise.allSettled([s.put('a', 1), s.put('b', 2)]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(String((results[0] as PromiseRejectedResult).reason)).toMatch(/ENOSPC/);
    expect(await s.get('a')).toBeUndefined();
    full = undefined;
    await s.put('a', 3);
    expect(await inner.section('s').get('a')).toBe(3);
    await store.close();
  });
});

describe('command queue index', () => {
  it('delivers from memory what the store holds, and rebuilds it from the store when reopened', async () => {
    const store = coalesceWrites(memoryStore());
    const q = await CommandQueue.open(store);
    const e1 = await q.enqueue('dev', { kind: 'Get', items: [{ target: { locURI: './A' } }] });
    const e2 = await q.enqueue('dev', { kind: 'Get', items: [{ target: { locURI: './B' } }] });
    const routed = await q.enqueue('leaf', { kind: 'Get', items: [{ target: { locURI: './C' } }] }, { via: 'dev', prefix: './GwMO/Devices/leaf' });
    await q.markSent([e1], 's1');
    await q.complete(e2, { status: 200, statuses: [], results: [] });
    expect((await q.pending('dev')).map((e) => [e.id, e.state])).toEqual([[e1.id, 'sent']]);
    expect((await q.deliverable('dev')).map((e) => e.id)).toEqual([e1.id, routed.id]);
    expect((await q.list('dev')).map((e) => e.state)).toEqual(['sent', 'done']);

    const again = await CommandQueue.open(store);
    expect((await again.pending('dev')).map((e) => [e.id, e.state, e.attempts])).toEqual([[e1.id, 'sent', 1]]);
    expect((await again.deliverable('dev')).map((e) => e.id)).toEqual([e1.id, routed.id]);
    expect((await again.enqueue('dev', { kind: 'Get', items: [{ target: { locURI: './D' } }] })).id > routed.id).toBe(true);
  });

  it('leaves an entry open when the write that completes it fails', async () => {
    let full: string | undefined;
    const q = await CommandQueue.open(coalesceWrites(withWriteFaults(memoryStore(), { failWrites: () => full })));
    const e = await q.enqueue('dev', { kind: 'Get', items: [{ target: { locURI: './A' } }] });
    full = 'EIO';
    await expect(q.complete(e, { status: 200, statuses: [], results: [] })).rejects.toThrow(/EIO/);
    await expect(q.enqueue('dev', { kind: 'Get', items: [{ target: { locURI: './B' } }] })).rejects.toThrow(/EIO/);
    full = undefined;
    expect((await q.pending('dev')).map((x) => [x.id, x.state])).toEqual([[e.id, 'queued']]);
  });
});

describe('cached section', () => {
  it('serves reads from memory after the first, and goes back to the store after a failed write', async () => {
    let full: string | undefined;
    const inner = memoryStore();
    const base = withWriteFaults(inner, { failWrites: () => full }).section<{ n: number }>('nonces');
    await inner.section('nonces').put('d', { n: 1 });
    const s = cachedSection(base);
    expect(await s.get('d')).toEqual({ n: 1 });
    await inner.section('nonces').put('d', { n: 2 }); // behind the cache's back: not seen
    expect(await s.get('d')).toEqual({ n: 1 });
    full = 'ENOSPC';
    await expect(s.put('d', { n: 3 })).rejects.toThrow(/ENOSPC/);
    expect(await s.get('d')).toEqual({ n: 2 });
    full = undefined;
    await s.put('d', { n: 4 });
    expect(await s.get('d')).toEqual({ n: 4 });
  });
});
