/**
 * Package 0 (notes §4): the spec test vectors TV-7..TV-10, plus property tests that compare the
 * module against a second, deliberately naive implementation written here from the §4.1 mask table
 * and the §4.2 formula (BigInt masks, Buffer.concat, string building), so a shared mistake in the
 * module's byte arithmetic cannot make both sides agree.
 */
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CodecError } from '../../src/errors.ts';
import {
  DM12_VERSION,
  RESYNC_NONCE,
  decodePackage0,
  encodePackage0,
  encodeTrigger,
  package0Digest,
  sessionIdHex,
  verifyPackage0,
  type Package0Trigger,
} from '../../src/codec/package0.ts';

// ---------------------------------------------------------------------------------------------
// Independent reference implementation (§4.1 mask table, §4.2 formula).

const MASK = {
  version: { mask: 0xffc0000000000000n, shift: 54n },
  ui: { mask: 0x0030000000000000n, shift: 52n },
  initiator: { mask: 0x0008000000000000n, shift: 51n },
  sessionid: { mask: 0x0000000000ffff00n, shift: 8n },
  length: { mask: 0x00000000000000ffn, shift: 0n },
} as const;

function refTrigger(t: Package0Trigger): Buffer {
  const sid = Buffer.from(t.serverId, 'utf8');
  let hdr = 0n;
  hdr |= (BigInt(t.version) << MASK.version.shift) & MASK.version.mask;
  hdr |= (BigInt(t.uiMode) << MASK.ui.shift) & MASK.ui.mask;
  hdr |= (BigInt(t.initiator) << MASK.initiator.shift) & MASK.initiator.mask;
  hdr |= (BigInt(t.sessionId) << MASK.sessionid.shift) & MASK.sessionid.mask;
  hdr |= (BigInt(sid.length) << MASK.length.shift) & MASK.length.mask;
  const head = Buffer.alloc(8);
  head.writeBigUInt64BE(hdr);
  return Buffer.concat([head, sid, Buffer.from(t.vendor)]);
}

function refHeaderFields(header8: Uint8Array): { version: number; ui: number; initiator: number; sessionId: number; length: number } {
  const v = Buffer.from(header8).readBigUInt64BE(0);
  const get = (f: { mask: bigint; shift: bigint }): number => Number((v & f.mask) >> f.shift);
  return { version: get(MASK.version), ui: get(MASK.ui), initiator: get(MASK.initiator), sessionId: get(MASK.sessionid), length: get(MASK.length) };
}

function refMd5(buf: Buffer): Buffer {
  return createHash('md5').update(buf).digest();
}

function refDigest(serverId: string, password: string, nonce: Uint8Array, trigger: Uint8Array): Buffer {
  const a = refMd5(Buffer.from(serverId + ':' + password, 'utf8')).toString('base64');
  const c = refMd5(Buffer.from(trigger)).toString('base64');
  return refMd5(Buffer.concat([Buffer.from(a + ':', 'latin1'), Buffer.from(nonce), Buffer.from(':' + c, 'latin1')]));
}

function refSessionIdHex(id: number): string {
  const digits = '0123456789ABCDEF';
  let out = '';
  let n = id;
  do {
    out = digits[n % 16] + out;
    n = Math.floor(n / 16);
  } while (n > 0);
  return out;
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const fromHex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));

function expectCodecError(fn: () => unknown, code: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(CodecError);
  expect((caught as CodecError).code).toBe(code);
  expect((caught as CodecError).status).toBe(400);
}

// ---------------------------------------------------------------------------------------------
// Arbitraries.

const utf8Len = (s: string): number => Buffer.byteLength(s, 'utf8');

const serverIdArb = fc
  .oneof(
    fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 64 }),
    fc.string({ unit: 'binary', minLength: 1, maxLength: 80 }),
    fc.string({ unit: 'grapheme-ascii', minLength: 250, maxLength: 255 }),
    fc.constantFrom('com.example.dms', 'x', 'ü', '𝄞'.repeat(63)),
  )
  .filter((s) => utf8Len(s) >= 1 && utf8Len(s) <= 255);

const triggerArb: fc.Arbitrary<Package0Trigger> = fc.record({
  version: fc.constantFrom(10, 11, 12, 13),
  uiMode: fc.constantFrom(0 as const, 1 as const, 2 as const, 3 as const),
  initiator: fc.constantFrom(0 as const, 1 as const),
  sessionId: fc.oneof(fc.integer({ min: 1, max: 0xffff }), fc.constantFrom(1, 0xff, 0x100, 0xffff)),
  serverId: serverIdArb,
  vendor: fc.oneof(fc.constant(new Uint8Array(0)), fc.uint8Array({ maxLength: 300 })),
});

const passwordArb = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 40 }));
const nonceArb = fc.oneof(fc.constant(new Uint8Array(0)), fc.constant(new Uint8Array(4)), fc.uint8Array({ maxLength: 48 }));

// ---------------------------------------------------------------------------------------------

describe('Package 0 test vectors (test-vectors.md)', () => {
  const tv7: Package0Trigger = { version: 11, uiMode: 1, initiator: 1, sessionId: 0x1a2b, serverId: 'com.example.dms', vendor: new Uint8Array(0) };

  it('TV-7: trigger, digest, full message and P1 SessionID', () => {
    const trigger = encodeTrigger(tv7);
    expect(hex(trigger)).toBe('02d80000001a2b0f636f6d2e6578616d706c652e646d73');
    const digest = package0Digest('com.example.dms', 'srvpwd', new Uint8Array(0), trigger);
    expect(hex(digest)).toBe('e36e6d9d7e79bf9ef5c45ad7e8d1566f');
    const msg = encodePackage0(tv7, { password: 'srvpwd', nonce: new Uint8Array(0) });
    expect(msg.length).toBe(39);
    expect(hex(msg)).toBe('e36e6d9d7e79bf9ef5c45ad7e8d1566f02d80000001a2b0f636f6d2e6578616d706c652e646d73');
    expect(sessionIdHex(0x1a2b)).toBe('1A2B');
    const p = decodePackage0(msg);
    expect(p).toEqual({ ...tv7, digest: fromHex('e36e6d9d7e79bf9ef5c45ad7e8d1566f') });
    expect(verifyPackage0(p, msg, { password: 'srvpwd', nonce: new Uint8Array(0) })).toEqual({ ok: true, nonceUsed: 'stored' });
  });

  it('TV-7: defaults (version 11, empty vendor) give the same bytes', () => {
    const { version: _v, vendor: _b, ...rest } = tv7;
    expect(DM12_VERSION).toBe(11);
    expect(hex(encodeTrigger(rest))).toBe('02d80000001a2b0f636f6d2e6578616d706c652e646d73');
  });

  it('TV-8: resync nonce (four zero bytes) digest, detected by verify', () => {
    expect(hex(RESYNC_NONCE)).toBe('00000000');
    const trigger = encodeTrigger(tv7);
    expect(hex(package0Digest('com.example.dms', 'srvpwd', new Uint8Array(4), trigger))).toBe('c5fdd3f2677fdbf5a4751cf05c485cc7');
    const msg = fromHex('c5fdd3f2677fdbf5a4751cf05c485cc7' + hex(trigger));
    const p = decodePackage0(msg);
    // The device's stored nonce is something else: only the resync fallback matches (§4.2 step 1).
    expect(verifyPackage0(p, msg, { password: 'srvpwd', nonce: new TextEncoder().encode('stale') })).toEqual({ ok: true, nonceUsed: 'resync' });
    expect(verifyPackage0(p, msg, { password: 'other', nonce: new Uint8Array(0) })).toEqual({ ok: false });
  });

  it('TV-9: b64-decoded nonce, ui 3, sessionid 1, vendor body 01 02', () => {
    const nonce = new Uint8Array(Buffer.from('MTIzNDU2Nzg5MGFiY2RlZg==', 'base64'));
    expect(Buffer.from(nonce).toString('latin1')).toBe('1234567890abcdef');
    const t: Package0Trigger = { version: 11, uiMode: 3, initiator: 1, sessionId: 1, serverId: 'com.example.dms', vendor: new Uint8Array([1, 2]) };
    const msg = encodePackage0(t, { password: 'srvpwd', nonce });
    expect(hex(msg)).toBe('31977fc92fe1e787e517e36bb86e559e02f800000000010f636f6d2e6578616d706c652e646d730102');
    expect(sessionIdHex(1)).toBe('1');
    const p = decodePackage0(msg);
    expect(p).toEqual({ ...t, digest: fromHex('31977fc92fe1e787e517e36bb86e559e') });
    expect(verifyPackage0(p, msg, { password: 'srvpwd', nonce })).toEqual({ ok: true, nonceUsed: 'stored' });
  });

  it('TV-10: header bytes 02 D8 and 02 F8', () => {
    const body = '0000001a2b0f636f6d2e6578616d706c652e646d73';
    const a = decodePackage0(fromHex('00'.repeat(16) + '02d8' + body));
    expect([a.version, a.uiMode, a.initiator]).toEqual([11, 1, 1]);
    const b = decodePackage0(fromHex('00'.repeat(16) + '02f8' + body));
    expect([b.version, b.uiMode, b.initiator]).toEqual([11, 3, 1]);
  });

  it('§4.3: sessionIdHex is uppercase without leading zeros', () => {
    expect(sessionIdHex(0x00ff)).toBe('FF');
    expect(sessionIdHex(0xffff)).toBe('FFFF');
    expect(sessionIdHex(0x0100)).toBe('100');
    expectCodecError(() => sessionIdHex(0), 'CODEC_P0_FIELD');
    expectCodecError(() => sessionIdHex(0x10000), 'CODEC_P0_FIELD');
  });
});

describe('Package 0 against the reference implementation (properties)', () => {
  it('encodeTrigger matches the BigInt-mask reference for all valid triggers', () => {
    fc.assert(
      fc.property(triggerArb, (t) => {
        expect(hex(encodeTrigger(t))).toBe(hex(refTrigger(t)));
      }),
      { numRuns: 500 },
    );
  });

  it('package0Digest matches the reference formula (empty nonces and triggers included)', () => {
    fc.assert(
      fc.property(serverIdArb, passwordArb, nonceArb, fc.uint8Array({ maxLength: 300 }), (sid, pwd, nonce, trig) => {
        expect(hex(package0Digest(sid, pwd, nonce, trig))).toBe(hex(refDigest(sid, pwd, nonce, trig)));
      }),
      { numRuns: 500 },
    );
  });

  it('encodePackage0 = reference digest ‖ reference trigger', () => {
    fc.assert(
      fc.property(triggerArb, passwordArb, nonceArb, (t, password, nonce) => {
        const trig = refTrigger(t);
        const expected = Buffer.concat([refDigest(t.serverId, password, nonce, trig), trig]);
        expect(hex(encodePackage0(t, { password, nonce }))).toBe(hex(expected));
      }),
      { numRuns: 300 },
    );
  });

  it('decode(encode(t)) == t, and the header fields agree with the §4.1 masks', () => {
    fc.assert(
      fc.property(triggerArb, passwordArb, nonceArb, (t, password, nonce) => {
        const msg = encodePackage0(t, { password, nonce });
        const p = decodePackage0(msg);
        expect(p).toEqual({ ...t, digest: msg.slice(0, 16) });
        const f = refHeaderFields(msg.subarray(16, 24));
        expect(f).toEqual({ version: p.version, ui: p.uiMode, initiator: p.initiator, sessionId: p.sessionId, length: utf8Len(p.serverId) });
        // The future-use bits are zero when we encode (§4.1).
        expect(Buffer.from(msg.subarray(16, 24)).readBigUInt64BE(0) & 0x0007ffffff000000n).toBe(0n);
      }),
      { numRuns: 300 },
    );
  });

  it('decoded vendor and digest do not alias the input buffer', () => {
    const msg = encodePackage0({ uiMode: 0, initiator: 1, sessionId: 7, serverId: 's', vendor: new Uint8Array([9, 9]) }, { password: 'p', nonce: new Uint8Array(0) });
    const p = decodePackage0(msg);
    msg.fill(0);
    expect([...p.vendor]).toEqual([9, 9]);
    expect(p.digest.some((b) => b !== 0)).toBe(true);
  });

  it('sessionIdHex matches a digit-by-digit reference', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 0xffff }), (id) => {
        expect(sessionIdHex(id)).toBe(refSessionIdHex(id));
      }),
    );
  });
});

describe('verifyPackage0 (§4.2)', () => {
  it('correct creds pass with the stored nonce', () => {
    fc.assert(
      fc.property(triggerArb, passwordArb, nonceArb, (t, password, nonce) => {
        const msg = encodePackage0(t, { password, nonce });
        expect(verifyPackage0(decodePackage0(msg), msg, { password, nonce })).toEqual({ ok: true, nonceUsed: 'stored' });
      }),
      { numRuns: 200 },
    );
  });

  it('a wrong password fails (with either nonce)', () => {
    fc.assert(
      fc.property(triggerArb, passwordArb, passwordArb, nonceArb, (t, password, wrong, nonce) => {
        fc.pre(wrong !== password);
        const msg = encodePackage0(t, { password, nonce });
        expect(verifyPackage0(decodePackage0(msg), msg, { password: wrong, nonce })).toEqual({ ok: false });
        const resync = encodePackage0(t, { password, nonce: new Uint8Array(4) });
        expect(verifyPackage0(decodePackage0(resync), resync, { password: wrong, nonce })).toEqual({ ok: false });
      }),
      { numRuns: 200 },
    );
  });

  it('a message keyed with the resync nonce is detected as such when the stored nonce differs', () => {
    fc.assert(
      fc.property(triggerArb, passwordArb, nonceArb, (t, password, stored) => {
        fc.pre(hex(stored) !== '00000000');
        const msg = Buffer.concat([refDigest(t.serverId, password, new Uint8Array(4), refTrigger(t)), refTrigger(t)]);
        const raw = new Uint8Array(msg);
        expect(verifyPackage0(decodePackage0(raw), raw, { password, nonce: stored })).toEqual({ ok: true, nonceUsed: 'resync' });
      }),
      { numRuns: 200 },
    );
  });

  it('a different stored nonce fails', () => {
    fc.assert(
      fc.property(triggerArb, passwordArb, nonceArb, nonceArb, (t, password, nonce, other) => {
        fc.pre(hex(nonce) !== hex(other) && hex(nonce) !== '00000000');
        const msg = encodePackage0(t, { password, nonce });
        expect(verifyPackage0(decodePackage0(msg), msg, { password, nonce: other })).toEqual({ ok: false });
      }),
      { numRuns: 200 },
    );
  });

  it('any tampered byte (digest or trigger) fails or no longer decodes', () => {
    fc.assert(
      fc.property(triggerArb, passwordArb, nonceArb, fc.nat(), fc.integer({ min: 1, max: 255 }), (t, password, nonce, at, xor) => {
        const msg = encodePackage0(t, { password, nonce });
        const i = at % msg.length;
        const bad = msg.slice();
        bad[i] = (bad[i] ?? 0) ^ xor;
        let p;
        try {
          p = decodePackage0(bad);
        } catch (e) {
          expect(e).toBeInstanceOf(CodecError);
          return;
        }
        expect(verifyPackage0(p, bad, { password, nonce })).toEqual({ ok: false });
      }),
      { numRuns: 500 },
    );
  });

  it('a digest of the wrong length is a plain failure, not an exception', () => {
    const msg = encodePackage0({ uiMode: 1, initiator: 1, sessionId: 1, serverId: 's' }, { password: 'p', nonce: new Uint8Array(0) });
    const p = decodePackage0(msg);
    expect(verifyPackage0({ ...p, digest: p.digest.subarray(0, 8) }, msg, { password: 'p', nonce: new Uint8Array(0) })).toEqual({ ok: false });
    expect(verifyPackage0(p, msg.subarray(0, 20), { password: 'p', nonce: new Uint8Array(0) })).toEqual({ ok: false });
  });

  it('non-zero future-use bits are accepted on decode and covered by the digest over the raw bytes', () => {
    const t: Package0Trigger = { version: 11, uiMode: 2, initiator: 0, sessionId: 0x42, serverId: 'srv', vendor: new Uint8Array([7]) };
    const trig = refTrigger(t);
    trig[1] = (trig[1] ?? 0) | 0x05; // low 3 bits of byte 1
    trig[3] = 0xaa; // bytes 2-4
    const raw = new Uint8Array(Buffer.concat([refDigest('srv', 'pw', new Uint8Array(0), trig), trig]));
    const p = decodePackage0(raw);
    expect({ ...p, digest: undefined }).toEqual({ ...t, digest: undefined });
    expect(verifyPackage0(p, raw, { password: 'pw', nonce: new Uint8Array(0) })).toEqual({ ok: true, nonceUsed: 'stored' });
    // A re-encoding normalises the bits, so it must not be what verify hashes.
    const reencoded = new Uint8Array(Buffer.concat([raw.subarray(0, 16), encodeTrigger(t)]));
    expect(verifyPackage0(p, reencoded, { password: 'pw', nonce: new Uint8Array(0) })).toEqual({ ok: false });
  });
});

describe('decodePackage0 strictness', () => {
  const good = encodePackage0({ uiMode: 1, initiator: 1, sessionId: 0x1a2b, serverId: 'com.example.dms' }, { password: 'x', nonce: new Uint8Array(0) });

  it('rejects messages under 24 bytes', () => {
    for (let n = 0; n < 24; n++) expectCodecError(() => decodePackage0(good.subarray(0, n)), 'CODEC_P0_TRUNCATED');
  });

  it('rejects a length byte beyond the end', () => {
    for (let n = 24; n < good.length; n++) expectCodecError(() => decodePackage0(good.subarray(0, n)), 'CODEC_P0_TRUNCATED');
    expect(decodePackage0(good).serverId).toBe('com.example.dms');
  });

  it('rejects sessionId 0 and an empty server identifier', () => {
    const zeroSid = good.slice();
    zeroSid[21] = 0;
    zeroSid[22] = 0;
    expectCodecError(() => decodePackage0(zeroSid), 'CODEC_P0_FIELD');
    const emptyId = good.slice(0, 24);
    emptyId[23] = 0;
    expectCodecError(() => decodePackage0(emptyId), 'CODEC_P0_FIELD');
  });

  it('rejects a server identifier that is not UTF-8', () => {
    const bad = good.slice();
    bad[24] = 0xff;
    expectCodecError(() => decodePackage0(bad), 'CODEC_P0_FIELD');
  });

  it('rejects versions outside {10, 11, 12, 13}', () => {
    for (const v of [0, 1, 9, 14, 20, 1023]) {
      const bad = good.slice();
      const top = (v << 6) | (1 << 4) | (1 << 3);
      bad[16] = top >> 8;
      bad[17] = top & 0xff;
      expectCodecError(() => decodePackage0(bad), 'CODEC_P0_VERSION');
    }
    for (const v of [10, 11, 12, 13]) {
      const ok = good.slice();
      ok[16] = ((v << 6) >> 8) & 0xff;
      ok[17] = ((v << 6) & 0xff) | 0x18;
      expect(decodePackage0(ok).version).toBe(v);
    }
  });

  it('fuzz: arbitrary bytes either decode or throw a CodecError (400), never anything else', () => {
    const mutated = fc
      .tuple(triggerArb, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), fc.nat())
      .map(([t, edits, cut]) => {
        const m = encodePackage0(t, { password: 'p', nonce: new Uint8Array(0) });
        for (const [at, v] of edits) m[at % m.length] = v;
        return m.subarray(0, cut % (m.length + 1));
      });
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 400 }), mutated), (bytes) => {
        try {
          const p = decodePackage0(bytes);
          // Whatever decodes is well-formed.
          expect(p.digest.length).toBe(16);
          expect(p.sessionId).toBeGreaterThan(0);
          expect([10, 11, 12, 13]).toContain(p.version);
        } catch (e) {
          expect(e).toBeInstanceOf(CodecError);
          expect((e as CodecError).status).toBe(400);
          expect((e as CodecError).code).toMatch(/^CODEC_P0_/);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('non-Uint8Array input is a CodecError too', () => {
    expectCodecError(() => decodePackage0('hello' as unknown as Uint8Array), 'CODEC_P0_TRUNCATED');
    expectCodecError(() => decodePackage0(null as unknown as Uint8Array), 'CODEC_P0_TRUNCATED');
  });
});

describe('encodeTrigger validation', () => {
  const base: Package0Trigger = { version: 11, uiMode: 0, initiator: 0, sessionId: 1, serverId: 'srv', vendor: new Uint8Array(0) };

  it('rejects out-of-range fields with CODEC_P0_FIELD', () => {
    for (const sessionId of [0, -1, 0x10000, 1.5, Number.NaN]) expectCodecError(() => encodeTrigger({ ...base, sessionId }), 'CODEC_P0_FIELD');
    expectCodecError(() => encodeTrigger({ ...base, serverId: '' }), 'CODEC_P0_FIELD');
    expectCodecError(() => encodeTrigger({ ...base, serverId: 'a'.repeat(256) }), 'CODEC_P0_FIELD');
    expectCodecError(() => encodeTrigger({ ...base, serverId: 'ü'.repeat(128) }), 'CODEC_P0_FIELD'); // 256 UTF-8 bytes
    expectCodecError(() => encodeTrigger({ ...base, serverId: '\ud800' }), 'CODEC_P0_FIELD'); // lone surrogate
    expectCodecError(() => encodeTrigger({ ...base, uiMode: 4 as 0 }), 'CODEC_P0_FIELD');
    expectCodecError(() => encodeTrigger({ ...base, initiator: 2 as 0 }), 'CODEC_P0_FIELD');
    expect(encodeTrigger({ ...base, serverId: 'a'.repeat(255) }).length).toBe(8 + 255);
  });

  it('rejects unsupported versions with CODEC_P0_VERSION', () => {
    for (const version of [0, 9, 14, 1024]) expectCodecError(() => encodeTrigger({ ...base, version }), 'CODEC_P0_VERSION');
  });
});
