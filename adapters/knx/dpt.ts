/**
 * KNX datapoint types (KNX Standard 03.07.02 "Datapoint Types") as the DM tree shows them: a group
 * object's `Value` is text (notes §1.8: Format chr, `Type` giving the DPT). This module parses the
 * text a DM server writes, checks it against the DPT's range (a value the encoding cannot carry is
 * DM 400, never a silently clamped telegram), and encodes and decodes the APDU data with npm
 * `knx`'s own DPT library (which only logs on bad input, hence the checks here).
 *
 * Text forms: DPT1 `on`/`off` (1.001) or `1`/`0` (also accepted: true/false, the subtype's labels);
 * DPT2 `<control>,<value>` (`1,0`); DPT3 `+<step>`/`-<step>` (step 0..7, `stop` for a break);
 * DPT5.001 percent 0..100, DPT5.003 degrees 0..360, other DPT5 0..255; DPT6/7/8/12/13 integers in
 * their range; DPT9 a decimal (-671088.64..670433.28, and the subtype's own range); DPT14 a float;
 * DPT16 up to 14 ASCII characters; DPT17 scene 0..63; DPT20 0..255; DPT232 `rrggbb` hex.
 */
import { DmStatusError } from '../../src/errors.ts';
import { knxRequire } from './lib.ts';

interface LibDpt {
  basetype: { bitlength: number; range?: number[] };
  subtypes?: Record<string, { enc?: Record<string, string>; range?: number[]; scalar_range?: number[] }>;
  subtype?: { enc?: Record<string, string>; range?: number[]; scalar_range?: number[] };
}
const dptlib = knxRequire('knx/src/dptlib/index.js') as {
  resolve(id: string): LibDpt;
  populateAPDU(value: unknown, apdu: { data?: Buffer; bitlength?: number }, id: string): void;
  fromBuffer(buf: Buffer, dpt: LibDpt): unknown;
};

/** DPT main numbers the adapter reads and writes. */
export const SUPPORTED_DPTS = [1, 2, 3, 5, 6, 7, 8, 9, 12, 13, 14, 16, 17, 20, 232] as const;

/** A parsed datapoint type. */
export interface Dpt {
  /** Normalised id, e.g. `DPT9.001` or `DPT5`. */
  id: string;
  main: number;
  /** Three-digit subtype, when given. */
  sub: string | undefined;
  /** Bits on the wire (1, 2, 4, 8, 16, 32, 112). */
  bits: number;
}

/** Encoded APDU data. */
export interface Encoded {
  data: Buffer;
  bitlength: number;
}

const bad = (dpt: Dpt, text: string, why: string): DmStatusError => new DmStatusError(400, 'KNX_BAD_VALUE', `${JSON.stringify(text)} is not a ${dpt.id} value: ${why}`);

/** Parses `DPT9.001`, `9.001`, `dpt1`, ...; 400 KNX_BAD_DPT for anything else or an unsupported type. */
export function parseDpt(text: string): Dpt {
  const m = /^(?:DPT)?\s*(\d{1,3})(?:\.(\d{1,3}))?$/i.exec(text.trim());
  if (!m) throw new DmStatusError(400, 'KNX_BAD_DPT', `${JSON.stringify(text)} is not a datapoint type (e.g. DPT9.001)`);
  const main = Number(m[1]);
  if (!(SUPPORTED_DPTS as readonly number[]).includes(main)) {
    throw new DmStatusError(400, 'KNX_BAD_DPT', `DPT${main} is not supported (supported: ${SUPPORTED_DPTS.map((d) => `DPT${d}`).join(', ')})`);
  }
  const sub = m[2] === undefined ? undefined : m[2].padStart(3, '0');
  const lib = dptlib.resolve(`DPT${main}`);
  return { id: sub ? `DPT${main}.${sub}` : `DPT${main}`, main, sub, bits: lib.basetype.bitlength };
}

const INT = /^[-+]?\d+$/;
const DEC = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;

function integer(dpt: Dpt, text: string, min: number, max: number): number {
  const t = text.trim();
  if (!INT.test(t)) throw bad(dpt, text, `an integer ${min}..${max} is expected`);
  const n = Number(t);
  if (n < min || n > max) throw bad(dpt, text, `out of range ${min}..${max}`);
  return n;
}

function decimal(dpt: Dpt, text: string, min: number, max: number): number {
  const t = text.trim();
  if (!DEC.test(t)) throw bad(dpt, text, 'a decimal number is expected');
  const n = Number(t);
  if (!Number.isFinite(n) || n < min || n > max) throw bad(dpt, text, `out of range ${min}..${max}`);
  return n;
}

/** The labels of a DPT1 subtype ({0: 'Off', 1: 'On'}), lower-cased. */
function labels(dpt: Dpt): [string, string] | undefined {
  const enc = dpt.sub ? dptlib.resolve(dpt.id).subtype?.enc : undefined;
  return enc && enc['0'] && enc['1'] && enc['0'] !== enc['1'] ? [enc['0'].toLowerCase(), enc['1'].toLowerCase()] : undefined;
}

/** Largest DPT9 value: 0x7FFE (0x7FFF means "invalid data", 03.07.02 §3.10). */
const DPT9_MAX = 670433.28;
const DPT9_MIN = -671088.64;

/** KNX 2-octet float: value = 0.01 × M × 2^E, M an 11-bit two's complement mantissa with its sign bit on top, E 0..15. */
export function encodeFloat16(value: number): Buffer {
  let v = value * 100;
  let e = 0;
  while ((v < -2048 || v > 2047) && e < 15) {
    v /= 2;
    e++;
  }
  let m = Math.round(v);
  if (m > 2047) m = 2047;
  if (m < -2048) m = -2048;
  const raw = (m < 0 ? 0x8000 : 0) | (e << 11) | (m & 0x7ff);
  return Buffer.from([raw >> 8, raw & 0xff]);
}

/** The DPT9 range of a subtype (e.g. 9.001 from -273 °C), within the format's own. */
function dpt9Range(dpt: Dpt): [number, number] {
  const r = dpt.sub ? dptlib.resolve(dpt.id).subtype?.range : undefined;
  const lo = Array.isArray(r) && Number.isFinite(r[0]) ? Math.max(DPT9_MIN, r[0]!) : DPT9_MIN;
  const hi = Array.isArray(r) && Number.isFinite(r[1]) ? Math.min(DPT9_MAX, r[1]!) : DPT9_MAX;
  return [lo, hi];
}

/** The JS value the library's encoder takes for this text; 400 KNX_BAD_VALUE when out of range. */
function toLibValue(dpt: Dpt, text: string): unknown {
  const t = text.trim();
  switch (dpt.main) {
    case 1: {
      const v = t.toLowerCase();
      if (['1', 'on', 'true'].includes(v)) return true;
      if (['0', 'off', 'false'].includes(v)) return false;
      const l = labels(dpt);
      if (l && v === l[1]) return true;
      if (l && v === l[0]) return false;
      throw bad(dpt, text, `expected on/off or 1/0${l ? ` or ${l[0]}/${l[1]}` : ''}`);
    }
    case 2: {
      const m = /^([01])\s*,\s*([01])$/.exec(t);
      if (!m) throw bad(dpt, text, 'expected <control>,<value> with each 0 or 1');
      return { priority: Number(m[1]), data: Number(m[2]) };
    }
    case 3: {
      if (t.toLowerCase() === 'stop') return { decr_incr: 0, data: 0 };
      const m = /^([+-])([0-7])$/.exec(t);
      if (!m) throw bad(dpt, text, 'expected +<step> (increase) or -<step> (decrease), step 0..7, or stop');
      return { decr_incr: m[1] === '+' ? 1 : 0, data: Number(m[2]) };
    }
    case 5:
      if (dpt.sub === '001') return decimal(dpt, t.replace(/%$/, ''), 0, 100);
      if (dpt.sub === '003') return decimal(dpt, t, 0, 360);
      return integer(dpt, t, 0, 255);
    case 6:
      return integer(dpt, t, -128, 127);
    case 7:
      return integer(dpt, t, 0, 65535);
    case 8:
      return integer(dpt, t, -32768, 32767);
    case 9: {
      const [lo, hi] = dpt9Range(dpt);
      return decimal(dpt, t, lo, hi);
    }
    case 12:
      return integer(dpt, t, 0, 4294967295);
    case 13:
      return integer(dpt, t, -2147483648, 2147483647);
    case 14: {
      const n = decimal(dpt, t, -3.4028234663852886e38, 3.4028234663852886e38);
      return n;
    }
    case 16:
      // eslint-disable-next-line no-control-regex
      if (text.length > 14 || !/^[\x20-\x7e]*$/.test(text)) throw bad(dpt, text, 'up to 14 printable ASCII characters');
      return text;
    case 17:
      return integer(dpt, t, 0, 63);
    case 20:
      return integer(dpt, t, 0, 255);
    case 232: {
      const m = /^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(t);
      if (!m) throw bad(dpt, text, 'expected rrggbb hex');
      return { red: parseInt(m[1]!, 16), green: parseInt(m[2]!, 16), blue: parseInt(m[3]!, 16) };
    }
    default:
      throw new DmStatusError(400, 'KNX_BAD_DPT', `${dpt.id} cannot be written`);
  }
}

/** Encodes the text form of a value as APDU data; 400 KNX_BAD_VALUE when the DPT cannot carry it. */
export function encodeValue(dpt: Dpt, text: string): Encoded {
  const value = toLibValue(dpt, text);
  const apdu: { data?: Buffer; bitlength?: number } = {};
  // DPT17 has no codec in the library: it is a plain 6-bit unsigned number in one octet.
  if (dpt.main === 17) return { data: Buffer.from([value as number]), bitlength: 8 };
  // The library's DPT9 encoder overflows above about 20 000 (it yields 0x83ff for 670433.28): ours.
  if (dpt.main === 9) return { data: encodeFloat16(value as number), bitlength: 16 };
  try {
    dptlib.populateAPDU(value, apdu, dpt.id);
  } catch (err) {
    throw bad(dpt, text, String((err as Error)?.message ?? err));
  }
  if (!Buffer.isBuffer(apdu.data)) throw bad(dpt, text, 'the KNX library could not encode it');
  return { data: apdu.data, bitlength: dpt.bits };
}

const trimNumber = (n: number): string => String(Number(n.toFixed(2)));

/** Decodes APDU data to the text form; 500 KNX_BAD_TELEGRAM when the data does not fit the DPT. */
export function decodeValue(dpt: Dpt, data: Buffer): string {
  const expect = Math.max(1, Math.ceil(dpt.bits / 8));
  if (data.length !== expect) {
    throw new DmStatusError(500, 'KNX_BAD_TELEGRAM', `${dpt.id} data is ${expect} octet(s), the telegram carried ${data.length} (${data.toString('hex')})`);
  }
  // Values of up to 6 bits travel inside the APCI octet: keep only the DPT's bits.
  const buf = dpt.bits < 8 ? Buffer.from([data[0]! & ((1 << dpt.bits) - 1)]) : data;
  if (dpt.main === 17) return String(buf[0]! & 0x3f);
  const v = dptlib.fromBuffer(buf, dptlib.resolve(dpt.id));
  switch (dpt.main) {
    case 1:
      if (dpt.sub === undefined || dpt.sub === '001') return v ? 'on' : 'off';
      return v ? '1' : '0';
    case 2: {
      const o = v as { priority: number; data: number };
      return `${o.priority},${o.data}`;
    }
    case 3: {
      const o = v as { decr_incr: number; data: number };
      return o.data === 0 ? 'stop' : `${o.decr_incr ? '+' : '-'}${o.data}`;
    }
    case 9:
      return trimNumber(v as number);
    case 14:
      return String(Math.fround(v as number) === v ? Number((v as number).toPrecision(7)) : v);
    case 16:
      return String(v).replace(/\0+$/, '');
    case 232: {
      const o = v as { red: number; green: number; blue: number };
      return [o.red, o.green, o.blue].map((x) => x.toString(16).padStart(2, '0')).join('');
    }
    default:
      return String(v);
  }
}

/** Normalises a value's text (what a read-back would show), throwing 400 like `encodeValue`. */
export function normaliseValue(dpt: Dpt, text: string): string {
  return decodeValue(dpt, encodeValue(dpt, text).data);
}
