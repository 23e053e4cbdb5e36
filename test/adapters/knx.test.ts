/**
 * The KNX adapter against a real KNXnet/IP server (Debian knxd on loopback, a dummy bus) with
 * simulated KNX devices as further tunnel clients, and `knxtool` (a non-Node KNX client) as an
 * independent observer and writer. Also the DPT codec on its own.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { gatewayConfigSchema } from '../../src/gateway/config.ts';
import { KnxAdapter, knxAdapterConfigSchema, parseGroupObjects } from '../../adapters/knx/adapter.ts';
import { decodeValue, encodeFloat16, encodeValue, parseDpt } from '../../adapters/knx/dpt.ts';
import { knxtoolWrite, listenGroups, startKnxd, type GroupListener, type Knxd } from '../../adapters/knx/knxd.ts';
import { KnxSim, type KnxSimDevice } from '../../adapters/knx/sim.ts';
import type { AdapterEvents } from '../../adapters/contract.ts';
import { DmStatusError } from '../../src/errors.ts';
import { LOCAL, type PluginNodeView, type TreeContext, type TreePlugin } from '../../src/tree/tree.ts';
import { memoryTree } from '../tree/helpers.ts';

const hex = (dpt: string, v: string): string => encodeValue(parseDpt(dpt), v).data.toString('hex');
/** The DM status an operation ends with (200 when it succeeds), whether it throws or rejects. */
const status = async (op: Promise<unknown> | (() => unknown)): Promise<number | undefined> => {
  try {
    await (typeof op === 'function' ? op() : op);
    return 200;
  } catch (err) {
    return err instanceof DmStatusError ? err.status : -1;
  }
};

describe('KNX datapoint types', () => {
  it('encodes known vectors of KNX 03.07.02 and decodes them back', () => {
    expect(hex('DPT1.001', 'on')).toBe('01');
    expect(hex('DPT1.001', '0')).toBe('00');
    expect(hex('DPT5.001', '100')).toBe('ff');
    expect(hex('DPT5.001', '50')).toBe('80');
    expect(hex('DPT5.010', '200')).toBe('c8');
    expect(hex('DPT9.001', '21.5')).toBe('0c33');
    expect(hex('DPT9.001', '-30')).toBe('8a24');
    expect(hex('DPT9', '670433.28')).toBe('7ffe');
    expect(hex('DPT9', '-671088.64')).toBe('f800');
    expect(hex('DPT7', '65535')).toBe('ffff');
    expect(hex('DPT8', '-300')).toBe('fed4');
    expect(hex('DPT3.007', '+3')).toBe('0b');
    expect(hex('DPT12', '4294967295')).toBe('ffffffff');
    expect(hex('DPT14', '3.14')).toBe('4048f5c3');
    const dec = (d: string, h: string): string => decodeValue(parseDpt(d), Buffer.from(h, 'hex'));
    expect(dec('DPT1.001', '01')).toBe('on');
    expect(dec('DPT1.002', '00')).toBe('0');
    expect(dec('DPT5.001', 'ff')).toBe('100');
    expect(dec('DPT9.001', '0c33')).toBe('21.5');
    expect(dec('DPT9.001', '8a24')).toBe('-30');
    expect(dec('DPT3.007', '03')).toBe('-3');
    expect(dec('DPT16', '68656c6c6f0000000000000000000000'.slice(0, 28))).toBe('hello');
    // DPT1 labels of the subtype are accepted and normalised.
    expect(decodeValue(parseDpt('DPT1.008'), encodeValue(parseDpt('DPT1.008'), 'Down').data)).toBe('1');
    expect(decodeValue(parseDpt('DPT1.001'), encodeValue(parseDpt('DPT1.001'), 'TRUE').data)).toBe('on');
  });

  it('round-trips DPT9 within its quantisation and agrees with the library decoder', () => {
    for (let i = 0; i < 500; i++) {
      const v = Math.round((Math.random() * 2 - 1) * 100000 * 100) / 100;
      const buf = encodeFloat16(v);
      const back = Number(decodeValue(parseDpt('DPT9'), buf));
      // Step at exponent e is 0.01·2^e; the error is at most half a step.
      const e = (buf[0]! >> 3) & 0x0f;
      expect(Math.abs(back - v)).toBeLessThanOrEqual(0.01 * 2 ** e * 0.5 + 1e-9);
    }
  });

  it('refuses values a DPT cannot carry with 400 and a code, and unknown DPTs', () => {
    const bad = (d: string, v: string): string | undefined => {
      try {
        encodeValue(parseDpt(d), v);
        return undefined;
      } catch (err) {
        return `${(err as DmStatusError).status} ${(err as DmStatusError).code}`;
      }
    };
    for (const [d, v] of [
      ['DPT1.001', 'maybe'],
      ['DPT1.001', ''],
      ['DPT5.001', '101'],
      ['DPT5.001', '-1'],
      ['DPT5', '256'],
      ['DPT5', '1.5'],
      ['DPT9.001', '-300'],
      ['DPT9', '700000'],
      ['DPT9', 'NaN'],
      ['DPT9', '1e400'],
      ['DPT7', '-1'],
      ['DPT16', 'fifteen chars!!'],
      ['DPT3.007', '+8'],
      ['DPT232', 'zzzzzz'],
    ]) {
      expect(bad(d!, v!), `${d} ${v}`).toBe('400 KNX_BAD_VALUE');
    }
    expect(() => parseDpt('DPT999')).toThrow(/not supported/);
    expect(() => parseDpt('temperature')).toThrow(DmStatusError);
    expect(() => decodeValue(parseDpt('DPT9'), Buffer.from([1]))).toThrow(/2 octet/);
    expect(() => parseGroupObjects('1/2/3:DPT1.001:x')).toThrow(/GroupObjects/);
    expect(() => parseGroupObjects('32/0/0:DPT1')).toThrow(/GroupObjects/);
    expect(parseGroupObjects('1/2/3:DPT1.001:rw, 1/2/4:DPT9.001:r')).toEqual([
      { ga: '1/2/3', dpt: 'DPT1.001', read: true, write: true },
      { ga: '1/2/4', dpt: 'DPT9.001', read: true, write: false },
    ]);
  });
});

describe('KNX docs', () => {
  it('the example gateway config of docs/adapters/knx.md is valid', () => {
    const md = readFileSync('docs/adapters/knx.md', 'utf8');
    const yaml = /```yaml\n([\s\S]*?)```/.exec(md)?.[1];
    const cfg = gatewayConfigSchema.parse(parseYaml(yaml!));
    const knx = knxAdapterConfigSchema.parse(cfg.adapters[0]);
    expect(knx.devices.map((d) => d.groupObjects.length)).toEqual([2, 2]);
    expect(() => new KnxAdapter(knx)).not.toThrow();
  });
});

describe('KNX adapter on knxd', () => {
  let knxd: Knxd;
  let sim: KnxSim;
  let light: KnxSimDevice;
  let dimmer: KnxSimDevice;
  let adapter: KnxAdapter;
  let listener: GroupListener;
  const attached: string[] = [];
  const detached: string[] = [];
  const events: AdapterEvents = { attached: (d) => attached.push(d.address), detached: (a) => detached.push(a) };
  const until = async (cond: () => boolean, what: string, ms = 5000): Promise<void> => {
    const end = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const plugin = (a: string): TreePlugin => adapter.device(a)!;
  const get = async (a: string, path: string): Promise<string | undefined> => (await plugin(a).get(path, {}))?.data;
  const put = (a: string, path: string, data: string) => plugin(a).replace!(path, { format: 'chr', type: 'text/plain', data }, {});

  beforeAll(async () => {
    knxd = await startKnxd();
    sim = new KnxSim({ port: knxd.port });
    light = await sim.add({
      address: '1.1.5',
      objects: [
        { ga: '1/2/3', dpt: 'DPT1.001', value: 'off' },
        { ga: '1/2/4', dpt: 'DPT9.001', value: '21.5', write: false },
      ],
    });
    dimmer = await sim.add({
      address: '1.1.6',
      objects: [
        { ga: '1/3/1', dpt: 'DPT5.001', value: '20' },
        { ga: '1/2/3', dpt: 'DPT1.001', value: 'off', read: false }, // also switched by the light's group address
      ],
    });
    await sim.add({ address: '1.1.7', objects: [{ ga: '2/0/1', dpt: 'DPT7', value: '1234' }] });
    listener = await listenGroups(knxd);
    adapter = new KnxAdapter(
      knxAdapterConfigSchema.parse({
        type: 'knx',
        gateway: `127.0.0.1:${knxd.port}`,
        physAddr: '1.1.250',
        localAddress: '127.0.0.1',
        readTimeoutMs: 400,
        probeIntervalMs: 250,
        heartbeatMs: 500,
        devices: [
          {
            address: '1.1.5',
            name: 'Hall light',
            groupObjects: [
              { ga: '1/2/3', dpt: 'DPT1.001', name: 'switch' },
              { ga: '1/2/4', dpt: 'DPT9.001', name: 'temperature', write: false },
            ],
          },
          { address: '1.1.6', groupObjects: [{ ga: '1/3/1', dpt: 'DPT5.001' }, { ga: '1/2/3', dpt: 'DPT1.001', read: false }] },
        ],
      }),
    );
    await adapter.start(events);
    await adapter.connected(5000);
  });

  afterAll(async () => {
    await adapter?.stop();
    await listener?.stop();
    await sim?.stop();
    await knxd?.stop();
  });

  it('reports the configured devices attached once they answer a probe, and exposes their subtree', async () => {
    await until(() => attached.includes('1.1.5') && attached.includes('1.1.6'), 'both devices attached');
    expect(adapter.linkState).toBe('connected');
    expect(await plugin('1.1.5').children('', {})).toEqual(['DevInfo', 'DevDetail', 'KNX']);
    expect(await get('1.1.5', 'DevInfo/DevId')).toBe('urn:dev:knx:1.1.5');
    expect(await get('1.1.5', 'KNX/IndividualAddress')).toBe('1.1.5');
    expect(await get('1.1.5', 'KNX/Name')).toBe('Hall light');
    expect(await plugin('1.1.5').children('KNX/GroupObjects', {})).toEqual(['1-2-3', '1-2-4']);
    expect(await plugin('1.1.5').children('KNX/GroupObjects/1-2-3', {})).toEqual(['Value', 'Type', 'Name', 'Flags', 'LastValue', 'LastUpdate', 'LastSource']);
    expect(await get('1.1.5', 'KNX/GroupObjects/1-2-4/Type')).toBe('DPT9.001');
    expect(await get('1.1.5', 'KNX/GroupObjects/1-2-4/Flags')).toBe('r');
    expect(await plugin('1.1.5').get('KNX/GroupObjects/9-9-9/Value', {})).toBeUndefined();
    expect(adapter.device('9.9.9')).toBeUndefined();
  });

  it('reads a group object with GroupValue_Read answered by the simulated device', async () => {
    // (1/2/4: the probes ask for 1/2/3.)
    const before = light.readsOf.get('1/2/4') ?? 0;
    expect(await get('1.1.5', 'KNX/GroupObjects/1-2-4/Value')).toBe('21.5');
    expect(light.readsOf.get('1/2/4')).toBe(before + 1);
    await light.set('1/2/4', '-3.5');
    expect(await get('1.1.5', 'KNX/GroupObjects/1-2-4/Value')).toBe('-3.5');
    expect(await get('1.1.6', 'KNX/GroupObjects/1-3-1/Value')).toBe('20');
    // The read's response fed the last-value cache.
    expect(await get('1.1.5', 'KNX/GroupObjects/1-2-4/LastValue')).toBe('-3.5');
    expect(await get('1.1.5', 'KNX/GroupObjects/1-2-4/LastSource')).toBe('1.1.5');
  });

  it('writes with GroupValue_Write: the simulated device applies it and knxtool sees the telegram', async () => {
    const n = listener.lines.length;
    expect((await put('1.1.5', 'KNX/GroupObjects/1-2-3/Value', 'on'))?.status).toBe(200);
    // L_Data.con says the telegram is on the bus; the device gets it a moment later.
    await until(() => light.value('1/2/3') === 'on', 'the light to switch on');
    await until(() => listener.lines.slice(n).some((l) => /Write from 1\.1\.250 to 1\/2\/3: 01/.test(l)), 'knxtool to see the write');
    expect(await get('1.1.5', 'KNX/GroupObjects/1-2-3/Value')).toBe('on');

    await put('1.1.6', 'KNX/GroupObjects/1-3-1/Value', '75');
    await until(() => dimmer.value('1/3/1') === '75', 'the dimmer at 75 %');
    await until(() => listener.lines.some((l) => /to 1\/3\/1: BF/i.test(l)), 'knxtool to see 75 % as 0xBF');
    expect(await get('1.1.6', 'KNX/GroupObjects/1-3-1/LastValue')).toBe('75');
    expect(await get('1.1.6', 'KNX/GroupObjects/1-3-1/LastSource')).toBe('1.1.250');
  });

  it('refuses bad values with 400 before anything goes on the bus, and read-only objects with 405', async () => {
    await new Promise((r) => setTimeout(r, 100));
    const n = listener.lines.length;
    const writes = light.writes.length;
    expect(await status(() => put('1.1.5', 'KNX/GroupObjects/1-2-3/Value', 'maybe'))).toBe(400);
    expect(await status(() => put('1.1.6', 'KNX/GroupObjects/1-3-1/Value', '150'))).toBe(400);
    expect(await status(() => put('1.1.5', 'KNX/GroupObjects/1-2-4/Value', '20'))).toBe(405);
    expect(await status(() => put('1.1.5', 'KNX/GroupObjects/1-2-4/Type', 'DPT1'))).toBe(405);
    expect(await status(() => put('1.1.5', 'DevInfo/Man', 'x'))).toBe(405);
    await new Promise((r) => setTimeout(r, 200));
    expect(listener.lines.slice(n).filter((l) => /^Write/.test(l))).toEqual([]);
    expect(light.writes.length).toBe(writes);
    // A write-only object answers Get with no data and without Get access (the tree answers 405).
    expect((await plugin('1.1.6').get('KNX/GroupObjects/1-2-3/Value', {}))?.access).toEqual(['Replace']);
  });

  it('a DM Replace through the tree is one GroupValue_Write and no GroupValue_Read (TreePlugin.describe)', async () => {
    // An adapter of its own, without probes: every telegram from 1.1.252 is one of the DM commands below.
    const quiet = new KnxAdapter(
      knxAdapterConfigSchema.parse({
        type: 'knx',
        gateway: `127.0.0.1:${knxd.port}`,
        physAddr: '1.1.252',
        localAddress: '127.0.0.1',
        readTimeoutMs: 400,
        probeIntervalMs: 0,
        devices: [
          { address: '1.1.5', groupObjects: [{ ga: '1/2/3', dpt: 'DPT1.001' }, { ga: '1/2/4', dpt: 'DPT9.001', write: false }] },
          { address: '1.1.6', groupObjects: [{ ga: '1/3/1', dpt: 'DPT5.001' }, { ga: '1/2/3', dpt: 'DPT1.001', read: false }] },
        ],
      }),
    );
    await quiet.start({ attached: () => {}, detached: () => {} });
    try {
      await quiet.connected(5000);
      const bus = (): string[] => listener.lines.filter((l) => / from 1\.1\.252 /.test(l));
      /** Waits until no telegram from 1.1.252 arrived for a while; the telegrams since `n`. */
      const settled = async (n: number): Promise<string[]> => {
        await new Promise((r) => setTimeout(r, 200));
        return bus().slice(n);
      };

      // The metadata describe gives is get's, without the value: same format, type, access, ACL.
      const meta = (v: PluginNodeView | undefined) => v && { format: v.format, type: v.type, access: v.access, acl: v.acl };
      for (const a of ['1.1.5', '1.1.6']) {
        const p = quiet.device(a)!;
        const walk = async (path: string): Promise<void> => {
          const [g, dsc] = [await p.get(path, LOCAL), await p.describe!(path, LOCAL)];
          expect(meta(dsc), `${a} ${path}`).toEqual(meta(g));
          if (!/\/Value$/.test(path)) expect(dsc, `${a} ${path}`).toEqual(g);
          for (const c of g?.format === 'node' ? await p.children(path, LOCAL) : []) await walk(path === '' ? c : `${path}/${c}`);
        };
        await walk('');
        for (const missing of ['KNX/GroupObjects/7-7-7/Value', 'KNX/GroupObjects/1-3-1/Nope', 'KNX/Nope', 'Nope']) expect(await p.describe!(missing, LOCAL)).toBeUndefined();
      }
      await settled(0);

      const { tree } = await memoryTree();
      const ctx: TreeContext = { serverId: 'srv' };
      for (const [at, a] of [
        ['./Dimmer', '1.1.6'],
        ['./Light', '1.1.5'],
      ] as const) {
        await tree.add(at, { format: 'node', acl: 'Get=srv&Replace=srv' }, LOCAL);
        await tree.mount(at, quiet.device(a)!);
      }
      const sent = { ...quiet.sent };
      let n = bus().length;
      expect((await tree.replace('./Dimmer/KNX/GroupObjects/1-3-1/Value', { format: 'chr', data: '60' }, ctx)).status).toBe(200);
      await until(() => dimmer.value('1/3/1') === '60', 'the dimmer at 60 %');
      expect(await settled(n)).toEqual([expect.stringMatching(new RegExp(`^Write from 1\\.1\\.252 to 1/3/1: ${hex('DPT5.001', '60')}$`, 'i'))]);
      expect(quiet.sent).toEqual({ ...sent, writes: sent.writes + 1 });
      expect(dimmer.writes.filter((w) => w.src === '1.1.252').map((w) => [w.ga, w.value])).toEqual([['1/3/1', '60']]);

      // The checks still hold, on metadata alone and with nothing on the bus: read-only 405, missing 404.
      n = bus().length;
      expect(await status(tree.replace('./Light/KNX/GroupObjects/1-2-4/Value', { format: 'chr', data: '20' }, ctx))).toBe(405);
      expect(await status(tree.replace('./Light/KNX/GroupObjects/7-7-7/Value', { format: 'chr', data: '20' }, ctx))).toBe(404);
      expect(await status(tree.replace('./Light/KNX/GroupObjects/1-2-3/Value', { format: 'chr', data: 'on' }, { serverId: 'other' }))).toBe(425);
      expect(await settled(n)).toEqual([]);
      // A Get is still the one native read.
      expect((await tree.get('./Dimmer/KNX/GroupObjects/1-3-1/Value', ctx)).data).toBe('60');
      expect((await settled(n)).filter((l) => /^Read/.test(l))).toHaveLength(1);

      // Without describe the same Replace starts with a GroupValue_Read (the tree asks get for the node).
      const full = quiet.device('1.1.6')!;
      await tree.add('./Old', { format: 'node', acl: 'Get=srv&Replace=srv' }, LOCAL);
      await tree.mount('./Old', { get: full.get, children: full.children, replace: full.replace });
      n = bus().length;
      expect((await tree.replace('./Old/KNX/GroupObjects/1-3-1/Value', { format: 'chr', data: '40' }, ctx)).status).toBe(200);
      const old = await settled(n);
      expect(old.filter((l) => /^Write/.test(l))).toHaveLength(1);
      expect(old.filter((l) => /^Read/.test(l)).length).toBeGreaterThanOrEqual(1);
    } finally {
      await quiet.stop();
    }
  });

  it('keeps the last value of telegrams from other clients (knxtool groupwrite)', async () => {
    await knxtoolWrite(knxd, '1/2/4', [0x0d, 0x05]);
    await until(() => light.writes.some((w) => w.ga === '1/2/4'), 'the device to see the write');
    await until(() => adapter.device('1.1.5') !== undefined, 'x');
    let last = '';
    await until(() => {
      void get('1.1.5', 'KNX/GroupObjects/1-2-4/LastValue').then((v) => (last = v ?? ''));
      return last === decodeValue(parseDpt('DPT9.001'), Buffer.from([0x0d, 0x05]));
    }, 'LastValue from knxtool');
    expect(await get('1.1.5', 'KNX/GroupObjects/1-2-4/LastSource')).toMatch(/^0\.0\.\d+$/);
    expect(new Date((await get('1.1.5', 'KNX/GroupObjects/1-2-4/LastUpdate'))!).getTime()).toBeGreaterThan(Date.now() - 5000);
    // The light has no write flag on 1/2/4: it saw the telegram but kept its value.
    expect(light.writes.find((w) => w.ga === '1/2/4')?.applied).toBe(false);
  });

  it('writes one group address to several devices with ONE GroupValue_Write (multicast)', async () => {
    await light.set('1/2/3', 'off');
    await dimmer.set('1/2/3', 'off');
    await new Promise((r) => setTimeout(r, 100));
    const n = listener.lines.length;
    const before = adapter.sent.writes;
    const r = await adapter.multicast({ addresses: ['1.1.5', '1.1.6', '9.9.9'], kind: 'Replace', path: 'KNX/GroupObjects/1-2-3/Value', data: 'on' });
    expect([...r.entries()].sort()).toEqual([
      ['1.1.5', { status: 200 }],
      ['1.1.6', { status: 200 }],
    ]);
    expect(adapter.sent.writes - before).toBe(1);
    await until(() => light.value('1/2/3') === 'on', 'the light to switch');
    await until(() => dimmer.value('1/2/3') === 'on', 'the dimmer to switch too');
    await new Promise((r) => setTimeout(r, 200));
    expect(listener.lines.slice(n).filter((l) => /^Write from 1\.1\.250 to 1\/2\/3/.test(l))).toHaveLength(1);
    // A value the DPT cannot carry is left to the members' own legs (each answers 400).
    expect((await adapter.multicast({ addresses: ['1.1.5', '1.1.6'], kind: 'Replace', path: 'KNX/GroupObjects/1-2-3/Value', data: 'dim' })).size).toBe(0);
    // A single member is not a multicast.
    expect((await adapter.multicast({ addresses: ['1.1.5'], kind: 'Replace', path: 'KNX/GroupObjects/1-2-3/Value', data: 'off' })).size).toBe(0);
  });

  it('answers 461 when the device is silent, reports it detached when it vanishes, attached when it returns', async () => {
    light.behave({ silent: true });
    const t0 = Date.now();
    expect(await status(get('1.1.5', 'KNX/GroupObjects/1-2-4/Value'))).toBe(461);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(380);
    await until(() => detached.includes('1.1.5'), 'the silent light to be detached');
    light.behave({});
    const n = attached.filter((a) => a === '1.1.5').length;
    await until(() => attached.filter((a) => a === '1.1.5').length > n, 'the light attached again');

    await dimmer.vanish();
    await until(() => detached.includes('1.1.6'), 'the vanished dimmer to be detached');
    expect(await status(get('1.1.6', 'KNX/GroupObjects/1-3-1/Value'))).toBe(461);
    await dimmer.connect();
    await until(() => attached.filter((a) => a === '1.1.6').length >= 2, 'the dimmer attached again');
  });

  it('detects a device that ignores writes when verifyWrites is on, via the read-back', async () => {
    // Latency shows the concurrency cap too: with maxConcurrency 1 two reads take two round trips.
    const strict = new KnxAdapter(
      knxAdapterConfigSchema.parse({
        type: 'knx',
        gateway: `127.0.0.1:${knxd.port}`,
        physAddr: '1.1.251',
        readTimeoutMs: 500,
        probeIntervalMs: 0,
        verifyWrites: true,
        maxConcurrency: 1,
        devices: [{ address: '1.1.5', groupObjects: [{ ga: '1/2/3', dpt: 'DPT1.001' }, { ga: '1/2/4', dpt: 'DPT9.001', write: false }] }],
      }),
    );
    await strict.start({ attached: () => {}, detached: () => {} });
    try {
      await strict.connected(5000);
      const p = strict.device('1.1.5')!;
      light.behave({ rejectWrites: true });
      const err = await Promise.resolve(p.replace!('KNX/GroupObjects/1-2-3/Value', { format: 'chr', type: 'text/plain', data: light.value('1/2/3') === 'on' ? 'off' : 'on' }, {})).catch((e: DmStatusError) => e);
      expect((err as DmStatusError).code).toBe('KNX_WRITE_IGNORED');
      light.behave({ latencyMs: 150 });
      expect((await p.replace!('KNX/GroupObjects/1-2-3/Value', { format: 'chr', type: 'text/plain', data: 'off' }, {}))?.status).toBe(200);
      const t0 = Date.now();
      // 1/2/4: the other adapter probes 1/2/3, whose responses any reader of 1/2/3 would share.
      await Promise.all([p.get('KNX/GroupObjects/1-2-4/Value', {}), p.get('KNX/GroupObjects/1-2-4/Value', {})]);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    } finally {
      light.behave({});
      await strict.stop();
    }
  });

  it('associates a device from AMode-006 parameters after it answers a probe, and dissociates it', async () => {
    expect(adapter.associationParams.find((p) => p.required)?.name).toBe('IndividualAddress');
    const dev = await adapter.associate({ IndividualAddress: '1.1.7', GroupObjects: '2/0/1:DPT7:rw', Name: 'Counter' });
    expect(dev).toMatchObject({ address: '1.1.7', deviceId: 'urn:dev:knx:1.1.7' });
    expect(attached).toContain('1.1.7');
    expect(await get('1.1.7', 'KNX/GroupObjects/2-0-1/Value')).toBe('1234');
    expect(await get('1.1.7', 'KNX/Name')).toBe('Counter');

    // Nobody at 1.1.9: 461, and the adapter does not keep it.
    expect(await status(adapter.associate({ IndividualAddress: '1.1.9', GroupObjects: '2/0/9:DPT1:r' }))).toBe(461);
    expect(adapter.device('1.1.9')).toBeUndefined();
    expect(await status(adapter.associate({ IndividualAddress: '1.1', GroupObjects: '' }))).toBe(400);
    expect(await status(adapter.associate({ IndividualAddress: '1.1.8', GroupObjects: '2/0/1:DPT77' }))).toBe(400);
    expect(await status(adapter.associate({}))).toBe(412);

    await adapter.dissociate('1.1.7');
    expect(detached).toContain('1.1.7');
    expect(adapter.device('1.1.7')).toBeUndefined();
    expect(await status(adapter.dissociate('1.1.7'))).toBe(404);
  });

  it('validates settings, and a new IndividualAddress reconnects the link', async () => {
    expect(adapter.getSettings()).toMatchObject({ Mode: 'tunnelling', GatewayAddr: `127.0.0.1:${knxd.port}`, IndividualAddress: '1.1.250' });
    expect(await status(adapter.configure({ Mode: 'carrier-pigeon' }))).toBe(400);
    expect(await status(adapter.configure({ IndividualAddress: '16.0.1' }))).toBe(400);
    expect(await status(adapter.configure({ GatewayAddr: 'host:99999' }))).toBe(400);
    expect(await status(adapter.configure({ Colour: 'red' }))).toBe(404);
    expect(adapter.getSettings().IndividualAddress).toBe('1.1.250');
    await adapter.configure({ IndividualAddress: '1.1.249' });
    await adapter.connected(5000);
    const n = listener.lines.length;
    await put('1.1.5', 'KNX/GroupObjects/1-2-3/Value', 'on');
    await until(() => listener.lines.slice(n).some((l) => /Write from 1\.1\.249 to 1\/2\/3/.test(l)), 'a write from the new address');
    const probe = await adapter.operations.find((o) => o.name === 'Probe')!.run(undefined);
    expect(probe).toEqual({ status: 200, data: '2/2' });
  });
});
