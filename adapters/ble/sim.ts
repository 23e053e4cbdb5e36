/**
 * A simulated Bluetooth LE world behind noble's bindings interface: peripherals that advertise
 * (local name, service UUIDs, RSSI), accept connections, expose GATT services, characteristics and
 * descriptors, answer reads and writes, send notifications and pair with a passkey. The adapter
 * drives it through noble's real Noble / Peripheral / Service / Characteristic objects
 * (`nobleWith(world.createBindings())`), so everything above the bindings is the library's own code.
 *
 * It speaks noble's bindings protocol as the HCI bindings do: calls in (`startScanning`, `connect`,
 * `discoverServices`, `read`, `write`, `notify`, `pair`, ...), events out (`discover`, `connect`,
 * `servicesDiscover`, `characteristicsDiscover`, `read` with `isNotification`, `write`, `notify`,
 * `pair`, `disconnect`, `stateChange`), UUIDs in noble's form (`2a19`, 32-hex for 128-bit). Errors
 * carry the ATT error code (`attError`) or SMP pairing failure reason (`smpReason`) a real peripheral
 * would send, where the HCI bindings would give an empty value.
 *
 * Injectable behaviours (per address, or `*` for all): latency, failing connections, GATT requests
 * never answered, the link dropping in the middle of the next request, refused writes; and
 * `vanish` (stops advertising, drops its link, no longer connectable), `comeBack`, `setRadio(false)`
 * (the controller powers off). The world counts connections, so tests can assert the peak number of
 * simultaneous links the adapter opened.
 *
 * Kinds:
 * - `sensor`: Environmental Sensing 0x181A (temperature 0x2A6E sint16 0.01 °C, humidity 0x2A6F
 *   uint16 0.01 %, both read+notify), Battery 0x180F (0x2A19 read+notify), Device Information 0x180A;
 * - `light`: a vendor 128-bit service with on/off (read, write, notify), level (read, write) and a
 *   write-only identify characteristic, plus Device Information;
 * - `lock`: a vendor service whose state characteristic needs an authenticated link (pairing with
 *   the lock's 6-digit passkey; ATT error 0x05 otherwise), plus Battery and Device Information.
 */
import { EventEmitter } from 'node:events';
import { z } from 'zod';
import type { NobleBindings } from './noble.ts';

/** Kinds of simulated peripheral. */
export const BLE_SIM_KINDS = ['sensor', 'light', 'lock'] as const;
/** A kind of simulated peripheral. */
export type BleSimKind = (typeof BLE_SIM_KINDS)[number];

/** The light's vendor service and characteristics (128-bit, noble form). */
export const LIGHT_SERVICE = '7a1e0001b5a34f3a9c2e4d5f6a7b8c9d';
export const LIGHT_ONOFF = '7a1e0002b5a34f3a9c2e4d5f6a7b8c9d';
export const LIGHT_LEVEL = '7a1e0003b5a34f3a9c2e4d5f6a7b8c9d';
export const LIGHT_IDENTIFY = '7a1e0004b5a34f3a9c2e4d5f6a7b8c9d';
/** The lock's vendor service and its (authenticated) state characteristic. */
export const LOCK_SERVICE = '7a1e1001b5a34f3a9c2e4d5f6a7b8c9d';
export const LOCK_STATE = '7a1e1002b5a34f3a9c2e4d5f6a7b8c9d';

const MAC = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i;

/** One simulated peripheral in a configuration. */
export const bleSimPeripheralSchema = z.object({
  address: z.string().regex(MAC, 'a MAC address aa:bb:cc:dd:ee:ff'),
  kind: z.enum(BLE_SIM_KINDS).default('sensor'),
  /** Advertised local name (default from the kind and address). */
  name: z.string().min(1).optional(),
  /** A 6-digit passkey the peripheral requires for pairing. */
  passkey: z.string().regex(/^\d{6}$/).optional(),
  rssi: z.number().int().min(-127).max(20).default(-60),
  /** Advertising from the start (false: out of range until `comeBack`). */
  advertising: z.boolean().default(true),
});

/** The simulated world in a BLE adapter configuration (`sim:`). */
export const bleSimConfigSchema = z
  .object({
    peripherals: z.array(bleSimPeripheralSchema).default([]),
    /** Milliseconds every radio exchange takes (connect, each GATT request). */
    latencyMs: z.number().min(0).default(0),
    /** How often each peripheral advertises while the radio scans. */
    advertiseIntervalMs: z.number().int().min(5).default(50),
  })
  .default({ peripherals: [], latencyMs: 0, advertiseIntervalMs: 50 });
/** A validated simulated world configuration. */
export type BleSimConfig = z.output<typeof bleSimConfigSchema>;

/** Behaviour injected into one peripheral (or, with `*`, every one). */
export interface BleSimBehaviour {
  /** Extra milliseconds per exchange. */
  latencyMs?: number;
  /** Connection attempts fail (HCI status 0x3E, connection failed to be established). */
  failConnect?: boolean;
  /** GATT requests are never answered (the central's own timeout must end them). */
  silent?: boolean;
  /** The link drops during the next GATT request (one shot: cleared once it happened). */
  dropOnNextOp?: boolean;
  /** Writes are refused with this ATT error code (true: 0x80, an application error). */
  refuseWrites?: boolean | number;
}

interface SimCharacteristic {
  uuid: string;
  properties: string[];
  value: Buffer;
  /** Needs an authenticated (paired) link: ATT 0x05 otherwise. */
  secure: boolean;
  descriptors: Map<string, Buffer>;
  /** The peripheral's reaction to a written value. */
  onWrite?: (v: Buffer) => void;
}

interface SimService {
  uuid: string;
  characteristics: Map<string, SimCharacteristic>;
}

/** The simulated state of a peripheral (what a technician would see on the device). */
export interface BleSimPeripheral {
  address: string;
  /** noble's peripheral id (the address without colons). */
  id: string;
  kind: BleSimKind;
  name: string;
  rssi: number;
  passkey: string | undefined;
  /** In range and advertising. */
  advertising: boolean;
  /** In range at all (false after `vanish`: not connectable either). */
  present: boolean;
  services: Map<string, SimService>;
  reads: number;
  writes: number;
}

/** An error a simulated peripheral sends: an ATT error response or an SMP pairing failure. */
export class BleSimError extends Error {
  constructor(
    message: string,
    readonly attError?: number,
    readonly smpReason?: number,
  ) {
    super(message);
    this.name = 'BleSimError';
  }
}

const chr = (uuid: string, properties: string[], value: Buffer, extra: Partial<SimCharacteristic> = {}): SimCharacteristic => {
  const descriptors = new Map<string, Buffer>();
  // A Client Characteristic Configuration descriptor on every characteristic that can notify.
  if (properties.includes('notify') || properties.includes('indicate')) descriptors.set('2902', Buffer.from([0, 0]));
  return { uuid, properties, value, secure: false, descriptors, ...extra };
};
const svc = (uuid: string, chars: SimCharacteristic[]): SimService => ({ uuid, characteristics: new Map(chars.map((c) => [c.uuid, c])) });
const u16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n);
  return b;
};
const s16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeInt16LE(n);
  return b;
};
const text = (s: string): Buffer => Buffer.from(s, 'utf8');

function deviceInfo(model: string): SimService {
  return svc('180a', [
    chr('2a29', ['read'], text('gwmo-sim')),
    chr('2a24', ['read'], text(model)),
    chr('2a25', ['read'], text('SN-0001')),
    chr('2a26', ['read'], text('1.2.0')),
    chr('2a27', ['read'], text('rev-B')),
  ]);
}

function gapService(name: string): SimService {
  return svc('1800', [chr('2a00', ['read'], text(name)), chr('2a01', ['read'], u16(0))]);
}

/** The GATT database of a peripheral kind. */
function gattOf(kind: BleSimKind, name: string, notifyChange: (svc: string, chr: string) => void): Map<string, SimService> {
  const list: SimService[] = [gapService(name)];
  if (kind === 'sensor') {
    const temp = chr('2a6e', ['read', 'notify'], s16(2150));
    temp.descriptors.set('2901', text('room temperature'));
    list.push(
      svc('181a', [temp, chr('2a6f', ['read', 'notify'], u16(4520))]),
      svc('180f', [chr('2a19', ['read', 'notify'], Buffer.from([87]))]),
      deviceInfo('ENV-1'),
    );
  } else if (kind === 'light') {
    const onoff = chr(LIGHT_ONOFF, ['read', 'write', 'notify'], Buffer.from([0]));
    onoff.onWrite = () => notifyChange(LIGHT_SERVICE, LIGHT_ONOFF);
    list.push(
      svc(LIGHT_SERVICE, [onoff, chr(LIGHT_LEVEL, ['read', 'write'], Buffer.from([100])), chr(LIGHT_IDENTIFY, ['writeWithoutResponse'], Buffer.alloc(1))]),
      deviceInfo('LAMP-2'),
    );
  } else {
    const state = chr(LOCK_STATE, ['read', 'write', 'notify'], Buffer.from([1]), { secure: true });
    state.onWrite = () => notifyChange(LOCK_SERVICE, LOCK_STATE);
    list.push(svc(LOCK_SERVICE, [state]), svc('180f', [chr('2a19', ['read'], Buffer.from([64]))]), deviceInfo('LOCK-3'));
  }
  return new Map(list.map((s) => [s.uuid, s]));
}

/** The simulated radio world: peripherals, their behaviours, and the bindings (radios) attached to it. */
export class BleSimulator {
  private readonly peripherals = new Map<string, BleSimPeripheral>();
  private readonly behaviours = new Map<string, BleSimBehaviour>();
  private readonly radios = new Set<SimBindings>();
  /** Links open now, across every radio. */
  private readonly links = new Set<string>();
  /** The most links open at once since the last `resetPeak`. */
  peakConnections = 0;
  /** Connection attempts (successful or not). */
  connectAttempts = 0;
  /** Peripheral ids bonded with the gateway's radio (pairing keys kept on both sides, across reconnects). */
  readonly bonds = new Set<string>();
  /** Whether the controller is powered (false: every radio reports `poweredOff`). */
  radioOn = true;
  latencyMs: number;
  readonly advertiseIntervalMs: number;

  constructor(config: Partial<BleSimConfig> = {}) {
    const c = bleSimConfigSchema.parse(config);
    this.latencyMs = c.latencyMs;
    this.advertiseIntervalMs = c.advertiseIntervalMs;
    for (const p of c.peripherals) this.add(p);
  }

  /** Adds a peripheral to the world. */
  add(spec: z.input<typeof bleSimPeripheralSchema>): BleSimPeripheral {
    const p = bleSimPeripheralSchema.parse(spec);
    const address = p.address.toLowerCase();
    const name = p.name ?? `${p.kind === 'sensor' ? 'Thermo' : p.kind === 'light' ? 'Lamp' : 'Lock'}-${address.slice(-5).replace(':', '')}`;
    const state: BleSimPeripheral = {
      address,
      id: address.replace(/:/g, ''),
      kind: p.kind,
      name,
      rssi: p.rssi,
      passkey: p.passkey,
      advertising: p.advertising,
      present: true,
      services: new Map(),
      reads: 0,
      writes: 0,
    };
    state.services = gattOf(p.kind, name, (s, c) => this.notifyValue(address, s, c));
    this.peripherals.set(address, state);
    return state;
  }

  /** Creates a radio (noble bindings) in this world. */
  createBindings(): SimBindings {
    return new SimBindings(this);
  }

  /** The peripheral at an address (any case). */
  inspect(address: string): BleSimPeripheral | undefined {
    return this.peripherals.get(address.toLowerCase());
  }

  /** All peripherals. */
  list(): BleSimPeripheral[] {
    return [...this.peripherals.values()];
  }

  /** Whether a peripheral is bonded (paired) with the gateway's radio. */
  bonded(address: string): boolean {
    return this.bonds.has(address.replace(/:/g, '').toLowerCase());
  }

  /** Links open now. */
  get connections(): number {
    return this.links.size;
  }

  /** Starts counting the peak again from the links open now. */
  resetPeak(): void {
    this.peakConnections = this.links.size;
  }

  /** Injects a behaviour into one peripheral, or every one with `*`; undefined clears it. */
  behave(address: string, b: BleSimBehaviour | undefined): void {
    const key = address === '*' ? '*' : address.toLowerCase();
    if (b) this.behaviours.set(key, b);
    else this.behaviours.delete(key);
  }

  /** The behaviour in force for a peripheral. */
  behaviour(address: string): BleSimBehaviour {
    return this.behaviours.get(address) ?? this.behaviours.get('*') ?? {};
  }

  /** The peripheral goes out of range: it stops advertising, its links drop, connecting it never completes. */
  vanish(address: string): void {
    const p = this.inspect(address);
    if (!p) return;
    p.present = false;
    p.advertising = false;
    for (const r of this.radios) r.linkLost(p.id, 0x08); // HCI 0x08: connection timeout
  }

  /** The peripheral is back in range and advertising. */
  comeBack(address: string): void {
    const p = this.inspect(address);
    if (!p) return;
    p.present = true;
    p.advertising = true;
  }

  /** Powers the controller off or on (every radio sees the state change, as noble does). */
  setRadio(on: boolean): void {
    this.radioOn = on;
    for (const r of this.radios) r.powerChanged();
  }

  /** Sets a characteristic's value from the device side (a new reading, a button) and notifies subscribers. */
  setValue(address: string, serviceUuid: string, characteristicUuid: string, value: Buffer): void {
    const c = this.inspect(address)?.services.get(serviceUuid)?.characteristics.get(characteristicUuid);
    if (!c) throw new Error(`no characteristic ${serviceUuid}/${characteristicUuid} on ${address}`);
    c.value = Buffer.from(value);
    this.notifyValue(address.toLowerCase(), serviceUuid, characteristicUuid);
  }

  /** A sensor's new temperature reading (°C), notified to subscribers. */
  setTemperature(address: string, celsius: number): void {
    this.setValue(address, '181a', '2a6e', s16(Math.round(celsius * 100)));
  }

  /** A light's on/off state as the device shows it. */
  lightOn(address: string): boolean {
    return (this.inspect(address)?.services.get(LIGHT_SERVICE)?.characteristics.get(LIGHT_ONOFF)?.value[0] ?? 0) !== 0;
  }

  private notifyValue(address: string, serviceUuid: string, characteristicUuid: string): void {
    for (const r of this.radios) r.notifyValue(address.replace(/:/g, ''), serviceUuid, characteristicUuid);
  }

  /** @internal bookkeeping of radios and links */
  attach(r: SimBindings): void {
    this.radios.add(r);
  }
  /** @internal */
  detach(r: SimBindings): void {
    this.radios.delete(r);
  }
  /** @internal */
  linkUp(key: string): void {
    this.links.add(key);
    this.peakConnections = Math.max(this.peakConnections, this.links.size);
  }
  /** @internal */
  linkDown(key: string): void {
    this.links.delete(key);
  }
  /** @internal */
  byId(id: string): BleSimPeripheral | undefined {
    return this.peripherals.get(id.replace(/(..)(?!$)/g, '$1:'));
  }
}

let radioSeq = 0;

/**
 * One radio (noble bindings) in a simulated world. Every timer it starts is tracked and cleared by
 * `stop`, so a stopped Noble leaves nothing behind.
 */
export class SimBindings extends EventEmitter implements NobleBindings {
  private readonly seq = ++radioSeq;
  private readonly timers = new Set<NodeJS.Timeout>();
  private scanTimer: NodeJS.Timeout | undefined;
  private scanning = false;
  private scanFilter: string[] = [];
  private started = false;
  private readonly connected = new Set<string>();
  private readonly connecting = new Map<string, NodeJS.Timeout | undefined>();
  private readonly subscriptions = new Set<string>();
  private readonly passkeys = new Map<string, string>();

  constructor(private readonly world: BleSimulator) {
    super();
  }

  private after(ms: number, fn: () => void): NodeJS.Timeout {
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (this.started) fn();
    }, ms);
    this.timers.add(t);
    return t;
  }

  private latency(p: BleSimPeripheral | undefined): number {
    return this.world.latencyMs + (p ? (this.world.behaviour(p.address).latencyMs ?? 0) : 0);
  }

  private key(id: string): string {
    return `${this.seq}:${id}`;
  }

  start(): void {
    this.started = true;
    this.world.attach(this);
    this.after(0, () => {
      this.emit('addressChange', '00:1a:7d:da:71:00');
      this.emit('stateChange', this.world.radioOn ? 'poweredOn' : 'poweredOff');
    });
  }

  stop(): void {
    for (const id of this.connected) this.world.linkDown(this.key(id));
    this.connected.clear();
    this.connecting.clear();
    this.subscriptions.clear();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    if (this.scanTimer) clearInterval(this.scanTimer);
    this.scanTimer = undefined;
    this.scanning = false;
    this.started = false;
    this.world.detach(this);
  }

  reset(): void {}

  /** @internal the world's controller power changed */
  powerChanged(): void {
    if (!this.started) return;
    if (!this.world.radioOn) {
      for (const id of [...this.connected]) this.dropLink(id, 0x16, false);
      this.stopScanTimer();
    }
    this.emit('stateChange', this.world.radioOn ? 'poweredOn' : 'poweredOff');
  }

  setScanParameters(): void {
    this.after(0, () => this.emit('scanParametersSet'));
  }

  startScanning(serviceUuids: string[] | undefined, allowDuplicates: boolean | undefined): void {
    this.scanFilter = (serviceUuids ?? []).map((u) => u.toLowerCase());
    if (!this.scanning) {
      this.scanning = true;
      const tick = (): void => this.advertise();
      this.scanTimer = setInterval(tick, this.world.advertiseIntervalMs);
      this.after(0, tick);
    }
    this.after(0, () => this.emit('scanStart', !allowDuplicates));
  }

  private stopScanTimer(): void {
    if (this.scanTimer) clearInterval(this.scanTimer);
    this.scanTimer = undefined;
    this.scanning = false;
  }

  stopScanning(): void {
    this.stopScanTimer();
    this.after(0, () => this.emit('scanStop'));
  }

  /** One advertising interval: every peripheral in range, advertising and not connected to us is heard. */
  private advertise(): void {
    if (!this.started || !this.world.radioOn) return;
    for (const p of this.world.list()) {
      if (!p.present || !p.advertising || this.connected.has(p.id)) continue;
      const services = [...p.services.keys()].filter((u) => u !== '1800' && u !== '180a');
      if (this.scanFilter.length && !services.some((u) => this.scanFilter.includes(u))) continue;
      // RSSI wanders by a few dB between advertisements, as a real one does.
      const rssi = p.rssi + ((Date.now() >> 6) % 5) - 2;
      const advertisement = { localName: p.name, serviceUuids: services, txPowerLevel: 0, manufacturerData: Buffer.from([0xff, 0xff, p.kind.length]), serviceData: [], serviceSolicitationUuids: [] };
      this.emit('discover', p.id, p.address, 'public', true, advertisement, rssi, true);
    }
  }

  connect(id: string): void {
    const p = this.world.byId(id);
    this.world.connectAttempts++;
    if (this.connected.has(id)) {
      this.after(0, () => this.emit('connect', id, new Error('already connected')));
      return;
    }
    // A peripheral out of range never answers: the LE Create Connection stays pending until cancelled.
    if (!p || !p.present) {
      this.connecting.set(id, undefined);
      return;
    }
    const t = this.after(this.latency(p), () => {
      this.connecting.delete(id);
      if (!p.present) return;
      if (this.world.behaviour(p.address).failConnect) {
        this.emit('connect', id, new BleSimError('Connection Failed to be Established (0x3e)'));
        return;
      }
      this.connected.add(id);
      this.world.linkUp(this.key(id));
      this.emit('connect', id, null);
    });
    this.connecting.set(id, t);
  }

  cancelConnect(id: string): void {
    const t = this.connecting.get(id);
    if (t) clearTimeout(t);
    this.connecting.delete(id);
  }

  disconnect(id: string): void {
    if (this.connecting.has(id)) {
      this.cancelConnect(id);
      return;
    }
    if (!this.connected.has(id)) return;
    this.after(this.latency(this.world.byId(id)), () => this.dropLink(id, 0x16, true));
  }

  /** @internal the world dropped a peripheral's link (it vanished) */
  linkLost(id: string, reason: number): void {
    if (this.connected.has(id)) this.dropLink(id, reason, true);
    this.cancelConnect(id);
  }

  private dropLink(id: string, reason: number, emit: boolean): void {
    if (!this.connected.delete(id)) return;
    this.world.linkDown(this.key(id));
    for (const s of [...this.subscriptions]) if (s.startsWith(`${id}/`)) this.subscriptions.delete(s);
    if (emit) this.emit('disconnect', id, reason);
  }

  updateRssi(id: string): void {
    const p = this.world.byId(id);
    this.after(this.latency(p), () => this.emit('rssiUpdate', id, p?.rssi ?? -127));
  }

  /**
   * Runs one GATT request on a connected peripheral: behaviours first (silence, the link dropping
   * mid-request), then the request after the radio latency.
   */
  private gatt(id: string, answer: (p: BleSimPeripheral) => void): void {
    const p = this.world.byId(id);
    if (!p || !this.connected.has(id)) return; // no link: nothing goes over the air
    const b = this.world.behaviour(p.address);
    if (b.silent) return;
    if (b.dropOnNextOp) {
      const current = this.world.behaviour(p.address);
      this.world.behave(p.address, { ...current, dropOnNextOp: false });
      this.after(this.latency(p), () => this.dropLink(id, 0x08, true));
      return;
    }
    this.after(this.latency(p), () => {
      if (this.connected.has(id)) answer(p);
    });
  }

  discoverServices(id: string, uuids?: string[]): void {
    this.gatt(id, (p) => {
      const all = [...p.services.keys()];
      this.emit('servicesDiscover', id, uuids?.length ? all.filter((u) => uuids.includes(u)) : all);
    });
  }

  discoverIncludedServices(id: string, serviceUuid: string): void {
    this.gatt(id, () => this.emit('includedServicesDiscover', id, serviceUuid, []));
  }

  discoverCharacteristics(id: string, serviceUuid: string, uuids?: string[]): void {
    this.gatt(id, (p) => {
      const s = p.services.get(serviceUuid);
      const list = [...(s?.characteristics.values() ?? [])].filter((c) => !uuids?.length || uuids.includes(c.uuid));
      this.emit('characteristicsDiscover', id, serviceUuid, list.map((c) => ({ uuid: c.uuid, properties: [...c.properties] })));
    });
  }

  discoverDescriptors(id: string, serviceUuid: string, characteristicUuid: string): void {
    this.gatt(id, (p) => {
      const c = p.services.get(serviceUuid)?.characteristics.get(characteristicUuid);
      this.emit('descriptorsDiscover', id, serviceUuid, characteristicUuid, [...(c?.descriptors.keys() ?? [])]);
    });
  }

  private characteristic(p: BleSimPeripheral, serviceUuid: string, characteristicUuid: string): SimCharacteristic | BleSimError {
    const c = p.services.get(serviceUuid)?.characteristics.get(characteristicUuid);
    if (!c) return new BleSimError('ATT error 0x0a: attribute not found', 0x0a);
    if (c.secure && !this.world.bonds.has(p.id)) return new BleSimError('ATT error 0x05: insufficient authentication', 0x05);
    return c;
  }

  read(id: string, serviceUuid: string, characteristicUuid: string): void {
    this.gatt(id, (p) => {
      const c = this.characteristic(p, serviceUuid, characteristicUuid);
      if (c instanceof BleSimError) return this.emit('read', id, serviceUuid, characteristicUuid, Buffer.alloc(0), false, c);
      if (!c.properties.includes('read')) {
        return this.emit('read', id, serviceUuid, characteristicUuid, Buffer.alloc(0), false, new BleSimError('ATT error 0x02: read not permitted', 0x02));
      }
      p.reads++;
      this.emit('read', id, serviceUuid, characteristicUuid, Buffer.from(c.value), false);
    });
  }

  write(id: string, serviceUuid: string, characteristicUuid: string, data: Buffer, withoutResponse: boolean): void {
    this.gatt(id, (p) => {
      const c = this.characteristic(p, serviceUuid, characteristicUuid);
      if (c instanceof BleSimError) return this.emit('write', id, serviceUuid, characteristicUuid, c);
      const refuse = this.world.behaviour(p.address).refuseWrites;
      if (!c.properties.includes(withoutResponse ? 'writeWithoutResponse' : 'write') && !c.properties.includes('write')) {
        return this.emit('write', id, serviceUuid, characteristicUuid, new BleSimError('ATT error 0x03: write not permitted', 0x03));
      }
      if (refuse) {
        const code = typeof refuse === 'number' ? refuse : 0x80;
        return this.emit('write', id, serviceUuid, characteristicUuid, new BleSimError(`ATT error 0x${code.toString(16)}: write refused by the peripheral`, code));
      }
      if (c.value.length && data.length !== c.value.length && c.uuid !== '2a00') {
        return this.emit('write', id, serviceUuid, characteristicUuid, new BleSimError('ATT error 0x0d: invalid attribute value length', 0x0d));
      }
      p.writes++;
      c.value = Buffer.from(data);
      this.emit('write', id, serviceUuid, characteristicUuid);
      c.onWrite?.(c.value);
    });
  }

  broadcast(id: string, serviceUuid: string, characteristicUuid: string, broadcast: boolean): void {
    this.gatt(id, () => this.emit('broadcast', id, serviceUuid, characteristicUuid, broadcast));
  }

  notify(id: string, serviceUuid: string, characteristicUuid: string, notify: boolean): void {
    this.gatt(id, (p) => {
      const c = this.characteristic(p, serviceUuid, characteristicUuid);
      if (c instanceof BleSimError) return this.emit('notify', id, serviceUuid, characteristicUuid, false, c);
      if (!c.properties.includes('notify') && !c.properties.includes('indicate')) {
        return this.emit('notify', id, serviceUuid, characteristicUuid, false, new BleSimError('ATT error 0x03: notifications not supported', 0x03));
      }
      const k = `${id}/${serviceUuid}/${characteristicUuid}`;
      if (notify) this.subscriptions.add(k);
      else this.subscriptions.delete(k);
      c.descriptors.set('2902', Buffer.from([notify ? 1 : 0, 0]));
      this.emit('notify', id, serviceUuid, characteristicUuid, notify);
    });
  }

  /** @internal a characteristic changed on the device: notify it if we subscribed */
  notifyValue(id: string, serviceUuid: string, characteristicUuid: string): void {
    if (!this.started || !this.subscriptions.has(`${id}/${serviceUuid}/${characteristicUuid}`)) return;
    const p = this.world.byId(id);
    const c = p?.services.get(serviceUuid)?.characteristics.get(characteristicUuid);
    if (!p || !c) return;
    const value = Buffer.from(c.value);
    this.after(this.latency(p), () => {
      if (this.connected.has(id)) this.emit('read', id, serviceUuid, characteristicUuid, value, true);
    });
  }

  readValue(id: string, serviceUuid: string, characteristicUuid: string, descriptorUuid: string): void {
    this.gatt(id, (p) => {
      const d = p.services.get(serviceUuid)?.characteristics.get(characteristicUuid)?.descriptors.get(descriptorUuid);
      this.emit('valueRead', id, serviceUuid, characteristicUuid, descriptorUuid, d ?? Buffer.alloc(0), d ? undefined : new BleSimError('ATT error 0x0a', 0x0a));
    });
  }

  writeValue(id: string, serviceUuid: string, characteristicUuid: string, descriptorUuid: string, data: Buffer): void {
    this.gatt(id, (p) => {
      const c = p.services.get(serviceUuid)?.characteristics.get(characteristicUuid);
      if (c?.descriptors.has(descriptorUuid)) c.descriptors.set(descriptorUuid, Buffer.from(data));
      this.emit('valueWrite', id, serviceUuid, characteristicUuid, descriptorUuid, c ? undefined : new BleSimError('ATT error 0x0a', 0x0a));
    });
  }

  readHandle(id: string, handle: number): void {
    this.gatt(id, () => this.emit('handleRead', id, handle, Buffer.alloc(0), new BleSimError('ATT error 0x01: invalid handle', 0x01)));
  }

  writeHandle(id: string, handle: number): void {
    this.gatt(id, () => this.emit('handleWrite', id, handle, new BleSimError('ATT error 0x01: invalid handle', 0x01)));
  }

  addressToId(address: string): string {
    return address.replace(/:/g, '').toLowerCase();
  }

  providePasskey(id: string, passkey: string): void {
    this.passkeys.set(id, passkey);
  }

  unpair(id: string): void {
    this.world.bonds.delete(id);
  }

  /** Passkey entry pairing (SMP): a peripheral with a passkey bonds only when the central gives the same digits. */
  pair(id: string): void {
    const given = this.passkeys.get(id);
    this.passkeys.delete(id);
    const p = this.world.byId(id);
    if (!p || !this.connected.has(id)) {
      this.after(0, () => this.emit('pair', id, false, new BleSimError('not connected')));
      return;
    }
    this.after(this.latency(p), () => {
      if (p.passkey !== undefined && given !== p.passkey) {
        // SMP Pairing Failed, reason 0x04: confirm value failed (what a wrong passkey produces).
        this.emit('pair', id, false, new BleSimError('SMP pairing failed (0x04 confirm value failed): wrong passkey', undefined, 0x04));
        return;
      }
      this.world.bonds.add(id);
      this.emit('pair', id, true);
    });
  }

}
