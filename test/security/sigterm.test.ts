/**
 * SIGTERM during a session loses nothing (issue "Security and reliability", point 4): a `gwmo
 * server` process gets SIGTERM while a device is executing one of its commands; the server keeps
 * serving that open session (refusing new ones with 503), the device's result arrives and is
 * stored, the process exits cleanly, and a server started again on the same data shows the
 * command done with the device's status.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { deviceConfigSchema } from '../../src/device/config.ts';
import { SimDevice } from '../../src/device/device.ts';
import { memoryLogger, tempDir } from '../support/fixtures.ts';
import { startGwmo, type GwmoProcess } from '../support/processes.ts';

let procs: GwmoProcess[] = [];
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const p of procs) await p.stop('SIGKILL');
  procs = [];
  for (const c of cleanups.splice(0).reverse()) await c();
});

const ID = 'IMEI:356938035649901';

describe('SIGTERM with a session open', () => {
  it('lets the open session finish, refuses new ones, exits cleanly, and the result is kept', async () => {
    const tmp = await tempDir('gwmo-sigterm-');
    cleanups.push(tmp.cleanup);
    const config = join(tmp.dir, 'server.yaml');
    await writeFile(
      config,
      `listen: 127.0.0.1:0
serverId: dms
serverSecret: server-secret
limits: { drainTimeout: 15 }
accounts:
  - { deviceId: '${ID}', username: meter, secret: meter-secret, authType: md5 }
  - { deviceId: 'IMEI:356938035649902', username: other, secret: other-secret, authType: md5 }
`,
    );
    const data = join(tmp.dir, 'data');
    const first = await startGwmo(['server', '--config', config, '--data', data], /Operator API (http:\/\/\S+)\/api/);
    procs.push(first);
    const api = first.match[1]!;
    const dmUrl = `${api}/dm`;
    const device = async (id: string, user: string, secret: string): Promise<SimDevice> => {
      const d = await SimDevice.create({
        config: deviceConfigSchema.parse({
          deviceId: id,
          server: { serverId: 'dms', url: dmUrl, username: user, secret, authType: 'md5', serverSecret: 'server-secret', serverAuthType: 'md5' },
          nodes: [
            { uri: './Vendor', format: 'node', acl: 'Get=*&Exec=dms' },
            { uri: './Vendor/Reboot', format: 'chr', value: '', exec: 'echo' },
          ],
        }),
        logger: memoryLogger(id).logger,
      });
      cleanups.push(() => d.stop());
      return d;
    };
    const meter = await device(ID, 'meter', 'meter-secret');
    // The Exec takes 2 s on the device: long enough to stop the server in the middle of it.
    let started!: () => void;
    const executing = new Promise<void>((r) => (started = r));
    meter.onExec('./Vendor/Reboot', async () => {
      started();
      await new Promise((r) => setTimeout(r, 2000));
      return { status: 200 };
    });
    const queued = (await (await fetch(`${api}/api/devices/${encodeURIComponent(ID)}/commands`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ cmd: 'Exec', uri: './Vendor/Reboot', notify: false, wait: false }),
    })).json()) as { id: string };
    const session = meter.connect();
    await executing;
    const exited = new Promise<number | null>((r) => first.proc.once('exit', (code) => r(code)));
    first.proc.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    // Meanwhile a new session is refused (the server is stopping), not half-served.
    const other = await device('IMEI:356938035649902', 'other', 'other-secret');
    const refused = await other.connect();
    expect(refused.ok).toBe(false);
    expect(refused.reason).toMatch(/503/);
    // The open session completes: the device's status reached the server before it went away.
    const rec = await session;
    expect(rec.ok, rec.reason).toBe(true);
    expect(await exited, first.output()).toBe(0);
    expect(first.output()).toMatch(/stopping: 1 open session\(s\) may finish/);

    // Started again on the same data: the command is done with the device's 200.
    const second = await startGwmo(['server', '--config', config, '--data', data], /Operator API (http:\/\/\S+)\/api/);
    procs.push(second);
    const cmd = (await (await fetch(`${second.match[1]!}/api/devices/${encodeURIComponent(ID)}/commands/${queued.id}`)).json()) as { state: string; status: number };
    expect(cmd).toMatchObject({ state: 'done', status: 200 });
  }, 60_000);
});
