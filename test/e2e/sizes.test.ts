/**
 * Acceptance: MaxMsgSize and large objects end to end (notes §3.7), in XML and WBXML. Packages
 * larger than the peer's MaxMsgSize are split over several messages, and single values larger
 * than a message travel as MoreData chunks and arrive intact.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { LOCAL } from '../../src/tree/tree.ts';
import { startBed, type TestBed } from '../support/fixtures.ts';
import { ENCODINGS, enqueue, listCommands, run } from './helpers.ts';

const DEV = 'IMEI:600000000000001';

let bed: TestBed | undefined;
afterEach(async () => {
  await bed?.close();
  bed = undefined;
});

/** A text of `n` characters that is different everywhere (so a lost or repeated chunk shows). */
function bigText(n: number, seed = 0): string {
  let s = '';
  for (let i = 0; s.length < n; i++) s += `<${(i + seed).toString(36)}&"é>|`;
  return s.slice(0, n);
}

describe.each(ENCODINGS)('message sizes over %s', (encoding) => {
  it('a Get ?list=StructData larger than MaxMsgSize comes back over several messages', async () => {
    // Both sides accept at most 2 KiB per message: the device's Results have to be split.
    bed = await startBed([{ deviceId: DEV, encoding, maxMsgSize: 2048 }], { serverExtra: { maxMsgSize: 2048 } });
    const dev = bed.devices[0]!;
    await dev.tree.add('./Vendor/Many', { format: 'node' }, LOCAL);
    const expected = new Map<string, string>();
    for (let i = 0; i < 60; i++) {
      const uri = `./Vendor/Many/Leaf${String(i).padStart(2, '0')}`;
      const data = `value ${i} ${bigText(40, i)}`;
      await dev.tree.add(uri, { format: 'chr', data }, LOCAL);
      expected.set(uri, data);
    }
    expect((await dev.connect()).ok).toBe(true);

    const session = dev.nextSession();
    const r = await run(bed, DEV, { cmd: 'Get', uri: './Vendor/Many?list=StructData' });
    const rec = await session;
    expect(rec.ok, rec.reason).toBe(true);
    expect(rec.messages).toBeGreaterThan(2);
    expect(r.status).toBe(200);
    expect(r.results).toHaveLength(61);
    expect(r.results[0]).toMatchObject({ uri: './Vendor/Many', format: 'node' });
    const got = new Map<string, string>(r.results.slice(1).map((x: any) => [x.uri, x.data]));
    expect(got).toEqual(expected);
  });

  it('many queued commands for a device with a small MaxMsgSize are spread over several messages', async () => {
    bed = await startBed([{ deviceId: DEV, encoding, maxMsgSize: 2048 }]);
    const dev = bed.devices[0]!;
    expect((await dev.connect()).ok).toBe(true);
    for (let i = 0; i < 40; i++) await enqueue(bed.server, DEV, { cmd: 'Add', uri: `./Vendor/Item${i}`, value: `item ${i} ${bigText(30, i)}`, format: 'chr' });
    const rec = await dev.connect();
    expect(rec.ok, rec.reason).toBe(true);
    expect(rec.messages).toBeGreaterThan(2);
    expect(rec.executed).toHaveLength(40);
    const all = await listCommands(bed.server, DEV);
    expect(all.map((e) => [e.state, e.status])).toEqual(Array.from({ length: 40 }, () => ['done', 200]));
    for (let i = 0; i < 40; i++) expect((await dev.tree.get(`./Vendor/Item${i}`, LOCAL)).data).toBe(`item ${i} ${bigText(30, i)}`);
  });

  it('a 20 KB Replace to a device with MaxMsgSize 4096 arrives intact (server sends MoreData chunks)', async () => {
    bed = await startBed([{ deviceId: DEV, encoding, maxMsgSize: 4096 }]);
    const dev = bed.devices[0]!;
    expect((await dev.connect()).ok).toBe(true);
    const value = bigText(20 * 1024);
    const session = dev.nextSession();
    const r = await run(bed, DEV, { cmd: 'Replace', uri: './Vendor/Name', value, format: 'chr' });
    const rec = await session;
    expect(rec.ok, rec.reason).toBe(true);
    expect(r.status).toBe(200);
    // 20 KiB in messages of at most 4 KiB: at least 5 chunks, each answered with 213 but the last.
    expect(rec.messages).toBeGreaterThanOrEqual(5);
    expect(rec.executed).toEqual([{ cmd: 'Replace', target: './Vendor/Name', status: '200' }]);
    const stored = await dev.tree.get('./Vendor/Name', LOCAL);
    expect(stored.data.length).toBe(value.length);
    expect(stored.data).toBe(value);
    // The final outcome is the Replace's own status, not a chunk's 213.
    expect(r.statuses).toEqual([{ path: [], cmd: 'Replace', target: './Vendor/Name', status: 200 }]);
  });

  it('a Get of a 20 KB leaf with a small server MaxMsgSize comes back intact (client chunks Results)', async () => {
    bed = await startBed([{ deviceId: DEV, encoding }], { serverExtra: { maxMsgSize: 4096 } });
    const dev = bed.devices[0]!;
    const value = bigText(20 * 1024, 7);
    await dev.tree.add('./Vendor/Blob', { format: 'chr', data: value }, LOCAL);
    expect((await dev.connect()).ok).toBe(true);
    const session = dev.nextSession();
    const r = await run(bed, DEV, { cmd: 'Get', uri: './Vendor/Blob' });
    const rec = await session;
    expect(rec.ok, rec.reason).toBe(true);
    expect(rec.messages).toBeGreaterThanOrEqual(5);
    expect(r.status).toBe(200);
    expect(r.results).toHaveLength(1);
    expect(r.results[0].uri).toBe('./Vendor/Blob');
    expect(r.results[0].data.length).toBe(value.length);
    expect(r.results[0].data).toBe(value);
  });
});
