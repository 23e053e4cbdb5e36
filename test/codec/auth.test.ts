/**
 * DM authentication formulas (notes §5.1): the spec test vectors TV-1..TV-6 plus property tests that
 * compare the module with a naive second implementation written here (string concatenation +
 * Buffer + node:crypto), and the parsing/naming helpers around them.
 */
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CodecError, GwError } from '../../src/errors.ts';
import {
  AUTH_TYPES,
  HMAC_HEADER,
  basicCred,
  formatHmacHeader,
  fromAAuthType,
  hmacMac,
  isAuthType,
  md5Cred,
  newNonce,
  nonceCandidates,
  nonceFromB64,
  nonceToB64,
  parseAuthType,
  parseBasicCred,
  parseHmacHeader,
  safeEqual,
  toAAuthType,
} from '../../src/codec/auth.ts';

// ---------------------------------------------------------------------------------------------
// Independent reference implementation of §5.1.

const H = (b: Buffer): Buffer => createHash('md5').update(b).digest();
const B64 = (b: Buffer): string => b.toString('base64');
const refBasic = (u: string, p: string): string => B64(Buffer.from(`${u}:${p}`, 'utf8'));
const refMd5Cred = (u: string, p: string, nonce: Uint8Array): string =>
  B64(H(Buffer.concat([Buffer.from(B64(H(Buffer.from(`${u}:${p}`, 'utf8'))) + ':', 'latin1'), Buffer.from(nonce)])));
const refMac = (u: string, p: string, nonce: Uint8Array, body: Uint8Array): string =>
  B64(
    H(
      Buffer.concat([
        Buffer.from(B64(H(Buffer.from(`${u}:${p}`, 'utf8'))) + ':', 'latin1'),
        Buffer.from(nonce),
        Buffer.from(':' + B64(H(Buffer.from(body))), 'latin1'),
      ]),
    ),
  );

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

function expectGwError(fn: () => unknown, ctor: abstract new (...args: never[]) => GwError, code: string, status: number | undefined): void {
  const e = caught(fn);
  expect(e).toBeInstanceOf(ctor);
  expect((e as GwError).code).toBe(code);
  expect((e as GwError).status).toBe(status);
}

const ascii = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'latin1'));
const textArb = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 40 }));
const nonceArb = fc.oneof(fc.constant(new Uint8Array(0)), fc.uint8Array({ maxLength: 48 }));

// ---------------------------------------------------------------------------------------------

const TV5_BODY =
  '<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>1</SessionID><MsgID>1</MsgID><Target><LocURI>http://dms.example.com/dm</LocURI></Target><Source><LocURI>IMEI:493005100592800</LocURI><LocName>dev1</LocName></Source></SyncHdr><SyncBody><Final/></SyncBody></SyncML>';
const TV11_WBXML =
  '02a4016a006d6c7103312e3200017203444d2f312e32000165033141324200015b033100016e57' +
  '03687474703a2f2f646d732e6578616d706c652e636f6d2f646d000101675703494d45493a3439' +
  '333030353130303539323830300001015a00014c0331363338340001010100006b464b03310001' +
  '4f0331323030000101120101';

describe('auth test vectors (test-vectors.md)', () => {
  it('TV-1: Basic', () => {
    expect(basicCred('Bruce2', 'OhBehave')).toBe('QnJ1Y2UyOk9oQmVoYXZl');
    expect(parseBasicCred('QnJ1Y2UyOk9oQmVoYXZl')).toEqual({ user: 'Bruce2', password: 'OhBehave' });
  });

  it('TV-2: MD5 Cred with the literal nonce "Nonce"', () => {
    expect(md5Cred('Bruce2', 'OhBehave', ascii('Nonce'))).toBe('Zz6EivR3yeaaENcRN6lpAQ==');
  });

  it('TV-3: MD5 Cred with the b64-decoded NextNonce', () => {
    const nonce = nonceFromB64('LG3iZQhhdmKNHg==');
    expect(Buffer.from(nonce).toString('hex')).toBe('2c6de265086176628d1e');
    expect(md5Cred('Bruce2', 'OhBehave', nonce)).toBe('LAK2i25Fh0nxxGGaAzRRpg==');
  });

  it('TV-5: HMAC over the 313-byte XML body, and the header', () => {
    const body = new TextEncoder().encode(TV5_BODY);
    expect(body.length).toBe(313);
    expect(B64(H(Buffer.from(body)))).toBe('qjERI11xHe+3KGD3DGf5Jg==');
    const mac = hmacMac('dev1', 'devpwd', ascii('0123456789abcdef'), body);
    expect(mac).toBe('HuWboJ8KzY+r0eY8slh57Q==');
    expect(`${HMAC_HEADER}: ${formatHmacHeader({ username: 'dev1', mac })}`).toBe(
      'x-syncml-hmac: algorithm=MD5, username="dev1", mac=HuWboJ8KzY+r0eY8slh57Q==',
    );
    expect(parseHmacHeader('algorithm=MD5, username="dev1", mac=HuWboJ8KzY+r0eY8slh57Q==')).toEqual({
      algorithm: 'MD5',
      username: 'dev1',
      mac: 'HuWboJ8KzY+r0eY8slh57Q==',
    });
  });

  it('TV-6: HMAC over the 129-byte WBXML of TV-11', () => {
    const body = new Uint8Array(Buffer.from(TV11_WBXML, 'hex'));
    expect(body.length).toBe(129);
    expect(hmacMac('IMEI:493005100592800', 'devpwd', new Uint8Array([1, 2, 3, 4]), body)).toBe('HgMlsZ7a1rN3F9jPyuqh/A==');
  });
});

describe('formulas against the reference implementation (properties)', () => {
  it('basicCred', () => {
    fc.assert(fc.property(textArb, textArb, (u, p) => {
      expect(basicCred(u, p)).toBe(refBasic(u, p));
    }), { numRuns: 300 });
  });

  it('parseBasicCred(basicCred(u, p)) round-trips when the user has no ":"', () => {
    const wellFormed = (s: string): boolean => Buffer.from(s, 'utf8').toString('utf8') === s;
    fc.assert(
      fc.property(textArb, textArb, (u, p) => {
        fc.pre(!u.includes(':') && wellFormed(u) && wellFormed(p));
        expect(parseBasicCred(basicCred(u, p))).toEqual({ user: u, password: p });
      }),
      { numRuns: 300 },
    );
  });

  it('md5Cred (empty nonces included)', () => {
    fc.assert(fc.property(textArb, textArb, nonceArb, (u, p, n) => {
      expect(md5Cred(u, p, n)).toBe(refMd5Cred(u, p, n));
    }), { numRuns: 300 });
  });

  it('hmacMac (empty nonces and bodies included)', () => {
    fc.assert(
      fc.property(textArb, textArb, nonceArb, fc.uint8Array({ maxLength: 600 }), (u, p, n, body) => {
        expect(hmacMac(u, p, n, body)).toBe(refMac(u, p, n, body));
      }),
      { numRuns: 300 },
    );
  });

  it('a Uint8Array view into a larger buffer hashes only its own bytes', () => {
    const big = new Uint8Array(Buffer.from('xxNoncexx', 'latin1'));
    expect(md5Cred('Bruce2', 'OhBehave', big.subarray(2, 7))).toBe('Zz6EivR3yeaaENcRN6lpAQ==');
    expect(nonceToB64(big.subarray(2, 7))).toBe(Buffer.from('Nonce').toString('base64'));
  });
});

describe('parseBasicCred errors', () => {
  it.each([
    ['not base64', '!!!!'],
    ['no colon', Buffer.from('nocolon').toString('base64')],
    ['invalid UTF-8', Buffer.from([0x61, 0x3a, 0xff]).toString('base64')],
    ['bad length', 'QnJ1Y'],
  ])('%s → CodecError 401', (_name, data) => {
    expectGwError(() => parseBasicCred(data), CodecError, 'CODEC_AUTH_BASIC', 401);
  });

  it('accepts line-wrapped and unpadded base64; splits at the first colon', () => {
    expect(parseBasicCred(' QnJ1Y2Uy\nOk9oQmVoYXZl ')).toEqual({ user: 'Bruce2', password: 'OhBehave' });
    expect(parseBasicCred(Buffer.from('a:b:c').toString('base64').replace(/=+$/, ''))).toEqual({ user: 'a', password: 'b:c' });
    expect(parseBasicCred(basicCred('', ''))).toEqual({ user: '', password: '' });
  });
});

describe('HMAC header', () => {
  const macArb = fc.uint8Array({ minLength: 1, maxLength: 16 }).map((b) => Buffer.from(b).toString('base64'));
  const userArb = fc.string({ minLength: 1, maxLength: 30 }).filter((s) => !/[\x00-\x1f\x7f]/.test(s));

  it('format/parse round-trips any username (quotes and backslashes escaped)', () => {
    fc.assert(
      fc.property(userArb, macArb, (username, mac) => {
        expect(parseHmacHeader(formatHmacHeader({ username, mac }))).toEqual({ algorithm: 'MD5', username, mac });
      }),
      { numRuns: 300 },
    );
  });

  it('parse is tolerant of spacing, order, name case and quoting', () => {
    const ws = fc.constantFrom('', ' ', '  ', '\t', ' \t ');
    const tokenUser = fc.stringMatching(/^[A-Za-z0-9:._-]{1,20}$/);
    fc.assert(
      fc.property(
        tokenUser,
        macArb,
        fc.boolean(),
        fc.boolean(),
        fc.boolean(),
        fc.boolean(),
        fc.array(ws, { minLength: 12, maxLength: 12 }),
        fc.nat(),
        (username, mac, quoteUser, quoteMac, withAlg, upperNames, w, perm) => {
          const name = (n: string): string => (upperNames ? n.toUpperCase() : n);
          const q = (v: string, quoted: boolean): string => (quoted ? `"${v}"` : v);
          const parts = [
            `${name('username')}${w[0]}=${w[1]}${q(username, quoteUser)}`,
            `${name('mac')}${w[2]}=${w[3]}${q(mac, quoteMac)}`,
            ...(withAlg ? [`${name('algorithm')}${w[4]}=${w[5]}${q('md5', perm % 2 === 0)}`] : []),
          ];
          // A permutation picked from `perm`.
          const ordered: string[] = [];
          const pool = [...parts];
          let k = perm;
          while (pool.length > 0) {
            ordered.push(...pool.splice(k % pool.length, 1));
            k = Math.floor(k / 3);
          }
          const header = `${w[6]}${ordered.join(`${w[7]},${w[8]}`)}${w[9]}`;
          expect(parseHmacHeader(header)).toEqual({ algorithm: 'MD5', username, mac });
        },
      ),
      { numRuns: 300 },
    );
  });

  it.each([
    ['missing username', 'algorithm=MD5, mac=abc='],
    ['missing mac', 'algorithm=MD5, username="dev1"'],
    ['empty username', 'username="", mac=abc='],
    ['empty mac', 'username=dev1, mac='],
    ['non-MD5 algorithm', 'algorithm=SHA-256, username="dev1", mac=abc='],
    ['duplicate username', 'username=a, username=b, mac=abc='],
    ['unterminated quote', 'username="dev1, mac=abc='],
    ['text after a quoted value', 'username="dev1"x, mac=abc='],
    ['unquoted value with spaces', 'username=dev 1, mac=abc='],
    ['parameter without value', 'username, mac=abc='],
    ['garbage', '=== ,,,'],
    ['empty', ''],
  ])('%s → GwError AUTH_HMAC_HEADER 401', (_name, value) => {
    expectGwError(() => parseHmacHeader(value), GwError, 'AUTH_HMAC_HEADER', 401);
  });

  it('ignores unknown parameters', () => {
    expect(parseHmacHeader('foo=bar, username=dev1, mac=abc=, x="y,z"')).toEqual({ algorithm: 'MD5', username: 'dev1', mac: 'abc=' });
  });

  it('format refuses header-injection characters and non-base64 macs', () => {
    expectGwError(() => formatHmacHeader({ username: 'a\r\nX-Evil: 1', mac: 'abc=' }), GwError, 'AUTH_HMAC_HEADER', 401);
    expectGwError(() => formatHmacHeader({ username: 'a', mac: 'ab c' }), GwError, 'AUTH_HMAC_HEADER', 401);
    expectGwError(() => formatHmacHeader({ username: '', mac: 'abc=' }), GwError, 'AUTH_HMAC_HEADER', 401);
  });
});

describe('auth type names (§5.1)', () => {
  it('maps Meta Types to AAuthType values and back', () => {
    expect(AUTH_TYPES.map(toAAuthType)).toEqual(['BASIC', 'DIGEST', 'HMAC']);
    for (const t of AUTH_TYPES) {
      expect(fromAAuthType(toAAuthType(t))).toBe(t);
      expect(isAuthType(t)).toBe(true);
    }
    expect(fromAAuthType('digest')).toBe('syncml:auth-md5');
    expect(isAuthType('syncml:auth-mac')).toBe(false);
    expect(isAuthType('toString')).toBe(false);
  });

  it('parses config spellings case-insensitively', () => {
    const cases: Array<[string, string]> = [
      ['basic', 'syncml:auth-basic'],
      ['syncml:auth-basic', 'syncml:auth-basic'],
      ['md5', 'syncml:auth-md5'],
      ['digest', 'syncml:auth-md5'],
      ['syncml:auth-md5', 'syncml:auth-md5'],
      ['hmac', 'syncml:auth-MAC'],
      ['mac', 'syncml:auth-MAC'],
      ['syncml:auth-MAC', 'syncml:auth-MAC'],
    ];
    fc.assert(
      fc.property(fc.constantFrom(...cases), fc.array(fc.boolean(), { minLength: 20, maxLength: 20 }), ([spelling, expected], flips) => {
        const mixed = [...spelling].map((c, i) => (flips[i] ? c.toUpperCase() : c.toLowerCase())).join('');
        expect(parseAuthType(mixed)).toBe(expected);
      }),
    );
    expect(parseAuthType(' Digest ')).toBe('syncml:auth-md5');
  });

  it.each(['', 'x509', 'syncml:auth-X509', 'HTTP-BASIC', 'md4', 'syncml:auth-', 'toString', '__proto__'])('rejects %j with GwError AUTH_TYPE 406', (v) => {
    expectGwError(() => parseAuthType(v), GwError, 'AUTH_TYPE', 406);
    expectGwError(() => fromAAuthType(v), GwError, 'AUTH_TYPE', 406);
  });

  it('toAAuthType rejects a non-AuthType at run time', () => {
    expectGwError(() => toAAuthType('syncml:auth-X509' as 'syncml:auth-md5'), GwError, 'AUTH_TYPE', 406);
  });
});

describe('nonces', () => {
  it('newNonce gives fresh random bytes of the requested size', () => {
    const a = newNonce();
    const b = newNonce();
    expect(a).toBeInstanceOf(Uint8Array);
    expect(a.length).toBe(16);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(false);
    expect(newNonce(1).length).toBe(1);
    expect(newNonce(32).length).toBe(32);
    for (const n of [0, -1, 1.5, 4097, Number.NaN]) expectGwError(() => newNonce(n), GwError, 'AUTH_NONCE_SIZE', undefined);
  });

  it('nonceToB64 / nonceFromB64 agree with Buffer and round-trip', () => {
    fc.assert(
      fc.property(nonceArb, (n) => {
        const s = nonceToB64(n);
        expect(s).toBe(Buffer.from(n).toString('base64'));
        expect(Buffer.from(nonceFromB64(s)).equals(Buffer.from(n))).toBe(true);
      }),
    );
  });

  it('nonceFromB64 rejects non-base64 with CodecError 400', () => {
    for (const s of ['Nonce', 'abc$', 'a===', '====', 'QQ=Q']) expectGwError(() => nonceFromB64(s), CodecError, 'CODEC_AUTH_NONCE', 400);
  });

  it('nonceCandidates: decoded first, then raw, deduplicated (§4.2)', () => {
    const hex = (xs: Uint8Array[]): string[] => xs.map((x) => Buffer.from(x).toString('hex'));
    expect(hex(nonceCandidates('LG3iZQhhdmKNHg=='))).toEqual(['2c6de265086176628d1e', Buffer.from('LG3iZQhhdmKNHg==').toString('hex')]);
    expect(hex(nonceCandidates('AAAAAA=='))).toEqual(['00000000', Buffer.from('AAAAAA==').toString('hex')]);
    expect(hex(nonceCandidates('Nonce'))).toEqual([Buffer.from('Nonce').toString('hex')]);
    expect(hex(nonceCandidates(''))).toEqual(['']);
    fc.assert(
      fc.property(nonceArb, (n) => {
        const c = nonceCandidates(Buffer.from(n).toString('base64'));
        expect(Buffer.from(c[0] ?? new Uint8Array(1)).equals(Buffer.from(n))).toBe(true);
        expect(new Set(hex(c)).size).toBe(c.length);
      }),
    );
  });

  it('a verifier using nonceCandidates accepts a peer that used the raw stored string (AOSP fallback)', () => {
    const stored = 'LG3iZQhhdmKNHg==';
    const fromPeer = md5Cred('Bruce2', 'OhBehave', ascii(stored));
    const matches = nonceCandidates(stored).map((n) => safeEqual(md5Cred('Bruce2', 'OhBehave', n), fromPeer));
    expect(matches).toEqual([false, true]);
  });
});

describe('safeEqual', () => {
  it('agrees with === (lone surrogates kept distinct)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 20 }), fc.string({ unit: 'binary', maxLength: 20 }), (a, b) => {
        expect(safeEqual(a, b)).toBe(a === b);
        expect(safeEqual(a, a)).toBe(true);
      }),
    );
    expect(safeEqual('\ud800', '\udc00')).toBe(false);
    expect(safeEqual('', '')).toBe(true);
    expect(safeEqual('abc', 'abcd')).toBe(false);
  });
});
