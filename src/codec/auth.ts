/**
 * OMA DM authentication formulas (notes §5.1) and the small helpers around them: auth-type names,
 * Basic/MD5 Cred data, the HMAC transport header, nonces and constant-time comparison. Pure: no
 * I/O and no state (only `newNonce` draws from the CSPRNG). The challenge/retry flow (§5.2) lives
 * in the session layer; this module only computes and parses.
 */
import { createHash, randomBytes, scryptSync, timingSafeEqual } from 'node:crypto';
import { CodecError, GwError } from '../errors.ts';

/** The DM auth schemes this runtime implements, as Meta Type strings in Cred/Chal (§5.1). */
export type AuthType = 'syncml:auth-basic' | 'syncml:auth-md5' | 'syncml:auth-MAC';

/** The DMAcc `AppAuth/<x>/AAuthType` values matching `AuthType` (§5.1, §5.3). */
export type AAuthType = 'BASIC' | 'DIGEST' | 'HMAC';

/** The header carrying the HMAC credentials (§5.1); never put into Cred. */
export const HMAC_HEADER = 'x-syncml-hmac';

/** Every supported `AuthType`, strongest last. */
export const AUTH_TYPES: readonly AuthType[] = Object.freeze(['syncml:auth-basic', 'syncml:auth-md5', 'syncml:auth-MAC'] as const);

// Maps rather than object literals: a lookup of `__proto__` or `toString` must not find Object.prototype members.
const TO_AAUTH: ReadonlyMap<AuthType, AAuthType> = new Map<AuthType, AAuthType>([
  ['syncml:auth-basic', 'BASIC'],
  ['syncml:auth-md5', 'DIGEST'],
  ['syncml:auth-MAC', 'HMAC'],
]);

// Config spellings, lower-cased (§5.1 table: Meta Type, AAuthType value, and the common short names).
const SPELLINGS: ReadonlyMap<string, AuthType> = new Map<string, AuthType>([
  ['basic', 'syncml:auth-basic'],
  ['syncml:auth-basic', 'syncml:auth-basic'],
  ['md5', 'syncml:auth-md5'],
  ['digest', 'syncml:auth-md5'],
  ['syncml:auth-md5', 'syncml:auth-md5'],
  ['hmac', 'syncml:auth-MAC'],
  ['mac', 'syncml:auth-MAC'],
  ['syncml:auth-mac', 'syncml:auth-MAC'],
]);

function unsupportedType(value: string): GwError {
  // 406 "optional feature not supported": X509, SecurID etc. are named by the spec but not implemented (§5.1).
  return new GwError('AUTH_TYPE', `unsupported authentication type ${JSON.stringify(value)}`, { status: 406 });
}

/** Maps a Meta Type to its DMAcc AAuthType value (§5.1: md5 ↔ DIGEST, MAC ↔ HMAC). */
export function toAAuthType(type: AuthType): AAuthType {
  const v = TO_AAUTH.get(type);
  if (v === undefined) throw unsupportedType(String(type));
  return v;
}

/** Maps a DMAcc AAuthType value (case-insensitive) to its Meta Type; unknown values raise GwError `AUTH_TYPE` (406). */
export function fromAAuthType(value: string): AuthType {
  switch (typeof value === 'string' ? value.trim().toUpperCase() : '') {
    case 'BASIC':
      return 'syncml:auth-basic';
    case 'DIGEST':
      return 'syncml:auth-md5';
    case 'HMAC':
      return 'syncml:auth-MAC';
    default:
      throw unsupportedType(String(value));
  }
}

/** Parses a configured auth type case-insensitively (`basic`, `md5`, `digest`, `hmac`, `mac`, `syncml:auth-…`); unknown → GwError `AUTH_TYPE` (406). */
export function parseAuthType(value: string): AuthType {
  const t = typeof value === 'string' ? SPELLINGS.get(value.trim().toLowerCase()) : undefined;
  if (t === undefined) throw unsupportedType(String(value));
  return t;
}

/** Type guard for the canonical Meta Type strings (exact spelling, as emitted in Chal). */
export function isAuthType(value: unknown): value is AuthType {
  return typeof value === 'string' && TO_AAUTH.has(value as AuthType);
}

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const COLON = new Uint8Array([0x3a]);

function md5(...parts: Uint8Array[]): Buffer {
  const h = createHash('md5');
  for (const p of parts) h.update(p);
  return h.digest();
}

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

// B64(MD5(user ":" password)): the shared inner term of the md5 and MAC formulas (§5.1).
function innerB64(user: string, password: string): Uint8Array {
  // A stored verifier already is B64(MD5(user ":" password)): MD5 and HMAC need nothing more.
  if (password.startsWith(MD5_VERIFIER)) return utf8.encode(password.slice(MD5_VERIFIER.length));
  return utf8.encode(b64(md5(utf8.encode(`${user}:${password}`))));
}

/** Prefix of a stored MD5 verifier: `B64(MD5(user ":" password))`, all that MD5 and HMAC authentication need (§5.1). */
export const MD5_VERIFIER = '$gwmo-md5$';
/** Prefix of a stored basic-authentication verifier: `$gwmo-scrypt$<salt b64>$<hash b64>`. */
export const SCRYPT_VERIFIER = '$gwmo-scrypt$';

/**
 * What a verifying side (a server, a gateway for its devices) keeps of a client's password at rest
 * (issue "Security and reliability": nothing in plaintext where the protocol allows it): for MD5 and
 * HMAC the per-account `B64(H(user:password))`; for basic a salted scrypt hash (basic credentials
 * carry the password, which is checked against it). A value that already is a verifier is kept.
 */
export function secretVerifier(user: string, password: string, authType: string): string {
  if (password.startsWith(MD5_VERIFIER) || password.startsWith(SCRYPT_VERIFIER)) return password;
  if (authType === 'syncml:auth-basic') {
    const salt = randomBytes(16);
    return `${SCRYPT_VERIFIER}${b64(salt)}$${b64(scryptSync(password, salt, 32))}`;
  }
  return `${MD5_VERIFIER}${b64(md5(utf8.encode(`${user}:${password}`)))}`;
}

/** Whether `syncml:auth-basic` Cred Data matches an account's password or stored verifier (constant time). */
export function basicMatches(data: string, user: string, secret: string): boolean {
  const want = (a: string, b: string): boolean => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));
  if (!secret.startsWith(MD5_VERIFIER) && !secret.startsWith(SCRYPT_VERIFIER)) return want(data.trim(), basicCred(user, secret));
  let parsed: { user: string; password: string };
  try {
    parsed = parseBasicCred(data.trim());
  } catch {
    return false;
  }
  if (parsed.user !== user) return false;
  if (secret.startsWith(MD5_VERIFIER)) return want(b64(md5(utf8.encode(`${user}:${parsed.password}`))), secret.slice(MD5_VERIFIER.length));
  const [salt, hash] = secret.slice(SCRYPT_VERIFIER.length).split('$');
  const saltBytes = decodeB64(salt ?? '');
  if (!saltBytes || !hash) return false;
  return want(b64(scryptSync(parsed.password, saltBytes, 32)), hash);
}

const B64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$/;

// Standard base64 (§4.2: "standard base64 with padding"). Accepts missing padding and embedded
// whitespace (XML Data may be line-wrapped) but nothing else, unlike Buffer.from(…, 'base64'),
// which silently skips invalid characters and would let garbage pass as a credential.
function decodeB64(s: string): Uint8Array | undefined {
  if (typeof s !== 'string') return undefined;
  const compact = s.replace(/[\t\n\r ]+/g, '');
  if (!B64_RE.test(compact)) return undefined;
  const buf = Buffer.from(compact, 'base64');
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
}

/** Cred Data for `syncml:auth-basic`: `B64(user ":" password)` (§5.1). */
export function basicCred(user: string, password: string): string {
  return b64(utf8.encode(`${user}:${password}`));
}

/**
 * Splits `syncml:auth-basic` Cred Data back into user and password at the first `:` (as HTTP Basic does, so a
 * user name must not contain one); malformed data raises CodecError `CODEC_AUTH_BASIC` (401, §5.2 "rejected").
 */
export function parseBasicCred(data: string): { user: string; password: string } {
  const bytes = decodeB64(data);
  if (bytes === undefined) throw new CodecError('CODEC_AUTH_BASIC', 'basic credentials are not valid base64', 401);
  let text: string;
  try {
    text = utf8Strict.decode(bytes);
  } catch {
    throw new CodecError('CODEC_AUTH_BASIC', 'basic credentials are not valid UTF-8', 401);
  }
  const i = text.indexOf(':');
  if (i < 0) throw new CodecError('CODEC_AUTH_BASIC', 'basic credentials have no ":" separator', 401);
  return { user: text.slice(0, i), password: text.slice(i + 1) };
}

/** Cred Data for `syncml:auth-md5`: `B64( MD5( B64(MD5(user ":" password)) ":" nonce ) )`, nonce as raw bytes (§5.1). */
export function md5Cred(user: string, password: string, nonce: Uint8Array): string {
  return b64(md5(innerB64(user, password), COLON, nonce));
}

/** The `syncml:auth-MAC` mac: `B64( MD5( B64(MD5(user ":" password)) ":" nonce ":" B64(MD5(body)) ) )` over the exact body bytes (§5.1). */
export function hmacMac(user: string, password: string, nonce: Uint8Array, body: Uint8Array): string {
  return b64(md5(innerB64(user, password), COLON, nonce, COLON, utf8.encode(b64(md5(body)))));
}

/** The parsed `x-syncml-hmac` header value (§5.1); `algorithm` is normalised to `MD5`. */
export interface HmacHeader {
  algorithm: string;
  username: string;
  mac: string;
}

function headerError(message: string): GwError {
  // §5.2: a missing or bad MAC ends the session; 401 is the "rejected credentials" status.
  return new GwError('AUTH_HMAC_HEADER', message, { status: 401 });
}

/** Formats the `x-syncml-hmac` header value: `algorithm=MD5, username="<id>", mac=<b64>` (§5.1). */
export function formatHmacHeader(h: { username: string; mac: string; algorithm?: 'MD5' }): string {
  const algorithm = h.algorithm ?? 'MD5';
  if (algorithm.toUpperCase() !== 'MD5') throw headerError(`unsupported HMAC algorithm ${JSON.stringify(algorithm)}`);
  // CR/LF or other controls in a header value would allow header injection; refuse them outright.
  if (/[\x00-\x1f\x7f]/.test(h.username) || h.username === '') throw headerError('HMAC username is empty or has control characters');
  if (!/^[A-Za-z0-9+/=]+$/.test(h.mac)) throw headerError('HMAC mac must be non-empty base64');
  const quoted = h.username.replace(/[\\"]/g, (c) => `\\${c}`);
  return `algorithm=MD5, username="${quoted}", mac=${h.mac}`;
}

/**
 * Parses an `x-syncml-hmac` header value, tolerant of spacing, parameter order, name case and quoted or
 * unquoted values; a missing username/mac, a duplicate parameter or a non-MD5 algorithm → GwError `AUTH_HMAC_HEADER` (401).
 */
export function parseHmacHeader(value: string): HmacHeader {
  if (typeof value !== 'string') throw headerError('HMAC header is not a string');
  const params = new Map<string, string>();
  const s = value;
  let i = 0;
  const skipWs = (): void => {
    while (i < s.length && (s[i] === ' ' || s[i] === '\t')) i++;
  };
  while (i < s.length) {
    skipWs();
    if (s[i] === ',') {
      i++;
      continue;
    }
    if (i >= s.length) break;
    const nameStart = i;
    while (i < s.length && /[A-Za-z0-9_-]/.test(s[i] ?? '')) i++;
    const name = s.slice(nameStart, i).toLowerCase();
    if (name === '') throw headerError(`malformed HMAC header near offset ${i}`);
    skipWs();
    if (s[i] !== '=') throw headerError(`HMAC header parameter ${name} has no value`);
    i++;
    skipWs();
    let v: string;
    if (s[i] === '"') {
      i++;
      let out = '';
      let closed = false;
      while (i < s.length) {
        const c = s[i] ?? '';
        if (c === '\\' && i + 1 < s.length) {
          out += s[i + 1];
          i += 2;
        } else if (c === '"') {
          i++;
          closed = true;
          break;
        } else {
          out += c;
          i++;
        }
      }
      if (!closed) throw headerError(`unterminated quoted value for HMAC parameter ${name}`);
      v = out;
      skipWs();
      if (i < s.length && s[i] !== ',') throw headerError(`unexpected text after HMAC parameter ${name}`);
    } else {
      const start = i;
      while (i < s.length && s[i] !== ',') i++;
      v = s.slice(start, i).trim();
      if (/[\s"]/.test(v)) throw headerError(`unquoted value of HMAC parameter ${name} contains spaces or quotes`);
    }
    // A repeated parameter is ambiguous (which username did the MAC cover?), so refuse it.
    if (params.has(name)) throw headerError(`duplicate HMAC parameter ${name}`);
    params.set(name, v);
  }
  const algorithm = params.get('algorithm') ?? 'MD5';
  // §5.1: algorithm is optional, MD5 is the default and the only one defined.
  if (algorithm.toUpperCase() !== 'MD5') throw headerError(`unsupported HMAC algorithm ${JSON.stringify(algorithm)}`);
  const username = params.get('username');
  const mac = params.get('mac');
  if (username === undefined || username === '') throw headerError('HMAC header has no username');
  if (mac === undefined || mac === '') throw headerError('HMAC header has no mac');
  return { algorithm: 'MD5', username, mac };
}

/** A fresh random nonce (§5.1: ≥ 16 random bytes, a new one per session). */
export function newNonce(bytes = 16): Uint8Array {
  if (!Number.isInteger(bytes) || bytes < 1 || bytes > 4096) {
    throw new GwError('AUTH_NONCE_SIZE', `nonce size must be an integer in 1..4096, got ${bytes}`);
  }
  const buf = randomBytes(bytes);
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
}

/** Encodes nonce bytes for `Chal/Meta/NextNonce` (Format b64, §5.1). */
export function nonceToB64(nonce: Uint8Array): string {
  return b64(nonce);
}

/** Decodes a b64 NextNonce to the raw bytes the digests use (§5.1); malformed base64 → CodecError `CODEC_AUTH_NONCE` (400). */
export function nonceFromB64(s: string): Uint8Array {
  const bytes = decodeB64(s);
  if (bytes === undefined) throw new CodecError('CODEC_AUTH_NONCE', 'nonce is not valid base64');
  return bytes;
}

/**
 * Nonce byte candidates for a stored nonce string, in the order to try: b64-decoded, then the raw UTF-8 of the
 * string, deduplicated (§4.2 recommendation, mirroring the AOSP engine's compatibility fallback).
 */
export function nonceCandidates(stored: string): Uint8Array[] {
  const raw = utf8.encode(stored);
  const decoded = decodeB64(stored);
  if (decoded === undefined) return [raw];
  if (Buffer.from(decoded).equals(raw)) return [decoded];
  return [decoded, raw];
}

/** Constant-time string equality (for Cred data and MACs); does not leak where or whether lengths differ. */
export function safeEqual(a: string, b: string): boolean {
  // Hashing first gives equal-length inputs for timingSafeEqual, so the length is not leaked either;
  // UTF-16LE keeps lone surrogates distinct (UTF-8 would map them all to U+FFFD).
  const ha = createHash('sha256').update(a, 'utf16le').digest();
  const hb = createHash('sha256').update(b, 'utf16le').digest();
  return timingSafeEqual(ha, hb);
}
