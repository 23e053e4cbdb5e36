/**
 * The slice of `@stoprocent/noble` (the maintained fork with the `@abandonware/noble` API) the BLE
 * adapter uses, typed, and the two ways to get a Noble: over noble's own native bindings (`hci`,
 * `dbus` on Linux, `mac`, `win`), or over bindings we inject (the simulator, or any object with the
 * bindings interface noble's `lib/noble.js` drives). Either way the adapter talks to noble's real
 * Noble / Peripheral / Service / Characteristic objects; only the layer below them changes.
 *
 * noble 2.8's `withBindings(type, options)` accepts a binding *type* only, so injected bindings go
 * through the Noble class itself (`lib/noble.js`, `new Noble(bindings)`), exactly as `withBindings`
 * does with the bindings it constructs.
 */
import type { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** What noble's Noble class expects below it (the `bindings` object of `lib/noble.js`). */
export interface NobleBindings extends EventEmitter {
  start(): void;
  stop?(): void;
  reset?(): void;
  setScanParameters(interval: number, window: number): void;
  startScanning(serviceUuids: string[] | undefined, allowDuplicates: boolean | undefined): void;
  stopScanning(): void;
  connect(id: string, parameters?: unknown): void;
  cancelConnect(id: string, parameters?: unknown): void;
  disconnect(id: string): void;
  updateRssi(id: string): void;
  discoverServices(id: string, uuids?: string[]): void;
  discoverIncludedServices(id: string, serviceUuid: string, uuids?: string[]): void;
  discoverCharacteristics(id: string, serviceUuid: string, uuids?: string[]): void;
  discoverDescriptors(id: string, serviceUuid: string, characteristicUuid: string): void;
  read(id: string, serviceUuid: string, characteristicUuid: string): void;
  write(id: string, serviceUuid: string, characteristicUuid: string, data: Buffer, withoutResponse: boolean): void;
  broadcast(id: string, serviceUuid: string, characteristicUuid: string, broadcast: boolean): void;
  notify(id: string, serviceUuid: string, characteristicUuid: string, notify: boolean): void;
  readValue(id: string, serviceUuid: string, characteristicUuid: string, descriptorUuid: string): void;
  writeValue(id: string, serviceUuid: string, characteristicUuid: string, descriptorUuid: string, data: Buffer): void;
  readHandle(id: string, handle: number): void;
  writeHandle(id: string, handle: number, data: Buffer, withoutResponse: boolean): void;
  addressToId(address: string): string | null;
  pair?(id: string, kind: number, protectionLevel: number): void;
  /**
   * Not in noble: hands the passkey of the next `pair` to the bindings (the role a BlueZ agent plays
   * for a real radio). noble does not collect secrets, so bindings that can pair with a passkey
   * expose this; the adapter answers 501 when a passkey is given and they do not.
   */
  providePasskey?(id: string, passkey: string): void;
  /** Not in noble: forgets the bond with a peripheral (unpair). */
  unpair?(id: string): void;
}

/** A noble Characteristic. */
export interface NobleCharacteristic extends EventEmitter {
  readonly uuid: string;
  readonly name: string | null;
  readonly type: string | null;
  readonly properties: string[];
  readAsync(): Promise<Buffer>;
  writeAsync(data: Buffer, withoutResponse: boolean): Promise<void>;
  subscribeAsync(): Promise<void>;
  unsubscribeAsync(): Promise<void>;
}

/** A noble Service. */
export interface NobleService {
  readonly uuid: string;
  readonly name: string | null;
  characteristics: NobleCharacteristic[] | null;
}

/** A noble Peripheral. */
export interface NoblePeripheral extends EventEmitter {
  readonly id: string;
  readonly address: string;
  readonly addressType: string;
  connectable: boolean;
  rssi: number;
  state: 'disconnected' | 'connecting' | 'connected' | 'disconnecting' | 'error';
  advertisement: { localName?: string; serviceUuids?: string[]; txPowerLevel?: number; manufacturerData?: Buffer };
  connectAsync(options?: unknown): Promise<void>;
  cancelConnect(options?: unknown): void;
  disconnectAsync(): Promise<void>;
  discoverAllServicesAndCharacteristicsAsync(): Promise<{ services: NobleService[]; characteristics: NobleCharacteristic[] }>;
  pairAsync(kind?: number, protectionLevel?: number): Promise<void>;
}

/** The Noble object. */
export interface Noble extends EventEmitter {
  readonly state: string;
  readonly _bindings: NobleBindings;
  startScanningAsync(serviceUuids?: string[], allowDuplicates?: boolean): Promise<void>;
  stopScanningAsync(): Promise<void>;
  stop(): void;
}

/** noble's pairing kinds (WinRT DevicePairingKinds values, as noble exports them). */
export const PAIRING_KINDS = { ConfirmOnly: 0x08, ProvidePin: 0x40 } as const;

/** A Noble over injected bindings (the simulator, or any bindings object). */
export function nobleWith(bindings: NobleBindings): Noble {
  const NobleClass = require('@stoprocent/noble/lib/noble.js') as new (b: NobleBindings) => Noble;
  return new NobleClass(bindings);
}

/** A Noble over one of noble's own native bindings (`hci` on Linux: a real radio). */
export function nobleNative(type: 'hci' | 'dbus' | 'mac' | 'win', options: Record<string, unknown>): Noble {
  // Loaded lazily: index.js builds a default Noble at import time, which the simulator never needs.
  const { withBindings } = require('@stoprocent/noble') as { withBindings: (t: string, o: Record<string, unknown>) => Noble };
  return withBindings(type, options);
}
