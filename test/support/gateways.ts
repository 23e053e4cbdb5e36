/**
 * Fixtures for gateway tests: a DM server, gateways (in-process) wired to it or to each other, and
 * simulated devices behind them, all over real HTTP on 127.0.0.1 with LevelDB in temp dirs.
 */
import { join } from 'node:path';
import { deviceConfigSchema } from '../../src/device/config.ts';
import { SimDevice } from '../../src/device/device.ts';
import { gatewayConfigSchema, type AssociationConfig } from '../../src/gateway/config.ts';
import { Gateway, type GatewayOptions } from '../../src/gateway/gateway.ts';
import { serverConfigSchema } from '../../src/server/config.ts';
import { DmServer } from '../../src/server/server.ts';
import { memoryLogger, tempDir } from './fixtures.ts';

export const SERVER_ID = 'gw-test-dms';

/** A parent a gateway connects to: the server, or another gateway. */
export type Parent = { kind: 'server'; server: DmServer } | { kind: 'gateway'; gateway: Gateway };

/** A running deployment for a test. */
export interface Deployment {
  server: DmServer;
  gateways: Gateway[];
  devices: SimDevice[];
  logs: Record<string, string[]>;
  dir: string;
  close(): Promise<void>;
}

/** Starts a DM server with accounts for the given gateways (and direct devices). */
export async function startDeployment(
  accounts: { deviceId: string; username: string; secret: string; authType?: string; gateway?: boolean; route?: string }[],
  serverExtra: Record<string, unknown> = {},
): Promise<Deployment> {
  const tmp = await tempDir('gwmo-gw-');
  const logs: Record<string, string[]> = {};
  const sl = memoryLogger('server');
  logs.server = sl.lines;
  const server = await DmServer.create({
    config: serverConfigSchema.parse({
      listen: '127.0.0.1:0',
      serverId: SERVER_ID,
      serverSecret: 'dms-secret',
      serverAuthType: 'md5',
      sessionTimeout: 60,
      // Accounts named gw-* are gateways (their inventory alerts teach the server routes).
      accounts: accounts.map((a) => ({ authType: 'md5', gateway: a.deviceId.startsWith('gw-'), ...a })),
      ...serverExtra,
    }),
    dataDir: join(tmp.dir, 'server'),
    logger: sl.logger,
  });
  await server.start();
  const d: Deployment = {
    server,
    gateways: [],
    devices: [],
    logs,
    dir: tmp.dir,
    async close() {
      for (const dev of d.devices) await dev.stop();
      for (const g of [...d.gateways].reverse()) await g.stop();
      await server.stop();
      await tmp.cleanup();
    },
  };
  return d;
}

/** The credentials a gateway or device uses towards its parent. */
function parentOf(p: Parent, username: string, secret: string) {
  if (p.kind === 'server') {
    return { url: p.server.dmUrl, serverId: p.server.config.serverId, username, secret, authType: 'md5', serverSecret: p.server.config.serverSecret, serverAuthType: 'md5' };
  }
  const g = p.gateway;
  return { url: g.southUrl, serverId: g.config.serverId, username, secret, authType: 'md5', serverSecret: g.config.serverSecret, serverAuthType: g.config.serverAuthType };
}

/** Creates and starts a gateway under a parent (the parent must already have an account/association for it). */
export async function addGateway(
  d: Deployment,
  id: string,
  parent: Parent,
  devices: AssociationConfig[] | Record<string, unknown>[] = [],
  extra: Record<string, unknown> = {},
  options: Pick<GatewayOptions, 'inspect' | 'store'> = {},
): Promise<Gateway> {
  const l = memoryLogger(id);
  d.logs[id] = l.lines;
  const g = await Gateway.create({
    config: gatewayConfigSchema.parse({
      id,
      parent: parentOf(parent, `${id}-user`, `${id}-secret`),
      serverId: `${id}-south`,
      serverSecret: `${id}-south-secret`,
      serverAuthType: 'md5',
      proxyTimeout: 10,
      devices,
      ...extra,
    }),
    ...(options.store ? {} : { dataDir: join(d.dir, id) }),
    logger: l.logger,
    ...options,
  });
  await g.start();
  d.gateways.push(g);
  return g;
}

/** The association entry a parent gateway needs for a child gateway or a proxy-mode device. */
export function proxyAssociation(deviceId: string, opts: { gateway?: boolean } = {}): Record<string, unknown> {
  return { deviceId, mode: 'proxy', gateway: !!opts.gateway, username: `${deviceId}-user`, secret: `${deviceId}-secret`, authType: 'md5' };
}

/** Creates and starts a simulated DM device under a gateway (proxy mode) or the server (direct). */
export async function addDevice(d: Deployment, deviceId: string, parent: Parent, opts: { encoding?: 'xml' | 'wbxml'; nodes?: unknown[]; notify?: string; dataSuffix?: string; bootstrapPin?: string } = {}): Promise<SimDevice> {
  const l = memoryLogger(deviceId);
  d.logs[deviceId] = l.lines;
  const p = parentOf(parent, `${deviceId}-user`, `${deviceId}-secret`);
  const dev = await SimDevice.create({
    config: deviceConfigSchema.parse({
      deviceId,
      encoding: opts.encoding ?? 'xml',
      server: p,
      requestTimeout: 20,
      ...(opts.notify ? { notify: { listen: opts.notify } } : {}),
      ...(opts.bootstrapPin ? { bootstrap: { pin: opts.bootstrapPin } } : {}),
      nodes: opts.nodes ?? [
        { uri: './Vendor', format: 'node', acl: `Add=${p.serverId}&Delete=${p.serverId}&Get=*&Replace=${p.serverId}&Exec=${p.serverId}` },
        { uri: './Vendor/Name', value: `name-of-${deviceId}` },
        { uri: './Vendor/Level', value: '3', format: 'int' },
      ],
    }),
    dataDir: join(d.dir, deviceId.replace(/[^A-Za-z0-9]/g, '_') + (opts.dataSuffix ?? '')),
    logger: l.logger,
  });
  await dev.start();
  d.devices.push(dev);
  return dev;
}

/** Waits until a condition holds (polling), failing with `what` after `ms`. */
export async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Runs an operator command through the server's API and returns the JSON answer. */
export async function operate(server: DmServer, deviceId: string, body: Record<string, unknown>): Promise<any> {
  const res = await fetch(`${server.url}/api/devices/${encodeURIComponent(deviceId)}/commands`, {
    method: 'POST',
    body: JSON.stringify({ timeout: 30, ...body }),
    headers: { 'content-type': 'application/json' },
  });
  const json = (await res.json()) as Record<string, unknown>;
  return { http: res.status, ...json };
}
