/**
 * One gateway of a topology: its simulated peers (knxd with KNX devices, a MyHOME gateway), the
 * gateway itself, its simulated DM devices (transparent devices before the gateway, which must know
 * their address; proxy devices after, which connect to it), then its groups and images. Used both by
 * `startTopology` in one process and by a gateway process of `gwmo up --processes`.
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
import { certFileName } from '../transport/certs.ts';
import { gatewayConfigSchema, type AssociationConfig } from '../gateway/config.ts';
import { Gateway } from '../gateway/gateway.ts';
import type { Logger } from '../log.ts';
import { LOCAL } from '../tree/tree.ts';
import type { TopologyGateway } from './schema.ts';

/** Where a gateway's parent (or the server) takes DM sessions, and the server identity it presents. */
export interface ParentLink {
  url: string;
  serverId: string;
  serverSecret: string;
  /** The CA its https certificate chains to (topologies with `tls`). */
  ca?: string;
}

/** A topology's TLS material (`tls: true`): the CA and the certificates `initCerts` made in `dir`. */
export interface TopologyTls {
  dir: string;
  ca: string;
  clientAuth: 'none' | 'request' | 'require';
}

/** The certificate and key files of `name` in a topology's certificate directory. */
export function certOf(tls: TopologyTls, name: string): { cert: string; key: string } {
  const base = join(tls.dir, certFileName(name));
  return { cert: `${base}.pem`, key: `${base}-key.pem` };
}

/** Client TLS towards a parent: its CA, and this part's own certificate (mutual TLS). */
function clientTls(tls: TopologyTls | undefined, link: ParentLink, name: string): Record<string, string> {
  if (!tls && !link.ca) return {};
  return { ...(link.ca ? { ca: link.ca } : {}), ...(tls ? certOf(tls, name) : {}) };
}

/** What starting one gateway needs from the topology run around it. */
export interface PartEnv {
  /** The topology secret every credential is derived from. */
  secret: string;
  dataDir: string;
  log: Logger;
  /** The DM server's endpoint: transparent-mode devices are clients of the server itself. */
  top: ParentLink;
  /** HTTPS on every link (topology `tls`). */
  tls?: TopologyTls;
  inspect?: (event: InspectionEvent) => void;
  /** One start step done (progress display). */
  step(what: string): void;
  /** Something did not start (e.g. knxd missing); the run goes on without it. */
  warn(message: string): void;
  /** Registers something to stop with this gateway (`device`: a simulated DevId, dropped from `devices`). */
  own(stop: () => Promise<void>, device?: string): void;
  devices: Map<string, SimDevice>;
}

/** A credential derived from the topology secret: stable across restarts, different per purpose and id. */
export function derivedSecret(secret: string, purpose: string, id: string): string {
  return createHmac('sha256', secret).update(`${purpose}\u0000${id}`).digest('base64url').slice(0, 24);
}

/** The DevIds of a device entry (one, or `<id>-1..<id>-<count>`). */
export function deviceIds(d: TopologyGateway['devices'][number]): string[] {
  return d.count ? Array.from({ length: d.count }, (_, i) => `${d.id}-${i + 1}`) : [d.id];
}

/** The south-side identity of a gateway (what its devices and child gateways authenticate). */
export function southOf(secret: string, id: string): { serverId: string; serverSecret: string } {
  return { serverId: `${id}-south`, serverSecret: derivedSecret(secret, 'south', id) };
}

/** Starts one gateway of a topology (not its child gateways) with its simulated peers and devices, then provisions its groups and images. */
export async function startGatewayPart(env: PartEnv, g: TopologyGateway, parent: ParentLink): Promise<Gateway> {
  const { secret, log } = env;
  const parentOfTop = env.top;
  const south = southOf(secret, g.id);
  // Peers simulated in place of hardware, started first so the adapters connect at once.
  const adapters: Record<string, unknown>[] = [];
  for (const a of g.adapters) {
    const cfg: Record<string, unknown> = { ...a.adapter };
    if (a.simulate && a.adapter.type === 'knx' && 'devices' in a.simulate) {
      let knxd: Knxd;
      try {
        const dir = join(env.dataDir, 'knxd', g.id);
        await mkdir(dir, { recursive: true });
        knxd = await startKnxd({ dir });
      } catch (err) {
        env.warn(`${g.id}: KNX network ${a.adapter.name} has no simulated bus (${describeError(err)}); its link will keep retrying`);
        adapters.push(cfg);
        env.step(`${g.id}: KNX bus not simulated`);
        continue;
      }
      env.own(() => knxd.stop());
      const sim = new KnxSim({ port: knxd.port, localAddress: '127.0.0.1' });
      env.own(() => sim.stop());
      for (const dev of a.simulate.devices) {
        await sim.add({ address: dev.address, objects: dev.objects.map((o) => ({ ga: o.ga, dpt: o.dpt, ...(o.value !== undefined ? { value: o.value } : {}), ...(o.write !== undefined ? { write: o.write } : {}), ...(o.read !== undefined ? { read: o.read } : {}) })) });
      }
      cfg['gateway'] = `127.0.0.1:${knxd.port}`;
      cfg['localAddress'] = '127.0.0.1';
      env.step(`${g.id}: KNX bus (knxd on UDP ${knxd.port}) with ${a.simulate.devices.length} device(s)`);
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
      env.own(() => sim.close());
      cfg['gatewayAddr'] = sim.addr;
      cfg['password'] = sim.password;
      // Lights and shutters are found by general status requests; thermo zones are probed by WHERE.
      const wheres = [...((cfg['wheres'] as { who: number; where: string }[] | undefined) ?? [])];
      for (const z of s.zones) if (!wheres.some((w) => w.who === 4 && w.where === z.where)) wheres.push({ who: 4, where: z.where });
      cfg['wheres'] = wheres;
      env.step(`${g.id}: MyHOME gateway simulator at ${sim.addr}`);
    }
    if (a.adapter.type === 'zigbee' && !('dataDir' in a.adapter && a.adapter.dataDir)) cfg['dataDir'] = join(env.dataDir, 'zigbee', g.id, a.adapter.name);
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
        const dev = await startDevice(env, d, devId, { ...parentOfTop, username: devId, secret: derivedSecret(secret, 'north', devId) });
        transparent.push({ id: devId, dev });
        associations.push({ deviceId: devId, mode: 'transparent', notify: dev.notifyUrl, serverId: parentOfTop.serverId });
      }
    }
  }
  const gw = await Gateway.create({
    config: gatewayConfigSchema.parse({
      id: g.id,
      parent: { url: parent.url, serverId: parent.serverId, username: g.id, secret: derivedSecret(secret, 'north', g.id), authType: 'md5', serverSecret: parent.serverSecret, serverAuthType: 'md5', ...clientTls(env.tls, parent, g.id) },
      listen: g.listen,
      ...(env.tls ? { tls: { ...certOf(env.tls, g.id), ca: env.tls.ca, clientAuth: env.tls.clientAuth } } : {}),
      serverId: south.serverId,
      serverSecret: south.serverSecret,
      serverAuthType: 'md5',
      devices: associations,
      adapters,
      ...(g.fanout ? { fanout: g.fanout } : {}),
    }),
    dataDir: join(env.dataDir, 'gateways', g.id),
    logger: log.child(g.id),
    ...(env.inspect ? { inspect: env.inspect } : {}),
  });
  await gw.start();
  env.own(() => gw.stop());
  env.step(`gateway ${g.id} at ${gw.southUrl}`);
  for (const t of transparent) {
    // The association is provisioned once; after a restart the device listens on a new port.
    const rec = gw.associations.get(t.id);
    if (rec && rec.notify !== t.dev.notifyUrl) await gw.associations.update(t.id, { notify: t.dev.notifyUrl });
    env.devices.set(t.id, t.dev);
    env.step(`device ${t.id} (transparent)`);
  }
  // Proxy-mode devices connect to the gateway's southbound endpoint.
  for (const d of g.devices) {
    if (d.mode !== 'proxy') continue;
    for (const devId of deviceIds(d)) {
      const dev = await startDevice(env, d, devId, { url: gw.southUrl, serverId: south.serverId, serverSecret: south.serverSecret, ...(env.tls ? { ca: env.tls.ca } : {}), username: devId, secret: derivedSecret(secret, 'south', devId) });
      await dev.connect().catch((err: unknown) => log.warn(`${devId}: first session failed: ${describeError(err)}`));
      env.step(`device ${devId} (proxy)`);
    }
  }
  await provision(gw, g);
  return gw;
}

/** Starts one simulated DM device of a gateway entry. */
async function startDevice(env: PartEnv, d: TopologyGateway['devices'][number], devId: string, acct: ParentLink & { username: string; secret: string }): Promise<SimDevice> {
  const dev = await SimDevice.create({
    config: deviceConfigSchema.parse({
      deviceId: devId,
      encoding: d.encoding,
      devInfo: { mod: d.model },
      server: { serverId: acct.serverId, url: acct.url, username: acct.username, secret: acct.secret, authType: 'md5', serverSecret: acct.serverSecret, serverAuthType: 'md5', ...clientTls(env.tls, acct, devId) },
      ...(env.tls ? { notify: { tls: { ...certOf(env.tls, devId), clientAuth: 'none' } } } : {}),
      nodes: [
        { uri: './Vendor', format: 'node', acl: `Get=*&Replace=${acct.serverId}&Add=${acct.serverId}&Delete=${acct.serverId}&Exec=${acct.serverId}` },
        ...d.nodes,
      ],
    }),
    dataDir: join(env.dataDir, 'devices', devId.replace(/[^A-Za-z0-9._-]/g, '_')),
    logger: env.log.child(devId),
  });
  await dev.start();
  env.devices.set(devId, dev);
  env.own(() => dev.stop(), devId);
  return dev;
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
