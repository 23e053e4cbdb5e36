/**
 * The ZigBee adapter at the adapter level: the real zigbee-herdsman Controller runs the network
 * through the simulated ZiGate coordinator (adapters/zigbee/sim.ts) over TCP on 127.0.0.1. The
 * frames herdsman sends are decoded by the simulator with herdsman's own ZCL codec, and these tests
 * assert on those decoded frames as well as on the DM statuses. One controller is shared by the
 * whole file (herdsman's device caches are process-wide).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { Zcl } from 'zigbee-herdsman';
import { ZigbeeAdapter, zigbeeAdapterConfigSchema } from '../../adapters/zigbee/adapter.ts';
import type { ZigbeeSim } from '../../adapters/zigbee/sim.ts';
import { decodeFrame, encodeFrame, FrameSplitter } from '../../adapters/zigbee/zigate.ts';
import type { AdapterDevice, LinkState } from '../../adapters/contract.ts';
import type { PluginNodeView, TreePlugin } from '../../src/tree/tree.ts';
import { DmStatusError } from '../../src/errors.ts';
import { until } from '../support/gateways.ts';

const require = createRequire(import.meta.url);
const LIGHT1 = '0x00124b0001a2b301';
const LIGHT2 = '0x00124b0001a2b302';
const TEMP = '0x00124b0001a2b303';
const NEWCOMER = '0x00124b0001a2b304';
const ROGUE = '0x00124b0001a2b3ff';
const KEY_HEX = '0f1e2d3c4b5a69788796a5b4c3d2e1f0';

let adapter: ZigbeeAdapter;
let sim: ZigbeeSim;
const attached: AdapterDevice[] = [];
const detached: string[] = [];
const states: LinkState[] = [];
const ctx = {};

const status = async (p: unknown): Promise<number> => {
  try {
    await (typeof p === 'function' ? (p as () => unknown)() : p);
    return 200;
  } catch (err) {
    if (err instanceof DmStatusError) return err.status!;
    throw err;
  }
};
const plugin = (ieee: string): TreePlugin => {
  const p = adapter.device(ieee);
  if (!p) throw new Error(`no plugin for ${ieee}`);
  return p;
};
const get = async (ieee: string, path: string): Promise<PluginNodeView | undefined> => (await plugin(ieee).get(path, ctx)) as PluginNodeView | undefined;
const exec = async (ieee: string, path: string, data?: string) => plugin(ieee).exec!(path, { data }, ctx);
const replace = (ieee: string, path: string, data: string, format = 'chr') => plugin(ieee).replace!(path, { format: format as 'chr', type: '', data }, ctx);
const isAttached = (ieee: string): boolean => attached.filter((d) => d.address === ieee).length > detached.filter((a) => a === ieee).length;

beforeAll(async () => {
  adapter = new ZigbeeAdapter(
    zigbeeAdapterConfigSchema.parse({
      type: 'zigbee',
      channel: 15,
      networkKey: KEY_HEX,
      extPanId: '0011223344556677',
      responseTimeoutMs: 400,
      joinTimeoutMs: 1500,
      detachAfterFailures: 2,
      maxConcurrency: 2,
      backoff: { initialMs: 100, maxMs: 400 },
      simulator: {
        devices: [
          { ieee: LIGHT1, kind: 'light', autoJoin: false, modelId: 'SIM-LIGHT-A' },
          { ieee: LIGHT2, kind: 'light', autoJoin: false },
          { ieee: TEMP, kind: 'temperature', autoJoin: false, manufacturerName: 'ACME' },
          { ieee: NEWCOMER, kind: 'light', autoJoin: false },
          { ieee: ROGUE, kind: 'light', autoJoin: false },
        ],
      },
    }),
  );
  sim = adapter.sim!;
  await adapter.start({ attached: (d) => attached.push(d), detached: (a) => detached.push(a), link: (s) => states.push(s) });
  expect(adapter.linkState).toBe('connected');
});

afterAll(async () => {
  await adapter?.stop();
});

describe('ZiGate framing against herdsman as oracle', () => {
  it('frames we encode parse in herdsman\'s ZiGate driver, and its frames decode here', () => {
    const HFrame = require('zigbee-herdsman/dist/adapter/zigate/driver/frame.js').default;
    // Payload bytes <= 0x10 force escaping.
    const payload = Buffer.from([0x00, 0x01, 0x02, 0x03, 0x10, 0x11, 0xff, 0x02]);
    const ours = encodeFrame(0x8002, payload, 0xc8);
    const theirs = new HFrame(ours);
    expect(theirs.readMsgCode()).toBe(0x8002);
    expect(Buffer.from(theirs.msgPayloadBytes)).toEqual(payload);
    expect(theirs.readRSSI()).toBe(0xc8);
    expect(theirs.readChecksum()).toBe(theirs.calcChecksum());
    const fromHerdsman: Buffer = new HFrame().writeMsgCode(0x0530).writeMsgPayload(payload).toBuffer();
    const chunks = new FrameSplitter().push(Buffer.concat([fromHerdsman.subarray(0, 5), fromHerdsman.subarray(5)]));
    expect(chunks).toHaveLength(1);
    expect(decodeFrame(chunks[0]!)).toEqual({ code: 0x0530, payload });
    const corrupt = Buffer.from(chunks[0]!);
    corrupt[corrupt.length - 1] = corrupt[corrupt.length - 1]! ^ 0x01;
    expect(() => decodeFrame(corrupt)).toThrow(/checksum|length/);
  });
});

describe('ZigBee adapter on the real herdsman controller', () => {
  it('settings: channel, extended PAN ID, the coordinator\'s PAN ID, interface; the key is write-only material that is never logged', async () => {
    const s = adapter.getSettings();
    expect(s['Channel']).toBe('15');
    expect(sim.network.channel).toBe(15);
    expect(s['ExtPanID']).toBe('0011223344556677');
    expect(sim.network.extPanId).toBe('0x0011223344556677');
    expect(Number(s['PanID'])).toBe(sim.network.panId);
    expect(s['Interface']).toBe(sim.url);
    expect(Buffer.from(s['NetworkKey']!, 'base64').toString('hex')).toBe(KEY_HEX);
    expect(adapter.settings.find((p) => p.name === 'NetworkKey')?.secret).toBe(true);
    expect(await status(adapter.configure({ Channel: '27' }))).toBe(400);
    expect(await status(adapter.configure({ ExtPanID: 'xyz' }))).toBe(400);
    expect(await status(adapter.configure({ PanID: '4660' }))).toBe(405);
    expect(await status(adapter.configure({ Colour: 'red' }))).toBe(404);
    expect(adapter.getSettings()['Channel']).toBe('15');
  });

  it('PermitJoin admits devices in pairing mode: they join, herdsman interviews them, and they are attached with their identity', async () => {
    expect(await status(adapter.operations.find((o) => o.name === 'PermitJoin')!.run('999'))).toBe(400);
    sim.pair(LIGHT1);
    sim.pair(LIGHT2);
    sim.pair(TEMP);
    const r = await adapter.operations.find((o) => o.name === 'PermitJoin')!.run('30');
    expect(r.status).toBe(200);
    expect(sim.permitting()).toBe(true);
    await until(() => [LIGHT1, LIGHT2, TEMP].every(isAttached), 'three devices to attach');
    const l1 = attached.find((d) => d.address === LIGHT1)!;
    expect(l1).toEqual({ address: LIGHT1, deviceId: 'urn:dev:ieee:00124b0001a2b301', man: 'gwmo-sim', mod: 'SIM-LIGHT-A' });
    expect(attached.find((d) => d.address === TEMP)!.man).toBe('ACME');
    await adapter.operations.find((o) => o.name === 'PermitJoin')!.run('0');
    expect(sim.permitting()).toBe(false);
    // The interview read genBasic through ZCL: herdsman's codec decoded those reads on the device side.
    const basicReads = sim.frames.filter((f) => f.ieee === LIGHT1 && f.clusterId === 0x0000 && f.frame.command.name === 'read');
    expect(basicReads.flatMap((f) => (f.frame.payload as { attrId: number }[]).map((a) => a.attrId))).toEqual(expect.arrayContaining([0x0004, 0x0005]));

    // Identity and descriptors through the DM subtree.
    expect((await get(LIGHT1, 'DevInfo/DevId'))?.data).toBe('urn:dev:ieee:00124b0001a2b301');
    expect((await get(LIGHT1, 'DevInfo/Mod'))?.data).toBe('SIM-LIGHT-A');
    expect((await get(LIGHT1, 'ZigBee/IEEE'))?.data).toBe(LIGHT1);
    expect((await get(LIGHT1, 'ZigBee/NwkAddr'))?.data).toBe(String(sim.device(LIGHT1)!.nwk));
    expect((await get(LIGHT1, 'ZigBee/ModelId'))?.data).toBe('SIM-LIGHT-A');
    expect((await get(LIGHT1, 'ZigBee/Endpoints/1/ProfileId'))?.data).toBe(String(0x0104));
    expect((await get(LIGHT1, 'ZigBee/Endpoints/1/DeviceId'))?.data).toBe(String(0x0101));
    expect(await plugin(LIGHT1).children('ZigBee/Endpoints', ctx)).toEqual(['1']);
    expect(await plugin(LIGHT1).children('ZigBee/Endpoints/1/Clusters', ctx)).toEqual(['0000', '0003', '0004', '0006', '0008']);
    expect(await plugin(TEMP).children('ZigBee/Endpoints/1/Clusters', ctx)).toContain('0402');
    expect(await plugin(LIGHT1).children('ZigBee/Endpoints/1/Clusters/0006/Commands', ctx)).toEqual(expect.arrayContaining(['00', '01', '02']));
  });

  it('Get is a ZCL Read Attributes, typed by the ZCL data type; attribute discovery lists a cluster', async () => {
    const before = sim.frames.length;
    const onOff = await get(LIGHT1, 'ZigBee/Endpoints/1/Clusters/0006/Attributes/0000');
    expect(onOff).toMatchObject({ format: 'bool', data: 'false', type: 'zcl:BOOLEAN' });
    const read = sim.frames.slice(before).find((f) => f.ieee === LIGHT1 && f.frame.command.name === 'read')!;
    expect(read.clusterId).toBe(0x0006);
    expect(read.frame.header.frameControl.frameType).toBe(Zcl.FrameType.GLOBAL);
    expect(read.frame.payload).toEqual([{ attrId: 0x0000 }]);

    const temp = await get(TEMP, 'ZigBee/Endpoints/1/Clusters/0x0402/Attributes/0x0000');
    expect(temp).toMatchObject({ format: 'int', data: '2150', type: 'zcl:INT16' });
    sim.device(TEMP)!.setAttr(1, 0x0402, 0, -125);
    expect((await get(TEMP, 'ZigBee/Endpoints/1/Clusters/0402/Attributes/0000'))?.data).toBe('-125');
    expect((await get(LIGHT1, 'ZigBee/Endpoints/1/Clusters/0000/Attributes/0005'))).toMatchObject({ format: 'chr', data: 'SIM-LIGHT-A' });

    expect(await plugin(LIGHT1).children('ZigBee/Endpoints/1/Clusters/0006/Attributes', ctx)).toEqual(['0000', '4001', '4003']);
    const disc = sim.frames.filter((f) => f.ieee === LIGHT1 && f.frame.command.name === 'discover');
    expect(disc.at(-1)!.frame.payload).toEqual({ startAttrId: 0, maxAttrIds: 255 });

    // Unsupported attribute (device says UNSUPPORTED_ATTRIBUTE) → 404; unmapped cluster/endpoint → not found.
    expect(await status(get(LIGHT1, 'ZigBee/Endpoints/1/Clusters/0006/Attributes/1234'))).toBe(404);
    expect(await get(LIGHT1, 'ZigBee/Endpoints/1/Clusters/0300/Attributes/0000')).toBeUndefined();
    expect(await get(LIGHT1, 'ZigBee/Endpoints/9/ProfileId')).toBeUndefined();
    expect(await get(LIGHT1, 'ZigBee/Nope')).toBeUndefined();
  });

  it('Replace is a ZCL Write Attributes with the attribute\'s type; bad values are 400, read-only ones 405', async () => {
    const before = sim.frames.length;
    expect(await status(replace(LIGHT1, 'ZigBee/Endpoints/1/Clusters/0008/Attributes/0011', '128', 'int'))).toBe(200);
    expect(sim.device(LIGHT1)!.attr(1, 0x0008, 0x0011)).toBe(128);
    const w = sim.frames.slice(before).find((f) => f.frame.command.name === 'write')!;
    expect(w.clusterId).toBe(0x0008);
    expect(w.frame.payload).toEqual([{ attrId: 0x0011, dataType: Zcl.DataType.UINT8, attrData: 128 }]);
    expect((await get(LIGHT1, 'ZigBee/Endpoints/1/Clusters/0008/Attributes/0011'))?.data).toBe('128');

    const n = sim.frames.length;
    // Out of the type's range: refused before anything goes on air.
    expect(await status(replace(LIGHT1, 'ZigBee/Endpoints/1/Clusters/0008/Attributes/0011', '300', 'int'))).toBe(400);
    expect(await status(replace(LIGHT1, 'ZigBee/Endpoints/1/Clusters/0008/Attributes/0011', 'bright', 'chr'))).toBe(400);
    expect(sim.frames.length).toBe(n);
    // In the type's range but the device refuses it (INVALID_VALUE) → 400; read-only (READ_ONLY) → 405.
    expect(await status(replace(LIGHT1, 'ZigBee/Endpoints/1/Clusters/0008/Attributes/0011', '0', 'int'))).toBe(400);
    expect(await status(replace(LIGHT1, 'ZigBee/Endpoints/1/Clusters/0006/Attributes/0000', 'true', 'bool'))).toBe(405);
    expect(sim.device(LIGHT1)!.on).toBe(false);
    expect(await status(replace(LIGHT1, 'ZigBee/Endpoints/1/Clusters/0006/Attributes/9999', '1', 'int'))).toBe(404);
    // A string attribute; other nodes cannot be replaced.
    expect(await status(replace(LIGHT1, 'ZigBee/Endpoints/1/Clusters/0000/Attributes/0010', 'hall ceiling'))).toBe(200);
    expect(sim.device(LIGHT1)!.attr(1, 0, 0x0010)).toBe('hall ceiling');
    expect(await status(replace(LIGHT1, 'ZigBee/ModelId', 'x'))).toBe(405);
  });

  it('Exec runs a cluster command: JSON fields or a hex payload decoded by the ZCL codec; errors map to 400/404/405', async () => {
    let before = sim.frames.length;
    expect((await exec(LIGHT1, 'ZigBee/Endpoints/1/Clusters/0006/Commands/01')).status).toBe(200);
    expect(sim.device(LIGHT1)!.on).toBe(true);
    const on = sim.frames.slice(before).find((f) => f.ieee === LIGHT1)!;
    expect(on.clusterId).toBe(0x0006);
    expect(on.frame.header.frameControl.frameType).toBe(Zcl.FrameType.SPECIFIC);
    expect(on.frame.command.name).toBe('on');
    expect((await get(LIGHT1, 'ZigBee/Endpoints/1/Clusters/0006/Attributes/0000'))?.data).toBe('true');

    before = sim.frames.length;
    expect((await exec(LIGHT1, 'ZigBee/Endpoints/1/Clusters/0008/Commands/04', '{"level": 100, "transtime": 0}')).status).toBe(200);
    expect(sim.device(LIGHT1)!.attr(1, 0x0008, 0)).toBe(100);
    expect(sim.frames.slice(before).find((f) => f.ieee === LIGHT1)!.frame.payload).toMatchObject({ level: 100, transtime: 0 });
    // moveToLevel as hex: level 0x32, transition time 0x000a (little-endian).
    before = sim.frames.length;
    expect((await exec(LIGHT1, 'ZigBee/Endpoints/1/Clusters/0008/Commands/00', '320a00')).status).toBe(200);
    const ml = sim.frames.slice(before).find((f) => f.ieee === LIGHT1)!;
    expect(ml.frame.command.name).toBe('moveToLevel');
    expect(ml.frame.payload).toMatchObject({ level: 0x32, transtime: 10 });
    expect(sim.device(LIGHT1)!.attr(1, 0x0008, 0)).toBe(0x32);
    // A command with a response: genGroups getMembership answers its payload as JSON.
    const m = await exec(LIGHT1, 'ZigBee/Endpoints/1/Clusters/0004/Commands/02', '{"groupcount": 0, "grouplist": []}');
    expect(JSON.parse(m.data!)).toMatchObject({ groupcount: 0, grouplist: [] });

    const n = sim.frames.length;
    expect(await status(exec(LIGHT1, 'ZigBee/Endpoints/1/Clusters/0008/Commands/04', '{"level": 999, "transtime": 0}'))).toBe(400);
    expect(await status(exec(LIGHT1, 'ZigBee/Endpoints/1/Clusters/0008/Commands/04', '{"transtime": 0}'))).toBe(400);
    expect(await status(exec(LIGHT1, 'ZigBee/Endpoints/1/Clusters/0008/Commands/04', '{not json'))).toBe(400);
    expect(await status(exec(LIGHT1, 'ZigBee/Endpoints/1/Clusters/0008/Commands/00', 'zz'))).toBe(400);
    expect(sim.frames.length).toBe(n);
    // A command the library knows but this device does not (UNSUP_COMMAND) → 405; unknown id → 404; not executable → 405.
    expect(await status(exec(LIGHT1, 'ZigBee/Endpoints/1/Clusters/0006/Commands/40', '{"effectid": 0, "effectvariant": 0}'))).toBe(405);
    expect(await status(exec(LIGHT1, 'ZigBee/Endpoints/1/Clusters/0006/Commands/77'))).toBe(404);
    expect(await status(exec(LIGHT1, 'ZigBee/Endpoints/1/Clusters/0006/Attributes/0000'))).toBe(405);
  });

  it('group multicast: one group cast reaches every member; the managed group is created once and reused', async () => {
    await exec(LIGHT1, 'ZigBee/Endpoints/1/Clusters/0006/Commands/00');
    await exec(LIGHT2, 'ZigBee/Endpoints/1/Clusters/0006/Commands/00');
    const before = sim.frames.length;
    const res = await adapter.multicast({ addresses: [LIGHT1, LIGHT2, TEMP], kind: 'Exec', path: 'ZigBee/Endpoints/1/Clusters/0006/Commands/01' });
    // The sensor has no genOnOff: it is left to the per-device path.
    expect([...res.keys()].sort()).toEqual([LIGHT1, LIGHT2]);
    expect([...res.values()].every((r) => r.status === 200)).toBe(true);
    expect(sim.device(LIGHT1)!.on && sim.device(LIGHT2)!.on).toBe(true);
    const frames = sim.frames.slice(before);
    const adds = frames.filter((f) => f.clusterId === 0x0004 && f.frame.command.name === 'add');
    expect(adds.map((f) => f.ieee).sort()).toEqual([LIGHT1, LIGHT2]);
    const gid = (adds[0]!.frame.payload as { groupid: number }).groupid;
    expect(gid).toBeGreaterThanOrEqual(0x7000);
    const casts = frames.filter((f) => f.group === gid);
    expect(casts.map((f) => f.ieee).sort()).toEqual([LIGHT1, LIGHT2]);
    expect(casts[0]!.frame.command.name).toBe('on');
    expect(adapter.multicasts).toBe(1);

    // Same members again, as an attribute write: no new genGroups add, one more group cast.
    const b2 = sim.frames.length;
    const res2 = await adapter.multicast({ addresses: [LIGHT2, LIGHT1], kind: 'Replace', path: 'ZigBee/Endpoints/1/Clusters/0008/Attributes/0011', data: '77', format: 'int' });
    expect(res2.get(LIGHT1)?.status).toBe(200);
    expect(sim.frames.slice(b2).filter((f) => f.clusterId === 0x0004)).toEqual([]);
    const w = sim.frames.slice(b2).filter((f) => f.group === gid);
    expect(w.map((f) => f.frame.command.name)).toEqual(['write', 'write']);
    expect(sim.device(LIGHT1)!.attr(1, 8, 0x11)).toBe(77);
    expect(sim.device(LIGHT2)!.attr(1, 8, 0x11)).toBe(77);
    // A bad value or a single member: nothing multicast, the legs go device by device.
    expect((await adapter.multicast({ addresses: [LIGHT2, LIGHT1], kind: 'Replace', path: 'ZigBee/Endpoints/1/Clusters/0008/Attributes/0011', data: '999' })).size).toBe(0);
    expect((await adapter.multicast({ addresses: [LIGHT1], kind: 'Exec', path: 'ZigBee/Endpoints/1/Clusters/0006/Commands/00' })).size).toBe(0);
  });

  it('native operations are capped at maxConcurrency per network', async () => {
    sim.behave(LIGHT1, { latencyMs: 120 });
    const limiter = (adapter as unknown as { limiter: { running: number; queued: number } }).limiter;
    const t0 = Date.now();
    const reads = Array.from({ length: 5 }, () => get(LIGHT1, 'ZigBee/Endpoints/1/Clusters/0008/Attributes/0000'));
    await new Promise((r) => setTimeout(r, 30));
    expect(limiter.running).toBe(2);
    expect(limiter.queued).toBe(3);
    const views = await Promise.all(reads);
    expect(views.every((v) => v?.format === 'int')).toBe(true);
    // Five answers, two at a time, each 120 ms late: at least three rounds.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(3 * 120);
    sim.behave(LIGHT1, undefined);
  });

  it('a slow device still answers; a silent one gets 461 and, after repeated misses, is detached until it is heard again', async () => {
    sim.behave(LIGHT2, { latencyMs: 150 });
    expect((await get(LIGHT2, 'ZigBee/Endpoints/1/Clusters/0006/Attributes/0000'))?.data).toBe('true');
    sim.behave(LIGHT2, { silent: true });
    const t0 = Date.now();
    expect(await status(get(LIGHT2, 'ZigBee/Endpoints/1/Clusters/0006/Attributes/0000'))).toBe(461);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(isAttached(LIGHT2)).toBe(true);
    expect(await status(exec(LIGHT2, 'ZigBee/Endpoints/1/Clusters/0006/Commands/00'))).toBe(461);
    expect(isAttached(LIGHT2)).toBe(false);
    expect(detached.at(-1)).toBe(LIGHT2);
    // It speaks again (an attribute report): attached again.
    sim.behave(LIGHT2, undefined);
    sim.report(LIGHT2, 1, 0x0006, [0]);
    await until(() => isAttached(LIGHT2), 'the light to come back');
  });

  it('associate admits only that device (others are refused and sent away); dissociate removes it; bad parameters get clear statuses', async () => {
    expect(adapter.associationParams.map((p) => [p.name, !!p.required, !!p.secret])).toEqual([
      ['IEEEAddress', true, false],
      ['InstallCode', false, true],
    ]);
    expect(await status(adapter.associate({}))).toBe(412);
    expect(await status(adapter.associate({ IEEEAddress: 'abc' }))).toBe(400);
    expect(await status(adapter.associate({ IEEEAddress: NEWCOMER, InstallCode: '0011' }))).toBe(400);
    // A well-formed install code (CRC computed by herdsman's checker): ZiGate cannot take it.
    const { checkInstallCode } = require('zigbee-herdsman/dist/controller/helpers/installCodes.js');
    const [withCrc] = checkInstallCode(Buffer.from('83fed3407a939723a5c639b26916d505', 'hex'), true);
    expect(await status(adapter.associate({ IEEEAddress: NEWCOMER, InstallCode: (withCrc as Buffer).toString('hex') }))).toBe(501);

    const p = adapter.associate({ IEEEAddress: NEWCOMER.slice(2).toUpperCase() });
    await until(() => sim.permitting(), 'joining to open');
    sim.pair(ROGUE);
    sim.pair(NEWCOMER);
    const dev = await p;
    expect(dev).toMatchObject({ address: NEWCOMER, deviceId: 'urn:dev:ieee:00124b0001a2b304', mod: 'SIM-LIGHT-1' });
    expect(isAttached(NEWCOMER)).toBe(true);
    expect(sim.permitting()).toBe(false);
    // The rogue device joined the open network but herdsman's join hook refused it: told to leave, never attached.
    await until(() => !sim.device(ROGUE)!.joined, 'the rogue to be sent away');
    expect(attached.some((d) => d.address === ROGUE)).toBe(false);
    // Associating a device already on the network answers at once.
    expect((await adapter.associate({ IEEEAddress: NEWCOMER })).address).toBe(NEWCOMER);

    await adapter.dissociate(NEWCOMER);
    expect(sim.device(NEWCOMER)!.joined).toBe(false);
    expect(isAttached(NEWCOMER)).toBe(false);
    const leave = sim.commands.filter((c) => c === 0x004c);
    expect(leave.length).toBeGreaterThanOrEqual(2); // the rogue's and the newcomer's Mgmt_Leave
    expect(await status(adapter.dissociate('0x0000000000000bad'))).toBe(404);

    // A device that never comes: 461 after joinTimeoutMs.
    expect(await status(adapter.associate({ IEEEAddress: '0x00124b00000000aa' }))).toBe(461);
  });

  it('a device that leaves is detached; its subtree then answers 461', async () => {
    sim.leave(TEMP);
    await until(() => !isAttached(TEMP), 'the sensor to detach');
    expect(await status(get(TEMP, 'ZigBee/Endpoints/1/Clusters/0402/Attributes/0000'))).toBe(461);
  });

  it('the coordinator link drops: operations answer 503, the link reconnects with backoff, devices are attached again', async () => {
    const connects = sim.connections;
    await sim.offline();
    await until(() => adapter.linkState === 'backoff', 'the link to back off');
    expect(await status(get(LIGHT1, 'ZigBee/Endpoints/1/Clusters/0006/Attributes/0000'))).toBe(503);
    expect(await status(adapter.operations.find((o) => o.name === 'PermitJoin')!.run('10'))).toBe(503);
    expect(await status(adapter.associate({ IEEEAddress: LIGHT1 }))).toBe(503);
    await new Promise((r) => setTimeout(r, 300)); // a few refused attempts
    expect(adapter.linkError).toMatch(/./);
    const attachedBefore = attached.length;
    await sim.online();
    await until(() => adapter.linkState === 'connected', 'the link to reconnect');
    expect(adapter.reconnects).toBeGreaterThanOrEqual(1);
    expect(sim.connections).toBeGreaterThan(connects);
    expect(states).toEqual(expect.arrayContaining(['backoff', 'connecting', 'connected']));
    // herdsman resumed the network from its database: the devices are known and attached again.
    expect(attached.slice(attachedBefore).map((d) => d.address)).toEqual(expect.arrayContaining([LIGHT1, LIGHT2]));
    expect((await get(LIGHT1, 'ZigBee/Endpoints/1/Clusters/0006/Attributes/0000'))?.data).toBe('true');
  });

  it('a new extended PAN ID re-forms the network: the coordinator forgets it, devices are detached and must join again', async () => {
    const before = detached.length;
    await adapter.configure({ ExtPanID: '8877665544332211' });
    await until(() => sim.network.extPanId === '0x8877665544332211' && adapter.linkState === 'connected', 'the network to re-form');
    expect(sim.commands).toContain(0x0012); // ZiGate erase persistent data
    expect(detached.slice(before)).toEqual(expect.arrayContaining([LIGHT1, LIGHT2]));
    expect(sim.device(LIGHT1)!.joined).toBe(false);
    expect(adapter.getSettings()['ExtPanID']).toBe('8877665544332211');
    expect(await status(get(LIGHT1, 'ZigBee/Endpoints/1/ProfileId'))).toBe(461);
    // They join the new network again.
    sim.pair(LIGHT1);
    await adapter.operations.find((o) => o.name === 'PermitJoin')!.run('20');
    await until(() => isAttached(LIGHT1), 'the light to join the new network');
  });

  it('never writes the network key into the logs it keeps', () => {
    expect(adapter.nativeLog.join('\n')).not.toContain(KEY_HEX);
    expect(adapter.nativeLog.join('\n').toLowerCase()).not.toContain(KEY_HEX.toLowerCase());
  });
});

describe('process exit', () => {
  /** Runs the demo; `afterOutputMs` is how long the process lived after printing its result (after stop()). */
  const run = (args: string[]): Promise<{ code: number | null; out: string; afterOutputMs: number }> =>
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, ['bin/run-ts.js', 'adapters/zigbee/demo.ts', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let printed = 0;
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.includes('"joined"')) printed ||= Date.now();
      });
      child.stderr.on('data', (b: Buffer) => (out += b.toString()));
      const kill = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`the demo did not exit by itself: ${out}`));
      }, 15_000);
      child.on('exit', (code) => {
        clearTimeout(kill);
        resolve({ code, out, afterOutputMs: printed ? Date.now() - printed : -1 });
      });
    });

  it('start, join, operate and stop in a child process: it exits by itself (connected, and while backing off)', async () => {
    const [a, b] = await Promise.all([run([]), run(['--drop'])]);
    const result = (r: { out: string }): Record<string, unknown> => JSON.parse(r.out.split('\n').find((l) => l.startsWith('{"joined"')) ?? '{}');
    expect(a.code, a.out).toBe(0);
    // stop() released everything: the process ends right after its last line (herdsman's armed waiters alone held it 5 s).
    expect(a.afterOutputMs, a.out).toBeGreaterThanOrEqual(0);
    expect(a.afterOutputMs, a.out).toBeLessThan(2000);
    expect(b.afterOutputMs, b.out).toBeLessThan(2000);
    expect(result(a), a.out).toMatchObject({ joined: 2, on: 'true', temperature: 21.5, state: 'connected' });
    expect(b.code, b.out).toBe(0);
    expect(result(b), b.out).toMatchObject({ joined: 2, state: 'backoff' });
  }, 30_000);
});
