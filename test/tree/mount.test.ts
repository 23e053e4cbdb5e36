import { beforeEach, describe, expect, it } from 'vitest';
import { DmStatusError } from '../../src/errors.ts';
import { DmTree, LOCAL, type NodeRecord, type PluginNodeView, type PluginWrite, type TreeContext, type TreePlugin } from '../../src/tree/tree.ts';
import { memoryStore } from '../../src/store/store.ts';
import { executeCommands } from '../../src/tree/executor.ts';
import { memoryTree, statusOfCall } from './helpers.ts';

/**
 * A simulated end device: a flat map of relative paths to nodes, like an adaptation device whose
 * attributes are synthesised by the gateway. Records every call so tests can see what reached it.
 */
class DevicePlugin implements TreePlugin {
  readonly nodes = new Map<string, PluginNodeView>();
  readonly calls: string[] = [];
  asleep = false;
  constructor(init: Record<string, PluginNodeView>) {
    this.nodes.set('', { format: 'node', type: 'urn:example:device:1.0' });
    for (const [k, v] of Object.entries(init)) this.nodes.set(k, v);
  }
  get(path: string): PluginNodeView | undefined {
    if (this.asleep && path !== '') throw new DmStatusError(202, 'DEVICE_ASLEEP', 'queued');
    return this.nodes.get(path);
  }
  children(path: string): string[] {
    const prefix = path === '' ? '' : `${path}/`;
    return [...this.nodes.keys()].filter((k) => k !== '' && k.startsWith(prefix) && !k.slice(prefix.length).includes('/')).map((k) => k.slice(prefix.length));
  }
  add(path: string, v: PluginWrite, ctx: TreeContext): void {
    this.calls.push(`add ${path} ${v.format} acl=${v.acl} by ${ctx.serverId}`);
    const node: PluginNodeView = { format: v.format, type: v.type };
    if (v.data !== undefined) node.data = v.data;
    if (v.acl) node.acl = v.acl;
    this.nodes.set(path, node);
  }
  replace(path: string, v: PluginWrite): { status: number } | void {
    this.calls.push(`replace ${path} ${v.data}`);
    const cur = this.nodes.get(path);
    if (cur) this.nodes.set(path, { ...cur, format: v.format, data: v.data });
    if (path === 'Slow') return { status: 202 };
  }
  delete(path: string): void {
    this.calls.push(`delete ${path}`);
    for (const k of [...this.nodes.keys()]) if (k === path || k.startsWith(`${path}/`)) this.nodes.delete(k);
  }
  exec(path: string, args: { data?: unknown; correlator?: string }) {
    this.calls.push(`exec ${path} ${String(args.data)} ${args.correlator}`);
    return { status: 202 };
  }
}

const A = { serverId: 'srvA' };
const B = { serverId: 'srvB' };

describe('mounted plugins (GwMO §1.8)', () => {
  let tree: DmTree;
  let dev: DevicePlugin;
  beforeEach(async () => {
    ({ tree } = await memoryTree());
    dev = new DevicePlugin({
      DevInfo: { format: 'node' },
      'DevInfo/Mod': { format: 'chr', data: 'Lamp 1', access: ['Get'] },
      Light: { format: 'node' },
      'Light/On': { format: 'bool', data: 'false' },
      'Light/Toggle': { format: 'null', access: ['Exec'] },
      Public: { format: 'node', acl: 'Get=*' },
      'Public/Name': { format: 'chr', data: 'lamp' },
      Slow: { format: 'chr', data: 's' },
    });
    await tree.mount('./GwMO/Devices/d1', dev, { acl: 'Get=srvA&Replace=srvA&Add=srvA&Delete=srvA&Exec=srvA' });
  });

  it('shows the plugin subtree inside the tree', async () => {
    expect(await tree.get('./GwMO/Devices/d1', A)).toEqual({
      uri: './GwMO/Devices/d1',
      format: 'node',
      type: 'urn:example:device:1.0',
      data: 'DevInfo/Light/Public/Slow',
    });
    expect(await tree.get('./GwMO/Devices/d1/DevInfo/Mod', A)).toEqual({ uri: './GwMO/Devices/d1/DevInfo/Mod', format: 'chr', type: 'text/plain', data: 'Lamp 1' });
    expect((await tree.get('./GwMO/Devices', A)).data).toBe('d1');
    expect(await statusOfCall(tree.get('./GwMO/Devices/d1/Nothing', A))).toBe(404);
  });

  it('inherits the mount point ACL below the mount unless the plugin gives one', async () => {
    expect(await statusOfCall(tree.get('./GwMO/Devices/d1/Light/On', B))).toBe(425);
    expect((await tree.get('./GwMO/Devices/d1/Public/Name', B)).data).toBe('lamp');
    expect(await tree.effectiveAcl('./GwMO/Devices/d1/Light/On')).toBe('Get=srvA&Replace=srvA&Add=srvA&Delete=srvA&Exec=srvA');
  });

  it('keeps the mount point ACL as a local, replaceable, persisted property', async () => {
    await tree.replaceProperty('./GwMO/Devices/d1', 'ACL', 'Get=srvB', LOCAL);
    expect((await tree.get('./GwMO/Devices/d1/Light/On', B)).data).toBe('false');
    expect(await statusOfCall(tree.get('./GwMO/Devices/d1/Light/On', A))).toBe(425);
    expect(tree.snapshot().get('./GwMO/Devices/d1')?.acl).toBe('Get=srvB');
  });

  it('routes Add, Replace, Delete and Exec to the plugin with relative paths', async () => {
    await tree.add('./GwMO/Devices/d1/Light/Level', { format: 'int', data: '7' }, A);
    await tree.replace('./GwMO/Devices/d1/Light/On', { data: 'true' }, A);
    expect(await tree.exec('./GwMO/Devices/d1/Light/Toggle', { data: 'x', correlator: 'c9' }, A)).toEqual({ status: 202 });
    await tree.delete('./GwMO/Devices/d1/Light/Level', A);
    expect(dev.calls).toEqual([
      'add Light/Level int acl= by srvA',
      'replace Light/On true',
      'exec Light/Toggle x c9',
      'delete Light/Level',
    ]);
    expect((await tree.get('./GwMO/Devices/d1/Light/On', A)).data).toBe('true');
  });

  it('applies the tree rules before calling the plugin', async () => {
    expect(await statusOfCall(tree.replace('./GwMO/Devices/d1/DevInfo/Mod', { data: 'x' }, A))).toBe(405); // AccessType Get only
    expect(await statusOfCall(tree.replace('./GwMO/Devices/d1/Light/On', { data: 'x' }, B))).toBe(425);
    expect(await statusOfCall(tree.replace('./GwMO/Devices/d1/Light/On', { data: 'maybe' }, A))).toBe(400); // bool
    expect(await statusOfCall(tree.add('./GwMO/Devices/d1/Light/On', { data: '1' }, A))).toBe(418);
    expect(await statusOfCall(tree.add('./GwMO/Devices/d1/Light/On/x', { data: '1' }, A))).toBe(405);
    expect(await statusOfCall(tree.replace('./GwMO/Devices/d1/Light', { data: '1' }, A))).toBe(405);
    expect(await statusOfCall(tree.exec('./GwMO/Devices/d1/Light/On', {}, A))).toBe(405);
    expect(dev.calls).toEqual([]);
  });

  it('passes a plugin status such as 202 (queued) through', async () => {
    expect(await tree.replace('./GwMO/Devices/d1/Slow', { data: 'later' }, A)).toEqual({ status: 202 });
    dev.asleep = true;
    expect(await statusOfCall(tree.get('./GwMO/Devices/d1/Slow', A))).toBe(202);
    // the mount point itself stays readable while the device sleeps
    expect(await tree.getProperty('./GwMO/Devices/d1', 'ACL', A)).toContain('Get=srvA');
  });

  it('gives the creator ACL to interior nodes added without Replace on the parent', async () => {
    await tree.replaceProperty('./GwMO/Devices/d1', 'ACL', 'Get=*&Add=srvB', LOCAL);
    await tree.add('./GwMO/Devices/d1/Group', { format: 'node' }, B);
    expect(dev.calls).toEqual(['add Group node acl=Get=*&Add=srvB&Delete=srvB&Replace=srvB by srvB']);
    expect(await tree.getProperty('./GwMO/Devices/d1/Group', 'ACL', B)).toBe('Get=*&Add=srvB&Delete=srvB&Replace=srvB');
  });

  it('lists across the mount point', async () => {
    const l = await tree.list('./GwMO', 'StructData', A);
    expect(l.map((e) => e.uri)).toContain('./GwMO/Devices/d1/Light/On');
    expect(l.find((e) => e.uri === './GwMO/Devices/d1/DevInfo/Mod')?.data).toBe('Lamp 1');
  });

  it('makes commands a plugin lacks 405', async () => {
    const ro: TreePlugin = { get: (p) => (p === '' ? { format: 'node' } : p === 'x' ? { format: 'chr', data: '1' } : undefined), children: (p) => (p === '' ? ['x'] : []) };
    await tree.mount('./RO', ro, { acl: 'Get=*&Replace=*&Add=*&Delete=*' });
    expect((await tree.get('./RO/x', B)).data).toBe('1');
    expect(await statusOfCall(tree.replace('./RO/x', { data: '2' }, B))).toBe(405);
    expect(await statusOfCall(tree.add('./RO/y', { data: '2' }, B))).toBe(405);
    expect(await statusOfCall(tree.delete('./RO/x', B))).toBe(405);
    expect(await statusOfCall(tree.replaceProperty('./RO/x', 'Title', 't', B))).toBe(405);
  });

  it('refuses overlapping mounts and local nodes below a mount point', async () => {
    await expect(tree.mount('./GwMO/Devices/d1/sub', dev)).rejects.toMatchObject({ code: 'TREE_MOUNT_CONFLICT' });
    await expect(tree.mount('./GwMO/Devices', dev)).rejects.toMatchObject({ code: 'TREE_MOUNT_CONFLICT' });
    await tree.add('./L/x', { data: '1' }, LOCAL);
    await expect(tree.mount('./L', dev)).rejects.toMatchObject({ code: 'TREE_MOUNT_CONFLICT' });
    expect(await statusOfCall(tree.delete('./GwMO/Devices', LOCAL))).toBe(405);
    expect(await statusOfCall(tree.replaceProperty('./GwMO', 'Name', 'X', LOCAL))).toBe(405);
  });

  it('deleting the mount point removes the device and the mount', async () => {
    await tree.delete('./GwMO/Devices/d1', A);
    expect(dev.calls).toEqual(['delete ']);
    expect(tree.hasLocal('./GwMO/Devices/d1')).toBe(false);
    expect((await tree.get('./GwMO/Devices', A)).data).toBe('');
  });

  it('reports 516 when an Atomic changed a mounted subtree and is rolled back', async () => {
    const r = await executeCommands(
      tree,
      [
        {
          kind: 'Atomic',
          cmdID: '1',
          commands: [
            { kind: 'Replace', cmdID: '2', items: [{ target: { locURI: './GwMO/Devices/d1/Light/On' }, data: 'true' }] },
            { kind: 'Delete', cmdID: '3', items: [{ target: { locURI: './GwMO/Devices/d1/None' } }] },
          ],
        },
      ],
      '1',
      A,
    );
    expect(r.map((x) => [x.cmdRef, x.kind === 'Status' ? x.data : ''])).toEqual([
      ['1', '507'],
      ['2', '516'],
      ['3', '404'],
    ]);
  });

  it('keeps an unmounted mount point as an empty node after a reopen', async () => {
    const store = memoryStore();
    const t1 = await DmTree.open(store.section<NodeRecord>('tree'));
    await t1.mount('./Dev/x', dev, { acl: 'Get=srvA' });
    const t2 = await DmTree.open(store.section<NodeRecord>('tree'));
    expect(await t2.get('./Dev/x', A)).toMatchObject({ format: 'node', data: '' });
    expect(await t2.getProperty('./Dev/x', 'ACL', A)).toBe('Get=srvA');
    await t2.mount('./Dev/x', dev);
    expect((await t2.get('./Dev/x/Light/On', A)).data).toBe('false');
  });
});

describe('plugin reads: a write is not preceded by native reads', () => {
  /** A plugin whose every `get` of a leaf stands for a native read (a KNX GroupValue_Read). */
  function countingPlugin(withDescribe: boolean): TreePlugin & { reads: number; writes: number } {
    const p = {
      reads: 0,
      writes: 0,
      get(path: string): PluginNodeView | undefined {
        if (path === '') return { format: 'node' };
        if (path !== 'Value') return undefined;
        p.reads++;
        return { format: 'int', data: '7', access: ['Get', 'Replace'] };
      },
      children: (path: string) => (path === '' ? ['Value'] : []),
      replace(): void {
        p.writes++;
      },
      ...(withDescribe ? { describe: (path: string): PluginNodeView | undefined => (path === '' ? { format: 'node' } : path === 'Value' ? { format: 'int', access: ['Get', 'Replace'] } : undefined) } : {}),
    };
    return p;
  }
  const ctx: TreeContext = { serverId: 'srv' };

  it('with describe: Replace reads nothing; Get reads once', async () => {
    const { tree } = await memoryTree();
    await tree.add('./Dev', { format: 'node', acl: 'Get=srv&Replace=srv' }, LOCAL);
    const p = countingPlugin(true);
    await tree.mount('./Dev', p);
    expect((await tree.replace('./Dev/Value', { format: 'int', data: '8' }, ctx)).status).toBe(200);
    expect([p.reads, p.writes]).toEqual([0, 1]);
    expect((await tree.get('./Dev/Value', ctx)).data).toBe('7');
    expect(p.reads).toBe(1);
    // The checks still hold on metadata: a server without the Replace right is refused, no write.
    await expect(tree.replace('./Dev/Value', { format: 'int', data: '9' }, { serverId: 'other' })).rejects.toMatchObject({ status: 425 });
    expect(p.writes).toBe(1);
  });

  it('without describe: Replace reads once (the existence check), never twice', async () => {
    const { tree } = await memoryTree();
    await tree.add('./Dev', { format: 'node', acl: 'Get=srv&Replace=srv' }, LOCAL);
    const p = countingPlugin(false);
    await tree.mount('./Dev', p);
    await tree.replace('./Dev/Value', { format: 'int', data: '8' }, ctx);
    expect([p.reads, p.writes]).toEqual([1, 1]);
  });
});
