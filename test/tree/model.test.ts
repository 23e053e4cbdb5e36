import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { memoryStore } from '../../src/store/store.ts';
import { DmTree, LOCAL, type NodeRecord, type TreeContext } from '../../src/tree/tree.ts';
import { levelTree, statusOfCall, tempDir } from './helpers.ts';

/** The reference model: a Map from URI to node, kept in creation order (as the tree lists children). */
class Model {
  readonly nodes = new Map<string, { interior: boolean; data: string }>([['.', { interior: true, data: '' }]]);

  static parent(u: string): string {
    const i = u.lastIndexOf('/');
    return i <= 1 ? '.' : u.slice(0, i);
  }

  children(u: string): string[] {
    return [...this.nodes.keys()].filter((k) => k !== '.' && Model.parent(k) === u).map((k) => k.slice(k.lastIndexOf('/') + 1));
  }

  add(u: string, interior: boolean, data: string): number {
    if (this.nodes.has(u)) return 418;
    const chain: string[] = [];
    let p = u;
    while (!this.nodes.has(p)) {
      chain.unshift(p);
      p = Model.parent(p);
    }
    if (!this.nodes.get(p)?.interior) return 405;
    for (const c of chain) this.nodes.set(c, c === u ? { interior, data: interior ? '' : data } : { interior: true, data: '' });
    return 200;
  }

  replace(u: string, data: string): number {
    const n = this.nodes.get(u);
    if (!n) return 404;
    if (n.interior) return 405;
    this.nodes.set(u, { interior: false, data });
    return 200;
  }

  delete(u: string): number {
    if (!this.nodes.has(u)) return 404;
    for (const k of [...this.nodes.keys()]) if (k === u || k.startsWith(`${u}/`)) this.nodes.delete(k);
    return 200;
  }

  get(u: string): { status: number; format?: string; data?: string } {
    const n = this.nodes.get(u);
    if (!n) return { status: 404 };
    return n.interior ? { status: 200, format: 'node', data: this.children(u).join('/') } : { status: 200, format: 'chr', data: n.data };
  }
}

type Op =
  | { t: 'add'; path: string; interior: boolean; data: string }
  | { t: 'replace'; path: string; data: string }
  | { t: 'delete'; path: string }
  | { t: 'get'; path: string };

const SEGMENTS = ['a', 'b'];
const ALL_PATHS: string[] = [];
for (const x of SEGMENTS) {
  ALL_PATHS.push(`./${x}`);
  for (const y of SEGMENTS) {
    ALL_PATHS.push(`./${x}/${y}`);
    for (const z of SEGMENTS) ALL_PATHS.push(`./${x}/${y}/${z}`);
  }
}

const path = fc.constantFrom(...ALL_PATHS);
const value = fc.constantFrom('', 'x', 'yz', 'ü', 'a/b');
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ t: fc.constant('add' as const), path, interior: fc.boolean(), data: value }),
  fc.record({ t: fc.constant('replace' as const), path, data: value }),
  fc.record({ t: fc.constant('delete' as const), path }),
  fc.record({ t: fc.constant('get' as const), path }),
);
/** Sometimes address a node as `a/b` instead of `./a/b` (§3.8: equivalent). */
const spelled = (p: string, short: boolean): string => (short ? p.slice(2) : p);

const SERVER: TreeContext = { serverId: 'srv' };

async function getResult(tree: DmTree, u: string): Promise<{ status: number; format?: string; data?: string }> {
  try {
    const v = await tree.get(u, SERVER);
    return { status: 200, format: v.format, data: v.data };
  } catch (err) {
    const s = (err as { status?: number }).status;
    if (typeof s !== 'number') throw err;
    return { status: s };
  }
}

/** Applies one operation to both, asserting they agree on the status (and on the value for Get). */
async function step(tree: DmTree, model: Model, o: Op, short: boolean): Promise<void> {
  const u = spelled(o.path, short);
  switch (o.t) {
    case 'add':
      expect(await statusOfCall(tree.add(u, o.interior ? { format: 'node' } : { data: o.data }, SERVER)), `add ${u}`).toBe(model.add(o.path, o.interior, o.data));
      break;
    case 'replace':
      expect(await statusOfCall(tree.replace(u, { data: o.data }, SERVER)), `replace ${u}`).toBe(model.replace(o.path, o.data));
      break;
    case 'delete':
      expect(await statusOfCall(tree.delete(u, SERVER)), `delete ${u}`).toBe(model.delete(o.path));
      break;
    case 'get':
      expect(await getResult(tree, u), `get ${u}`).toEqual(model.get(o.path));
      break;
  }
}

/** The whole tree agrees with the model: every possible path, the root listing, and the set of stored nodes. */
async function assertEqual(tree: DmTree, model: Model): Promise<void> {
  for (const p of ['.', ...ALL_PATHS]) expect(await getResult(tree, p), p).toEqual(model.get(p));
  expect([...tree.snapshot().keys()].sort()).toEqual([...model.nodes.keys()].sort());
}

async function grantAll(tree: DmTree): Promise<void> {
  await tree.replaceProperty('.', 'ACL', 'Add=*&Get=*&Replace=*&Delete=*', LOCAL);
}

describe('model-based: random Add/Replace/Delete against a Map model', () => {
  it('agrees with the model on every step (memory store)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(op, fc.boolean()), { maxLength: 40 }), async (ops) => {
        const tree = await DmTree.open(memoryStore().section<NodeRecord>('tree'));
        await grantAll(tree);
        const model = new Model();
        for (const [o, short] of ops) await step(tree, model, o, short);
        await assertEqual(tree, model);
      }),
      { numRuns: 300 },
    );
  });

  it('still equals the model after a reopen from LevelDB files', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(op, fc.boolean()), { minLength: 1, maxLength: 30 }), async (ops) => {
        const { dir, cleanup } = await tempDir();
        try {
          const first = await levelTree(dir);
          await grantAll(first.tree);
          const model = new Model();
          try {
            for (const [o, short] of ops) await step(first.tree, model, o, short);
          } finally {
            await first.store.close();
          }
          const before = first.tree.snapshot();
          const second = await levelTree(dir);
          try {
            await assertEqual(second.tree, model);
            expect(second.tree.snapshot()).toEqual(before);
          } finally {
            await second.store.close();
          }
        } finally {
          await cleanup();
        }
      }),
      { numRuns: 25 },
    );
  });

  it('a rolled-back transaction leaves memory and store exactly as before, and the tree behaves like a twin that never saw it', async () => {
    const clock = () => new Date(Date.UTC(2026, 10, 22, 10, 15, 0));
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 15 }), fc.array(op, { maxLength: 15 }), fc.array(op, { maxLength: 10 }), async (setup, inTx, after) => {
        const section = memoryStore().section<NodeRecord>('tree');
        const tree = await DmTree.open(section, { now: clock });
        const twin = await DmTree.open(memoryStore().section<NodeRecord>('tree'), { now: clock });
        await grantAll(tree);
        await grantAll(twin);
        const model = new Model();
        const twinModel = new Model();
        for (const o of setup) {
          await step(tree, model, o, false);
          await step(twin, twinModel, o, false);
        }
        const mem = tree.snapshot();
        const disk = new Map(await section.entries());
        const tx = tree.begin();
        const scratch = new Model();
        for (const [k, v] of model.nodes) scratch.nodes.set(k, v);
        for (const o of inTx) await step(tree, scratch, o, false);
        await tx.rollback();
        expect(tree.snapshot()).toEqual(mem);
        expect(new Map(await section.entries())).toEqual(disk);
        await assertEqual(tree, model);
        for (const o of after) {
          await step(tree, model, o, false);
          await step(twin, twinModel, o, false);
        }
        expect(tree.snapshot()).toEqual(twin.snapshot());
      }),
      { numRuns: 200 },
    );
  });
});
