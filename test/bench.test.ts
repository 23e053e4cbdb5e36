/**
 * Smoke test of the codec benchmark (bench/codec.bench.ts) in quick mode: the output is one JSON
 * line per figure with the documented fields and positive numbers. No timing assertions.
 */
import { describe, expect, it } from 'vitest';
import { benchMessages, runCodecBench } from '../bench/codec.bench.ts';
import { decodeSyncML, encodeSyncML } from '../src/codec/syncml.ts';

describe('codec benchmark (quick mode)', () => {
  it('prints one JSON line per figure with name, n, value, unit, baseline and ratio (and a note for codec.xml/codec.wbxml)', () => {
    const lines: string[] = [];
    const info: string[] = [];
    const figures = runCodecBench({ quick: true, write: (l) => lines.push(l), log: (l) => info.push(l) });
    expect(lines).toHaveLength(6);
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(parsed.map((p) => p.name)).toEqual(['codec.xml', 'codec.wbxml', 'codec.xml.roundtrip', 'codec.wbxml.roundtrip', 'codec.xml.decode', 'codec.xml.encode']);
    for (const p of parsed) {
      const headline = p.name === 'codec.xml' || p.name === 'codec.wbxml';
      expect(Object.keys(p).sort()).toEqual(headline ? ['baseline', 'n', 'name', 'note', 'ratio', 'unit', 'value'] : ['baseline', 'n', 'name', 'ratio', 'unit', 'value']);
      expect(p.unit).toBe(headline ? '1/s' : 'msg/s');
      if (headline) expect(typeof p.note).toBe('string');
      for (const k of ['n', 'value', 'baseline', 'ratio'] as const) {
        expect(typeof p[k], k).toBe('number');
        expect(Number.isFinite(p[k]) && (p[k] as number) > 0, `${String(p.name)}.${k} = ${String(p[k])}`).toBe(true);
      }
      expect(Number.isInteger(p.n)).toBe(true);
    }
    // codec.xml and codec.wbxml measure the ~1 KB message: n is its size in bytes.
    const kb = benchMessages().find((s) => s.name === '1KB')!.message;
    expect(parsed[0]!.n).toBe(encodeSyncML(kb, 'xml').byteLength);
    expect(parsed[1]!.n).toBe(encodeSyncML(kb, 'wbxml').byteLength);
    // codec.wbxml's baseline is our own XML round trip of the same run (codec.xml's value).
    expect(parsed[1]!.baseline).toBe(parsed[0]!.value);
    expect(parsed).toEqual(figures);
    expect(info.join('\n')).toMatch(/P1 \d+\/\d+, P2 .*8KB \d+\/\d+/);
  });

  it('benchmarks a realistic message set: P1, P2 with ~10 commands, P3 with 20 Results items, ~1 KB, ~8 KB', () => {
    const set = benchMessages();
    expect(set.map((s) => s.name)).toEqual(['P1', 'P2', 'P3', '1KB', '8KB']);
    const byName = Object.fromEntries(set.map((s) => [s.name, s.message]));
    expect(byName.P2!.body.length).toBeGreaterThanOrEqual(10);
    const results = byName.P3!.body.find((c) => c.kind === 'Results');
    expect(results?.kind === 'Results' && results.items.length).toBe(20);
    const size = (name: string): number => encodeSyncML(byName[name]!, 'xml').byteLength;
    expect(size('1KB')).toBeGreaterThanOrEqual(1024);
    expect(size('1KB')).toBeLessThan(1300);
    expect(size('8KB')).toBeGreaterThanOrEqual(8192);
    expect(size('8KB')).toBeLessThan(8500);
    for (const { message } of set) {
      for (const enc of ['xml', 'wbxml'] as const) expect(decodeSyncML(encodeSyncML(message, enc), enc)).toStrictEqual(message);
    }
  });
});
