/**
 * A small, strict XML reader and writer for SyncML documents. Hand-written rather than a general
 * parser because the input is untrusted and the grammar we need is tiny: no DTDs (a DOCTYPE is
 * refused, so no entity expansion attack is possible), only the five predefined entities and
 * character references, byte/depth/element caps, and order-preserving mixed content.
 */
import { CodecError } from '../errors.ts';
import {
  CLOSED,
  DEFAULT_LIMITS,
  DDF_NS,
  METINF_NS,
  SYNCML12_NS,
  UNKNOWN_TAG,
  bail,
  isElement,
  type DecodeLimits,
  type ElementCursor,
  type ElementSink,
  type Namespace,
  type XElement,
  type XNode,
} from './element.ts';
import { METINF_TAGS, SYNCML_TAGS } from './wbxml.ts';

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

// ---------------------------------------------------------------------------------------------
// Direct (tree-less) reader and writer for the SyncML mapping (see element.ts). The reader accepts
// a strict subset of what parseXml accepts and throws BAIL on anything else (prefixed names,
// DOCTYPE, any error...), so decodeSyncML falls back to parseXml for the reference behaviour.
// ---------------------------------------------------------------------------------------------

/** Element ids by name: SyncML page-0 tokens, 0x40 | MetInf page-1 tokens. */
const ID_NAME: string[] = [];
for (const [name, tok] of Object.entries(SYNCML_TAGS)) ID_NAME[tok] = name;
for (const [name, tok] of Object.entries(METINF_TAGS)) ID_NAME[0x40 | tok] = name;

// Name lookup without slicing: a hash of the name's characters (computed while scanning it) into
// an open-addressed table of ids, confirmed by comparing the characters.
const HASH_SIZE = 512;
const HASH_IDS = new Int16Array(HASH_SIZE).fill(-1);
const nameHash = (h: number): number => (h ^ (h >>> 9)) & (HASH_SIZE - 1);
for (let id = 0; id < ID_NAME.length; id++) {
  const name = ID_NAME[id];
  if (name === undefined) continue;
  let h = 0;
  for (let k = 0; k < name.length; k++) h = (Math.imul(h, 31) + name.charCodeAt(k)) | 0;
  let slot = nameHash(h);
  while (HASH_IDS[slot] !== -1) slot = (slot + 1) & (HASH_SIZE - 1);
  HASH_IDS[slot] = id;
}

/** Name characters (NAME_RE): 1 = may start a name, 2 = may continue one; ':' is 3 but handled apart. */
const NAME_CHAR = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  if (/[A-Za-z_:]/.test(ch)) NAME_CHAR[c] = 3;
  else if (/[-0-9.]/.test(ch)) NAME_CHAR[c] = 2;
}

const isBlank = (c: number): boolean => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

/**
 * Entity decoding for the common case: the five predefined entities and character references.
 * Gives the same text as decodeEntities; anything else (including every error) throws BAIL.
 */
function decodeEntitiesFast(raw: string): string {
  let out = '';
  let from = 0;
  let amp = raw.indexOf('&');
  while (amp >= 0) {
    out += raw.slice(from, amp);
    const c = raw.charCodeAt(amp + 1);
    let end: number;
    if (c === 0x6c /* l */ && raw.startsWith('lt;', amp + 1)) {
      out += '<';
      end = amp + 4;
    } else if (c === 0x67 /* g */ && raw.startsWith('gt;', amp + 1)) {
      out += '>';
      end = amp + 4;
    } else if (c === 0x61 /* a */ && raw.startsWith('amp;', amp + 1)) {
      out += '&';
      end = amp + 5;
    } else if (c === 0x61 && raw.startsWith('apos;', amp + 1)) {
      out += "'";
      end = amp + 6;
    } else if (c === 0x71 /* q */ && raw.startsWith('quot;', amp + 1)) {
      out += '"';
      end = amp + 6;
    } else if (c === 0x23 /* # */) {
      const hex = raw.charCodeAt(amp + 2) === 0x78 || raw.charCodeAt(amp + 2) === 0x58;
      let k = amp + (hex ? 3 : 2);
      const start = k;
      let cp = 0;
      for (;;) {
        const d = raw.charCodeAt(k);
        if (d >= 0x30 && d <= 0x39) cp = cp * (hex ? 16 : 10) + (d - 0x30);
        else if (hex && ((d >= 0x41 && d <= 0x46) || (d >= 0x61 && d <= 0x66))) cp = cp * 16 + ((d | 0x20) - 0x57);
        else break;
        k++;
      }
      // The reference reads at most 12 characters after '&' before the ';'.
      if (k === start || raw.charCodeAt(k) !== 0x3b || k - amp - 1 > 12) bail();
      if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) bail();
      out += String.fromCodePoint(cp);
      end = k + 1;
    } else return bail();
    from = end;
    amp = raw.indexOf('&', from);
  }
  return from === 0 ? raw : out + raw.slice(from);
}

/** Reads a SyncML XML document element by element (ElementCursor); see the section comment. */
export class XmlCursor implements ElementCursor {
  private readonly src: string;
  private i = 0;
  private depth = 0;
  private count = 0;
  private selfClosed = false;
  /** Names of the open elements, for matching end tags. */
  private readonly names: string[] = [];
  /** Position of the next '&' at or after the last search start (src.length if none). */
  private amp = -1;
  private readonly maxDepth: number;
  private readonly maxElements: number;

  constructor(input: string | Uint8Array, limits: DecodeLimits = DEFAULT_LIMITS) {
    if (typeof input === 'string') {
      if (input.length * 3 > limits.maxBytes && Buffer.byteLength(input) > limits.maxBytes) bail();
      this.src = input;
    } else {
      if (input.byteLength > limits.maxBytes) bail();
      this.src = (Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength)).toString('utf8');
    }
    if (this.src.charCodeAt(0) === 0xfeff) this.i = 1;
    this.maxDepth = limits.maxDepth;
    this.maxElements = limits.maxElements;
  }

  private ampFrom(at: number): number {
    if (this.amp < at) {
      const k = this.src.indexOf('&', at);
      this.amp = k < 0 ? this.src.length : k;
    }
    return this.amp;
  }

  /** Skips the comment, PI or (where `cdata`) CDATA section at `lt`; anything else bails. */
  private skipMarkup(lt: number, cdata: boolean): void {
    const src = this.src;
    const c = src.charCodeAt(lt + 1);
    let end: number;
    if (c === 0x3f /* ? */) {
      end = src.indexOf('?>', lt + 2);
      if (end < 0) bail();
      this.i = end + 2;
    } else if (src.startsWith('!--', lt + 1)) {
      end = src.indexOf('-->', lt + 4);
      if (end < 0) bail();
      this.i = end + 3;
    } else if (cdata && src.startsWith('![CDATA[', lt + 1)) {
      end = src.indexOf(']]>', lt + 9);
      if (end < 0) bail();
      this.i = end + 3;
    } else bail();
  }

  /** Reads a start tag whose name starts at this.i (after '<'); returns the element id. */
  private startTag(): number {
    const src = this.src;
    let i = this.i;
    const start = i;
    let c = src.charCodeAt(i);
    if (!(c < 128 && (NAME_CHAR[c]! & 1) !== 0) || c === 0x3a) bail();
    let h = 0;
    do {
      h = (Math.imul(h, 31) + c) | 0;
      c = src.charCodeAt(++i);
    } while (c < 128 && NAME_CHAR[c]! !== 0 && c !== 0x3a);
    if (c === 0x3a) bail(); // a prefixed name: left to the tree path
    const len = i - start;
    let id = UNKNOWN_TAG;
    let name: string | undefined;
    for (let slot = nameHash(h); ; slot = (slot + 1) & (HASH_SIZE - 1)) {
      const cand = HASH_IDS[slot]!;
      if (cand < 0) break;
      const n = ID_NAME[cand]!;
      if (n.length === len && src.startsWith(n, start)) {
        id = cand;
        name = n;
        break;
      }
    }
    name ??= src.slice(start, i);
    // Attributes: only checked (xmlns decides nothing in the SyncML mapping).
    for (;;) {
      while (isBlank(c)) c = src.charCodeAt(++i);
      if (c === 0x3e /* > */ || c === 0x2f /* / */) break;
      if (!(c < 128 && (NAME_CHAR[c]! & 1) !== 0)) bail();
      do c = src.charCodeAt(++i);
      while (c < 128 && NAME_CHAR[c]! !== 0);
      while (isBlank(c)) c = src.charCodeAt(++i);
      if (c !== 0x3d /* = */) bail();
      c = src.charCodeAt(++i);
      while (isBlank(c)) c = src.charCodeAt(++i);
      if (c !== 0x22 && c !== 0x27) bail();
      const end = src.indexOf(c === 0x22 ? '"' : "'", i + 1);
      if (end < 0) bail();
      if (this.ampFrom(i + 1) < end) decodeEntitiesFast(src.slice(i + 1, end));
      i = end + 1;
      c = src.charCodeAt(i);
    }
    if (c === 0x2f) {
      if (src.charCodeAt(i + 1) !== 0x3e) bail();
      this.i = i + 2;
      this.selfClosed = true;
    } else this.i = i + 1;
    if (++this.count > this.maxElements || this.depth + 1 > this.maxDepth) bail();
    this.names[this.depth++] = name;
    return id;
  }

  /** Reads the end tag of the innermost open element; this.i is just after '</'. */
  private endTag(): void {
    const src = this.src;
    const name = this.names[--this.depth]!;
    if (!src.startsWith(name, this.i)) bail();
    let i = this.i + name.length;
    let c = src.charCodeAt(i);
    while (isBlank(c)) c = src.charCodeAt(++i);
    if (c !== 0x3e) bail();
    this.i = i + 1;
  }

  root(): number {
    const src = this.src;
    for (;;) {
      let c = src.charCodeAt(this.i);
      while (isBlank(c)) c = src.charCodeAt(++this.i);
      if (c !== 0x3c) bail(); // text outside the root, or no root
      const c2 = src.charCodeAt(this.i + 1);
      if (c2 === 0x3f || c2 === 0x21) this.skipMarkup(this.i, false);
      else {
        this.i++;
        return this.startTag();
      }
    }
  }

  nextChild(): number {
    if (this.selfClosed) {
      this.selfClosed = false;
      this.depth--;
      return CLOSED;
    }
    const src = this.src;
    for (;;) {
      const lt = src.indexOf('<', this.i);
      if (lt < 0) bail();
      // Text among child elements is ignored by the mapping, but must be well-formed.
      if (lt > this.i && this.ampFrom(this.i) < lt) decodeEntitiesFast(src.slice(this.i, lt));
      const c = src.charCodeAt(lt + 1);
      if (c === 0x2f) {
        this.i = lt + 2;
        this.endTag();
        return CLOSED;
      }
      if (c === 0x21 || c === 0x3f) this.skipMarkup(lt, true);
      else {
        this.i = lt + 1;
        return this.startTag();
      }
    }
  }

  leafText(): string {
    if (this.selfClosed) {
      this.selfClosed = false;
      this.depth--;
      return '';
    }
    const src = this.src;
    let text = '';
    for (;;) {
      const lt = src.indexOf('<', this.i);
      if (lt < 0) bail();
      if (lt > this.i) {
        let piece = src.slice(this.i, lt);
        if (this.ampFrom(this.i) < lt) piece = decodeEntitiesFast(piece);
        text = text === '' ? piece : text + piece;
      }
      const c = src.charCodeAt(lt + 1);
      if (c === 0x2f) {
        this.i = lt + 2;
        this.endTag();
        return text;
      }
      if (c === 0x21 && src.startsWith('![CDATA[', lt + 1)) {
        const end = src.indexOf(']]>', lt + 9);
        if (end < 0) bail();
        text += src.slice(lt + 9, end);
        this.i = end + 3;
      } else if (c === 0x21 || c === 0x3f) this.skipMarkup(lt, false);
      else bail(); // markup inside a leaf: the tree path handles it
    }
  }

  dataValue(): string {
    return this.leafText();
  }

  skip(): void {
    const base = this.depth;
    do this.nextChild();
    while (this.depth >= base);
  }

  end(): void {
    const src = this.src;
    for (;;) {
      let c = src.charCodeAt(this.i);
      while (isBlank(c)) c = src.charCodeAt(++this.i);
      if (this.i >= src.length) return;
      if (c !== 0x3c) bail();
      const c2 = src.charCodeAt(this.i + 1);
      if (c2 === 0x3f || c2 === 0x21) this.skipMarkup(this.i, false);
      else bail();
    }
  }
}

/** Characters escapeText changes. */
const NEEDS_ESCAPE = /[&<>\r\u0000-\u0008\u000b\u000c\u000e-\u001f]/;

/** escapeText without a callback per character; returns the input when nothing needs escaping. */
function escapeFast(s: string): string {
  if (!NEEDS_ESCAPE.test(s)) return s;
  let out = '';
  let from = 0;
  for (let k = 0; k < s.length; k++) {
    const c = s.charCodeAt(k);
    let rep: string;
    if (c === 0x26) rep = '&amp;';
    else if (c === 0x3c) rep = '&lt;';
    else if (c === 0x3e) rep = '&gt;';
    else if (c < 0x20 && c !== 0x09 && c !== 0x0a) rep = `&#${c};`;
    else continue;
    out += s.slice(from, k) + rep;
    from = k + 1;
  }
  return out + s.slice(from);
}

const OPEN_TAG: string[] = [];
const CLOSE_TAG: string[] = [];
const EMPTY_TAG: string[] = [];
for (let id = 0; id < ID_NAME.length; id++) {
  const name = ID_NAME[id];
  if (name === undefined) continue;
  const attr = id === SYNCML_TAGS.SyncML ? ` xmlns="${SYNCML12_NS}"` : id >= 0x40 ? ` xmlns="${METINF_NS}"` : '';
  OPEN_TAG[id] = `<${name}${attr}>`;
  CLOSE_TAG[id] = `</${name}>`;
  EMPTY_TAG[id] = `<${name}${attr}/>`;
}

/**
 * Writes a SyncML message as XML text (ElementSink), byte for byte what writeXml writes for the
 * message's element tree: MetInf elements carry xmlns="syncml:metinf", the root the SyncML 1.2 URI.
 */
export class XmlWriter implements ElementSink {
  out = '';
  open(id: number): void {
    this.out += OPEN_TAG[id]!;
  }
  close(id: number): void {
    this.out += CLOSE_TAG[id]!;
  }
  empty(id: number): void {
    this.out += EMPTY_TAG[id]!;
  }
  text(id: number, s: string): void {
    this.out += OPEN_TAG[id]! + escapeFast(s) + CLOSE_TAG[id]!;
  }
  bytes(id: number, b: Uint8Array): void {
    this.out += OPEN_TAG[id]! + Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64') + CLOSE_TAG[id]!;
  }
}
