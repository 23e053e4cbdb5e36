/**
 * Transparent mode with the "no route" part proven for real (GwMO-TMode-001): the DM server runs in
 * one network namespace ("wan"), the device in another ("lan"), and the gateway in between (the
 * root namespace, one leg in each). Nothing routes between wan and lan, so the server cannot reach
 * the device at all; the device reaches the server only through the gateway's HTTP relay. The
 * server still manages the device: its Package 0 goes through the gateway (EDTrigger) and the
 * device opens its own session with the server. The namespaces, links and addresses are this
 * test's own hosts, created here and removed afterwards.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gwmo, startGwmo, type GwmoProcess } from '../support/processes.ts';

const tag = randomBytes(2).toString('hex');
const WAN = `gwmo-wan-${tag}`;
const LAN = `gwmo-lan-${tag}`;
const octet = 100 + (parseInt(tag, 16) % 100);
const ADDR = { rootWan: `10.231.${octet}.1`, wan: `10.231.${octet}.2`, rootLan: `10.232.${octet}.1`, lan: `10.232.${octet}.2` };
const DEV = 'urn:dev:mac:0024e8777777';
const SERVER_ID = 'wan-dms';

/** Whether this machine lets the test create network namespaces (root with iproute2). */
function canUseNetns(): boolean {
  try {
    execFileSync('ip', ['netns', 'add', `gwmo-probe-${tag}`], { stdio: 'pipe' });
    execFileSync('ip', ['netns', 'delete', `gwmo-probe-${tag}`], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

const ip = (...args: string[]): void => void execFileSync('ip', args, { stdio: 'pipe' });
const available = canUseNetns();
let dir: string;
const procs: GwmoProcess[] = [];

function startIn(ns: string | undefined, args: string[], ready: RegExp): Promise<GwmoProcess> {
  return startGwmo(args, ready, 20_000, ns);
}

/** Runs `node -e <code>` inside a namespace; resolves with its exit code. */
function nodeIn(ns: string, code: string): Promise<number> {
  return new Promise((resolve) => {
    const p = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', code], { stdio: 'ignore' });
    p.once('exit', (c) => resolve(c ?? 1));
  });
}

describe.skipIf(!available)('transparent mode across network namespaces (no route from the server to the device)', () => {
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gwmo-netns-'));
    for (const [ns, rootIf, nsIf, rootAddr, nsAddr] of [
      [WAN, `gw${tag}w`, `gw${tag}W`, ADDR.rootWan, ADDR.wan],
      [LAN, `gw${tag}l`, `gw${tag}L`, ADDR.rootLan, ADDR.lan],
    ] as const) {
      ip('netns', 'add', ns);
      ip('link', 'add', rootIf, 'type', 'veth', 'peer', 'name', nsIf);
      ip('link', 'set', nsIf, 'netns', ns);
      ip('addr', 'add', `${rootAddr}/30`, 'dev', rootIf);
      ip('link', 'set', rootIf, 'up');
      ip('netns', 'exec', ns, 'ip', 'addr', 'add', `${nsAddr}/30`, 'dev', nsIf);
      ip('netns', 'exec', ns, 'ip', 'link', 'set', nsIf, 'up');
      ip('netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up');
      // No default route in the namespace: it reaches only its own /30 link to the gateway host.
    }
  });

  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop();
    for (const ns of [WAN, LAN]) {
      try {
        ip('netns', 'delete', ns); // removes its end of the veth pair, and with it the pair
      } catch {
        /* already gone */
      }
    }
    await rm(dir, { recursive: true, force: true });
  });

  it('the server triggers a device it cannot reach; the device completes its own session through the gateway', { timeout: 90_000 }, async () => {
    // The server, in "wan".
    await writeFile(
      join(dir, 'server.yaml'),
      [
        `listen: ${ADDR.wan}:0`,
        `serverId: ${SERVER_ID}`,
        'serverSecret: wan-secret',
        'serverAuthType: md5',
        'accounts:',
        '  - { deviceId: gw-edge, username: gw-edge, secret: gw-edge-pw, authType: md5, gateway: true }',
        `  - { deviceId: "${DEV}", username: lamp, secret: lamp-pw, authType: md5 }`,
        '',
      ].join('\n'),
    );
    const server = await startIn(WAN, ['server', '--config', join(dir, 'server.yaml'), '--data', join(dir, 'server')], /Operator API (http:\/\/\S+)\/api/);
    procs.push(server);
    const api = server.match[1]!;

    // The gateway, in the root namespace: northbound on the wan leg, southbound (and relay) on the lan leg.
    await writeFile(
      join(dir, 'gateway.yaml'),
      [
        'id: gw-edge',
        `parent: { url: ${api}/dm, serverId: ${SERVER_ID}, username: gw-edge, secret: gw-edge-pw, authType: md5, serverSecret: wan-secret, serverAuthType: md5 }`,
        `listen: ${ADDR.rootLan}:0`,
        'serverId: gw-edge-south',
        'serverSecret: gw-edge-south-pw',
        `notify: { listen: "${ADDR.rootWan}:0" }`,
        `relay: { path: /relay, upstream: ${api}/dm }`,
        '',
      ].join('\n'),
    );
    const gateway = await startIn(undefined, ['gateway', '--config', join(dir, 'gateway.yaml'), '--data', join(dir, 'gw')], /southbound DM endpoint (http:\/\/\S+)\/dm/);
    procs.push(gateway);
    const relay = `${gateway.match[1]!}/relay`;

    // The device, in "lan": its DM server is the real server, reached through the gateway's relay.
    await writeFile(
      join(dir, 'device.yaml'),
      [
        `deviceId: "${DEV}"`,
        `server: { serverId: ${SERVER_ID}, url: ${relay}, username: lamp, secret: lamp-pw, authType: md5, serverSecret: wan-secret, serverAuthType: md5 }`,
        `notify: { listen: "${ADDR.lan}:0", advertise: false }`,
        'nodes:',
        `  - { uri: ./Vendor, format: node, acl: 'Get=*&Replace=${SERVER_ID}' }`,
        '  - { uri: ./Vendor/Brightness, value: "40", format: int }',
        '',
      ].join('\n'),
    );
    const device = await startIn(LAN, ['device', '--config', join(dir, 'device.yaml'), '--data', join(dir, 'dev'), '--connect'], /Package 0 listener (\S+)/);
    procs.push(device);
    const notifyUrl = device.match[1]!;

    // The proof: from the server's namespace the device's listener is unreachable; from the gateway's it is reachable.
    const probe = (url: string): string => `fetch(${JSON.stringify(url)}, { method: 'POST', signal: AbortSignal.timeout(2000) }).then(() => process.exit(0), () => process.exit(3))`;
    expect(await nodeIn(WAN, probe(notifyUrl))).toBe(3);
    const fromGateway = await fetch(notifyUrl, { method: 'POST', body: new Uint8Array(0), headers: { 'content-type': 'text/plain' } });
    expect(fromGateway.status).toBe(202);
    // And the device itself cannot reach the server directly.
    expect(await nodeIn(LAN, probe(`${api}/api/health`))).toBe(3);

    // The server provisions the device on the gateway as a transparent-mode device.
    const assoc = await gwmo(['exec', 'gw-edge', './GwMO/DeviceInventory/Operations/Associate', `DeviceID=${DEV}&Mode=transparent&Notify=${notifyUrl}&ServerID=${SERVER_ID}`, '--server', api, '--json']);
    expect(JSON.parse(assoc.stdout).status, assoc.stdout + assoc.stderr).toBe(200);
    for (let i = 0; i < 200; i++) {
      const r = (await (await fetch(`${api}/api/devices/${encodeURIComponent(DEV)}`)).json()) as { route?: { mode?: string } };
      if (r.route?.mode === 'transparent') break;
      await new Promise((res) => setTimeout(res, 50));
    }

    // The operator names the device; the server triggers it through the gateway; the device calls the server itself.
    const get = await gwmo(['get', DEV, './Vendor/Brightness', '--server', api, '--json', '--timeout', '30']);
    expect(get.code, get.stdout + get.stderr + gateway.output() + device.output()).toBe(0);
    expect(JSON.parse(get.stdout)).toMatchObject({ status: 200, results: [{ uri: './Vendor/Brightness', data: '40' }] });
    const rep = await gwmo(['replace', DEV, './Vendor/Brightness', '75', '--format', 'int', '--server', api, '--json', '--timeout', '30']);
    expect(JSON.parse(rep.stdout).status).toBe(200);
    expect(gateway.output()).toContain(`Package 0 forwarded to ${DEV}`);
    expect(device.output()).toMatch(new RegExp(`valid Package 0 from ${SERVER_ID}`));
    expect(server.output()).toMatch(new RegExp(`session \\S+ opened by ${DEV.replace(/[:.]/g, '.')}`));
  });
});
