/**
 * The KNX adapter (notes §1.8, §2.3): one KNXnet/IP link (tunnelling to a KNX IP interface or
 * knxd, or routing) driven by npm `knx@2.5.4`, and the KNX devices configured on it, each exposed as
 * a DM subtree:
 *
 * ```
 * KNX/IndividualAddress                     chr G    the device's individual address (1.1.5)
 * KNX/Name                                  chr G    its name, when configured
 * KNX/GroupObjects/<main>-<middle>-<sub>/   node     one group object (group address main/middle/sub)
 *     Value       chr G (read flag), R (write flag)  Get = GroupValue_Read, waits for the device's
 *                                                    GroupValue_Response (461 on timeout);
 *                                                    Replace = GroupValue_Write encoded by the DPT (400 if it cannot carry it)
 *     Type        chr G    the DPT (e.g. DPT9.001)
 *     Name        chr G    the object's name, when configured
 *     Flags       chr G    r, w or rw
 *     LastValue   chr G    last value seen on the bus (write or response, from anyone), '' if none
 *     LastUpdate  chr G    when (ISO 8601), '' if never
 *     LastSource  chr G    who sent it (individual address)
 * ```
 *
 * KNX has no discovery (notes §2.3: "KNX configured individual/group addresses"): devices come
 * from the config or from server-configured associations (AMode-006). Liveness is probed: every
 * `probeIntervalMs` each device is asked for a readable group object (a GroupValue_Read answered
 * by that device's address); no answer reports it detached, an answer (or any telegram it sends)
 * attached again. A fanout Replace of one group object to several devices listening on that group
 * address is one GroupValue_Write (`multicast`).
 */
import { z } from 'zod';
import { DmStatusError } from '../../src/errors.ts';
import { Limiter } from '../../src/limit.ts';
import type { PluginNodeView, PluginWrite, TreePlugin } from '../../src/tree/tree.ts';
import type { Adapter, AdapterDevice, AdapterEvents, AdapterOperation, AdapterParam, LinkState, MulticastRequest, MulticastResult } from '../contract.ts';
import { Link, backoffSchema } from '../link.ts';
import { deviceSubtree } from '../subtree.ts';
import { decodeValue, encodeValue, parseDpt, type Dpt } from './dpt.ts';
import { KnxTunnel, type Telegram } from './tunnel.ts';

/** `area.line.device`, 0..15 . 0..15 . 0..255. */
export function isIndividualAddress(s: string): boolean {
  const m = /^(\d{1,2})\.(\d{1,2})\.(\d{1,3})$/.exec(s);
  return !!m && Number(m[1]) <= 15 && Number(m[2]) <= 15 && Number(m[3]) <= 255;
}

/** Three-level group address `main/middle/sub`, 0..31 / 0..7 / 0..255. */
export function isGroupAddress(s: string): boolean {
  const m = /^(\d{1,2})\/(\d)\/(\d{1,3})$/.exec(s);
  return !!m && Number(m[1]) <= 31 && Number(m[2]) <= 7 && Number(m[3]) <= 255;
}

const dptText = z.string().refine(
  (s) => {
    try {
      parseDpt(s);
      return true;
    } catch {
      return false;
    }
  },
  { message: 'a supported datapoint type, e.g. DPT1.001, DPT5.001, DPT9.001' },
);

const groupObjectSchema = z.object({
  ga: z.string().refine(isGroupAddress, { message: 'a group address main/middle/sub (0..31/0..7/0..255)' }),
  dpt: dptText,
  name: z.string().optional(),
  /** KNX read flag: the device answers GroupValue_Read on it. */
  read: z.boolean().default(true),
  /** KNX write flag: the device applies GroupValue_Write on it. */
  write: z.boolean().default(true),
});

const deviceSchema = z.object({
  address: z.string().refine(isIndividualAddress, { message: 'an individual address area.line.device (0..15.0..15.0..255)' }),
  deviceId: z.string().min(1).optional(),
  man: z.string().optional(),
  mod: z.string().optional(),
  name: z.string().optional(),
  groupObjects: z.array(groupObjectSchema).default([]),
});

/** Configuration of a KNX network (an entry of a gateway's `adapters`). */
export const knxAdapterConfigSchema = z.object({
  type: z.literal('knx'),
  name: z.string().min(1).default('KNX'),
  /** KNXnet/IP tunnelling (unicast to an interface) or routing (multicast, KNX IP routers). */
  mode: z.enum(['tunnelling', 'routing']).default('tunnelling'),
  /** The KNXnet/IP server (`host:port`, port 3671 by default); the multicast group in routing. */
  gateway: z.string().min(1).default('127.0.0.1:3671'),
  /** Our individual address on the bus (the source of our telegrams). */
  physAddr: z.string().refine(isIndividualAddress, { message: 'an individual address area.line.device' }).default('15.15.250'),
  /**
   * Local IPv4 to bind and advertise. npm `knx` picks the first non-loopback interface otherwise;
   * absent and with a loopback gateway, 127.0.0.1 is used so the traffic stays on loopback.
   */
  localAddress: z.string().optional(),
  /** Native operations (reads, writes, probes) in flight at once. */
  maxConcurrency: z.number().int().min(1).default(8),
  backoff: backoffSchema,
  /** How long a read waits for the GroupValue_Response (then 461). */
  readTimeoutMs: z.number().int().min(10).default(2000),
  /** Liveness probe period; 0 disables probing (devices are then assumed present). */
  probeIntervalMs: z.number().int().min(0).default(30_000),
  /** How long a tunnel connect may take before the attempt counts as failed (the library retries on its own after 9 s). */
  connectTimeoutMs: z.number().int().min(100).max(8000).default(3000),
  /** KNXnet/IP connection-state check period (the standard says 60 s; tests use less). */
  heartbeatMs: z.number().int().min(100).default(60_000),
  /** After a Replace, read the object back from the device and answer 500 when it did not take the value. */
  verifyWrites: z.boolean().default(false),
  devices: z.array(deviceSchema).default([]),
});
/** A validated KNX network configuration. */
export type KnxAdapterConfig = z.output<typeof knxAdapterConfigSchema>;

/** One group object of a device. */
interface GroupObject {
  ga: string;
  /** Node name: `1-2-3` for `1/2/3` (a `/` cannot be in a DM node name). */
  node: string;
  dpt: Dpt;
  name?: string;
  read: boolean;
  write: boolean;
}

/** A configured device. */
interface KnxDevice {
  address: string;
  deviceId: string;
  man: string;
  mod: string;
  name?: string;
  objects: Map<string, GroupObject>;
  /** Reported attached (and not detached since). */
  alive: boolean;
}

/** What the bus last carried on a group address. */
interface CacheEntry {
  data: Buffer;
  src: string;
  at: Date;
}

const G = ['Get'] as const;
const nodeOf = (ga: string): string => ga.replace(/\//g, '-');

/** Parses `host[:port]`; 400 on nonsense. */
function parseGateway(s: string): { host: string; port: number } {
  const m = /^([^\s:]+)(?::(\d{1,5}))?$/.exec(s.trim());
  const port = m?.[2] === undefined ? 3671 : Number(m[2]);
  if (!m || port < 1 || port > 65535) throw new DmStatusError(400, 'KNX_BAD_SETTING', `GatewayAddr must be host[:port], not ${JSON.stringify(s)}`);
  return { host: m[1]!, port };
}

/** Parses the association parameter `GroupObjects`: `1/2/3:DPT1.001:rw,1/2/4:DPT9.001:r`. */
export function parseGroupObjects(text: string): z.input<typeof groupObjectSchema>[] {
  const out: z.input<typeof groupObjectSchema>[] = [];
  for (const part of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const [ga, dpt, flags = 'rw', ...rest] = part.split(':').map((s) => s.trim());
    if (!ga || !isGroupAddress(ga) || !dpt || rest.length || !/^(r|w|rw|wr)$/.test(flags)) {
      throw new DmStatusError(400, 'KNX_BAD_PARAM', `GroupObjects entry ${JSON.stringify(part)} is not <main/middle/sub>:<DPT>[:r|w|rw]`);
    }
    parseDpt(dpt); // 400 KNX_BAD_DPT
    out.push({ ga, dpt, read: flags.includes('r'), write: flags.includes('w') });
  }
  return out;
}

/** The KNX adapter. */
export class KnxAdapter implements Adapter {
  readonly protocol = 'KNX';
  readonly name: string;
  private readonly devices = new Map<string, KnxDevice>();
  private readonly plugins = new Map<string, TreePlugin>();
  private readonly cache = new Map<string, CacheEntry>();
  private readonly limiter: Limiter;
  private events: AdapterEvents | undefined;
  private link: Link | undefined;
  private tunnel: KnxTunnel | undefined;
  private probeTimer: NodeJS.Timeout | undefined;
  private probing: Promise<void> | undefined;
  private mode: 'tunnelling' | 'routing';
  private gatewayAddr: string;
  private physAddr: string;
  private localAddress: string | undefined;
  private readTimeoutMs: number;
  private probeIntervalMs: number;
  /** Group telegrams this adapter sent (writes and reads), for tests and benchmarks. */
  readonly sent = { reads: 0, writes: 0, multicasts: 0 };

  readonly settings: readonly AdapterParam[] = [
    { name: 'Mode', format: 'chr', description: 'tunnelling or routing (notes §1.8)' },
    { name: 'GatewayAddr', format: 'chr', description: 'KNXnet/IP server ip:port (default port 3671), or the routing multicast group' },
    { name: 'IndividualAddress', format: 'chr', description: "the gateway's own individual address on the bus (source of its telegrams)" },
    { name: 'LocalAddress', format: 'chr', description: 'local IPv4 the tunnel binds and advertises' },
    { name: 'ReadTimeoutMs', format: 'int', description: 'milliseconds a read waits for the GroupValue_Response' },
    { name: 'ProbeIntervalMs', format: 'int', description: 'milliseconds between liveness probes (0: off)' },
  ];

  readonly associationParams: readonly AdapterParam[] = [
    { name: 'IndividualAddress', format: 'chr', required: true, description: 'the device individual address, area.line.device (e.g. 1.1.5)' },
    { name: 'GroupObjects', format: 'chr', description: 'its group objects: <main/middle/sub>:<DPT>[:r|w|rw], comma-separated (e.g. 1/2/3:DPT1.001:rw,1/2/4:DPT9.001:r)' },
    { name: 'Name', format: 'chr', description: 'a name for the device' },
  ];

  readonly operations: readonly AdapterOperation[] = [
    {
      name: 'Probe',
      description: 'probes every configured device now; Data: <answered>/<devices>',
      run: async () => {
        const tunnel = this.tunnel;
        if (!tunnel?.usable) throw new DmStatusError(503, 'KNX_LINK_DOWN', `KNX link is ${this.linkState}`);
        await this.probeAll();
        const all = [...this.devices.values()];
        return { status: 200, data: `${all.filter((d) => d.alive).length}/${all.length}` };
      },
    },
  ];

  constructor(private readonly config: KnxAdapterConfig) {
    this.name = config.name;
    this.mode = config.mode;
    this.gatewayAddr = config.gateway;
    parseGateway(this.gatewayAddr);
    this.physAddr = config.physAddr;
    this.localAddress = config.localAddress;
    this.readTimeoutMs = config.readTimeoutMs;
    this.probeIntervalMs = config.probeIntervalMs;
    this.limiter = new Limiter(config.maxConcurrency);
    for (const d of config.devices) this.putDevice(d);
  }

  get linkState(): LinkState {
    return this.link?.state ?? 'stopped';
  }

  private putDevice(d: z.input<typeof deviceSchema>): KnxDevice {
    const objects = new Map<string, GroupObject>();
    for (const o of d.groupObjects ?? []) {
      objects.set(nodeOf(o.ga), { ga: o.ga, node: nodeOf(o.ga), dpt: parseDpt(o.dpt), name: o.name, read: o.read ?? true, write: o.write ?? true });
    }
    const prev = this.devices.get(d.address);
    const dev: KnxDevice = {
      address: d.address,
      deviceId: d.deviceId ?? prev?.deviceId ?? `urn:dev:knx:${d.address}`,
      man: d.man ?? prev?.man ?? 'KNX',
      mod: d.mod ?? prev?.mod ?? 'KNX device',
      name: d.name ?? prev?.name,
      objects,
      alive: prev?.alive ?? false,
    };
    this.devices.set(d.address, dev);
    this.plugins.delete(d.address);
    return dev;
  }

  private describe(d: KnxDevice): AdapterDevice {
    return { address: d.address, deviceId: d.deviceId, man: d.man, mod: d.mod };
  }

  private newLink(): Link {
    return new Link(
      {
        open: async () => {
          const { host, port } = parseGateway(this.gatewayAddr);
          const local = this.localAddress ?? (host.startsWith('127.') ? '127.0.0.1' : undefined);
          const tunnel = await KnxTunnel.open({
            mode: this.mode,
            host,
            port,
            physAddr: this.physAddr,
            localAddress: local,
            connectTimeoutMs: this.config.connectTimeoutMs,
            heartbeatMs: this.config.heartbeatMs,
            onTelegram: (t) => this.onTelegram(t),
            onLost: (why) => {
              if (this.tunnel === tunnel) this.link?.lost(why);
            },
          });
          this.tunnel = tunnel;
          this.scheduleProbes(0);
        },
        close: async () => {
          this.stopProbes();
          const t = this.tunnel;
          this.tunnel = undefined;
          await t?.close();
        },
      },
      this.config.backoff,
      (state, detail) => this.events?.link?.(state, detail),
    );
  }

  async start(events: AdapterEvents): Promise<void> {
    this.events = events;
    if (this.link) return;
    this.link = this.newLink();
    await this.link.start();
  }

  async stop(): Promise<void> {
    const link = this.link;
    this.link = undefined;
    this.stopProbes();
    await link?.stop();
    await this.probing?.catch(() => {});
    for (const d of this.devices.values()) d.alive = false;
    this.events = undefined;
  }

  /** Resolves once the link is connected (tests, demos). */
  async connected(ms = 10_000): Promise<void> {
    if (!this.link) throw new DmStatusError(503, 'KNX_LINK_DOWN', 'KNX adapter not started');
    await this.link.connected(ms);
  }

  /** Reconnections so far (link connects after the first). */
  get reconnects(): number {
    return Math.max(0, (this.link?.connects ?? 0) - 1);
  }

  // ---- liveness -------------------------------------------------------------------------------

  private scheduleProbes(delay: number): void {
    this.stopProbes();
    if (this.probeIntervalMs <= 0) {
      // No probing: every configured device counts as present once the link is up.
      for (const d of this.devices.values()) this.markAlive(d);
      return;
    }
    this.probeTimer = setTimeout(() => {
      this.probeTimer = undefined;
      this.probing = this.probeAll().finally(() => {
        this.probing = undefined;
        if (this.tunnel?.usable && !this.probeTimer) this.scheduleProbes(this.probeIntervalMs);
      });
    }, delay);
  }

  private stopProbes(): void {
    if (this.probeTimer) clearTimeout(this.probeTimer);
    this.probeTimer = undefined;
  }

  /** Probes every device (concurrently, under the cap). */
  private async probeAll(): Promise<void> {
    await Promise.all([...this.devices.values()].map((d) => this.probe(d).catch(() => false)));
  }

  /** Asks a device for a readable group object; true when it answered. A link failure decides nothing. */
  private async probe(d: KnxDevice): Promise<boolean> {
    const o = [...d.objects.values()].find((x) => x.read);
    if (!o) {
      // Nothing to ask: a device without a readable object is taken on trust.
      if (this.tunnel?.usable) this.markAlive(d);
      return true;
    }
    try {
      await this.readObject(d, o);
      return true;
    } catch (err) {
      if (err instanceof DmStatusError && err.status === 461 && this.devices.get(d.address) === d) this.markGone(d);
      throw err;
    }
  }

  private markAlive(d: KnxDevice): void {
    if (d.alive || this.devices.get(d.address) !== d) return;
    d.alive = true;
    this.events?.attached(this.describe(d));
  }

  private markGone(d: KnxDevice): void {
    if (!d.alive) return;
    d.alive = false;
    this.events?.detached(d.address);
  }

  /** Every group telegram seen feeds the last-value cache; a configured device that sends is alive. */
  private onTelegram(t: Telegram): void {
    if (t.data && (t.apci === 'GroupValue_Write' || t.apci === 'GroupValue_Response')) this.cache.set(t.dest, { data: Buffer.from(t.data), src: t.src, at: new Date() });
    const d = this.devices.get(t.src);
    if (d) this.markAlive(d);
  }

  // ---- native operations ----------------------------------------------------------------------

  private live(): KnxTunnel {
    const t = this.tunnel;
    if (!t?.usable) throw new DmStatusError(503, 'KNX_LINK_DOWN', `KNX link is ${this.linkState}${this.link?.lastError ? `: ${this.link.lastError}` : ''}`);
    return t;
  }

  /** GroupValue_Read answered by the device itself; the value in text form. */
  private readObject(d: KnxDevice, o: GroupObject): Promise<string> {
    return this.limiter.run(async () => {
      const t = this.live();
      this.sent.reads++;
      const r = await t.read(o.ga, this.readTimeoutMs, d.address);
      this.cache.set(o.ga, { data: Buffer.from(r.data), src: r.src, at: new Date() });
      this.markAlive(d);
      return decodeValue(o.dpt, r.data);
    });
  }

  /** GroupValue_Write of a text value (400 before anything is sent when the DPT cannot carry it). */
  private writeObject(ga: string, dpt: Dpt, text: string): Promise<void> {
    const enc = encodeValue(dpt, text);
    return this.limiter.run(async () => {
      const t = this.live();
      this.sent.writes++;
      await t.send(ga, enc.data, enc.bitlength);
      this.cache.set(ga, { data: enc.data, src: this.physAddr, at: new Date() });
    });
  }

  // ---- the device subtree ---------------------------------------------------------------------

  device(address: string): TreePlugin | undefined {
    const d = this.devices.get(address);
    if (!d) return undefined;
    let p = this.plugins.get(address);
    if (!p) {
      p = deviceSubtree(() => ({ deviceId: d.deviceId, man: d.man, mod: d.mod }), 'KNX', this.protocolPlugin(d));
      this.plugins.set(address, p);
    }
    return p;
  }

  private protocolPlugin(d: KnxDevice): TreePlugin {
    const chr = (data: string): PluginNodeView => ({ format: 'chr', data, access: G });
    const split = (path: string): string[] => (path === '' ? [] : path.split('/'));
    const objectOf = (node: string | undefined): GroupObject | undefined => (node === undefined ? undefined : d.objects.get(node));
    const OBJECT_LEAVES = ['Value', 'Type', 'Name', 'Flags', 'LastValue', 'LastUpdate', 'LastSource'];
    const lastValue = (o: GroupObject): string => {
      const c = this.cache.get(o.ga);
      if (!c) return '';
      try {
        return decodeValue(o.dpt, c.data);
      } catch {
        return `hex:${c.data.toString('hex')}`; // someone sent data this DPT cannot carry: show it raw
      }
    };
    /** A node; `read` false gives its metadata without a GroupValue_Read (TreePlugin.describe). */
    const view = (path: string, read: boolean): PluginNodeView | undefined | Promise<PluginNodeView> => {
      const p = split(path);
      if (p.length === 0) return { format: 'node', access: G };
      if (p.length === 1) {
        if (p[0] === 'IndividualAddress') return chr(d.address);
        if (p[0] === 'Name') return d.name === undefined ? undefined : chr(d.name);
        if (p[0] === 'GroupObjects') return { format: 'node', access: G };
        return undefined;
      }
      if (p[0] !== 'GroupObjects') return undefined;
      const o = objectOf(p[1]);
      if (!o || p.length > 3) return undefined;
      if (p.length === 2) return { format: 'node', access: G };
      switch (p[2]) {
        case 'Value': {
          const access = [...(o.read ? ['Get' as const] : []), ...(o.write ? ['Replace' as const] : [])];
          // Without the read flag nobody answers a read: no telegram, the tree answers Get with 405.
          // For a write's checks (describe) no telegram either: a Replace is one GroupValue_Write.
          if (!o.read || !read) return { format: 'chr', data: '', access, type: o.dpt.id };
          return this.readObject(d, o).then((data) => ({ format: 'chr', data, access, type: o.dpt.id }) as PluginNodeView);
        }
        case 'Type':
          return chr(o.dpt.id);
        case 'Name':
          return o.name === undefined ? undefined : chr(o.name);
        case 'Flags':
          return chr(`${o.read ? 'r' : ''}${o.write ? 'w' : ''}`);
        case 'LastValue':
          return chr(lastValue(o));
        case 'LastUpdate':
          return chr(this.cache.get(o.ga)?.at.toISOString() ?? '');
        case 'LastSource':
          return chr(this.cache.get(o.ga)?.src ?? '');
        default:
          return undefined;
      }
    };
    return {
      get: (path) => view(path, true),
      describe: (path) => view(path, false),
      children: (path) => {
        const p = split(path);
        if (p.length === 0) return ['IndividualAddress', ...(d.name !== undefined ? ['Name'] : []), 'GroupObjects'];
        if (p.length === 1 && p[0] === 'GroupObjects') return [...d.objects.keys()];
        const o = p[0] === 'GroupObjects' && p.length === 2 ? objectOf(p[1]) : undefined;
        return o ? OBJECT_LEAVES.filter((k) => k !== 'Name' || o.name !== undefined) : [];
      },
      replace: async (path, value: PluginWrite) => {
        const p = split(path);
        const o = p[0] === 'GroupObjects' && p.length === 3 ? objectOf(p[1]) : undefined;
        if (!o || p[2] !== 'Value') throw new DmStatusError(405, 'KNX_READ_ONLY', `KNX/${path} cannot be replaced`);
        if (!o.write) throw new DmStatusError(405, 'KNX_READ_ONLY', `group object ${o.ga} of ${d.address} has no write flag`);
        const text = value.data ?? '';
        await this.writeObject(o.ga, o.dpt, text);
        if (this.config.verifyWrites && o.read) {
          const want = decodeValue(o.dpt, encodeValue(o.dpt, text).data);
          const got = await this.readObject(d, o);
          if (got !== want) throw new DmStatusError(500, 'KNX_WRITE_IGNORED', `${d.address} did not take ${o.ga} = ${want} (it reads ${got})`);
        }
        return { status: 200 };
      },
    };
  }

  // ---- multicast (fanout) ---------------------------------------------------------------------

  /**
   * A Replace of `KNX/GroupObjects/<ga>/Value` to several devices listening on that group
   * address is one GroupValue_Write: KNX group communication is multicast by nature. The members
   * with a writable object of the same DPT are covered; a member currently detached gets 461 (a
   * group write is unacknowledged, so its delivery cannot be known), the others 200.
   */
  async multicast(req: MulticastRequest): Promise<MulticastResult> {
    const out: MulticastResult = new Map();
    const m = /^KNX\/GroupObjects\/([^/]+)\/Value$/.exec(req.path);
    if (req.kind !== 'Replace' || !m) return out;
    const members = req.addresses
      .map((a) => this.devices.get(a))
      .map((d) => ({ d, o: d?.objects.get(m[1]!) }))
      .filter((x): x is { d: KnxDevice; o: GroupObject } => !!x.d && !!x.o && x.o.write);
    if (members.length < 2) return out;
    const { ga, dpt } = members[0]!.o;
    const same = members.filter((x) => x.o.dpt.id === dpt.id);
    try {
      encodeValue(dpt, req.data ?? '');
    } catch {
      return out; // every member's own leg answers the 400
    }
    try {
      await this.writeObject(ga, dpt, req.data ?? '');
      this.sent.multicasts++;
    } catch (err) {
      const status = err instanceof DmStatusError && err.status !== undefined ? err.status : 500;
      for (const { d } of same) out.set(d.address, { status });
      return out;
    }
    for (const { d } of same) out.set(d.address, { status: d.alive ? 200 : 461 });
    return out;
  }

  // ---- settings -------------------------------------------------------------------------------

  getSettings(): Record<string, string> {
    return {
      Mode: this.mode,
      GatewayAddr: this.gatewayAddr,
      IndividualAddress: this.physAddr,
      LocalAddress: this.localAddress ?? '',
      ReadTimeoutMs: String(this.readTimeoutMs),
      ProbeIntervalMs: String(this.probeIntervalMs),
    };
  }

  async configure(values: Record<string, string>): Promise<void> {
    const next = { ...this.getSettings() };
    for (const [k, raw] of Object.entries(values)) {
      const v = raw.trim();
      switch (k) {
        case 'Mode':
          if (v !== 'tunnelling' && v !== 'routing') throw new DmStatusError(400, 'KNX_BAD_SETTING', `Mode is tunnelling or routing, not ${JSON.stringify(raw)}`);
          break;
        case 'GatewayAddr':
          parseGateway(v);
          break;
        case 'IndividualAddress':
          if (!isIndividualAddress(v)) throw new DmStatusError(400, 'KNX_BAD_SETTING', `IndividualAddress must be area.line.device, not ${JSON.stringify(raw)}`);
          break;
        case 'LocalAddress':
          if (v !== '' && !/^\d{1,3}(\.\d{1,3}){3}$/.test(v)) throw new DmStatusError(400, 'KNX_BAD_SETTING', `LocalAddress must be an IPv4 address or empty, not ${JSON.stringify(raw)}`);
          break;
        case 'ReadTimeoutMs':
        case 'ProbeIntervalMs': {
          const n = Number(v);
          if (!/^\d+$/.test(v) || (k === 'ReadTimeoutMs' && n < 10)) throw new DmStatusError(400, 'KNX_BAD_SETTING', `${k} must be a whole number of milliseconds${k === 'ReadTimeoutMs' ? ' (>= 10)' : ''}`);
          break;
        }
        default:
          throw new DmStatusError(404, 'KNX_NO_SETTING', `no setting ${k}`);
      }
      next[k] = v;
    }
    const relink = ['Mode', 'GatewayAddr', 'IndividualAddress', 'LocalAddress'].some((k) => next[k] !== this.getSettings()[k]);
    const reprobe = next.ProbeIntervalMs !== String(this.probeIntervalMs);
    this.mode = next.Mode as 'tunnelling' | 'routing';
    this.gatewayAddr = next.GatewayAddr!;
    this.physAddr = next.IndividualAddress!;
    this.localAddress = next.LocalAddress || undefined;
    this.readTimeoutMs = Number(next.ReadTimeoutMs);
    this.probeIntervalMs = Number(next.ProbeIntervalMs);
    if (relink && this.link) {
      // A new gateway, address or mode is a new link (notes §1.8: a change reconnects).
      await this.link.stop();
      this.link = this.newLink();
      await this.link.start();
    } else if (reprobe && this.tunnel?.usable) this.scheduleProbes(this.probeIntervalMs);
  }

  // ---- associations (AMode-006) ---------------------------------------------------------------

  /**
   * Adds the device the server configured and probes it: resolves (and reports it attached) when it
   * answers; otherwise the previous configuration is restored and the probe's status thrown (461 no
   * answer, 503 link down).
   */
  async associate(params: Record<string, string>): Promise<AdapterDevice> {
    const address = (params['IndividualAddress'] ?? '').trim();
    if (!address) throw new DmStatusError(412, 'KNX_NO_ADDRESS', 'IndividualAddress is required');
    if (!isIndividualAddress(address)) throw new DmStatusError(400, 'KNX_BAD_PARAM', `IndividualAddress must be area.line.device, not ${JSON.stringify(address)}`);
    const groupObjects = parseGroupObjects(params['GroupObjects'] ?? '');
    const name = params['Name']?.trim() || undefined;
    this.live();
    const prev = this.devices.get(address);
    const d = this.putDevice({ address, name, groupObjects, deviceId: prev?.deviceId, man: prev?.man, mod: prev?.mod });
    try {
      await this.probe(d);
    } catch (err) {
      if (prev) this.devices.set(address, prev);
      else this.devices.delete(address);
      this.plugins.delete(address);
      throw err;
    }
    d.alive = true;
    this.events?.attached(this.describe(d));
    return this.describe(d);
  }

  /** Forgets the device: no more probes, its subtree is gone, it is reported detached. */
  async dissociate(address: string): Promise<void> {
    if (!this.devices.delete(address)) throw new DmStatusError(404, 'KNX_UNKNOWN_DEVICE', `no KNX device ${address}`);
    this.plugins.delete(address);
    this.events?.detached(address);
  }

  /** The devices configured now (for tests and tools). */
  list(): (AdapterDevice & { alive: boolean })[] {
    return [...this.devices.values()].map((d) => ({ ...this.describe(d), alive: d.alive }));
  }
}
