/**
 * GwMO use case "server initiated session with the end device bypassing the DM gateway" and the
 * server's route choice: a device behind a gateway with a publicly routable address gets its
 * Package 0 straight from the server (the address is read from the gateway's inventory in a DM
 * session with the gateway) and opens its session directly; without such an address the same
 * operator command goes through the gateway; a direct push that goes unanswered falls back to the
 * gateway within `routing.directTimeout`.
 */
import { createServer, type Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { deviceConfigSchema } from '../../src/device/config.ts';
import { SimDevice } from '../../src/device/device.ts';
import { memoryLogger } from '../support/fixtures.ts';
import { readLeaf } from '../support/fanout.ts';
import { addDevice, addGateway, operate, proxyAssociation, startDeployment, until, SERVER_ID, type Deployment } from '../support/gateways.ts';

let d: Deployment | undefined;
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  await d?.close();
  d = undefined;
  for (const c of closers.splice(0)) await c();
});

/** A DM client with an account on the server; `pub` gives it a second, public, Package 0 listener. */
async function device(dep: Deployment, id: string, pub: boolean): Promise<{ dev: SimDevice; lines: string[] }> {
  const l = memoryLogger(id);
  dep.logs[id] = l.lines;
  const dev = await SimDevice.create({
    config: deviceConfigSchema.parse({
      deviceId: id,
      server: { serverId: SERVER_ID, url: dep.server.dmUrl, username: `${id}-user`, secret: `${id}-secret`, authType: 'md5', serverSecret: dep.server.config.serverSecret, serverAuthType: 'md5' },
      // The local listener is on the gateway's network and never told to the server.
      notify: { listen: '127.0.0.1:0', advertise: false, ...(pub ? { public: { listen: '127.0.0.1:0' } } : {}) },
      nodes: [{ uri: './Vendor', format: 'node', acl: `Get=*&Replace=${SERVER_ID}` }, { uri: './Vendor/Mode', value: `mode-of-${id}` }],
    }),
    logger: l.logger,
  });
  await dev.start();
  dep.devices.push(dev);
  return { dev, lines: l.lines };
}

/** An HTTP endpoint that accepts anything and does nothing (a stale NAT mapping, a wrong address). */
async function sink(): Promise<{ url: string; hits: () => number }> {
  let hits = 0;
  const srv: Server = createServer((req, res) => {
    hits++;
    req.resume();
    req.on('end', () => res.writeHead(202).end());
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise<void>((r) => srv.close(() => r())));
  const port = (srv.address() as { port: number }).port;
  return { url: `http://127.0.0.1:${port}/notify`, hits: () => hits };
}

const DIRECT = 'urn:dev:mac:0024e8000101';
const HIDDEN = 'urn:dev:mac:0024e8000102';
const STALE = 'urn:dev:mac:0024e8000103';
const REFUSED = 'urn:dev:mac:0024e8000104';

describe('server-initiated session bypassing the gateway, and route choice', () => {
  it('reads the routable address from the gateway inventory, pushes Package 0 directly, and the device talks to the server without the gateway', async () => {
    d = await startDeployment([
      { deviceId: 'gw-b', username: 'gw-b-user', secret: 'gw-b-secret' },
      { deviceId: DIRECT, username: `${DIRECT}-user`, secret: `${DIRECT}-secret` },
    ]);
    const { dev, lines } = await device(d, DIRECT, true);
    const gw = await addGateway(d, 'gw-b', { kind: 'server', server: d.server }, [
      { deviceId: DIRECT, mode: 'transparent', notify: dev.notifyUrl, publicNotify: dev.publicNotifyUrl, serverId: SERVER_ID },
    ]);
    // The server learns the route from the gateway's alert, then reads Mode and PublicAddress from
    // the gateway's inventory record in a DM session with the gateway.
    await until(async () => (await d!.server.route(DIRECT))?.publicAddress === dev.publicNotifyUrl, 'the server to read the routable address');
    const rec = gw.associations.get(DIRECT)!;
    expect(await readLeaf(d.server, 'gw-b', `./GwMO/DeviceInventory/Records/${rec.key}/PublicAddress`)).toBe(dev.publicNotifyUrl);
    expect(await readLeaf(d.server, 'gw-b', `./GwMO/DeviceInventory/Records/${rec.key}/NotifyAddress`)).toBe(dev.notifyUrl);
    expect((await d.server.route(DIRECT))?.mode).toBe('transparent');

    const gwLinesBefore = d.logs['gw-b']!.length;
    const gwSessionsBefore = gw.south.activeSessions;
    const next = dev.nextSession();
    const get = await operate(d.server, DIRECT, { cmd: 'Get', uri: './Vendor/Mode' });
    expect(get.status, JSON.stringify(get)).toBe(200);
    expect(get.results).toEqual([{ uri: './Vendor/Mode', format: 'chr', data: `mode-of-${DIRECT}` }]);
    expect(get.delivery).toMatchObject({ kind: 'direct', via: 'gw-b', address: dev.publicNotifyUrl });
    expect(await next).toMatchObject({ ok: true, initiator: 'server' });
    // The Package 0 came in on the public listener; the gateway saw nothing of this session.
    expect(dev.notifications).toEqual({ local: 0, public: 1 });
    expect(lines.some((l) => l.includes(`valid Package 0 from ${SERVER_ID}`))).toBe(true);
    expect(d.logs['gw-b']!.slice(gwLinesBefore).filter((l) => l.includes(DIRECT))).toEqual([]);
    expect(gw.south.activeSessions).toBe(gwSessionsBefore);
    expect(d.logs.server!.some((l) => l.includes(`route for ${DIRECT}: direct (bypassing gw-b)`))).toBe(true);

    // A forged Package 0 pushed to the public address is ignored: no session.
    const forged = Buffer.concat([Buffer.alloc(16, 7), Buffer.from('02d80000001a2b', 'hex'), Buffer.from([SERVER_ID.length]), Buffer.from(SERVER_ID)]);
    const res = await fetch(dev.publicNotifyUrl!, { method: 'POST', body: forged, headers: { 'content-type': 'application/vnd.syncml.notification' } });
    expect(res.status).toBe(202);
    await until(() => dev.ignoredNotifications === 1, 'the device to ignore the forged notification');
    expect(lines.some((l) => l.includes('digest does not verify'))).toBe(true);
    expect(dev.sessions).toHaveLength(1);
    // The public listener does not take DM bootstrap messages (only the gateway's network does).
    expect((await fetch(dev.publicNotifyUrl!.replace('/notify', '/bootstrap'), { method: 'POST', body: 'x' })).status).toBe(404);
  });

  it('without a routable address the same command goes through the gateway; an unanswered or refused direct push falls back in time', async () => {
    d = await startDeployment(
      [
        { deviceId: 'gw-b', username: 'gw-b-user', secret: 'gw-b-secret' },
        { deviceId: HIDDEN, username: `${HIDDEN}-user`, secret: `${HIDDEN}-secret` },
        { deviceId: STALE, username: `${STALE}-user`, secret: `${STALE}-secret` },
        { deviceId: REFUSED, username: `${REFUSED}-user`, secret: `${REFUSED}-secret` },
      ],
      { routing: { directTimeout: 1.5 } },
    );
    const hidden = await device(d, HIDDEN, false);
    const stale = await device(d, STALE, false);
    const refused = await device(d, REFUSED, false);
    const nowhere = await sink();
    await addGateway(d, 'gw-b', { kind: 'server', server: d.server }, [
      { deviceId: HIDDEN, mode: 'transparent', notify: hidden.dev.notifyUrl, serverId: SERVER_ID },
      // Claims a public address, but pushes there reach nothing that answers with a session.
      { deviceId: STALE, mode: 'transparent', notify: stale.dev.notifyUrl, publicNotify: nowhere.url, serverId: SERVER_ID },
      // Claims a public address where nothing listens.
      { deviceId: REFUSED, mode: 'transparent', notify: refused.dev.notifyUrl, publicNotify: 'http://127.0.0.1:9/notify', serverId: SERVER_ID },
    ]);
    await until(async () => (await d!.server.route(HIDDEN))?.mode === 'transparent', 'the hidden route');
    await until(async () => (await d!.server.route(STALE))?.publicAddress === nowhere.url, 'the stale address');
    await until(async () => (await d!.server.route(REFUSED))?.publicAddress !== undefined, 'the refused address');

    // No routable address: through the gateway (transparent), with the operator's command unchanged.
    const h = await operate(d.server, HIDDEN, { cmd: 'Get', uri: './Vendor/Mode' });
    expect(h.status, JSON.stringify(h)).toBe(200);
    expect(h.delivery).toMatchObject({ kind: 'transparent', via: 'gw-b' });
    expect(hidden.dev.notifications).toEqual({ local: 1, public: 0 });
    expect(d.logs['gw-b']!.some((l) => l.includes(`Package 0 forwarded to ${HIDDEN}`))).toBe(true);

    // The push is accepted but no session follows: after directTimeout the gateway route is used.
    const t0 = Date.now();
    const s = await operate(d.server, STALE, { cmd: 'Get', uri: './Vendor/Mode' });
    const took = Date.now() - t0;
    expect(s.status, JSON.stringify(s)).toBe(200);
    expect(s.results[0].data).toBe(`mode-of-${STALE}`);
    expect(s.delivery).toMatchObject({ kind: 'transparent', via: 'gw-b', fallbackFrom: 'direct' });
    expect(nowhere.hits()).toBe(1);
    expect(took).toBeGreaterThanOrEqual(1400);
    expect(took).toBeLessThan(10_000);
    expect(d.logs.server!.some((l) => l.includes(`${STALE}: direct route failed (no session within 1.5 s of the direct push); falling back to transparent via gw-b`))).toBe(true);
    // While the failure is recent the server goes through the gateway at once.
    const again = await operate(d.server, STALE, { cmd: 'Get', uri: './Vendor/Mode' });
    expect(again.delivery).toMatchObject({ kind: 'transparent' });
    expect(nowhere.hits()).toBe(1);

    // Connection refused: the fallback is immediate.
    const r = await operate(d.server, REFUSED, { cmd: 'Get', uri: './Vendor/Mode' });
    expect(r.status, JSON.stringify(r)).toBe(200);
    expect(r.delivery).toMatchObject({ kind: 'transparent', fallbackFrom: 'direct' });

    // `gwmo results` data: every command carries its route.
    const list = (await (await fetch(`${d.server.url}/api/devices/${encodeURIComponent(STALE)}/commands`)).json()) as { commands: { delivery: { kind: string } }[] };
    expect(list.commands.map((c: { delivery: { kind: string } }) => c.delivery.kind)).toEqual(['transparent', 'transparent']);
  });

  it('a proxy-mode device reports its public address to the gateway; without a server account it stays on the proxy route', async () => {
    const PROXY = 'IMEI:490154203237518';
    d = await startDeployment([{ deviceId: 'gw-b', username: 'gw-b-user', secret: 'gw-b-secret' }]);
    const gw = await addGateway(d, 'gw-b', { kind: 'server', server: d.server }, [proxyAssociation(PROXY)]);
    const dev = await SimDevice.create({
      config: deviceConfigSchema.parse({
        deviceId: PROXY,
        server: { serverId: gw.config.serverId, url: gw.southUrl, username: `${PROXY}-user`, secret: `${PROXY}-secret`, authType: 'md5', serverSecret: gw.config.serverSecret, serverAuthType: 'md5' },
        notify: { listen: '127.0.0.1:0', public: { url: 'http://127.0.0.1:8/notify' } },
      }),
      logger: memoryLogger(PROXY).logger,
    });
    await dev.start();
    d.devices.push(dev);
    expect((await dev.connect()).ok).toBe(true);
    const key = gw.associations.get(PROXY)!.key;
    await until(async () => gw.associations.get(PROXY)?.publicNotify !== undefined, 'the gateway to record the reported address');
    expect(await readLeaf(d.server, 'gw-b', `./GwMO/DeviceInventory/Records/${key}/PublicAddress`)).toBe('http://127.0.0.1:8/notify');
    expect(await readLeaf(d.server, 'gw-b', `./GwMO/DeviceInventory/Records/${key}/NotifyAddress`)).toBe(dev.notifyUrl);
    await until(async () => (await d!.server.route(PROXY))?.mode === 'proxy', 'the proxy route');
    const g = await operate(d.server, PROXY, { cmd: 'Get', uri: './DevInfo/Mod' });
    expect(g.status, JSON.stringify(g)).toBe(200);
    expect(g.delivery).toMatchObject({ kind: 'proxy', via: 'gw-b' });
  });
});
