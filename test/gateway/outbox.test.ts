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

  /** A gateway with a proxy device whose server then goes away; returns what the tests need. */
  async function parentAway(gwId: string, ID: string, outbox: Record<string, unknown>) {
    d = await startDeployment([{ deviceId: gwId, username: `${gwId}-user`, secret: `${gwId}-secret` }]);
    const gw = await addGateway(d, gwId, { kind: 'server', server: d.server }, [proxyAssociation(ID)], { outbox });
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
    /** The server back on the same port and data; the gateway delivers at once (no waiting for its backoff). */
    const revive = async (): Promise<() => Promise<number[]>> => {
      revived = await DmServer.create({ config: { ...config, listen: `127.0.0.1:${port}` }, dataDir, logger: memoryLogger('back').logger });
      await revived.start();
      void gw.flushAlerts();
      const alertsUrl = `${revived.url}/api/devices/${encodeURIComponent(ID)}/alerts`;
      return async () => {
        const { alerts } = (await (await fetch(alertsUrl)).json()) as { alerts: { items: { meta?: { type?: string }; data?: string }[] }[] };
        return alerts.flatMap((a) => a.items.filter((it) => it.meta?.type === 'org.gwmo.test.seq').map((it) => Number(it.data)));
      };
    };
    const metrics = async (): Promise<string> => (await fetch(`${gw.southUrl.replace(/\/dm$/, '')}/metrics`)).text();
    return { gw, send, revive, metrics, log: d.logs[gwId]! };
  }

  it('beyond the size bound drops the oldest alerts, each with an ERROR line and counted, and delivers the rest in order', async () => {
    const { send, revive, metrics, log } = await parentAway('gw-2', 'IMEI:700000000000902', { maxEntries: 50 });
    await send(1, 60);
    // Error lines name every alert lost: the 10 oldest at least (never silently). Other alerts of the gateway
    // (its inventory) may be among the oldest too, so count the sequence alerts that arrive.
    const lostNow = (): number => log.reduce((n, l) => n + Number(/ERROR .*outbox full \(50 entries\) of alerts: the (\d+) oldest alert\(s\) dropped/.exec(l)?.[1] ?? 0), 0);
    // The last bound pass may still be running when the device's session has ended.
    await until(() => lostNow() >= 10, 'the size bound to drop the oldest alerts');
    const lost = lostNow();
    const seqs = await revive();
    await until(async () => (await seqs()).length > 0 && (await seqs()).at(-1) === 60, 'the newest alerts at the server', 30_000);
    const got = await seqs();
    expect(got).toEqual(Array.from({ length: got.length }, (_, i) => 61 - got.length + i)); // the newest, in order
    expect(got.length + lost).toBeGreaterThanOrEqual(60);
    expect(got.length).toBeGreaterThanOrEqual(50 - (lost - 10) - 1);
    expect(await metrics()).toMatch(new RegExp(`^gwmo_gateway_outbox_dropped_total\\{class="alert",why="full",gateway="gw-2"\\} ${lost}$`, 'm'));
  }, 60_000);

  it('drops entries older than their TTL, logged and counted, and delivers the fresh ones in order', async () => {
    const { send, revive, metrics, log } = await parentAway('gw-3', 'IMEI:700000000000903', { ttl: { alert: 3, result: 3 } });
    await send(1, 20); // too old by the time the server is back
    await new Promise((r) => setTimeout(r, 3300));
    await send(21, 20);
    const seqs = await revive();
    await until(async () => (await seqs()).length >= 20, 'the fresh alerts at the server', 30_000);
    expect(await seqs()).toEqual(Array.from({ length: 20 }, (_, i) => 21 + i));
    const expired = log.filter((l) => /outbox: \d+ entr(y|ies) older than their TTL dropped/.test(l));
    expect(expired.length).toBeGreaterThan(0);
    const m = /^gwmo_gateway_outbox_dropped_total\{class="alert",why="expired",gateway="gw-3"\} (\d+)$/m.exec(await metrics());
    expect(Number(m?.[1])).toBeGreaterThanOrEqual(20);
    expect(await metrics()).toMatch(/^gwmo_gateway_outbox_depth\{gateway="gw-3"\} 0$/m);
  }, 60_000);
});
