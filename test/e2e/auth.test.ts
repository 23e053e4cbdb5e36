/**
 * Acceptance: DM authentication end to end (notes §5): every client x server auth type in XML and
 * WBXML, MD5 nonce rotation kept in step between the server's store and the device's DMAcc, and
 * recovery from a stale client nonce through one 401 + Chal round.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { newNonce, nonceToB64 } from '../../src/codec/auth.ts';
import { readAccounts, storeNonce } from '../../src/tree/standard.ts';
import { startBed, type TestBed } from '../support/fixtures.ts';
import { ENCODINGS, grep, run } from './helpers.ts';

type Auth = 'basic' | 'md5' | 'hmac';
const AUTHS: Auth[] = ['basic', 'md5', 'hmac'];
const SERVER_ID = 'gwmo-test-dms';

let bed: TestBed | undefined;
afterEach(async () => {
  await bed?.close();
  bed = undefined;
});

/** The full cross product: client auth x server auth x encoding. */
const MATRIX = AUTHS.flatMap((client) => AUTHS.flatMap((server) => ENCODINGS.map((encoding) => ({ client, server, encoding }))));

describe.each(MATRIX)('client $client / server $server over $encoding', ({ client, server, encoding }) => {
  it('authenticates both ways; sessions complete and commands run', async () => {
    const id = `IMEI:2${AUTHS.indexOf(client)}${AUTHS.indexOf(server)}${ENCODINGS.indexOf(encoding)}00000000001`;
    bed = await startBed([{ deviceId: id, authType: client, serverAuthType: server, encoding }]);
    const dev = bed.devices[0]!;
    const first = await dev.connect();
    expect(first.ok, `${first.reason}\n${bed.serverLog.join('\n')}`).toBe(true);
    expect(first.reason).toBe('completed');

    // A server-initiated session (Package 0 signed with the server secret and nonce) runs a command.
    const session = dev.nextSession();
    const g = await run(bed, id, { cmd: 'Replace', uri: './Vendor/Name', value: `${client}-${server}` });
    expect(g.status).toBe(200);
    const rec = await session;
    expect(rec.ok, rec.reason).toBe(true);
    expect(rec.initiator).toBe('server');

    // Rotated nonces (MD5 per session, HMAC per message) keep working: a third session.
    const again = await run(bed, id, { cmd: 'Get', uri: './Vendor/Name' });
    expect(again.results[0].data).toBe(`${client}-${server}`);
    expect(grep(bed.serverLog, /authentication of .* failed/)).toEqual([]);
    expect(grep(bed.serverLog, /rejected the server credentials/)).toEqual([]);
    expect(dev.ignoredNotifications).toBe(0);
  });
});

describe.each(ENCODINGS)('MD5 nonces over %s', (encoding) => {
  const id = 'IMEI:300000000000001';

  /** The server's view of the nonces and the device's DMAcc must agree. */
  async function expectInStep(b: TestBed): Promise<{ clientNonce: string; serverNonce: string }> {
    const srv = await b.server.accountNonces(id);
    const [acct] = await readAccounts(b.devices[0]!.tree);
    expect(acct!.serverId).toBe(SERVER_ID);
    expect(acct!.client!.nonce).toBe(srv.clientNonce);
    expect(acct!.server!.nonce).toBe(srv.serverNonce);
    return srv;
  }

  it('rotates the nonces every session and keeps server and device in step', async () => {
    bed = await startBed([{ deviceId: id, authType: 'md5', serverAuthType: 'md5', encoding }]);
    const dev = bed.devices[0]!;
    const n0 = await bed.server.accountNonces(id);
    expect(n0).toEqual({ clientNonce: '', serverNonce: '' });

    const s1 = await dev.connect();
    expect(s1.ok, s1.reason).toBe(true);
    const n1 = await expectInStep(bed);
    expect(n1.clientNonce).not.toBe(n0.clientNonce);
    expect(Buffer.from(n1.clientNonce, 'base64').length).toBeGreaterThanOrEqual(16);

    // A server-initiated session with a command: both nonces rotate (the device answers, so it
    // hands the server a new server nonce).
    let session = dev.nextSession();
    await run(bed, id, { cmd: 'Get', uri: './Vendor/Temp' });
    expect((await session).ok).toBe(true);
    const n2 = await expectInStep(bed);
    expect(n2.clientNonce).not.toBe(n1.clientNonce);
    expect(n2.serverNonce).not.toBe(n1.serverNonce);
    expect(n2.serverNonce).not.toBe('');

    // The next session authenticates with the rotated nonces at the first try.
    session = dev.nextSession();
    const r = await run(bed, id, { cmd: 'Get', uri: './Vendor/Name' });
    expect(r.results[0].data).toBe('lamp');
    expect((await session).ok).toBe(true);
    const n3 = await expectInStep(bed);
    expect(n3.clientNonce).not.toBe(n2.clientNonce);
    expect(grep(bed.serverLog, /authentication of .* failed/)).toEqual([]);
  });

  it('a device with a stale client nonce gets in after one 401 + Chal round', async () => {
    bed = await startBed([{ deviceId: id, authType: 'md5', serverAuthType: 'md5', encoding }]);
    const dev = bed.devices[0]!;
    expect((await dev.connect()).ok).toBe(true);
    const before = await expectInStep(bed);

    const stale = nonceToB64(newNonce());
    await storeNonce(dev.tree, SERVER_ID, 'CLCRED', stale);
    const s = await dev.connect();
    expect(s.ok, s.reason).toBe(true);
    // P1 (401 + Chal), P1 again with the challenged nonce: two server answers, so 2 client messages.
    expect(s.messages).toBe(2);
    const failures = grep(bed.serverLog, /authentication of IMEI:300000000000001 failed/);
    expect(failures).toHaveLength(1);
    expect(failures[0]).toMatch(/MD5 digest does not match/);
    expect(failures[0]).toMatch(/status=401/);
    expect(grep(bed.deviceLogs[0]!, /server challenged \(401\)/)).toHaveLength(1);

    const after = await expectInStep(bed);
    expect(after.clientNonce).not.toBe(stale);
    expect(after.clientNonce).not.toBe(before.clientNonce);
    // And the account keeps working.
    const r = await run(bed, id, { cmd: 'Get', uri: './Vendor/Temp' });
    expect(r.results[0].data).toBe('21.5');
    expect(grep(bed.serverLog, /authentication of IMEI:300000000000001 failed/)).toHaveLength(1);
  });
});
