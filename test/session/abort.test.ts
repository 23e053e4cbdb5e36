/**
 * Session abort (Alert 1223), with the two session engines wired back to back through the real
 * client machine (no HTTP): the device gives up mid-session and the server ends the session,
 * keeping the unanswered command queued.
 */
import { createActor } from 'xstate';
import { describe, expect, it } from 'vitest';
import { clientSessionMachine, type ClientSessionOutput } from '../../machines/client-session.ts';
import { decodeSyncML } from '../../src/codec/syncml.ts';
import type { Encoding } from '../../src/codec/model.ts';
import { ClientSession } from '../../src/session/client-session.ts';
import { ServerSession, type AccountNonces } from '../../src/session/server-session.ts';
import { CommandQueue } from '../../src/server/queue.ts';
import { memoryStore } from '../../src/store/store.ts';

describe.each(['xml', 'wbxml'] as Encoding[])('session abort over %s', (encoding) => {
  it('a device that cannot continue sends Alert 1223; the server ends the session and keeps the command queued', async () => {
    const queue = await CommandQueue.open(memoryStore());
    const entry = await queue.enqueue('IMEI:9', { kind: 'Get', items: [{ target: { locURI: './DevInfo/Mod' } }] });
    let nonces: AccountNonces = { clientNonce: '', serverNonce: '' };
    const log: string[] = [];
    const server = new ServerSession('4D2', 'IMEI:9', {
      account: () => ({
        deviceId: 'IMEI:9', username: 'u9', secret: 'p9', authType: 'syncml:auth-md5',
        serverId: 'dms', serverSecret: 'sp', serverAuthType: 'syncml:auth-md5',
      }),
      loadNonces: async () => nonces,
      saveNonces: async (_, n) => void (nonces = n),
      queue,
      onDevInfo: async () => {},
      log: (_, m) => log.push(m),
      maxMsgSize: 65536,
    });
    const client = new ClientSession('4D2', 'server', {
      deviceId: 'IMEI:9', serverUri: 'http://127.0.0.1/dm', serverId: 'dms',
      client: { type: 'syncml:auth-md5', name: 'u9', secret: 'p9', nonce: '' },
      server: { type: 'syncml:auth-md5', name: 'dms', secret: 'sp', nonce: '' },
      devInfo: { DevId: 'IMEI:9', Man: 'm', Mod: 'x', DmV: '1.2', Lang: 'en' },
      encoding, maxMsgSize: 16384,
      execute: async () => { throw new Error('flash storage failed'); },
      storeNonce: async () => {},
      log: () => {},
    });
    const sent: string[][] = [];
    const actor = createActor(clientSessionMachine, {
      input: {
        session: client,
        requestTimeoutMs: 10_000,
        exchange: async (out) => {
          const msg = decodeSyncML(out.body, encoding);
          sent.push(msg.body.map((c) => (c.kind === 'Alert' ? `Alert ${c.data}` : c.kind)));
          const reply = await server.handle({ message: msg, raw: out.body, encoding, ...(out.hmacHeader ? { hmacHeader: out.hmacHeader } : {}) });
          return { message: decodeSyncML(reply.body, encoding), raw: reply.body };
        },
      },
    });
    const output = await new Promise<ClientSessionOutput>((resolve) => {
      actor.subscribe({ complete: () => resolve(actor.getSnapshot().output!) });
      actor.start();
    });
    expect(sent).toEqual([['Alert 1200', 'Replace'], ['Alert 1223']]);
    expect(output).toMatchObject({ ok: false, reason: 'aborted: flash storage failed' });
    expect(server.endReason).toBe('aborted-by-client');
    expect(log.some((l) => l.includes('aborted by IMEI:9'))).toBe(true);
    const again = await queue.get('IMEI:9', entry.id);
    expect(again?.state).toBe('sent');
    expect((await queue.pending('IMEI:9')).map((e) => e.id)).toEqual([entry.id]);
  });
});
