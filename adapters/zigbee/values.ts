/**
 * ZCL attribute values ↔ DM leaf values (notes §1.8: a ZigBee attribute leaf is "typed by the
 * attribute's ZCL data type"). Booleans are DM `bool`, integers, enums, bitmaps and identifiers of
 * up to 48 bits are `int`, floats are `float`, character strings are `chr`, octet strings are `bin`
 * (base64 on the tree), IEEE addresses are `chr` (`0x` + 16 hex digits). Composite types (array,
 * struct, set, bag, date, time of day) and 56/64-bit integers are shown as `chr` (JSON) and cannot
 * be written: their encoding needs more than one DM value. A value outside the type's range, or
 * of the wrong shape, is a 400.
 */
import { Zcl } from 'zigbee-herdsman';
import { DmStatusError } from '../../src/errors.ts';
import type { NodeFormat } from '../../src/tree/tree.ts';

const D = Zcl.DataType;

interface IntRange {
  min: number;
  max: number;
}

/** Integer ranges by ZCL type (ZCL 2.6.2, Table 2-10). */
const INT_RANGES = new Map<number, IntRange>();
const unsigned = (bits: number): IntRange => ({ min: 0, max: 2 ** bits - 1 });
const signed = (bits: number): IntRange => ({ min: -(2 ** (bits - 1)), max: 2 ** (bits - 1) - 1 });
[
  [D.UINT8, 8], [D.UINT16, 16], [D.UINT24, 24], [D.UINT32, 32], [D.UINT40, 40], [D.UINT48, 48],
  [D.BITMAP8, 8], [D.BITMAP16, 16], [D.BITMAP24, 24], [D.BITMAP32, 32], [D.BITMAP40, 40], [D.BITMAP48, 48],
  [D.DATA8, 8], [D.DATA16, 16], [D.DATA24, 24], [D.DATA32, 32], [D.DATA40, 40], [D.DATA48, 48],
  [D.ENUM8, 8], [D.ENUM16, 16], [D.UTC, 32], [D.CLUSTER_ID, 16], [D.ATTR_ID, 16], [D.BAC_OID, 32],
].forEach(([t, b]) => INT_RANGES.set(t!, unsigned(b!)));
[
  [D.INT8, 8], [D.INT16, 16], [D.INT24, 24], [D.INT32, 32], [D.INT40, 40], [D.INT48, 48],
].forEach(([t, b]) => INT_RANGES.set(t!, signed(b!)));

const FLOATS = new Set<number>([D.SEMI_PREC, D.SINGLE_PREC, D.DOUBLE_PREC]);
const CHARS = new Set<number>([D.CHAR_STR, D.LONG_CHAR_STR]);
const OCTETS = new Set<number>([D.OCTET_STR, D.LONG_OCTET_STR]);

/** The DM format a ZCL data type is shown in. */
export function dmFormat(type: number): NodeFormat {
  if (type === D.BOOLEAN) return 'bool';
  if (INT_RANGES.has(type)) return 'int';
  if (FLOATS.has(type)) return 'float';
  if (OCTETS.has(type)) return 'bin';
  return 'chr';
}

/** The name of a ZCL data type (`UINT8`, `CHAR_STR`, ...), for the node's Type and messages. */
export function typeName(type: number): string {
  return (D as unknown as Record<number, string>)[type] ?? `0x${type.toString(16).padStart(2, '0')}`;
}

/** A decoded ZCL value as DM data (bin as base64). */
export function toDm(type: number, value: unknown): string {
  if (type === D.BOOLEAN) return value ? 'true' : 'false';
  if (OCTETS.has(type)) return Buffer.isBuffer(value) ? value.toString('base64') : Buffer.from((value as number[]) ?? []).toString('base64');
  if (INT_RANGES.has(type) || FLOATS.has(type)) return String(value);
  if (typeof value === 'string') return value;
  if (typeof value === 'bigint') return value.toString();
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
}

const bad = (msg: string): DmStatusError => new DmStatusError(400, 'ZIGBEE_BAD_VALUE', msg);

/** DM data → the value herdsman's codec encodes for `type`; throws 400 when it does not fit. */
export function fromDm(type: number, data: string | undefined, format?: string): unknown {
  const s = (data ?? '').trim();
  if (type === D.BOOLEAN) {
    if (/^(true|1)$/i.test(s)) return 1;
    if (/^(false|0)$/i.test(s)) return 0;
    throw bad(`a BOOLEAN attribute takes true or false, not ${JSON.stringify(s)}`);
  }
  const range = INT_RANGES.get(type);
  if (range) {
    // Decimal, or 0x-prefixed hex (bitmaps and enums are often written in hex).
    const n = /^0x[0-9a-f]+$/i.test(s) ? Number.parseInt(s.slice(2), 16) : /^[+-]?\d+$/.test(s) ? Number(s) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < range.min || n > range.max) throw bad(`a ${typeName(type)} attribute takes an integer in ${range.min}..${range.max}, not ${JSON.stringify(s)}`);
    return n;
  }
  if (FLOATS.has(type)) {
    const n = Number(s);
    if (s === '' || !Number.isFinite(n)) throw bad(`a ${typeName(type)} attribute takes a number, not ${JSON.stringify(s)}`);
    return n;
  }
  if (CHARS.has(type)) {
    const raw = data ?? '';
    const max = type === D.CHAR_STR ? 254 : 65534;
    if (Buffer.byteLength(raw, 'utf8') > max) throw bad(`a ${typeName(type)} attribute holds at most ${max} bytes`);
    return raw;
  }
  if (OCTETS.has(type)) {
    // Format bin arrives as base64 (the tree normalises it); chr is taken as hex.
    const buf = format === 'bin' ? Buffer.from(s, 'base64') : /^([0-9a-f]{2})*$/i.test(s) ? Buffer.from(s, 'hex') : undefined;
    if (!buf) throw bad(`an ${typeName(type)} attribute takes bin data or hex, not ${JSON.stringify(s)}`);
    if (buf.length > (type === D.OCTET_STR ? 254 : 65534)) throw bad(`${typeName(type)} too long`);
    return buf;
  }
  if (type === D.IEEE_ADDR) {
    if (!/^(0x)?[0-9a-f]{16}$/i.test(s)) throw bad(`an IEEE_ADDR attribute takes 16 hex digits, not ${JSON.stringify(s)}`);
    return `0x${s.replace(/^0x/i, '').toLowerCase()}`;
  }
  throw bad(`attributes of type ${typeName(type)} cannot be written from one DM value`);
}
