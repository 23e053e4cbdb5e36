/**
 * `gwmo demo` (`npm start`): an embedded DM server and three simulated devices, one per encoding
 * and auth scheme, and a short management session shown step by step. Until the topology work
 * lands this is the main job; it needs no setup (data goes to a temp directory).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deviceConfigSchema } from '../device/config.ts';
import { SimDevice } from '../device/device.ts';
import { createLogger } from '../log.ts';
import { serverConfigSchema } from '../server/config.ts';
import { DmServer } from '../server/server.ts';
import { callApi, statusText, table } from './client.ts';
import { gatewayConfigSchema } from '../gateway/config.ts';
import { Gateway } from '../gateway/gateway.ts';

interface DemoDevice {
  deviceId: string;
  label: string;
  encoding: 'xml' | 'wbxml';
  authType: 'basic' | 'md5' | 'hmac';
  serverAuthType: 'basic' | 'md5' | 'hmac';
  model: string;
}

const DEVICES: DemoDevice[] = [
  { deviceId: 'IMEI:350000000000001', label: 'thermostat', encoding: 'xml', authType: 'md5', serverAuthType: 'md5', model: 'Thermo-2' },
  { deviceId: 'urn:dev:mac:0024e8a1b2c3', label: 'light', encoding: 'wbxml', authType: 'basic', serverAuthType: 'md5', model: 'Lumen-5' },
  { deviceId: 'urn:dev:ops:gwmo-meter-7', label: 'meter', encoding: 'xml', authType: 'hmac', serverAuthType: 'hmac', model: 'Meter-X' },
];

const SERVER_ID = 'gwmo-demo-dms';
const GATEWAY_ID = 'gw-boiler-room';
/** A device with no account on the server, managed through the gateway (GwMO proxy mode). */
const BEHIND: DemoDevice = { deviceId: 'urn:dev:mac:0024e8b0b0b0', label: 'boiler', encoding: 'xml', authType: 'md5', serverAuthType: 'md5', model: 'Boiler-9' };

/** Runs the demo. */
export async function runDemo(opts: { json: boolean; keep: boolean; listen: string; waitForSignal: () => Promise<void> }): Promise<void> {
  const out = (s: string): void => {
    if (!opts.json) process.stdout.write(s + '\n');
  };
  const dir = await mkdtemp(join(tmpdir(), 'gwmo-demo-'));
  const logLevel = (process.env.GWMO_LOG_LEVEL as 'info' | undefined) ?? 'warn';
  const server = await DmServer.create({
    config: serverConfigSchema.parse({
      listen: opts.listen,
      path: '/dm',
      serverId: SERVER_ID,
      serverSecret: 'demo-server-secret',
      serverAuthType: 'md5',
      accounts: [
        ...DEVICES.map((d) => ({
          deviceId: d.deviceId,
          username: d.label,
          secret: `${d.label}-secret`,
          authType: d.authType,
          serverAuthType: d.serverAuthType,
          serverSecret: `${d.label}-server-secret`,
        })),
        { deviceId: GATEWAY_ID, username: GATEWAY_ID, secret: 'gw-secret', authType: 'md5', gateway: true },
      ],
    }),
    dataDir: join(dir, 'server'),
    logger: createLogger('server', { level: logLevel }),
  });
  await server.start();
  out(`DM server ${SERVER_ID} at ${server.dmUrl} (operator API ${server.url}/api)\n`);

  const devices: SimDevice[] = [];
  for (const d of DEVICES) {
    const dev = await SimDevice.create({
      config: deviceConfigSchema.parse({
        deviceId: d.deviceId,
        encoding: d.encoding,
        devInfo: { man: 'gwmo', mod: d.model },
        server: {
          serverId: SERVER_ID,
          url: server.dmUrl,
          username: d.label,
          secret: `${d.label}-secret`,
          authType: d.authType,
          serverSecret: `${d.label}-server-secret`,
          serverAuthType: d.serverAuthType,
        },
        nodes: [
          { uri: './Vendor', format: 'node', acl: `Add=${SERVER_ID}&Delete=${SERVER_ID}&Get=*&Replace=${SERVER_ID}&Exec=${SERVER_ID}` },
          { uri: './Vendor/Name', value: d.label, format: 'chr' },
          { uri: './Vendor/Setpoint', value: '20', format: 'int' },
          { uri: './Vendor/Reboots', value: '0', format: 'int', exec: 'count' },
          { uri: './Vendor/Factory', format: 'node', acl: 'Get=factory-tool' },
          { uri: './Vendor/Factory/Calibration', value: '0.9981', format: 'float' },
        ],
      }),
      dataDir: join(dir, d.label),
      logger: createLogger('device', { level: logLevel }).child(d.label),
    });
    await dev.start();
    devices.push(dev);
  }

  // A gateway, and a device behind it that the server cannot reach on its own.
  const gateway = await Gateway.create({
    config: gatewayConfigSchema.parse({
      id: GATEWAY_ID,
      parent: { url: server.dmUrl, serverId: SERVER_ID, username: GATEWAY_ID, secret: 'gw-secret', authType: 'md5', serverSecret: 'demo-server-secret', serverAuthType: 'md5' },
      serverId: `${GATEWAY_ID}-south`,
      serverSecret: 'gw-south-secret',
      devices: [{ deviceId: BEHIND.deviceId, mode: 'proxy', username: 'boiler', secret: 'boiler-secret', authType: 'md5' }],
    }),
    dataDir: join(dir, GATEWAY_ID),
    logger: createLogger('gateway', { level: logLevel }).child(GATEWAY_ID),
  });
  await gateway.start();
  const boiler = await SimDevice.create({
    config: deviceConfigSchema.parse({
      deviceId: BEHIND.deviceId,
      devInfo: { man: 'gwmo', mod: BEHIND.model },
      server: { serverId: `${GATEWAY_ID}-south`, url: gateway.southUrl, username: 'boiler', secret: 'boiler-secret', authType: 'md5', serverSecret: 'gw-south-secret', serverAuthType: 'md5' },
      nodes: [
        { uri: './Vendor', format: 'node', acl: `Get=*&Replace=${GATEWAY_ID}-south` },
        { uri: './Vendor/FlowTemp', value: '55', format: 'int' },
      ],
    }),
    dataDir: join(dir, 'boiler'),
    logger: createLogger('device', { level: logLevel }).child('boiler'),
  });
  await boiler.start();

  const steps: { step: string; device: string; encoding: string; auth: string; status: string; detail: string }[] = [];
  const api = server.url;
  const run = async (title: string, d: DemoDevice, body: Record<string, unknown>): Promise<any> => {
    const { json } = await callApi(api, 'POST', `api/devices/${encodeURIComponent(d.deviceId)}/commands`, { ...body, timeout: 20 });
    const detail =
      (json.results ?? []).map((r: any) => `${r.uri} = ${r.format === 'node' ? '(node)' : r.data}`).join('; ') ||
      (json.statuses ?? [])
        .filter((s: any) => s.path.length)
        .map((s: any) => `${s.cmd} ${s.target ?? ''} ${s.status}`)
        .join('; ');
    steps.push({ step: title, device: d.label, encoding: d.encoding.toUpperCase(), auth: `${d.authType}/${d.serverAuthType}`, status: statusText(json.status), detail });
    out(`  ${title.padEnd(44)} ${d.label.padEnd(10)} ${statusText(json.status)}${detail ? `\n      ${detail}` : ''}`);
    return json;
  };

  try {
    out('1. Devices open client-initiated sessions (Alert 1201 + DevInfo):');
    for (const [i, dev] of devices.entries()) {
      const r = await dev.connect();
      out(`  ${DEVICES[i]!.label.padEnd(10)} ${DEVICES[i]!.deviceId.padEnd(28)} ${DEVICES[i]!.encoding.toUpperCase().padEnd(6)} auth ${DEVICES[i]!.authType}/${DEVICES[i]!.serverAuthType}: ${r.reason}`);
    }
    out('\n2. The server drives each device (Package 0 -> Alert 1200 session -> commands -> results):');
    const [thermo, light, meter] = DEVICES as [DemoDevice, DemoDevice, DemoDevice];
    await run('Get ./DevInfo?list=StructData', thermo, { cmd: 'Get', uri: './DevInfo?list=StructData' });
    await run('Replace ./Vendor/Setpoint = 22', thermo, { cmd: 'Replace', uri: './Vendor/Setpoint', value: '22', format: 'int' });
    await run('Get ./Vendor/Setpoint', thermo, { cmd: 'Get', uri: './Vendor/Setpoint' });
    await run('Replace ./Vendor/Name = kitchen (WBXML)', light, { cmd: 'Replace', uri: './Vendor/Name', value: 'kitchen' });
    await run('Add ./Vendor/Scenes (interior node)', light, { cmd: 'Add', uri: './Vendor/Scenes', format: 'node' });
    await run('Exec ./Vendor/Reboots (HMAC session)', meter, { cmd: 'Exec', uri: './Vendor/Reboots' });
    await run('Get ./Vendor/Reboots', meter, { cmd: 'Get', uri: './Vendor/Reboots' });
    await run('Atomic: Replace Name + Add existing node', meter, {
      cmd: 'Atomic',
      commands: [
        { cmd: 'Replace', uri: './Vendor/Name', value: 'will-roll-back' },
        { cmd: 'Add', uri: './Vendor/Name', value: 'duplicate' },
      ],
    });
    await run('Get ./Vendor/Name (unchanged after rollback)', meter, { cmd: 'Get', uri: './Vendor/Name' });
    await run('Get ./Vendor/Factory/Calibration (ACL)', thermo, { cmd: 'Get', uri: './Vendor/Factory/Calibration' });

    out(`\n3. A device behind gateway ${GATEWAY_ID} (proxy mode; the server has no account for it, it finds the route):`);
    await boiler.connect();
    for (let i = 0; i < 200 && (await server.route(BEHIND.deviceId))?.mode !== 'proxy'; i++) await new Promise((r) => setTimeout(r, 25));
    const route = await server.route(BEHIND.deviceId);
    out(`  route: via ${route?.via} at ${route?.prefix} (${route?.mode ?? 'mode unknown'})`);
    await run('Get ./Vendor/FlowTemp (through the gateway)', BEHIND, { cmd: 'Get', uri: './Vendor/FlowTemp' });
    await run('Replace ./Vendor/FlowTemp = 60', BEHIND, { cmd: 'Replace', uri: './Vendor/FlowTemp', value: '60', format: 'int' });
    await run('Get ./Vendor/FlowTemp', BEHIND, { cmd: 'Get', uri: './Vendor/FlowTemp' });
    const res = await callApi(api, 'GET', `api/devices/${encodeURIComponent(thermo.deviceId)}/commands`);
    if (opts.json) {
      process.stdout.write(JSON.stringify({ server: server.dmUrl, steps, thermostatCommands: res.json.commands }, null, 2) + '\n');
    } else {
      out('\n4. Summary:');
      out(table(['step', 'device', 'enc', 'auth', 'status'], steps.map((s) => [s.step, s.device, s.encoding, s.auth, s.status])));
      out(`\nTry it yourself: \`gwmo demo --keep\`, then e.g. \`gwmo get ${thermo.deviceId} ./DevInfo/Mod --server ${api}\``);
    }
    if (opts.keep) {
      out(`\nRunning; operator API at ${api}/api. Ctrl-C to stop.`);
      await opts.waitForSignal();
    }
  } finally {
    for (const d of devices) await d.stop();
    await boiler.stop();
    await gateway.stop();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
