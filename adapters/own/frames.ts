/**
 * OpenWebNet (OWN) frame codec: pure, no I/O. OWN is the ASCII protocol of BTicino/Legrand MyHOME
 * gateways (notes §1.8 "OpenWebNet"). Every frame starts with `*` and ends with `##`; its fields
 * are separated by `*` and hold digits, with `#` marking parameters (`WHERE` `#5` is group 5,
 * `WHAT` `1#2` a WHAT with a parameter) or the request/write forms:
 *
 * - ACK `*#*1##`, NACK `*#*0##`;
 * - normal (command) `*WHO*WHAT*WHERE##` (session frames `*99*0##` have no WHERE);
 * - status request `*#WHO*WHERE##`;
 * - dimension request `*#WHO*WHERE*DIM##`, dimension reply/event `*#WHO*WHERE*DIM*V1*...*Vn##`;
 * - dimension write `*#WHO*WHERE*#DIM*V1*...*Vn##`;
 * - authentication nonce `*#<digits>##` (OPEN password challenge, HMAC Ra and server digest).
 *
 * `*#Rb*HMAC##` of the HMAC handshake has the shape of a status request: the session layer reads
 * such frames by context, the codec only guarantees their syntax.
 *
 * Decoding is strict: anything else is an `OwnCodecError` (code `OWN_BAD_FRAME`), never a guess,
 * so a garbled stream is noticed instead of being half-understood.
 */
import { CodecError } from '../../src/errors.ts';

/** A syntactically invalid frame or stream. */
export class OwnCodecError extends CodecError {
  constructor(message: string) {
    super('OWN_BAD_FRAME', message, 500);
    this.name = 'OwnCodecError';
  }
}

/** A decoded OWN frame. */
export type OwnFrame =
  | { kind: 'ack' }
  | { kind: 'nack' }
  /** `*WHO*WHAT*WHERE##`; `where` undefined for the two-field session frames (`*99*0##`). */
  | { kind: 'normal'; who: string; what: string; where?: string }
  /** `*#WHO*WHERE##` */
  | { kind: 'status'; who: string; where: string }
  /** `*#WHO*WHERE*DIM##` (values empty: a request) or `*#WHO*WHERE*DIM*V...##` (a reply or event). */
  | { kind: 'dimension'; who: string; where: string; dim: string; values: string[] }
  /** `*#WHO*WHERE*#DIM*V1*...##` */
  | { kind: 'dimWrite'; who: string; where: string; dim: string; values: string[] }
  /** `*#<digits>##`: a password nonce or HMAC digest. */
  | { kind: 'nonce'; digits: string };

/** ACK frame. */
export const ACK = '*#*1##';
/** NACK frame. */
export const NACK = '*#*0##';
/** Opens a command session. */
export const COMMAND_SESSION = '*99*0##';
/** Opens an event (monitor) session. */
export const EVENT_SESSION = '*99*1##';
/** The gateway asks for HMAC-SHA1 authentication. */
export const HMAC_SHA1 = '*98*1##';
/** The gateway asks for HMAC-SHA256 authentication. */
export const HMAC_SHA256 = '*98*2##';

/** Longest frame accepted (an HMAC-SHA256 answer is 2 × 128 digits plus framing). */
export const MAX_FRAME = 1024;

const WHO = /^\d+$/;
const WHAT = /^\d+(#\d+)*$/;
// WHERE: a point or area (`11`, `1`), a group (`#5`), a bus extension (`11#4#01`, `#4#01`), or empty
// (the gateway itself, WHO 13).
const WHERE = /^(#?\d+(#\d+)*)?$/;
const DIM = /^\d+(#\d+)*$/;
const VALUE = /^\d+$/;
const DIGITS = /^\d+$/;

function check(re: RegExp, v: string, what: string, frame: string): string {
  if (!re.test(v)) throw new OwnCodecError(`bad ${what} ${JSON.stringify(v)} in frame ${JSON.stringify(frame)}`);
  return v;
}

/** Decodes one frame (with its `*` and `##`); throws OwnCodecError on anything else. */
export function parseFrame(frame: string): OwnFrame {
  if (frame.length > MAX_FRAME) throw new OwnCodecError(`frame longer than ${MAX_FRAME} characters`);
  if (!frame.startsWith('*') || !frame.endsWith('##') || frame.length < 4) throw new OwnCodecError(`not an OWN frame: ${JSON.stringify(frame)}`);
  if (frame === ACK) return { kind: 'ack' };
  if (frame === NACK) return { kind: 'nack' };
  const body = frame.slice(1, -2);
  if (!/^[0-9#*]*$/.test(body)) throw new OwnCodecError(`invalid character in frame ${JSON.stringify(frame)}`);
  if (body.includes('##')) throw new OwnCodecError(`frame ${JSON.stringify(frame)} contains "##" before its end`);
  const f = body.split('*');
  if (body.startsWith('#')) {
    const who = f[0]!.slice(1);
    if (f.length === 1) return { kind: 'nonce', digits: check(DIGITS, who, 'nonce', frame) };
    check(WHO, who, 'WHO', frame);
    const where = check(WHERE, f[1]!, 'WHERE', frame);
    if (f.length === 2) {
      if (where === '') throw new OwnCodecError(`status request without WHERE: ${JSON.stringify(frame)}`);
      return { kind: 'status', who, where };
    }
    const rawDim = f[2]!;
    const values = f.slice(3).map((v) => check(VALUE, v, 'value', frame));
    if (rawDim.startsWith('#')) {
      if (values.length === 0) throw new OwnCodecError(`dimension write without values: ${JSON.stringify(frame)}`);
      return { kind: 'dimWrite', who, where, dim: check(DIM, rawDim.slice(1), 'DIM', frame), values };
    }
    return { kind: 'dimension', who, where, dim: check(DIM, rawDim, 'DIM', frame), values };
  }
  if (f.length !== 2 && f.length !== 3) throw new OwnCodecError(`a normal frame has 2 or 3 fields: ${JSON.stringify(frame)}`);
  const who = check(WHO, f[0]!, 'WHO', frame);
  const what = check(WHAT, f[1]!, 'WHAT', frame);
  if (f.length === 2) return { kind: 'normal', who, what };
  const where = check(WHERE, f[2]!, 'WHERE', frame);
  if (where === '') throw new OwnCodecError(`empty WHERE in ${JSON.stringify(frame)}`);
  return { kind: 'normal', who, what, where };
}

/** Encodes a frame; validates its parts the way `parseFrame` does, so what it writes always decodes back. */
export function formatFrame(f: OwnFrame): string {
  let out: string;
  switch (f.kind) {
    case 'ack':
      return ACK;
    case 'nack':
      return NACK;
    case 'normal':
      out = f.where === undefined ? `*${f.who}*${f.what}##` : `*${f.who}*${f.what}*${f.where}##`;
      break;
    case 'status':
      out = `*#${f.who}*${f.where}##`;
      break;
    case 'dimension':
      out = `*#${f.who}*${f.where}*${f.dim}${f.values.map((v) => `*${v}`).join('')}##`;
      break;
    case 'dimWrite':
      out = `*#${f.who}*${f.where}*#${f.dim}${f.values.map((v) => `*${v}`).join('')}##`;
      break;
    case 'nonce':
      out = `*#${f.digits}##`;
      break;
  }
  // Round-trip check: a frame we could not read back is a bug in the caller's parts (400 for values).
  const back = parseFrame(out);
  if (back.kind !== f.kind) throw new OwnCodecError(`parts do not make a ${f.kind} frame: ${JSON.stringify(out)}`);
  return out;
}

/** Shorthands. */
export const command = (who: string, what: string, where: string): string => formatFrame({ kind: 'normal', who, what, where });
/** `*#WHO*WHERE##` */
export const statusRequest = (who: string, where: string): string => formatFrame({ kind: 'status', who, where });
/** `*#WHO*WHERE*DIM##` */
export const dimensionRequest = (who: string, where: string, dim: string): string => formatFrame({ kind: 'dimension', who, where, dim, values: [] });
/** `*#WHO*WHERE*#DIM*V...##` */
export const dimensionWrite = (who: string, where: string, dim: string, values: string[]): string => formatFrame({ kind: 'dimWrite', who, where, dim, values });

/**
 * Cuts a TCP byte stream into frames: chunks may end mid-frame or carry several frames. Bytes are
 * read as latin1 so a stray non-ASCII byte is one bad character, not a decoding exception. Throws
 * OwnCodecError (and forgets its buffer) on bytes that cannot start a frame or on an endless frame.
 */
export class FrameSplitter {
  private buf = '';

  /** Adds a chunk; returns the complete frames it finished, in order. */
  push(chunk: Buffer | string): string[] {
    this.buf += typeof chunk === 'string' ? chunk : chunk.toString('latin1');
    const out: string[] = [];
    for (;;) {
      if (this.buf.length === 0) break;
      if (this.buf[0] !== '*') {
        const bad = this.buf.slice(0, 16);
        this.buf = '';
        throw new OwnCodecError(`stream does not start a frame: ${JSON.stringify(bad)}`);
      }
      // A frame ends at the first "##" after its opening "*"; `*#*1##` has "#*" so searching from 1 is safe.
      const end = this.buf.indexOf('##', 1);
      if (end < 0) {
        if (this.buf.length > MAX_FRAME) {
          this.buf = '';
          throw new OwnCodecError(`no frame end within ${MAX_FRAME} characters`);
        }
        break;
      }
      out.push(this.buf.slice(0, end + 2));
      this.buf = this.buf.slice(end + 2);
    }
    return out;
  }

  /** Characters waiting for the rest of their frame. */
  get pending(): number {
    return this.buf.length;
  }
}

/** Encodes a temperature as OWN's 4 digits: sign (0 +, 1 −) then tenths of a degree (`0215` = 21.5 °C). */
export function encodeTemperature(t: number): string {
  if (!Number.isFinite(t)) throw new OwnCodecError(`not a temperature: ${t}`);
  const tenths = Math.round(Math.abs(t) * 10);
  if (tenths > 999) throw new OwnCodecError(`temperature out of range: ${t}`);
  return `${t < 0 && tenths > 0 ? '1' : '0'}${String(tenths).padStart(3, '0')}`;
}

/** Decodes OWN's 4-digit temperature. */
export function decodeTemperature(v: string): number {
  if (!/^[01]\d{3}$/.test(v)) throw new OwnCodecError(`not an OWN temperature: ${JSON.stringify(v)}`);
  const t = Number(v.slice(1)) / 10;
  return v[0] === '1' ? -t : t;
}

/** The area WHERE of a light point (`11` → `1`, `01` → `00`, `1005` → `10`), or undefined for other WHEREs. */
export function areaOf(where: string): string | undefined {
  if (/^\d\d$/.test(where) && where !== '00') return where[0] === '0' ? '00' : where[0]!;
  if (/^10(0[1-9]|1[0-5])$/.test(where)) return '10';
  return undefined;
}

/** Whether a WHERE names one point (not general `0`, an area or a group). */
export function isPoint(where: string): boolean {
  return areaOf(where) !== undefined;
}

/** Whether a WHERE is an area (`1`..`9`, `00`, `10`). */
export function isArea(where: string): boolean {
  return /^[1-9]$/.test(where) || where === '00' || where === '10';
}

/** Whether a WHERE is a group (`#1`..`#255`). */
export function isGroup(where: string): boolean {
  return /^#([1-9]\d?|1\d\d|2[0-4]\d|25[0-5])$/.test(where);
}
