/**
 * Acceptance: the server's session idle timeout, driven by an xstate SimulatedClock (no sleeping).
 * A client that opens a session, receives commands and goes silent has its session ended after
 * `sessionTimeout` seconds of simulated time; activity re-arms the timer; the command it never
 * answered stays pending and reaches the device in its next session.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { SimulatedClock } from 'xstate';
import { basicCred } from '../../src/codec/auth.ts';
import type { Command, Encoding, StatusCommand, SyncHdr, SyncMLMessage } from '../../src/codec/model.ts';
import { CONTENT_TYPES, decodeSyncML, encodeSyncML } from '../../src/codec/syncml.ts';
import { startBed, type TestBed } from '../support/fixtures.ts';
import { ENCODINGS, enqueue, grep, listCommands, until } from './helpers.ts';

const DEV = 'IMEI:700000000000001';

let bed: TestBed | undefined;
afterEach(async () => {
  await bed?.close();
  bed = undefined;
});

/** A hand-driven client: posts SyncML messages of one session and decodes the answers. */
function manualClient(b: TestBed, encoding: Encoding, sessionID: string) {
  const acct = b.server.account(DEV)!;
  let msgID = 0;
  const hdr = (withCred: boolean): SyncHdr => ({
    verDTD: '1.2',
    verProto: 'DM/1.2',
    sessionID,
    msgID: String(++msgID),
    target: { locURI: b.server.dmUrl },
    source: { locURI: DEV, locName: acct.username },
    ...(withCred ? { cred: { meta: { type: 'syncml:auth-basic', format: 'b64' }, data: basicCred(acct.username, acct.secret) } } : {}),
    meta: { maxMsgSize: 16384 },
  });
  const post = async (m: SyncMLMessage): Promise<SyncMLMessage> => {
    const res = await fetch(b.server.dmUrl, { method: 'POST', body: encodeSyncML(m, encoding), headers: { 'content-type': CONTENT_TYPES[encoding] } });
    expect(res.status).toBe(200);
    return decodeSyncML(new Uint8Array(await res.arrayBuffer()), encoding);
  };
  return {
    /** Package 1: Alert 1201 + DevInfo, with credentials. */
    open: () =>
      post({
        hdr: hdr(true),
        body: [
          { kind: 'Alert', cmdID: '1', data: '1201', items: [] },
          { kind: 'Replace', cmdID: '2', items: [{ source: { locURI: './DevInfo/DevId' }, data: DEV }] },
        ],
        final: true,
      }),
    /** A message without Final holding only the status for the server's header (more to come). */
    partial: (reply: SyncMLMessage) =>
      post({
        hdr: hdr(false),
        body: [
          {
            kind: 'Status',
            cmdID: '1',
            msgRef: reply.hdr.msgID,
            cmdRef: '0',
            cmd: 'SyncHdr',
            targetRefs: [DEV],
            sourceRefs: [reply.hdr.source.locURI],
            data: '212',
            items: [],
          },
        ],
        final: false,
      }),
  };
}

const hdrCode = (m: SyncMLMessage): string | undefined => m.body.find((c): c is StatusCommand => c.kind === 'Status' && c.cmdRef === '0')?.data;
const kinds = (m: SyncMLMessage): string[] => m.body.map((c: Command) => (c.kind === 'Alert' ? `Alert ${c.data}` : c.kind));

describe.each(ENCODINGS)('session idle timeout over %s', (encoding) => {
  it('ends a session whose client went silent, on simulated time only', async () => {
    const clock = new SimulatedClock();
    bed = await startBed([{ deviceId: DEV, encoding, authType: 'basic' }], { clock });
    const timeoutMs = bed.server.config.sessionTimeout * 1000;
    expect(timeoutMs).toBe(30_000);
    const queued = await enqueue(bed.server, DEV, { cmd: 'Get', uri: './Vendor/Temp' });

    const client = manualClient(bed, encoding, '7E');
    const p2 = await client.open();
    expect(hdrCode(p2)).toBe('212');
    expect(kinds(p2)).toContain('Get');
    expect(p2.final).toBe(true);
    expect(bed.server.activeSessions).toBe(1);

    // Just short of the timeout: still open.
    clock.increment(timeoutMs - 1000);
    expect(bed.server.activeSessions).toBe(1);
    // Activity re-arms the timer: a message without Final gets a "next message" reply.
    const next = await client.partial(p2);
    expect(hdrCode(next)).toBe('200');
    expect(kinds(next)).toEqual(['Status', 'Alert 1222']);
    expect(next.final).toBe(false);
    clock.increment(timeoutMs - 1000);
    expect(bed.server.activeSessions).toBe(1);
    expect(grep(bed.serverLog, /ended: timeout/)).toEqual([]);

    // Then silence for the full timeout: the session is ended.
    clock.increment(1000);
    await until(() => bed!.server.activeSessions === 0, 'the idle session to end');
    await until(() => grep(bed!.serverLog, /session 7E of IMEI:700000000000001 ended: timeout/).length === 1, 'the timeout to be logged');
    expect(bed.server.openSessions()).toEqual([]);

    // The session is gone: its next message opens a new one, which wants credentials again.
    const late = await client.partial(next);
    expect(hdrCode(late)).toBe('407');
    expect(late.body.find((c): c is StatusCommand => c.kind === 'Status' && c.cmdRef === '0')?.chal?.meta.type).toBe('syncml:auth-basic');
    // That new session waits for credentials that never come, and times out in turn.
    expect(bed.server.activeSessions).toBe(1);
    clock.increment(timeoutMs);
    await until(() => bed!.server.activeSessions === 0, 'the unauthenticated session to end');
    expect(grep(bed.serverLog, /session 7E of IMEI:700000000000001 ended: timeout/)).toHaveLength(2);

    // The unanswered Get was not lost: the device gets it in its next session.
    const [entry] = await listCommands(bed.server, DEV);
    expect(entry.id).toBe(queued.id);
    expect(entry.state).toBe('sent');
    const s = await bed.devices[0]!.connect();
    expect(s.ok, s.reason).toBe(true);
    expect(s.executed).toEqual([{ cmd: 'Get', target: './Vendor/Temp', status: '200' }]);
    const done = await bed.server.queue.waitFor(DEV, queued.id, 5000);
    expect(done?.state).toBe('done');
    expect(done?.outcome?.results.map((r) => r.data)).toEqual(['21.5']);
    expect(done?.attempts).toBe(2);
  });
});
