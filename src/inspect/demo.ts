/**
 * A live visualizer demo: an in-process deployment (a DM server, a gateway `gw-a` under it, a child
 * gateway `gw-b` under `gw-a`, simulated adaptation devices on both and one DM device behind each),
 * every actor reported to one inspection hub, and fanout jobs run through the server's operator API.
 *
 *   node bin/run-ts.js src/inspect/demo.ts [--listen 127.0.0.1:7070] [--every 5]
 *
 * prints the page's URL and runs a fanout every `--every` seconds until Ctrl-C. The end-to-end test
 * drives the same deployment through `startVisualizerDemo`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { deviceConfigSchema } from '../device/config.ts';
import { SimDevice } from '../device/device.ts';
import { gatewayConfigSchema } from '../gateway/config.ts';
import { Gateway } from '../gateway/gateway.ts';
import { createLogger, type LogLevel } from '../log.ts';
import { serverConfigSchema } from '../server/config.ts';
import { DmServer } from '../server/server.ts';
import { InspectionHub } from './hub.ts';
import { startVisualizer } from './server.ts';

const SERVER_ID = 'gwmo-viz-dms';

/** A running demo deployment with its visualizer. */
export interface VisualizerDemo {
  url: string;
  hub: InspectionHub;
  server: DmServer;
  gateways: Gateway[];
  /** Runs a fanout (Get ./DevInfo/Mod on every device under gw-a) and resolves when its FanoutComplete alert arrived. */
  runFanout(name: string): Promise<void>;
  close(): Promise<void>;
}

/** Starts the demo deployment and the visualizer (`listen`: the visualizer's host:port). */
export async function startVisualizerDemo(opts: { listen?: string; logLevel?: LogLevel } = {}): Promise<VisualizerDemo> {
  const dir = await mkdtemp(join(tmpdir(), 'gwmo-viz-'));
  const level = opts.logLevel ?? 'error';
  const stops: (() => Promise<void>)[] = [];
  const hub = new InspectionHub();
  const viz = await startVisualizer({ hub, listen: opts.listen ?? '127.0.0.1:0' });
  stops.push(() => viz.close());
  try {
    const server = await DmServer.create({
      config: serverConfigSchema.parse({
        listen: '127.0.0.1:0',
        serverId: SERVER_ID,
        serverSecret: 'viz-dms-secret',
        serverAuthType: 'md5',
        accounts: [{ deviceId: 'gw-a', username: 'gw-a-user', secret: 'gw-a-secret', authType: 'md5', gateway: true }],
      }),
      dataDir: join(dir, 'server'),
      logger: createLogger('server', { level }),
      // The top server is not labelled: the hub draws an unlabelled DM server at the top.
      inspect: hub.observer,
    });
    await server.start();
    stops.push(() => server.stop());

    const proxy = (deviceId: string, gateway = false) => ({ deviceId, mode: 'proxy', gateway, username: `${deviceId}-user`, secret: `${deviceId}-secret`, authType: 'md5' });
    const gateway = async (id: string, parent: { url: string; serverId: string; serverSecret: string }, devices: unknown[], simCount: number): Promise<Gateway> => {
      const g = await Gateway.create({
        config: gatewayConfigSchema.parse({
          id,
          parent: { ...parent, username: `${id}-user`, secret: `${id}-secret`, authType: 'md5', serverAuthType: 'md5' },
          serverId: `${id}-south`,
          serverSecret: `${id}-south-secret`,
          serverAuthType: 'md5',
          proxyTimeout: 10,
          devices,
          adapters: [{ type: 'sim', generate: { count: simCount, prefix: `${id}-s`, kind: 'sensor' } }],
        }),
        dataDir: join(dir, id),
        logger: createLogger('gateway', { level }).child(id),
        // Every actor of this gateway (its root, associations, southbound sessions, fanout jobs) is
        // labelled with the gateway, which places them in the route tree.
        inspect: hub.observerFor({ gateway: id }),
      });
      await g.start();
      stops.push(() => g.stop());
      return g;
    };
    const device = async (deviceId: string, g: Gateway): Promise<void> => {
      const dev = await SimDevice.create({
        config: deviceConfigSchema.parse({
          deviceId,
          server: { serverId: g.config.serverId, url: g.southUrl, username: `${deviceId}-user`, secret: `${deviceId}-secret`, authType: 'md5', serverSecret: g.config.serverSecret, serverAuthType: 'md5' },
          nodes: [],
        }),
        dataDir: join(dir, deviceId.replace(/[^A-Za-z0-9]/g, '_')),
        logger: createLogger('device', { level }).child(deviceId),
      });
      await dev.start();
      stops.push(() => dev.stop());
      await dev.connect();
    };

    const gwA = await gateway('gw-a', { url: server.dmUrl, serverId: SERVER_ID, serverSecret: 'viz-dms-secret' }, [proxy('gw-b', true), proxy('IMEI:359000000000001')], 3);
    const gwB = await gateway('gw-b', { url: gwA.southUrl, serverId: gwA.config.serverId, serverSecret: gwA.config.serverSecret }, [proxy('IMEI:359000000000002')], 5);
    await device('IMEI:359000000000001', gwA);
    await device('IMEI:359000000000002', gwB);
    await waitFor(() => gwA.associations.get('gw-b')?.status === 'attached' && gwB.associations.all().length === 6, 'gw-b and its devices to attach', 20_000);

    let correlators = 0;
    const runFanout = async (name: string): Promise<void> => {
      const base = `./GwMO/Fanout/${name}`;
      const correlator = `viz-${++correlators}-${name}`;
      const res = await fetch(`${server.url}/api/devices/gw-a/commands`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          cmd: 'Sequence',
          timeout: 30,
          commands: [
            { cmd: 'Add', uri: base, format: 'node' },
            { cmd: 'Add', uri: `${base}/Target/GroupID`, value: '*' },
            { cmd: 'Add', uri: `${base}/Commands/1/Cmd`, value: 'Get' },
            { cmd: 'Add', uri: `${base}/Commands/1/URI`, value: './DevInfo/Mod' },
            { cmd: 'Exec', uri: `${base}/Operations/Start`, correlator },
          ],
        }),
      });
      const json = (await res.json()) as { status?: number };
      if (json.status !== 200) throw new Error(`starting fanout ${name} answered ${JSON.stringify(json)}`);
      await waitFor(async () => (await server.queue.listAlerts('gw-a')).some((a) => a.correlator === correlator), `fanout ${name} to complete`, 30_000);
    };

    return {
      url: viz.url,
      hub,
      server,
      gateways: [gwA, gwB],
      runFanout,
      close: () => closeAll(stops, dir),
    };
  } catch (err) {
    await closeAll(stops, dir);
    throw err;
  }
}

async function closeAll(stops: (() => Promise<void>)[], dir: string): Promise<void> {
  // Children before parents: devices, then gw-b, gw-a, the server, the visualizer.
  for (const stop of stops.reverse()) await stop().catch(() => {});
  stops.length = 0;
  await rm(dir, { recursive: true, force: true });
}

async function waitFor(cond: () => boolean | Promise<boolean>, what: string, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function main(): Promise<void> {
  const arg = (name: string): string | undefined => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  const every = Number(arg('every') ?? 5);
  const demo = await startVisualizerDemo({ listen: arg('listen') ?? '127.0.0.1:0', logLevel: 'warn' });
  process.stdout.write(`gwmo live visualizer: ${demo.url}\n(a fanout runs every ${every} s; Ctrl-C to stop)\n`);
  let n = 0;
  let stopping = false;
  const loop = async (): Promise<void> => {
    while (!stopping) {
      await demo.runFanout(`demo${++n}`).catch((err: unknown) => process.stderr.write(`fanout failed: ${String(err)}\n`));
      await new Promise((r) => setTimeout(r, every * 1000));
    }
  };
  void loop();
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await demo.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) await main();
