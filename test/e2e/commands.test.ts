/**
 * Acceptance: every DM command the REST API offers, end to end over real HTTP (Package 0 wakes the
 * device, a server-initiated session delivers the command, the result is recorded), in XML and
 * WBXML, with Basic, MD5 and HMAC authentication. Each test gets its own server (LevelDB in a temp dir) and device.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LOCAL } from '../../src/tree/tree.ts';
import { startBed, type TestBed } from '../support/fixtures.ts';
import { ENCODINGS, resultsByUri, run } from './helpers.ts';

const DEV = 'IMEI:100000000000001';
const SERVER_ID = 'gwmo-test-dms';

/** Every command runs in each encoding with each auth scheme (used both ways). */
const CASES = ENCODINGS.flatMap((encoding) => (['basic', 'md5', 'hmac'] as const).map((auth) => ({ encoding, auth })));

describe.each(CASES)('commands over $encoding with $auth authentication', ({ encoding, auth }) => {
  let bed: TestBed;
  beforeEach(async () => {
    bed = await startBed([{ deviceId: DEV, encoding, authType: auth, serverAuthType: auth }]);
    // A first client-initiated session tells the server where to send Package 0.
    const first = await bed.devices[0]!.connect();
    expect(first.ok, first.reason).toBe(true);
  });
  afterEach(async () => {
    await bed.close();
  });
  const dev = () => bed.devices[0]!;
  /** The device's nodes outside ./DMAcc (where every session rotates the nonces). */
  const managed = () => new Map([...dev().tree.snapshot()].filter(([uri]) => !uri.startsWith('./DMAcc')));
  const local = async (uri: string) => (dev().tree.hasLocal(uri) ? (await dev().tree.get(uri, LOCAL)).data : undefined);

  it('Get of a leaf returns its value and format', async () => {
    const session = dev().nextSession();
    const r = await run(bed, DEV, { cmd: 'Get', uri: './Vendor/Temp' });
    expect(r.status).toBe(200);
    expect(r.results).toEqual([{ uri: './Vendor/Temp', format: 'float', data: '21.5' }]);
    // The device really ran it, in a server-initiated session that completed.
    const last = await session;
    expect(last.ok, last.reason).toBe(true);
    expect(last.initiator).toBe('server');
    expect(last.executed).toEqual([{ cmd: 'Get', target: './Vendor/Temp', status: '200' }]);
  });

  it('Get ?list=Struct of an interior node lists the subtree the server may read', async () => {
    const r = await run(bed, DEV, { cmd: 'Get', uri: './Vendor?list=Struct' });
    expect(r.status).toBe(200);
    // ./Vendor/Locked has ACL Get=other-server: it and its subtree are left out.
    expect(r.results.map((x: any) => x.uri)).toEqual(['./Vendor', './Vendor/Temp', './Vendor/Name', './Vendor/Counter']);
    expect(r.results.map((x: any) => x.format)).toEqual(['node', 'float', 'chr', 'int']);
    // Struct carries no values.
    expect(r.results.every((x: any) => x.data === undefined || x.data === '')).toBe(true);
  });

  it('Get ?prop=ACL and ?prop=Format read node properties', async () => {
    const acl = await run(bed, DEV, { cmd: 'Get', uri: './Vendor?prop=ACL' });
    expect(acl.status).toBe(200);
    expect(acl.results).toHaveLength(1);
    expect(acl.results[0].uri).toBe('./Vendor?prop=ACL');
    expect(acl.results[0].data).toBe(await dev().tree.getProperty('./Vendor', 'ACL', LOCAL));
    expect(acl.results[0].data.split('&').sort()).toEqual(
      [`Add=${SERVER_ID}`, `Delete=${SERVER_ID}`, 'Get=*', `Replace=${SERVER_ID}`, `Exec=${SERVER_ID}`].sort(),
    );
    // An empty ACL reads as empty, not as the inherited value (§5.4).
    const leafAcl = await run(bed, DEV, { cmd: 'Get', uri: './Vendor/Temp?prop=ACL' });
    expect(leafAcl.status).toBe(200);
    expect(leafAcl.results[0].data ?? '').toBe('');

    const fmt = await run(bed, DEV, { cmd: 'Get', uri: './Vendor/Temp?prop=Format' });
    expect(fmt.status).toBe(200);
    expect(fmt.results[0].data).toBe('float');
    const fmtNode = await run(bed, DEV, { cmd: 'Get', uri: './Vendor?prop=Format' });
    expect(fmtNode.results[0].data).toBe('node');
  });

  it('Replace changes the value; a Get shows it', async () => {
    const r = await run(bed, DEV, { cmd: 'Replace', uri: './Vendor/Name', value: 'desk lamp', format: 'chr' });
    expect(r.status).toBe(200);
    expect(await local('./Vendor/Name')).toBe('desk lamp');
    const g = await run(bed, DEV, { cmd: 'Get', uri: './Vendor/Name' });
    expect(g.results[0].data).toBe('desk lamp');
    // Replace of a missing node is 404 and creates nothing (§3.3).
    const missing = await run(bed, DEV, { cmd: 'Replace', uri: './Vendor/Nope', value: 'x' });
    expect(missing.status).toBe(404);
    expect(dev().tree.hasLocal('./Vendor/Nope')).toBe(false);
  });

  it('Add creates a leaf and an interior node (Format node)', async () => {
    const leaf = await run(bed, DEV, { cmd: 'Add', uri: './Vendor/Mode', value: 'eco', format: 'chr' });
    expect(leaf.status).toBe(200);
    expect(await local('./Vendor/Mode')).toBe('eco');

    const dir = await run(bed, DEV, { cmd: 'Add', uri: './Vendor/Schedule', format: 'node' });
    expect(dir.status).toBe(200);
    expect((await dev().tree.get('./Vendor/Schedule', LOCAL)).format).toBe('node');
    const inner = await run(bed, DEV, { cmd: 'Add', uri: './Vendor/Schedule/On', value: '07:00', format: 'chr' });
    expect(inner.status).toBe(200);

    const g = await run(bed, DEV, { cmd: 'Get', uri: './Vendor/Schedule' });
    expect(g.results).toEqual([{ uri: './Vendor/Schedule', format: 'node', data: 'On' }]);
    // Adding an existing node: 418.
    const again = await run(bed, DEV, { cmd: 'Add', uri: './Vendor/Mode', value: 'x' });
    expect(again.status).toBe(418);
    expect(await local('./Vendor/Mode')).toBe('eco');
  });

  it('Delete removes a node; a Get afterwards is 404', async () => {
    const d = await run(bed, DEV, { cmd: 'Delete', uri: './Vendor/Name' });
    expect(d.status).toBe(200);
    expect(dev().tree.hasLocal('./Vendor/Name')).toBe(false);
    const g = await run(bed, DEV, { cmd: 'Get', uri: './Vendor/Name' });
    expect(g.status).toBe(404);
    expect(g.results).toEqual([]);
  });

  it('Exec runs the node behaviour (the counter increments)', async () => {
    expect(await local('./Vendor/Counter')).toBe('0');
    const e1 = await run(bed, DEV, { cmd: 'Exec', uri: './Vendor/Counter' });
    expect(e1.status).toBe(200);
    expect(await local('./Vendor/Counter')).toBe('1');
    await run(bed, DEV, { cmd: 'Exec', uri: './Vendor/Counter' });
    const g = await run(bed, DEV, { cmd: 'Get', uri: './Vendor/Counter' });
    expect(g.results[0].data).toBe('2');
  });

  it('Copy copies a leaf onto another leaf', async () => {
    await run(bed, DEV, { cmd: 'Add', uri: './Vendor/Label', value: 'old', format: 'chr' });
    const c = await run(bed, DEV, { cmd: 'Copy', uri: './Vendor/Label', source: './Vendor/Name' });
    expect(c.status).toBe(200);
    expect(await local('./Vendor/Label')).toBe('lamp');
    expect(await local('./Vendor/Name')).toBe('lamp');
    const g = await run(bed, DEV, { cmd: 'Get', uri: './Vendor/Label' });
    expect(g.results[0].data).toBe('lamp');
  });

  it('Atomic with one failing command rolls everything back (507 / 216)', async () => {
    const before = managed();
    expect(before.get('./Vendor/Name')?.data).toBe('lamp');
    const r = await run(bed, DEV, {
      cmd: 'Atomic',
      commands: [
        { cmd: 'Replace', uri: './Vendor/Name', value: 'changed' },
        { cmd: 'Add', uri: './Vendor/AtomicNew', value: 'new', format: 'chr' },
        { cmd: 'Delete', uri: './Vendor/Temp' },
        { cmd: 'Replace', uri: './Vendor/DoesNotExist', value: 'x' },
      ],
    });
    expect(r.status).toBe(507);
    const byPath = Object.fromEntries(r.statuses.map((s: any) => [JSON.stringify(s.path), s.status]));
    expect(byPath).toEqual({ '[]': 507, '[0]': 216, '[1]': 216, '[2]': 216, '[3]': 404 });
    // The tree is exactly as before: by reading it directly ...
    expect(managed()).toEqual(before);
    expect(dev().tree.hasLocal('./Vendor/AtomicNew')).toBe(false);
    // ... and through the server.
    const name = await run(bed, DEV, { cmd: 'Get', uri: './Vendor/Name' });
    expect(name.results[0].data).toBe('lamp');
    const temp = await run(bed, DEV, { cmd: 'Get', uri: './Vendor/Temp' });
    expect(temp.results[0].data).toBe('21.5');
    const added = await run(bed, DEV, { cmd: 'Get', uri: './Vendor/AtomicNew' });
    expect(added.status).toBe(404);
  });

  it('Atomic that succeeds commits all its commands', async () => {
    const r = await run(bed, DEV, {
      cmd: 'Atomic',
      commands: [
        { cmd: 'Replace', uri: './Vendor/Name', value: 'atomic' },
        { cmd: 'Add', uri: './Vendor/AtomicOk', value: 'yes', format: 'chr' },
      ],
    });
    expect(r.status).toBe(200);
    expect(r.statuses.map((s: any) => s.status)).toEqual([200, 200, 200]);
    expect(await local('./Vendor/Name')).toBe('atomic');
    expect(await local('./Vendor/AtomicOk')).toBe('yes');
  });

  it('Sequence runs its commands in order with a status per command', async () => {
    const r = await run(bed, DEV, {
      cmd: 'Sequence',
      commands: [
        { cmd: 'Replace', uri: './Vendor/Name', value: 'one' },
        { cmd: 'Get', uri: './Vendor/Name' },
        { cmd: 'Replace', uri: './Vendor/Name', value: 'two' },
        { cmd: 'Get', uri: './Vendor/Name' },
        { cmd: 'Get', uri: './Vendor/Missing' },
      ],
    });
    expect(r.status).toBe(200);
    expect(r.statuses.map((s: any) => [s.path, s.cmd, s.status])).toEqual([
      [[], 'Sequence', 200],
      [[0], 'Replace', 200],
      [[1], 'Get', 200],
      [[2], 'Replace', 200],
      [[3], 'Get', 200],
      [[4], 'Get', 404],
    ]);
    // The Gets saw the value of the step before them: the commands ran in order.
    expect(r.results.map((x: any) => x.data)).toEqual(['one', 'two']);
    expect(await local('./Vendor/Name')).toBe('two');
  });

  it('a command denied by the ACL gets 425 and changes nothing', async () => {
    const g = await run(bed, DEV, { cmd: 'Get', uri: './Vendor/Locked/Secret' });
    expect(g.status).toBe(425);
    expect(g.results).toEqual([]);
    const rep = await run(bed, DEV, { cmd: 'Replace', uri: './Vendor/Locked/Secret', value: 'hacked' });
    expect(rep.status).toBe(425);
    expect(await local('./Vendor/Locked/Secret')).toBe('s3cr3t');
    expect(resultsByUri(g).size).toBe(0);
  });
});
