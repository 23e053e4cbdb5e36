/**
 * OpenWebNet authentication arithmetic, shared by the client and the gateway simulator (pure, no I/O).
 *
 * - OPEN password (numeric, legacy gateways): the gateway sends a nonce `*#<digits>##`; each digit
 *   names a 32-bit transformation (rotations, byte shuffles, complement) applied in turn to the
 *   password, starting at the nonce's first non-zero digit. The client answers `*#<result>##`.
 * - HMAC (newer gateways, alphanumeric password): after `*98*1##` (SHA-1) or `*98*2##` (SHA-256) and
 *   the client's ACK, the gateway sends Ra; the client answers `*#Rb*H(Ra,Rb,A,B,Kab)##` and the
 *   gateway proves itself with `*#H(Ra,Rb,Kab)##`, which the client ACKs. Ra, Rb and digests are
 *   lowercase hex strings travelling as "digits" (each hex nibble as two decimal digits, `a` → `10`);
 *   Kab = H(password) in hex; A = `736F70653E` ("sope>") and B = `636F70653E` ("cope>"), the role
 *   strings of the OpenWebNet HMAC note, concatenated as text exactly as shown.
 */
import { createHash, randomBytes } from 'node:crypto';

/** HMAC algorithms a gateway may ask for. */
export type HmacAlgo = 'sha1' | 'sha256';

const rotl = (n: number, k: number): number => ((n << k) | (n >>> (32 - k))) >>> 0;
const rotr = (n: number, k: number): number => ((n >>> k) | (n << (32 - k))) >>> 0;

/** The 32-bit step each nonce digit selects. */
function step(digit: string, n: number): number {
  switch (digit) {
    case '1':
      return rotr(n, 7);
    case '2':
      return rotr(n, 4);
    case '3':
      return rotr(n, 3);
    case '4':
      return rotl(n, 1);
    case '5':
      return rotl(n, 5);
    case '6':
      return rotl(n, 12);
    case '7': {
      // bytes b3 b2 b1 b0 → b0 b3 b1 b2
      const b0 = n & 0xff, b1 = (n >>> 8) & 0xff, b2 = (n >>> 16) & 0xff, b3 = n >>> 24;
      return ((b0 << 24) | (b3 << 16) | (b1 << 8) | b2) >>> 0;
    }
    case '8': {
      // bytes b3 b2 b1 b0 → b1 b0 b2 b3
      const b0 = n & 0xff, b1 = (n >>> 8) & 0xff, b2 = (n >>> 16) & 0xff, b3 = n >>> 24;
      return ((b1 << 24) | (b0 << 16) | (b2 << 8) | b3) >>> 0;
    }
    case '9':
      return ~n >>> 0;
    default:
      return n;
  }
}

/** Whether a password can be used with the OPEN (numeric) algorithm. */
export function isOpenPassword(password: string): boolean {
  return /^\d{1,10}$/.test(password);
}

/** The OPEN answer to a nonce for a numeric password (as decimal digits). */
export function openPassword(password: string, nonce: string): string {
  // Gateways keep the password as a 32-bit unsigned number (longer ones wrap).
  const pw = Number(BigInt(password) & 0xffffffffn);
  let n = 0;
  let started = false;
  for (const d of nonce) {
    if (!started && d !== '0') {
      started = true;
      n = pw;
    }
    n = step(d, n);
  }
  return String(n >>> 0);
}

/** Hex (any case) → OWN digits: each nibble as two decimal digits. */
export function hexToDigits(hex: string): string {
  let out = '';
  for (const c of hex.toLowerCase()) {
    const v = Number.parseInt(c, 16);
    if (Number.isNaN(v)) throw new RangeError(`not hex: ${JSON.stringify(hex)}`);
    out += v < 10 ? `0${v}` : String(v);
  }
  return out;
}

/** OWN digits → lowercase hex; undefined when they are not pairs `00`..`15`. */
export function digitsToHex(digits: string): string | undefined {
  if (digits.length % 2 !== 0 || !/^\d*$/.test(digits)) return undefined;
  let out = '';
  for (let i = 0; i < digits.length; i += 2) {
    const v = Number(digits.slice(i, i + 2));
    if (v > 15) return undefined;
    out += v.toString(16);
  }
  return out;
}

const A = '736F70653E';
const B = '636F70653E';
const h = (algo: HmacAlgo, s: string): string => createHash(algo).update(s).digest('hex');

/** Hex digest length of an algorithm. */
export const hexLength = (algo: HmacAlgo): number => (algo === 'sha1' ? 40 : 64);

/** A random challenge (Ra or Rb) in hex, as long as the algorithm's digest. */
export function randomHex(algo: HmacAlgo): string {
  return randomBytes(hexLength(algo) / 2).toString('hex');
}

/** The algorithm a received Ra (in digits) implies: 80 digits SHA-1, 128 SHA-256. */
export function algoOfDigits(digits: string): HmacAlgo | undefined {
  return digits.length === 80 ? 'sha1' : digits.length === 128 ? 'sha256' : undefined;
}

/** The client's proof H(Ra, Rb, A, B, Kab), hex. */
export function clientDigest(algo: HmacAlgo, raHex: string, rbHex: string, password: string): string {
  return h(algo, raHex + rbHex + A + B + h(algo, password));
}

/** The gateway's proof H(Ra, Rb, Kab), hex. */
export function serverDigest(algo: HmacAlgo, raHex: string, rbHex: string, password: string): string {
  return h(algo, raHex + rbHex + h(algo, password));
}
