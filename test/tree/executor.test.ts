import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Command, OperationCommand, ResultsCommand, StatusCommand } from '../../src/codec/model.ts';
import { type Reply, type UiAlert, executeCommands } from '../../src/tree/executor.ts';
import { DmTree, LOCAL } from '../../src/tree/tree.ts';
import { levelTree, memoryTree, persisted, tempDir } from './helpers.ts';

const SRV = { serverId: 'srvA' };
type S = Omit<StatusCommand, 'cmdID'>;
type R = Omit<ResultsCommand, 'cmdID'>;

/** [kind, cmdRef, cmd or '', status or ''] per reply: a compact picture of the reply order. */
const shape = (rs: Reply[]) => rs.map((r) => (r.kind === 'Status' ? ['Status', r.cmdRef, r.cmd, r.data] : ['Results', r.cmdRef]));
const item = (target: string, data?: string, meta?: { format?: string; type?: string }) => {
  const i: { target: { locURI: string }; data?: string; meta?: { format?: string; type?: string } } = { target: { locURI: target } };
  if (data !== undefined) i.data = data;
  if (meta) i.meta = meta;
  return i;
};

async function fixture(): Promise<DmTree> {
  const { tree } = await memoryTree();
  await tree.replaceProperty('.', 'ACL', 'Add=*&Get=*&Replace=srvA&Delete=srvA&Exec=srvA', LOCAL);
  await tree.add('./Dev', { format: 'node', type: 'urn:example:dev:1.0' }, LOCAL);
  await tree.add('./Dev/Mod', { data: 'GW-1' }, LOCAL);
  await tree.add('./Dev/Count', { format: 'int', data: '3' }, LOCAL);
  return tree;
}

describe('executeCommands', () => {
  let tree: DmTree;
  beforeEach(async () => (tree = await fixture()));

  it('answers a Get with its Status and then its Results', async () => {
    const rs = await executeCommands(tree, [{ kind: 'Get', cmdID: '4', items: [item('./Dev/Mod'), item('Dev/Count')] }], '2', SRV);
    expect(rs).toEqual([
      { kind: 'Status', msgRef: '2', cmdRef: '4', cmd: 'Get', targetRefs: ['./Dev/Mod', 'Dev/Count'], sourceRefs: [], data: '200', items: [] },
      {
        kind: 'Results',
        msgRef: '2',
        cmdRef: '4',
        items: [
          { source: { locURI: './Dev/Mod' }, data: 'GW-1' },
          { source: { locURI: 'Dev/Count' }, meta: { format: 'int' }, data: '3' },
        ],
      },
    ]);
  });

  it('gives interior nodes Meta Format node with the MOID, and binary leaves Format b64', async () => {
    await tree.add('./Dev/Blob', { data: new Uint8Array([255, 0]), type: 'application/octet-stream' }, LOCAL);
    const rs = await executeCommands(tree, [{ kind: 'Get', cmdID: '1', items: [item('./Dev'), item('./Dev/Blob')] }], '1', SRV);
    expect((rs[1] as R).items).toEqual([
      { source: { locURI: './Dev' }, meta: { format: 'node', type: 'urn:example:dev:1.0' }, data: 'Mod/Count/Blob' },
      { source: { locURI: './Dev/Blob' }, meta: { format: 'b64', type: 'application/octet-stream' }, data: '/wA=' },
    ]);
  });

  it('splits the Status per item when items differ, each Results right after its Status', async () => {
    const rs = await executeCommands(tree, [{ kind: 'Get', cmdID: '5', items: [item('./Dev/Mod'), item('./Dev/None'), item('./Dev/Count')] }], '3', SRV);
    expect(shape(rs)).toEqual([
      ['Status', '5', 'Get', '200'],
      ['Results', '5'],
      ['Status', '5', 'Get', '404'],
      ['Status', '5', 'Get', '200'],
      ['Results', '5'],
    ]);
    expect((rs[2] as S).targetRefs).toEqual(['./Dev/None']);
    expect((rs[3] as S).targetRefs).toEqual(['./Dev/Count']);
    expect((rs[4] as R).items[0]?.source?.locURI).toBe('./Dev/Count');
  });

  it('maps Add, Replace, Delete and Copy statuses (200/404/405/418/425)', async () => {
    const cmds: OperationCommand[] = [
      { kind: 'Add', cmdID: '1', items: [item('./Dev/New', 'n')] },
      { kind: 'Add', cmdID: '2', items: [item('./Dev/New', 'again')] },
      { kind: 'Add', cmdID: '3', items: [item('./Dev/Mod/Below', 'x')] },
      { kind: 'Replace', cmdID: '4', items: [item('./Dev/Missing', 'x')] },
      { kind: 'Replace', cmdID: '5', items: [item('./Dev/Mod', 'GW-2')] },
      { kind: 'Copy', cmdID: '6', items: [{ target: { locURI: './Dev/Copy' }, source: { locURI: './Dev/Mod' } }] },
      { kind: 'Delete', cmdID: '7', items: [item('./Dev/New')] },
    ];
    const rs = (await executeCommands(tree, cmds, '1', SRV)) as S[];
    expect(rs.map((r) => [r.cmdRef, r.cmd, r.data])).toEqual([
      ['1', 'Add', '200'],
      ['2', 'Add', '418'],
      ['3', 'Add', '405'],
      ['4', 'Replace', '404'],
      ['5', 'Replace', '200'],
      ['6', 'Copy', '200'],
      ['7', 'Delete', '200'],
    ]);
    expect(rs[5]).toMatchObject({ targetRefs: ['./Dev/Copy'], sourceRefs: ['./Dev/Mod'] });
    expect((await tree.get('./Dev/Copy', LOCAL)).data).toBe('GW-2');
    const denied = (await executeCommands(tree, [{ kind: 'Delete', cmdID: '8', items: [item('./Dev/Mod')] }], '1', { serverId: 'srvB' })) as S[];
    expect(denied[0]?.data).toBe('425');
  });

  it('takes Meta from the command, with the item Meta winning', async () => {
    await executeCommands(
      tree,
      [
        {
          kind: 'Add',
          cmdID: '1',
          meta: { format: 'int', type: 'text/x-cmd' },
          items: [item('./Dev/A', '1'), item('./Dev/B', 'true', { format: 'bool' }), item('./Dev/C', 'x', { format: 'chr', type: 'text/x-item' })],
        },
      ],
      '1',
      SRV,
    );
    expect(await tree.get('./Dev/A', LOCAL)).toMatchObject({ format: 'int', type: 'text/x-cmd' });
    expect(await tree.get('./Dev/B', LOCAL)).toMatchObject({ format: 'bool', type: 'text/x-cmd' });
    expect(await tree.get('./Dev/C', LOCAL)).toMatchObject({ format: 'chr', type: 'text/x-item' });
  });

  it('reads and writes properties and lists subtrees', async () => {
    const rs = await executeCommands(
      tree,
      [
        { kind: 'Replace', cmdID: '1', items: [item('./Dev?prop=ACL', 'Get=*&Replace=srvA')] },
        { kind: 'Get', cmdID: '2', items: [item('./Dev?prop=ACL'), item('./Dev/Mod?prop=ACL')] },
        { kind: 'Get', cmdID: '3', items: [item('./Dev?list=Struct')] },
        { kind: 'Get', cmdID: '4', items: [item('./Dev?list=TNDS+ACL')] },
      ],
      '1',
      SRV,
    );
    expect(shape(rs)).toEqual([
      ['Status', '1', 'Replace', '200'],
      ['Status', '2', 'Get', '200'],
      ['Results', '2'],
      ['Status', '3', 'Get', '200'],
      ['Results', '3'],
      ['Status', '4', 'Get', '406'],
    ]);
    expect((rs[2] as R).items).toEqual([
      { source: { locURI: './Dev?prop=ACL' }, data: 'Get=*&Replace=srvA' },
      { source: { locURI: './Dev/Mod?prop=ACL' }, data: '' },
    ]);
    expect((rs[4] as R).items.map((i) => i.source?.locURI)).toEqual(['./Dev', './Dev/Mod', './Dev/Count']);
    expect((rs[4] as R).items[0]).toEqual({ source: { locURI: './Dev' }, meta: { format: 'node', type: 'urn:example:dev:1.0' } });
  });

  it('renames through Replace ?prop=Name', async () => {
    const rs = (await executeCommands(tree, [{ kind: 'Replace', cmdID: '1', items: [item('./Dev/Mod?prop=Name', 'Model')] }], '1', SRV)) as S[];
    expect(rs[0]?.data).toBe('200');
    expect((await tree.get('./Dev/Model', LOCAL)).data).toBe('GW-1');
  });

  it('passes the Exec Correlator and data to the handler and returns its status', async () => {
    await tree.add('./Dev/Reboot', { access: ['Exec'] }, LOCAL);
    const seen: unknown[] = [];
    tree.onExec('./Dev/Reboot', (r) => {
      seen.push([r.data, r.correlator, r.serverId]);
      return { status: 202 };
    });
    const rs = (await executeCommands(tree, [{ kind: 'Exec', cmdID: '9', correlator: 'corr-1', items: [item('./Dev/Reboot', 'now')] }], '1', SRV)) as S[];
    expect(rs[0]).toMatchObject({ cmd: 'Exec', cmdRef: '9', data: '202', targetRefs: ['./Dev/Reboot'] });
    expect(seen).toEqual([['now', 'corr-1', 'srvA']]);
  });

  it('turns an unexpected exception into 500 and reports it through onError', async () => {
    await tree.add('./Dev/Boom', { access: ['Exec'] }, LOCAL);
    tree.onExec('./Dev/Boom', () => {
      throw new Error('kaput');
    });
    const errors: unknown[] = [];
    const rs = (await executeCommands(tree, [{ kind: 'Exec', cmdID: '1', items: [item('./Dev/Boom')] }], '1', { ...SRV, onError: (e) => errors.push(e) })) as S[];
    expect(rs[0]?.data).toBe('500');
    expect(errors).toHaveLength(1);
    expect((errors[0] as Error).message).toBe('kaput');
  });

  it('answers TNDS payloads with 415, missing Targets with 412 and non-UI alerts with 406', async () => {
    const rs = (await executeCommands(
      tree,
      [
        { kind: 'Add', cmdID: '1', items: [item('./Dev', '<MgmtTree/>', { format: 'xml', type: 'application/vnd.syncml.dmtnds+xml' })] },
        { kind: 'Replace', cmdID: '2', items: [{ data: 'x' }] },
        { kind: 'Alert', cmdID: '3', data: '1201', items: [] },
        { kind: 'Get', cmdID: '4', items: [] },
      ],
      '1',
      SRV,
    )) as S[];
    expect(rs.map((r) => r.data)).toEqual(['415', '412', '406', '412']);
  });
});

describe('UI alerts (§3.5)', () => {
  it('answers with the default handler: display and confirm 200, text input the DR text, choices "1"', async () => {
    const tree = await fixture();
    const rs = (await executeCommands(
      tree,
      [
        { kind: 'Alert', cmdID: '1', data: '1100', items: [{ data: 'MINDT=5' }, { data: 'Hello' }] },
        { kind: 'Alert', cmdID: '2', data: '1101', items: [{ data: '' }, { data: 'Update?' }] },
        { kind: 'Alert', cmdID: '3', data: '1102', items: [{ data: 'DR=Bob&MAXLEN=10' }, { data: 'Name?' }] },
        { kind: 'Alert', cmdID: '4', data: '1103', items: [{ data: '' }, { data: 'Pick' }, { data: 'a' }, { data: 'b' }] },
        { kind: 'Alert', cmdID: '5', data: '1104', items: [{ data: '' }, { data: 'Pick' }, { data: 'a' }, { data: 'b' }] },
      ],
      '1',
      SRV,
    )) as S[];
    expect(rs.map((r) => [r.cmdRef, r.cmd, r.data, r.items.map((i) => i.data)])).toEqual([
      ['1', 'Alert', '200', []],
      ['2', 'Alert', '200', []],
      ['3', 'Alert', '200', ['Bob']],
      ['4', 'Alert', '200', ['1']],
      ['5', 'Alert', '200', ['1']],
    ]);
  });

  it('hands the parsed alert to an injected handler', async () => {
    const tree = await fixture();
    const seen: UiAlert[] = [];
    const rs = (await executeCommands(
      tree,
      [{ kind: 'Alert', cmdID: '1', data: '1104', items: [{ data: 'MAXDT=30&DR=2' }, { data: 'Which?' }, { data: 'x' }, { data: 'y' }, { data: 'z' }] }],
      '1',
      { ...SRV, ui: (a) => (seen.push(a), { status: 200, items: ['1', '3'] }) },
    )) as S[];
    expect(seen[0]).toEqual({ code: 1104, params: { MAXDT: '30', DR: '2' }, text: 'Which?', choices: ['x', 'y', 'z'], serverId: 'srvA' });
    expect(rs[0]?.items).toEqual([{ data: '1' }, { data: '3' }]);
  });

  it('stops a Sequence when the user rejects a 1101: 304 for the alert, 215 for the rest', async () => {
    const tree = await fixture();
    const rs = await executeCommands(
      tree,
      [
        {
          kind: 'Sequence',
          cmdID: '1',
          commands: [
            { kind: 'Replace', cmdID: '2', items: [item('./Dev/Mod', 'before')] },
            { kind: 'Alert', cmdID: '3', data: '1101', items: [{ data: '' }, { data: 'Go on?' }] },
            { kind: 'Replace', cmdID: '4', items: [item('./Dev/Mod', 'after')] },
            { kind: 'Atomic', cmdID: '5', commands: [{ kind: 'Delete', cmdID: '6', items: [item('./Dev/Count')] }] },
          ],
        },
        { kind: 'Get', cmdID: '7', items: [item('./Dev/Mod')] },
      ],
      '4',
      { ...SRV, ui: (a) => ({ status: a.code === 1101 ? 304 : 200 }) },
    );
    expect(shape(rs)).toEqual([
      ['Status', '1', 'Sequence', '200'],
      ['Status', '2', 'Replace', '200'],
      ['Status', '3', 'Alert', '304'],
      ['Status', '4', 'Replace', '215'],
      ['Status', '5', 'Atomic', '215'],
      ['Status', '6', 'Delete', '215'],
      ['Status', '7', 'Get', '200'],
      ['Results', '7'],
    ]);
    expect((rs[3] as S).targetRefs).toEqual(['./Dev/Mod']);
    expect((await tree.get('./Dev/Mod', LOCAL)).data).toBe('before');
    expect(tree.hasLocal('./Dev/Count')).toBe(true);
  });

  it('does not stop later commands outside a Sequence', async () => {
    const tree = await fixture();
    const rs = (await executeCommands(
      tree,
      [
        { kind: 'Alert', cmdID: '1', data: '1101', items: [{ data: '' }, { data: 'Go on?' }] },
        { kind: 'Replace', cmdID: '2', items: [item('./Dev/Mod', 'x')] },
      ],
      '1',
      { ...SRV, ui: () => ({ status: 304 }) },
    )) as S[];
    expect(rs.map((r) => r.data)).toEqual(['304', '200']);
  });
});

describe('Atomic (§3.3)', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeEach(async () => ({ dir, cleanup } = await tempDir()));
  afterEach(async () => cleanup());

  it('commits all inner commands when they all succeed', async () => {
    const tree = await fixture();
    const rs = await executeCommands(
      tree,
      [
        {
          kind: 'Atomic',
          cmdID: '1',
          commands: [
            { kind: 'Add', cmdID: '2', items: [item('./Dev/X', 'x')] },
            { kind: 'Sequence', cmdID: '3', commands: [{ kind: 'Replace', cmdID: '4', items: [item('./Dev/Mod', 'M')] }] },
          ],
        },
      ],
      '1',
      SRV,
    );
    expect(shape(rs)).toEqual([
      ['Status', '1', 'Atomic', '200'],
      ['Status', '2', 'Add', '200'],
      ['Status', '3', 'Sequence', '200'],
      ['Status', '4', 'Replace', '200'],
    ]);
    expect((await tree.get('./Dev/X', LOCAL)).data).toBe('x');
  });

  it('rolls back on failure: 507, 216 for what ran, the failure keeps its code, 215 after it; store restored on disk', async () => {
    const first = await levelTree(dir);
    const { tree, store } = first;
    await tree.replaceProperty('.', 'ACL', 'Add=*&Get=*&Replace=srvA&Delete=srvA', LOCAL);
    await tree.add('./Dev/Mod', { data: 'GW-1' }, LOCAL);
    await tree.add('./Dev/Count', { format: 'int', data: '3' }, LOCAL);
    const memBefore = tree.snapshot();
    const diskBefore = await persisted(store);
    const rs = await executeCommands(
      tree,
      [
        {
          kind: 'Atomic',
          cmdID: '10',
          commands: [
            { kind: 'Add', cmdID: '11', items: [item('./Dev/New/Deep', 'n')] },
            { kind: 'Replace', cmdID: '12', items: [item('./Dev/Mod', 'changed')] },
            { kind: 'Delete', cmdID: '13', items: [item('./Dev/Count')] },
            { kind: 'Replace', cmdID: '14', items: [item('./Dev/Nope', 'x')] },
            { kind: 'Add', cmdID: '15', items: [item('./Dev/Later', 'l')] },
          ],
        },
      ],
      '6',
      SRV,
    );
    expect(shape(rs)).toEqual([
      ['Status', '10', 'Atomic', '507'],
      ['Status', '11', 'Add', '216'],
      ['Status', '12', 'Replace', '216'],
      ['Status', '13', 'Delete', '216'],
      ['Status', '14', 'Replace', '404'],
      ['Status', '15', 'Add', '215'],
    ]);
    expect(rs.every((r) => r.msgRef === '6')).toBe(true);
    expect(tree.snapshot()).toEqual(memBefore);
    expect(await persisted(store)).toEqual(diskBefore);
    await store.close();
    const again = await levelTree(dir);
    expect(again.tree.snapshot()).toEqual(memBefore);
    await again.store.close();
  });

  it('refuses Get, Exec and nested Atomic inside with 500, running nothing', async () => {
    const tree = await fixture();
    const before = tree.snapshot();
    const rs = await executeCommands(
      tree,
      [
        {
          kind: 'Atomic',
          cmdID: '1',
          commands: [
            { kind: 'Replace', cmdID: '2', items: [item('./Dev/Mod', 'x')] },
            { kind: 'Get', cmdID: '3', items: [item('./Dev/Mod')] },
            { kind: 'Sequence', cmdID: '4', commands: [{ kind: 'Exec', cmdID: '5', items: [item('./Dev/Mod')] }] },
            { kind: 'Atomic', cmdID: '6', commands: [] },
          ],
        },
      ],
      '1',
      SRV,
    );
    expect(shape(rs)).toEqual([
      ['Status', '1', 'Atomic', '507'],
      ['Status', '2', 'Replace', '215'],
      ['Status', '3', 'Get', '500'],
      ['Status', '4', 'Sequence', '215'],
      ['Status', '5', 'Exec', '500'],
      ['Status', '6', 'Atomic', '500'],
    ]);
    expect(tree.snapshot()).toEqual(before);
  });

  it('rolls back when a UI confirmation inside is rejected', async () => {
    const tree = await fixture();
    const rs = await executeCommands(
      tree,
      [
        {
          kind: 'Atomic',
          cmdID: '1',
          commands: [
            { kind: 'Replace', cmdID: '2', items: [item('./Dev/Mod', 'x')] },
            { kind: 'Alert', cmdID: '3', data: '1101', items: [{ data: '' }, { data: 'Sure?' }] },
          ],
        },
      ] as Command[] as OperationCommand[],
      '1',
      { ...SRV, ui: () => ({ status: 304 }) },
    );
    expect(shape(rs)).toEqual([
      ['Status', '1', 'Atomic', '507'],
      ['Status', '2', 'Replace', '216'],
      ['Status', '3', 'Alert', '304'],
    ]);
    expect((await tree.get('./Dev/Mod', LOCAL)).data).toBe('GW-1');
  });

  it('answers an Atomic that cannot start a transaction without running it', async () => {
    const tree = await fixture();
    const tx = tree.begin();
    const rs = await executeCommands(tree, [{ kind: 'Atomic', cmdID: '1', commands: [{ kind: 'Delete', cmdID: '2', items: [item('./Dev/Mod')] }] }], '1', SRV);
    await tx.commit();
    expect(shape(rs)).toEqual([
      ['Status', '1', 'Atomic', '500'],
      ['Status', '2', 'Delete', '215'],
    ]);
    expect(tree.hasLocal('./Dev/Mod')).toBe(true);
  });
});
