/**
 * The DM endpoint under hostile input (issue "Security and reliability", point 3): mutated valid
 * messages in XML and WBXML (byte flips, insertions, deletions, truncation, duplicated slices,
 * wrong content types) posted over real HTTP. Every case gets an answer that is a SyncML status
 * or a 4xx/503, never a 500 (an unexpected exception) nor a dropped connection; the server stays
 * up, other sessions are unaffected, and a valid session right after the pass still succeeds.
 */
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { md5Cred } from '../../src/codec/auth.ts';
import type { SyncMLMessage } from '../../src/codec/model.ts';
import { encodeSyncML } from '../../src/codec/syncml.ts';
import { deviceConfigSchema } from '../../src/device/config.ts';
import { SimDevice } from '../../src/device/device.ts';
import { serverConfigSchema } from '../../src/server/config.ts';
import { DmServer } from '../../src/server/server.ts';
import { FUZZ_TIMEOUT_MS, reportFuzz } from '../support/fast-check-setup.ts';
import { memoryLogger, tempDir } from '../support/fixtures.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const ID = 'IMEI:356938035649801';
const RUNS = Number(process.env['FUZZ_HTTP_RUNS'] ?? 1000);

/** A realistic client message with commands of several kinds, in both encodings. */
function sample(sessionID: string): SyncMLMessage {
  return {
    hdr: {
      verDTD: '1.2',
      verProto: 'DM/1.2',
      sessionID,
      msgID: '1',
      target: { locURI: 'http://127.0.0.1/dm' },
      source: { locURI: ID, locName: 'meter' },
      cred: { meta: { type: 'syncml:auth-md5', format: 'b64' }, data: md5Cred('meter', 'meter-secret', new Uint8Array([9, 9])) },
      meta: { maxMsgSize: 16384 },
    },
    body: [
      { kind: 'Alert', cmdID: '1', data: '1201', items: [] },
      { kind: 'Replace', cmdID: '2', items: [{ source: { locURI: './DevInfo/DevId' }, data: ID }, { source: { locURI: './DevInfo/Man' }, data: 'gwmo' }] },
      { kind: 'Alert', cmdID: '3', data: '1226', items: [{ source: { locURI: './Vendor/X' }, meta: { type: 'org.gwmo.fuzz', format: 'b64' }, data: 'AAEC' }] },
    ],
    final: true,
  } as SyncMLMessage;
}

const mutation = fc.record({
  at: fc.nat(),
  len: fc.integer({ min: 1, max: 40 }),
  value: fc.integer({ min: 0, max: 255 }),
  kind: fc.constantFrom('set', 'insert', 'delete', 'truncate', 'duplicate'),
});

function mutate(bytes: Uint8Array, muts: { at: number; len: number; value: number; kind: string }[]): Uint8Array {
  const b = [...bytes];
  for (const m of muts) {
    const at = b.length === 0 ? 0 : m.at % b.length;
    if (m.kind === 'set') b[at] = m.value;
    else if (m.kind === 'insert') b.splice(at, 0, m.value);
    else if (m.kind === 'delete') b.splice(at, m.len);
    else if (m.kind === 'truncate') b.length = at;
    else b.splice(at, 0, ...b.slice(at, at + m.len));
  }
  return new Uint8Array(b);
}

describe('fuzz: the DM endpoint fed mutated messages', () => {
  it('answers every case with a SyncML status or a 4xx, stays up, and serves a valid session afterwards', async () => {
    const tmp = await tempDir('gwmo-http-fuzz-');
    cleanups.push(tmp.cleanup);
    const mem = memoryLogger('fuzz');
    const server = await DmServer.create({
      config: serverConfigSchema.parse({
        listen: '127.0.0.1:0',
        serverId: 'dms',
        serverSecret: 'server-secret',
        maxMsgSize: 8192,
        // The fuzz opens many sessions of one account: the per-account cap is not what is tested here.
        limits: { maxSessionsPerAccount: 100_000, maxSessions: 100_000 },
        sessionTimeout: 5,
        accounts: [{ deviceId: ID, username: 'meter', secret: 'meter-secret', authType: 'md5' }],
      }),
      dataDir: join(tmp.dir, 'server'),
      logger: mem.logger,
      authGuard: { freeAttempts: 1_000_000 },
    });
    await server.start();
    cleanups.push(() => server.stop());
    const statuses = new Map<number, number>();
    let cases = 0;
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('xml', 'wbxml'), fc.array(mutation, { minLength: 1, maxLength: 4 }), fc.nat(), fc.boolean(), async (encoding, muts, sid, wrongType) => {
        cases++;
        const body = mutate(encodeSyncML(sample(String(sid % 4096)), encoding as 'xml' | 'wbxml'), muts);
        const type = wrongType && sid % 7 === 0 ? 'text/plain' : encoding === 'xml' ? 'application/vnd.syncml.dm+xml' : 'application/vnd.syncml.dm+wbxml';
        const res = await fetch(server.dmUrl, { method: 'POST', body, headers: { 'content-type': type } });
        await res.arrayBuffer();
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        expect([200, 400, 413, 415, 503]).toContain(res.status);
      }),
      { numRuns: RUNS },
    );
    reportFuzz('DM endpoint over HTTP', cases, `HTTP statuses ${JSON.stringify(Object.fromEntries(statuses))}`);
    expect(statuses.get(200) ?? 0).toBeGreaterThan(0); // some mutations still reach session logic
    expect(mem.lines.filter((l) => /internal error|TypeError|RangeError|ReferenceError/.test(l))).toEqual([]);

    // Named attacks over HTTP: billion laughs, XXE, deep nesting, a huge base64 Data, invalid UTF-8.
    const valid = new TextDecoder().decode(encodeSyncML(sample('77'), 'xml'));
    const attacks: [string, Uint8Array | string][] = [
      ['billion laughs', `<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><SyncML>&lol3;</SyncML>`],
      ['XXE', `<?xml version="1.0"?><!DOCTYPE SyncML [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>${valid.replace('<Data>gwmo</Data>', '<Data>&xxe;</Data>')}`],
      ['deep nesting', `${'<Meta>'.repeat(5000)}${'</Meta>'.repeat(5000)}`],
      ['huge base64', valid.replace('<Data>AAEC</Data>', `<Data>${'QUFB'.repeat(4000)}</Data>`)],
      ['invalid UTF-8', new Uint8Array([...new TextEncoder().encode(valid.slice(0, 300)), 0xc3, 0x28, 0xff, ...new TextEncoder().encode(valid.slice(300))])],
    ];
    for (const [name, body] of attacks) {
      const res = await fetch(server.dmUrl, { method: 'POST', body, headers: { 'content-type': 'application/vnd.syncml.dm+xml' } });
      await res.arrayBuffer();
      expect([200, 400, 413], name).toContain(res.status);
    }

    // Still serving: a real device completes a session.
    const dev = await SimDevice.create({
      config: deviceConfigSchema.parse({ deviceId: ID, server: { serverId: 'dms', url: server.dmUrl, username: 'meter', secret: 'meter-secret', authType: 'md5', serverSecret: 'server-secret', serverAuthType: 'md5' } }),
      logger: memoryLogger('dev').logger,
    });
    cleanups.push(() => dev.stop());
    const r = await dev.connect();
    expect(r.ok, `${r.reason}\n${mem.lines.slice(-12).join('\n')}`).toBe(true);
  }, Math.max(180_000, FUZZ_TIMEOUT_MS));
});
