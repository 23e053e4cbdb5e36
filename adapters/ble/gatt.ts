/**
 * GATT value codecs and UUID forms for the BLE device subtree (notes §1.8 "BLE:
 * BLE/Services/<uuid>/Characteristics/<uuid>/Value"). Well-known Bluetooth SIG characteristics are
 * decoded to DM text (battery level as an int percentage, temperature as a float in °C, names as
 * chr); anything else is carried as bytes (DM Format `bin`, base64 on the wire, as the tree keeps
 * binary leaves). A configuration may name a codec for a vendor characteristic (a light's on/off).
 */
import { DmStatusError } from '../../src/errors.ts';

/** The Bluetooth base UUID tail: a 16-bit UUID `xxxx` is `0000xxxx-0000-1000-8000-00805f9b34fb`. */
const BASE_TAIL = '00001000800000805f9b34fb';

/**
 * The form noble uses for a UUID, which is also the DM node name: lowercase hex without dashes, SIG
 * UUIDs in their 16-bit form (`2a19`), others 128-bit (32 hex). Accepts dashed and upper case
 * input and the long form of a SIG UUID; undefined when it is not a UUID.
 */
export function normalizeUuid(input: string): string | undefined {
  const s = input.trim().toLowerCase().replace(/-/g, '').replace(/^0x/, '');
  if (/^[0-9a-f]{4}$/.test(s)) return s;
  if (/^[0-9a-f]{8}$/.test(s)) return s.startsWith('0000') ? s.slice(4) : s;
  if (!/^[0-9a-f]{32}$/.test(s)) return undefined;
  if (s.startsWith('0000') && s.endsWith(BASE_TAIL)) return s.slice(4, 8);
  return s;
}

/** DM formats a characteristic value can take. */
export type ValueFormat = 'int' | 'float' | 'chr' | 'bool' | 'bin';

/** How one characteristic's bytes map to a DM value. */
export interface ValueCodec {
  format: ValueFormat;
  /** Unit or meaning, for the node's Title. */
  title: string;
  decode(bytes: Buffer): string;
  /** Bytes for a written DM value (already in `format`); DmStatusError 400 when it cannot be encoded. */
  encode(value: string, writeFormat: string): Buffer;
}

const bad = (what: string, value: string): DmStatusError => new DmStatusError(400, 'BLE_BAD_VALUE', `${what}: cannot encode ${JSON.stringify(value)}`);

function intCodec(title: string, bytes: 1 | 2 | 4, signed: boolean, min?: number, max?: number): ValueCodec {
  const lo = min ?? (signed ? -(2 ** (bytes * 8 - 1)) : 0);
  const hi = max ?? (signed ? 2 ** (bytes * 8 - 1) - 1 : 2 ** (bytes * 8) - 1);
  return {
    format: 'int',
    title,
    decode: (b) => {
      if (b.length < bytes) return '';
      return String(signed ? b.readIntLE(0, bytes) : b.readUIntLE(0, bytes));
    },
    encode: (v) => {
      const n = Number(v.trim());
      if (!/^-?\d+$/.test(v.trim()) || n < lo || n > hi) throw bad(`${title} takes an integer ${lo}..${hi}`, v);
      const out = Buffer.alloc(bytes);
      if (signed) out.writeIntLE(n, 0, bytes);
      else out.writeUIntLE(n, 0, bytes);
      return out;
    },
  };
}

/** A fixed-point number: `raw × 10^exp` (GATT's "decimal exponent" representation). */
function fixedCodec(title: string, bytes: 2 | 4, signed: boolean, exp: number): ValueCodec {
  const scale = 10 ** -exp;
  const raw = intCodec(title, bytes, signed);
  return {
    format: 'float',
    title,
    decode: (b) => {
      const r = raw.decode(b);
      return r === '' ? '' : (Number(r) / scale).toFixed(Math.max(0, -exp));
    },
    encode: (v) => {
      const n = Number(v.trim());
      if (v.trim() === '' || !Number.isFinite(n)) throw bad(title, v);
      return raw.encode(String(Math.round(n * scale)), 'int');
    },
  };
}

const utf8 = (title: string): ValueCodec => ({
  format: 'chr',
  title,
  decode: (b) => b.toString('utf8').replace(/\0+$/, ''),
  encode: (v) => Buffer.from(v, 'utf8'),
});

const boolCodec = (title: string): ValueCodec => ({
  format: 'bool',
  title,
  decode: (b) => (b.length === 0 ? '' : b[0] ? 'true' : 'false'),
  encode: (v) => {
    const t = v.trim().toLowerCase();
    if (t !== 'true' && t !== 'false') throw bad(title, v);
    return Buffer.from([t === 'true' ? 1 : 0]);
  },
});

/** Bytes: base64 as the tree carries `bin`; a `chr` write may also give hex (`01`, `0x01ff`). */
export const BYTES: ValueCodec = {
  format: 'bin',
  title: 'raw bytes',
  decode: (b) => b.toString('base64'),
  encode: (v, writeFormat) => {
    const t = v.trim();
    if (writeFormat === 'bin') {
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(t)) throw bad('bytes (base64)', v);
      return Buffer.from(t, 'base64');
    }
    const hex = t.replace(/^0x/i, '').replace(/[\s:]/g, '');
    if (!/^([0-9a-fA-F]{2})*$/.test(hex)) throw bad('bytes (Format bin, or chr as hex)', v);
    return Buffer.from(hex, 'hex');
  },
};

/** Bluetooth SIG characteristics the adapter decodes (Assigned Numbers / GATT Specification Supplement). */
export const SIG_CODECS: Readonly<Record<string, ValueCodec>> = {
  '2a00': utf8('Device Name'),
  '2a01': intCodec('Appearance', 2, false),
  '2a19': intCodec('Battery Level (%)', 1, false, 0, 100),
  '2a24': utf8('Model Number'),
  '2a25': utf8('Serial Number'),
  '2a26': utf8('Firmware Revision'),
  '2a27': utf8('Hardware Revision'),
  '2a28': utf8('Software Revision'),
  '2a29': utf8('Manufacturer Name'),
  '2a6d': fixedCodec('Pressure (Pa)', 4, false, -1),
  '2a6e': fixedCodec('Temperature (°C)', 2, true, -2),
  '2a6f': fixedCodec('Humidity (%)', 2, false, -2),
};

/** Codec names a configuration may give a vendor characteristic. */
export const CODEC_NAMES = ['bool', 'uint8', 'int8', 'uint16', 'int16', 'uint32', 'int32', 'utf8', 'bytes'] as const;
/** One of them. */
export type CodecName = (typeof CODEC_NAMES)[number];

/** The codec a configuration names. */
export function namedCodec(name: CodecName): ValueCodec {
  switch (name) {
    case 'bool':
      return boolCodec('boolean');
    case 'uint8':
      return intCodec('uint8', 1, false);
    case 'int8':
      return intCodec('int8', 1, true);
    case 'uint16':
      return intCodec('uint16', 2, false);
    case 'int16':
      return intCodec('int16', 2, true);
    case 'uint32':
      return intCodec('uint32', 4, false);
    case 'int32':
      return intCodec('int32', 4, true);
    case 'utf8':
      return utf8('text');
    case 'bytes':
      return BYTES;
  }
}
