import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GwError } from '../../src/errors.ts';
import { type Section, memoryStore } from '../../src/store/store.ts';
import { DmTree, LOCAL, type NodeRecord } from '../../src/tree/tree.ts';
import { levelTree, persisted, statusOfCall, tempDir } from './helpers.ts';

describe('persistence with real LevelDB files', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeEach(async () => ({ dir, cleanup } = await tempDir()));
  afterEach(async () => cleanup());

  it('reopens the same tree: values, properties, child order, ACLs', async () => {
    const first = await levelTree(dir);
    await first.tree.add('./Z/b', { data: 'second' }, LOCAL);
    await first.tree.add('./Z/a', { data: new Uint8Array([1, 2, 3]), type: 'application/octet-stream' }, LOCAL);
    await first.tree.add('./Z/c', { format: 'node', acl: 'Get=srvA', access: ['Get'] }, LOCAL);
    await first.tree.add('./Z/p', { data: 'fixed', scope: 'permanent' }, LOCAL);
    await first.tree.replaceProperty('./Z/b', 'Title', 'B', LOCAL);
    await first.tree.replaceProperty('./Z/c', 'Name', 'cc', LOCAL);
    const before = first.tree.snapshot();
    await first.store.close();

    const second = await levelTree(dir);
    try {
      expect(second.tree.snapshot()).toEqual(before);
      expect((await second.tree.get('./Z', LOCAL)).data).toBe('b/a/cc/p');
      expect(await second.tree.get('./Z/a', LOCAL)).toMatchObject({ format: 'b64', data: 'AQID', type: 'application/octet-stream' });
      expect(await second.tree.getProperty('./Z/b', 'Title', LOCAL)).toBe('B');
      expect(await second.tree.getProperty('./Z/cc', 'ACL', LOCAL)).toBe('Get=srvA');
      expect(await statusOfCall(second.tree.delete('./Z/p', LOCAL))).toBe(405);
      // new nodes continue the creation order after a reopen
      await second.tree.add('./Z/d', { data: 'd' }, LOCAL);
      expect((await second.tree.get('./Z', LOCAL)).data).toBe('b/a/cc/p/d');
    } finally {
      await second.store.close();
    }
  });

  it('creates the root with Add=*&Get=* exactly once', async () => {
    const first = await levelTree(dir);
    await first.tree.replaceProperty('.', 'ACL', 'Add=*&Get=*&Replace=srvA', LOCAL);
    await first.store.close();
    const second = await levelTree(dir);
    expect(await second.tree.getProperty('.', 'ACL', LOCAL)).toBe('Add=*&Get=*&Replace=srvA');
    await second.store.close();
  });

  it('rolls back an Atomic transaction in memory and in the persisted store', async () => {
    const first = await levelTree(dir);
    const { tree, store } = first;
    await tree.add('./T/keep', { data: 'k' }, LOCAL);
    await tree.add('./T/gone', { format: 'node' }, LOCAL);
    await tree.add('./T/gone/child', { data: 'c' }, LOCAL);
    const memBefore = tree.snapshot();
    const diskBefore = await persisted(store);

    const tx = tree.begin();
    await tree.add('./T/new/deep', { data: 'n' }, { serverId: 'srvA' });
    await tree.replace('./T/keep', { data: 'changed' }, LOCAL);
    await tree.delete('./T/gone', LOCAL);
    await tree.replaceProperty('./T', 'Name', 'T2', LOCAL);
    await tree.replaceProperty('.', 'ACL', 'Add=*&Get=*&Delete=*', LOCAL);
    expect(tree.hasLocal('./T2/new/deep')).toBe(true);
    await tx.rollback();
    expect(tx.active).toBe(false);

    expect(tree.snapshot()).toEqual(memBefore);
    expect(await persisted(store)).toEqual(diskBefore);
    expect((await tree.get('./T', LOCAL)).data).toBe('keep/gone');
    await store.close();

    const second = await levelTree(dir);
    expect(second.tree.snapshot()).toEqual(memBefore);
    // later nodes still list after the existing ones
    await second.tree.add('./T/after', { data: 'a' }, LOCAL);
    expect((await second.tree.get('./T', LOCAL)).data).toBe('keep/gone/after');
    await second.store.close();
  });

  it('keeps committed changes', async () => {
    const { tree, store } = await levelTree(dir);
    const tx = tree.begin();
    await tree.add('./C', { data: '1' }, LOCAL);
    await tx.commit();
    await expect(tx.rollback()).rejects.toThrow(GwError);
    await store.close();
    const again = await levelTree(dir);
    expect((await again.tree.get('./C', LOCAL)).data).toBe('1');
    await again.store.close();
  });
});

describe('write-through atomicity', () => {
  /** Wraps a section to count batches and fail on demand. */
  function instrumented(inner: Section<NodeRecord>) {
    const state = { batches: 0, puts: 0, failNext: false };
    const section: Section<NodeRecord> = {
      get: (k) => inner.get(k),
      put: async (k, v) => {
        state.puts++;
        return inner.put(k, v);
      },
      del: async (k) => {
        state.puts++;
        return inner.del(k);
      },
      entries: (p, l) => inner.entries(p, l),
      batch: async (ops) => {
        state.batches++;
        if (state.failNext) {
          state.failNext = false;
          throw new Error('disk full');
        }
        return inner.batch(ops);
      },
    };
    return { section, state };
  }

  it('writes one operation as one batch, including implicit ancestors, parents and renames', async () => {
    const { section, state } = instrumented(memoryStore().section<NodeRecord>('tree'));
    const tree = await DmTree.open(section);
    state.batches = 0;
    await tree.add('./a/b/c/d', { data: '1' }, LOCAL);
    expect(state.batches).toBe(1);
    await tree.replaceProperty('./a/b', 'Name', 'bb', LOCAL);
    expect(state.batches).toBe(2);
    await tree.delete('./a', LOCAL);
    expect(state.batches).toBe(3);
    expect(state.puts).toBe(0);
  });

  it('leaves memory untouched and answers 510 when the store rejects a write', async () => {
    const { section, state } = instrumented(memoryStore().section<NodeRecord>('tree'));
    const tree = await DmTree.open(section);
    await tree.add('./x', { data: '1' }, LOCAL);
    const before = tree.snapshot();
    state.failNext = true;
    expect(await statusOfCall(tree.add('./y/z', { data: '2' }, LOCAL))).toBe(510);
    expect(tree.snapshot()).toEqual(before);
    expect(new Map(await section.entries())).toEqual(before);
  });

  it('reports 516 when the rollback itself cannot be written', async () => {
    const { section, state } = instrumented(memoryStore().section<NodeRecord>('tree'));
    const tree = await DmTree.open(section);
    const tx = tree.begin();
    await tree.add('./x', { data: '1' }, LOCAL);
    state.failNext = true;
    const err = await tx.rollback().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(GwError);
    expect((err as GwError).status).toBe(516);
    expect((err as GwError).code).toBe('TREE_ROLLBACK_FAILED');
    // memory still mirrors the store, which kept the change
    expect(tree.hasLocal('./x')).toBe(true);
    expect(await section.get('./x')).toBeDefined();
  });

  it('allows one transaction at a time', async () => {
    const tree = await DmTree.open(memoryStore().section<NodeRecord>('tree'));
    const tx = tree.begin();
    expect(() => tree.begin()).toThrow(GwError);
    await tx.commit();
    tree.begin();
  });

  it('refuses a corrupt store (a node without its parent)', async () => {
    const section = memoryStore().section<NodeRecord>('tree');
    await section.put('./orphan/x', { format: 'chr', type: 'text/plain', acl: '', access: ['Get'], scope: 'dynamic', tstamp: '', verNo: 0, seq: 1, data: '' });
    await expect(DmTree.open(section)).rejects.toMatchObject({ code: 'TREE_CORRUPT' });
  });
});
