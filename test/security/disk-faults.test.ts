/**
 * Failing writes (a full disk, a failing LevelDB) — issue "Security and reliability", point 4:
 * with the server's store refusing writes, the operator API answers a clear error at once instead
 * of hanging, sessions still end with a status, and everything works again once the disk does; a
 * gateway whose disk fails mid-fanout does not fall over and its job is not left running.
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { deviceConfigSchema } from '../../src/device/config.ts';
import { SimDevice } from '../../src/device/device.ts';
import { serverConfigSchema } from '../../src/server/config.ts';
import { DmServer } from '../../src/server/server.ts';
import { withWriteFaults } from '../../src/store/faults.ts';
import { openStore } from '../../src/store/store.ts';
import { completion, startJob } from '../support/fanout.ts';
import { memoryLogger, tempDir } from '../support/fixtures.ts';
import { addGateway, operate, startDeployment, until } from '../support/gateways.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const ID = 'IMEI:356938035650101';

describe('a server whose disk refuses writes', () => {
  it('answers the operator with an error at once, ends sessions with a status, and recovers with the disk', async () => {
    const tmp = await tempDir('gwmo-disk-');
    cleanups.push(tmp.cleanup);
    let full: string | undefined;
    const store = withWriteFaults(await openStore(join(tmp.dir, 'server')), { failWrites: () => full });
    cleanups.push(() => store.close());
    const mem = memoryLogger('disk');
    const server = await DmServer.create({
      config: serverConfigSchema.parse({ listen: '127.0.0.1:0', serverId: 'dms', serverSecret: 'server-secret', accounts: [{ deviceId: ID, username: 'meter', secret: 'meter-secret', authType: 'md5' }] }),
      store,
      logger: mem.logger,
    });
    await server.start();
    cleanups.push(() => server.stop());
    const dev = await SimDevice.create({
      config: deviceConfigSchema.parse({ deviceId: ID, server: { serverId: 'dms', url: server.dmUrl, username: 'meter', secret: 'meter-secret', authType: 'md5', serverSecret: 'server-secret', serverAuthType: 'md5' } }),
      logger: memoryLogger('dev').logger,
    });
    cleanups.push(() => dev.stop());
    expect((await dev.connect()).ok).toBe(true);

    full = 'ENOSPC: no space left on device';
    const t0 = Date.now();
    const res = await fetch(`${server.url}/api/devices/${encodeURIComponent(ID)}/commands`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ cmd: 'Get', uri: './DevInfo/Mod', wait: false, notify: false }),
    });
    expect(res.status).toBeGreaterThanOrEqual(500);
    expect(JSON.stringify(await res.json())).toMatch(/ENOSPC/);
    expect(Date.now() - t0).toBeLessThan(5000);
    // A session while the disk is full ends (with a status), it does not hang; the server stays up.
    const during = await Promise.race([dev.connect(), new Promise<'hang'>((r) => setTimeout(() => r('hang'), 15_000))]);
    expect(during).not.toBe('hang');
    expect((await fetch(`${server.url}/api/health`)).status).toBe(200);

    full = undefined;
    const ok = await fetch(`${server.url}/api/devices/${encodeURIComponent(ID)}/commands`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ cmd: 'Get', uri: './DevInfo/Mod', wait: false, notify: false }),
    });
    expect(ok.status).toBeLessThan(300);
    const rec = await dev.connect();
    expect(rec.ok, rec.reason).toBe(true);
    const done = (await (await fetch(`${server.url}/api/devices/${encodeURIComponent(ID)}/commands/${((await ok.json()) as { id: string }).id}`)).json()) as { state: string };
    expect(done.state).toBe('done');
  }, 60_000);

  it('a gateway whose disk fails in the middle of a fanout does not fall over; once the disk is back the job reads as ended and a new one completes', async () => {
    const d = await startDeployment([{ deviceId: 'gw-d', username: 'gw-d-user', secret: 'gw-d-secret' }]);
    cleanups.push(() => d.close());
    let full: string | undefined;
    const store = withWriteFaults(await openStore(join(d.dir, 'gw-d-store')), { failWrites: () => full });
    cleanups.push(() => store.close().catch(() => undefined));
    const gw = await addGateway(d, 'gw-d', { kind: 'server', server: d.server }, [], { adapters: [{ type: 'sim', latencyMs: 300, generate: { count: 12, prefix: 'f-' } }], fanout: { timeout: 5, maxConcurrency: 2 } }, { store });
    await until(() => gw.associations.all().filter((r) => r.status === 'attached').length === 12, 'the 12 sensors');
    const ids = gw.associations.all().map((r) => r.deviceId);
    const t0 = Date.now();
    // 12 members, 2 at a time, 300 ms each: about 1.8 s of work. The disk fails once the job runs.
    const started = await startJob(d.server, 'gw-d', 'j1', { deviceIds: ids, commands: [{ cmd: 'Get', uri: './DevInfo/Mod' }] }, 'c-disk');
    expect(started.status).toBe(200);
    full = 'EIO: i/o error';
    // While its disk fails the gateway cannot even keep its session nonces, so its parent cannot
    // reach it: it must simply not fall over (an unhandled rejection would end the process, and
    // vitest fails the test on one). The job's work goes on in memory.
    await new Promise((r) => setTimeout(r, 3000));
    expect(d.logs['gw-d']!.some((l) => /STORE_WRITE|EIO/.test(l))).toBe(true);
    full = undefined;
    // The disk is back: the first job reads as ended (never stuck running) ...
    await until(async () => {
      const r = await operate(d.server, 'gw-d', { cmd: 'Get', uri: './GwMO/Fanout/j1/State' });
      return r.status === 200 && Number(r.results[0].data) >= 30;
    }, 'the job to read as ended', 30_000);
    expect(Date.now() - t0).toBeLessThan(40_000);
    // The disk is back: a new job runs to completion.
    full = undefined;
    await startJob(d.server, 'gw-d', 'j2', { deviceIds: ids.slice(0, 3), commands: [{ cmd: 'Get', uri: './DevInfo/Mod' }] }, 'c-disk-2');
    const done = await completion(d.server, 'gw-d', 'c-disk-2');
    expect(done.data).toMatch(/3/);
  }, 90_000);
});
