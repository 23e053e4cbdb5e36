/**
 * `gwmo server`, started as a real process from a config file, against the independent "standard"
 * OMA DM 1.2 client of test/support/standard-client.ts (raw SyncML, no gwmo codec, libwbxml for
 * WBXML): Basic credentials towards the server, MD5 required from the server, the server's nonce
 * rotated through NextNonce every session.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StandardClient } from '../support/standard-client.ts';

const SERVER_ID = 'std-test-dms';
const SERVER_SECRET = 'Srv-Secret-2026';
const DEVICE_ID = 'IMEI:493005100592800';
const USER = 'stdclient';
const PASSWORD = 'Std-Client-Pw';

let dir: string;
let proc: ChildProcess;
let base: string;
let output = '';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gwmo-std-'));
  await writeFile(
    join(dir, 'server.yaml'),
    [
      'listen: 127.0.0.1:0',
      'path: /dm',
      `serverId: ${SERVER_ID}`,
      `serverSecret: ${SERVER_SECRET}`,
      'serverAuthType: md5',
      'accounts:',
      `  - deviceId: "${DEVICE_ID}"`,
      `    username: ${USER}`,
      `    secret: ${PASSWORD}`,
      '    authType: basic',
      '',
    ].join('\n'),
  );
  proc = spawn(process.execPath, ['bin/gwmo.js', 'server', '--config', join(dir, 'server.yaml'), '--data', join(dir, 'data')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc.stderr!.on('data', (d) => (output += d));
  base = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${output}`)), 20_000);
    proc.stdout!.on('data', (d: Buffer) => {
      output += d;
      const m = /DM endpoint (http:\/\/\S+)\/dm/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    proc.on('exit', (code) => reject(new Error(`server exited with ${code}:\n${output}`)));
  });
});

afterAll(async () => {
  proc?.kill('SIGTERM');
  await new Promise((r) => proc?.once('exit', r));
  await rm(dir, { recursive: true, force: true });
});

const client = (): StandardClient =>
  (std ??= new StandardClient({
    url: `${base}/dm`,
    deviceId: DEVICE_ID,
    user: USER,
    password: PASSWORD,
    serverId: SERVER_ID,
    serverSecret: SERVER_SECRET,
    values: { './DevInfo/Mod': 'RefClient', './DevInfo/Man': 'StdCorp' },
  }));
/** One client for both encodings: one account, so its nonce state carries over. */
let std: StandardClient | undefined;

async function queueGet(uri: string): Promise<string> {
  const res = await fetch(`${base}/api/devices/${encodeURIComponent(DEVICE_ID)}/commands`, {
    method: 'POST',
    body: JSON.stringify({ cmd: 'Get', uri, wait: false, notify: false }),
    headers: { 'content-type': 'application/json' },
  });
  expect(res.status).toBe(202);
  return ((await res.json()) as { id: string }).id;
}

async function result(id: string): Promise<any> {
  const res = await fetch(`${base}/api/devices/${encodeURIComponent(DEVICE_ID)}/commands/${id}`);
  return res.json();
}

describe.each(['xml', 'wbxml'] as const)('gwmo server with a standard DM 1.2 client (%s)', (encoding) => {
  it('authenticates both ways (client Basic, server MD5 with NextNonce rotation) and delivers queued commands', async () => {
    const id1 = await queueGet('./DevInfo/Mod');
    const s1 = await client().session(encoding, encoding === 'xml' ? '1' : 'A1');
    expect(s1.serverCredChecks[0]).toBe(true);
    expect(s1.executed).toContain('Get ./DevInfo/Mod');
    const r1 = await result(id1);
    expect(r1.status).toBe(200);
    expect(r1.results[0].data).toBe('RefClient');

    // Second session: the server must now use the nonce we handed over in the first one.
    const id2 = await queueGet('./DevInfo/Man');
    const before = Buffer.from(client().state.serverNonce);
    const s2 = await client().session(encoding, encoding === 'xml' ? '2' : 'A2');
    expect(before.length).toBe(16);
    expect(s2.serverCredChecks.length).toBeGreaterThan(0);
    expect(s2.serverCredChecks[0]).toBe(true);
    expect((await result(id2)).results[0].data).toBe('StdCorp');
  });
});
