import { beforeEach, describe, expect, it } from 'vitest';
import { DmStatusError } from '../../src/errors.ts';
import { DmTree, LOCAL, formatTStamp, parseTargetUri } from '../../src/tree/tree.ts';
import { memoryTree, statusOfCall, steppingClock } from './helpers.ts';

const A = { serverId: 'srvA' };
const B = { serverId: 'srvB' };
const C = { serverId: 'srvC' };

describe('TV-12 ACL decisions', () => {
  let tree: DmTree;
  beforeEach(async () => {
    ({ tree } = await memoryTree());
    await tree.add('./A', { format: 'node', acl: 'Add=srvA&Get=*&Replace=srvA+srvB' }, LOCAL);
    await tree.add('./A/b', { data: 'v' }, LOCAL);
  });

  it('srvB Replace ./A/b is allowed (inherits A)', async () => {
    expect(await tree.replace('./A/b', { data: 'w' }, B)).toEqual({ status: 200 });
    expect((await tree.get('./A/b', LOCAL)).data).toBe('w');
  });
  it('srvB Add under ./A is 425', async () => {
    expect(await statusOfCall(tree.add('./A/c', { data: 'x' }, B))).toBe(425);
  });
  it('srvC Get ./A/b is allowed by "*"', async () => {
    expect((await tree.get('./A/b', C)).data).toBe('v');
  });
  it('srvA Delete ./A/b is 425: no Delete entry, and no per-command inheritance from the root', async () => {
    await tree.replaceProperty('.', 'ACL', 'Add=*&Get=*&Delete=*', LOCAL);
    expect(await statusOfCall(tree.delete('./A/b', A))).toBe(425);
  });
  it('Get ./A/b?prop=ACL is empty', async () => {
    expect(await tree.getProperty('./A/b', 'ACL', C)).toBe('');
    expect(await tree.effectiveAcl('./A/b')).toBe('Add=srvA&Get=*&Replace=srvA+srvB');
  });
  it('srvB Add of an interior ./A/n is 425', async () => {
    expect(await statusOfCall(tree.add('./A/n', { format: 'node' }, B))).toBe(425);
    expect(tree.hasLocal('./A/n')).toBe(false);
  });
  it('an Add granted without Replace on the parent gives the new interior node Add/Delete/Replace for its creator', async () => {
    await tree.add('./P', { format: 'node', acl: 'Add=srvB&Get=*' }, LOCAL);
    await tree.add('./P/n', { format: 'node' }, B);
    expect(await tree.getProperty('./P/n', 'ACL', B)).toBe('Get=*&Add=srvB&Delete=srvB&Replace=srvB');
    // and the creator can now work inside it and remove it
    await tree.add('./P/n/x', { data: '1' }, B);
    expect(await tree.delete('./P/n', B)).toEqual({ status: 200 });
  });
  it('an Add by a server with Replace on the parent leaves the new node inheriting', async () => {
    await tree.add('./Q', { format: 'node', acl: 'Add=srvB&Replace=srvB&Get=*' }, LOCAL);
    await tree.add('./Q/n', { format: 'node' }, B);
    expect(await tree.getProperty('./Q/n', 'ACL', B)).toBe('');
  });
  it('new leaves never get the creator ACL', async () => {
    await tree.add('./P', { format: 'node', acl: 'Add=srvB&Get=*' }, LOCAL);
    await tree.add('./P/leaf', { data: '1' }, B);
    expect(await tree.getProperty('./P/leaf', 'ACL', B)).toBe('');
  });
  it('implicitly created ancestors: the topmost gets the creator ACL, the rest inherit', async () => {
    await tree.add('./P', { format: 'node', acl: 'Add=srvB&Get=*' }, LOCAL);
    await tree.add('./P/x/y/z', { data: '1' }, B);
    expect(await tree.getProperty('./P/x', 'ACL', B)).toBe('Get=*&Add=srvB&Delete=srvB&Replace=srvB');
    expect(await tree.getProperty('./P/x/y', 'ACL', B)).toBe('');
    expect((await tree.get('./P/x/y', B)).format).toBe('node');
  });
});

describe('ACL inheritance', () => {
  it('uses the nearest non-empty ancestor ACL as a whole', async () => {
    const { tree } = await memoryTree();
    await tree.add('./X', { format: 'node', acl: 'Get=srvA&Replace=srvA' }, LOCAL);
    await tree.add('./X/Y', { format: 'node', acl: 'Get=srvB' }, LOCAL);
    await tree.add('./X/Y/Z/leaf', { data: 'd' }, LOCAL);
    // Y's ACL counts alone: srvA has Replace on X but nothing on Y's subtree.
    expect(await statusOfCall(tree.get('./X/Y/Z/leaf', A))).toBe(425);
    expect(await statusOfCall(tree.replace('./X/Y/Z/leaf', { data: 'e' }, A))).toBe(425);
    expect((await tree.get('./X/Y/Z/leaf', B)).data).toBe('d');
  });
  it('falls back to the root default Add=*&Get=*', async () => {
    const { tree } = await memoryTree();
    expect(await tree.getProperty('.', 'ACL', LOCAL)).toBe('Add=*&Get=*');
    await tree.add('./free', { data: '1' }, C);
    expect((await tree.get('./free', C)).data).toBe('1');
    expect(await statusOfCall(tree.replace('./free', { data: '2' }, C))).toBe(425);
  });
  it('local operations ignore ACLs and AccessTypes', async () => {
    const { tree } = await memoryTree();
    await tree.add('./S', { format: 'node', acl: 'Get=nobody', access: ['Get'] }, LOCAL);
    await tree.add('./S/secret', { data: 's', access: ['Replace'] }, LOCAL);
    expect((await tree.get('./S/secret', LOCAL)).data).toBe('s');
    await tree.replace('./S/secret', { data: 't' }, LOCAL);
    expect((await tree.get('./S/secret', LOCAL)).data).toBe('t');
  });
});

describe('405 (what the node supports) versus 425 (who asks), §3.4', () => {
  let tree: DmTree;
  beforeEach(async () => {
    ({ tree } = await memoryTree());
    await tree.add('./M', { format: 'node', acl: 'Get=srvA&Replace=srvA&Exec=srvA&Add=srvA&Delete=srvA' }, LOCAL);
    await tree.add('./M/ro', { data: 'r', access: ['Get'] }, LOCAL);
    await tree.add('./M/wo', { data: 'w', access: ['Replace'] }, LOCAL);
    await tree.add('./M/op', { access: ['Exec', 'Get'] }, LOCAL);
  });
  it('a missing AccessType is 405 even for an authorised server', async () => {
    expect(await statusOfCall(tree.replace('./M/ro', { data: 'x' }, A))).toBe(405);
    expect(await statusOfCall(tree.get('./M/wo', A))).toBe(405);
    expect(await statusOfCall(tree.delete('./M/ro', A))).toBe(405);
    expect(await statusOfCall(tree.exec('./M/ro', {}, A))).toBe(405);
  });
  it('a missing AccessType is 405 also for an unauthorised server (support before rights)', async () => {
    expect(await statusOfCall(tree.replace('./M/ro', { data: 'x' }, B))).toBe(405);
  });
  it('a supported command without the ACL right is 425', async () => {
    expect(await statusOfCall(tree.get('./M/ro', B))).toBe(425);
    expect(await statusOfCall(tree.replace('./M/wo', { data: 'x' }, B))).toBe(425);
  });
  it('Add below a node without Add AccessType is 405', async () => {
    await tree.add('./M/fixed', { format: 'node', access: ['Get'] }, LOCAL);
    expect(await statusOfCall(tree.add('./M/fixed/new', { data: '1' }, A))).toBe(405);
  });
});

describe('Add', () => {
  it('creates leaves with default Format chr and Type text/plain', async () => {
    const { tree } = await memoryTree();
    await tree.add('./a', { data: 'hello' }, A);
    expect(await tree.get('./a', A)).toEqual({ uri: './a', format: 'chr', type: 'text/plain', data: 'hello' });
  });
  it('418 when the node exists', async () => {
    const { tree } = await memoryTree();
    await tree.add('./a', { data: '1' }, A);
    expect(await statusOfCall(tree.add('a', { data: '2' }, A))).toBe(418);
    expect(await statusOfCall(tree.add('.', { format: 'node' }, A))).toBe(418);
  });
  it('405 under a leaf, also through implicit creation', async () => {
    const { tree } = await memoryTree();
    await tree.add('./leaf', { data: '1' }, A);
    expect(await statusOfCall(tree.add('./leaf/x', { data: '2' }, A))).toBe(405);
    expect(await statusOfCall(tree.add('./leaf/x/y', { data: '2' }, A))).toBe(405);
  });
  it('creates missing interior ancestors with empty ACLs', async () => {
    const { tree } = await memoryTree();
    await tree.add('./p/q/r', { data: 'deep' }, LOCAL);
    expect((await tree.get('./p', LOCAL)).format).toBe('node');
    expect(await tree.getProperty('./p/q', 'ACL', LOCAL)).toBe('');
    expect((await tree.get('./p/q', LOCAL)).data).toBe('r');
  });
  it('Format node creates an interior node with its MOID as Type', async () => {
    const { tree } = await memoryTree();
    await tree.add('./mo', { format: 'node', type: 'urn:example:mo:1.0' }, LOCAL);
    expect(await tree.get('./mo', LOCAL)).toEqual({ uri: './mo', format: 'node', type: 'urn:example:mo:1.0', data: '' });
  });
  it('415 for an unknown Format and 400 for a value that does not fit its Format', async () => {
    const { tree } = await memoryTree();
    expect(await statusOfCall(tree.add('./x', { format: 'blob', data: '1' }, A))).toBe(415);
    expect(await statusOfCall(tree.add('./i', { format: 'int', data: '12x' }, A))).toBe(400);
    expect(await statusOfCall(tree.add('./i', { format: 'int', data: '2147483648' }, A))).toBe(400);
    expect(await statusOfCall(tree.add('./b', { format: 'bool', data: 'yes' }, A))).toBe(400);
    await tree.add('./i', { format: 'int', data: '-2147483648' }, A);
    await tree.add('./b', { format: 'bool', data: 'true' }, A);
    await tree.add('./f', { format: 'float', data: '1.5e3' }, A);
  });
  it('400 for malformed URIs', async () => {
    const { tree } = await memoryTree();
    for (const u of ['', '/abs', './a//b', './a/../b', 'a/./b']) expect(await statusOfCall(tree.add(u, { data: '1' }, LOCAL))).toBe(400);
  });
});

describe('Get, properties and listings', () => {
  let tree: DmTree;
  beforeEach(async () => {
    ({ tree } = await memoryTree({ now: steppingClock() }));
    await tree.add('./R', { format: 'node', type: 'urn:r:1.0' }, LOCAL);
    await tree.add('./R/one', { data: '1', format: 'int' }, LOCAL);
    await tree.add('./R/two', { format: 'node' }, LOCAL);
    await tree.add('./R/two/deep', { data: 'ü', type: 'text/x-test' }, LOCAL);
    await tree.add('./R/hidden', { data: 'pw', access: ['Replace'] }, LOCAL);
  });

  it('A/B and ./A/B are the same node', async () => {
    expect(await tree.get('R/one', A)).toEqual(await tree.get('./R/one', A));
  });
  it('an interior node returns Format node and child names joined with "/" in creation order', async () => {
    expect(await tree.get('./R', A)).toEqual({ uri: './R', format: 'node', type: 'urn:r:1.0', data: 'one/two/hidden' });
  });
  it('404 for a missing node', async () => {
    expect(await statusOfCall(tree.get('./R/none', A))).toBe(404);
    expect(await statusOfCall(tree.get('./R/one/below', A))).toBe(404);
  });
  it('reads every property of §3.8', async () => {
    expect(await tree.getProperty('./R/two/deep', 'Format', A)).toBe('chr');
    expect(await tree.getProperty('./R/two', 'Format', A)).toBe('node');
    expect(await tree.getProperty('./R/two/deep', 'Type', A)).toBe('text/x-test');
    expect(await tree.getProperty('./R/two/deep', 'Name', A)).toBe('deep');
    expect(await tree.getProperty('./R/two/deep', 'Size', A)).toBe('2'); // UTF-8 bytes
    expect(await tree.getProperty('./R/two/deep', 'Title', A)).toBe('');
    expect(await tree.getProperty('./R/two/deep', 'TStamp', A)).toMatch(/^\d{8}T\d{6}Z$/);
    expect(await tree.getProperty('./R/two/deep', 'VerNo', A)).toBe('0');
    expect(await tree.getProperty('./R', 'ACL', A)).toBe('');
  });
  it('Size of an interior node is 405 and unknown properties 406', async () => {
    expect(await statusOfCall(tree.getProperty('./R', 'Size', A))).toBe(405);
    expect(await statusOfCall(tree.getProperty('./R', 'Colour', A))).toBe(406);
  });
  it('properties of a No-Get node are not readable by servers', async () => {
    expect(await statusOfCall(tree.getProperty('./R/hidden', 'Size', A))).toBe(405);
    expect(await statusOfCall(tree.get('./R/hidden', A))).toBe(405);
  });
  it('?list=Struct returns the subtree in pre-order without data', async () => {
    expect(await tree.list('./R', 'Struct', A)).toEqual([
      { uri: './R', format: 'node', type: 'urn:r:1.0' },
      { uri: './R/one', format: 'int', type: 'text/plain' },
      { uri: './R/two', format: 'node', type: '' },
      { uri: './R/two/deep', format: 'chr', type: 'text/x-test' },
      { uri: './R/hidden', format: 'chr', type: 'text/plain' },
    ]);
  });
  it('?list=StructData adds leaf data except for leaves without Get', async () => {
    const l = await tree.list('R', 'StructData', A);
    expect(l.map((e) => [e.uri, e.data])).toEqual([
      ['./R', undefined],
      ['./R/one', '1'],
      ['./R/two', undefined],
      ['./R/two/deep', 'ü'],
      ['./R/hidden', undefined],
    ]);
  });
  it('listings do not descend into interior nodes without Get support', async () => {
    await tree.add('./R/Inbox', { format: 'node', access: ['Add'] }, LOCAL);
    await tree.add('./R/Inbox/dropped', { data: 'x' }, LOCAL);
    const uris = (await tree.list('./R', 'Struct', A)).map((e) => e.uri);
    expect(uris).toContain('./R/Inbox');
    expect(uris).not.toContain('./R/Inbox/dropped');
    expect(await statusOfCall(tree.get('./R/Inbox', A))).toBe(405);
  });
  it('listings leave out subtrees the server may not Get', async () => {
    await tree.replaceProperty('./R/two', 'ACL', 'Get=srvB', LOCAL);
    expect((await tree.list('./R', 'Struct', A)).map((e) => e.uri)).toEqual(['./R', './R/one', './R/hidden']);
  });
  it('unknown list kinds and TNDS are 406', async () => {
    expect(await statusOfCall(tree.list('./R', 'TNDS+ACL', A))).toBe(406);
    expect(await statusOfCall(tree.list('./R', 'Tree', A))).toBe(406);
  });
  it('parseTargetUri splits ?list= and ?prop= and rejects other queries', () => {
    expect(parseTargetUri('./R?list=TNDS+Value')).toEqual({ uri: './R', list: 'TNDS+Value' });
    expect(parseTargetUri('R/one?prop=ACL')).toEqual({ uri: 'R/one', prop: 'ACL' });
    expect(parseTargetUri('./R')).toEqual({ uri: './R' });
    expect(() => parseTargetUri('./R?x=1')).toThrow(DmStatusError);
  });
});

describe('Replace and properties', () => {
  it('404 for a missing node, never creating it', async () => {
    const { tree } = await memoryTree();
    expect(await statusOfCall(tree.replace('./none', { data: '1' }, A))).toBe(404);
    expect(tree.hasLocal('./none')).toBe(false);
  });
  it('405 for the value of an interior node', async () => {
    const { tree } = await memoryTree();
    await tree.add('./i', { format: 'node' }, LOCAL);
    expect(await statusOfCall(tree.replace('./i', { data: 'x' }, LOCAL))).toBe(405);
  });
  it('keeps the node Format when Replace carries none, and takes a new one when given', async () => {
    const { tree } = await memoryTree();
    await tree.add('./n', { format: 'int', data: '1' }, LOCAL);
    await tree.replace('./n', { data: '2' }, LOCAL);
    expect(await tree.get('./n', LOCAL)).toMatchObject({ format: 'int', data: '2' });
    expect(await statusOfCall(tree.replace('./n', { data: 'abc' }, LOCAL))).toBe(400);
    await tree.replace('./n', { format: 'chr', data: 'abc', type: 'text/x' }, LOCAL);
    expect(await tree.get('./n', LOCAL)).toMatchObject({ format: 'chr', type: 'text/x', data: 'abc' });
  });
  it('updates TStamp and VerNo on change, VerNo wrapping at 16 bits', async () => {
    const { tree, store } = await memoryTree({ now: steppingClock() });
    await tree.add('./v', { data: '0' }, LOCAL);
    const t0 = await tree.getProperty('./v', 'TStamp', LOCAL);
    await tree.replace('./v', { data: '1' }, LOCAL);
    expect(await tree.getProperty('./v', 'VerNo', LOCAL)).toBe('1');
    expect(await tree.getProperty('./v', 'TStamp', LOCAL)).not.toBe(t0);
    const sec = store.section<import('../../src/tree/tree.ts').NodeRecord>('tree');
    const rec = (await sec.get('./v'))!;
    await sec.put('./v', { ...rec, verNo: 0xffff });
    const reopened = await DmTree.open(sec);
    await reopened.replace('./v', { data: '2' }, LOCAL);
    expect(await reopened.getProperty('./v', 'VerNo', LOCAL)).toBe('0');
  });
  it('formats TStamp as ISO 8601 basic UTC', () => {
    expect(formatTStamp(new Date(Date.UTC(2026, 10, 22, 10, 15, 0)))).toBe('20261122T101500Z');
  });
  it('changes an interior ACL with Replace on the node or on its parent', async () => {
    const { tree } = await memoryTree();
    await tree.add('./p', { format: 'node', acl: 'Replace=srvA&Get=*' }, LOCAL);
    await tree.add('./p/c', { format: 'node', acl: 'Replace=srvB' }, LOCAL);
    await tree.replaceProperty('./p/c', 'ACL', 'Replace=srvB&Get=*', A); // via the parent
    await tree.replaceProperty('./p/c', 'ACL', 'Replace=srvB+srvC', B); // via the node itself
    expect(await tree.getProperty('./p/c', 'ACL', LOCAL)).toBe('Replace=srvB+srvC');
    expect(await statusOfCall(tree.replaceProperty('./p/c', 'ACL', 'Get=*', { serverId: 'srvD' }))).toBe(425);
  });
  it("changes a leaf's ACL only through the parent's Replace", async () => {
    const { tree } = await memoryTree();
    await tree.add('./p', { format: 'node', acl: 'Replace=srvA&Get=*' }, LOCAL);
    await tree.add('./p/leaf', { data: '1', acl: 'Replace=srvB&Get=*' }, LOCAL);
    expect(await statusOfCall(tree.replaceProperty('./p/leaf', 'ACL', 'Get=*', B))).toBe(425);
    expect(await tree.replaceProperty('./p/leaf', 'ACL', 'Get=*&Replace=srvA', A)).toEqual({ status: 200 });
    // srvB's own Replace still covers the value
    await tree.replaceProperty('./p/leaf', 'ACL', 'Get=*&Replace=srvB', A);
    await tree.replace('./p/leaf', { data: '2' }, B);
  });
  it('rejects malformed ACLs with 400 and an empty root ACL with 403', async () => {
    const { tree } = await memoryTree();
    expect(await statusOfCall(tree.replaceProperty('.', 'ACL', 'Get=', LOCAL))).toBe(400);
    expect(await statusOfCall(tree.replaceProperty('.', 'ACL', '', LOCAL))).toBe(403);
  });
  it('renames with ?prop=Name, moving the subtree, 418 on a sibling clash', async () => {
    const { tree } = await memoryTree();
    await tree.add('./p', { format: 'node', acl: 'Replace=srvA&Get=*' }, LOCAL);
    await tree.add('./p/old/x', { data: 'x' }, LOCAL);
    await tree.add('./p/other', { data: 'o' }, LOCAL);
    expect(await statusOfCall(tree.replaceProperty('./p/old', 'Name', 'other', A))).toBe(418);
    await tree.replaceProperty('./p/old', 'Name', 'new', LOCAL);
    expect(tree.hasLocal('./p/old')).toBe(false);
    expect((await tree.get('./p/new/x', LOCAL)).data).toBe('x');
    expect((await tree.get('./p', LOCAL)).data).toBe('new/other'); // keeps its place among siblings
    expect(await statusOfCall(tree.replaceProperty('./p/new', 'Name', 'a/b', LOCAL))).toBe(400);
    expect(await statusOfCall(tree.replaceProperty('.', 'Name', 'x', LOCAL))).toBe(405);
  });
  it('replaces Title (at most 255 bytes) and refuses read-only properties with 405', async () => {
    const { tree } = await memoryTree();
    await tree.add('./t', { data: '1', acl: 'Replace=srvA&Get=srvA' }, LOCAL);
    expect(await statusOfCall(tree.replaceProperty('./t', 'Title', 'mine', B))).toBe(425);
    await tree.replaceProperty('./t', 'Title', 'A title', A);
    expect(await tree.getProperty('./t', 'Title', A)).toBe('A title');
    expect(await statusOfCall(tree.replaceProperty('./t', 'Title', 'x'.repeat(256), A))).toBe(413);
    for (const p of ['Format', 'Type', 'Size', 'TStamp', 'VerNo']) expect(await statusOfCall(tree.replaceProperty('./t', p, 'x', A))).toBe(405);
  });
});

describe('Delete', () => {
  it('removes the whole subtree', async () => {
    const { tree } = await memoryTree();
    await tree.add('./d', { format: 'node', acl: 'Delete=srvA' }, LOCAL);
    await tree.add('./d/a/b', { data: '1' }, LOCAL);
    await tree.add('./d/c', { data: '2' }, LOCAL);
    await tree.delete('./d', A);
    for (const u of ['./d', './d/a', './d/a/b', './d/c']) expect(tree.hasLocal(u)).toBe(false);
    expect((await tree.get('.', A)).data).toBe('');
  });
  it('405 for the root and for permanent nodes (also inside the subtree)', async () => {
    const { tree } = await memoryTree();
    await tree.add('./keep', { data: '1', scope: 'permanent' }, LOCAL);
    await tree.add('./box/keep', { data: '1', scope: 'permanent' }, LOCAL);
    expect(await statusOfCall(tree.delete('.', LOCAL))).toBe(405);
    expect(await statusOfCall(tree.delete('./keep', LOCAL))).toBe(405);
    expect(await statusOfCall(tree.delete('./box', LOCAL))).toBe(405);
    expect(tree.hasLocal('./box/keep')).toBe(true);
  });
  it('404 for a missing node and 425 without the Delete right', async () => {
    const { tree } = await memoryTree();
    await tree.add('./x', { data: '1' }, LOCAL);
    expect(await statusOfCall(tree.delete('./y', A))).toBe(404);
    expect(await statusOfCall(tree.delete('./x', A))).toBe(425); // root default has no Delete
  });
  it('removeServer strips a server id from every ACL', async () => {
    const { tree } = await memoryTree();
    await tree.replaceProperty('.', 'ACL', 'Add=srvA&Get=*', LOCAL);
    await tree.add('./x', { format: 'node', acl: 'Get=srvA&Replace=srvA+srvB' }, LOCAL);
    await tree.removeServer('srvA');
    expect(await tree.getProperty('.', 'ACL', LOCAL)).toBe('Add=*&Get=*');
    expect(await tree.getProperty('./x', 'ACL', LOCAL)).toBe('Replace=srvB');
  });
});

describe('Copy', () => {
  let tree: DmTree;
  beforeEach(async () => {
    ({ tree } = await memoryTree());
    await tree.add('./c', { format: 'node', acl: 'Get=*&Replace=srvA&Add=srvA' }, LOCAL);
    await tree.add('./c/src', { format: 'int', data: '42', type: 'text/x-n' }, LOCAL);
    await tree.add('./c/dst', { data: 'old' }, LOCAL);
  });
  it('overwrites an existing leaf with the source value, Format and Type', async () => {
    await tree.copy('./c/dst', './c/src', A);
    expect(await tree.get('./c/dst', A)).toEqual({ uri: './c/dst', format: 'int', type: 'text/x-n', data: '42' });
  });
  it('creates a missing target when the server may Add', async () => {
    await tree.copy('./c/new', './c/src', A);
    expect((await tree.get('./c/new', A)).data).toBe('42');
  });
  it('425 without Replace on the target or Add for a new one', async () => {
    expect(await statusOfCall(tree.copy('./c/dst', './c/src', B))).toBe(425);
    expect(await statusOfCall(tree.copy('./c/new', './c/src', B))).toBe(425);
  });
  it('404 for a missing source, 405 for interior nodes or a source without Get', async () => {
    await tree.add('./c/secret', { data: 's', access: ['Replace'] }, LOCAL);
    expect(await statusOfCall(tree.copy('./c/dst', './c/none', A))).toBe(404);
    expect(await statusOfCall(tree.copy('./c/dst', './c', A))).toBe(405);
    expect(await statusOfCall(tree.copy('./c', './c/src', A))).toBe(405);
    expect(await statusOfCall(tree.copy('./c/dst', './c/secret', A))).toBe(405);
  });
  it('403 when the target cannot be overwritten for a non-ACL reason', async () => {
    await tree.add('./c/ro', { data: 'r', access: ['Get'] }, LOCAL);
    expect(await statusOfCall(tree.copy('./c/ro', './c/src', A))).toBe(403);
  });
});

describe('Exec', () => {
  it('calls the registered handler with data, correlator and server', async () => {
    const { tree } = await memoryTree();
    await tree.add('./op', { access: ['Exec'], acl: 'Exec=srvA' }, LOCAL);
    const seen: unknown[] = [];
    tree.onExec('op', (req) => {
      seen.push(req);
      return { status: 202 };
    });
    expect(await tree.exec('./op', { data: 'arg', correlator: 'c1' }, A)).toEqual({ status: 202 });
    expect(seen).toEqual([{ uri: './op', data: 'arg', correlator: 'c1', serverId: 'srvA' }]);
  });
  it('404 missing, 405 without Exec AccessType, 425 without the right, 501 without a handler', async () => {
    const { tree } = await memoryTree();
    await tree.add('./op', { access: ['Exec'], acl: 'Exec=srvA' }, LOCAL);
    await tree.add('./plain', { data: '1', acl: 'Exec=srvA' }, LOCAL);
    expect(await statusOfCall(tree.exec('./none', {}, A))).toBe(404);
    expect(await statusOfCall(tree.exec('./plain', {}, A))).toBe(405);
    expect(await statusOfCall(tree.exec('./op', {}, B))).toBe(425);
    expect(await statusOfCall(tree.exec('./op', {}, A))).toBe(501);
    const off = tree.onExec('./op', () => ({ status: 200, data: 'done' }));
    expect(await tree.exec('./op', {}, A)).toEqual({ status: 200, data: 'done' });
    off();
    expect(await statusOfCall(tree.exec('./op', {}, A))).toBe(501);
  });
});

describe('binary data', () => {
  it('stores bytes as base64 with Format bin and returns Format b64', async () => {
    const { tree, store } = await memoryTree();
    await tree.add('./bin', { data: new Uint8Array([0, 1, 2, 255]) }, LOCAL);
    expect(await tree.get('./bin', LOCAL)).toEqual({ uri: './bin', format: 'b64', type: 'text/plain', data: 'AAEC/w==' });
    expect(await tree.getProperty('./bin', 'Format', LOCAL)).toBe('bin');
    expect(await tree.getProperty('./bin', 'Size', LOCAL)).toBe('4');
    expect((await store.section<{ data?: string }>('tree').get('./bin'))?.data).toBe('AAEC/w==');
  });
  it('stores Format b64 text (as XML carries it) as bin', async () => {
    const { tree } = await memoryTree();
    await tree.add('./b', { format: 'b64', data: 'AAEC\n/w==' }, LOCAL);
    expect(await tree.getProperty('./b', 'Format', LOCAL)).toBe('bin');
    expect((await tree.get('./b', LOCAL)).data).toBe('AAEC/w==');
    expect(await statusOfCall(tree.add('./c', { format: 'b64', data: 'not base64!' }, LOCAL))).toBe(400);
  });
});

describe('URI limits (§3.8)', () => {
  it('gives 414 beyond MaxDepth, MaxTotLen and MaxSegLen', async () => {
    const { tree } = await memoryTree({ maxDepth: 3, maxTotLen: 15, maxSegLen: 5 });
    await tree.add('./a/b/c', { data: '1' }, LOCAL);
    expect(await statusOfCall(tree.add('./a/b/c2/d', { data: '1' }, LOCAL))).toBe(414);
    expect(await statusOfCall(tree.add('./abcdef', { data: '1' }, LOCAL))).toBe(414);
    expect(await statusOfCall(tree.add('./abcde/abcde/ab', { data: '1' }, LOCAL))).toBe(414);
    expect(await statusOfCall(tree.get('./abcdef', A))).toBe(414);
    expect(await statusOfCall(tree.replaceProperty('./a', 'Name', 'abcdef', LOCAL))).toBe(414);
  });
  it('0 means unlimited', async () => {
    const { tree } = await memoryTree({ maxDepth: 0, maxTotLen: 0, maxSegLen: 0 });
    await tree.add(`./${'x'.repeat(300)}/${Array.from({ length: 40 }, (_, i) => `s${i}`).join('/')}`, { data: '1' }, LOCAL);
  });
});

describe('concurrency', () => {
  it('serialises concurrent Adds of the same node: exactly one wins', async () => {
    const { tree } = await memoryTree();
    const results = await Promise.all(Array.from({ length: 5 }, (_, i) => statusOfCall(tree.add('./race', { data: String(i) }, LOCAL))));
    expect(results.filter((s) => s === 200)).toHaveLength(1);
    expect(results.filter((s) => s === 418)).toHaveLength(4);
  });
});
