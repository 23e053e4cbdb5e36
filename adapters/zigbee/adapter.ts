/**
 * The ZigBee adapter (GwMO-AMode, notes §1.8 and §2.3): a ZigBee network run by the real
 * zigbee-herdsman `Controller` (npm `zigbee-herdsman@10.9.5`) through a ZiGate coordinator, either a
 * dongle on a serial port / `tcp://host:port`, or the simulated coordinator of sim.ts (config
 * `simulator:`), which speaks the same ZiGate protocol over TCP on 127.0.0.1 so herdsman runs
 * unmodified.
 *
 * Each device's DM subtree (below `./GwMO/Devices/<key>`, beside the synthesised DevInfo/DevDetail):
 * ```
 * ZigBee/IEEE                                    chr   G   EUI-64, 0x + 16 hex digits
 * ZigBee/NwkAddr                                 int   G   16-bit network address
 * ZigBee/ModelId | ZigBee/ManufacturerName       chr   G   genBasic 0x0005 / 0x0004 from the interview
 * ZigBee/Endpoints/<ep>/ProfileId | DeviceId     int   G   simple descriptor
 * ZigBee/Endpoints/<ep>/Clusters/<clusterHex>/Attributes/<attrHex>
 *                                                *     G,R Get = ZCL Read Attributes, Replace = Write
 *                                                          Attributes; format from the ZCL data type (values.ts)
 * ZigBee/Endpoints/<ep>/Clusters/<clusterHex>/Commands/<cmdHex>
 *                                                null  E   cluster command; Item Data = a JSON object
 *                                                          of the command's fields, or its payload in hex
 * ```
 * Statuses: 404 unmapped node or an attribute the device does not support (ZCL
 * UNSUPPORTED_ATTRIBUTE / UNSUPPORTED_CLUSTER); 405 a read-only attribute or a command the device
 * does not support; 400 a value the attribute's type cannot carry (or the device's INVALID_VALUE);
 * 461 no answer within `responseTimeoutMs` (or the device is off the network); 500 other ZCL
 * failures; 503 the coordinator link is down.
 *
 * zigbee-herdsman keeps its devices in process-wide caches (Entity/Device/Group statics), so one
 * process runs one ZigBee network: a second ZigBee adapter in the same process stays in backoff
 * with a clear error instead of corrupting the first.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { Controller, Zcl, setLogger } from 'zigbee-herdsman';
import { z } from 'zod';
import { DmStatusError, GwError } from '../../src/errors.ts';
import { Limiter } from '../../src/limit.ts';
import type { ExecArgs, ExecResult, PluginNodeView, PluginWrite, TreePlugin } from '../../src/tree/tree.ts';
import type { Adapter, AdapterDevice, AdapterEvents, AdapterOperation, AdapterParam, LinkState, MulticastRequest, MulticastResult } from '../contract.ts';
import { Link, backoffSchema } from '../link.ts';
import { deviceSubtree } from '../subtree.ts';
import { ZigbeeSim, zigbeeSimSchema } from './sim.ts';
import { dmFormat, fromDm, toDm, typeName } from './values.ts';

type HDevice = NonNullable<ReturnType<Controller['getDeviceByIeeeAddr']>>;
type HEndpoint = NonNullable<ReturnType<HDevice['getEndpoint']>>;
type HGroup = NonNullable<ReturnType<Controller['getGroupByID']>>;

const require = createRequire(import.meta.url);
/** herdsman's install-code checker (CRC-16/X-25 over the code, ZigBee BDB 10.1); not exported from its index. */
const { checkInstallCode } = require('zigbee-herdsman/dist/controller/helpers/installCodes.js') as {
  checkInstallCode(code: Buffer, adjust?: boolean): [Buffer, string | undefined];
};

const hex16 = /^(0x)?[0-9a-fA-F]{16}$/;

/** Configuration of a ZigBee network (an entry of a gateway's `adapters`). */
export const zigbeeAdapterConfigSchema = z
  .object({
    type: z.literal('zigbee'),
    /** The name associations refer to in `protocol`, and the node under `./GwMO/Adaptation`. */
    name: z.string().min(1).default('ZigBee'),
    /** The ZiGate coordinator: a serial device path or `tcp://host:port`. Without it, `simulator` is used. */
    interface: z.string().min(1).optional(),
    /** Runs the simulated coordinator and devices of sim.ts in this process (demos, tests). */
    simulator: zigbeeSimSchema.optional(),
    /** Where herdsman keeps its database, database backup and coordinator backup; a temp dir when absent. */
    dataDir: z.string().min(1).optional(),
    /** Extended PAN ID, 16 hex digits. */
    extPanId: z.string().regex(hex16).default('dddddddddddddddd'),
    /** The radio channel, 11..26. */
    channel: z.number().int().min(11).max(26).default(11),
    /** The network key, 32 hex digits; generated (and kept in dataDir) when absent. Never logged. */
    networkKey: z.string().regex(/^[0-9a-fA-F]{32}$/).optional(),
    /** Opens joining for this many seconds whenever the link connects (0: closed until PermitJoin). */
    permitJoinSeconds: z.number().int().min(0).max(254).default(0),
    /** Milliseconds a device has to answer one ZCL request before it counts as not answering (461). */
    responseTimeoutMs: z.number().int().min(50).default(6000),
    /** Milliseconds `associate` waits for the device to join and finish its interview. */
    joinTimeoutMs: z.number().int().min(100).default(60_000),
    /** Milliseconds one connection attempt (herdsman's whole start-up) may take. */
    startTimeoutMs: z.number().int().min(100).default(20_000),
    /** Native operations in flight at once on this network. */
    maxConcurrency: z.number().int().min(1).default(8),
    /** Consecutive unanswered requests after which a device is reported detached (0: never). */
    detachAfterFailures: z.number().int().min(0).default(3),
    /** ZigBee group ids the adapter may create for multicast fanout. */
    groupIds: z
      .object({ first: z.number().int().min(1).max(0xfff7).default(0x7000), count: z.number().int().min(1).max(4096).default(256) })
      .default({ first: 0x7000, count: 256 }),
    backoff: backoffSchema,
  })
  .refine((c) => c.interface !== undefined || c.simulator !== undefined, { message: 'a ZigBee network needs an interface or a simulator' });
/** A validated ZigBee network configuration. */
export type ZigbeeAdapterConfig = z.output<typeof zigbeeAdapterConfigSchema>;

const GET = ['Get'] as const;
const GET_REPLACE = ['Get', 'Replace'] as const;
const EXEC = ['Exec'] as const;

/** Which adapter holds herdsman's process-wide state now. */
let herdsmanOwner: ZigbeeAdapter | undefined;
/** Where herdsman's log lines go (the owner's ring); debug only with GWMO_ZIGBEE_DEBUG=1. */
let logSink: ((level: string, line: string) => void) | undefined;
const DEBUG = process.env['GWMO_ZIGBEE_DEBUG'] === '1';

/** Removes key material from a herdsman log line (it prints options and ZiGate payloads at debug). */
function redact(line: string): string {
  return line
    .replace(/\b[0-9a-fA-F]{32}\b/g, '[REDACTED]')
    .replace(/\[(\s*\d{1,3}\s*,){15}\s*\d{1,3}\s*\]/g, '[REDACTED]')
    .replace(/"key":\s*(\{[^}]*\}|\[[^\]]*\]|"[^"]*")/g, '"key":"[REDACTED]"');
}

setLogger({
  debug: (m, ns) => {
    if (DEBUG) logSink?.('debug', redact(`${ns} ${typeof m === 'function' ? m() : m}`));
  },
  info: (m, ns) => {
    if (DEBUG) logSink?.('info', redact(`${ns} ${typeof m === 'function' ? m() : m}`));
  },
  warning: (m, ns) => logSink?.('warn', redact(`${ns} ${typeof m === 'function' ? m() : m}`)),
  error: (m, ns) => logSink?.('error', redact(`${ns} ${m}`)),
});

/** Ends every armed waiter of a herdsman Waitress with an error (unarmed ones have no listener and are dropped). */
function drainWaitress(w: unknown): void {
  const waiters = (w as { waiters?: Map<number, { timer?: NodeJS.Timeout; timedout?: boolean; reject(e: Error): void }> } | undefined)?.waiters;
  if (!(waiters instanceof Map)) return;
  for (const [id, waiter] of waiters) {
    waiters.delete(id);
    if (!waiter.timer || waiter.timedout) continue;
    clearTimeout(waiter.timer);
    waiter.reject(new Error('coordinator link closed'));
  }
}

/** `0x00124B...` or `00124b...` → herdsman's `0x00124b...`. */
function normIeee(s: string): string {
  return `0x${s.replace(/^0x/i, '').toLowerCase()}`;
}

/** Parses a node name as a hex id (`0006`, `0x0006`), or undefined. */
function hexId(name: string, max: number): number | undefined {
  if (!/^(0x)?[0-9a-fA-F]{1,4}$/.test(name)) return undefined;
  const n = Number.parseInt(name.replace(/^0x/i, ''), 16);
  return n <= max ? n : undefined;
}

const h4 = (n: number): string => n.toString(16).padStart(4, '0');
const h2 = (n: number): string => n.toString(16).padStart(2, '0');

const linkDown = (): DmStatusError => new DmStatusError(503, 'ZIGBEE_LINK_DOWN', 'the ZigBee coordinator link is down');
const noAnswer = (ieee: string, what: string): DmStatusError => new DmStatusError(461, 'ZIGBEE_NO_ANSWER', `ZigBee device ${ieee} did not answer ${what}`);

/** Maps a ZCL status from the device to the DM status the server sees (notes §2.3 step 3). */
function zclStatusError(code: number, what: string): DmStatusError {
  const S = Zcl.Status;
  const name = (S as unknown as Record<number, string>)[code] ?? String(code);
  switch (code) {
    case S.UNSUPPORTED_ATTRIBUTE:
    case S.UNSUPPORTED_CLUSTER:
    case S.NOT_FOUND:
      return new DmStatusError(404, 'ZIGBEE_UNSUPPORTED', `${what}: the device answered ${name}`);
    case S.READ_ONLY:
    case S.NOT_AUTHORIZED:
    case S.UNSUP_COMMAND:
    case S.UNSUP_GENERAL_COMMAND:
    case S.UNSUP_MANUF_CLUSTER_COMMAND:
    case S.UNSUP_MANUF_GENERAL_COMMAND:
      return new DmStatusError(405, 'ZIGBEE_NOT_ALLOWED', `${what}: the device answered ${name}`);
    case S.INVALID_VALUE:
    case S.INVALID_DATA_TYPE:
    case S.INVALID_FIELD:
    case S.MALFORMED_COMMAND:
      return new DmStatusError(400, 'ZIGBEE_REJECTED_VALUE', `${what}: the device answered ${name}`);
    default:
      return new DmStatusError(500, 'ZIGBEE_ZCL_FAILURE', `${what}: the device answered ${name}`);
  }
}

/** One attribute type learnt from the device (attribute discovery) or herdsman's cluster library. */
interface ClusterInfo {
  attrs: Map<number, number>;
  discovered: boolean;
}

/** The ZigBee adapter. */
export class ZigbeeAdapter implements Adapter {
  readonly protocol = 'ZigBee';
  readonly name: string;
  private controller: Controller | undefined;
  private events: AdapterEvents | undefined;
  private readonly link: Link;
  private readonly limiter: Limiter;
  private readonly plugins = new Map<string, TreePlugin>();
  /** Devices attached now (reported to the gateway). */
  private readonly attachedSet = new Set<string>();
  /** Identity of every device seen, kept after it leaves so its subtree answers 461, not 404. */
  private readonly seen = new Map<string, { nwk: number; modelId: string; man: string; fwV?: string; hwV?: string }>();
  private readonly failures = new Map<string, number>();
  /** Attribute types per `<ieee>/<ep>/<cluster>`. */
  private readonly clusterInfo = new Map<string, ClusterInfo>();
  /** Devices admitted by `associate` (others are refused while no PermitJoin window is open). */
  private readonly admitted = new Set<string>();
  private readonly joinWaiters = new Map<string, Set<(ok: boolean) => void>>();
  /** Until when the operator's PermitJoin window admits any device. */
  private openJoinUntil = 0;
  private dataDir: string | undefined;
  private ownDataDir = false;
  private networkKey: Buffer | undefined;
  private extPanId: string;
  private channel: number;
  private iface: string | undefined;
  private reform = false;
  /** The PAN ID the coordinator reported at the last connect (0 before). */
  private panId = 0;
  private stopped = true;
  /** The simulated coordinator when `simulator:` is configured. */
  readonly sim: ZigbeeSim | undefined;
  /** Recent herdsman warnings and errors (key material removed). */
  readonly nativeLog: string[] = [];
  /** Native multicasts performed (group casts). */
  multicasts = 0;

  readonly settings: readonly AdapterParam[] = [
    { name: 'PanID', format: 'int', description: 'the PAN ID the coordinator chose when it formed the network (read-only: the ZiGate protocol cannot set it)' },
    { name: 'ExtPanID', format: 'chr', description: 'extended PAN ID, 16 hex digits; changing it re-forms the network' },
    { name: 'Channel', format: 'int', description: 'radio channel 11..26; a change is broadcast to the network' },
    { name: 'NetworkKey', format: 'bin', secret: true, description: 'the 128-bit network key (write-only); changing it re-forms the network' },
    { name: 'Interface', format: 'chr', description: 'the coordinator: serial device path or tcp://host:port' },
  ];

  readonly associationParams: readonly AdapterParam[] = [
    { name: 'IEEEAddress', format: 'chr', required: true, description: 'the device EUI-64 (16 hex digits); only this device is admitted while joining is open for it' },
    { name: 'InstallCode', format: 'chr', secret: true, description: 'the install code printed on the device (hex with its CRC), for coordinators that support it' },
  ];

  readonly operations: readonly AdapterOperation[] = [
    {
      name: 'PermitJoin',
      description: 'opens the network for joining for Item Data seconds (0 closes it, at most 254)',
      run: async (data) => {
        const s = (data ?? '').trim();
        const n = s === '' ? 60 : /^\d+$/.test(s) ? Number(s) : Number.NaN;
        if (!(n >= 0 && n <= 254)) throw new DmStatusError(400, 'ZIGBEE_BAD_VALUE', `PermitJoin takes 0..254 seconds, not ${JSON.stringify(s)}`);
        const c = this.ready();
        await c.permitJoin(n);
        this.openJoinUntil = n === 0 ? 0 : Date.now() + n * 1000;
        return { status: 200, data: String(n) };
      },
    },
  ];

  constructor(private readonly config: ZigbeeAdapterConfig) {
    this.name = config.name;
    this.limiter = new Limiter(config.maxConcurrency);
    this.extPanId = config.extPanId.replace(/^0x/, '').toLowerCase();
    this.channel = config.channel;
    this.iface = config.interface;
    if (config.networkKey) this.networkKey = Buffer.from(config.networkKey, 'hex');
    if (!config.interface && config.simulator) this.sim = new ZigbeeSim(config.simulator);
    this.link = new Link({ open: () => this.open(), close: () => this.close() }, config.backoff, (state, detail) => this.events?.link?.(state, detail));
  }

  get linkState(): LinkState {
    return this.link.state;
  }

  /** Reconnects made so far (for tests and the tree). */
  get reconnects(): number {
    return Math.max(0, this.link.connects - 1);
  }

  /** The link's last failure. */
  get linkError(): string {
    return this.link.lastError;
  }

  async start(events: AdapterEvents): Promise<void> {
    this.events = events;
    this.stopped = false;
    if (!this.dataDir) {
      if (this.config.dataDir) {
        mkdirSync(this.config.dataDir, { recursive: true });
        this.dataDir = this.config.dataDir;
      } else {
        this.dataDir = mkdtempSync(join(tmpdir(), 'gwmo-zigbee-'));
        this.ownDataDir = true;
      }
    }
    this.loadKey();
    if (this.sim) await this.sim.start();
    await this.link.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.link.stop();
    for (const set of this.joinWaiters.values()) for (const w of set) w(false);
    this.joinWaiters.clear();
    if (this.sim) await this.sim.stop();
    if (this.ownDataDir && this.dataDir) {
      rmSync(this.dataDir, { recursive: true, force: true });
      this.dataDir = undefined;
      this.ownDataDir = false;
    }
    this.events = undefined;
  }

  /** The network key: configured, or generated once and kept (mode 0600) in the data dir. */
  private loadKey(): void {
    if (this.networkKey) return;
    const file = join(this.dataDir!, 'network-key');
    try {
      const k = Buffer.from(readFileSync(file, 'utf8').trim(), 'hex');
      if (k.length === 16) {
        this.networkKey = k;
        return;
      }
    } catch {
      // first start
    }
    this.networkKey = randomBytes(16);
    writeFileSync(file, this.networkKey.toString('hex'), { mode: 0o600 });
  }

  private log(level: string, line: string): void {
    if (level === 'debug' || level === 'info') {
      process.stderr.write(`[zigbee ${this.name}] ${line}\n`);
      return;
    }
    this.nativeLog.push(`${level} ${line}`);
    if (this.nativeLog.length > 200) this.nativeLog.splice(0, 100);
  }

  /** Link driver: starts herdsman's controller against the coordinator. */
  private async open(): Promise<void> {
    if (herdsmanOwner && herdsmanOwner !== this) throw new Error(`zigbee-herdsman already runs network "${herdsmanOwner.name}" in this process (its device caches are process-wide)`);
    herdsmanOwner = this;
    logSink = (level, line) => this.log(level, line);
    const path = this.iface ?? this.sim?.url;
    if (!path) throw new Error('no coordinator interface');
    const dir = this.dataDir!;
    const c = new Controller({
      network: {
        // The ZiGate firmware picks the PAN ID itself; herdsman's option must still be valid.
        panID: 0x1a62,
        extendedPanID: [...Buffer.from(this.extPanId, 'hex')],
        channelList: [this.channel],
        networkKey: [...this.networkKey!],
        networkKeyDistribute: false,
      },
      serialPort: { path, adapter: 'zigate' },
      databasePath: join(dir, 'database.db'),
      databaseBackupPath: join(dir, 'database.db.backup'),
      backupPath: join(dir, 'coordinator_backup.json'),
      adapter: { disableLED: true, concurrent: this.config.maxConcurrency },
      acceptJoiningDeviceHandler: async (ieee: string) => this.accepts(ieee),
    });
    this.controller = c;
    c.on('deviceInterview', (e) => {
      if (e.status === 'successful') this.attach(e.device);
      else if (e.status === 'failed') this.log('warn', `interview of ${e.device.ieeeAddr} failed`);
    });
    c.on('deviceAnnounce', (e) => this.sawDevice(e.device));
    c.on('lastSeenChanged', (e) => {
      if (e.reason !== 'deviceJoined') this.sawDevice(e.device);
    });
    c.on('deviceLeave', (e) => this.detach(e.ieeeAddr));
    c.on('adapterDisconnected', () => {
      if (this.controller === c) this.link.lost('the coordinator link dropped');
    });
    const startP = c.start();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`coordinator did not start within ${this.config.startTimeoutMs} ms`)), this.config.startTimeoutMs);
    });
    startP.catch(() => {});
    try {
      await Promise.race([startP, timeout]);
    } finally {
      clearTimeout(timer);
    }
    if (this.reform) {
      // A new extended PAN ID or network key needs a new network: the coordinator forgets the old one
      // (ZiGate 0x0012 erase) and forms again on the next start; devices must join again.
      this.reform = false;
      await c.reset('hard');
      throw new Error('network re-formed with new parameters; reconnecting');
    }
    this.panId = (await c.getNetworkParameters()).panID;
    // Devices herdsman no longer knows (a re-formed network, a database reset) are gone.
    for (const ieee of [...this.attachedSet]) if (!c.getDeviceByIeeeAddr(ieee)) this.detach(ieee);
    for (const d of c.getDevicesIterator((x) => x.type !== 'Coordinator')) {
      if (d.interviewState === 'SUCCESSFUL' || (d as { interviewCompleted?: boolean }).interviewCompleted) this.attach(d);
    }
    if (this.config.permitJoinSeconds > 0) {
      await c.permitJoin(this.config.permitJoinSeconds);
      this.openJoinUntil = Date.now() + this.config.permitJoinSeconds * 1000;
    }
  }

  /** Link driver: stops herdsman and releases the coordinator link (also after a failed or lost attempt). */
  private async close(): Promise<void> {
    const c = this.controller;
    this.controller = undefined;
    if (c) {
      c.removeAllListeners();
      // herdsman only clears its permit-join timer when it can still talk to the coordinator.
      const internal = c as unknown as { permitJoinTimer?: NodeJS.Timeout; adapter?: { stop(): Promise<void>; removeAllListeners(): void } };
      clearTimeout(internal.permitJoinTimer);
      try {
        await Promise.race([c.stop(), new Promise((r) => setTimeout(r, 3000).unref())]);
      } catch (err) {
        this.log('warn', `controller stop: ${String((err as Error).message ?? err)}`);
      }
      clearTimeout(internal.permitJoinTimer);
      try {
        // Closes the serial/TCP port even when start failed half-way (stop() skips it then).
        internal.adapter?.removeAllListeners();
        await internal.adapter?.stop();
      } catch {
        // already closed
      }
      // herdsman leaves answer waiters armed (e.g. the losing half of its Reset race, 5 s; any request
      // in flight when the link dropped, 10 s): end them now so no timer keeps the process alive and
      // no caller waits on a closed link.
      const a = internal.adapter as unknown as { waitress?: unknown; driver?: { waitress?: unknown; zdoWaitress?: unknown } } | undefined;
      for (const w of [a?.waitress, a?.driver?.waitress, a?.driver?.zdoWaitress]) drainWaitress(w);
    }
    if (herdsmanOwner === this) {
      herdsmanOwner = undefined;
      logSink = undefined;
    }
  }

  /** herdsman's join hook: an open PermitJoin window admits anyone; otherwise only associated or known devices. */
  private accepts(ieee: string): boolean {
    if (Date.now() < this.openJoinUntil) return true;
    return this.admitted.has(ieee) || this.seen.has(ieee);
  }

  private describe(ieee: string): AdapterDevice {
    const s = this.seen.get(ieee);
    return { address: ieee, deviceId: `urn:dev:ieee:${ieee.replace(/^0x/, '')}`, man: s?.man || undefined, mod: s?.modelId || undefined };
  }

  private remember(d: HDevice): void {
    this.seen.set(d.ieeeAddr, {
      nwk: d.networkAddress,
      modelId: d.modelID ?? '',
      man: d.manufacturerName ?? '',
      fwV: d.softwareBuildID || undefined,
      hwV: d.hardwareVersion !== undefined ? String(d.hardwareVersion) : undefined,
    });
  }

  private attach(d: HDevice): void {
    this.remember(d);
    this.failures.delete(d.ieeeAddr);
    const waiters = this.joinWaiters.get(d.ieeeAddr);
    if (waiters) for (const w of waiters) w(true);
    this.joinWaiters.delete(d.ieeeAddr);
    this.attachedSet.add(d.ieeeAddr);
    this.events?.attached(this.describe(d.ieeeAddr));
  }

  /** A message, announce or answer from a device: one reported detached for silence comes back. */
  private sawDevice(d: HDevice): void {
    this.failures.delete(d.ieeeAddr);
    if (this.attachedSet.has(d.ieeeAddr) || d.type === 'Coordinator') return;
    if (d.interviewState === 'SUCCESSFUL') this.attach(d);
  }

  private detach(ieee: string): void {
    this.clusterInfo.forEach((_v, k) => k.startsWith(`${ieee}/`) && this.clusterInfo.delete(k));
    if (!this.attachedSet.delete(ieee)) return;
    this.events?.detached(ieee);
  }

  /** A request the device did not answer: after `detachAfterFailures` in a row it counts as gone. */
  private missed(ieee: string): void {
    const n = (this.failures.get(ieee) ?? 0) + 1;
    this.failures.set(ieee, n);
    const limit = this.config.detachAfterFailures;
    if (limit > 0 && n >= limit && this.attachedSet.delete(ieee)) this.events?.detached(ieee);
  }

  private ready(): Controller {
    const c = this.controller;
    if (!c || this.link.state !== 'connected' || c.isAdapterDisconnected()) throw linkDown();
    return c;
  }

  private hdevice(ieee: string): HDevice {
    const d = this.ready().getDeviceByIeeeAddr(ieee);
    if (!d) throw new DmStatusError(461, 'ZIGBEE_NOT_ON_NETWORK', `ZigBee device ${ieee} is not on the network`);
    return d;
  }

  private hendpoint(ieee: string, ep: number): HEndpoint {
    const e = this.hdevice(ieee).getEndpoint(ep);
    if (!e) throw new DmStatusError(404, 'ZIGBEE_NO_ENDPOINT', `ZigBee device ${ieee} has no endpoint ${ep}`);
    return e;
  }

  /** Runs one native request under the concurrency cap and maps herdsman's failures to DM statuses. */
  private async native<T>(ieee: string, what: string, op: () => Promise<T>): Promise<T> {
    return this.limiter.run(async () => {
      if (this.stopped) throw linkDown();
      try {
        const r = await op();
        this.failures.delete(ieee);
        return r;
      } catch (err) {
        if (err instanceof GwError) throw err;
        const code = (err as { code?: unknown }).code;
        if (err instanceof Zcl.StatusError || (typeof code === 'number' && (err as Error).name?.includes('Status'))) throw zclStatusError(code as number, what);
        const msg = String((err as Error)?.message ?? err);
        if (!this.controller || this.link.state !== 'connected') throw linkDown();
        if (/timeout|timed out/i.test(msg)) {
          this.missed(ieee);
          throw noAnswer(ieee, what);
        }
        throw new DmStatusError(500, 'ZIGBEE_NATIVE_ERROR', `${what} failed: ${msg.slice(-200)}`);
      }
    });
  }

  private opts(): { timeout: number; disableRecovery: boolean; sendPolicy: 'immediate' } {
    return { timeout: this.config.responseTimeoutMs, disableRecovery: true, sendPolicy: 'immediate' };
  }

  /** Attribute types of a cluster: ZCL Discover Attributes once, then herdsman's library for the rest. */
  private async cluster(ieee: string, ep: number, cid: number): Promise<ClusterInfo> {
    const key = `${ieee}/${ep}/${cid}`;
    let info = this.clusterInfo.get(key);
    if (info?.discovered) return info;
    info = { attrs: new Map(), discovered: false };
    const e = this.hendpoint(ieee, ep);
    const frame = await this.native(ieee, `discover attributes of cluster 0x${h4(cid)}`, () =>
      e.zclCommand(cid, 'discover', { startAttrId: 0, maxAttrIds: 255 }, this.opts(), undefined, false),
    );
    const p = frame?.payload as { attrInfos?: { attrId: number; dataType: number }[] } | undefined;
    for (const a of p?.attrInfos ?? []) info.attrs.set(a.attrId, a.dataType);
    info.discovered = true;
    this.clusterInfo.set(key, info);
    return info;
  }

  /** The ZCL type of an attribute: discovered, from herdsman's cluster library, or learnt by reading it. */
  private async attrType(ieee: string, ep: number, cid: number, aid: number): Promise<number> {
    const known = this.clusterInfo.get(`${ieee}/${ep}/${cid}`)?.attrs.get(aid);
    if (known !== undefined) return known;
    const def = Object.values(Zcl.Utils.getCluster(cid, undefined, {}).attributes).find((a) => a.ID === aid);
    if (def) return def.type;
    return (await this.readAttr(ieee, ep, cid, aid)).type;
  }

  private async readAttr(ieee: string, ep: number, cid: number, aid: number): Promise<{ type: number; value: unknown }> {
    const e = this.hendpoint(ieee, ep);
    const what = `read of attribute 0x${h4(aid)} in cluster 0x${h4(cid)}`;
    const frame = await this.native(ieee, what, () => e.zclCommand(cid, 'read', [{ attrId: aid }], this.opts(), undefined, true));
    const rec = (frame?.payload as { attrId: number; status: number; dataType?: number; attrData?: unknown }[] | undefined)?.find((r) => r.attrId === aid);
    if (!rec || rec.dataType === undefined) throw new DmStatusError(404, 'ZIGBEE_UNSUPPORTED', `${what}: no value in the answer`);
    const key = `${ieee}/${ep}/${cid}`;
    const info = this.clusterInfo.get(key) ?? { attrs: new Map(), discovered: false };
    info.attrs.set(aid, rec.dataType);
    this.clusterInfo.set(key, info);
    return { type: rec.dataType, value: rec.attrData };
  }

  private async writeAttr(ieee: string, ep: number, cid: number, aid: number, value: PluginWrite): Promise<void> {
    const type = await this.attrType(ieee, ep, cid, aid);
    const data = fromDm(type, value.data, value.format);
    const e = this.hendpoint(ieee, ep);
    await this.native(ieee, `write of attribute 0x${h4(aid)} in cluster 0x${h4(cid)}`, () =>
      e.zclCommand(cid, 'write', [{ attrId: aid, dataType: type, attrData: data }], this.opts(), undefined, true),
    );
  }

  /** A cluster command's fields from Exec Item Data: a JSON object, or the ZCL payload in hex decoded by herdsman's codec. */
  private commandPayload(cid: number, cmd: { ID: number; name: string }, data: string | undefined): Record<string, unknown> {
    const s = (data ?? '').trim();
    let payload: Record<string, unknown>;
    if (s.startsWith('{')) {
      try {
        const v = JSON.parse(s) as unknown;
        if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
        payload = v as Record<string, unknown>;
      } catch (err) {
        throw new DmStatusError(400, 'ZIGBEE_BAD_VALUE', `command data is not a JSON object: ${(err as Error).message}`);
      }
    } else {
      const hex = s.replace(/\s+/g, '');
      if (!/^([0-9a-fA-F]{2})*$/.test(hex)) throw new DmStatusError(400, 'ZIGBEE_BAD_VALUE', 'command data is a JSON object or hex bytes');
      // ZCL header: cluster-specific, client→server, TSN 0, the command id; then the payload.
      const buf = Buffer.concat([Buffer.from([0x01, 0x00, cmd.ID]), Buffer.from(hex, 'hex')]);
      try {
        payload = Zcl.Frame.fromBuffer(cid, Zcl.Header.fromBuffer(buf), buf, {}).payload as Record<string, unknown>;
      } catch (err) {
        throw new DmStatusError(400, 'ZIGBEE_BAD_VALUE', `hex payload does not decode as ${cmd.name}: ${(err as Error).message}`);
      }
    }
    try {
      // Encode once locally so a missing field or an out-of-range value is a 400 before anything is sent.
      Zcl.Frame.create(Zcl.FrameType.SPECIFIC, Zcl.Direction.CLIENT_TO_SERVER, false, undefined, 0, cmd.ID, cid, payload as never, {}).toBuffer();
    } catch (err) {
      throw new DmStatusError(400, 'ZIGBEE_BAD_VALUE', `${cmd.name}: ${(err as Error).message}`);
    }
    return payload;
  }

  private async exec(ieee: string, ep: number, cid: number, cmd: { ID: number; name: string }, data: string | undefined): Promise<ExecResult> {
    const payload = this.commandPayload(cid, cmd, data);
    const e = this.hendpoint(ieee, ep);
    const what = `command ${cmd.name} (0x${h2(cmd.ID)}) of cluster 0x${h4(cid)}`;
    const rsp = await this.native(ieee, what, () => e.command(cid, cmd.ID, payload as never, this.opts()));
    const st = (rsp as { statusCode?: number; status?: number } | undefined)?.statusCode ?? (rsp as { status?: number } | undefined)?.status;
    if (typeof st === 'number' && st !== 0) throw zclStatusError(st, what);
    const out = rsp && !('statusCode' in rsp) ? JSON.stringify(rsp) : undefined;
    return out === undefined ? { status: 200 } : { status: 200, data: out };
  }

  private commandsOf(cid: number): { ID: number; name: string }[] {
    return Object.values(Zcl.Utils.getCluster(cid, undefined, {}).commands).map((c) => ({ ID: c.ID, name: c.name }));
  }

  device(address: string): TreePlugin | undefined {
    const ieee = hex16.test(address) ? normIeee(address) : undefined;
    if (!ieee) return undefined;
    if (!this.seen.has(ieee) && !this.controller?.getDeviceByIeeeAddr(ieee)) return undefined;
    let p = this.plugins.get(ieee);
    if (!p) this.plugins.set(ieee, (p = this.pluginFor(ieee)));
    return p;
  }

  private pluginFor(ieee: string): TreePlugin {
    const identity = () => {
      const s = this.seen.get(ieee);
      const d = this.describe(ieee);
      return { deviceId: d.deviceId, man: s?.man || 'unknown', mod: s?.modelId || 'unknown', fwV: s?.fwV, hwV: s?.hwV };
    };
    type Loc =
      | { k: 'root' | 'ieee' | 'nwk' | 'model' | 'man' | 'eps' }
      | { k: 'ep' | 'profile' | 'devid' | 'clusters'; ep: number }
      | { k: 'cluster' | 'attrs' | 'cmds'; ep: number; cid: number }
      | { k: 'attr'; ep: number; cid: number; aid: number }
      | { k: 'cmd'; ep: number; cid: number; cmd: { ID: number; name: string } };
    const epOf = (name: string): number | undefined => (/^\d{1,3}$/.test(name) && Number(name) >= 1 && Number(name) <= 240 ? Number(name) : undefined);
    const endpoint = (ep: number): HEndpoint | undefined => this.controller?.getDeviceByIeeeAddr(ieee)?.getEndpoint(ep);
    const hasCluster = (ep: number, cid: number): boolean => endpoint(ep)?.inputClusters.includes(cid) ?? false;
    // Path → node, checked against what the interview learnt (simple descriptors); unmapped → undefined (404).
    const locate = (path: string): Loc | undefined => {
      if (path === '') return { k: 'root' };
      const parts = path.split('/');
      const [a, b, c, d, e, f, g] = parts;
      if (parts.length === 1 && a === 'Endpoints') this.hdevice(ieee);
      if (parts.length === 1) return ({ IEEE: { k: 'ieee' }, NwkAddr: { k: 'nwk' }, ModelId: { k: 'model' }, ManufacturerName: { k: 'man' }, Endpoints: { k: 'eps' } } as Record<string, Loc>)[a!];
      if (a !== 'Endpoints') return undefined;
      // Below Endpoints the node set comes from the live network: 503 while the link is down, 461 once the device is gone.
      this.hdevice(ieee);
      const ep = epOf(b!);
      if (ep === undefined || !endpoint(ep)) return undefined;
      if (parts.length === 2) return { k: 'ep', ep };
      if (parts.length === 3) return c === 'ProfileId' ? { k: 'profile', ep } : c === 'DeviceId' ? { k: 'devid', ep } : c === 'Clusters' ? { k: 'clusters', ep } : undefined;
      if (c !== 'Clusters') return undefined;
      const cid = hexId(d!, 0xffff);
      if (cid === undefined || !hasCluster(ep, cid)) return undefined;
      if (parts.length === 4) return { k: 'cluster', ep, cid };
      if (parts.length === 5) return e === 'Attributes' ? { k: 'attrs', ep, cid } : e === 'Commands' ? { k: 'cmds', ep, cid } : undefined;
      if (parts.length !== 6) return g === undefined ? undefined : undefined;
      if (e === 'Attributes') {
        const aid = hexId(f!, 0xffff);
        return aid === undefined ? undefined : { k: 'attr', ep, cid, aid };
      }
      if (e === 'Commands') {
        const id = hexId(f!, 0xff);
        const cmd = id === undefined ? undefined : this.commandsOf(cid).find((x) => x.ID === id);
        return cmd ? { k: 'cmd', ep, cid, cmd } : undefined;
      }
      return undefined;
    };
    const node: PluginNodeView = { format: 'node', access: GET };
    const chr = (data: string): PluginNodeView => ({ format: 'chr', data, access: GET });
    const int = (n: number, title: string): PluginNodeView => ({ format: 'int', data: String(n), access: GET, title });
    const protocol: TreePlugin = {
      get: async (path) => {
        const l = locate(path);
        if (!l) return undefined;
        const s = this.seen.get(ieee);
        switch (l.k) {
          case 'ieee':
            return chr(ieee);
          case 'nwk':
            return int(this.controller?.getDeviceByIeeeAddr(ieee)?.networkAddress ?? s?.nwk ?? 0, 'ZigBee network address');
          case 'model':
            return chr(s?.modelId ?? '');
          case 'man':
            return chr(s?.man ?? '');
          case 'profile':
            return int(endpoint(l.ep)?.profileID ?? 0, 'application profile id (0x0104 = Home Automation)');
          case 'devid':
            return int(endpoint(l.ep)?.deviceID ?? 0, 'application device id');
          case 'attr': {
            const v = await this.readAttr(ieee, l.ep, l.cid, l.aid);
            return { format: dmFormat(v.type), type: `zcl:${typeName(v.type)}`, data: toDm(v.type, v.value), access: GET_REPLACE };
          }
          case 'cmd':
            return { format: 'null', access: EXEC, title: l.cmd.name };
          default:
            return node;
        }
      },
      // Metadata for the tree's checks before Replace/Exec: no ZCL read for an attribute (its type
      // comes from discovery, an earlier read or herdsman's ZCL library).
      describe: async (path, c) => {
        const l = locate(path);
        if (l?.k !== 'attr') return protocol.get(path, c);
        const type = this.clusterInfo.get(`${ieee}/${l.ep}/${l.cid}`)?.attrs.get(l.aid) ?? Object.values(Zcl.Utils.getCluster(l.cid, undefined, {}).attributes).find((a) => a.ID === l.aid)?.type;
        return type === undefined ? { format: 'chr', access: GET_REPLACE } : { format: dmFormat(type), type: `zcl:${typeName(type)}`, access: GET_REPLACE };
      },
      children: async (path) => {
        const l = locate(path);
        if (!l) return [];
        switch (l.k) {
          case 'root':
            return ['IEEE', 'NwkAddr', 'ModelId', 'ManufacturerName', 'Endpoints'];
          case 'eps':
            return (this.controller?.getDeviceByIeeeAddr(ieee)?.endpoints ?? []).map((e) => String(e.ID));
          case 'ep':
            return ['ProfileId', 'DeviceId', 'Clusters'];
          case 'clusters':
            return (endpoint(l.ep)?.inputClusters ?? []).map(h4);
          case 'cluster':
            return ['Attributes', 'Commands'];
          case 'attrs': {
            this.hdevice(ieee);
            const info = await this.cluster(ieee, l.ep, l.cid);
            return [...info.attrs.keys()].sort((x, y) => x - y).map(h4);
          }
          case 'cmds':
            return this.commandsOf(l.cid).map((c) => h2(c.ID));
          default:
            return [];
        }
      },
      replace: async (path, value) => {
        const l = locate(path);
        if (!l) throw new DmStatusError(404, 'ZIGBEE_UNMAPPED', `no node ZigBee/${path}`);
        if (l.k !== 'attr') throw new DmStatusError(405, 'ZIGBEE_READ_ONLY', `ZigBee/${path} cannot be replaced`);
        await this.writeAttr(ieee, l.ep, l.cid, l.aid, value);
        return { status: 200 };
      },
      exec: async (path, args: ExecArgs) => {
        const l = locate(path);
        if (!l) throw new DmStatusError(404, 'ZIGBEE_UNMAPPED', `no node ZigBee/${path}`);
        if (l.k !== 'cmd') throw new DmStatusError(405, 'ZIGBEE_NOT_EXECUTABLE', `ZigBee/${path} cannot be executed`);
        const data = typeof args.data === 'string' ? args.data : args.data === undefined ? undefined : Buffer.from(args.data as Uint8Array).toString('utf8');
        return this.exec(ieee, l.ep, l.cid, l.cmd, data);
      },
    };
    return deviceSubtree(identity, 'ZigBee', protocol);
  }

  getSettings(): Record<string, string> {
    return {
      PanID: String(this.panId),
      ExtPanID: this.extPanId,
      Channel: String(this.channel),
      NetworkKey: this.networkKey?.toString('base64') ?? '',
      Interface: this.iface ?? this.sim?.url ?? '',
    };
  }

  async configure(values: Record<string, string>): Promise<void> {
    const next = { extPanId: this.extPanId, channel: this.channel, key: this.networkKey, iface: this.iface };
    for (const [k, raw] of Object.entries(values)) {
      const v = raw.trim();
      switch (k) {
        case 'PanID':
          if (v === this.getSettings()['PanID']) break;
          throw new DmStatusError(405, 'ZIGBEE_PANID_READ_ONLY', 'the ZiGate coordinator chooses the PAN ID when it forms the network; it cannot be set');
        case 'ExtPanID':
          if (!hex16.test(v)) throw new DmStatusError(400, 'ZIGBEE_BAD_VALUE', 'ExtPanID is 16 hex digits');
          next.extPanId = v.replace(/^0x/i, '').toLowerCase();
          break;
        case 'Channel': {
          const n = Number(v);
          if (!Number.isInteger(n) || n < 11 || n > 26) throw new DmStatusError(400, 'ZIGBEE_BAD_VALUE', 'Channel is an integer 11..26');
          next.channel = n;
          break;
        }
        case 'NetworkKey': {
          // bin arrives base64; 32 hex digits are accepted too.
          const b = /^[0-9a-fA-F]{32}$/.test(v) ? Buffer.from(v, 'hex') : Buffer.from(v, 'base64');
          if (b.length !== 16) throw new DmStatusError(400, 'ZIGBEE_BAD_VALUE', 'NetworkKey is 16 bytes');
          next.key = b;
          break;
        }
        case 'Interface':
          if (!v) throw new DmStatusError(400, 'ZIGBEE_BAD_VALUE', 'Interface is a serial device path or tcp://host:port');
          next.iface = v;
          break;
        default:
          throw new DmStatusError(404, 'ZIGBEE_NO_SETTING', `no setting ${k}`);
      }
    }
    const reform = next.extPanId !== this.extPanId || (next.key !== undefined && this.networkKey !== undefined && !next.key.equals(this.networkKey));
    const changed = reform || next.channel !== this.channel || next.iface !== this.iface;
    this.extPanId = next.extPanId;
    this.channel = next.channel;
    this.iface = next.iface;
    if (next.key && (!this.networkKey || !next.key.equals(this.networkKey))) {
      this.networkKey = next.key;
      if (this.dataDir) writeFileSync(join(this.dataDir, 'network-key'), next.key.toString('hex'), { mode: 0o600 });
    }
    if (!changed || this.stopped || this.link.state === 'stopped') return;
    this.reform = reform;
    // Reconnect in the background: a channel change makes herdsman broadcast it and wait ~12 s.
    void (async () => {
      await this.link.stop();
      if (!this.stopped) await this.link.start();
    })();
  }

  /** Admits one device (AMode-006): joining opens for it alone, and it must join and be interviewed within joinTimeoutMs. */
  async associate(params: Record<string, string>): Promise<AdapterDevice> {
    const raw = (params['IEEEAddress'] ?? '').trim();
    if (!raw) throw new DmStatusError(412, 'ZIGBEE_NO_ADDRESS', 'IEEEAddress is required');
    if (!hex16.test(raw)) throw new DmStatusError(400, 'ZIGBEE_BAD_VALUE', 'IEEEAddress is 16 hex digits');
    const ieee = normIeee(raw);
    const code = params['InstallCode']?.replace(/[\s-]/g, '');
    let installCode: string | undefined;
    if (code) {
      if (!/^[0-9a-fA-F]+$/.test(code)) throw new DmStatusError(400, 'ZIGBEE_BAD_INSTALL_CODE', 'InstallCode is hex');
      try {
        checkInstallCode(Buffer.from(code, 'hex'), false);
      } catch {
        throw new DmStatusError(400, 'ZIGBEE_BAD_INSTALL_CODE', 'InstallCode has a wrong length or CRC');
      }
      installCode = code;
    }
    const c = this.ready();
    this.admitted.add(ieee);
    const known = c.getDeviceByIeeeAddr(ieee);
    if (known && known.interviewState === 'SUCCESSFUL' && this.attachedSet.has(ieee)) return this.describe(ieee);
    if (installCode) {
      try {
        await c.addInstallCode(`${ieee.slice(2)}|${installCode}|`);
      } catch (err) {
        this.admitted.delete(ieee);
        const msg = String((err as Error).message ?? err);
        if (/not supported/i.test(msg)) throw new DmStatusError(501, 'ZIGBEE_INSTALL_CODE_UNSUPPORTED', 'this coordinator (ZiGate) cannot take install codes; associate without InstallCode');
        throw new DmStatusError(500, 'ZIGBEE_INSTALL_CODE_FAILED', `the coordinator refused the install code: ${msg.replace(/[0-9a-fA-F]{12,}/g, '[REDACTED]')}`);
      }
    }
    const joined = new Promise<boolean>((resolve) => {
      let set = this.joinWaiters.get(ieee);
      if (!set) this.joinWaiters.set(ieee, (set = new Set()));
      const done = (ok: boolean): void => {
        clearTimeout(t);
        set!.delete(done);
        resolve(ok);
      };
      const t = setTimeout(() => done(false), this.config.joinTimeoutMs);
      set.add(done);
    });
    const seconds = Math.min(254, Math.max(1, Math.ceil(this.config.joinTimeoutMs / 1000)));
    await this.native(ieee, 'permit join', () => c.permitJoin(seconds));
    const ok = await joined;
    // Close joining again unless the operator opened a window of their own.
    if (Date.now() >= this.openJoinUntil && this.controller === c && !c.isAdapterDisconnected()) await c.permitJoin(0).catch(() => {});
    if (!ok) {
      if (this.stopped) throw linkDown();
      throw new DmStatusError(461, 'ZIGBEE_JOIN_TIMEOUT', `ZigBee device ${ieee} did not join within ${this.config.joinTimeoutMs} ms`);
    }
    return this.describe(ieee);
  }

  /** Removes a device: a ZDO Mgmt_Leave (herdsman `removeFromNetwork`); a device that does not answer is forgotten anyway. */
  async dissociate(address: string): Promise<void> {
    if (!hex16.test(address)) throw new DmStatusError(404, 'ZIGBEE_UNKNOWN', `no ZigBee device ${address}`);
    const ieee = normIeee(address);
    const c = this.ready();
    this.admitted.delete(ieee);
    const d = c.getDeviceByIeeeAddr(ieee);
    if (!d) {
      if (!this.seen.has(ieee)) throw new DmStatusError(404, 'ZIGBEE_UNKNOWN', `no ZigBee device ${ieee}`);
      this.detach(ieee);
      return;
    }
    try {
      await this.limiter.run(() =>
        Promise.race([d.removeFromNetwork(), new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), this.config.responseTimeoutMs).unref())]),
      );
    } catch {
      // It did not confirm its leave: forget it, so it is refused if it comes back unadmitted.
      if (c.getDeviceByIeeeAddr(ieee)) d.removeFromDatabase();
    }
    this.seen.delete(ieee);
    this.plugins.delete(ieee);
    this.detach(ieee);
  }

  /**
   * Native multicast for fanout (contract `multicast`): an Exec of a cluster command or a Replace of
   * an attribute on the same endpoint/cluster of several devices goes out as one ZigBee group cast.
   * The adapter manages groups in `groupIds`: one group per member set, created on first use by
   * adding each member endpoint to it (genGroups Add, answered per device); members that fail to join
   * it are left out and go device by device. Group casts are unacknowledged (ZCL sends no response
   * to multicasts), so 200 means "sent to a group the device confirmed it belongs to".
   */
  async multicast(req: MulticastRequest): Promise<MulticastResult> {
    const out: MulticastResult = new Map();
    const m = /^ZigBee\/Endpoints\/(\d{1,3})\/Clusters\/([^/]+)\/(Attributes|Commands)\/([^/]+)$/.exec(req.path);
    if (!m || req.addresses.length < 2) return out;
    const c = this.controller;
    if (!c || this.link.state !== 'connected') return out; // per-device legs report the 503
    const ep = Number(m[1]);
    const cid = hexId(m[2]!, 0xffff);
    const id = hexId(m[4]!, m[3] === 'Commands' ? 0xff : 0xffff);
    if (cid === undefined || id === undefined) return out;
    const isCmd = m[3] === 'Commands';
    if ((req.kind === 'Exec') !== isCmd) return out;
    const members: { ieee: string; e: HEndpoint }[] = [];
    for (const a of req.addresses) {
      if (!hex16.test(a)) continue;
      const ieee = normIeee(a);
      const e = c.getDeviceByIeeeAddr(ieee)?.getEndpoint(ep);
      if (e && this.attachedSet.has(ieee) && e.inputClusters.includes(cid) && e.inputClusters.includes(0x0004)) members.push({ ieee, e });
    }
    if (members.length < 2) return out;
    // Validate and encode once: a bad value is each leg's 400, so leave them to the per-device path.
    let send: (g: HGroup) => Promise<void>;
    try {
      if (isCmd) {
        const cmd = this.commandsOf(cid).find((x) => x.ID === id);
        if (!cmd) return out;
        const payload = this.commandPayload(cid, cmd, req.data);
        send = (g) => g.command(cid, cmd.ID, payload as never, {});
      } else {
        const type = this.clusterInfo.get(`${members[0]!.ieee}/${ep}/${cid}`)?.attrs.get(id) ?? Object.values(Zcl.Utils.getCluster(cid, undefined, {}).attributes).find((a) => a.ID === id)?.type;
        if (type === undefined) return out;
        const data = fromDm(type, req.data, req.format);
        send = (g) => g.write(cid, { [id]: { value: data, type } } as never, {});
      }
    } catch {
      return out;
    }
    const group = await this.groupFor(c, members);
    if (!group) return out;
    const inGroup = members.filter((x) => group.members.has(x.ieee));
    if (inGroup.length < 2) return out;
    await this.limiter.run(async () => {
      await send(group.group);
      this.multicasts++;
    });
    for (const x of inGroup) out.set(x.ieee, { status: 200 });
    return out;
  }

  /** The managed group for these members: an existing one with exactly them, or a new one they are added to. */
  private async groupFor(c: Controller, members: { ieee: string; e: HEndpoint }[]): Promise<{ group: HGroup; members: Set<string> } | undefined> {
    const { first, count } = this.config.groupIds;
    const want = new Set(members.map((x) => `${x.ieee}/${x.e.ID}`));
    const key = (g: HGroup): Set<string> => new Set([...g.members].map((e) => `${e.deviceIeeeAddress}/${e.ID}`));
    let free: number | undefined;
    for (let id = first; id < first + count; id++) {
      const g = c.getGroupByID(id);
      if (!g) {
        free ??= id;
        continue;
      }
      const have = key(g);
      if (have.size === want.size && [...want].every((k) => have.has(k))) return { group: g, members: new Set(members.map((x) => x.ieee)) };
    }
    if (free === undefined) return undefined; // every managed id in use: fall back to device by device
    const g = c.createGroup(free);
    const ok = new Set<string>();
    await Promise.all(
      members.map((x) =>
        this.native(x.ieee, `join group 0x${h4(free!)}`, () => x.e.addToGroup(g))
          .then(() => ok.add(x.ieee))
          .catch(() => {}),
      ),
    );
    return { group: g, members: ok };
  }
}
