/**
 * The BLE adapter against the simulated radio world, through noble's real object layer (noble's
 * Noble/Peripheral/Characteristic over the simulator's bindings): scanning and adoption by Filter,
 * GATT read/write/notify through the DM subtree mounted in a real DM tree, pairing with the right
 * and wrong passkey, the link cap (peak links counted in the simulator), a vanished peripheral
 * detached, a link dropping mid-read (461, then recovery), the radio powering off (503, then
 * reconnect), settings, and stop() releasing every handle (child processes must exit by themselves).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BleAdapter, bleAdapterConfigSchema, parseFilter } from '../../adapters/ble/adapter.ts';
import { normalizeUuid, SIG_CODECS } from '../../adapters/ble/gatt.ts';
import { LIGHT_IDENTIFY, LIGHT_ONOFF, LIGHT_SERVICE, LOCK_SERVICE, LOCK_STATE } from '../../adapters/ble/sim.ts';
import type { AdapterDevice } from '../../adapters/contract.ts';
import type { DmTree } from '../../src/tree/tree.ts';
import { memoryTree, statusOfCall } from '../tree/helpers.ts';

const SENSOR = 'a4:c1:38:00:00:01';
const LIGHT = 'a4:c1:38:00:00:02';
const LOCK = 'a4:c1:38:00:00:03';
const PASSKEY = '493817';
const SRV = { serverId: 'srv' };

let adapter: BleAdapter | undefined;
afterEach(async () => {
  await adapter?.stop();
  adapter = undefined;
});

/** Polls until `cond` holds. */
async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A started adapter over a simulated world, with its events recorded. */
async function startBle(extra: Record<string, unknown> = {}, peripherals?: Record<string, unknown>[]) {
  const a = new BleAdapter(
    bleAdapterConfigSchema.parse({
      type: 'ble',
      bindings: 'sim',
      filter: 'service:181a',
      scanIntervalMs: 150,
      scanWindowMs: 100,
      idleDisconnectMs: 200,
      connectTimeoutMs: 300,
      opTimeoutMs: 400,
      backoff: { initialMs: 20, maxMs: 100 },
      formats: { [LIGHT_ONOFF]: 'bool' },
      sim: {
        peripherals: peripherals ?? [
          { address: SENSOR, kind: 'sensor' },
          { address: LIGHT, kind: 'light' },
          { address: LOCK, kind: 'lock', passkey: PASSKEY },
        ],
        advertiseIntervalMs: 20,
        latencyMs: 2,
      },
      ...extra,
    }),
  );
  adapter = a;
  const attached: AdapterDevice[] = [];
  const detached: string[] = [];
  const links: string[] = [];
  await a.start({ attached: (d) => attached.push(d), detached: (x) => detached.push(x), link: (s) => links.push(s) });
  return { a, sim: a.simulator!, attached, detached, links };
}

/** A DM tree with the device's subtree mounted at ./GwMO/Devices/d1, as the gateway does. */
async function mounted(a: BleAdapter, address: string): Promise<DmTree> {
  const { tree } = await memoryTree();
  await tree.mount('./GwMO/Devices/d1', a.device(address)!, { acl: 'Get=srv&Replace=srv&Exec=srv' });
  return tree;
}
const chr = (s: string, c: string, leaf = 'Value'): string => `./GwMO/Devices/d1/BLE/Services/${s}/Characteristics/${c}/${leaf}`;

describe('BLE adapter (noble over the simulated radio)', () => {
  it('scans: the Filter adopts matching peripherals, the rest are only discovered; Scan lists them', async () => {
    const { a, attached } = await startBle();
    await until(() => attached.length >= 1, 'the sensor to be adopted');
    expect(a.linkState).toBe('connected');
    expect(attached[0]).toMatchObject({ address: SENSOR, deviceId: 'urn:dev:mac:a4c138000001', mod: 'Thermo-0001' });
    const scan = await a.operations.find((o) => o.name === 'Scan')!.run('120');
    expect(scan.status).toBe(200);
    const lines = scan.data!.split('\n');
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^${SENSOR} -\\d+ attached Thermo-0001$`)));
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^${LIGHT} -\\d+ discovered Lamp-0002$`)));
    // Only the sensor joined; the light and the lock wait for an association.
    expect(attached.map((d) => d.address)).toEqual([SENSOR]);
    expect(a.device(LIGHT)).toBeUndefined();
    expect(await statusOfCall(a.operations[0]!.run('soon'))).toBe(400);
  });

  it('reads, writes and subscribes through the DM subtree: SIG values decoded, vendor bytes, 404/405', async () => {
    const { a, sim, attached } = await startBle();
    await until(() => attached.length >= 1, 'the sensor');
    const tree = await mounted(a, SENSOR);
    const temp = await tree.get(chr('181a', '2a6e'), SRV);
    expect(temp).toMatchObject({ format: 'float', data: '21.50' });
    expect((await tree.get(chr('180f', '2a19'), SRV)).data).toBe('87');
    expect((await tree.get(chr('180f', '2a19', 'Properties'), SRV)).data).toBe('read,notify');
    // The same characteristic by its long UUID form.
    expect((await tree.get('./GwMO/Devices/d1/BLE/Services/0000180F-0000-1000-8000-00805F9B34FB/Characteristics/2A19/Value', SRV)).data).toBe('87');
    expect((await tree.get('./GwMO/Devices/d1/BLE/Services', SRV)).data.split('/')).toEqual(['1800', '181a', '180f', '180a']);
    expect((await tree.get('./GwMO/Devices/d1/BLE/Services/181a/Characteristics/2a6e', SRV)).data).toBe('Name/Properties/Value/Notify/LastValue/LastUpdate');
    // Identity from Device Information, learnt at the first connection.
    expect((await tree.get('./GwMO/Devices/d1/DevInfo/Man', SRV)).data).toBe('gwmo-sim');
    expect((await tree.get('./GwMO/Devices/d1/DevDetail/FwV', SRV)).data).toBe('1.2.0');
    expect((await tree.get('./GwMO/Devices/d1/BLE/Address', SRV)).data).toBe(SENSOR);
    expect(Number((await tree.get('./GwMO/Devices/d1/BLE/RSSI', SRV)).data)).toBeLessThan(-50);
    // Unmapped UUIDs: 404. A read-only characteristic: Replace 405.
    expect(await statusOfCall(tree.get(chr('181a', '2a99'), SRV))).toBe(404);
    expect(await statusOfCall(tree.get(chr('1234', '2a6e'), SRV))).toBe(404);
    expect(await statusOfCall(tree.get('./GwMO/Devices/d1/BLE/Services/nonsense', SRV))).toBe(404);
    expect(await statusOfCall(tree.replace(chr('180f', '2a19'), { data: '50', format: 'int' }, SRV))).toBe(405);

    // Notifications: subscribe, the sensor reports, LastValue/LastUpdate follow; the link stays up.
    expect((await tree.get(chr('181a', '2a6e', 'Notify'), SRV)).data).toBe('false');
    await tree.replace(chr('181a', '2a6e', 'Notify'), { data: 'true', format: 'bool' }, SRV);
    expect((await tree.get(chr('181a', '2a6e', 'Notify'), SRV)).data).toBe('true');
    sim.setTemperature(SENSOR, 23.25);
    await until(async () => (await tree.get(chr('181a', '2a6e', 'LastValue'), SRV)).data === '23.25', 'the notification');
    expect((await tree.get(chr('181a', '2a6e', 'LastUpdate'), SRV)).data).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    await new Promise((r) => setTimeout(r, 350)); // past IdleDisconnectMs: a subscribed link is kept
    expect(sim.connections).toBe(1);
    expect((await tree.get('./GwMO/Devices/d1/BLE/Connected', SRV)).data).toBe('true');
    await tree.replace(chr('181a', '2a6e', 'Notify'), { data: 'false', format: 'bool' }, SRV);
    await until(() => sim.connections === 0, 'the idle link to be dropped');
    expect(await statusOfCall(tree.replace(chr('181a', '2a6e', 'Notify'), { data: 'maybe', format: 'chr' }, SRV))).toBe(400);
  });

  it('associates with a Profile, writes a vendor characteristic and sees the light switch; write-only is 405 on Get', async () => {
    const { a, sim, attached } = await startBle();
    await until(() => attached.length >= 1, 'the sensor');
    // The light does not expose the lock's service: 406, not adopted.
    expect(await statusOfCall(a.associate({ Address: LIGHT, Profile: LOCK_SERVICE }))).toBe(406);
    expect(a.device(LIGHT)).toBeUndefined();
    const dev = await a.associate({ Address: LIGHT.toUpperCase(), Profile: LIGHT_SERVICE });
    expect(dev).toMatchObject({ address: LIGHT, deviceId: 'urn:dev:mac:a4c138000002', man: 'gwmo-sim', mod: 'LAMP-2' });
    expect(attached.at(-1)).toEqual(dev);
    const tree = await mounted(a, LIGHT);
    expect((await tree.get(chr(LIGHT_SERVICE, LIGHT_ONOFF), SRV)).data).toBe('false');
    const before = { reads: sim.inspect(LIGHT)!.reads, writes: sim.inspect(LIGHT)!.writes };
    await tree.replace(chr(LIGHT_SERVICE, LIGHT_ONOFF), { data: 'true', format: 'bool' }, SRV);
    expect(sim.lightOn(LIGHT)).toBe(true);
    // A Replace is one GATT write: the tree checks the node on its metadata (describe), no read first.
    expect(sim.inspect(LIGHT)!).toMatchObject({ reads: before.reads, writes: before.writes + 1 });
    expect((await tree.get(chr(LIGHT_SERVICE, LIGHT_ONOFF), SRV)).data).toBe('true');
    expect(await statusOfCall(tree.replace(chr(LIGHT_SERVICE, LIGHT_ONOFF), { data: 'bright', format: 'chr' }, SRV))).toBe(400);
    // An unknown vendor characteristic is bytes: hex in chr, or bin (base64).
    await tree.replace(chr(LIGHT_SERVICE, LIGHT_IDENTIFY), { data: '05', format: 'chr' }, SRV);
    expect(sim.inspect(LIGHT)!.services.get(LIGHT_SERVICE)!.characteristics.get(LIGHT_IDENTIFY)!.value).toEqual(Buffer.from([5]));
    const reads = sim.inspect(LIGHT)!.reads;
    expect(await statusOfCall(tree.get(chr(LIGHT_SERVICE, LIGHT_IDENTIFY), SRV))).toBe(405); // write-only: not readable
    expect(sim.inspect(LIGHT)!.reads).toBe(reads); // and nothing went over the air for it
    // The peripheral refusing writes: its ATT error reaches the server as 500.
    sim.behave(LIGHT, { refuseWrites: true });
    expect(await statusOfCall(tree.replace(chr(LIGHT_SERVICE, LIGHT_ONOFF), { data: 'false', format: 'bool' }, SRV))).toBe(500);
    expect(sim.lightOn(LIGHT)).toBe(true);
    sim.behave(LIGHT, undefined);
    // Bad association parameters get clear statuses.
    expect(await statusOfCall(a.associate({ Address: 'kitchen' }))).toBe(400);
    expect(await statusOfCall(a.associate({ Address: LIGHT, Passkey: '12ab' }))).toBe(400);
    expect(await statusOfCall(a.associate({ Address: LIGHT, Profile: 'not-a-uuid' }))).toBe(400);
    expect(await statusOfCall(a.associate({ Address: 'a4:c1:38:00:00:99' }))).toBe(461); // never advertises
    expect(await statusOfCall(a.dissociate('a4:c1:38:00:00:99'))).toBe(404);
  });

  it('pairs with the passkey: a wrong one is 401 and adopts nothing; the right one bonds; dissociate unpairs', async () => {
    const { a, sim, attached, detached } = await startBle();
    const wrong = await a.associate({ Address: LOCK, Passkey: '000000', Profile: LOCK_SERVICE }).catch((e: unknown) => e as { status: number; code: string; message: string });
    expect(wrong).toMatchObject({ status: 401, code: 'BLE_PAIRING_FAILED' });
    expect((wrong as { message: string }).message).not.toContain('000000');
    expect(a.device(LOCK)).toBeUndefined();
    expect(sim.bonded(LOCK)).toBe(false);
    const dev = await a.associate({ Address: LOCK, Passkey: PASSKEY, Profile: LOCK_SERVICE });
    expect(dev.deviceId).toBe('urn:dev:mac:a4c138000003');
    expect(sim.bonded(LOCK)).toBe(true);
    expect(attached.map((d) => d.address)).toContain(LOCK);
    const tree = await mounted(a, LOCK);
    // The lock's state needs an authenticated link: readable now that it is bonded.
    expect((await tree.get(chr(LOCK_SERVICE, LOCK_STATE), SRV)).data).toBe('AQ==');
    await a.dissociate(LOCK);
    expect(detached).toContain(LOCK);
    expect(sim.bonded(LOCK)).toBe(false);
    expect(a.device(LOCK)).toBeUndefined();
    await until(() => sim.connections === 0, 'the lock link to close');
    // Associated again without a passkey: no bond, so the peripheral refuses the read (401).
    await a.associate({ Address: LOCK });
    expect(await statusOfCall((await mounted(a, LOCK)).get(chr(LOCK_SERVICE, LOCK_STATE), SRV))).toBe(401);
    // The PIN alias is the same passkey.
    await a.associate({ Address: LOCK, PIN: PASSKEY });
    expect(sim.bonded(LOCK)).toBe(true);
  });

  it('never holds more links than maxConcurrency: parallel reads of six sensors queue for two links', async () => {
    const six = Array.from({ length: 6 }, (_, i) => ({ address: `a4:c1:38:00:01:0${i}`, kind: 'sensor' }));
    const { a, sim, attached } = await startBle({ maxConcurrency: 2, idleDisconnectMs: 0, opTimeoutMs: 2000, connectTimeoutMs: 1000 }, six);
    await until(() => attached.length === 6, 'six sensors');
    sim.latencyMs = 15;
    sim.resetPeak();
    const trees = await Promise.all(six.map((p) => mounted(a, p.address)));
    const values = await Promise.all(trees.map((t) => t.get(chr('180f', '2a19'), SRV)));
    expect(values.map((v) => v.data)).toEqual(Array(6).fill('87'));
    expect(sim.peakConnections).toBe(2); // at most two, and two really ran side by side
    expect(a.connections).toBeLessThanOrEqual(2);
    await until(() => sim.connections === 0, 'the links to close');
  });

  it('a peripheral that vanishes is detached (it cannot be connected), and attached again when back', async () => {
    const { a, sim, attached, detached } = await startBle({ lostAfterMs: 200 });
    await until(() => attached.length >= 1, 'the sensor');
    const tree = await mounted(a, SENSOR);
    expect((await tree.get(chr('180f', '2a19'), SRV)).data).toBe('87');
    sim.vanish(SENSOR);
    expect(await statusOfCall(tree.get(chr('180f', '2a19'), SRV))).toBe(461);
    await until(() => detached.includes(SENSOR), 'the sensor to be detached', 5_000);
    sim.comeBack(SENSOR);
    await until(() => attached.filter((d) => d.address === SENSOR).length === 2, 'the sensor to come back');
    expect((await tree.get(chr('180f', '2a19'), SRV)).data).toBe('87');
  });

  it('a link dropping mid-read is 461, a peripheral that never answers is 461; the next read reconnects', async () => {
    const { a, sim, attached } = await startBle({ idleDisconnectMs: 5_000 });
    await until(() => attached.length >= 1, 'the sensor');
    const tree = await mounted(a, SENSOR);
    expect((await tree.get(chr('181a', '2a6e'), SRV)).data).toBe('21.50');
    const attempts = sim.connectAttempts;
    sim.behave(SENSOR, { dropOnNextOp: true });
    const dropped = await tree.get(chr('181a', '2a6e'), SRV).catch((e: unknown) => e as { status: number; code: string });
    expect(dropped).toMatchObject({ status: 461, code: 'BLE_LINK_LOST' });
    expect((await tree.get(chr('181a', '2a6e'), SRV)).data).toBe('21.50');
    expect(sim.connectAttempts).toBe(attempts + 1); // recovered over a new link
    sim.behave(SENSOR, { silent: true });
    const silent = await tree.get(chr('181a', '2a6f'), SRV).catch((e: unknown) => e as { status: number; code: string });
    expect(silent).toMatchObject({ status: 461, code: 'BLE_TIMEOUT' });
    sim.behave(SENSOR, undefined);
    expect((await tree.get(chr('181a', '2a6f'), SRV)).data).toBe('45.20');
    // Connections failing (HCI 0x3E): once the open link is gone, the peripheral cannot be reached.
    sim.behave(SENSOR, { failConnect: true });
    await a.dissociate(SENSOR);
    expect(sim.connections).toBe(0);
    expect(await statusOfCall(a.associate({ Address: SENSOR }))).toBe(461);
  });

  it('the radio powering off is link loss: devices detached, operations 503, reconnect with backoff', async () => {
    const { a, sim, attached, detached, links } = await startBle();
    await until(() => attached.length >= 1, 'the sensor');
    const tree = await mounted(a, SENSOR);
    sim.setRadio(false);
    await until(() => a.linkState === 'backoff', 'backoff');
    expect(detached).toContain(SENSOR);
    expect(await statusOfCall(tree.get(chr('180f', '2a19'), SRV))).toBe(503);
    expect(await statusOfCall(a.operations[0]!.run(undefined))).toBe(503);
    sim.setRadio(true);
    await until(() => a.linkState === 'connected', 'the link to come back');
    await until(() => attached.filter((d) => d.address === SENSOR).length === 2, 'the sensor heard again');
    expect((await tree.get(chr('180f', '2a19'), SRV)).data).toBe('87');
    expect(links).toEqual(expect.arrayContaining(['connecting', 'connected', 'backoff']));
  });

  it('settings: ScanIntervalMs, Filter and IdleDisconnectMs validated as a whole; a new Filter adopts on the next advertisement', async () => {
    const { a, attached } = await startBle();
    expect(a.getSettings()).toEqual({ ScanIntervalMs: '150', Filter: 'service:181a', IdleDisconnectMs: '200' });
    expect(await statusOfCall(a.configure({ ScanIntervalMs: 'often' }))).toBe(400);
    expect(await statusOfCall(a.configure({ ScanIntervalMs: '100', Filter: 'colour:red' }))).toBe(400);
    expect(await statusOfCall(a.configure({ Channel: '3' }))).toBe(404);
    expect(a.getSettings()['ScanIntervalMs']).toBe('150'); // nothing applied from a refused batch
    await a.configure({ Filter: 'name:Lamp-, service:181a', ScanIntervalMs: '100' });
    await until(() => attached.some((d) => d.address === LIGHT), 'the light adopted by name');
    expect(attached.some((d) => d.address === LOCK)).toBe(false);
  });

  it('filters and UUIDs parse strictly; SIG codecs encode and refuse', () => {
    expect(parseFilter('service:0000181A-0000-1000-8000-00805F9B34FB; name:Thermo *')).toEqual({ any: true, services: ['181a'], names: ['Thermo'] });
    expect(() => parseFilter('service:xyz')).toThrow(/UUID/);
    expect(normalizeUuid(LIGHT_SERVICE.toUpperCase())).toBe(LIGHT_SERVICE);
    expect(normalizeUuid('0x2A19')).toBe('2a19');
    expect(normalizeUuid('nope')).toBeUndefined();
    expect(SIG_CODECS['2a6e']!.encode('-5.5', 'float')).toEqual(Buffer.from([0xda, 0xfd])); // -550 = 0xfdda
    expect(SIG_CODECS['2a6e']!.decode(Buffer.from([0xda, 0xfd]))).toBe('-5.50');
    expect(() => SIG_CODECS['2a19']!.encode('101', 'int')).toThrow(/0..100/);
    expect(SIG_CODECS['2a00']!.decode(Buffer.from('Thermo\0\0'))).toBe('Thermo');
  });
});

describe('BLE adapter stop() releases every handle', () => {
  const script = (bindings: string): string => `
import { BleAdapter, bleAdapterConfigSchema } from ${JSON.stringify(join(process.cwd(), 'adapters/ble/adapter.ts'))};
const a = new BleAdapter(bleAdapterConfigSchema.parse({
  type: 'ble', bindings: ${JSON.stringify(bindings)}, filter: '*', scanIntervalMs: 100, scanWindowMs: 50, idleDisconnectMs: 60000,
  poweredOnTimeoutMs: 300, backoff: { initialMs: 50, maxMs: 200 },
  sim: { peripherals: [{ address: 'a4:c1:38:00:00:01', kind: 'sensor' }], advertiseIntervalMs: 20 },
}));
const attached = [];
await a.start({ attached: (d) => attached.push(d), detached: () => {} });
if (${JSON.stringify(bindings)} === 'sim') {
  while (!attached.length) await new Promise((r) => setTimeout(r, 10));
  const p = a.device('a4:c1:38:00:00:01');
  const v = await p.get('BLE/Services/180f/Characteristics/2a19/Value', {});
  await p.replace('BLE/Services/181a/Characteristics/2a6e/Notify', { format: 'bool', type: 'text/plain', data: 'true' }, {});
  console.log('read', v.data, 'links', a.connections);
} else {
  await new Promise((r) => setTimeout(r, 400));
  console.log('state', a.linkState);
}
await a.stop();
console.log('stopped');
`;

  it.each(['sim', 'hci'])('with %s bindings, a process that started, used and stopped the adapter exits by itself', async (bindings) => {
    const dir = await mkdtemp(join(tmpdir(), 'gwmo-ble-'));
    try {
      const file = join(dir, 'run.mts');
      await writeFile(file, script(bindings));
      const started = Date.now();
      const child = spawn(process.execPath, ['bin/run-ts.js', file], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (out += d));
      const code = await new Promise<number | null>((resolve) => {
        const t = setTimeout(() => {
          child.kill('SIGKILL');
          resolve(-1);
        }, 8_000);
        child.on('exit', (c) => {
          clearTimeout(t);
          resolve(c);
        });
      });
      expect(out).toContain('stopped');
      expect(code, out).toBe(0);
      if (bindings === 'sim') expect(out).toContain('read 87 links 1');
      // No Bluetooth controller here: noble's HCI bindings report the radio unusable and the link backs off.
      else expect(out).toMatch(/state (backoff|connecting)/);
      expect(Date.now() - started).toBeLessThan(8_000);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
