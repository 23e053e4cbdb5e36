/**
 * The same store-and-forward guarantee with a real parent process (issue "Security and
 * reliability", acceptance "fault tests with real processes and SIGKILL"): the `gwmo server`
 * process is killed with SIGKILL, a device behind the gateway sends 1,000 alerts meanwhile, the
 * server is started again on the same port and data, and every alert arrives in order.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { deviceConfigSchema } from '../../src/device/config.ts';
import { SimDevice } from '../../src/device/device.ts';
import { gatewayConfigSchema } from '../../src/gateway/config.ts';
import { Gateway } from '../../src/gateway/gateway.ts';
import { genericAlert } from '../../src/session/client-session.ts';
import { memoryLogger, tempDir } from '../support/fixtures.ts';
import { proxyAssociation, until } from '../support/gateways.ts';
import { startGwmo, type GwmoProcess } from '../support/processes.ts';

let procs: GwmoProcess[] = [];
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  for (const p of procs) await p.stop('SIGKILL');
  procs = [];
});

const ID = 'IMEI:700000000000961';

describe('the gateway outbox when the server process is killed', () => {
  it('keeps 1,000 alerts while the server is dead and delivers them in order to the restarted one', async () => {
    const tmp = await tempDir('gwmo-outbox-proc-');
    cleanups.push(tmp.cleanup);
    const config = join(tmp.dir, 'server.yaml');
    await writeFile(config, `listen: 127.0.0.1:0\nserverId: dms\nserverSecret: server-secret\naccounts:\n  - { deviceId: gw-p, username: gw-p, secret: gw-p-secret, authType: md5, gateway: true }\n`);
    const data = join(tmp.dir, 'server');
    const ready = /DM endpoint (http:\/\/127\.0\.0\.1:(\d+)\/dm)/;
    const first = await startGwmo(['server', '--config', config, '--data', data], ready);
    procs.push(first);
    const [, dmUrl, port] = first.match;
    const api = dmUrl!.replace(/\/dm$/, '');

    const gwLog = memoryLogger('gw-p');
    const gw = await Gateway.create({
      config: gatewayConfigSchema.parse({
        id: 'gw-p',
        parent: { url: dmUrl, serverId: 'dms', username: 'gw-p', secret: 'gw-p-secret', authType: 'md5', serverSecret: 'server-secret', serverAuthType: 'md5' },
        serverId: 'gw-p-south',
        serverSecret: 'gw-p-south-secret',
        devices: [proxyAssociation(ID)],
      }),
      dataDir: join(tmp.dir, 'gw'),
      logger: gwLog.logger,
    });
    await gw.start();
    cleanups.push(() => gw.stop());
    const dev = await SimDevice.create({
      config: deviceConfigSchema.parse({ deviceId: ID, server: { serverId: 'gw-p-south', url: gw.southUrl, username: `${ID}-user`, secret: `${ID}-secret`, authType: 'md5', serverSecret: 'gw-p-south-secret', serverAuthType: 'md5' } }),
      logger: memoryLogger('dev').logger,
    });
    cleanups.push(() => dev.stop());
    expect((await dev.connect()).ok).toBe(true);
    await until(async () => (await fetch(`${api}/api/devices/${encodeURIComponent(ID)}`)).status === 200, 'the server to know the device', 20_000);

    await first.stop('SIGKILL');
    for (let s = 0; s < 10; s++) {
      const alerts = Array.from({ length: 100 }, (_, i) => genericAlert([{ source: { locURI: './Vendor/Counter' }, meta: { type: 'org.gwmo.test.seq', format: 'int' }, data: String(s * 100 + i + 1) }]));
      expect((await dev.connect({ alerts })).ok).toBe(true); // the gateway serves its device while the parent is dead
    }
    await until(() => gwLog.lines.some((l) => /cannot reach the parent .* alert\(s\) kept/.test(l)), 'the gateway to keep them');

    const second = await startGwmo(['server', '--config', config, '--data', data, '--listen', `127.0.0.1:${port}`], ready);
    procs.push(second);
    const seqs = async (): Promise<number[]> => {
      const { alerts } = (await (await fetch(`${api}/api/devices/${encodeURIComponent(ID)}/alerts`)).json()) as { alerts: { items: { meta?: { type?: string }; data?: string }[] }[] };
      return alerts.flatMap((a) => a.items.filter((it) => it.meta?.type === 'org.gwmo.test.seq').map((it) => Number(it.data)));
    };
    await until(async () => (await seqs()).length >= 1000, '1,000 alerts at the restarted server', 60_000);
    expect(await seqs()).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
  }, 120_000);
});
