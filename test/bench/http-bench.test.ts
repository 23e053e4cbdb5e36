/**
 * Smoke test of the DM endpoint benchmark (bench/http.bench.ts) in quick mode, and of its load
 * generator's messages (bench/http-load.ts): the figure has the documented fields, DM messages were
 * answered, and the generator's templates are what the codec and the real client engine produce.
 * No timing assertions.
 */
import { describe, expect, it } from 'vitest';
import { runHttpBench } from '../../bench/http.bench.ts';
import { deviceTemplates, readServerMessage } from '../../bench/http-load.ts';
import { md5Cred, nonceCandidates } from '../../src/codec/auth.ts';
import type { OperationCommand, StatusCommand } from '../../src/codec/model.ts';
import { decodeSyncML, encodeSyncML } from '../../src/codec/syncml.ts';
import { ClientSession } from '../../src/session/client-session.ts';
import { cmdStatus, type Outgoing } from '../../src/session/common.ts';

const positive = (x: unknown): boolean => typeof x === 'number' && Number.isFinite(x) && x > 0;

describe('DM endpoint benchmark (quick mode)', () => {
  it('prints one proxy.http line with n, value, unit, baseline, ratio and note, after answering DM messages', { timeout: 30_000 }, async () => {
    const lines: string[] = [];
    const info: string[] = [];
    const figure = await runHttpBench({ quick: true, connections: 4, durationMs: 500, write: (l) => lines.push(l), log: (l) => info.push(l) });
    expect(lines).toHaveLength(1);
    const p = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(p).toEqual(figure);
    expect(p.name).toBe('proxy.http');
    expect(p.n).toBe(4);
    expect(p.unit).toBe('req/s');
    for (const k of ['value', 'baseline', 'ratio'] as const) expect(positive(p[k]), `${k} = ${String(p[k])}`).toBe(true);
    expect(Math.abs((p.ratio as number) - (p.value as number) / (p.baseline as number))).toBeLessThan(0.01);
    expect(typeof p.note).toBe('string');
    // Sessions ran to completion: Package 1, then the statuses and Results of the two queued Gets.
    expect(positive(p.sessionsPerSecond)).toBe(true);
    expect(p.messagesPerSession as number).toBeGreaterThanOrEqual(1);
    expect(info.join('\n')).toMatch(/DM server \d+ msg\/s/);
  });

  it('builds Package 1 and the Results reply with the codec, and reads server messages', () => {
    const acct = { deviceId: 'IMEI:1', username: 'u1', secret: 'pw', clientNonce: '', serverNonce: '' };
    const t = deviceTemplates({ url: 'http://h/dm', serverId: 'dms', devInfo: { DevId: '', Man: 'm' }, maxMsgSize: 4096 }, acct);
    const cred = md5Cred('u1', 'pw', nonceCandidates('')[0] ?? new Uint8Array());
    const p1 = decodeSyncML(t.p1.fill({ SID: '1F', CRED: cred }), 'xml');
    expect(p1.hdr).toMatchObject({ sessionID: '1F', msgID: '1', source: { locURI: 'IMEI:1', locName: 'u1' }, cred: { data: cred } });
    expect(p1.body.map((c) => c.kind)).toEqual(['Alert', 'Replace']);
    // Values are filled in already escaped (the generator escapes what it inserts).
    const r = decodeSyncML(t.reply(2, true).fill({ SID: '1F', MID: '2', MSGREF: '1', NONCE: 'bm9uY2U=', REF0: '4', URI0: './A', VAL0: 'x', REF1: '5', URI1: './B', VAL1: 'y&amp;z' }), 'xml');
    expect(r.body.map((c) => c.kind)).toEqual(['Status', 'Status', 'Results', 'Status', 'Results']);
    expect(r.body[0]).toMatchObject({ cmdRef: '0', data: '212', chal: { meta: { nextNonce: 'bm9uY2U=' } } });
    expect(r.body[4]).toMatchObject({ kind: 'Results', cmdRef: '5', items: [{ source: { locURI: './B' }, data: 'y&z' }] });

    const server = encodeSyncML(
      {
        hdr: { verDTD: '1.2', verProto: 'DM/1.2', sessionID: '1F', msgID: '1', target: { locURI: 'IMEI:1' }, source: { locURI: 'dms' }, cred: { meta: { type: 'syncml:auth-md5', format: 'b64' }, data: 'Q1JFRA==' } },
        body: [
          { kind: 'Status', cmdID: '1', msgRef: '1', cmdRef: '0', cmd: 'SyncHdr', targetRefs: ['dms'], sourceRefs: ['IMEI:1'], data: '212', items: [], chal: { meta: { type: 'syncml:auth-md5', format: 'b64', nextNonce: 'TkVYVA==' } } },
          { kind: 'Get', cmdID: '4', items: [{ target: { locURI: './A&B' } }] },
        ],
        final: true,
      },
      'xml',
    );
    const m = readServerMessage(new TextDecoder().decode(server));
    expect(m).toMatchObject({ msgID: '1', sessionID: '1F', cred: 'Q1JFRA==', hdrStatus: '212', nextNonce: 'TkVYVA==', gets: [{ cmdID: '4', target: './A&B' }], final: true, otherCommands: false });
  });

  it('answers a server package exactly as the real client engine does', async () => {
    const acct = { deviceId: 'IMEI:2', username: 'u2', secret: 'pw2', clientNonce: '', serverNonce: '' };
    const cfg = { url: 'http://h/dm', serverId: 'dms', devInfo: { DevId: '', Man: 'm' }, maxMsgSize: 4096 };
    const values: Record<string, string> = { './DevDetail/SwV': '1.4.2', './Vendor/Temp': '21.5' };
    const engine = new ClientSession('2A', 'client', {
      deviceId: acct.deviceId,
      serverUri: cfg.url,
      serverId: cfg.serverId,
      client: { type: 'syncml:auth-md5', name: acct.username, secret: acct.secret, nonce: '' },
      server: { type: 'syncml:auth-md5', name: 'dms', secret: 'srv', nonce: '' },
      devInfo: { ...cfg.devInfo, DevId: acct.deviceId },
      encoding: 'xml',
      maxMsgSize: cfg.maxMsgSize,
      execute: async (cmds: OperationCommand[], msgRef: string) =>
        cmds.flatMap((c): Outgoing[] => {
          const uri = c.kind === 'Get' ? c.items[0]!.target!.locURI : '';
          return [cmdStatus(msgRef, c, 200), { kind: 'Results', msgRef, cmdRef: c.cmdID, items: [{ source: { locURI: uri }, data: values[uri]! }] }];
        }),
      storeNonce: async () => {},
      log: () => {},
    });
    const t = deviceTemplates(cfg, acct);
    const cred = md5Cred('u2', 'pw2', nonceCandidates('')[0] ?? new Uint8Array());
    expect(decodeSyncML(engine.start().body, 'xml')).toEqual(decodeSyncML(t.p1.fill({ SID: '2A', CRED: cred }), 'xml'));

    const p2 = encodeSyncML(
      {
        hdr: { verDTD: '1.2', verProto: 'DM/1.2', sessionID: '2A', msgID: '1', target: { locURI: 'IMEI:2' }, source: { locURI: 'dms', locName: 'dms' }, cred: { meta: { type: 'syncml:auth-md5', format: 'b64' }, data: md5Cred('dms', 'srv', new Uint8Array()) } },
        body: [
          { kind: 'Status', cmdID: '1', msgRef: '1', cmdRef: '0', cmd: 'SyncHdr', targetRefs: ['dms'], sourceRefs: ['IMEI:2'], data: '212', items: [], chal: { meta: { type: 'syncml:auth-md5', format: 'b64', nextNonce: 'TkVYVA==' } } },
          { kind: 'Status', cmdID: '2', msgRef: '1', cmdRef: '1', cmd: 'Alert', targetRefs: [], sourceRefs: [], data: '200', items: [] },
          { kind: 'Get', cmdID: '4', items: [{ target: { locURI: './DevDetail/SwV' } }] },
          { kind: 'Get', cmdID: '5', items: [{ target: { locURI: './Vendor/Temp' } }] },
        ],
        final: true,
      },
      'xml',
    );
    const out = await engine.handle(decodeSyncML(p2, 'xml'), p2, undefined);
    const fromEngine = decodeSyncML(out!.body, 'xml');
    const m = readServerMessage(new TextDecoder().decode(p2));
    const nonce = (fromEngine.body[0] as StatusCommand).chal!.meta.nextNonce!;
    const v: Record<string, string> = { SID: '2A', MID: '2', MSGREF: m.msgID, NONCE: nonce };
    m.gets.forEach((g, i) => Object.assign(v, { [`REF${i}`]: g.cmdID, [`URI${i}`]: g.target, [`VAL${i}`]: values[g.target]! }));
    expect(decodeSyncML(t.reply(m.gets.length, true).fill(v), 'xml')).toEqual(fromEngine);
  });
});
