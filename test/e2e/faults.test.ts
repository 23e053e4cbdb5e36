/**
 * Acceptance: faults end to end, in XML and WBXML. Wrong credentials on either side end the
 * session cleanly without losing or executing anything; malformed messages posted straight to the
 * DM endpoint get the right HTTP status or a SyncML error reply, and the server keeps serving.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { md5Cred } from '../../src/codec/auth.ts';
import type { Encoding, StatusCommand, SyncHdr, SyncMLMessage } from '../../src/codec/model.ts';
import { CONTENT_TYPES, decodeSyncML, encodeSyncML } from '../../src/codec/syncml.ts';
import { LOCAL } from '../../src/tree/tree.ts';
import { startBed, type TestBed } from '../support/fixtures.ts';
import { ENCODINGS, enqueue, grep, listCommands, run, until } from './helpers.ts';

const BAD = 'IMEI:400000000000001';
const GOOD = 'IMEI:400000000000002';

let bed: TestBed | undefined;
afterEach(async () => {
  await bed?.close();
  bed = undefined;
});

/** The device's nodes outside ./DMAcc (where nonces legitimately change). */
function managed(b: TestBed, i: number): Map<string, unknown> {
  return new Map([...b.devices[i]!.tree.snapshot()].filter(([uri]) => !uri.startsWith('./DMAcc')));
}

/** Why the server refuses a wrong password, per client auth type. */
const WHY = { basic: /wrong user name or password/, md5: /MD5 digest does not match/, hmac: /HMAC digest does not match/ } as const;
const WRONG_PASSWORD = (['basic', 'md5', 'hmac'] as const).flatMap((authType) => ENCODINGS.map((encoding) => ({ authType, encoding })));

describe.each(WRONG_PASSWORD)('wrong client password ($authType over $encoding)', ({ authType, encoding }) => {
  it('ends the session as auth-failed; the command stays queued; others are served', async () => {
    bed = await startBed([
      { deviceId: BAD, encoding, authType, devicePassword: 'not-the-password' },
      { deviceId: GOOD, encoding },
    ]);
    const [bad, good] = bed.devices;
    const queued = await enqueue(bed.server, BAD, { cmd: 'Replace', uri: './Vendor/Name', value: 'pwned' });

    const s = await bad!.connect();
    expect(s.ok).toBe(false);
    expect(s.reason).toBe('auth-failed');
    expect(s.executed).toEqual([]);
    expect(grep(bed.deviceLogs[0]!, /authentication rejected by the server/)).toHaveLength(1);
    // The server says why, and ended the session (no session left hanging).
    const why = grep(bed.serverLog, new RegExp(`authentication of ${BAD} failed`));
    expect(why.length).toBeGreaterThanOrEqual(1);
    expect(why[0]).toMatch(WHY[authType]);
    await until(() => bed!.server.activeSessions === 0, 'the failed session to end');
    expect(grep(bed.serverLog, new RegExp(`of ${BAD} ended: auth-failed`))).toHaveLength(1);
    // The account's record says how its last session ended, and counts no successful session.
    await until(async () => (await bed!.server.device(BAD))?.lastEndReason === 'auth-failed', 'the end reason to be recorded');
    expect(await bed.server.device(BAD)).toMatchObject({ deviceId: BAD, sessions: 0, devInfo: {}, lastEndReason: 'auth-failed' });

    // Nothing was delivered or lost.
    const [entry] = await listCommands(bed.server, BAD);
    expect(entry.id).toBe(queued.id);
    expect(entry.state).toBe('queued');
    expect(entry.attempts).toBe(0);
    expect((await bad!.tree.get('./Vendor/Name', LOCAL)).data).toBe('lamp');

    // The server keeps serving another device.
    expect((await good!.connect()).ok).toBe(true);
    const r = await run(bed, GOOD, { cmd: 'Get', uri: './Vendor/Temp' });
    expect(r.results[0].data).toBe('21.5');
  });
});

/** Why the device refuses the server's credentials, per server auth type. */
const SERVER_WHY = { basic: /wrong server id or password/, md5: /server MD5 digest does not match/, hmac: /HMAC digest does not match/ } as const;
const WRONG_SERVER = (['basic', 'md5', 'hmac'] as const).flatMap((serverAuthType) => ENCODINGS.map((encoding) => ({ serverAuthType, encoding })));

describe.each(WRONG_SERVER)('wrong server secret ($serverAuthType over $encoding)', ({ serverAuthType, encoding }) => {
  it('the device refuses to execute anything and its tree is unchanged', async () => {
    bed = await startBed([{ deviceId: BAD, encoding, serverAuthType, deviceServerSecret: 'not-the-server-secret' }]);
    const dev = bed.devices[0]!;
    const before = managed(bed, 0);
    await enqueue(bed.server, BAD, { cmd: 'Replace', uri: './Vendor/Name', value: 'pwned' });
    await enqueue(bed.server, BAD, { cmd: 'Delete', uri: './Vendor/Temp' });
    await enqueue(bed.server, BAD, { cmd: 'Exec', uri: './Vendor/Counter' });

    const s = await dev.connect();
    expect(s.ok).toBe(false);
    expect(s.reason).toBe('server-auth-failed');
    expect(s.executed).toEqual([]);
    const rejected = grep(bed.deviceLogs[0]!, /server credentials rejected/);
    expect(rejected.length).toBeGreaterThanOrEqual(1);
    expect(rejected[0]).toMatch(SERVER_WHY[serverAuthType]);
    expect(grep(bed.serverLog, new RegExp(`${BAD} rejected the server credentials \\(401\\)`)).length).toBeGreaterThanOrEqual(1);
    expect(managed(bed, 0)).toEqual(before);

    // No command got a result: they stay pending for a later session.
    const entries = await listCommands(bed.server, BAD);
    expect(entries.map((e) => e.state === 'done')).toEqual([false, false, false]);

    // A Package 0 signed with the (to the device) wrong secret is ignored too.
    const ignored = dev.ignoredNotifications;
    // After rejecting the server three times the device aborts (Alert 1223), so the server closes the session at once.
    await until(() => bed!.server.activeSessions === 0, 'the aborted session to end');
    expect(grep(bed.serverLog, new RegExp(`aborted by ${BAD.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`)).length).toBe(1);
    await bed.server.notify(BAD);
    await until(() => dev.ignoredNotifications === ignored + 1, 'the device to ignore the Package 0');
    expect(managed(bed, 0)).toEqual(before);
  });
});

/** A client Package 1 for `deviceId` (valid MD5 credentials when the nonce is right). */
function package1(deviceId: string, username: string, password: string, sessionID = '7F'): SyncMLMessage {
  const hdr: SyncHdr = {
    verDTD: '1.2',
    verProto: 'DM/1.2',
    sessionID,
    msgID: '1',
    target: { locURI: 'http://127.0.0.1/dm' },
    source: { locURI: deviceId, locName: username },
    cred: { meta: { type: 'syncml:auth-md5', format: 'b64' }, data: md5Cred(username, password, new Uint8Array()) },
    meta: { maxMsgSize: 16384 },
  };
  return {
    hdr,
    body: [
      { kind: 'Alert', cmdID: '1', data: '1201', items: [] },
      { kind: 'Replace', cmdID: '2', items: [{ source: { locURI: './DevInfo/DevId' }, data: deviceId }] },
    ],
    final: true,
  };
}

async function post(url: string, body: Uint8Array | string, contentType: string): Promise<{ status: number; type: string; body: Uint8Array }> {
  const res = await fetch(url, { method: 'POST', body, headers: { 'content-type': contentType } });
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: new Uint8Array(await res.arrayBuffer()) };
}

/** The SyncHdr status of a SyncML error reply. */
function hdrStatusOf(bytes: Uint8Array, encoding: Encoding): { msg: SyncMLMessage; status: StatusCommand } {
  const msg = decodeSyncML(bytes, encoding);
  const status = msg.body.find((c): c is StatusCommand => c.kind === 'Status' && c.cmdRef === '0');
  if (!status) throw new Error('no SyncHdr status in the reply');
  return { msg, status };
}

describe.each(ENCODINGS)('malformed messages over %s', (encoding) => {
  const ct = CONTENT_TYPES[encoding];

  /** After each bad message, a real device session still works. */
  async function stillServes(b: TestBed): Promise<void> {
    const s = await b.devices[0]!.connect();
    expect(s.ok, s.reason).toBe(true);
    expect(b.server.activeSessions).toBe(0);
  }

  it('garbage bytes, DOCTYPE/entities, truncated WBXML, unknown content type and oversized bodies', async () => {
    bed = await startBed([{ deviceId: GOOD, encoding }]);
    const url = bed.server.dmUrl;
    const username = bed.server.account(GOOD)!.username;
    const valid = encodeSyncML(package1(GOOD, username, bed.server.account(GOOD)!.secret), encoding);

    // Garbage: nothing readable, not even a header -> HTTP 400.
    const garbage = await post(url, new Uint8Array([0x00, 0xff, 0x13, 0x37, 0x42, 0x99, 0x01, 0x02, 0x03]), ct);
    expect(garbage.status).toBe(400);
    expect(grep(bed.serverLog, /malformed message/)).toHaveLength(1);
    await stillServes(bed);

    // Truncated: the first half of a valid message.
    const truncated = await post(url, valid.subarray(0, Math.floor(valid.byteLength / 2)), ct);
    expect(truncated.status).toBe(400);
    await stillServes(bed);

    // Unknown content type: 415 before anything is parsed.
    const plain = await post(url, valid, 'text/plain');
    expect(plain.status).toBe(415);
    const noSession = await post(url, valid, 'application/vnd.syncml.notification');
    expect(noSession.status).toBe(415);
    await stillServes(bed);

    // Oversized (> maxMsgSize, 64 KiB by default): 413 without being read.
    const big = new Uint8Array(bed.server.config.maxMsgSize + 1000).fill(0x41);
    const tooBig = await post(url, big, ct);
    expect(tooBig.status).toBe(413);
    expect(grep(bed.serverLog, /message refused: HTTP_TOO_LARGE/)).toHaveLength(1);
    await stillServes(bed);

    // Oversized and streamed (no Content-Length): refused once the limit is crossed.
    const chunk = new Uint8Array(16 * 1024).fill(0x42);
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(ctrl) {
        if (sent > bed!.server.config.maxMsgSize * 2) ctrl.close();
        else {
          sent += chunk.byteLength;
          ctrl.enqueue(chunk);
        }
      },
    });
    const streamed = await fetch(url, { method: 'POST', body: stream, headers: { 'content-type': ct }, duplex: 'half' } as RequestInit).then(
      (r) => r.status,
      (err: unknown) => `network error: ${String((err as Error).cause ?? err)}`,
    );
    expect(streamed).toBe(413);
    await stillServes(bed);
  });

  it('a message with a valid header but a broken body gets a SyncML reply with the error in the SyncHdr status', async () => {
    bed = await startBed([{ deviceId: GOOD, encoding }]);
    const url = bed.server.dmUrl;
    const acct = bed.server.account(GOOD)!;

    // A Get without its Item: incomplete command (412).
    const p1 = package1(GOOD, acct.username, acct.secret, '3A');
    const broken: SyncMLMessage = { ...p1, body: [...p1.body, { kind: 'Get', cmdID: '3', items: [] }] };
    const r = await post(url, encodeSyncML(broken, encoding), ct);
    expect(r.status).toBe(200);
    expect(r.type).toBe(ct);
    const { msg, status } = hdrStatusOf(r.body, encoding);
    expect(status.data).toBe('412');
    expect(status.msgRef).toBe('1');
    expect(msg.hdr.sessionID).toBe('3A');
    expect(msg.hdr.target.locURI).toBe(GOOD);
    expect(msg.final).toBe(true);
    // Only the status: no commands for a message the server could not read.
    expect(msg.body.map((c) => c.kind)).toEqual(['Status']);
    expect(bed.server.activeSessions).toBe(0);
    await stillServes(bed);
  });
});

describe('malformed XML', () => {
  it('a DOCTYPE with an entity is refused, and an unknown command in SyncBody gets 400 in the SyncHdr status', async () => {
    bed = await startBed([{ deviceId: GOOD, encoding: 'xml' }]);
    const url = bed.server.dmUrl;
    const ct = CONTENT_TYPES.xml;
    const acct = bed.server.account(GOOD)!;
    const xml = Buffer.from(encodeSyncML(package1(GOOD, acct.username, acct.secret, '5B'), 'xml')).toString('utf8');

    // DTD with an entity (billion-laughs style): never expanded.
    const doctype = xml.replace(
      /^(<\?xml[^>]*\?>)?/,
      (decl) => `${decl}<!DOCTYPE SyncML [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>`,
    ).replace(`<LocURI>${GOOD}</LocURI>`, `<LocURI>&b;</LocURI>`);
    expect(doctype).toContain('<!DOCTYPE');
    expect(doctype).toContain('&b;');
    const r1 = await post(url, doctype, ct);
    expect(r1.status).toBe(400);
    expect(Buffer.from(r1.body).toString('utf8')).not.toContain('aaaaaaaaaa');
    expect(grep(bed.serverLog, /malformed message/)).toHaveLength(1);

    // An undeclared entity reference without a DOCTYPE: also malformed.
    const entity = xml.replace(`<LocURI>${GOOD}</LocURI>`, '<LocURI>&xxe;</LocURI>');
    expect((await post(url, entity, ct)).status).toBe(400);

    // Valid header, unknown element in SyncBody: 400 in the SyncHdr status (notes §3.4).
    const unknown = xml.replace('<Final/>', '<Frobnicate><CmdID>9</CmdID></Frobnicate><Final/>');
    expect(unknown).toContain('Frobnicate');
    const r3 = await post(url, unknown, ct);
    expect(r3.status).toBe(200);
    const { status } = hdrStatusOf(r3.body, 'xml');
    expect(status.data).toBe('400');

    // Not even SyncML: a well-formed XML document of another kind.
    const other = await post(url, '<?xml version="1.0"?><html><body>hi</body></html>', ct);
    expect(other.status).toBe(400);

    const s = await bed.devices[0]!.connect();
    expect(s.ok, s.reason).toBe(true);
  });
});
