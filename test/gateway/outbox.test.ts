/**
 * Durable store-and-forward with the parent away (issue "Security and reliability", point 4): a
 * device behind a gateway sends 1,000 Generic Alerts while the DM server is down; the gateway
 * keeps them in its LevelDB outbox, retries with backoff, and after the server is back every alert
 * arrives, in order, nothing lost, within the server's MaxMsgSize.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { genericAlert } from '../../src/session/client-session.ts';
import { DmServer } from '../../src/server/server.ts';
import { memoryLogger } from '../support/fixtures.ts';
import { addDevice, addGateway, proxyAssociation, startDeployment, until, type Deployment } from '../support/gateways.ts';

let d: Deployment | undefined;
let revived: DmServer | undefined;
afterEach(async () => {
  await revived?.stop();
  revived = undefined;
  await d?.close();
  d = undefined;
});

describe('the gateway outbox with the parent down', () => {
  it('keeps 1,000 device alerts and delivers them all, in order, after the server comes back', async () => {
    const ID = 'IMEI:700000000000901';
    d = await startDeployment([{ deviceId: 'gw-1', username: 'gw-1-user', secret: 'gw-1-secret' }]);
    const gw = await addGateway(d, 'gw-1', { kind: 'server', server: d.server }, [proxyAssociation(ID)]);
    const dev = await addDevice(d, ID, { kind: 'gateway', gateway: gw });
    expect((await dev.connect()).ok).toBe(true);
    await until(async () => (await d!.server.route(ID))?.mode === 'proxy', 'the route');

    // The server goes away (same address and data when it comes back).
    const config = d.server.config;
    const port = new URL(d.server.url).port;
    const dataDir = `${d.dir}/server`;
    await d.server.stop();

    // 1,000 alerts in 10 sessions with the gateway, which is up and acknowledges each one.
    for (let s = 0; s < 10; s++) {
      const alerts = Array.from({ length: 100 }, (_, i) => genericAlert([{ source: { locURI: './Vendor/Counter' }, meta: { type: 'org.gwmo.test.seq', format: 'int' }, data: String(s * 100 + i + 1) }]));
      const r = await dev.connect({ alerts });
      expect(r.ok, r.reason).toBe(true);
    }
    const gwLog = d.logs['gw-1']!;
    await until(() => gwLog.some((l) => /cannot reach the parent .* alert\(s\) kept, next try in \d+ ms/.test(l)), 'the gateway to keep them');

    // The server is back on the same port and data: the gateway's next try delivers everything.
    const mem = memoryLogger('server2');
    revived = await DmServer.create({ config: { ...config, listen: `127.0.0.1:${port}` }, dataDir, logger: mem.logger });
    await revived.start();
    const alertsUrl = `${revived.url}/api/devices/${encodeURIComponent(ID)}/alerts`;
    const seqs = async (): Promise<number[]> => {
      const { alerts } = (await (await fetch(alertsUrl)).json()) as { alerts: { items: { meta?: { type?: string }; data?: string }[] }[] };
      return alerts.flatMap((a) => a.items.filter((it) => it.meta?.type === 'org.gwmo.test.seq').map((it) => Number(it.data)));
    };
    await until(async () => (await seqs()).length >= 1000, '1,000 alerts at the server', 60_000);
    expect(await seqs()).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
    // Nothing left behind in the outbox, and it went in messages the server accepts.
    expect(mem.lines.filter((l) => /message refused|too large/i.test(l))).toEqual([]);
  }, 120_000);

  it('drops entries past their TTL and beyond the size bound, with logs and counters, and delivers the rest in order', async () => {
    const ID = 'IMEI:700000000000902';
    d = await startDeployment([{ deviceId: 'gw-2', username: 'gw-2-user', secret: 'gw-2-secret' }]);
    const gw = await addGateway(d, 'gw-2', { kind: 'server', server: d.server }, [proxyAssociation(ID)], { outbox: { maxEntries: 50, ttl: { alert: 2, result: 1 } } });
    const dev = await addDevice(d, ID, { kind: 'gateway', gateway: gw });
    expect((await dev.connect()).ok).toBe(true);
    await until(async () => (await d!.server.route(ID))?.mode === 'proxy', 'the route');
    const config = d.server.config;
    const port = new URL(d.server.url).port;
    const dataDir = `${d.dir}/server`;
    await d.server.stop();
    const send = async (from: number, n: number): Promise<void> => {
      const alerts = Array.from({ length: n }, (_, i) => genericAlert([{ source: { locURI: './Vendor/Counter' }, meta: { type: 'org.gwmo.test.seq', format: 'int' }, data: String(from + i) }]));
      expect((await dev.connect({ alerts })).ok).toBe(true);
    };
    await send(1, 30); // these will be too old by the time the server is back
    await new Promise((r) => setTimeout(r, 2300));
    await send(31, 30); // 60 > 50: the 10 oldest go, with an error log (alerts are never dropped silently)
    const gwLog = d.logs['gw-2']!;
    // One error line per alert lost: 60 - 50.
    expect(gwLog.filter((l) => /ERROR .*outbox full \(50 entries\) of alerts: the 1 oldest alert\(s\) dropped/.test(l))).toHaveLength(10);

    const mem = memoryLogger('server3');
    revived = await DmServer.create({ config: { ...config, listen: `127.0.0.1:${port}` }, dataDir, logger: mem.logger });
    await revived.start();
    const alertsUrl = `${revived.url}/api/devices/${encodeURIComponent(ID)}/alerts`;
    const seqs = async (): Promise<number[]> => {
      const { alerts } = (await (await fetch(alertsUrl)).json()) as { alerts: { items: { meta?: { type?: string }; data?: string }[] }[] };
      return alerts.flatMap((a) => a.items.filter((it) => it.meta?.type === 'org.gwmo.test.seq').map((it) => Number(it.data)));
    };
    await until(async () => (await seqs()).length >= 30, 'the fresh alerts at the server', 30_000);
    expect(await seqs()).toEqual(Array.from({ length: 30 }, (_, i) => 31 + i));
    expect(gwLog.some((l) => /outbox: 20 entries older than their TTL dropped/.test(l))).toBe(true);
    const metrics = await (await fetch(`${gw.southUrl.replace(/\/dm$/, '')}/metrics`)).text();
    expect(metrics).toMatch(/^gwmo_gateway_outbox_dropped_total\{class="alert",why="full",gateway="gw-2"\} 10$/m);
    expect(metrics).toMatch(/^gwmo_gateway_outbox_dropped_total\{class="alert",why="expired",gateway="gw-2"\} 20$/m);
    expect(metrics).toMatch(/^gwmo_gateway_outbox_depth\{gateway="gw-2"\} 0$/m);
  }, 60_000);
});
