/**
 * Starting a topology in this process (the embedding API and `gwmo up`): the embedded DM server,
 * the gateway tree (parents before children, each child associated with its parent as a child
 * gateway in proxy mode), the simulated peers of the adaptation networks, the simulated DM devices,
 * then groups and images. Every part keeps its data under `dataDir`, so starting the same topology
 * on the same directory resumes it: inventories, groups, fanout jobs and queued commands come back
 * from LevelDB, and provisioning that already happened is not repeated.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { InspectionEvent } from 'xstate';
import type { SimDevice } from '../device/device.ts';
import { describeError, GwError } from '../errors.ts';
import { associationConfigSchema } from '../gateway/config.ts';
import type { Gateway } from '../gateway/gateway.ts';
import type { RemoteModel } from '../inspect/hub.ts';
import { createLogger, type Logger, type LogLevel } from '../log.ts';
import { serverConfigSchema } from '../server/config.ts';
import { DmServer } from '../server/server.ts';
import { certOf, derivedSecret, deviceIds, startGatewayPart, type ParentLink, type PartEnv, type TopologyTls } from './part.ts';
import { initCerts } from '../transport/certs.ts';
import { inProcessHandle, spawnGatewayProcess, type GatewayHandle, type GatewayProcess } from './processes.ts';
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
  /**
   * Run each gateway (with its simulated peers and devices) in its own OS process (`gwmo up
   * --processes`); the server stays in this one. A gateway process that dies is restarted with its
   * subtree, after a backoff.
   */
  processes?: boolean;
  /** Gateway processes only: where their log lines go (default: this process's stderr). */
  logLine?: (line: string) => void;
  /** Gateway processes only: log level and format of their logs. */
  logLevel?: LogLevel;
  logJson?: boolean;
  /** Gateway processes only: mirrors of their actors for a visualizer (`InspectionHub` implements it). */
  remoteInspect?: { ingest(source: string, model: RemoteModel): void; dropSource(source: string): void };
}

/** A started topology. */
export interface RunningTopology {
  readonly topology: Topology;
  /** The embedded server (undefined with an external one). */
  readonly server: DmServer | undefined;
  /** Gateways running in this process, by id (empty with `processes`). */
  readonly gateways: ReadonlyMap<string, Gateway>;
  /** Every running gateway by id, in this process or its own (pid, south URL, inventory calls). */
  readonly parts: ReadonlyMap<string, GatewayHandle>;
  /** Simulated DM devices in this process by DevId (empty with `processes`). */
  readonly devices: ReadonlyMap<string, SimDevice>;
  /** The server's DM endpoint and operator API. */
  readonly urls: { dm: string; api?: string };
  /** Things that did not start (e.g. knxd not installed), with the reason. */
  readonly warnings: readonly string[];
  /** With `tls`: the CA every part trusts and the operator's client certificate (for `gwmo --ca --cert --key`). */
  readonly tls?: { ca: string; operator: { cert: string; key: string } };
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

export { derivedSecret } from './part.ts';

/** Every name that gets a certificate: the gateways and the simulated DM devices. */
function allNames(gws: TopologyGateway[]): string[] {
  return gws.flatMap((g) => [g.id, ...g.devices.flatMap(deviceIds), ...allNames(g.gateways)]);
}

/** Counts the start steps, for progress. */
function countSteps(gws: TopologyGateway[]): number {
  return gws.reduce((n, g) => n + 1 + g.devices.reduce((m, d) => m + (d.count ?? 1), 0) + g.adapters.filter((a) => a.simulate).length + countSteps(g.gateways), 0);
}

/** Starts a topology: the embedded server in this process, gateways in it too or each in its own (`processes`). */
export async function startTopology(topology: Topology, opts: StartOptions): Promise<RunningTopology> {
  const log = opts.logger ?? createLogger('topology');
  const secret = topology.secret;
  const warnings: string[] = [];
  const stops: (() => Promise<void>)[] = [];
  const gateways = new Map<string, Gateway>();
  const parts = new Map<string, GatewayHandle>();
  /** The parent link each gateway was started with (a crashed gateway process restarts with it). */
  const links = new Map<string, ParentLink>();
  const devices = new Map<string, SimDevice>();
  let stopping = false;
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
    parts.delete(g.id);
    opts.remoteInspect?.dropSource(g.id);
  };
  const total = 1 + countSteps(topology.gateways);
  let done = 0;
  const step = (what: string): void => {
    done++;
    opts.onProgress?.(done, total, what);
  };
  const stopAll = async (): Promise<void> => {
    stopping = true;
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
    // HTTPS on every link: a local CA and a certificate for each part (kept across restarts).
    let tls: TopologyTls | undefined;
    const issue = async (t: Topology): Promise<void> => {
      if (!t.tls) return;
      // `operator`: the certificate the CLI presents to the operator API (which requires one with clientAuth require).
      const r = await initCerts(join(opts.dataDir, 'certs'), { names: ['operator', ...allNames(t.gateways)] });
      tls = { dir: r.dir, ca: r.ca, clientAuth: t.tls === true ? 'require' : t.tls.clientAuth };
    };
    await issue(topology);
    let server: DmServer | undefined;
    let parentOfTop: ParentLink;
    if ('url' in topology.server) {
      parentOfTop = { url: topology.server.url, serverId: topology.server.serverId, serverSecret: topology.server.serverSecret, ...(topology.server.ca ? { ca: topology.server.ca } : {}) };
    } else {
      const serverSecret = derivedSecret(secret, 'server', topology.server.serverId);
      server = await DmServer.create({
        config: serverConfigSchema.parse({
          listen: topology.server.listen,
          ...(tls ? { tls: { ...certOf(tls, 'server'), ca: tls.ca, clientAuth: tls.clientAuth } } : {}),
          serverId: topology.server.serverId,
          serverSecret,
          serverAuthType: 'md5',
          sessionTimeout: topology.server.sessionTimeout,
          accounts,
        }),
        dataDir: join(opts.dataDir, 'server'),
        logger: log.child('server'),
        ...(observer({}) ? { inspect: observer({})! } : {}),
      });
      await server.start();
      const s = server;
      stops.push(() => s.stop());
      parentOfTop = { url: server.dmUrl, serverId: topology.server.serverId, serverSecret, ...(tls ? { ca: tls.ca } : {}) };
    }
    step(server ? `DM server at ${server.url}` : `external DM server ${parentOfTop.url}`);

    /** Restart attempts of crashed gateway processes (reset once a restart has run for a minute). */
    const crashes = new Map<string, { n: number; since: number }>();
    const findNode = (id: string, gws: TopologyGateway[] = current.gateways): TopologyGateway | undefined => {
      for (const g of gws) {
        if (g.id === id) return g;
        const f = findNode(id, g.gateways);
        if (f) return f;
      }
      return undefined;
    };
    /** A gateway process died: restart it (and its subtree, whose parent URL it held) after a backoff. */
    const onCrash = (id: string, why: string, crashed: GatewayHandle | undefined): void => {
      const prev = crashes.get(id);
      const n = prev && Date.now() - prev.since < 60_000 ? prev.n + 1 : 0;
      const delay = Math.min(30_000, 1000 * 2 ** n);
      crashes.set(id, { n, since: Date.now() });
      log.error(`gateway process ${id} ended unexpectedly (${why}); restarting it with its subtree in ${delay} ms`);
      setTimeout(() => {
        const node = findNode(id);
        const link = links.get(id);
        // Stopped, removed by a reload, or already restarted by one: nothing to do.
        if (stopping || !node || !link || !crashed || parts.get(id) !== crashed) return;
        void (async () => {
          await stopGateway(node);
          await startGateway(node, link);
          log.info(`gateway process ${id} restarted`);
        })().catch((err: unknown) => log.error(`restart of gateway ${id} failed: ${describeError(err)}`));
      }, delay).unref();
    };
    const envFor = (gid: string): PartEnv => ({
      secret,
      dataDir: opts.dataDir,
      log,
      top: parentOfTop,
      ...(tls ? { tls } : {}),
      ...(observer({ gateway: gid }) ? { inspect: observer({ gateway: gid })! } : {}),
      step,
      warn: (message) => {
        warnings.push(message);
        log.warn(message);
      },
      own: (stop, device) => own(gid, stop, device),
      devices,
    });
    /** Starts a gateway (in this process or its own), then its child gateways under it. */
    const startGateway = async (g: TopologyGateway, parent: ParentLink): Promise<void> => {
      let handle: GatewayHandle;
      if (opts.processes) {
        let proc: GatewayProcess | undefined;
        proc = await spawnGatewayProcess({
          gateway: g,
          secret,
          parent,
          top: parentOfTop,
          ...(tls ? { tls } : {}),
          dataDir: opts.dataDir,
          ...(opts.logLevel ? { logLevel: opts.logLevel } : {}),
          ...(opts.logJson ? { logJson: true } : {}),
          onLine: opts.logLine ?? ((line) => process.stderr.write(`${line}\n`)),
          onStep: step,
          onWarn: (message) => warnings.push(message),
          ...(opts.remoteInspect ? { onInspect: (model: RemoteModel) => opts.remoteInspect!.ingest(g.id, model) } : {}),
          onCrash: (why) => onCrash(g.id, why, proc),
        });
        const p = proc;
        own(g.id, () => p.stop());
        handle = p;
      } else {
        const gw = await startGatewayPart(envFor(g.id), g, parent);
        gateways.set(g.id, gw);
        handle = inProcessHandle(gw);
      }
      parts.set(g.id, handle);
      links.set(g.id, parent);
      for (const c of g.gateways) await startGateway(c, handle.link);
    };
    for (const g of topology.gateways) await startGateway(g, parentOfTop);

    const reload = async (next: Topology): Promise<{ restarted: string[]; added: string[]; removed: string[] }> => {
      const fixed = (t: Topology): string => JSON.stringify([t.server, t.secret, t.name]);
      if (fixed(next) !== fixed(current) || JSON.stringify(next.tls) !== JSON.stringify(current.tls)) throw new GwError('TOPOLOGY_RELOAD', 'the server, secret, name or tls changed: stop and start again');
      await issue(next); // certificates for added gateways and devices
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
        if (parent !== undefined) await parts.get(parent)?.forget(id);
        log.info(`reload: gateway ${id} removed`);
      }
      for (const id of roots) {
        const { node, parent } = after.get(id)!;
        const old = before.get(id);
        if (old) await stopGateway(old.node);
        // Gateways under it that the new topology drops are stopped with the old subtree; forget them below.
        const parentGw = parent === undefined ? undefined : parts.get(parent);
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
        if (parentGw && !(await parentGw.hasAssociation(id))) {
          await parentGw.associate(
            associationConfigSchema.parse({ deviceId: id, mode: 'proxy', gateway: true, username: id, secret: derivedSecret(secret, 'north', id), authType: 'syncml:auth-md5' }),
          );
        }
        const parentInfo = parentGw ? parentGw.link : parentOfTop;
        await startGateway(node, parentInfo);
        restarted.push(id);
      }
      // Devices and child gateways a restarted gateway no longer has: out of its inventory.
      for (const id of restarted) {
        const walk = (g: TopologyGateway): void => {
          const gw = parts.get(g.id);
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
      parts,
      devices,
      urls: { dm: parentOfTop.url, ...(server ? { api: `${server.url}/api` } : {}) },
      warnings,
      ...(tls ? { tls: { ca: (tls as TopologyTls).ca, operator: certOf(tls as TopologyTls, 'operator') } } : {}),
      reload,
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

