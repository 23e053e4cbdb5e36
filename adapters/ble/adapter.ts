/**
 * The Bluetooth LE adapter (GwMO AMode, notes §1.8 and §2.3): one radio, driven through noble
 * (`@stoprocent/noble`). It scans for advertising peripherals, adopts those the `Filter` names (the
 * rest wait for a server-configured association, AMode-006), connects on demand with a cap on
 * simultaneous links (`maxConcurrency`: BLE controllers and proxies hold only a few), disconnects
 * idle links, and reports a peripheral that stopped advertising and cannot be connected as detached.
 *
 * Each adopted peripheral is a DM subtree (paths below `./GwMO/Devices/<key>`, notes §1.8 "BLE"):
 * `BLE/Address|RSSI|LocalName|Connected`, `BLE/Services/<uuid>/Characteristics/<uuid>/Value`
 * (Get = GATT read, Replace = GATT write), `.../Name`, `.../Properties`, and for characteristics
 * that notify `.../Notify` (Replace true/false subscribes), `.../LastValue`, `.../LastUpdate`.
 * DevInfo/DevDetail come from the Device Information service when the peripheral has one.
 *
 * The radio is noble over its native HCI (or D-Bus) bindings in production, or over injected
 * bindings: the simulator (`bindings: sim`, adapters/ble/sim.ts) or any bindings object a caller
 * passes. Everything above the bindings is noble's own code.
 */
import { z } from 'zod';
import { DmStatusError } from '../../src/errors.ts';
import { Limiter } from '../../src/limit.ts';
import type { ExecResult, PluginNodeView, PluginWrite, TreePlugin } from '../../src/tree/tree.ts';
import type { Adapter, AdapterDevice, AdapterEvents, AdapterOperation, AdapterParam, LinkState } from '../contract.ts';
import { Link, backoffSchema } from '../link.ts';
import { deviceSubtree, type DeviceIdentity } from '../subtree.ts';
import { BYTES, CODEC_NAMES, SIG_CODECS, namedCodec, normalizeUuid, type ValueCodec } from './gatt.ts';
import { PAIRING_KINDS, nobleNative, nobleWith, type Noble, type NobleBindings, type NobleCharacteristic, type NoblePeripheral } from './noble.ts';
import { BleSimulator, bleSimConfigSchema } from './sim.ts';

/** Configuration of a BLE network (an entry of a gateway's `adapters`). */
export const bleAdapterConfigSchema = z.object({
  type: z.literal('ble'),
  name: z.string().min(1).default('BLE'),
  /** The radio: noble's native HCI bindings (a controller such as hci0), BlueZ over D-Bus, or the simulator. */
  bindings: z.enum(['hci', 'dbus', 'sim']).default('hci'),
  /** Options for noble's native bindings (for HCI: `{ deviceId: 0 }` selects hci0). */
  bindingOptions: z.record(z.string(), z.unknown()).default({}),
  /** The simulated world, with `bindings: sim`. */
  sim: bleSimConfigSchema,
  /** Background scan period (`ScanIntervalMs`); a scan window runs at the start of each. */
  scanIntervalMs: z.number().int().min(50).max(3_600_000).default(10_000),
  /** How long each background scan listens. */
  scanWindowMs: z.number().int().min(20).default(2_000),
  /** Which peripherals are adopted automatically (`Filter`): see `parseFilter`. '' adopts none. */
  filter: z.string().default(''),
  /** Simultaneous GATT links (and so native operations) on this radio. */
  maxConcurrency: z.number().int().min(1).max(32).default(3),
  /** An unused link is dropped after this long (0: right after each operation). */
  idleDisconnectMs: z.number().int().min(0).default(5_000),
  connectTimeoutMs: z.number().int().min(10).default(5_000),
  /** One GATT request (read, write, discovery, pairing) must answer within this. */
  opTimeoutMs: z.number().int().min(10).default(5_000),
  /** A peripheral not heard for this long is probed with a connection; failing that it is detached. Default 3 scan periods. */
  lostAfterMs: z.number().int().min(10).optional(),
  /** How long the radio may take to report poweredOn before the attempt counts as failed. */
  poweredOnTimeoutMs: z.number().int().min(10).default(5_000),
  /** Codecs for vendor characteristics, by UUID (e.g. a light's on/off as `bool`). */
  formats: z.record(z.string(), z.enum(CODEC_NAMES)).default({}),
  backoff: backoffSchema,
});
/** A validated BLE network configuration. */
export type BleAdapterConfig = z.output<typeof bleAdapterConfigSchema>;

/** Which peripherals a `Filter` adopts automatically. */
export interface BleFilter {
  any: boolean;
  services: string[];
  names: string[];
}

/**
 * Parses a `Filter`: alternatives separated by commas, semicolons or spaces; `service:<uuid>`
 * adopts peripherals advertising that service, `name:<prefix>` those whose local name starts so,
 * `*` every connectable one. '' adopts none (only server-configured associations join).
 */
export function parseFilter(text: string): BleFilter {
  const f: BleFilter = { any: false, services: [], names: [] };
  for (const term of text.split(/[,;\s]+/).filter(Boolean)) {
    const m = /^(service|name):(.+)$/i.exec(term);
    if (term === '*') f.any = true;
    else if (m && m[1]!.toLowerCase() === 'service') {
      const u = normalizeUuid(m[2]!);
      if (!u) throw new DmStatusError(400, 'BLE_BAD_FILTER', `Filter: ${JSON.stringify(m[2])} is not a UUID`);
      f.services.push(u);
    } else if (m) f.names.push(m[2]!);
    else throw new DmStatusError(400, 'BLE_BAD_FILTER', `Filter term ${JSON.stringify(term)}: use service:<uuid>, name:<prefix> or *`);
  }
  return f;
}

const MAC = /^([0-9a-f]{2}[:-]){5}[0-9a-f]{2}$/i;
/** A MAC address in the adapter's form (lowercase, colons), or undefined. */
export function normalizeMac(s: string | undefined): string | undefined {
  const t = (s ?? '').trim();
  return MAC.test(t) ? t.toLowerCase().replace(/-/g, ':') : undefined;
}

/** What the adapter knows of one peripheral it has heard or been told about. */
interface Known {
  address: string;
  id: string;
  peripheral: NoblePeripheral | undefined;
  localName: string | undefined;
  serviceUuids: string[];
  rssi: number | undefined;
  connectable: boolean;
  lastSeen: number;
  /** Managed by the gateway (Filter or association). */
  adopted: boolean;
  /** Reported attached (false once reported detached). */
  present: boolean;
  /** Dissociated by the server: not adopted by the Filter again until associated. */
  released: boolean;
  /** GATT layout learnt at the first connection: service → characteristic → properties. */
  gatt: Map<string, Map<string, { properties: string[]; name: string | null }>> | undefined;
  identity: { man?: string; mod?: string; fwV?: string; hwV?: string };
  identityTried: boolean;
  /** Notification state per `service/characteristic`. */
  subs: Map<string, Subscription>;
  plugin: TreePlugin | undefined;
}

/** Notification state of one characteristic. */
interface Subscription {
  active: boolean;
  lastValue?: Buffer;
  lastUpdate?: string;
  listener?: (data: Buffer, isNotification: boolean) => void;
}

/** One GATT link. */
interface Conn {
  known: Known;
  peripheral: NoblePeripheral;
  ready: Promise<void>;
  /** Operations holding the link (running or queued on it). */
  busy: number;
  /** Active notification subscriptions: a subscribed link stays up (not idle-dropped or evicted). */
  subs: number;
  closing: boolean;
  dead: boolean;
  chars: Map<string, NobleCharacteristic>;
  /** ATT is one request at a time per bearer: operations on a link run in order. */
  chain: Promise<unknown>;
  idleTimer: NodeJS.Timeout | undefined;
  lastUsed: number;
  onDisconnect: (reason: unknown) => void;
}

const GET = ['Get'] as const;
const nowIso = (): string => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
const linkDown = (): DmStatusError => new DmStatusError(503, 'BLE_LINK_DOWN', 'the BLE radio is not connected');

/**
 * Maps what noble or the peripheral reported to the DM status the server should see (contract:
 * 461 no answer, 404 unmapped, 405 not supported, 400 bad value, 401 pairing/authentication, 500 native).
 */
export function bleError(err: unknown, what: string): DmStatusError {
  if (err instanceof DmStatusError) return err;
  const e = err as { message?: string; attError?: number; smpReason?: number };
  const msg = `${what}: ${String(e?.message ?? err)}`;
  if (typeof e?.smpReason === 'number') return new DmStatusError(401, 'BLE_PAIRING_FAILED', msg);
  switch (e?.attError) {
    case undefined:
      break;
    case 0x02:
    case 0x03:
    case 0x06:
      return new DmStatusError(405, 'BLE_NOT_PERMITTED', msg);
    case 0x05:
    case 0x08:
    case 0x0f:
      return new DmStatusError(401, 'BLE_INSUFFICIENT_SECURITY', msg);
    case 0x07:
    case 0x0d:
    case 0x13:
      return new DmStatusError(400, 'BLE_BAD_VALUE', msg);
    case 0x0a:
      return new DmStatusError(404, 'BLE_NO_ATTRIBUTE', msg);
    default:
      return new DmStatusError(500, 'BLE_ATT_ERROR', msg);
  }
  if (/disconnect|cleanup|canceled|Connection Failed|not connected/i.test(msg)) return new DmStatusError(461, 'BLE_LINK_LOST', msg);
  return new DmStatusError(500, 'BLE_NATIVE', msg);
}

/** Extra wiring for tests and embedders: a shared simulated world, or other bindings. */
export interface BleAdapterOptions {
  /** The simulated world to use with `bindings: sim` (default: one built from `config.sim`). */
  simulator?: BleSimulator;
  /** Builds the bindings for each link attempt (overrides `config.bindings`). */
  bindings?: () => NobleBindings;
}

/** The Bluetooth LE adapter. */
export class BleAdapter implements Adapter {
  readonly protocol = 'BLE';
  readonly name: string;
  /** The simulated world behind the radio (with `bindings: sim`). */
  readonly simulator: BleSimulator | undefined;
  private readonly link: Link;
  private events: AdapterEvents | undefined;
  private noble: Noble | undefined;
  private readonly known = new Map<string, Known>();
  private readonly conns = new Map<string, Conn>();
  private waiters: (() => void)[] = [];
  /** One LE Create Connection at a time: controllers accept a single pending one. */
  private readonly connectLimiter = new Limiter(1);
  private readonly inflight = new Set<{ timer: NodeJS.Timeout; reject: (e: unknown) => void }>();
  private readonly sleepers = new Set<{ timer: NodeJS.Timeout; resolve: () => void }>();
  /** The radio scan shared by overlapping scan windows of the current link. */
  private scan: { refs: number; starting: Promise<void> | undefined } = { refs: 0, starting: undefined };
  private generation = 0;
  private abortOpen: ((e: Error) => void) | undefined;
  private sweeping = false;
  private stopping = false;
  private scanIntervalMs: number;
  private idleDisconnectMs: number;
  private filterText: string;
  private filter: BleFilter;
  /** The last warning noble emitted (it would otherwise print to the console). */
  lastWarning = '';

  readonly settings: readonly AdapterParam[] = [
    { name: 'ScanIntervalMs', format: 'int', description: 'period of the background scan (ms); a scan window opens at the start of each' },
    { name: 'Filter', format: 'chr', description: 'peripherals adopted automatically: service:<uuid>, name:<prefix> or *, comma-separated; empty adopts none' },
    { name: 'IdleDisconnectMs', format: 'int', description: 'an unused GATT link is dropped after this long (ms)' },
  ];
  readonly associationParams: readonly AdapterParam[] = [
    { name: 'Address', format: 'chr', required: true, description: 'the peripheral MAC address, aa:bb:cc:dd:ee:ff' },
    { name: 'Passkey', format: 'chr', secret: true, description: 'the 6-digit passkey for pairing (passkey entry), when the peripheral has one' },
    { name: 'PIN', format: 'chr', secret: true, description: 'alias of Passkey (6 digits)' },
    { name: 'Profile', format: 'chr', description: 'service UUID(s) the peripheral must expose, comma-separated' },
  ];
  readonly operations: readonly AdapterOperation[] = [
    {
      name: 'Scan',
      description: 'scans now (Item Data: window in ms, default the configured scan window) and lists what was heard',
      run: (data) => this.scanNow(data),
    },
  ];

  constructor(
    private readonly config: BleAdapterConfig,
    private readonly options: BleAdapterOptions = {},
  ) {
    this.name = config.name;
    this.scanIntervalMs = config.scanIntervalMs;
    this.idleDisconnectMs = config.idleDisconnectMs;
    this.filterText = config.filter;
    this.filter = parseFilter(config.filter);
    if (config.bindings === 'sim' && !options.bindings) this.simulator = options.simulator ?? new BleSimulator(config.sim);
    this.link = new Link({ open: () => this.open(), close: () => this.close() }, config.backoff, (state, detail) => this.events?.link?.(state, detail));
  }

  get linkState(): LinkState {
    return this.link.state;
  }

  /** Simultaneous GATT links now. */
  get connections(): number {
    return this.conns.size;
  }

  async start(events: AdapterEvents): Promise<void> {
    this.events = events;
    await this.link.start();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    try {
      this.abortOpen?.(new Error('stopped'));
      await this.link.stop();
    } finally {
      this.stopping = false;
    }
    for (const k of this.known.values()) k.present = false;
    this.events = undefined;
  }

  // ---- the radio link -------------------------------------------------------------------------

  private makeNoble(): Noble {
    if (this.options.bindings) return nobleWith(this.options.bindings());
    if (this.simulator) return nobleWith(this.simulator.createBindings());
    return nobleNative(this.config.bindings as 'hci' | 'dbus', this.config.bindingOptions);
  }

  private async open(): Promise<void> {
    const gen = ++this.generation;
    const noble = this.makeNoble();
    this.noble = noble;
    // noble prints warnings itself; the adapter keeps the last one for the link's Error instead.
    noble.removeAllListeners('warning');
    noble.on('warning', (m: string) => (this.lastWarning = String(m)));
    noble.on('discover', (p: NoblePeripheral) => this.onDiscover(p));
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => fail(new Error(`radio not powered on within ${this.config.poweredOnTimeoutMs} ms`)), this.config.poweredOnTimeoutMs);
      const done = (): void => {
        clearTimeout(t);
        noble.removeListener('stateChange', onState);
        this.abortOpen = undefined;
      };
      const fail = (e: Error): void => {
        done();
        reject(e);
      };
      const onState = (s: string): void => {
        if (s === 'poweredOn') {
          done();
          resolve();
        } else if (s === 'poweredOff' || s === 'unsupported' || s === 'unauthorized') fail(new Error(`radio ${s}`));
      };
      this.abortOpen = fail;
      // Adding the listener makes noble start its bindings (noble initialises them lazily).
      noble.on('stateChange', onState);
    });
    noble.on('stateChange', (s: string) => {
      if (s !== 'poweredOn' && gen === this.generation) this.link.lost(`radio ${s}`);
    });
    void this.cycle(gen);
  }

  private async close(): Promise<void> {
    this.generation++;
    const noble = this.noble;
    this.noble = undefined;
    for (const s of this.sleepers) {
      clearTimeout(s.timer);
      s.resolve();
    }
    this.sleepers.clear();
    for (const op of this.inflight) {
      clearTimeout(op.timer);
      op.reject(linkDown());
    }
    this.inflight.clear();
    for (const c of this.conns.values()) this.forget(c);
    this.conns.clear();
    this.scan = { refs: 0, starting: undefined };
    this.wake();
    for (const k of this.known.values()) {
      k.peripheral = undefined;
      for (const s of k.subs.values()) s.active = false;
      // The radio is gone: nothing on it answers. The gateway learns that (and relearns the
      // devices from their advertisements once the link is back).
      if (k.present && this.events && !this.stopping) {
        k.present = false;
        this.events.detached(k.address);
      }
    }
    if (noble) {
      try {
        noble.stop(); // HCI: closes the socket and drops the links; sim: clears its timers
      } catch {
        /* a radio that never started has nothing to stop */
      }
      noble.removeAllListeners();
      noble._bindings?.removeAllListeners?.();
    }
  }

  private up(): Noble {
    if (!this.noble || this.link.state !== 'connected') throw linkDown();
    return this.noble;
  }

  /** A timer-backed wait that `close` cuts short. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const s = { timer: setTimeout(() => (this.sleepers.delete(s), resolve()), ms), resolve };
      this.sleepers.add(s);
    });
  }

  /** Bounds a native step: no answer in `ms` is GwMO 461; a closing link ends it with 503. */
  private timed<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const op = {
        timer: setTimeout(() => {
          this.inflight.delete(op);
          reject(new DmStatusError(461, 'BLE_TIMEOUT', `${what}: no answer within ${ms} ms`));
        }, ms),
        reject,
      };
      this.inflight.add(op);
      p.then(
        (v) => {
          clearTimeout(op.timer);
          if (this.inflight.delete(op)) resolve(v);
        },
        (e: unknown) => {
          clearTimeout(op.timer);
          if (this.inflight.delete(op)) reject(e);
        },
      );
    });
  }

  // ---- scanning, adoption, presence -----------------------------------------------------------

  /** Scans for `ms` (overlapping scans share one radio scan; duplicates on, so every advertisement refreshes presence and RSSI). */
  private async scanFor(ms: number): Promise<void> {
    const noble = this.up();
    const scan = this.scan; // a new link starts a new one; this window only touches its own
    if (scan.refs++ === 0) scan.starting = this.timed(noble.startScanningAsync([], true), this.config.opTimeoutMs, 'start scanning');
    try {
      await scan.starting;
      await this.sleep(ms);
    } finally {
      if (--scan.refs === 0 && this.scan === scan) {
        scan.starting = undefined;
        await this.timed(noble.stopScanningAsync(), this.config.opTimeoutMs, 'stop scanning').catch(() => undefined);
      }
    }
  }

  /** The background loop of one link: a scan window every `ScanIntervalMs`, then a presence sweep. */
  private async cycle(gen: number): Promise<void> {
    while (gen === this.generation) {
      const started = Date.now();
      const window = Math.min(this.config.scanWindowMs, this.scanIntervalMs);
      try {
        await this.scanFor(window);
        if (gen !== this.generation) return;
        await this.sweep();
      } catch {
        // A failed scan start is the radio's problem; the link notices through stateChange.
      }
      if (gen !== this.generation) return;
      await this.sleep(Math.max(0, this.scanIntervalMs - (Date.now() - started)));
    }
  }

  private lostAfter(): number {
    return this.config.lostAfterMs ?? 3 * this.scanIntervalMs;
  }

  /**
   * Presence (AMode: a device that left is detached, not forgotten): an adopted peripheral not heard
   * for `lostAfterMs` and without a link is probed with a connection; if that fails it is detached.
   * (A connected peripheral usually stops advertising, so silence alone proves nothing.)
   */
  private async sweep(): Promise<void> {
    if (this.sweeping) return;
    this.sweeping = true;
    try {
      for (const k of this.known.values()) {
        if (!k.adopted || !k.present || this.conns.has(k.address)) continue;
        if (Date.now() - k.lastSeen < this.lostAfter()) continue;
        try {
          await this.withDevice(k, 'presence probe', async () => undefined);
          k.lastSeen = Date.now();
        } catch (err) {
          if ((err as DmStatusError).status === 503) return;
          if (k.present && Date.now() - k.lastSeen >= this.lostAfter()) {
            k.present = false;
            this.events?.detached(k.address);
          }
        }
      }
    } finally {
      this.sweeping = false;
    }
  }

  private knownFor(address: string, id: string): Known {
    let k = this.known.get(address);
    if (!k) {
      k = {
        address,
        id,
        peripheral: undefined,
        localName: undefined,
        serviceUuids: [],
        rssi: undefined,
        connectable: true,
        lastSeen: 0,
        adopted: false,
        present: false,
        released: false,
        gatt: undefined,
        identity: {},
        identityTried: false,
        subs: new Map(),
        plugin: undefined,
      };
      this.known.set(address, k);
    }
    return k;
  }

  private matches(k: Known): boolean {
    const f = this.filter;
    if (!k.connectable) return false;
    if (f.any) return true;
    if (k.serviceUuids.some((u) => f.services.includes(u))) return true;
    return k.localName !== undefined && f.names.some((n) => k.localName!.startsWith(n));
  }

  private onDiscover(p: NoblePeripheral): void {
    const address = normalizeMac(p.address) ?? p.address.toLowerCase();
    const k = this.knownFor(address, p.id);
    k.peripheral = p;
    k.id = p.id;
    k.rssi = p.rssi;
    k.connectable = p.connectable;
    if (p.advertisement.localName) k.localName = p.advertisement.localName;
    if (p.advertisement.serviceUuids?.length) k.serviceUuids = p.advertisement.serviceUuids.map((u) => normalizeUuid(u) ?? u);
    k.lastSeen = Date.now();
    if (!k.adopted && !k.released && this.matches(k)) k.adopted = true;
    if (k.adopted && !k.present) {
      k.present = true;
      this.events?.attached(this.describe(k));
    }
  }

  private describe(k: Known): AdapterDevice {
    const d: AdapterDevice = { address: k.address, deviceId: `urn:dev:mac:${k.id}` };
    const man = k.identity.man;
    const mod = k.identity.mod ?? k.localName;
    if (man) d.man = man;
    if (mod) d.mod = mod;
    return d;
  }

  /** Peripherals heard or associated so far. */
  discovered(): { address: string; localName?: string; rssi?: number; adopted: boolean; present: boolean; released: boolean }[] {
    return [...this.known.values()].map((k) => ({
      address: k.address,
      ...(k.localName !== undefined ? { localName: k.localName } : {}),
      ...(k.rssi !== undefined ? { rssi: k.rssi } : {}),
      adopted: k.adopted,
      present: k.present,
      released: k.released,
    }));
  }

  private async scanNow(data: string | undefined): Promise<ExecResult> {
    const t = (data ?? '').trim();
    const ms = t === '' ? this.config.scanWindowMs : Number(t);
    if (!/^\d*$/.test(t) || !Number.isInteger(ms) || ms < 20 || ms > 60_000) {
      throw new DmStatusError(400, 'BLE_BAD_VALUE', `Scan takes a window in ms (20..60000), not ${JSON.stringify(t)}`);
    }
    await this.scanFor(ms);
    const lines = [...this.known.values()].map((k) => {
      const state = k.released ? 'released' : !k.adopted ? 'discovered' : k.present ? 'attached' : 'detached';
      return `${k.address} ${k.rssi ?? ''} ${state} ${k.localName ?? ''}`.trim();
    });
    return { status: 200, data: lines.join('\n') };
  }

  /** Waits until the peripheral at `address` is heard (scanning meanwhile). */
  private async find(address: string, ms: number): Promise<Known> {
    const heard = (): Known | undefined => {
      const k = this.known.get(address);
      return k?.peripheral ? k : undefined;
    };
    const k0 = heard();
    if (k0) return k0;
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      await this.scanFor(Math.min(100, Math.max(20, deadline - Date.now())));
      const k = heard();
      if (k) return k;
    }
    throw new DmStatusError(461, 'BLE_NOT_FOUND', `no peripheral ${address} advertised within ${ms} ms`);
  }

  // ---- connections ----------------------------------------------------------------------------

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /**
   * A link to `k`, shared with other operations on it. A new link is opened only while fewer than
   * `maxConcurrency` exist; otherwise the least recently used idle link is closed first, or the
   * caller waits for one to become idle. Subscribed links are never evicted.
   */
  private async acquire(k: Known): Promise<Conn> {
    for (;;) {
      this.up();
      const c = this.conns.get(k.address);
      if (c && !c.closing) {
        c.busy++;
        if (c.idleTimer) clearTimeout(c.idleTimer);
        c.idleTimer = undefined;
        try {
          await c.ready;
        } catch (err) {
          this.release(c);
          throw err;
        }
        return c;
      }
      if (!c && this.conns.size < this.config.maxConcurrency) {
        const n = this.connectTo(k);
        n.busy++;
        try {
          await n.ready;
        } catch (err) {
          this.release(n);
          throw err;
        }
        return n;
      }
      if (!c) {
        const idle = [...this.conns.values()].filter((x) => x.busy === 0 && x.subs === 0 && !x.closing).sort((a, b) => a.lastUsed - b.lastUsed)[0];
        if (idle) {
          await this.disconnect(idle);
          continue;
        }
        if ([...this.conns.values()].every((x) => x.subs > 0)) {
          throw new DmStatusError(461, 'BLE_NO_LINK', `all ${this.config.maxConcurrency} links hold notification subscriptions; ${k.address} cannot be connected`);
        }
      }
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  private release(c: Conn): void {
    c.busy--;
    c.lastUsed = Date.now();
    if (c.busy === 0 && c.subs === 0 && !c.closing && !c.dead && this.conns.get(c.known.address) === c) {
      c.idleTimer = setTimeout(() => void this.disconnect(c), this.idleDisconnectMs);
    }
    this.wake();
  }

  /** Opens a link: connect (one at a time), discover GATT, learn the identity once. */
  private connectTo(k: Known): Conn {
    const p = k.peripheral;
    const c: Conn = {
      known: k,
      peripheral: p as NoblePeripheral,
      ready: Promise.resolve(),
      busy: 0,
      subs: 0,
      closing: false,
      dead: false,
      chars: new Map(),
      chain: Promise.resolve(),
      idleTimer: undefined,
      lastUsed: Date.now(),
      onDisconnect: () => {
        c.dead = true;
        this.forget(c);
        k.lastSeen = Date.now();
        this.wake();
      },
    };
    this.conns.set(k.address, c);
    c.ready = (async () => {
      if (!p) throw new DmStatusError(461, 'BLE_NOT_HEARD', `${k.address} has not been heard on this radio yet`);
      try {
        if (p.state === 'connected') await this.timed(p.disconnectAsync(), this.config.opTimeoutMs, 'disconnect a stale link').catch(() => undefined);
        await this.connectLimiter.run(async () => {
          try {
            await this.timed(p.connectAsync(), this.config.connectTimeoutMs, `connect ${k.address}`);
          } catch (err) {
            if (p.state === 'connecting') p.cancelConnect();
            throw err;
          }
        });
        p.on('disconnect', c.onDisconnect);
        const { services } = await this.timed(p.discoverAllServicesAndCharacteristicsAsync(), this.config.opTimeoutMs, `discover GATT of ${k.address}`);
        const gatt = new Map<string, Map<string, { properties: string[]; name: string | null }>>();
        for (const s of services) {
          const chars = new Map<string, { properties: string[]; name: string | null }>();
          for (const ch of s.characteristics ?? []) {
            chars.set(ch.uuid, { properties: [...ch.properties], name: ch.name });
            c.chars.set(`${s.uuid}/${ch.uuid}`, ch);
          }
          gatt.set(s.uuid, chars);
        }
        k.gatt = gatt;
        k.lastSeen = Date.now();
        if (!k.identityTried && gatt.has('180a')) {
          k.identityTried = true;
          const dis = async (uuid: string): Promise<string | undefined> => {
            const ch = c.chars.get(`180a/${uuid}`);
            if (!ch) return undefined;
            const b = await this.timed(ch.readAsync(), this.config.opTimeoutMs, `read ${uuid}`).catch(() => undefined);
            return b ? b.toString('utf8').replace(/\0+$/, '') : undefined;
          };
          // Device Information → DevInfo/Man, Mod and DevDetail/FwV, HwV (notes §1.8: the gateway synthesises them).
          const [man, mod, fwV, hwV] = [await dis('2a29'), await dis('2a24'), await dis('2a26'), await dis('2a27')];
          k.identity = { ...(man ? { man } : {}), ...(mod ? { mod } : {}), ...(fwV ? { fwV } : {}), ...(hwV ? { hwV } : {}) };
        }
      } catch (err) {
        this.forget(c);
        this.wake();
        if (p.state === 'connected') p.disconnectAsync().catch(() => undefined);
        throw bleError(err, `connect ${k.address}`);
      }
    })();
    c.ready.catch(() => undefined);
    return c;
  }

  /** Drops a link from the books (the radio link is already gone or being closed). */
  private forget(c: Conn): void {
    if (c.idleTimer) clearTimeout(c.idleTimer);
    c.idleTimer = undefined;
    c.peripheral?.removeListener?.('disconnect', c.onDisconnect);
    if (this.conns.get(c.known.address) === c) this.conns.delete(c.known.address);
    for (const [key, s] of c.known.subs) {
      s.active = false;
      if (s.listener) c.chars.get(key)?.removeListener('data', s.listener);
      s.listener = undefined;
    }
  }

  /** Closes a link gracefully (idle, evicted, or stuck after a timeout). */
  private async disconnect(c: Conn): Promise<void> {
    if (c.closing) return;
    c.closing = true;
    if (c.idleTimer) clearTimeout(c.idleTimer);
    c.idleTimer = undefined;
    try {
      if (!c.dead && this.noble) await this.timed(c.peripheral.disconnectAsync(), this.config.opTimeoutMs, `disconnect ${c.known.address}`);
    } catch {
      /* it is gone either way */
    } finally {
      c.dead = true;
      this.forget(c);
      this.wake();
    }
  }

  /**
   * Runs one native operation on a peripheral's link: within the link cap, in order with the other
   * operations on that link, bounded by `opTimeoutMs`. A timeout leaves the ATT bearer unusable
   * (Core spec Vol 3 Part F §3.3.3: no further requests after a transaction timeout), so the link
   * is closed and the next operation reconnects.
   */
  private async withDevice<T>(k: Known, what: string, fn: (c: Conn) => Promise<T>): Promise<T> {
    const c = await this.acquire(k);
    try {
      const run = c.chain.catch(() => undefined).then(() => {
        if (c.dead) throw new DmStatusError(461, 'BLE_LINK_LOST', `${what}: the link to ${k.address} dropped`);
        return this.timed(fn(c), this.config.opTimeoutMs, what);
      });
      c.chain = run;
      return await run;
    } catch (err) {
      const e = bleError(err, what);
      if (e.status === 461 && !c.dead) void this.disconnect(c);
      throw e;
    } finally {
      this.release(c);
    }
  }

  // ---- the device subtree ---------------------------------------------------------------------

  device(address: string): TreePlugin | undefined {
    const k = this.known.get(normalizeMac(address) ?? address.toLowerCase());
    if (!k || !k.adopted) return undefined;
    k.plugin ??= deviceSubtree(() => this.identity(k), 'BLE', this.protocolPlugin(k));
    return k.plugin;
  }

  private identity(k: Known): DeviceIdentity {
    const id: DeviceIdentity = { deviceId: `urn:dev:mac:${k.id}`, man: k.identity.man ?? 'unknown', mod: k.identity.mod ?? k.localName ?? 'BLE peripheral' };
    if (k.identity.fwV) id.fwV = k.identity.fwV;
    if (k.identity.hwV) id.hwV = k.identity.hwV;
    return id;
  }

  private codecFor(uuid: string): ValueCodec {
    for (const [u, name] of Object.entries(this.config.formats)) if (normalizeUuid(u) === uuid) return namedCodec(name);
    return SIG_CODECS[uuid] ?? BYTES;
  }

  /** The GATT layout, connecting once to learn it when it is not known yet. */
  private async layout(k: Known): Promise<NonNullable<Known['gatt']>> {
    if (!k.gatt) await this.withDevice(k, `discover ${k.address}`, async () => undefined);
    return k.gatt!;
  }

  /** Resolves `Services/<s>/Characteristics/<c>[/<leaf>]` against the layout; undefined when unmapped. */
  private async resolve(k: Known, parts: string[]): Promise<{ s: string; c?: string; props?: string[]; name?: string | null } | undefined> {
    const s = normalizeUuid(parts[1] ?? '');
    if (!s) return undefined;
    const g = await this.layout(k);
    const chars = g.get(s);
    if (!chars) return undefined;
    if (parts.length <= 3) return parts.length === 3 && parts[2] !== 'Characteristics' ? undefined : { s };
    const c = normalizeUuid(parts[3] ?? '');
    const ch = c ? chars.get(c) : undefined;
    if (!c || !ch || parts[2] !== 'Characteristics') return undefined;
    return { s, c, props: ch.properties, name: ch.name };
  }

  private protocolPlugin(k: Known): TreePlugin {
    const notifies = (props: string[]): boolean => props.includes('notify') || props.includes('indicate');
    const charLeaves = (props: string[]): string[] => ['Name', 'Properties', 'Value', ...(notifies(props) ? ['Notify', 'LastValue', 'LastUpdate'] : [])];
    const valueAccess = (props: string[]): ('Get' | 'Replace')[] => [
      ...(props.includes('read') ? (['Get'] as const) : []),
      ...(props.includes('write') || props.includes('writeWithoutResponse') ? (['Replace'] as const) : []),
    ];
    /** The node at `path`; `read` false gives a Value's metadata without a GATT read (TreePlugin.describe). */
    const view = async (path: string, read: boolean): Promise<PluginNodeView | undefined> => {
      switch (path) {
        case '':
        case 'Services':
          return { format: 'node', access: GET };
        case 'Address':
          return { format: 'chr', data: k.address, access: GET };
        case 'RSSI':
          return { format: 'int', data: k.rssi === undefined ? '' : String(k.rssi), access: GET };
        case 'LocalName':
          return { format: 'chr', data: k.localName ?? '', access: GET };
        case 'Connected': {
          const c = this.conns.get(k.address);
          return { format: 'bool', data: String(!!c && !c.dead && !c.closing), access: GET };
        }
      }
      const parts = path.split('/');
      if (parts[0] !== 'Services' || parts.length > 5) return undefined;
      const r = await this.resolve(k, parts);
      if (!r) return undefined;
      if (!r.c) return { format: 'node', access: GET };
      const leaf = parts[4];
      const props = r.props!;
      const key = `${r.s}/${r.c}`;
      const codec = this.codecFor(r.c);
      if (leaf === undefined) return { format: 'node', access: GET, ...(r.name ? { title: r.name } : {}) };
      if (!charLeaves(props).includes(leaf)) return undefined;
      const sub = k.subs.get(key);
      switch (leaf) {
        case 'Name':
          return { format: 'chr', data: r.name ?? '', access: GET };
        case 'Properties':
          return { format: 'chr', data: props.join(','), access: GET };
        case 'Notify':
          return { format: 'bool', data: String(sub?.active ?? false), access: ['Get', 'Replace'] };
        case 'LastValue':
          return { format: codec.format, data: sub?.lastValue ? codec.decode(sub.lastValue) : '', access: GET, title: codec.title };
        case 'LastUpdate':
          return { format: 'chr', data: sub?.lastUpdate ?? '', access: GET };
      }
      // Value: a GATT read when the characteristic is readable. Without `read` the node is write-only
      // (Get answers 405 from the tree's AccessType check), and no read goes over the air.
      const access = valueAccess(props);
      if (!props.includes('read') || !read) return { format: codec.format, access, title: codec.title };
      const bytes = await this.withDevice(k, `read ${key} of ${k.address}`, async (c) => {
        const ch = c.chars.get(key);
        if (!ch) throw new DmStatusError(404, 'BLE_NO_CHARACTERISTIC', `${k.address} has no characteristic ${key}`);
        return ch.readAsync();
      });
      return { format: codec.format, data: codec.decode(bytes), access, title: codec.title };
    };
    const children = async (path: string): Promise<string[]> => {
      if (path === '') return ['Address', 'RSSI', 'LocalName', 'Connected', 'Services'];
      const parts = path.split('/');
      if (parts[0] !== 'Services') return [];
      if (parts.length === 1) return [...(await this.layout(k)).keys()];
      const r = await this.resolve(k, parts);
      if (!r) return [];
      if (parts.length === 2) return ['Characteristics'];
      if (parts.length === 3) return [...(await this.layout(k)).get(r.s)!.keys()];
      if (parts.length === 4 && r.props) return charLeaves(r.props);
      return [];
    };
    const replace = async (path: string, value: PluginWrite): Promise<{ status: number }> => {
      const parts = path.split('/');
      const r = parts[0] === 'Services' && parts.length === 5 ? await this.resolve(k, parts) : undefined;
      if (!r?.c) throw new DmStatusError(405, 'BLE_READ_ONLY', `${path} cannot be replaced`);
      const key = `${r.s}/${r.c}`;
      const props = r.props!;
      if (parts[4] === 'Value') {
        const withResponse = props.includes('write');
        if (!withResponse && !props.includes('writeWithoutResponse')) throw new DmStatusError(405, 'BLE_NOT_WRITABLE', `${key} is not writable`);
        const bytes = this.codecFor(r.c).encode(value.data ?? '', value.format);
        await this.withDevice(k, `write ${key} of ${k.address}`, async (c) => {
          const ch = c.chars.get(key);
          if (!ch) throw new DmStatusError(404, 'BLE_NO_CHARACTERISTIC', `${k.address} has no characteristic ${key}`);
          await ch.writeAsync(bytes, !withResponse);
        });
        return { status: 200 };
      }
      if (parts[4] === 'Notify' && notifies(props)) {
        const want = (value.data ?? '').trim().toLowerCase();
        if (want !== 'true' && want !== 'false') throw new DmStatusError(400, 'BLE_BAD_VALUE', `Notify is true or false, not ${JSON.stringify(value.data)}`);
        await this.setNotify(k, key, want === 'true');
        return { status: 200 };
      }
      throw new DmStatusError(405, 'BLE_READ_ONLY', `${path} cannot be replaced`);
    };
    return { get: (path) => view(path, true), describe: (path) => view(path, false), children, replace };
  }

  /** Subscribes to (or cancels) a characteristic's notifications; a subscribed link stays up. */
  private async setNotify(k: Known, key: string, on: boolean): Promise<void> {
    const sub: Subscription = k.subs.get(key) ?? { active: false };
    k.subs.set(key, sub);
    if (sub.active === on) return;
    if (!on && !this.conns.has(k.address)) {
      sub.active = false;
      return;
    }
    await this.withDevice(k, `${on ? 'subscribe to' : 'unsubscribe from'} ${key} of ${k.address}`, async (c) => {
      const ch = c.chars.get(key);
      if (!ch) throw new DmStatusError(404, 'BLE_NO_CHARACTERISTIC', `${k.address} has no characteristic ${key}`);
      if (on) {
        if (sub.listener) ch.removeListener('data', sub.listener);
        sub.listener = (data: Buffer, isNotification: boolean) => {
          if (!isNotification) return;
          sub.lastValue = Buffer.from(data);
          sub.lastUpdate = nowIso();
        };
        ch.on('data', sub.listener);
        await ch.subscribeAsync();
        sub.active = true;
        c.subs++;
      } else {
        await ch.unsubscribeAsync();
        if (sub.listener) ch.removeListener('data', sub.listener);
        sub.listener = undefined;
        sub.active = false;
        c.subs = Math.max(0, c.subs - 1);
      }
    });
  }

  // ---- settings and associations --------------------------------------------------------------

  getSettings(): Record<string, string> {
    return { ScanIntervalMs: String(this.scanIntervalMs), Filter: this.filterText, IdleDisconnectMs: String(this.idleDisconnectMs) };
  }

  async configure(values: Record<string, string>): Promise<void> {
    const next = { scan: this.scanIntervalMs, idle: this.idleDisconnectMs, filterText: this.filterText, filter: this.filter };
    const int = (k: string, v: string, min: number, max: number): number => {
      const n = Number(v.trim());
      if (!/^\d+$/.test(v.trim()) || n < min || n > max) throw new DmStatusError(400, 'BLE_BAD_VALUE', `${k} must be an integer ${min}..${max}, not ${JSON.stringify(v)}`);
      return n;
    };
    // Validate everything first, so a bad value changes nothing.
    for (const [k, v] of Object.entries(values)) {
      if (k === 'ScanIntervalMs') next.scan = int(k, v, 50, 3_600_000);
      else if (k === 'IdleDisconnectMs') next.idle = int(k, v, 0, 3_600_000);
      else if (k === 'Filter') {
        next.filter = parseFilter(v);
        next.filterText = v.trim();
      } else throw new DmStatusError(404, 'BLE_NO_SETTING', `no setting ${k}`);
    }
    this.scanIntervalMs = next.scan;
    this.idleDisconnectMs = next.idle;
    this.filter = next.filter;
    this.filterText = next.filterText;
  }

  /**
   * Establishes an association (AMode-006): finds the peripheral (scanning if needed), connects,
   * checks it exposes the `Profile` services, pairs with the `Passkey` when one is given (a wrong one
   * is 401), and adopts it. The passkey is handed to the bindings only, never kept or logged.
   */
  async associate(params: Record<string, string>): Promise<AdapterDevice> {
    const address = normalizeMac(params['Address']);
    if (!params['Address']) throw new DmStatusError(412, 'BLE_NO_ADDRESS', 'Address is required');
    if (!address) throw new DmStatusError(400, 'BLE_BAD_ADDRESS', `Address must be a MAC address aa:bb:cc:dd:ee:ff, not ${JSON.stringify(params['Address'])}`);
    const passkey = (params['Passkey'] || params['PIN'] || '').trim();
    if (passkey !== '' && !/^\d{6}$/.test(passkey)) throw new DmStatusError(400, 'BLE_BAD_PASSKEY', 'Passkey must be 6 digits');
    const profile: string[] = [];
    for (const u of (params['Profile'] ?? '').split(/[,;\s]+/).filter(Boolean)) {
      const n = normalizeUuid(u);
      if (!n) throw new DmStatusError(400, 'BLE_BAD_PROFILE', `Profile: ${JSON.stringify(u)} is not a service UUID`);
      profile.push(n);
    }
    this.up();
    const k = await this.find(address, Math.max(this.config.scanWindowMs, 1_000));
    await this.withDevice(k, `associate ${address}`, async (c) => {
      const missing = profile.filter((u) => !k.gatt?.has(u));
      if (missing.length) throw new DmStatusError(406, 'BLE_PROFILE_MISMATCH', `${address} does not expose service(s) ${missing.join(', ')}`);
      if (passkey === '') return;
      const bindings = this.noble?._bindings;
      if (!bindings?.providePasskey || !bindings.pair) throw new DmStatusError(501, 'BLE_PAIRING_UNSUPPORTED', 'this radio cannot pair with a passkey');
      bindings.providePasskey(k.id, passkey);
      try {
        await c.peripheral.pairAsync(PAIRING_KINDS.ProvidePin);
      } catch (err) {
        const e = bleError(err, `pair with ${address}`);
        // Any pairing failure the peripheral reports is an authentication failure to the server.
        throw e.status === 500 ? new DmStatusError(401, 'BLE_PAIRING_FAILED', e.message) : e;
      }
    });
    k.adopted = true;
    k.released = false;
    const dev = this.describe(k);
    k.present = true;
    this.events?.attached(dev);
    return dev;
  }

  /** Removes an association: the link is closed, the bond forgotten (unpair), the device reported detached and not re-adopted by the Filter. */
  async dissociate(address: string): Promise<void> {
    const a = normalizeMac(address) ?? address.toLowerCase();
    const k = this.known.get(a);
    if (!k || !k.adopted) throw new DmStatusError(404, 'BLE_UNKNOWN', `no associated peripheral ${address}`);
    k.adopted = false;
    k.released = true;
    k.plugin = undefined;
    k.subs.clear();
    const c = this.conns.get(a);
    if (c) await this.disconnect(c);
    this.noble?._bindings?.unpair?.(k.id);
    if (k.present) {
      k.present = false;
      this.events?.detached(a);
    }
  }
}
