/**
 * The gateway flows as a user runs them: `gwmo server`, `gwmo gateway` (three of them, nested),
 * `gwmo device`, each its own OS process talking real HTTP on 127.0.0.1, and the operator's
 * `gwmo get|replace|results <device> --server <url>`: the operator names the device, the server
 * finds the route. Also: a gateway killed with SIGKILL mid-session loses nothing acknowledged.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { gwmo, startGwmo, type GwmoProcess } from '../support/processes.ts';

let dir: string;
let procs: GwmoProcess[] = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gwmo-proc-'));
  procs = [];
});
afterEach(async () => {
  for (const p of procs.reverse()) await p.stop();
  await rm(dir, { recursive: true, force: true });
});

const DEV = 'IMEI:356938035643809';
const SERVER_ID = 'proc-dms';

async function startServer(gateways: string[]): Promise<{ api: string; dm: string }> {
  const accounts = gateways.map((g) => `  - { deviceId: ${g}, username: ${g}, secret: ${g}-pw, authType: md5, gateway: true }`).join('\n');
  await writeFile(join(dir, 'server.yaml'), `listen: 127.0.0.1:0\nserverId: ${SERVER_ID}\nserverSecret: dms-pw\nserverAuthType: md5\naccounts:\n${accounts}\n`);
  const p = await startGwmo(['server', '--config', join(dir, 'server.yaml'), '--data', join(dir, 'server')], /Operator API (http:\/\/\S+)\/api/);
  procs.push(p);
  return { api: p.match[1]!, dm: `${p.match[1]!}/dm` };
}

/** Writes a gateway config; `child` is the one association (a child gateway or the device). */
async function gatewayYaml(id: string, parent: { url: string; serverId: string; serverSecret: string }, child: { id: string; gateway: boolean }, listen = '127.0.0.1:0'): Promise<string> {
  const f = join(dir, `${id}.yaml`);
  await writeFile(
    f,
    [
      `id: ${id}`,
      'parent:',
      `  url: ${parent.url}`,
      `  serverId: ${parent.serverId}`,
      `  username: ${id}`,
      `  secret: ${id}-pw`,
      '  authType: md5',
      `  serverSecret: ${parent.serverSecret}`,
      '  serverAuthType: md5',
      `listen: ${listen}`,
      `serverId: ${id}-south`,
      `serverSecret: ${id}-south-pw`,
      'serverAuthType: md5',
      'proxyTimeout: 15',
      'devices:',
      `  - { deviceId: "${child.id}", mode: proxy, gateway: ${child.gateway}, username: ${child.id.replace(/[^A-Za-z0-9-]/g, '')}, secret: ${child.id.replace(/[^A-Za-z0-9-]/g, '')}-pw, authType: md5 }`,
      '',
    ].join('\n'),
  );
  return f;
}

async function startGateway(id: string, cfg: string): Promise<{ proc: GwmoProcess; south: string }> {
  const p = await startGwmo(['gateway', '--config', cfg, '--data', join(dir, id)], /southbound DM endpoint (http:\/\/\S+)/);
  procs.push(p);
  return { proc: p, south: p.match[1]! };
}

async function startDevice(gatewayId: string, south: string): Promise<GwmoProcess> {
  const user = DEV.replace(/[^A-Za-z0-9-]/g, '');
  await writeFile(
    join(dir, 'device.yaml'),
    [
      `deviceId: "${DEV}"`,
      'encoding: wbxml',
      'server:',
      `  serverId: ${gatewayId}-south`,
      `  url: ${south}`,
      `  username: ${user}`,
      `  secret: ${user}-pw`,
      '  authType: md5',
      `  serverSecret: ${gatewayId}-south-pw`,
      '  serverAuthType: md5',
      'nodes:',
      `  - { uri: ./Vendor, format: node, acl: 'Add=${gatewayId}-south&Delete=${gatewayId}-south&Get=*&Replace=${gatewayId}-south' }`,
      '  - { uri: ./Vendor/Name, value: boiler }',
      '',
    ].join('\n'),
  );
  const p = await startGwmo(['device', '--config', join(dir, 'device.yaml'), '--data', join(dir, 'device'), '--connect'], /Package 0 listener (\S+)/);
  procs.push(p);
  return p;
}

async function waitForRoute(api: string, deviceId: string): Promise<any> {
  for (let i = 0; i < 300; i++) {
    const r = await fetch(`${api}/api/devices/${encodeURIComponent(deviceId)}`);
    if (r.status === 200) {
      const j = (await r.json()) as { route?: { mode?: string } };
      if (j.route?.mode) return j.route;
    }
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`no route to ${deviceId}`);
}

describe('gateways as processes', () => {
  it('gwmo get/replace/results reach a device through three nested gateway processes', { timeout: 60_000 }, async () => {
    const server = await startServer(['gw-1']);
    const g1 = await startGateway('gw-1', await gatewayYaml('gw-1', { url: server.dm, serverId: SERVER_ID, serverSecret: 'dms-pw' }, { id: 'gw-2', gateway: true }));
    const g2 = await startGateway('gw-2', await gatewayYaml('gw-2', { url: g1.south, serverId: 'gw-1-south', serverSecret: 'gw-1-south-pw' }, { id: 'gw-3', gateway: true }));
    const g3 = await startGateway('gw-3', await gatewayYaml('gw-3', { url: g2.south, serverId: 'gw-2-south', serverSecret: 'gw-2-south-pw' }, { id: DEV, gateway: false }));
    await startDevice('gw-3', g3.south);
    const route = await waitForRoute(server.api, DEV);
    expect(route).toMatchObject({ via: 'gw-1', mode: 'proxy', prefix: './GwMO/Devices/g0001/GwMO/Devices/g0001/GwMO/Devices/d0001' });

    const get = await gwmo(['get', DEV, './Vendor/Name', '--server', server.api, '--json']);
    expect(get.code, get.stderr + get.stdout).toBe(0);
    expect(JSON.parse(get.stdout)).toMatchObject({ status: 200, results: [{ uri: './Vendor/Name', data: 'boiler' }], delivery: { kind: 'proxy', via: 'gw-1' } });
    // Without --json the route is printed with the result.
    const plain = await gwmo(['get', DEV, './Vendor/Name', '--server', server.api]);
    expect(plain.stdout).toContain('[route: proxy via gw-1]');

    // --no-wait: queued at once; the device gets it at its next session with its gateway.
    const queued = await gwmo(['replace', DEV, './Vendor/Name', 'attic', '--no-wait', '--server', server.api, '--json']);
    expect(JSON.parse(queued.stdout).state).toBe('queued');
    let done: any;
    for (let i = 0; i < 200 && !done; i++) {
      const r = JSON.parse((await gwmo(['results', DEV, '--server', server.api, '--json'])).stdout);
      done = r.commands.find((c: any) => c.cmd === 'Replace' && c.state === 'done');
      if (!done) await new Promise((res) => setTimeout(res, 100));
    }
    expect(done).toMatchObject({ status: 200, target: './Vendor/Name' });
    const after = JSON.parse((await gwmo(['get', DEV, './Vendor/Name', '--server', server.api, '--json'])).stdout);
    expect(after.results[0].data).toBe('attic');
    const devices = await gwmo(['devices', '--server', server.api]);
    expect(devices.stdout).toMatch(new RegExp(`${DEV.replace(/[:]/g, ".")}\\s+\\S*\\s*proxy via gw-1`));
  });

  it('a gateway killed with SIGKILL mid-session and restarted loses nothing that was acknowledged', { timeout: 60_000 }, async () => {
    const server = await startServer(['gw-1']);
    const cfg = await gatewayYaml('gw-1', { url: server.dm, serverId: SERVER_ID, serverSecret: 'dms-pw' }, { id: DEV, gateway: false });
    const g1 = await startGateway('gw-1', cfg);
    const dev = await startDevice('gw-1', g1.south);
    await waitForRoute(server.api, DEV);
    // Its first session tells the gateway where it listens for Package 0.
    for (let i = 0; i < 200 && !/session \S+ completed/.test(dev.output()); i++) await new Promise((r) => setTimeout(r, 25));
    // The device goes away; the gateway accepts the command, cannot reach the device, and is killed while waiting.
    await dev.stop();
    const queued = JSON.parse((await gwmo(['replace', DEV, './Vendor/Name', 'survivor', '--no-wait', '--server', server.api, '--json'])).stdout);
    expect(queued.state).toBe('queued');
    for (let i = 0; i < 100 && !g1.proc.output().includes('cannot wake'); i++) await new Promise((r) => setTimeout(r, 50));
    expect(g1.proc.output()).toContain(`cannot wake ${DEV}`);
    await g1.proc.stop('SIGKILL');

    // Restart on the same data (and the same southbound port, where the device looks for it).
    const port = new URL(g1.south).port;
    const again = await startGateway('gw-1', await gatewayYaml('gw-1', { url: server.dm, serverId: SERVER_ID, serverSecret: 'dms-pw' }, { id: DEV, gateway: false }, `127.0.0.1:${port}`));
    expect(again.south).toBe(g1.south);
    await startDevice('gw-1', again.south); // reconnects: gets what the gateway kept for it
    const get = JSON.parse((await gwmo(['get', DEV, './Vendor/Name', '--server', server.api, '--json'])).stdout);
    expect(get.results[0].data).toBe('survivor');
    const results = JSON.parse((await gwmo(['results', DEV, '--server', server.api, '--json'])).stdout);
    const replace = results.commands.find((c: any) => c.id === queued.id);
    expect(replace).toMatchObject({ state: 'done', status: 200 });
  });
});
