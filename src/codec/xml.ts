/**
 * A small, strict XML reader and writer for SyncML documents. Hand-written rather than a general
 * parser because the input is untrusted and the grammar we need is tiny: no DTDs (a DOCTYPE is
 * refused, so no entity expansion attack is possible), only the five predefined entities and
 * character references, byte/depth/element caps, and order-preserving mixed content.
 */
import { CodecError } from '../errors.ts';
import {
  DEFAULT_LIMITS,
  DDF_NS,
  METINF_NS,
  isElement,
  type DecodeLimits,
  type Namespace,
  type XElement,
  type XNode,
} from './element.ts';

const PREDEFINED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

function nsFromUri(uri: string | undefined, inherited: Namespace): Namespace {
  if (uri === undefined) return inherited;
  const u = uri.toLowerCase();
  if (u === METINF_NS) return 'metinf';
  if (u.startsWith('syncml:dmddf')) return 'ddf';
  if (u.startsWith('syncml:syncml')) return 'syncml';
  return inherited;
}

function decodeEntities(raw: string, at: number): string {
  if (!raw.includes('&')) return raw;
  return raw.replace(/&([^;&\s]{0,12});?/g, (m, name: string) => {
    if (!m.endsWith(';')) throw new CodecError('CODEC_XML_ENTITY', `unterminated entity reference near byte ${at}`);
    if (name.startsWith('#')) {
      // Fix: parseInt accepted "&#-5;" (String.fromCodePoint then threw a RangeError, not a
      // CodecError), "&#12abc;" (read as 12) and surrogates ("&#xD800;"). Digits only, and the code
      // point must be a character: not a surrogate, not above U+10FFFF. (&#0; and other C0 controls
      // stay accepted: escapeText writes them so that our own round trip is lossless.)
      const hex = name[1] === 'x' || name[1] === 'X';
      const digits = name.slice(hex ? 2 : 1);
      const cp = (hex ? /^[0-9A-Fa-f]+$/ : /^[0-9]+$/).test(digits) ? Number.parseInt(digits, hex ? 16 : 10) : Number.NaN;
      if (!(cp <= 0x10ffff) || (cp >= 0xd800 && cp <= 0xdfff)) throw new CodecError('CODEC_XML_ENTITY', `bad character reference &${name};`);
      return String.fromCodePoint(cp);
    }
    // Fix: a plain index resolved "&constructor;", "&toString;" or "&__proto__;" through
    // Object.prototype instead of refusing them as undefined entities.
    const v = Object.hasOwn(PREDEFINED, name) ? PREDEFINED[name] : undefined;
    if (v === undefined) throw new CodecError('CODEC_XML_ENTITY', `undefined entity &${name}; (DTD entities are not accepted)`);
    return v;
  });
}

const NAME_RE = /[A-Za-z_:][-A-Za-z0-9_.:]*/y;

/**
 * Parses an XML document into the generic element tree. Namespace prefixes are stripped; the
 * namespace of each element comes from the nearest `xmlns` declaration (MetInf may be declared on
 * the `Meta` child or on a `MetInf` wrapper, both are accepted).
 */
export function parseXml(input: string | Uint8Array, limits: DecodeLimits = DEFAULT_LIMITS): XElement {
  const byteLength = typeof input === 'string' ? Buffer.byteLength(input) : input.byteLength;
  if (byteLength > limits.maxBytes) {
    throw new CodecError('CODEC_TOO_LARGE', `message of ${byteLength} bytes exceeds the limit of ${limits.maxBytes}`, 413);
  }
  let src = typeof input === 'string' ? input : Buffer.from(input).toString('utf8');
  if (src.charCodeAt(0) === 0xfeff) src = src.slice(1);
  let i = 0;
  let count = 0;
  const stack: { el: XElement; prefixes: Map<string, Namespace> }[] = [];
  let root: XElement | undefined;

  const fail = (code: string, msg: string): never => {
    throw new CodecError(code, `${msg} (at offset ${i})`);
  };

  const readName = (): string => {
    NAME_RE.lastIndex = i;
    const m = NAME_RE.exec(src);
    if (!m) return fail('CODEC_XML_SYNTAX', 'expected a name');
    i += m[0].length;
    return m[0];
  };
  const skipWs = (): void => {
    while (i < src.length) {
      const c = src.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
  };
  const addText = (text: string): void => {
    if (text === '') return; // an empty CDATA section is no content (and must not become an empty child)
    const top = stack[stack.length - 1];
    if (!top) {
      if (text.trim() !== '') fail('CODEC_XML_SYNTAX', 'text outside the root element');
      return;
    }
    const kids = top.el.children;
    const last = kids[kids.length - 1];
    if (typeof last === 'string') kids[kids.length - 1] = last + text;
    else kids.push(text);
  };

  while (i < src.length) {
    const lt = src.indexOf('<', i);
    if (lt < 0) {
      addText(decodeEntities(src.slice(i), i));
      i = src.length;
      break;
    }
    if (lt > i) addText(decodeEntities(src.slice(i, lt), i));
    i = lt;
    if (src.startsWith('<!--', i)) {
      const end = src.indexOf('-->', i + 4);
      if (end < 0) fail('CODEC_XML_SYNTAX', 'unterminated comment');
      i = end + 3;
    } else if (src.startsWith('<![CDATA[', i)) {
      const end = src.indexOf(']]>', i + 9);
      if (end < 0) fail('CODEC_XML_SYNTAX', 'unterminated CDATA section');
      if (stack.length === 0) fail('CODEC_XML_SYNTAX', 'CDATA outside the root element');
      addText(src.slice(i + 9, end));
      i = end + 3;
    } else if (src.startsWith('<!', i)) {
      // DOCTYPE and any other markup declaration: refused outright, so no DTD or entity is ever read.
      fail('CODEC_XML_DTD', 'DTDs and markup declarations are not accepted');
    } else if (src.startsWith('<?', i)) {
      const end = src.indexOf('?>', i + 2);
      if (end < 0) fail('CODEC_XML_SYNTAX', 'unterminated processing instruction');
      i = end + 2;
    } else if (src.startsWith('</', i)) {
      i += 2;
      const name = readName();
      skipWs();
      if (src[i] !== '>') fail('CODEC_XML_SYNTAX', `expected '>' after </${name}`);
      i++;
      const top = stack.pop();
      const local = name.includes(':') ? name.slice(name.indexOf(':') + 1) : name;
      if (!top || top.el.name !== local) fail('CODEC_XML_SYNTAX', `mismatched end tag </${name}>`);
      finishElement(top!.el);
      if (stack.length === 0) root = top!.el;
    } else {
      i++;
      const qname = readName();
      const attrs: Record<string, string> = {};
      for (;;) {
        skipWs();
        const c = src[i];
        if (c === '>' || c === '/') break;
        if (c === undefined) fail('CODEC_XML_SYNTAX', 'unterminated start tag');
        const an = readName();
        skipWs();
        if (src[i] !== '=') fail('CODEC_XML_SYNTAX', `expected '=' after attribute ${an}`);
        i++;
        skipWs();
        const q = src[i];
        if (q !== '"' && q !== "'") fail('CODEC_XML_SYNTAX', 'attribute value must be quoted');
        const end = src.indexOf(q!, i + 1);
        if (end < 0) fail('CODEC_XML_SYNTAX', 'unterminated attribute value');
        attrs[an] = decodeEntities(src.slice(i + 1, end), i);
        i = end + 1;
      }
      const selfClose = src[i] === '/';
      i += selfClose ? 2 : 1;
      if (selfClose && src[i - 1] !== '>') fail('CODEC_XML_SYNTAX', "expected '/>'");
      if (++count > limits.maxElements) {
        throw new CodecError('CODEC_TOO_MANY_ELEMENTS', `more than ${limits.maxElements} elements`, 413);
      }
      if (root) fail('CODEC_XML_SYNTAX', 'more than one root element');
      const parent = stack[stack.length - 1];
      const prefixes = new Map(parent?.prefixes ?? []);
      let defaultNs = prefixes.get('') ?? 'syncml';
      for (const [k, v] of Object.entries(attrs)) {
        if (k === 'xmlns') defaultNs = nsFromUri(v, defaultNs);
        else if (k.startsWith('xmlns:')) prefixes.set(k.slice(6), nsFromUri(v, 'syncml'));
      }
      prefixes.set('', defaultNs);
      const colon = qname.indexOf(':');
      const local = colon >= 0 ? qname.slice(colon + 1) : qname;
      const ns = colon >= 0 ? (prefixes.get(qname.slice(0, colon)) ?? defaultNs) : defaultNs;
      const node: XElement = { name: local, ns, children: [] };
      if (parent) parent.el.children.push(node);
      if (stack.length + 1 > limits.maxDepth) {
        throw new CodecError('CODEC_TOO_DEEP', `element nesting deeper than ${limits.maxDepth}`, 413);
      }
      if (selfClose) {
        if (!parent) root = node;
      } else {
        stack.push({ el: node, prefixes });
      }
    }
  }
  if (stack.length > 0) throw new CodecError('CODEC_XML_SYNTAX', `unexpected end of document inside <${stack[stack.length - 1]!.el.name}>`);
  if (!root) throw new CodecError('CODEC_XML_SYNTAX', 'no root element');
  return root;
}

/** Mixed content: whitespace between child elements is formatting, not data. */
function finishElement(e: XElement): void {
  if (e.children.some(isElement)) {
    e.children = e.children.filter((c) => typeof c !== 'string' || c.trim() !== '');
  }
}

/** Escapes text content for XML. */
export function escapeText(s: string): string {
  // CR is escaped so other parsers' line-end normalisation keeps it; other C0 controls travel as
  // character references (binary data should use Format b64; this keeps a round trip lossless).
  return s.replace(/[&<>\r\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, (c) =>
    c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : `&#${c.charCodeAt(0)};`,
  );
}

const NS_URI: Record<Namespace, string> = { syncml: 'SYNCML:SYNCML1.2', metinf: METINF_NS, ddf: DDF_NS };

/**
 * Serialises an element tree as compact XML. An `xmlns` is written where an element's namespace
 * differs from its parent's (so MetInf children carry `xmlns="syncml:metinf"`), and on the root.
 * Opaque bytes are written as base64 text, which is how binary Data travels in XML.
 */
export function writeXml(root: XElement, rootNsUri?: string): string {
  const out: string[] = [];
  const write = (e: XElement, parentNs: Namespace | undefined): void => {
    out.push('<', e.name);
    if (parentNs === undefined) out.push(' xmlns="', rootNsUri ?? NS_URI[e.ns], '"');
    else if (e.ns !== parentNs) out.push(' xmlns="', NS_URI[e.ns], '"');
    if (e.children.length === 0) {
      out.push('/>');
      return;
    }
    out.push('>');
    for (const c of e.children) {
      if (typeof c === 'string') out.push(escapeText(c));
      else if (c instanceof Uint8Array) out.push(Buffer.from(c).toString('base64'));
      else write(c, e.ns);
    }
    out.push('</', e.name, '>');
  };
  write(root, undefined);
  return out.join('');
}
