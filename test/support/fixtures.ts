/**
 * Test fixtures: a real DM server (LevelDB in a temp dir, HTTP on 127.0.0.1:0) and simulated devices
 * wired to it, for end-to-end tests over real HTTP.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuthType } from '../../src/codec/auth.ts';
import { deviceConfigSchema, type DeviceConfig } from '../../src/device/config.ts';
import { SimDevice, type SimDeviceOptions } from '../../src/device/device.ts';
import { createLogger, type Logger } from '../../src/log.ts';
import { serverConfigSchema, type ServerConfig } from '../../src/server/config.ts';
import { DmServer, type DmServerOptions } from '../../src/server/server.ts';

/** A temp directory removed by the returned cleanup. */
export async function tempDir(prefix = 'gwmo-test-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** A logger that keeps lines in memory, so tests can assert what was logged. */
export function memoryLogger(name = 'test'): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: createLogger(name, { level: 'debug', write: (l) => lines.push(l) }), lines };
}

/** One device account for a test. */
export interface DeviceSpec {
  deviceId: string;
  username?: string;
  secret?: string;
  authType?: AuthType | 'basic' | 'md5' | 'hmac';
  serverAuthType?: AuthType | 'basic' | 'md5' | 'hmac';
  encoding?: 'xml' | 'wbxml';
  maxMsgSize?: number;
  /** Password the device uses (to simulate a wrong one); defaults to `secret`. */
  devicePassword?: string;
  /** Server secret the device expects (to simulate a wrong one); defaults to the server's. */
  deviceServerSecret?: string;
  /** Seconds the device waits for each server answer; defaults to 10. */
  requestTimeout?: number;
  nodes?: DeviceConfig['nodes'];
}

/** Standard nodes every test device has besides the standard objects. */
export const VENDOR_NODES = (serverId: string): DeviceConfig['nodes'] => [
  { uri: './Vendor', format: 'node', acl: `Add=${serverId}&Delete=${serverId}&Get=*&Replace=${serverId}&Exec=${serverId}` },
  { uri: './Vendor/Temp', value: '21.5', format: 'float' },
  { uri: './Vendor/Name', value: 'lamp', format: 'chr' },
  { uri: './Vendor/Counter', value: '0', format: 'int', exec: 'count' },
  { uri: './Vendor/Locked', format: 'node', acl: 'Get=other-server' },
  { uri: './Vendor/Locked/Secret', value: 's3cr3t', format: 'chr' },
];

/** Builds a server config for the given devices. */
export function serverConfig(devices: DeviceSpec[], extra: Partial<Record<string, unknown>> = {}): ServerConfig {
  return serverConfigSchema.parse({
    listen: '127.0.0.1:0',
    path: '/dm',
    serverId: 'gwmo-test-dms',
    serverSecret: 'server-secret-123',
    serverAuthType: 'md5',
    sessionTimeout: 30,
    ...extra,
    accounts: devices.map((d) => ({
      deviceId: d.deviceId,
      username: d.username ?? d.deviceId.replace(/[^A-Za-z0-9]/g, ''),
      secret: d.secret ?? `pw-${d.deviceId}`,
      authType: d.authType ?? 'md5',
      ...(d.serverAuthType ? { serverAuthType: d.serverAuthType } : {}),
    })),
  });
}

/** Builds a device config against a running server. */
export function deviceConfig(server: DmServer, d: DeviceSpec): DeviceConfig {
  const acct = server.account(d.deviceId)!;
  return deviceConfigSchema.parse({
    deviceId: d.deviceId,
    encoding: d.encoding ?? 'xml',
    maxMsgSize: d.maxMsgSize ?? 16384,
    server: {
      serverId: server.config.serverId,
      url: server.dmUrl,
      username: acct.username,
      secret: d.devicePassword ?? acct.secret,
      authType: d.authType ?? 'md5',
      serverSecret: d.deviceServerSecret ?? acct.serverSecret ?? server.config.serverSecret,
      serverAuthType: d.serverAuthType ?? server.config.serverAuthType,
    },
    requestTimeout: d.requestTimeout ?? 10,
    nodes: d.nodes ?? VENDOR_NODES(server.config.serverId),
  });
}

/** A running server with devices; `close()` stops everything and removes the data. */
export interface TestBed {
  server: DmServer;
  devices: SimDevice[];
  serverLog: string[];
  /** Log lines of each device, in the order of `devices`. */
  deviceLogs: string[][];
  dataDir: string;
  close(): Promise<void>;
}

/** Starts a server and devices (each with its Package 0 listener). */
export async function startBed(
  specs: DeviceSpec[],
  opts: {
    serverExtra?: Partial<Record<string, unknown>>;
    deviceOptions?: Partial<SimDeviceOptions>;
    dataDir?: string;
    /** Clock for the server's session timers (e.g. an xstate SimulatedClock); real time when omitted. */
    clock?: DmServerOptions['clock'];
  } = {},
): Promise<TestBed> {
  const tmp = opts.dataDir ? { dir: opts.dataDir, cleanup: async () => {} } : await tempDir();
  const { logger, lines } = memoryLogger('server');
  const server = await DmServer.create({
    config: serverConfig(specs, opts.serverExtra),
    dataDir: join(tmp.dir, 'server'),
    logger,
    ...(opts.clock ? { clock: opts.clock } : {}),
  });
  await server.start();
  const devices: SimDevice[] = [];
  const deviceLogs: string[][] = [];
  for (const s of specs) {
    const mem = memoryLogger(s.deviceId);
    deviceLogs.push(mem.lines);
    const d = await SimDevice.create({
      config: deviceConfig(server, s),
      logger: mem.logger,
      ...opts.deviceOptions,
    });
    await d.start();
    devices.push(d);
  }
  const bed: TestBed = {
    server,
    devices,
    serverLog: lines,
    deviceLogs,
    dataDir: tmp.dir,
    async close() {
      for (const d of devices) await d.stop();
      // The bed's current server: a test that restarts the server puts the new one in `bed.server`.
      await bed.server.stop();
      await tmp.cleanup();
    },
  };
  return bed;
}

/** The REST API client used by tests (same calls as the CLI). */
export async function api(server: DmServer, method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(server.url + path, {
    method,
    ...(body !== undefined ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } } : {}),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}
