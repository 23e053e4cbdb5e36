/**
 * OMA DM 1.2 Notification (Package 0): the binary trigger a DM server sends to start a
 * server-initiated session (notes §4). Pure: no I/O, no state. The layout is §4.1, the digest and
 * the nonce fallback are §4.2. Every failure is a `CodecError` (status 400) so a transport can
 * drop a bad notification without special-casing error types.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { MD5_VERIFIER } from './auth.ts';
import { CodecError } from '../errors.ts';

/** The fields of a Package 0 trigger (§4.1), everything after the 16-byte digest. */
export interface Package0Trigger {
  /** Notification version × 10, 10 bits; DM 1.2 is 11 (§4.1). */
  version: number;
  /** 0 not specified, 1 background, 2 informative, 3 user interaction (§4.1). */
  uiMode: 0 | 1 | 2 | 3;
  /** 0 user/client-caused, 1 server-caused (§4.1). */
  initiator: 0 | 1;
  /** 16-bit, non-zero; becomes the P1 SessionID (§4.1, §4.3). */
  sessionId: number;
  /** The ServerID, matching `DMAcc/<x>/ServerID` (§4.1). */
  serverId: string;
  /** Optional vendor-specific trigger-body; empty when absent (§4.1). */
  vendor: Uint8Array;
}

/** A decoded Package 0: the trigger fields plus the 16-byte MD5 digest that precedes them (§4.1). */
export interface Package0 extends Package0Trigger {
  /** The 16-byte digest as received (§4.2). */
  digest: Uint8Array;
}

/** Input to the encoders: like `Package0Trigger` but `version` defaults to 11 and `vendor` to empty. */
export type Package0TriggerInit = Omit<Package0Trigger, 'version' | 'vendor'> & { version?: number; vendor?: Uint8Array };

/** Server credentials as stored on the device: the SRVCRED secret and nonce (AAuthData) (§4.2). */
export interface Package0Creds {
  /** The server password (DMAcc AppAuth SRVCRED AAuthSecret). */
  password: string;
  /** The server nonce as raw bytes; may be empty (§4.2). */
  nonce: Uint8Array;
}

/** The result of `verifyPackage0`: which nonce matched, or a plain failure (§4.2 step 5: ignore silently). */
export type Package0Verification = { ok: true; nonceUsed: 'stored' | 'resync' } | { ok: false };

/** The notification version for DM 1.2 (§4.1: `0000001011`). */
export const DM12_VERSION = 11;

/** Versions this codec accepts: 1.0 (10), 1.2 (11), and 12/13 for later revisions (§4.1, §3.12). */
export const SUPPORTED_VERSIONS: readonly number[] = Object.freeze([10, 11, 12, 13]);

/** The resync nonce of four zero bytes a client retries with when the stored nonce fails (§4.2 step 1). */
export const RESYNC_NONCE: Readonly<Uint8Array> = new Uint8Array(4);

/** Length of the MD5 digest that prefixes the trigger (§4.1). */
export const DIGEST_LENGTH = 16;

/** Length of the fixed trigger header after the digest (§4.1). */
export const TRIGGER_HEADER_LENGTH = 8;

// A private copy so that a caller mutating the exported RESYNC_NONCE cannot break verification.
const RESYNC = new Uint8Array(4);
const COLON = new Uint8Array([0x3a]);
const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function md5(...parts: Uint8Array[]): Buffer {
  const h = createHash('md5');
  for (const p of parts) h.update(p);
  return h.digest();
}

function b64md5(...parts: Uint8Array[]): Uint8Array {
  return utf8.encode(md5(...parts).toString('base64'));
}

function fieldError(message: string): CodecError {
  return new CodecError('CODEC_P0_FIELD', message);
}

function checkVersion(version: number): void {
  if (!SUPPORTED_VERSIONS.includes(version)) {
    throw new CodecError('CODEC_P0_VERSION', `unsupported notification version ${version} (expected one of ${SUPPORTED_VERSIONS.join(', ')})`);
  }
}

function checkSessionId(id: number): void {
  // §4.1: 16 bits, and 0 is reserved (the session id must be non-zero).
  if (!Number.isInteger(id) || id < 1 || id > 0xffff) throw fieldError(`sessionId must be an integer in 1..65535, got ${id}`);
}

function serverIdBytes(serverId: string): Uint8Array {
  if (typeof serverId !== 'string') throw fieldError('serverId must be a string');
  const bytes = utf8.encode(serverId);
  // §4.1: the length-identifier is one byte, and an empty ServerID cannot match any DMAcc.
  if (bytes.length < 1 || bytes.length > 255) throw fieldError(`serverId must be 1..255 UTF-8 bytes, got ${bytes.length}`);
  // Lone surrogates would be replaced by U+FFFD and the decoded ServerID would differ from the input.
  if (utf8Strict.decode(bytes) !== serverId) throw fieldError('serverId is not well-formed Unicode');
  return bytes;
}

/** Encodes the trigger (header ‖ server-identifier ‖ vendor body) per the §4.1 layout; the digest is not included. */
export function encodeTrigger(t: Package0TriggerInit): Uint8Array {
  const version = t.version ?? DM12_VERSION;
  checkVersion(version);
  if (t.uiMode !== 0 && t.uiMode !== 1 && t.uiMode !== 2 && t.uiMode !== 3) throw fieldError(`uiMode must be 0..3, got ${String(t.uiMode)}`);
  if (t.initiator !== 0 && t.initiator !== 1) throw fieldError(`initiator must be 0 or 1, got ${String(t.initiator)}`);
  checkSessionId(t.sessionId);
  const sid = serverIdBytes(t.serverId);
  const vendor = t.vendor ?? new Uint8Array(0);
  if (!(vendor instanceof Uint8Array)) throw fieldError('vendor must be a Uint8Array');

  const out = new Uint8Array(TRIGGER_HEADER_LENGTH + sid.length + vendor.length);
  // §4.1: bytes 0-1 = version<<6 | ui<<4 | initiator<<3; the low 3 bits and bytes 2-4 are future-use (zero).
  const top = (version << 6) | (t.uiMode << 4) | (t.initiator << 3);
  out[0] = (top >> 8) & 0xff;
  out[1] = top & 0xff;
  out[5] = (t.sessionId >> 8) & 0xff;
  out[6] = t.sessionId & 0xff;
  out[7] = sid.length;
  out.set(sid, TRIGGER_HEADER_LENGTH);
  out.set(vendor, TRIGGER_HEADER_LENGTH + sid.length);
  return out;
}

/** Computes the §4.2 digest `MD5( B64(MD5(serverId ":" password)) ":" nonce ":" B64(MD5(trigger)) )`, nonce as raw bytes. */
export function package0Digest(serverId: string, password: string, nonce: Uint8Array, trigger: Uint8Array): Uint8Array {
  // A stored verifier already is B64(H(serverId:password)) (src/codec/auth.ts, secretVerifier).
  const inner = password.startsWith(MD5_VERIFIER) ? utf8.encode(password.slice(MD5_VERIFIER.length)) : b64md5(utf8.encode(`${serverId}:${password}`));
  const d = md5(inner, COLON, nonce, COLON, b64md5(trigger));
  return new Uint8Array(d.buffer, d.byteOffset, d.length);
}

/** Encodes a complete Package 0: digest ‖ trigger (§4.1), the digest keyed by the server credentials (§4.2). */
export function encodePackage0(t: Package0TriggerInit, creds: Package0Creds): Uint8Array {
  const trigger = encodeTrigger(t);
  const digest = package0Digest(t.serverId, creds.password, creds.nonce, trigger);
  const out = new Uint8Array(DIGEST_LENGTH + trigger.length);
  out.set(digest, 0);
  out.set(trigger, DIGEST_LENGTH);
  return out;
}

/** Decodes a complete Package 0 strictly (§4.1); any malformed input raises a `CodecError` (400), nothing else. */
export function decodePackage0(bytes: Uint8Array): Package0 {
  if (!(bytes instanceof Uint8Array)) throw new CodecError('CODEC_P0_TRUNCATED', 'Package 0 must be a byte array');
  // §4.1: the minimum message is 24 + N bytes (16 digest + 8 fixed header + server-identifier).
  if (bytes.length < DIGEST_LENGTH + TRIGGER_HEADER_LENGTH) {
    throw new CodecError('CODEC_P0_TRUNCATED', `Package 0 of ${bytes.length} bytes is shorter than the 24-byte minimum`);
  }
  const h = DIGEST_LENGTH;
  const b0 = bytes[h] ?? 0;
  const b1 = bytes[h + 1] ?? 0;
  const top = (b0 << 8) | b1;
  const version = top >> 6;
  checkVersion(version);
  const uiMode = ((top >> 4) & 0x3) as 0 | 1 | 2 | 3;
  const initiator = ((top >> 3) & 0x1) as 0 | 1;
  // The 27 future-use bits (low 3 bits of byte 1, bytes 2-4) MUST be zero when sent, but we accept
  // non-zero values instead of failing: the AOSP engine ignores them (notes §8), so a device would
  // still honour such a notification and a strict gateway/device simulator would diverge from it.
  // They are still covered by the digest, which verifyPackage0 computes over the raw bytes.
  const sessionId = ((bytes[h + 5] ?? 0) << 8) | (bytes[h + 6] ?? 0);
  if (sessionId === 0) throw fieldError('sessionId 0 is reserved (must be non-zero)');
  const n = bytes[h + 7] ?? 0;
  if (n === 0) throw fieldError('server-identifier length is 0');
  const sidStart = h + TRIGGER_HEADER_LENGTH;
  if (sidStart + n > bytes.length) {
    throw new CodecError('CODEC_P0_TRUNCATED', `server-identifier length ${n} runs past the end of the ${bytes.length}-byte message`);
  }
  let serverId: string;
  try {
    serverId = utf8Strict.decode(bytes.subarray(sidStart, sidStart + n));
  } catch {
    throw fieldError('server-identifier is not valid UTF-8');
  }
  return {
    version,
    uiMode,
    initiator,
    sessionId,
    serverId,
    // Copies, so the result does not alias (and is not changed by later writes to) the input buffer.
    vendor: bytes.slice(sidStart + n),
    digest: bytes.slice(0, DIGEST_LENGTH),
  };
}

function digestMatches(expected: Uint8Array, serverId: string, password: string, nonce: Uint8Array, trigger: Uint8Array): boolean {
  const actual = package0Digest(serverId, password, nonce, trigger);
  return timingSafeEqual(actual, expected);
}

/**
 * Checks a decoded Package 0 against the device's stored server credentials: the stored nonce first, then the
 * resync nonce (§4.2); `raw` is the complete message as received, whose bytes after the digest are hashed as-is.
 */
export function verifyPackage0(p: Package0, raw: Uint8Array, creds: Package0Creds): Package0Verification {
  // The digest covers the exact trigger bytes as sent (including any non-zero future-use bits), so it
  // is recomputed over `raw` rather than over a re-encoding of the decoded fields.
  if (p.digest.length !== DIGEST_LENGTH || raw.length < DIGEST_LENGTH + TRIGGER_HEADER_LENGTH) return { ok: false };
  const trigger = raw.subarray(DIGEST_LENGTH);
  // Both candidates are always computed, so timing does not reveal which one (if any) matched.
  const stored = digestMatches(p.digest, p.serverId, creds.password, creds.nonce, trigger);
  const resync = digestMatches(p.digest, p.serverId, creds.password, RESYNC, trigger);
  if (stored) return { ok: true, nonceUsed: 'stored' };
  if (resync) return { ok: true, nonceUsed: 'resync' };
  return { ok: false };
}

/** Formats a session id as the P1 SessionID: uppercase hex without leading zeros (§4.3: 0x1A2B → "1A2B"). */
export function sessionIdHex(id: number): string {
  checkSessionId(id);
  return id.toString(16).toUpperCase();
}
