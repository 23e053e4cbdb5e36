/**
 * OMA DM security conformance over real HTTP (issue "Security and reliability", point 2;
 * SECACATE-001, SECARIZE-001, SECDI-001): a replayed MD5 digest gets a fresh challenge, never
 * access; a tampered HMAC body is refused; a message for an open session from another address is
 * refused; ACLs are enforced for Add, Exec and changes to ACLs themselves.
 */
import { request } from 'node:http';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { HMAC_HEADER, formatHmacHeader, hmacMac, md5Cred } from '../../src/codec/auth.ts';
import type { StatusCommand, SyncMLMessage } from '../../src/codec/model.ts';
import { decodeSyncML, encodeSyncML } from '../../src/codec/syncml.ts';
import { serverConfigSchema } from '../../src/server/config.ts';
import { DmServer } from '../../src/server/server.ts';
import { LOCAL } from '../../src/tree/tree.ts';
import { memoryLogger, tempDir } from '../support/fixtures.ts';
import { addDevice, operate, startDeployment, until, type Deployment } from '../support/gateways.ts';

const cleanups: (() => Promise<void>)[] = [];
let d: Deployment | undefined;
afterEach(async () => {
  await d?.close();
  d = undefined;
  for (const c of cleanups.splice(0).reverse()) await c();
});

const A = 'IMEI:356938035650001';
const H = 'IMEI:356938035650002';
const B = 'IMEI:356938035650004';
const XML = 'application/vnd.syncml.dm+xml';

async function server(): Promise<{ s: DmServer; log: string[] }> {
  const tmp = await tempDir('gwmo-conf-');
  cleanups.push(tmp.cleanup);
  const mem = memoryLogger('conf');
  const s = await DmServer.create({
    config: serverConfigSchema.parse({
      listen: '127.0.0.1:0',
      serverId: 'dms',
      serverSecret: 'server-secret',
      accounts: [
        { deviceId: A, username: 'a-user', secret: 'a-secret', authType: 'md5' },
        { deviceId: H, username: 'h-user', secret: 'h-secret', authType: 'hmac' },
        { deviceId: B, username: 'b-user', secret: 'b-secret', authType: 'md5' },
      ],
    }),
    dataDir: join(tmp.dir, 'server'),
    logger: mem.logger,
  });
  await s.start();
  cleanups.push(() => s.stop());
  return { s, log: mem.lines };
}

function message(deviceId: string, user: string, sessionID: string, msgID: string, cred?: string): SyncMLMessage {
  return {
    hdr: {
      verDTD: '1.2',
      verProto: 'DM/1.2',
      sessionID,
      msgID,
      target: { locURI: 'http://127.0.0.1/dm' },
      source: { locURI: deviceId, locName: user },
      ...(cred ? { cred: { meta: { type: 'syncml:auth-md5', format: 'b64' }, data: cred } } : {}),
      meta: { maxMsgSize: 16384 },
    },
    body: [
      ...(msgID === '1' ? [{ kind: 'Alert' as const, cmdID: '1', data: '1201', items: [] }] : []),
      { kind: 'Replace', cmdID: '2', items: [{ source: { locURI: './DevInfo/Man' }, data: 'gwmo' }] },
    ],
    final: true,
  } as SyncMLMessage;
}

/** POSTs from a chosen loopback address (127.0.0.2 is another host as far as the server can tell). */
function post(url: string, body: Uint8Array, headers: Record<string, string> = {}, localAddress = '127.0.0.1'): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', localAddress, headers: { 'content-type': XML, ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** The status the server gave our SyncHdr. */
function hdrStatus(body: Buffer): StatusCommand {
  const m = decodeSyncML(new Uint8Array(body), 'xml');
  return m.body.find((c): c is StatusCommand => c.kind === 'Status' && c.cmdRef === '0')!;
}

const nonceOf = async (s: DmServer, id: string): Promise<Uint8Array> => new Uint8Array(Buffer.from((await s.accountNonces(id)).clientNonce, 'base64'));

describe('OMA DM security conformance', () => {
  it('a replayed MD5 digest gets a fresh challenge, never access', async () => {
    const { s } = await server();
    const first = encodeSyncML(message(A, 'a-user', 'R1', '1', md5Cred('a-user', 'a-secret', await nonceOf(s, A))), 'xml');
    const ok = await post(s.dmUrl, first);
    expect(hdrStatus(ok.body).data).toBe('212');
    // The same bytes again (the session starts over), and the same digest in another session.
    for (const replay of [first, encodeSyncML(message(A, 'a-user', 'R2', '1', md5Cred('a-user', 'a-secret', new Uint8Array(Buffer.from('unused')))), 'xml')]) {
      const r = await post(s.dmUrl, replay);
      const st = hdrStatus(r.body);
      expect(st.data).toBe('401');
      expect(st.chal?.meta?.nextNonce).toBeTruthy(); // a fresh challenge
    }
  });

  it('a tampered HMAC body is refused; the intact one is accepted', async () => {
    const { s } = await server();
    const body = encodeSyncML(message(H, 'h-user', 'M1', '1'), 'xml');
    const mac = (n: Uint8Array): string => formatHmacHeader({ username: 'h-user', mac: hmacMac('h-user', 'h-secret', n, body) });
    const tampered = Buffer.from(Buffer.from(body).toString('utf8').replace('<Data>gwmo</Data>', '<Data>evil</Data>'));
    expect(tampered.equals(Buffer.from(body))).toBe(false);
    const bad = await post(s.dmUrl, tampered, { [HMAC_HEADER]: mac(await nonceOf(s, H)) });
    expect(hdrStatus(bad.body).data).toBe('401');
    const good = await post(s.dmUrl, encodeSyncML(message(H, 'h-user', 'M2', '1'), 'xml'), {});
    expect(['401', '407']).toContain(hdrStatus(good.body).data); // no HMAC header at all: no access either
    const intactBody = encodeSyncML(message(H, 'h-user', 'M3', '1'), 'xml');
    const intact = await post(s.dmUrl, intactBody, { [HMAC_HEADER]: formatHmacHeader({ username: 'h-user', mac: hmacMac('h-user', 'h-secret', await nonceOf(s, H), intactBody) }) });
    expect(hdrStatus(intact.body).data).toBe('200');
  });

  it("a message for an open session from another address, or from another device, never acts in it; its own client goes on", async () => {
    const { s, log } = await server();
    // A queued command keeps the session open after message 1 (the server waits for its status).
    await fetch(`${s.url}/api/devices/${encodeURIComponent(A)}/commands`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ cmd: 'Get', uri: './DevInfo/Mod', wait: false, notify: false }) });
    const open = await post(s.dmUrl, encodeSyncML(message(A, 'a-user', 'S1', '1', md5Cred('a-user', 'a-secret', await nonceOf(s, A))), 'xml'));
    expect(hdrStatus(open.body).data).toBe('212');
    // Message 2 of that session, with no credentials (MD5 authenticated the session once), from elsewhere.
    const next = encodeSyncML(message(A, 'a-user', 'S1', '2'), 'xml');
    const hijack = await post(s.dmUrl, next, {}, '127.0.0.2');
    expect(hijack.status).toBe(403);
    expect(log.some((l) => /message refused: session S1 of IMEI:356938035650001 belongs to another address/.test(l))).toBe(true);
    // Another device naming A's SessionID gets a session of its own, unauthenticated: no access.
    const other = await post(s.dmUrl, encodeSyncML(message(B, 'b-user', 'S1', '2'), 'xml'));
    expect(['401', '407']).toContain(hdrStatus(other.body).data);
    const own = await post(s.dmUrl, next);
    expect(own.status).toBe(200);
    expect(hdrStatus(own.body).data).toBe('200');
  });

  it('ACLs hold for Add, Exec and for changes to the ACLs themselves', async () => {
    const ID = 'IMEI:356938035650003';
    d = await startDeployment([{ deviceId: ID, username: `${ID}-user`, secret: `${ID}-secret` }]);
    const sid = d.server.config.serverId;
    const dev = await addDevice(d, ID, { kind: 'server', server: d.server }, {
      nodes: [
        { uri: './Vendor', format: 'node', acl: `Get=*&Replace=${sid}&Add=${sid}` },
        { uri: './Vendor/Open', value: 'x' },
        { uri: './Locked', format: 'node', acl: 'Get=*' },
        { uri: './Locked/Child', value: 'y', acl: 'Get=*' },
        { uri: './Locked/Run', value: '', exec: 'echo', acl: 'Get=*' },
      ],
    });
    expect((await dev.connect()).ok).toBe(true);
    await until(async () => (await operate(d!.server, ID, { cmd: 'Get', uri: './Vendor/Open' })).status === 200, 'a first read');
    // Changing an ACL needs Replace on the node's parent (OMA-TS-DM_TND, ACL rules).
    expect((await operate(d.server, ID, { cmd: 'Replace', uri: './Locked/Child?prop=ACL', value: `Get=*&Replace=${sid}` })).status).toBe(425);
    expect((await operate(d.server, ID, { cmd: 'Replace', uri: './Locked?prop=ACL', value: `Get=*&Add=${sid}` })).status).toBe(425);
    expect((await operate(d.server, ID, { cmd: 'Exec', uri: './Locked/Run' })).status).toBe(425);
    expect((await operate(d.server, ID, { cmd: 'Add', uri: './Locked/New', value: 'z' })).status).toBe(425);
    expect((await operate(d.server, ID, { cmd: 'Replace', uri: './Locked/Child', value: 'changed' })).status).toBe(425);
    // Where the parent grants Replace, the ACL change goes through.
    expect((await operate(d.server, ID, { cmd: 'Replace', uri: './Vendor/Open?prop=ACL', value: `Get=*&Replace=${sid}` })).status).toBe(200);
    expect((await dev.tree.get('./Locked/Child', LOCAL)).data).toBe('y');
    expect(await dev.tree.getProperty('./Locked/Child', 'ACL', LOCAL)).toBe('Get=*');
  });
});
