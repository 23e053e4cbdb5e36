/**
 * The ZiGate serial protocol (the NXP JN516x "ZiGate" coordinator firmware, documented at
 * zigate.fr "commandes-zigate"), as much of it as zigbee-herdsman's `zigate` adapter speaks. The
 * simulated coordinator (sim.ts) speaks it over TCP so that herdsman runs unmodified: herdsman's
 * serial adapters accept `tcp://host:port` (peers.md, ZigBee).
 *
 * A frame on the wire is `0x01 | escape(code:u16 BE, length:u16 BE, checksum:u8, payload[, rssi]) | 0x03`,
 * where every byte <= 0x10 inside is escaped as `0x02, byte ^ 0x10`, and the checksum is the XOR of the
 * code, length, payload (and RSSI) bytes. Frames from the coordinator carry a trailing RSSI byte that
 * the length counts; frames from the host do not. Multi-byte integers are big-endian, except inside
 * ZCL and ZDO payloads, which keep the ZigBee byte order (little-endian).
 */
import { DmStatusError } from '../../src/errors.ts';

/** Start and stop bytes of a frame. */
export const START = 0x01;
export const STOP = 0x03;
const ESC = 0x02;
const ESC_XOR = 0x10;

/** Host → coordinator commands the simulator understands (ZiGateCommandCode in herdsman). */
export const Cmd = {
  GetNetworkState: 0x0009,
  RawMode: 0x0002,
  GetVersion: 0x0010,
  Reset: 0x0011,
  ErasePersistentData: 0x0012,
  PermitJoinStatus: 0x0014,
  SetExtendedPanId: 0x0020,
  SetChannelMask: 0x0021,
  SetSecurityStateKey: 0x0022,
  SetDeviceType: 0x0023,
  StartNetwork: 0x0024,
  RemoveDevice: 0x0026,
  Bind: 0x0030,
  Unbind: 0x0031,
  NwkAddress: 0x0040,
  IeeeAddress: 0x0041,
  NodeDescriptor: 0x0042,
  SimpleDescriptor: 0x0043,
  PowerDescriptor: 0x0044,
  ActiveEndpoint: 0x0045,
  PermitJoin: 0x0049,
  ManagementNetworkUpdate: 0x004a,
  LeaveRequest: 0x004c,
  AddGroup: 0x0060,
  RawApsDataRequest: 0x0530,
  SetTxPower: 0x0806,
} as const;

/** Coordinator → host messages (ZiGateMessageCode in herdsman). */
export const Msg = {
  DeviceAnnounce: 0x004d,
  Status: 0x8000,
  DataIndication: 0x8002,
  RestartNonFactoryNew: 0x8006,
  RestartFactoryNew: 0x8007,
  NetworkState: 0x8009,
  VersionList: 0x8010,
  NetworkJoined: 0x8024,
  LeaveIndication: 0x8048,
  ApsDataConfirmFailed: 0x8702,
} as const;

/** Status byte of a 0x8000 Status message. */
export const Status = { Success: 0, IncorrectParameters: 1, UnhandledCommand: 2, CommandFailed: 3, Busy: 4, StackAlreadyStarted: 5 } as const;

/** APS address modes used by 0x0530 and 0x8002. */
export const AddrMode = { Bound: 0x00, Group: 0x01, Short: 0x02, Ieee: 0x03 } as const;

/** One decoded frame. */
export interface ZiGateFrame {
  code: number;
  payload: Buffer;
  /** Present on coordinator → host frames. */
  rssi?: number;
}

function xor(bytes: Iterable<number>, start = 0): number {
  let c = start;
  for (const b of bytes) c ^= b;
  return c;
}

/** Encodes one frame; `rssi` is appended (and counted in the length) for coordinator → host frames. */
export function encodeFrame(code: number, payload: Buffer, rssi?: number): Buffer {
  const tail = rssi === undefined ? payload : Buffer.concat([payload, Buffer.from([rssi & 0xff])]);
  const head = Buffer.alloc(4);
  head.writeUInt16BE(code, 0);
  head.writeUInt16BE(tail.length, 2);
  const body = Buffer.concat([head, Buffer.from([xor(tail, xor(head))]), tail]);
  const out: number[] = [START];
  for (const b of body) {
    if (b <= ESC_XOR) out.push(ESC, b ^ ESC_XOR);
    else out.push(b);
  }
  out.push(STOP);
  return Buffer.from(out);
}

/**
 * Decodes the bytes between START and STOP (both excluded). `withRssi` says whether the last payload
 * byte is an RSSI (coordinator → host). A bad checksum or length is a 400 DmStatusError.
 */
export function decodeFrame(inner: Buffer, withRssi = false): ZiGateFrame {
  const raw: number[] = [];
  for (let i = 0; i < inner.length; i++) {
    const b = inner[i]!;
    if (b === ESC) {
      if (i + 1 >= inner.length) throw new DmStatusError(400, 'ZIGATE_FRAME', 'escape byte at the end of a frame');
      raw.push(inner[++i]! ^ ESC_XOR);
    } else raw.push(b);
  }
  const buf = Buffer.from(raw);
  if (buf.length < 5) throw new DmStatusError(400, 'ZIGATE_FRAME', `frame too short (${buf.length} bytes)`);
  const code = buf.readUInt16BE(0);
  const length = buf.readUInt16BE(2);
  const checksum = buf[4]!;
  const tail = buf.subarray(5);
  if (tail.length !== length) throw new DmStatusError(400, 'ZIGATE_FRAME', `length ${length} but ${tail.length} bytes follow`);
  if (xor(tail, xor(buf.subarray(0, 4))) !== checksum) throw new DmStatusError(400, 'ZIGATE_FRAME', 'bad checksum');
  if (!withRssi) return { code, payload: Buffer.from(tail) };
  return { code, payload: Buffer.from(tail.subarray(0, tail.length - 1)), rssi: tail[tail.length - 1] };
}

/** Splits a byte stream into frames (START..STOP); keeps the incomplete rest for the next chunk. */
export class FrameSplitter {
  private rest: Buffer = Buffer.alloc(0);
  /** Feeds bytes; returns the inner bytes of every complete frame. */
  push(chunk: Buffer): Buffer[] {
    this.rest = this.rest.length ? Buffer.concat([this.rest, chunk]) : chunk;
    const out: Buffer[] = [];
    for (;;) {
      const start = this.rest.indexOf(START);
      if (start < 0) {
        this.rest = Buffer.alloc(0);
        break;
      }
      const stop = this.rest.indexOf(STOP, start + 1);
      if (stop < 0) {
        this.rest = this.rest.subarray(start);
        break;
      }
      out.push(this.rest.subarray(start + 1, stop));
      this.rest = this.rest.subarray(stop + 1);
    }
    return out;
  }
}

/** `0x00124b0001a2b3c4` → 8 bytes big-endian (ZiGate order). */
export function ieeeToBE(ieee: string): Buffer {
  return Buffer.from(ieee.replace(/^0x/, '').padStart(16, '0'), 'hex');
}

/** 8 bytes big-endian → `0x...` (herdsman's EUI-64 string form). */
export function ieeeFromBE(b: Buffer): string {
  return `0x${b.toString('hex')}`;
}

/** `0x...` → 8 bytes little-endian (ZigBee over-the-air / ZDO order). */
export function ieeeToLE(ieee: string): Buffer {
  return Buffer.from(ieeeToBE(ieee)).reverse();
}
