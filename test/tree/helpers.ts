/** Shared fixtures for the tree tests: in-memory and LevelDB-backed trees, and a fixed clock. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Store, memoryStore, openStore } from '../../src/store/store.ts';
import { DmTree, type NodeRecord, type TreeOptions } from '../../src/tree/tree.ts';

/** A clock that starts at 2026-11-22T10:15:00Z and advances one second per call. */
export function steppingClock(start = Date.UTC(2026, 10, 22, 10, 15, 0)): () => Date {
  let t = start;
  return () => {
    const d = new Date(t);
    t += 1000;
    return d;
  };
}

/** Opens a tree on a fresh in-memory store. */
export async function memoryTree(options: TreeOptions = {}): Promise<{ tree: DmTree; store: Store }> {
  const store = memoryStore();
  const tree = await DmTree.open(store.section<NodeRecord>('tree'), options);
  return { tree, store };
}

/** A temporary directory for a real LevelDB store, removed by `cleanup`. */
export async function tempDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'gwmo-tree-'));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Opens the LevelDB store in `dir` and a tree on its `tree` section. */
export async function levelTree(dir: string, options: TreeOptions = {}): Promise<{ tree: DmTree; store: Store }> {
  const store = await openStore(dir);
  const tree = await DmTree.open(store.section<NodeRecord>('tree'), options);
  return { tree, store };
}

/** The raw records persisted in a store section, by key. */
export async function persisted(store: Store): Promise<Map<string, NodeRecord>> {
  return new Map(await store.section<NodeRecord>('tree').entries());
}

/** Runs `p` and returns the DM status it fails with (or 200 when it succeeds). */
export async function statusOfCall(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return 200;
  } catch (err) {
    const s = (err as { status?: number }).status;
    if (typeof s !== 'number') throw err;
    return s;
  }
}
