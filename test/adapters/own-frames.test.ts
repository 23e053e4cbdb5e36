/**
 * The OWN codec (adapters/own/frames.ts) and authentication arithmetic (auth.ts): round trips and
 * stream splitting as properties, strict rejection of garbage, and the OPEN/HMAC arithmetic checked
 * against the independent implementation inside npm `node-red-contrib-myhome-bticino-v2`.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import vm from 'node:vm';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { clientDigest, digitsToHex, hexToDigits, openPassword, serverDigest } from '../../adapters/own/auth.ts';
import {
  ACK,
  FrameSplitter,
  NACK,
  type OwnFrame,
  OwnCodecError,
  areaOf,
  decodeTemperature,
  encodeTemperature,
  formatFrame,
  parseFrame,
} from '../../adapters/own/frames.ts';

const digits = (min = 1, max = 4) => fc.stringMatching(new RegExp(`^\\d{${min},${max}}$`));
const param = fc.array(digits(1, 3), { maxLength: 2 }).map((ps) => ps.map((p) => `#${p}`).join(''));
const what = fc.tuple(digits(), param).map(([a, b]) => a + b);
const where = fc.oneof(
  fc.tuple(digits(), param).map(([a, b]) => a + b),
  fc.tuple(digits(1, 3), param).map(([a, b]) => `#${a}${b}`),
);
const values = fc.array(digits(1, 6), { maxLength: 5 });

/** Every kind of frame the codec knows. */
const frame: fc.Arbitrary<OwnFrame> = fc.oneof(
  fc.constant<OwnFrame>({ kind: 'ack' }),
  fc.constant<OwnFrame>({ kind: 'nack' }),
  fc.record({ kind: fc.constant('normal' as const), who: digits(), what, where }),
  fc.record({ kind: fc.constant('normal' as const), who: digits(), what }),
  fc.record({ kind: fc.constant('status' as const), who: digits(), where }),
  fc.record({ kind: fc.constant('dimension' as const), who: digits(), where: fc.oneof(where, fc.constant('')), dim: what, values }),
  fc.record({ kind: fc.constant('dimWrite' as const), who: digits(), where, dim: what, values: fc.array(digits(1, 6), { minLength: 1, maxLength: 4 }) }),
  fc.record({ kind: fc.constant('nonce' as const), digits: digits(1, 128) }),
);

/** The npm client's own (unexported) calcPass and calcHMAC, loaded from its source as a vm script. */
function independentAuth(): { calcPass: (pass: string, nonce: string) => string; calcHMAC: (ra: string, pass: string) => [string, string] } {
  const require = createRequire(import.meta.url);
  const file = require.resolve('node-red-contrib-myhome-bticino-v2/myhome-utils.js');
  const ctx = vm.createContext({ module: { exports: {} }, require, setTimeout, clearTimeout });
  vm.runInContext(readFileSync(file, 'utf8'), ctx);
  return { calcPass: ctx['calcPass'], calcHMAC: ctx['calcHMAC'] };
}

describe('OWN frames', () => {
  it('decodes the frames of the protocol', () => {
    expect(parseFrame(ACK)).toEqual({ kind: 'ack' });
    expect(parseFrame(NACK)).toEqual({ kind: 'nack' });
    expect(parseFrame('*1*1*11##')).toEqual({ kind: 'normal', who: '1', what: '1', where: '11' });
    expect(parseFrame('*99*0##')).toEqual({ kind: 'normal', who: '99', what: '0' });
    expect(parseFrame('*#1*0##')).toEqual({ kind: 'status', who: '1', where: '0' });
    expect(parseFrame('*#4*3*0##')).toEqual({ kind: 'dimension', who: '4', where: '3', dim: '0', values: [] });
    expect(parseFrame('*#4*3*0*0215##')).toEqual({ kind: 'dimension', who: '4', where: '3', dim: '0', values: ['0215'] });
    expect(parseFrame('*#13**12*0*3*104*18*171*1##')).toEqual({ kind: 'dimension', who: '13', where: '', dim: '12', values: ['0', '3', '104', '18', '171', '1'] });
    expect(parseFrame('*#4*#3*#14*0225*3##')).toEqual({ kind: 'dimWrite', who: '4', where: '#3', dim: '14', values: ['0225', '3'] });
    expect(parseFrame('*#2*21*#11#001*40##')).toEqual({ kind: 'dimWrite', who: '2', where: '21', dim: '11#001', values: ['40'] });
    expect(parseFrame('*1*1*#5##')).toEqual({ kind: 'normal', who: '1', what: '1', where: '#5' });
    expect(parseFrame('*1*1*11#4#01##')).toEqual({ kind: 'normal', who: '1', what: '1', where: '11#4#01' });
    expect(parseFrame('*#603356072##')).toEqual({ kind: 'nonce', digits: '603356072' });
  });

  it('rejects garbage with OWN_BAD_FRAME', () => {
    for (const bad of ['', '*', '##', '1*1*11##', '*1*1*11#', '*1*a*11##', '*1*1*11*2*3##', '*1**11##', '*#1##x', '*#*2##', '*#1*##', '*#1*11*#1##', '*1*1*1##1##', '*1*1* 11##', `*${'1'.repeat(2000)}##`]) {
      expect(() => parseFrame(bad), bad).toThrow(OwnCodecError);
      try {
        parseFrame(bad);
      } catch (err) {
        expect((err as OwnCodecError).code).toBe('OWN_BAD_FRAME');
      }
    }
  });

  it('round-trips every frame (format then parse is the identity)', () => {
    fc.assert(
      fc.property(frame, (f) => {
        const s = formatFrame(f);
        expect(s.startsWith('*') && s.endsWith('##')).toBe(true);
        expect(parseFrame(s)).toEqual(f);
        expect(formatFrame(parseFrame(s))).toBe(s);
      }),
      { numRuns: 2000 },
    );
  });

  it('splits a stream cut anywhere into the same frames', () => {
    fc.assert(
      fc.property(fc.array(frame, { minLength: 1, maxLength: 12 }), fc.array(fc.integer({ min: 0, max: 400 }), { maxLength: 8 }), (fs, cuts) => {
        const wire = fs.map(formatFrame).join('');
        const points = [...new Set(cuts.map((c) => c % (wire.length + 1)))].sort((a, b) => a - b);
        const sp = new FrameSplitter();
        const out: string[] = [];
        let at = 0;
        for (const p of [...points, wire.length]) {
          out.push(...sp.push(Buffer.from(wire.slice(at, p), 'latin1')));
          at = p;
        }
        expect(out.map(parseFrame)).toEqual(fs);
        expect(sp.pending).toBe(0);
      }),
      { numRuns: 500 },
    );
  });

  it('throws on a stream that is not frames, then works again', () => {
    const sp = new FrameSplitter();
    expect(sp.push('*1*1*11##*1*0')).toEqual(['*1*1*11##']);
    expect(sp.push('*12##')).toEqual(['*1*0*12##']);
    expect(() => sp.push('garbage##')).toThrow(OwnCodecError);
    expect(sp.push(ACK)).toEqual([ACK]);
    expect(() => sp.push(`*${'1'.repeat(1100)}`)).toThrow(/no frame end/);
    expect(sp.pending).toBe(0);
  });

  it('never lets arbitrary bytes through unchecked', () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom('*', '#', '1', '0', '9', 'a', ' ') , maxLength: 30 }), (s) => {
        try {
          const f = parseFrame(s);
          expect(formatFrame(f)).toBe(s); // what parses is canonical
        } catch (err) {
          expect(err).toBeInstanceOf(OwnCodecError);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('encodes temperatures as sign + tenths', () => {
    expect(encodeTemperature(21.5)).toBe('0215');
    expect(encodeTemperature(-3)).toBe('1030');
    expect(decodeTemperature('1030')).toBe(-3);
    fc.assert(fc.property(fc.integer({ min: -999, max: 999 }), (tenths) => {
        expect(decodeTemperature(encodeTemperature(tenths / 10))).toBeCloseTo(tenths / 10, 5);
      }));
    expect(() => encodeTemperature(100)).toThrow(OwnCodecError);
    expect(() => decodeTemperature('2000')).toThrow(OwnCodecError);
  });

  it('knows areas of light points', () => {
    expect(areaOf('11')).toBe('1');
    expect(areaOf('05')).toBe('00');
    expect(areaOf('1005')).toBe('10');
    expect(areaOf('0')).toBeUndefined();
    expect(areaOf('#5')).toBeUndefined();
  });
});

describe('OWN authentication arithmetic, against the independent npm client', () => {
  const oracle = independentAuth();

  it('computes OPEN passwords like the npm client', () => {
    expect(typeof oracle.calcPass).toBe('function');
    fc.assert(
      fc.property(fc.stringMatching(/^[1-9]\d{4,8}$/), fc.stringMatching(/^\d{1,12}$/), (pass, nonce) => {
        expect(openPassword(pass, nonce)).toBe(oracle.calcPass(pass, nonce));
      }),
      { numRuns: 3000 },
    );
    // The vector published with the OPEN algorithm.
    expect(openPassword('12345', '603356072')).toBe('25280520');
  });

  it('answers HMAC challenges the way the npm client expects', () => {
    fc.assert(
      fc.property(fc.constantFrom('sha1' as const, 'sha256' as const), fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.string({ minLength: 1, maxLength: 20 }), (algo, bytes, pw) => {
        const raHex = Buffer.from(bytes).toString('hex').slice(0, algo === 'sha1' ? 40 : 64);
        const [request, expected] = oracle.calcHMAC(hexToDigits(raHex), pw);
        const m = /^\*#(\d+)\*(\d+)##$/.exec(request)!;
        const rbHex = digitsToHex(m[1]!)!;
        // Its proof is ours for its Rb, and the answer it expects is what our gateway sends.
        expect(m[2]).toBe(hexToDigits(clientDigest(algo, raHex, rbHex, pw)));
        expect(expected).toBe(`*#${hexToDigits(serverDigest(algo, raHex, rbHex, pw))}##`);
      }),
      { numRuns: 300 },
    );
  });

  it('converts hex and digits both ways', () => {
    fc.assert(fc.property(fc.stringMatching(/^[0-9a-f]{0,64}$/), (hex) => {
        expect(digitsToHex(hexToDigits(hex))).toBe(hex);
      }));
    expect(digitsToHex('1617')).toBeUndefined();
    expect(digitsToHex('123')).toBeUndefined();
  });
});
