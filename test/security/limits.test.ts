/**
 * Hostile-input limits of a DM listener (issue "Security and reliability", point 3): caps on open
 * sessions overall and per account (503 with Retry-After, nothing else affected), and header
 * deadlines so a slow client cannot hold a socket.
 */
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { md5Cred } from '../../src/codec/auth.ts';
import type { SyncMLMessage } from '../../src/codec/model.ts';
import { encodeSyncML } from '../../src/codec/syncml.ts';
import { serverConfigSchema } from '../../src/server/config.ts';
import { DmServer } from '../../src/server/server.ts';
import { memoryLogger, tempDir } from '../support/fixtures.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const DEVICES = ['IMEI:356938035649701', 'IMEI:356938035649702', 'IMEI:356938035649703'];

async function server(limits: Record<string, number>): Promise<{ server: DmServer; log: string[] }> {
  const tmp = await tempDir('gwmo-limits-');
  cleanups.push(tmp.cleanup);
  const mem = memoryLogger('limits');
  const s = await DmServer.create({
    config: serverConfigSchema.parse({
      listen: '127.0.0.1:0',
      serverId: 'dms',
      serverSecret: 'server-secret',
      limits,
      accounts: DEVICES.map((d, i) => ({ deviceId: d, username: `u${i}`, secret: `secret-${i}`, authType: 'md5' })),
    }),
    dataDir: join(tmp.dir, 'server'),
    logger: mem.logger,
  });
  await s.start();
  cleanups.push(() => s.stop());
  return { server: s, log: mem.lines };
}

/** A Package 1 with an empty nonce: the server answers 401 with a challenge and keeps the session open. */
function package1(deviceId: string, i: number, sessionID: string): Uint8Array {
  const msg: SyncMLMessage = {
    hdr: {
      verDTD: '1.2',
      verProto: 'DM/1.2',
      sessionID,
      msgID: '1',
      target: { locURI: 'http://127.0.0.1/dm' },
      source: { locURI: deviceId, locName: `u${i}` },
      cred: { meta: { type: 'syncml:auth-md5', format: 'b64' }, data: md5Cred(`u${i}`, `secret-${i}`, new Uint8Array([1, 2, 3])) },
      meta: { maxMsgSize: 16384 },
    },
    body: [{ kind: 'Alert', cmdID: '1', data: '1201', items: [] }],
    final: true,
  };
  return encodeSyncML(msg, 'xml');
}

async function open(s: DmServer, deviceId: string, sessionID: string): Promise<{ status: number; retryAfter: string | null; text: string }> {
  const res = await fetch(s.dmUrl, { method: 'POST', body: package1(deviceId, DEVICES.indexOf(deviceId), sessionID), headers: { 'content-type': 'application/vnd.syncml.dm+xml' } });
  return { status: res.status, retryAfter: res.headers.get('retry-after'), text: await res.text() };
}

describe('listener limits', () => {
  it('caps open sessions per account and overall with 503 and Retry-After', async () => {
    const { server: s, log } = await server({ maxSessions: 2, maxSessionsPerAccount: 1 });
    expect((await open(s, DEVICES[0]!, 'A1')).status).toBe(200); // a 401 challenge inside SyncML; the session stays open
    const again = await open(s, DEVICES[0]!, 'A2');
    expect(again).toMatchObject({ status: 503, retryAfter: '5' });
    expect(again.text).toMatch(/IMEI:356938035649701 has 1 sessions open \(limits\.maxSessionsPerAccount 1\)/);
    // Another account is not affected by the first one's cap ...
    expect((await open(s, DEVICES[1]!, 'B1')).status).toBe(200);
    // ... until the overall cap.
    const third = await open(s, DEVICES[2]!, 'C1');
    expect(third).toMatchObject({ status: 503, retryAfter: '5' });
    expect(third.text).toMatch(/2 sessions are open \(limits\.maxSessions 2\)/);
    // A message of a session already open still gets through.
    expect((await open(s, DEVICES[0]!, 'A1')).status).toBe(200);
    expect(log.filter((l) => l.includes('session refused:'))).toHaveLength(2);
    expect(await (await fetch(`${s.url}/metrics`)).text()).toMatch(/^gwmo_rejected_messages_total\{reason="busy"\} 2$/m);
  });

  it('closes the socket of a client that does not finish its request headers in time', async () => {
    const { server: s } = await server({ headersTimeout: 0.5 });
    const { port } = new URL(s.url);
    const t0 = Date.now();
    const outcome = await new Promise<string>((resolve) => {
      const sock = connect(Number(port), '127.0.0.1', () => sock.write('POST /dm HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/vnd.syncml.dm+xml\r\n'));
      let got = '';
      sock.on('data', (d) => (got += String(d)));
      sock.on('close', () => resolve(got.split('\r\n')[0] || 'closed'));
      sock.on('error', () => undefined);
      setTimeout(() => {
        resolve('still open');
        sock.destroy();
      }, 10_000);
    });
    expect(outcome).toMatch(/^HTTP\/1\.1 408|^closed$/);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(450);
    // The server still serves.
    expect((await fetch(`${s.url}/api/health`)).status).toBe(200);
  });
});
