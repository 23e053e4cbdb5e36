/**
 * A simulated adaptation network ("Sim"): non-DM devices (lights, sensors, thermostats) that live
 * in memory and answer native reads, writes and commands, with injectable behaviours (latency,
 * unreachable devices, failing operations, leaving and joining). It is a first-class adapter: demos
 * and benchmarks run thousands of devices on it, and tests drive faults through `behave`.
 *
 * Each device's DM subtree (paths relative to `./GwMO/Devices/<key>`):
 * - `DevInfo/DevId|Man|Mod`, `DevDetail/FwV|HwV` (identity, read-only);
 * - `Point/Value`: a light's `on`/`off` (Replace switches it), a sensor's reading, a thermostat's
 *   measured temperature; thermostats also have `Point/Setpoint` (Replace);
 * - `Diag/Run` (Exec: a self-test) and `Diag/Result`, `Diag/Runs`;
 * - `FwUpdate/PkgURL` (Replace), `FwUpdate/DownloadAndUpdate` (Exec: downloads PkgURL over HTTP, the
 *   way a radio's OTA would, and records its SHA-256), `FwUpdate/State` (FUMO-style: 10 idle,
 *   20 download failed, 30 downloading, 100 updated), `FwUpdate/LastHash`.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { tlsFetch } from '../src/transport/tls.ts';
import { DmStatusError } from '../src/errors.ts';
import { Limiter } from '../src/limit.ts';
import type { ExecArgs, ExecResult, PluginNodeView, PluginWrite, TreePlugin } from '../src/tree/tree.ts';
import type { Adapter, AdapterDevice, AdapterEvents, AdapterOperation, AdapterParam, LinkState, MulticastRequest, MulticastResult } from './contract.ts';

/** Kinds of simulated device. */
export const SIM_KINDS = ['light', 'sensor', 'thermostat'] as const;
/** A kind of simulated device. */
export type SimKind = (typeof SIM_KINDS)[number];

/** Configuration of a simulated network (an entry of a gateway's `adapters`). */
export const simAdapterConfigSchema = z.object({
  type: z.literal('sim'),
  /** The name associations refer to in `protocol`. */
  name: z.string().min(1).default('sim'),
  /**
   * TLS of the simulated devices' https downloads: the CA they trust and the client certificate they
   * present (a gateway whose listener requires one). Their gateway fills in its own when unset.
   */
  ca: z.string().min(1).optional(),
  cert: z.string().min(1).optional(),
  key: z.string().min(1).optional(),
  devices: z
    .array(
      z.object({
        address: z.string().min(1),
        kind: z.enum(SIM_KINDS).default('sensor'),
        deviceId: z.string().min(1).optional(),
        fwV: z.string().default('1.0.0'),
        /** A PIN the server must give to associate it (`./GwMO/Adaptation/<name>/Associations`). */
        pin: z.string().min(1).optional(),
        /** On the network but not admitted: it joins only when the server associates it. */
        pending: z.boolean().default(false),
      }),
    )
    .default([]),
  /** Many identical devices at once (addresses `<prefix><n>`), for demos and benchmarks. */
  generate: z.object({ count: z.number().int().min(0), prefix: z.string().default('sim-'), kind: z.enum(SIM_KINDS).default('sensor') }).optional(),
  /** Milliseconds every native operation takes (a radio round trip). */
  latencyMs: z.number().min(0).default(0),
  /** Native operations in flight at once on this network. */
  maxConcurrency: z.number().int().min(1).default(64),
  /** Lights answer a broadcast "Point/Value" write as one native operation (a radio multicast). */
  multicast: z.boolean().default(false),
});
/** A validated simulated network configuration. */
export type SimAdapterConfig = z.output<typeof simAdapterConfigSchema>;

/** Behaviour injected into one device (or, with `*`, all of them). */
export interface SimBehaviour {
  /** Extra milliseconds per operation. */
  latencyMs?: number;
  /** The device does not answer: operations end with GwMO 461 (unreachable). */
  unreachable?: boolean;
  /** Operations fail with this DM status. */
  failWith?: number;
}

interface SimDeviceState {
  address: string;
  deviceId: string;
  kind: SimKind;
  fwV: string;
  on: boolean;
  setpoint: number;
  reads: number;
  diagRuns: number;
  diagResult: string;
  pkgUrl: string;
  fwState: number;
  lastHash: string;
  present: boolean;
  pin: string | undefined;
}

const GET = ['Get'] as const;
const GET_REPLACE = ['Get', 'Replace'] as const;
const EXEC = ['Exec'] as const;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const unreachable = (s: SimDeviceState): DmStatusError => new DmStatusError(461, 'SIM_UNREACHABLE', `simulated device ${s.address} does not answer`);

/** Interior nodes of a simulated device and their children. */
function childrenOf(s: SimDeviceState, path: string): string[] | undefined {
  switch (path) {
    case '':
      return ['DevInfo', 'DevDetail', 'Point', 'Diag', 'FwUpdate'];
    case 'DevInfo':
      return ['DevId', 'Man', 'Mod'];
    case 'DevDetail':
      return ['FwV', 'HwV'];
    case 'Point':
      return s.kind === 'thermostat' ? ['Value', 'Setpoint'] : ['Value'];
    case 'Diag':
      return ['Run', 'Result', 'Runs'];
    case 'FwUpdate':
      return ['PkgURL', 'DownloadAndUpdate', 'State', 'LastHash'];
    default:
      return undefined;
  }
}

/** The simulated network. */
export class SimAdapter implements Adapter {
  readonly protocol = 'Sim';
  readonly name: string;
  private readonly devices = new Map<string, SimDeviceState>();
  private readonly behaviours = new Map<string, SimBehaviour>();
  private readonly limiter: Limiter;
  private readonly plugins = new Map<string, TreePlugin>();
  private events: AdapterEvents | undefined;
  /** Native operations performed (reads, writes, commands), for tests and benchmarks. */
  nativeOps = 0;
  /** Native multicasts performed. */
  multicasts = 0;
  private link: LinkState = 'stopped';
  private latencyMs: number;

  readonly settings: readonly AdapterParam[] = [
    { name: 'LatencyMs', format: 'int', description: 'milliseconds every native operation takes' },
  ];
  readonly associationParams: readonly AdapterParam[] = [
    { name: 'Address', format: 'chr', required: true, description: 'the device address on the simulated network' },
    { name: 'Kind', format: 'chr', description: 'light, sensor or thermostat (for a device the network does not know yet)' },
    { name: 'PIN', format: 'chr', secret: true, description: 'the PIN printed on the device, when it has one' },
  ];
  readonly operations: readonly AdapterOperation[] = [
    {
      name: 'Announce',
      description: 'every present device announces itself again (a discovery sweep)',
      run: async () => {
        let n = 0;
        for (const s of this.devices.values()) {
          if (!s.present) continue;
          this.events?.attached(this.describe(s));
          n++;
        }
        return { status: 200, data: String(n) };
      },
    },
  ];

  constructor(private readonly config: SimAdapterConfig) {
    this.name = config.name;
    this.latencyMs = config.latencyMs;
    this.limiter = new Limiter(config.maxConcurrency);
    for (const d of config.devices) {
      const s = this.addDevice(d.address, d.kind, d.deviceId, d.fwV);
      s.pin = d.pin;
      s.present = !d.pending;
    }
    const g = config.generate;
    if (g) for (let i = 1; i <= g.count; i++) this.addDevice(`${g.prefix}${i}`, g.kind);
  }

  private addDevice(address: string, kind: SimKind, deviceId?: string, fwV = '1.0.0'): SimDeviceState {
    const s: SimDeviceState = {
      address,
      deviceId: deviceId ?? `urn:dev:sim:${address}`,
      kind,
      fwV,
      on: false,
      setpoint: 21,
      reads: 0,
      diagRuns: 0,
      diagResult: '',
      pkgUrl: '',
      fwState: 10,
      lastHash: '',
      present: true,
      pin: undefined,
    };
    this.devices.set(address, s);
    return s;
  }

  get linkState(): LinkState {
    return this.link;
  }

  async start(events: AdapterEvents): Promise<void> {
    this.events = events;
    this.link = 'connected';
    events.link?.('connected');
    for (const s of this.devices.values()) if (s.present) events.attached(this.describe(s));
  }

  async stop(): Promise<void> {
    this.link = 'stopped';
    this.events?.link?.('stopped');
    this.events = undefined;
  }

  getSettings(): Record<string, string> {
    return { LatencyMs: String(this.latencyMs) };
  }

  async configure(values: Record<string, string>): Promise<void> {
    for (const [k, v] of Object.entries(values)) {
      if (k !== 'LatencyMs') throw new DmStatusError(404, 'SIM_NO_SETTING', `no setting ${k}`);
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new DmStatusError(400, 'SIM_BAD_VALUE', `LatencyMs must be a non-negative integer, not ${JSON.stringify(v)}`);
      this.latencyMs = n;
    }
  }

  /** Admits a device the server configured (AMode-006): the PIN must match when the device has one. */
  async associate(params: Record<string, string>): Promise<AdapterDevice> {
    const address = params['Address'];
    if (!address) throw new DmStatusError(412, 'SIM_NO_ADDRESS', 'Address is required');
    const kind = (params['Kind'] ?? 'sensor') as SimKind;
    if (!SIM_KINDS.includes(kind)) throw new DmStatusError(400, 'SIM_BAD_VALUE', `Kind must be one of ${SIM_KINDS.join(', ')}`);
    const s = this.devices.get(address) ?? this.addDevice(address, kind);
    if (s.pin !== undefined && params['PIN'] !== s.pin) throw new DmStatusError(401, 'SIM_BAD_PIN', `the PIN for ${address} does not match`);
    return this.join(address);
  }

  async dissociate(address: string): Promise<void> {
    const s = this.devices.get(address);
    if (!s) throw new DmStatusError(404, 'SIM_UNKNOWN', `no device ${address}`);
    this.leave(address);
  }

  /** Lights' Point/Value written to many devices as one simulated radio multicast. */
  async multicast(req: MulticastRequest): Promise<MulticastResult> {
    const out: MulticastResult = new Map();
    if (!this.config.multicast || req.kind !== 'Replace' || req.path !== 'Point/Value') return out;
    const v = (req.data ?? '').trim();
    if (v !== 'on' && v !== 'off') return out; // per-device legs report the 400
    const targets = req.addresses.map((a) => this.devices.get(a)).filter((s): s is SimDeviceState => s?.kind === 'light');
    if (targets.length < 2) return out;
    await this.limiter.run(async () => {
      if (this.latencyMs > 0) await sleep(this.latencyMs);
      this.multicasts++;
      this.nativeOps++;
    });
    for (const s of targets) {
      const b = this.behaviours.get(s.address) ?? this.behaviours.get('*');
      // A multicast is unacknowledged: an absent device simply misses it, which the status says.
      if (!s.present || b?.unreachable) out.set(s.address, { status: 461 });
      else {
        s.on = v === 'on';
        out.set(s.address, { status: 200 });
      }
    }
    return out;
  }

  /** The devices on the network (present or not). */
  list(): AdapterDevice[] {
    return [...this.devices.values()].map((s) => this.describe(s));
  }

  /** A device joins the network (a new one, or one that left comes back). */
  join(address: string, kind: SimKind = 'sensor', deviceId?: string): AdapterDevice {
    const s = this.devices.get(address) ?? this.addDevice(address, kind, deviceId);
    s.present = true;
    const d = this.describe(s);
    this.events?.attached(d);
    return d;
  }

  /** A device leaves the network. */
  leave(address: string): void {
    const s = this.devices.get(address);
    if (!s) return;
    s.present = false;
    this.events?.detached(address);
  }

  /** Injects a behaviour into one device, or into every device with `*`; `undefined` clears it. */
  behave(address: string, b: SimBehaviour | undefined): void {
    if (b) this.behaviours.set(address, b);
    else this.behaviours.delete(address);
  }

  /** The simulated state of a device (what a technician would see on the device itself). */
  inspect(address: string): Readonly<SimDeviceState> | undefined {
    return this.devices.get(address);
  }

  device(address: string): TreePlugin | undefined {
    const s = this.devices.get(address);
    if (!s) return undefined;
    let p = this.plugins.get(address);
    if (!p) this.plugins.set(address, (p = this.pluginFor(s)));
    return p;
  }

  private describe(s: SimDeviceState): AdapterDevice {
    return { address: s.address, deviceId: s.deviceId, man: 'gwmo-sim', mod: `sim-${s.kind}` };
  }

  /** Runs one native operation: behaviours, latency and the network's concurrency cap apply. */
  private native<T>(s: SimDeviceState, op: () => T | Promise<T>): Promise<T> {
    return this.limiter.run(async () => {
      const b = this.behaviours.get(s.address) ?? this.behaviours.get('*');
      const delay = this.latencyMs + (b?.latencyMs ?? 0);
      if (delay > 0) await sleep(delay);
      if (!s.present || b?.unreachable) throw unreachable(s);
      if (b?.failWith) throw new DmStatusError(b.failWith, 'SIM_FAILED', `simulated device ${s.address} failed the operation`);
      this.nativeOps++;
      return op();
    });
  }

  /** The value of a leaf (a native read for live values). */
  private leaf(s: SimDeviceState, path: string): PluginNodeView | Promise<PluginNodeView> | undefined {
    const chr = (data: string, access: readonly ('Get' | 'Replace')[] = GET): PluginNodeView => ({ format: 'chr', data, access });
    switch (path) {
      case 'DevInfo/DevId':
        return chr(s.deviceId);
      case 'DevInfo/Man':
        return chr('gwmo-sim');
      case 'DevInfo/Mod':
        return chr(`sim-${s.kind}`);
      case 'DevDetail/FwV':
        return chr(s.fwV);
      case 'DevDetail/HwV':
        return chr('sim-1');
      case 'Point/Value':
        return this.native(s, () => {
          s.reads++;
          if (s.kind === 'light') return chr(s.on ? 'on' : 'off', GET_REPLACE);
          // A reading that moves a little with each read, as a real sensor's would.
          const base = s.kind === 'thermostat' ? s.setpoint - 0.5 : 20;
          return { format: 'float', data: (base + ((s.reads * 7) % 10) / 10).toFixed(1), access: GET } as PluginNodeView;
        });
      case 'Point/Setpoint':
        return s.kind === 'thermostat' ? { format: 'float', data: s.setpoint.toFixed(1), access: GET_REPLACE } : undefined;
      case 'Diag/Run':
        return { format: 'null', access: EXEC };
      case 'Diag/Result':
        return chr(s.diagResult);
      case 'Diag/Runs':
        return { format: 'int', data: String(s.diagRuns), access: GET };
      case 'FwUpdate/PkgURL':
        return chr(s.pkgUrl, GET_REPLACE);
      case 'FwUpdate/DownloadAndUpdate':
        return { format: 'null', access: EXEC };
      case 'FwUpdate/State':
        return { format: 'int', data: String(s.fwState), access: GET };
      case 'FwUpdate/LastHash':
        return chr(s.lastHash);
      default:
        return undefined;
    }
  }

  private pluginFor(s: SimDeviceState): TreePlugin {
    return {
      get: (path) => {
        const kids = childrenOf(s, path);
        if (kids) return { format: 'node', access: GET };
        return this.leaf(s, path);
      },
      // Metadata without a native read, so a write or an Exec costs one radio operation, not two.
      describe: (path) => {
        if (childrenOf(s, path)) return { format: 'node', access: GET };
        if (path === 'Point/Value') return s.kind === 'light' ? { format: 'chr', access: GET_REPLACE } : { format: 'float', access: GET };
        return this.leaf(s, path);
      },
      children: (path) => childrenOf(s, path) ?? [],
      replace: (path, value: PluginWrite) =>
        this.native(s, () => {
          const v = (value.data ?? '').trim();
          if (path === 'Point/Value' && s.kind === 'light') {
            if (v !== 'on' && v !== 'off') throw new DmStatusError(400, 'SIM_BAD_VALUE', `a light is "on" or "off", not ${JSON.stringify(v)}`);
            s.on = v === 'on';
          } else if (path === 'Point/Setpoint' && s.kind === 'thermostat') {
            const n = Number(v);
            if (!Number.isFinite(n) || n < 5 || n > 35) throw new DmStatusError(400, 'SIM_BAD_VALUE', `setpoint out of range: ${v}`);
            s.setpoint = n;
          } else if (path === 'FwUpdate/PkgURL') {
            if (!/^https?:\/\//.test(v)) throw new DmStatusError(400, 'SIM_BAD_VALUE', 'PkgURL must be an http(s) URL');
            s.pkgUrl = v;
          } else throw new DmStatusError(405, 'SIM_READ_ONLY', `${path} cannot be written`);
          return { status: 200 };
        }),
      exec: (path, _args: ExecArgs): Promise<ExecResult> =>
        this.native(s, async () => {
          if (path === 'Diag/Run') {
            s.diagRuns++;
            s.diagResult = `OK ${s.kind} self-test ${s.diagRuns}`;
            return { status: 200, data: s.diagResult };
          }
          if (path === 'FwUpdate/DownloadAndUpdate') return this.update(s);
          throw new DmStatusError(405, 'SIM_NOT_EXECUTABLE', `${path} cannot be executed`);
        }),
    };
  }

  /** A firmware download the way a device would do it: fetch the package, check it arrived, record its hash. */
  private async update(s: SimDeviceState): Promise<ExecResult> {
    if (!s.pkgUrl) throw new DmStatusError(412, 'SIM_NO_PACKAGE', 'FwUpdate/PkgURL is not set');
    s.fwState = 30;
    try {
      const { ca, cert, key } = this.config;
      const res = await tlsFetch(s.pkgUrl, { signal: AbortSignal.timeout(30_000) }, { ...(ca ? { ca } : {}), ...(cert && key ? { cert, key } : {}) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const bytes = new Uint8Array(await res.arrayBuffer());
      s.lastHash = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
      s.fwState = 100;
      return { status: 200, data: s.lastHash };
    } catch (err) {
      s.fwState = 20;
      throw new DmStatusError(500, 'SIM_DOWNLOAD_FAILED', `download of ${s.pkgUrl} failed: ${String((err as Error).message ?? err)}`);
    }
  }
}
