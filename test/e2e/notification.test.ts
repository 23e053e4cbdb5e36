/**
 * Package 0 handling on the simulated device over real HTTP, generic alerts from the device, and
 * asynchronous Exec reported back with a Generic Alert echoing the Correlator.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { encodePackage0, RESYNC_NONCE } from '../../src/codec/package0.ts';
import { nonceCandidates } from '../../src/codec/auth.ts';
import { readAccounts } from '../../src/tree/standard.ts';
import { api, memoryLogger, startBed, VENDOR_NODES, type TestBed } from '../support/fixtures.ts';
import type { SimDevice } from '../../src/device/device.ts';

let bed: TestBed | undefined;
afterEach(async () => {
  await bed?.close();
  bed = undefined;
});

const ID = 'IMEI:350000000000077';

async function postP0(device: SimDevice, bytes: Uint8Array): Promise<number> {
  const res = await fetch(device.notifyUrl, { method: 'POST', body: bytes, headers: { 'content-type': 'application/vnd.syncml.notification' } });
  return res.status;
}

/** A Package 0 as the server would build it, from the device's own view of the server credentials. */
async function package0(device: SimDevice, opts: { password?: string; nonce?: Uint8Array; sessionId: number }): Promise<Uint8Array> {
  const acct = (await readAccounts(device.tree))[0]!;
  return encodePackage0(
    { uiMode: 1, initiator: 1, sessionId: opts.sessionId, serverId: acct.serverId },
    { password: opts.password ?? acct.server!.secret, nonce: opts.nonce ?? nonceCandidates(acct.server!.nonce)[0] ?? new Uint8Array() },
  );
}

async function eventually(cond: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('Package 0 on the device', () => {
  it('opens a server-initiated session (Alert 1200, SessionID in hex) for a valid notification', async () => {
    const log = memoryLogger('dev');
    bed = await startBed([{ deviceId: ID }], { deviceOptions: { logger: log.logger } });
    const dev = bed.devices[0]!;
    const next = dev.nextSession();
    expect(await postP0(dev, await package0(dev, { sessionId: 0x1a2b }))).toBe(202);
    const s = await next;
    expect(s).toMatchObject({ ok: true, initiator: 'server', sessionId: '1A2B' });
    expect(bed.serverLog.some((l) => l.includes('session 1A2B opened by ' + ID))).toBe(true);
  });

  it('ignores and logs a notification whose digest does not verify, and a malformed one', async () => {
    const log = memoryLogger('dev');
    bed = await startBed([{ deviceId: ID }], { deviceOptions: { logger: log.logger } });
    const dev = bed.devices[0]!;
    expect(await postP0(dev, await package0(dev, { sessionId: 7, password: 'not-the-server-secret' }))).toBe(202);
    expect(await postP0(dev, new Uint8Array([1, 2, 3]))).toBe(202);
    await eventually(() => dev.ignoredNotifications === 2);
    expect(log.lines.some((l) => l.includes('digest does not verify'))).toBe(true);
    expect(log.lines.some((l) => l.includes('malformed Package 0 ignored'))).toBe(true);
    await new Promise((r) => setTimeout(r, 100));
    expect(dev.sessions).toHaveLength(0);
    expect(bed.server.openSessions()).toHaveLength(0);
  });

  it('ignores a replayed notification', async () => {
    const log = memoryLogger('dev');
    bed = await startBed([{ deviceId: ID }], { deviceOptions: { logger: log.logger } });
    const dev = bed.devices[0]!;
    const p0 = await package0(dev, { sessionId: 99 });
    const first = dev.nextSession();
    await postP0(dev, p0);
    expect((await first).ok).toBe(true);
    await postP0(dev, p0);
    await eventually(() => dev.ignoredNotifications === 1);
    expect(log.lines.some((l) => l.includes('replayed Package 0 ignored'))).toBe(true);
    expect(dev.sessions).toHaveLength(1);
  });

  it('accepts the resync nonce (four zero bytes) when the stored nonces diverged', async () => {
    const log = memoryLogger('dev');
    bed = await startBed([{ deviceId: ID }], { deviceOptions: { logger: log.logger } });
    const dev = bed.devices[0]!;
    const next = dev.nextSession();
    await postP0(dev, await package0(dev, { sessionId: 5, nonce: new Uint8Array(RESYNC_NONCE) }));
    await next;
    expect(log.lines.some((l) => l.includes('resync nonce'))).toBe(true);
  });

  it('rejects notifications from a server it has no account for', async () => {
    const log = memoryLogger('dev');
    bed = await startBed([{ deviceId: ID }], { deviceOptions: { logger: log.logger } });
    const dev = bed.devices[0]!;
    await postP0(dev, encodePackage0({ uiMode: 0, initiator: 1, sessionId: 3, serverId: 'rogue-server' }, { password: 'x', nonce: new Uint8Array() }));
    await eventually(() => dev.ignoredNotifications === 1);
    expect(log.lines.some((l) => l.includes('unknown server rogue-server'))).toBe(true);
  });
});

describe('alerts from the device', () => {
  it('delivers a Generic Alert (1226) with its Correlator, type, format and mark to the server', async () => {
    bed = await startBed([{ deviceId: ID, encoding: 'wbxml' }]);
    const dev = bed.devices[0]!;
    const s = await dev.sendGenericAlert(
      [{ source: { locURI: './Vendor/Temp' }, meta: { type: 'urn:oma:at:gwmo:1.1:DeviceChanged', format: 'chr', mark: 'warning' }, data: 'over temperature' }],
      'corr-77',
    );
    expect(s.ok).toBe(true);
    const { json } = await api(bed.server, 'GET', `/api/devices/${encodeURIComponent(ID)}/alerts`);
    expect(json.alerts).toHaveLength(1);
    expect(json.alerts[0]).toMatchObject({ code: '1226', correlator: 'corr-77' });
    expect(json.alerts[0].items[0]).toMatchObject({
      source: { locURI: './Vendor/Temp' },
      meta: { type: 'urn:oma:at:gwmo:1.1:DeviceChanged', format: 'chr', mark: 'warning' },
      data: 'over temperature',
    });
  });

  it('answers an asynchronous Exec with 202 and reports completion with a Generic Alert echoing the Correlator', async () => {
    bed = await startBed([
      { deviceId: ID, nodes: [...VENDOR_NODES('gwmo-test-dms'), { uri: './Vendor/Update', format: 'chr', value: '', exec: 'async' }] },
    ]);
    const dev = bed.devices[0]!;
    await dev.connect();
    const r = await api(bed.server, 'POST', `/api/devices/${encodeURIComponent(ID)}/commands`, { cmd: 'Exec', uri: './Vendor/Update', correlator: 'job-9', timeout: 10 });
    expect(r.json.status).toBe(202);
    await eventually(async () => (await api(bed!.server, 'GET', `/api/devices/${encodeURIComponent(ID)}/alerts`)).json.alerts.length === 1);
    const { json } = await api(bed.server, 'GET', `/api/devices/${encodeURIComponent(ID)}/alerts`);
    expect(json.alerts[0]).toMatchObject({ code: '1226', correlator: 'job-9' });
    expect(json.alerts[0].items[0]).toMatchObject({ source: { locURI: './Vendor/Update' }, data: '200' });
  });
});
