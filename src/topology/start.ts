/**
 * Starting a topology in this process (the embedding API and `gwmo up`): the embedded DM server,
 * the gateway tree (parents before children, each child associated with its parent as a child
 * gateway in proxy mode), the simulated peers of the adaptation networks, the simulated DM devices,
 * then groups and images. Every part keeps its data under `dataDir`, so starting the same topology
 * on the same directory resumes it: inventories, groups, fanout jobs and queued commands come back
 * from LevelDB, and provisioning that already happened is not repeated.
 */
import { createHash, createHmac } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { InspectionEvent } from 'xstate';
import { KnxSim } from '../../adapters/knx/sim.ts';
import { startKnxd, type Knxd } from '../../adapters/knx/knxd.ts';
import { OwnGatewaySim } from '../../adapters/own/sim.ts';
import { deviceConfigSchema } from '../device/config.ts';
import { SimDevice } from '../device/device.ts';
import { describeError, GwError } from '../errors.ts';
import { associationConfigSchema, gatewayConfigSchema, type AssociationConfig } from '../gateway/config.ts';
import { Gateway } from '../gateway/gateway.ts';
import { createLogger, type Logger } from '../log.ts';
import { serverConfigSchema } from '../server/config.ts';
import { DmServer } from '../server/server.ts';
import { LOCAL } from '../tree/tree.ts';
import type { Topology, TopologyGateway } from './schema.ts';

/** Options of `startTopology`. */
export interface StartOptions {
  /** Where every part keeps its LevelDB (and image blobs); the same directory resumes the deployment. */
  dataDir: string;
  logger?: Logger;
  /** xstate inspection observer for every actor (the live visualizer). */
  inspect?: (event: InspectionEvent) => void;
  /** Or one observer per part, so the visualizer can place each actor under its gateway (wins over `inspect`). */
  inspectFor?: (part: { gateway?: string }) => (event: InspectionEvent) => void;
  /** Progress of the start, for a progress display: `done` of `total` steps, and what just happened. */
  onProgress?: (done: number, total: number, what: string) => void;
}

/** A started topology. */
export interface RunningTopology {
  readonly topology: Topology;
  /** The embedded server (undefined with an external one). */
  readonly server: DmServer | undefined;
  /** Gateways by id. */
  readonly gateways: ReadonlyMap<string, Gateway>;
  /** Simulated DM devices by DevId. */
  readonly devices: ReadonlyMap<string, SimDevice>;
  /** The server's DM endpoint and operator API. */
  readonly urls: { dm: string; api?: string };
  /** Things that did not start (e.g. knxd not installed), with the reason. */
  readonly warnings: readonly string[];
  /**
   * Applies a changed topology: only the gateways whose own definition (devices, adapters, groups,
   * images, settings) or place in the tree changed are restarted, each with its subtree, on the same
   * data; gateways added or removed are associated with or forgotten by their parent. The server,
   * `secret` and `name` cannot change while running.
   */
  reload(next: Topology): Promise<{ restarted: string[]; added: string[]; removed: string[] }>;
  /** Stops everything, children before parents. */
  stop(): Promise<void>;
}

/** A credential derived from the topology secret: stable across restarts, different per purpose and id. */
export function derivedSecret(secret: string, purpose: string, id: string): string {
  return createHmac('sha256', secret).update(`${purpose}\u0000${id}`).digest('base64url').slice(0, 24);
}

/** The DevIds of a device entry (one, or `<id>-1..<id>-<count>`). */
function deviceIds(d: TopologyGateway['devices'][number]): string[] {
  return d.count ? Array.from({ length: d.count }, (_, i) => `${d.id}-${i + 1}`) : [d.id];
}

/** Counts the start steps, for progress. */
function countSteps(gws: TopologyGateway[]): number {
  return gws.reduce((n, g) => n + 1 + g.devices.reduce((m, d) => m + (d.count ?? 1), 0) + g.adapters.filter((a) => a.simulate).length + countSteps(g.gateways), 0);
}

/** Starts a topology in this process. */
export async function startTopology(topology: Topology, opts: StartOptions): Promise<RunningTopology> {
  const log = opts.logger ?? createLogger('topology');
  const secret = topology.secret;
  const warnings: string[] = [];
  const stops: (() => Promise<void>)[] = [];
  const gateways = new Map<string, Gateway>();
  const devices = new Map<string, SimDevice>();
  let current = topology;
  /** What each gateway's start created (its simulated peers, devices, the gateway), stopped with it. */
  const owned = new Map<string, { stop: () => Promise<void>; device?: string }[]>();
  const own = (gid: string, stop: () => Promise<void>, device?: string): void => {
    const l = owned.get(gid) ?? [];
    l.push({ stop, ...(device ? { device } : {}) });
    owned.set(gid, l);
  };
  /** Stops a gateway's subtree (children first) and what it owns. */
  const stopGateway = async (g: TopologyGateway): Promise<void> => {
    for (const c of g.gateways) await stopGateway(c);
    for (const o of (owned.get(g.id) ?? []).reverse()) {
      await o.stop().catch((err: unknown) => log.warn(`stop ${g.id}: ${describeError(err)}`));
      if (o.device) devices.delete(o.device);
    }
    owned.delete(g.id);
    gateways.delete(g.id);
  };
  const total = 1 + countSteps(topology.gateways);
  let done = 0;
  const step = (what: string): void => {
    done++;
    opts.onProgress?.(done, total, what);
  };
  const stopAll = async (): Promise<void> => {
    for (const g of current.gateways) await stopGateway(g);
    for (const s of stops.splice(0).reverse()) await s().catch((err: unknown) => log.warn(`stop: ${describeError(err)}`));
  };
  await mkdir(opts.dataDir, { recursive: true });
  const observer = (part: { gateway?: string }): ((event: InspectionEvent) => void) | undefined => opts.inspectFor?.(part) ?? opts.inspect;

  try {
    // The server, with an account for each top gateway and each transparent-mode device.
    const accounts: Record<string, unknown>[] = [];
    for (const g of topology.gateways) accounts.push({ deviceId: g.id, username: g.id, secret: derivedSecret(secret, 'north', g.id), authType: 'md5', gateway: true });
    const walkTransparent = (gws: TopologyGateway[]): void => {
      for (const g of gws) {
        for (const d of g.devices) if (d.mode === 'transparent') for (const id of deviceIds(d)) accounts.push({ deviceId: id, username: id, secret: derivedSecret(secret, 'north', id), authType: 'md5' });
        walkTransparent(g.gateways);
      }
    };
    walkTransparent(topology.gateways);
    let server: DmServer | undefined;
    let parentOfTop: { url: string; serverId: string; serverSecret: string };
    if ('url' in topology.server) {
      parentOfTop = { url: topology.server.url, serverId: topology.server.serverId, serverSecret: topology.server.serverSecret };
    } else {
      const serverSecret = derivedSecret(secret, 'server', topology.server.serverId);
      server = await DmServer.create({
        config: serverConfigSchema.parse({ listen: topology.server.listen, serverId: topology.server.serverId, serverSecret, serverAuthType: 'md5', sessionTimeout: topology.server.sessionTimeout, accounts }),
        dataDir: join(opts.dataDir, 'server'),
        logger: log.child('server'),
        ...(observer({}) ? { inspect: observer({})! } : {}),
      });
      await server.start();
      const s = server;
      stops.push(() => s.stop());
      parentOfTop = { url: server.dmUrl, serverId: topology.server.serverId, serverSecret };
    }
    step(server ? `DM server at ${server.url}` : `external DM server ${parentOfTop.url}`);

    const startGateway = async (g: TopologyGateway, parent: { url: string; serverId: string; serverSecret: string }): Promise<void> => {
      const south = { serverId: `${g.id}-south`, serverSecret: derivedSecret(secret, 'south', g.id) };
      // Peers simulated in place of hardware, started first so the adapters connect at once.
      const adapters: Record<string, unknown>[] = [];
      for (const a of g.adapters) {
        const cfg: Record<string, unknown> = { ...a.adapter };
        if (a.simulate && a.adapter.type === 'knx' && 'devices' in a.simulate) {
          let knxd: Knxd;
          try {
            const dir = join(opts.dataDir, 'knxd', g.id);
            await mkdir(dir, { recursive: true });
            knxd = await startKnxd({ dir });
          } catch (err) {
            warnings.push(`${g.id}: KNX network ${a.adapter.name} has no simulated bus (${describeError(err)}); its link will keep retrying`);
            log.warn(warnings[warnings.length - 1]!);
            adapters.push(cfg);
            step(`${g.id}: KNX bus not simulated`);
            continue;
          }
          own(g.id, () => knxd.stop());
          const sim = new KnxSim({ port: knxd.port, localAddress: '127.0.0.1' });
          own(g.id, () => sim.stop());
          for (const dev of a.simulate.devices) {
            await sim.add({ address: dev.address, objects: dev.objects.map((o) => ({ ga: o.ga, dpt: o.dpt, ...(o.value !== undefined ? { value: o.value } : {}), ...(o.write !== undefined ? { write: o.write } : {}), ...(o.read !== undefined ? { read: o.read } : {}) })) });
          }
          cfg['gateway'] = `127.0.0.1:${knxd.port}`;
          cfg['localAddress'] = '127.0.0.1';
          step(`${g.id}: KNX bus (knxd on UDP ${knxd.port}) with ${a.simulate.devices.length} device(s)`);
        } else if (a.simulate && a.adapter.type === 'own' && 'lights' in a.simulate) {
          const password = derivedSecret(secret, 'own', `${g.id}/${a.adapter.name}`);
          const s = a.simulate;
          const sim = await OwnGatewaySim.start({
            auth: s.auth,
            password: s.auth === 'open' ? String(parseInt(createHash('sha256').update(password).digest('hex').slice(0, 8), 16) % 1e9) : password,
            lights: s.lights,
            shutters: s.shutters,
            zones: s.zones,
            mac: createHash('sha256').update(`${g.id}/${a.adapter.name}`).digest('hex').slice(0, 12),
          });
          own(g.id, () => sim.close());
          cfg['gatewayAddr'] = sim.addr;
          cfg['password'] = sim.password;
          // Lights and shutters are found by general status requests; thermo zones are probed by WHERE.
          const wheres = [...((cfg['wheres'] as { who: number; where: string }[] | undefined) ?? [])];
          for (const z of s.zones) if (!wheres.some((w) => w.who === 4 && w.where === z.where)) wheres.push({ who: 4, where: z.where });
          cfg['wheres'] = wheres;
          step(`${g.id}: MyHOME gateway simulator at ${sim.addr}`);
        }
        if (a.adapter.type === 'zigbee' && !('dataDir' in a.adapter && a.adapter.dataDir)) cfg['dataDir'] = join(opts.dataDir, 'zigbee', g.id, a.adapter.name);
        adapters.push(cfg);
      }
      // Associations: child gateways (proxy mode) and the simulated DM devices.
      const associations: Partial<AssociationConfig>[] = g.gateways.map((c) => ({ deviceId: c.id, mode: 'proxy', gateway: true, username: c.id, secret: derivedSecret(secret, 'north', c.id), authType: 'syncml:auth-md5' }));
      const transparent: { id: string; dev: SimDevice }[] = [];
      for (const d of g.devices) {
        for (const devId of deviceIds(d)) {
          if (d.mode === 'proxy') {
            associations.push({ deviceId: devId, mode: 'proxy', username: devId, secret: derivedSecret(secret, 'south', devId), authType: 'syncml:auth-md5' });
          } else {
            // A transparent device is a client of the server itself; it must listen before its gateway knows its address.
            const dev = await startDevice(g.id, d, devId, { url: parentOfTop.url, serverId: parentOfTop.serverId, serverSecret: parentOfTop.serverSecret, username: devId, secret: derivedSecret(secret, 'north', devId) });
            transparent.push({ id: devId, dev });
            associations.push({ deviceId: devId, mode: 'transparent', notify: dev.notifyUrl, serverId: parentOfTop.serverId });
          }
        }
      }
      const gw = await Gateway.create({
        config: gatewayConfigSchema.parse({
          id: g.id,
          parent: { url: parent.url, serverId: parent.serverId, username: g.id, secret: derivedSecret(secret, 'north', g.id), authType: 'md5', serverSecret: parent.serverSecret, serverAuthType: 'md5' },
          listen: g.listen,
          serverId: south.serverId,
          serverSecret: south.serverSecret,
          serverAuthType: 'md5',
          devices: associations,
          adapters,
          ...(g.fanout ? { fanout: g.fanout } : {}),
        }),
        dataDir: join(opts.dataDir, 'gateways', g.id),
        logger: log.child(g.id),
        ...(observer({ gateway: g.id }) ? { inspect: observer({ gateway: g.id })! } : {}),
      });
      await gw.start();
      gateways.set(g.id, gw);
      own(g.id, () => gw.stop());
      step(`gateway ${g.id} at ${gw.southUrl}`);
      for (const t of transparent) {
        // The association is provisioned once; after a restart the device listens on a new port.
        const rec = gw.associations.get(t.id);
        if (rec && rec.notify !== t.dev.notifyUrl) await gw.associations.update(t.id, { notify: t.dev.notifyUrl });
        devices.set(t.id, t.dev);
        step(`device ${t.id} (transparent)`);
      }
      // Proxy-mode devices connect to the gateway's southbound endpoint.
      for (const d of g.devices) {
        if (d.mode !== 'proxy') continue;
        for (const devId of deviceIds(d)) {
          const dev = await startDevice(g.id, d, devId, { url: gw.southUrl, serverId: south.serverId, serverSecret: south.serverSecret, username: devId, secret: derivedSecret(secret, 'south', devId) });
          await dev.connect().catch((err: unknown) => log.warn(`${devId}: first session failed: ${describeError(err)}`));
          step(`device ${devId} (proxy)`);
        }
      }
      await provision(gw, g);
      for (const c of g.gateways) await startGateway(c, { url: gw.southUrl, serverId: south.serverId, serverSecret: south.serverSecret });
    };

    const startDevice = async (gid: string, d: TopologyGateway['devices'][number], devId: string, acct: { url: string; serverId: string; serverSecret: string; username: string; secret: string }): Promise<SimDevice> => {
      const dev = await SimDevice.create({
        config: deviceConfigSchema.parse({
          deviceId: devId,
          encoding: d.encoding,
          devInfo: { mod: d.model },
          server: { serverId: acct.serverId, url: acct.url, username: acct.username, secret: acct.secret, authType: 'md5', serverSecret: acct.serverSecret, serverAuthType: 'md5' },
          nodes: [
            { uri: './Vendor', format: 'node', acl: `Get=*&Replace=${acct.serverId}&Add=${acct.serverId}&Delete=${acct.serverId}&Exec=${acct.serverId}` },
            ...d.nodes,
          ],
        }),
        dataDir: join(opts.dataDir, 'devices', devId.replace(/[^A-Za-z0-9._-]/g, '_')),
        logger: log.child(devId),
      });
      await dev.start();
      devices.set(devId, dev);
      own(gid, () => dev.stop(), devId);
      return dev;
    };

    for (const g of topology.gateways) await startGateway(g, parentOfTop);

    const reload = async (next: Topology): Promise<{ restarted: string[]; added: string[]; removed: string[] }> => {
      const fixed = (t: Topology): string => JSON.stringify([t.server, t.secret, t.name]);
      if (fixed(next) !== fixed(current)) throw new GwError('TOPOLOGY_RELOAD', 'the server, secret or name changed: stop and start again');
      type Entry = { node: TopologyGateway; parent: string | undefined };
      const index = (t: Topology): Map<string, Entry> => {
        const m = new Map<string, Entry>();
        const walk = (gws: TopologyGateway[], parent: string | undefined): void => {
          for (const g of gws) {
            m.set(g.id, { node: g, parent });
            walk(g.gateways, g.id);
          }
        };
        walk(t.gateways, undefined);
        return m;
      };
      // A gateway's own definition: everything but its children (added or removed children are
      // associated with or forgotten by a running parent; the parent itself need not restart).
      const sig = (g: TopologyGateway): string => JSON.stringify({ ...g, gateways: [] });
      const before = index(current);
      const after = index(next);
      const changed = new Set<string>();
      for (const [id, e] of after) {
        const old = before.get(id);
        if (!old || old.parent !== e.parent || sig(old.node) !== sig(e.node)) changed.add(id);
      }
      const removed = [...before.keys()].filter((id) => !after.has(id));
      const added = [...after.keys()].filter((id) => !before.has(id));
      // Restart roots: changed gateways with no changed ancestor (their subtree restarts with them).
      const roots = [...changed].filter((id) => {
        for (let p = after.get(id)!.parent; p !== undefined; p = after.get(p)!.parent) if (changed.has(p)) return false;
        return true;
      });
      const restarted: string[] = [];
      // Gone gateways whose parent stays up: stop them and drop them from the parent's inventory.
      for (const id of removed) {
        const parent = before.get(id)!.parent;
        if (parent !== undefined && (changed.has(parent) || !after.has(parent))) continue;
        await stopGateway(before.get(id)!.node);
        if (parent !== undefined) await gateways.get(parent)?.forget(id);
        log.info(`reload: gateway ${id} removed`);
      }
      for (const id of roots) {
        const { node, parent } = after.get(id)!;
        const old = before.get(id);
        if (old) await stopGateway(old.node);
        // Gateways under it that the new topology drops are stopped with the old subtree; forget them below.
        const parentGw = parent === undefined ? undefined : gateways.get(parent);
        if (parent !== undefined && !parentGw) throw new GwError('TOPOLOGY_RELOAD', `parent ${parent} of ${id} is not running`);
        // New parts that talk to the server need accounts there: a new top gateway, new transparent devices.
        if (server) {
          const account = (deviceId: string, gateway: boolean): void => {
            if (!server!.account(deviceId)) server!.addAccount({ deviceId, username: deviceId, secret: derivedSecret(secret, 'north', deviceId), authType: 'syncml:auth-md5', gateway, clientNonce: '', serverNonce: '' });
          };
          if (parent === undefined) account(id, true);
          const walk = (g: TopologyGateway): void => {
            for (const d of g.devices) if (d.mode === 'transparent') for (const t of deviceIds(d)) account(t, false);
            g.gateways.forEach(walk);
          };
          walk(node);
        }
        if (parentGw && !parentGw.associations.get(id)) {
          await parentGw.associate(
            associationConfigSchema.parse({ deviceId: id, mode: 'proxy', gateway: true, username: id, secret: derivedSecret(secret, 'north', id), authType: 'syncml:auth-md5' }),
          );
        }
        const parentInfo = parentGw
          ? { url: parentGw.southUrl, serverId: parentGw.config.serverId, serverSecret: parentGw.config.serverSecret }
          : parentOfTop;
        await startGateway(node, parentInfo);
        restarted.push(id);
      }
      // Devices and child gateways a restarted gateway no longer has: out of its inventory.
      for (const id of restarted) {
        const walk = (g: TopologyGateway): void => {
          const gw = gateways.get(g.id);
          const keep = new Set([...g.devices.flatMap(deviceIds), ...g.gateways.map((c) => c.id)]);
          const old = before.get(g.id)?.node;
          if (gw && old) {
            for (const gone of [...old.devices.flatMap(deviceIds), ...old.gateways.map((c) => c.id)]) {
              if (!keep.has(gone)) void gw.forget(gone).catch(() => undefined);
            }
          }
          g.gateways.forEach(walk);
        };
        walk(after.get(id)!.node);
      }
      current = next;
      if (restarted.length || removed.length) log.info(`reload: restarted ${restarted.join(', ') || 'none'}; removed ${removed.join(', ') || 'none'}`);
      return { restarted, added, removed };
    };

    return {
      get topology() {
        return current;
      },
      server,
      gateways,
      devices,
      urls: { dm: parentOfTop.url, ...(server ? { api: `${server.url}/api` } : {}) },
      warnings,
      reload,
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** Creates the gateway's groups and stores its images, unless a previous start did. */
async function provision(gw: Gateway, g: TopologyGateway): Promise<void> {
  for (const group of g.groups) {
    if (gw.groups.get(group.id)) continue; // the server may have changed it since: the record wins
    const base = `./GwMO/Groups/${group.id}`;
    await gw.tree.add(base, { format: 'node' }, LOCAL);
    if (group.description !== undefined) await gw.tree.add(`${base}/Description`, { format: 'chr', data: group.description }, LOCAL);
    if (group.filter !== undefined) await gw.tree.add(`${base}/Filter`, { format: 'chr', data: group.filter }, LOCAL);
    for (const [i, m] of group.members.entries()) {
      const member = typeof m === 'string' ? { deviceId: m } : m;
      await gw.tree.add(`${base}/Members/m${i + 1}/DeviceID`, { format: 'chr', data: member.deviceId }, LOCAL);
      if ('subGroup' in member) await gw.tree.add(`${base}/Members/m${i + 1}/SubGroup`, { format: 'chr', data: member.subGroup }, LOCAL);
    }
  }
  for (const img of g.images) {
    if (gw.images.get(img.name)) continue;
    let bytes: Uint8Array;
    if (img.file) bytes = await readFile(img.file);
    else if (img.url) {
      const res = await fetch(img.url, { signal: AbortSignal.timeout(60_000) });
      if (!res.ok) throw new GwError('TOPOLOGY_IMAGE', `image ${img.name}: ${img.url} answered HTTP ${res.status}`);
      bytes = new Uint8Array(await res.arrayBuffer());
    } else bytes = generated(img.name, img.size!);
    const status = await gw.images.store(img.name, bytes, img.version ? { version: img.version } : {});
    if (status >= 300) throw new GwError('TOPOLOGY_IMAGE', `image ${img.name} could not be stored on ${g.id} (DM status ${status})`, { status });
  }
}

/** Deterministic bytes for a demo image (a firmware stand-in): the same name gives the same hash. */
function generated(name: string, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let block = createHash('sha256').update(name).digest();
  for (let at = 0; at < size; at += block.length) {
    out.set(block.subarray(0, Math.min(block.length, size - at)), at);
    block = createHash('sha256').update(block).digest();
  }
  return out;
}
