/**
 * The adapter contract (GwMO-AMode-001..006, notes §1.8 and §2.3): how the gateway manages devices
 * that do not speak OMA DM. An adapter owns one network (a KNX/IP tunnel, a ZigBee coordinator, an
 * OpenWebNet gateway, a BLE radio, or a simulator), reports devices joining and leaving, and
 * exposes each device as a DM subtree: a TreePlugin whose paths are relative to the device root.
 * The gateway mounts that subtree at `./GwMO/Devices/<key>`, so DM Get maps to a native read,
 * Replace to a write and Exec to a command; the tree checks ACLs and AccessTypes before calling it.
 *
 * The gateway also mounts each adapter's configuration at `./GwMO/Adaptation/<name>` (notes §1.8
 * "Association / adaptation config"): its settings, its operations (PermitJoin, Scan, ...), its
 * link state, and server-configured associations whose parameters the adapter declares
 * (`associationParams`) and whose secrets the server can write but never read back.
 *
 * Errors: a native failure is a `DmStatusError` carrying the DM status the server should see:
 * 461 unreachable / no answer (the GwMO timeout status), 404 unmapped URI, 405 unsupported command
 * on a mapped node, 400 a value the native encoding cannot carry, 500 a native error, 503 the
 * network link is down.
 */
import type { ExecResult, TreePlugin } from '../src/tree/tree.ts';

/** A device an adapter found on its network. */
export interface AdapterDevice {
  /** The device's address on its network: the key the adapter knows it by. */
  address: string;
  /** Its public identifier as a URN (notes §1.3), e.g. `urn:dev:ieee:00124b0001a2b3c4`. */
  deviceId: string;
  man?: string;
  mod?: string;
}

/** The state of an adapter's link to its network (`./GwMO/Adaptation/<name>/State`). */
export type LinkState = 'stopped' | 'connecting' | 'connected' | 'backoff' | 'disabled';

/** What an adapter tells the gateway. */
export interface AdapterEvents {
  /** A device joined (or came back): the gateway associates it in adaptation mode. */
  attached(device: AdapterDevice): void;
  /** A device left or stopped answering. */
  detached(address: string): void;
  /** The link changed state (connected, lost and backing off, ...); `detail` says why. */
  link?(state: LinkState, detail?: string): void;
}

/** One parameter of an adapter's settings or of an association (a leaf in the DM tree). */
export interface AdapterParam {
  /** The leaf name, e.g. `IndividualAddress`, `InstallCode`, `Passkey`. */
  name: string;
  /** DM format of the leaf. */
  format: 'chr' | 'int' | 'bool' | 'bin';
  /** Write-only from the server's side (Get answers 405 on it) and never logged. */
  secret?: boolean;
  /** An association cannot be established without it. */
  required?: boolean;
  /** One line for docs and the tree's Title property. */
  description: string;
}

/** An operation the server can Exec at `./GwMO/Adaptation/<name>/Operations/<op>`. */
export interface AdapterOperation {
  name: string;
  description: string;
  /** Runs it; `data` is the Exec Item Data (e.g. PermitJoin seconds). */
  run(data: string | undefined): Promise<ExecResult>;
}

/**
 * One command a fanout sends to many devices of the same network. An adapter that can reach several
 * of them with one native multicast (a KNX group address, a ZigBee group) does so; the rest go
 * device by device.
 */
export interface MulticastRequest {
  /** Addresses of the member devices on this network. */
  addresses: readonly string[];
  kind: 'Replace' | 'Exec';
  /** Path below the device root, e.g. `KNX/GroupObjects/1-2-3/Value`, `Point/Value`. */
  path: string;
  data?: string;
  format?: string;
}

/** The outcome of one multicast: the DM status per address it covered. */
export type MulticastResult = Map<string, { status: number; data?: string }>;

/** One network of non-DM devices. */
export interface Adapter {
  /** The name associations use in `protocol` and the node name under `./GwMO/Adaptation`. */
  readonly name: string;
  /** The inventory's Protocol leaf for its devices (`KNX`, `ZigBee`, `OpenWebNet`, `BLE`, `Sim`). */
  readonly protocol: string;
  /** The link state now. */
  readonly linkState: LinkState;
  /**
   * Connects to the network and starts reporting devices; a link that cannot connect yet is retried
   * with backoff, not thrown. Called again after `stop` when the server re-enables the network.
   */
  start(events: AdapterEvents): Promise<void>;
  /** Disconnects and releases every handle (sockets, timers), so the process can exit; pending operations end with an error. */
  stop(): Promise<void>;
  /** The DM subtree of the device at `address`, or undefined when the adapter does not know it. */
  device(address: string): TreePlugin | undefined;

  /** Settings the server may read and change (`./GwMO/Adaptation/<name>/<param>`). */
  readonly settings: readonly AdapterParam[];
  /** Current setting values (secrets included: the gateway hides them). */
  getSettings(): Record<string, string>;
  /** Applies changed settings (may reconnect the link); throws DmStatusError 400 on a bad value. */
  configure(values: Record<string, string>): Promise<void>;
  /** Operations the server may Exec (PermitJoin, Scan, ...). */
  readonly operations: readonly AdapterOperation[];

  /** The parameters of a server-configured association (GwMO-AMode-006). */
  readonly associationParams: readonly AdapterParam[];
  /**
   * Establishes an association from those parameters (e.g. pairs a BLE peripheral with a passkey,
   * admits a ZigBee device by IEEE address and install code). Resolves with the device, which the
   * adapter also reports through `attached`.
   */
  associate(params: Record<string, string>): Promise<AdapterDevice>;
  /** Removes an association: the device is released on its network and reported detached. */
  dissociate(address: string): Promise<void>;

  /** Native multicast for fanout; addresses missing from the result go device by device. */
  multicast?(req: MulticastRequest): Promise<MulticastResult>;
}
