/**
 * Acceptance: durability of the command queue. Commands queued before a server restart are
 * delivered after it (same LevelDB data dir, same config), results recorded before the restart are
 * still listed, and a command whose session died before its status is delivered again.
 *
 * Pointing the device at the restarted server (its port changes): `installStandardObjects` leaves
 * existing DMAcc values alone (a server may have rotated secrets, the client keeps its nonces
 * there), but a `server.url` that changed in the device's config moves `AppAddr/1/Addr` to the
 * configured address (the operator moved the device); an unchanged config leaves an address a
 * server wrote alone. The first variant below fixes the address by a local Replace (what a
 * device's own setup code would do); the second re-creates the device with the new config.
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SimulatedClock } from 'xstate';
import { SimDevice } from '../../src/device/device.ts';
import { DmServer } from '../../src/server/server.ts';
import { openStore, type Store } from '../../src/store/store.ts';
import { readAccounts } from '../../src/tree/standard.ts';
import { LOCAL } from '../../src/tree/tree.ts';
import { api, deviceConfig, memoryLogger, startBed, type DeviceSpec, type TestBed } from '../support/fixtures.ts';
import { ENCODINGS, commandsPath, enqueue, grep, listCommands, run, until } from './helpers.ts';

const DEV = 'IMEI:500000000000001';
const ADDR = './DMAcc/dms/AppAddr/1/Addr';

let bed: TestBed | undefined;
const extra: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const f of extra.splice(0).reverse()) await f();
  await bed?.close();
  bed = undefined;
});

/** Stops the bed's server and starts a new one on the same data dir and config; the bed owns it from now on. */
async function restartServer(b: TestBed): Promise<{ server: DmServer; log: string[] }> {
  const old = b.server;
  const config = old.config;
  await old.stop();
  const { logger, lines } = memoryLogger('server2');
  const server = await DmServer.create({ config, dataDir: join(b.dataDir, 'server'), logger });
  await server.start();
  b.server = server;
  b.serverLog = lines;
  return { server, log: lines };
}

/** The queued commands of the restart tests, and what their results must be. */
const QUEUED = [
  { cmd: 'Replace', uri: './Vendor/Name', value: 'after-restart' },
  { cmd: 'Get', uri: './Vendor/Name' },
  { cmd: 'Exec', uri: './Vendor/Counter' },
  { cmd: 'Sequence', commands: [{ cmd: 'Add', uri: './Vendor/Restarted', value: 'yes', format: 'chr' }, { cmd: 'Get', uri: './Vendor/Restarted' }] },
];

async function expectQueuedDelivered(server: DmServer, ids: string[], beforeId: string): Promise<void> {
  for (const id of ids) expect((await server.queue.waitFor(DEV, id, 10_000))?.state, `entry ${id}`).toBe('done');
  const all = await listCommands(server, DEV);
  // The result recorded before the restart is still listed, first.
  expect(all[0].id).toBe(beforeId);
  expect(all[0].state).toBe('done');
  expect(all[0].results).toEqual([{ uri: './Vendor/Temp', format: 'float', data: '21.5' }]);
  const byId = new Map(all.map((e) => [e.id, e]));
  const [rep, get, exec, seq] = ids.map((id) => byId.get(id));
  expect(rep.status).toBe(200);
  expect(get.status).toBe(200);
  expect(get.results.map((r: any) => r.data)).toEqual(['after-restart']);
  expect(exec.status).toBe(200);
  expect(seq.status).toBe(200);
  expect(seq.statuses.map((s: any) => s.status)).toEqual([200, 200, 200]);
  expect(seq.results.map((r: any) => r.data)).toEqual(['yes']);
  for (const e of [rep, get, exec, seq]) expect(e.attempts).toBe(1);
  expect(await server.queue.pending(DEV)).toEqual([]);
}

describe.each(ENCODINGS)('server restart over %s', (encoding) => {
  it('delivers every command queued before the restart; earlier results are kept', async () => {
    bed = await startBed([{ deviceId: DEV, encoding }]);
    const dev = bed.devices[0]!;
    expect((await dev.connect()).ok).toBe(true);
    const before = await run(bed, DEV, { cmd: 'Get', uri: './Vendor/Temp' });
    const ids: string[] = [];
    for (const c of QUEUED) ids.push((await enqueue(bed.server, DEV, c)).id);
    const noncesBefore = await bed.server.accountNonces(DEV);

    const { server, log } = await restartServer(bed);
    expect(server.url).not.toBe(dev.config.server!.url);
    // The restarted server has the queue, the nonces and the device's notification address.
    expect((await server.queue.pending(DEV)).map((e) => e.id)).toEqual(ids);
    expect(await server.accountNonces(DEV)).toEqual(noncesBefore);
    expect((await server.device(DEV))?.notifyUrl).toBe(dev.notifyUrl);

    await dev.tree.replace(ADDR, { data: server.dmUrl }, LOCAL);
    const session = dev.nextSession();
    const n = await api(server, 'POST', `/api/devices/${encodeURIComponent(DEV)}/notify`);
    expect(n.status, JSON.stringify(n.json)).toBe(200);
    const rec = await session;
    expect(rec.ok, rec.reason).toBe(true);
    expect(rec.initiator).toBe('server');

    await expectQueuedDelivered(server, ids, before.id);
    expect((await dev.tree.get('./Vendor/Counter', LOCAL)).data).toBe('1');
    expect(grep(log, /authentication of .* failed/)).toEqual([]);
  });

  it('works with the device restarted too (same LevelDB tree store, the new address from its config)', async () => {
    const spec: DeviceSpec = { deviceId: DEV, encoding };
    bed = await startBed([spec]);
    // startBed's devices keep their tree in memory: replace it by one with its own LevelDB store.
    await bed.devices.pop()!.stop();
    const store: Store = await openStore(join(bed.dataDir, 'device'));
    extra.push(() => store.close());
    const mem = memoryLogger('dev');
    let dev = await SimDevice.create({ config: deviceConfig(bed.server, spec), store, logger: mem.logger });
    await dev.start();
    extra.push(() => dev.stop());
    expect((await dev.connect()).ok).toBe(true);
    const before = await run(bed, DEV, { cmd: 'Get', uri: './Vendor/Temp' });
    const ids: string[] = [];
    for (const c of QUEUED) ids.push((await enqueue(bed.server, DEV, c)).id);
    const oldUrl = bed.server.dmUrl;
    const [accountBefore] = await readAccounts(dev.tree);

    await dev.stop();
    const { server, log } = await restartServer(bed);
    dev = await SimDevice.create({ config: deviceConfig(server, spec), store, logger: mem.logger });
    await dev.start();
    const [accountAfter] = await readAccounts(dev.tree);
    // The existing DMAcc keeps its nonces; the address follows the config, which names the new server.
    expect(accountAfter!.client!.nonce).toBe(accountBefore!.client!.nonce);
    expect(accountAfter!.server!.nonce).toBe(accountBefore!.server!.nonce);
    expect(oldUrl).not.toBe(server.dmUrl);
    expect(accountAfter!.address).toBe(server.dmUrl);
    expect(mem.lines.some((l) => l.includes(`server address changed in the config: ${oldUrl} -> ${server.dmUrl}`))).toBe(true);
    const rec = await dev.connect();
    expect(rec.ok, rec.reason).toBe(true);
    await expectQueuedDelivered(server, ids, before.id);
    expect(grep(log, /authentication of .* failed/)).toEqual([]);
    // The server learnt the device's new notification address in that session.
    expect((await server.device(DEV))?.notifyUrl).toBe(dev.notifyUrl);

    // An address a server wrote into the tree survives a restart with an unchanged config.
    const moved = `${server.dmUrl}?moved=1`;
    await dev.tree.replace(ADDR, { data: moved }, LOCAL);
    await dev.stop();
    dev = await SimDevice.create({ config: deviceConfig(server, spec), store, logger: mem.logger });
    expect((await readAccounts(dev.tree))[0]!.address).toBe(moved);
  });
});

describe.each(ENCODINGS)('redelivery over %s', (encoding) => {
  it('a command whose session died before its status is delivered again in the next session', async () => {
    const clock = new SimulatedClock();
    bed = await startBed([{ deviceId: DEV, encoding, requestTimeout: 5 }], { deviceOptions: { clock } });
    const dev = bed.devices[0]!;
    expect((await dev.connect()).ok).toBe(true);

    // The first Exec never finishes: the device is stuck mid-session and gives up on it.
    let calls = 0;
    let release: (() => void) | undefined;
    dev.onExec('./Vendor/Counter', () => {
      calls++;
      if (calls === 1) return new Promise((resolve) => (release = () => resolve({ status: 200 })));
      return { status: 200, data: `run ${calls}` };
    });
    extra.push(async () => release?.());
    const session = dev.nextSession();
    const queued = (await api(bed.server, 'POST', commandsPath(DEV), { cmd: 'Exec', uri: './Vendor/Counter', wait: false })).json;
    expect(queued.state).toBe('queued');
    await until(() => calls === 1, 'the Exec to start on the device');
    // The device's request timer runs on the simulated clock: the session fails without sleeping.
    clock.increment(5_000);
    const died = await session;
    expect(died.ok).toBe(false);
    expect(died.reason).toMatch(/no answer/);
    const sent = (await listCommands(bed.server, DEV)).find((e) => e.id === queued.id);
    expect(sent.state).toBe('sent');
    expect(sent.attempts).toBe(1);

    // Next session: delivered again, and this time it completes.
    const again = await dev.connect();
    expect(again.ok, again.reason).toBe(true);
    expect(again.executed).toEqual([{ cmd: 'Exec', target: './Vendor/Counter', status: '200' }]);
    const done = await bed.server.queue.waitFor(DEV, queued.id, 5000);
    expect(done?.state).toBe('done');
    expect(done?.attempts).toBe(2);
    // It is recorded against the session that delivered it, not the one that died.
    expect(done?.sessionId).toBe(again.sessionId);
    expect(done?.sessionId).not.toBe(died.sessionId);
    expect(done?.outcome?.status).toBe(200);
    expect(calls).toBe(2);
  });
});
