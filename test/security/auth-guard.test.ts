/**
 * Brute-force guard and operator counters (issue "Security and reliability", points 2 and 6):
 * repeated authentication failures per account and per source address get their 401s held back in
 * slots that double (guessing cannot go faster, even in parallel sessions), with a log line and
 * counters; the owner still gets in and that clears the record; `/metrics` shows the counters move.
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { deviceConfigSchema } from '../../src/device/config.ts';
import { SimDevice } from '../../src/device/device.ts';
import { AuthGuard } from '../../src/server/auth-guard.ts';
import { serverConfigSchema } from '../../src/server/config.ts';
import { DmServer } from '../../src/server/server.ts';
import { memoryLogger, tempDir } from '../support/fixtures.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('AuthGuard', () => {
  it('holds failure replies in slots that double after the free attempts, queues parallel guesses, clears on success, forgets, stays bounded', () => {
    let t = 1_000_000;
    const g = new AuthGuard({ freeAttempts: 2, baseMs: 1000, maxMs: 4000, forgetAfterMs: 60_000, maxKeys: 3, now: () => t });
    expect(g.failure(['a']).delayMs).toBe(0);
    expect(g.failure(['a']).delayMs).toBe(0);
    expect(g.failure(['a'])).toEqual({ delayMs: 1000, failures: { a: 3 } });
    // A parallel guess right away queues behind the first: its slot comes 2 s after that one.
    expect(g.failure(['a']).delayMs).toBe(3000);
    t += 3000;
    expect(g.failure(['a']).delayMs).toBe(4000); // capped step
    // The worst key decides: a fresh address with a busy account still waits for the account.
    expect(g.failure(['a', 'addr']).delayMs).toBe(8000);
    g.success(['a']);
    expect(g.failure(['a'])).toEqual({ delayMs: 0, failures: { a: 1 } });
    t += 61_000; // forgotten after a quiet minute
    expect(g.failure(['addr']).failures).toEqual({ addr: 1 });
    for (const k of ['b', 'c', 'd', 'e']) g.failure([k]);
    expect(g.size).toBe(3);
  });
});

describe('a DM server under password guessing', () => {
  it('holds the failure replies of a guesser longer and longer, logs and counts it, and still lets the owner in', async () => {
    const tmp = await tempDir('gwmo-guard-');
    cleanups.push(tmp.cleanup);
    const mem = memoryLogger('guard');
    const server = await DmServer.create({
      config: serverConfigSchema.parse({
        listen: '127.0.0.1:0',
        serverId: 'dms',
        serverSecret: 'server-secret',
        accounts: [{ deviceId: 'IMEI:356938035649601', username: 'meter', secret: 'right-secret', authType: 'md5' }],
      }),
      dataDir: join(tmp.dir, 'server'),
      logger: mem.logger,
      authGuard: { freeAttempts: 2, baseMs: 300, maxMs: 1200 },
    });
    await server.start();
    cleanups.push(() => server.stop());
    const device = async (secret: string): Promise<SimDevice> => {
      const d = await SimDevice.create({
        config: deviceConfigSchema.parse({ deviceId: 'IMEI:356938035649601', server: { serverId: 'dms', url: server.dmUrl, username: 'meter', secret, authType: 'md5', serverSecret: 'server-secret', serverAuthType: 'md5' } }),
        logger: memoryLogger('dev').logger,
      });
      cleanups.push(() => d.stop());
      return d;
    };
    const metric = async (name: string, labels: string): Promise<number> => {
      const text = await (await fetch(`${server.url}/metrics`)).text();
      const m = new RegExp(`^${name}${labels ? `\\{${labels}\\}` : ''} (\\d+)`, 'm').exec(text);
      return m ? Number(m[1]) : 0;
    };

    // One guessing session: the first two 401s come at once, the third is held for a slot.
    const guesser = await device('wrong-secret');
    const t0 = Date.now();
    expect((await guesser.connect()).ok).toBe(false); // one session: up to 3 failed messages
    expect(Date.now() - t0).toBeGreaterThanOrEqual(300);
    expect(mem.lines.some((l) => /repeated authentication failures \(3 for account:IMEI:356938035649601, 2 for address:127\.0\.0\.1\): this 401 is held \d+ ms/.test(l))).toBe(true);
    expect(await metric('gwmo_auth_failures_total', 'kind="credentials"')).toBe(3);
    expect(await metric('gwmo_auth_held_replies_total', '')).toBe(1);
    // A second guessing session waits longer (the slots double).
    const t1 = Date.now();
    expect((await guesser.connect()).ok).toBe(false);
    expect(Date.now() - t1).toBeGreaterThanOrEqual(600 + 1200 + 1200); // slots of 600, then the 1200 cap

    // The owner is slowed too but not locked out: its stale nonce costs one held 401 with a
    // challenge, the right password then gets in, and that clears the record.
    const owner = await device('right-secret');
    const ok = await owner.connect();
    expect(ok.ok, `${ok.reason}\n${mem.lines.join('\n')}`).toBe(true);
    const held = await metric('gwmo_auth_held_replies_total', '');
    expect((await owner.connect()).ok).toBe(true);
    expect(await metric('gwmo_auth_held_replies_total', '')).toBe(held); // nothing held any more
    expect(await metric('gwmo_dm_sessions_total', 'outcome="completed"')).toBe(2);
    expect(await metric('gwmo_dm_sessions_total', 'outcome="auth-failed"')).toBe(2);
    expect(await metric('gwmo_dm_sessions_open', '')).toBe(0);

    // Malformed input is counted too.
    await fetch(server.dmUrl, { method: 'POST', headers: { 'content-type': 'application/vnd.syncml.dm+xml' }, body: '<SyncML><SyncHdr>' });
    expect(await metric('gwmo_rejected_messages_total', 'reason="malformed"')).toBe(1);
    // No secret in any log line.
    expect(mem.lines.filter((l) => l.includes('right-secret') || l.includes('wrong-secret'))).toEqual([]);
  });
});
