/**
 * WBXML codec for SyncML DM 1.2 (WAP-192-WBXML 1.1-1.3 with the SyncML/MetInf/DM DDF token tables
 * of docs omadm.md §3.11). Converts between bytes and the generic element tree of element.ts; pure,
 * no I/O.
 *
 * Decoding is written for untrusted input: iterative (no recursion to blow the stack), every length
 * is checked against the bytes actually present before anything is allocated, limits are enforced
 * as the document is read, and every failure is a CodecError.
 *
 * Encoding reproduces Debian libwbxml (`xml2wbxml -k -n -v 1.2`) byte for byte for ordinary SyncML
 * trees: the same header, inline strings only (no string table), and code-page switches emitted
 * lazily, only when a tag actually needs another page (TV-11). (libwbxml itself turns the text of
 * some Data elements, e.g. Replace/Item/Data, into OPAQUE; given that tree with Uint8Array children,
 * the bytes match too. See test/codec/wbxml.test.ts for the libwbxml quirks.)
 */
import { isAscii } from 'node:buffer';
import { CodecError } from '../errors.ts';
import { CLOSED, DEFAULT_LIMITS, bail, type DecodeLimits, type ElementCursor, type ElementSink, type Namespace, type XElement, type XNode } from './element.ts';

// ---------------------------------------------------------------------------------------------
// Token tables (omadm.md §3.11)
// ---------------------------------------------------------------------------------------------

/** SyncML 1.2 tags, code page 0 (0x30 is reserved in SyncML 1.2). */
export const SYNCML_TAGS: Readonly<Record<string, number>> = Object.freeze({
  Add: 0x05, Alert: 0x06, Archive: 0x07, Atomic: 0x08, Chal: 0x09, Cmd: 0x0a, CmdID: 0x0b,
  CmdRef: 0x0c, Copy: 0x0d, Cred: 0x0e, Data: 0x0f, Delete: 0x10, Exec: 0x11, Final: 0x12,
  Get: 0x13, Item: 0x14, Lang: 0x15, LocName: 0x16, LocURI: 0x17, Map: 0x18, MapItem: 0x19,
  Meta: 0x1a, MsgID: 0x1b, MsgRef: 0x1c, NoResp: 0x1d, NoResults: 0x1e, Put: 0x1f, Replace: 0x20,
  RespURI: 0x21, Results: 0x22, Search: 0x23, Sequence: 0x24, SessionID: 0x25, SftDel: 0x26,
  Source: 0x27, SourceRef: 0x28, Status: 0x29, Sync: 0x2a, SyncBody: 0x2b, SyncHdr: 0x2c,
  SyncML: 0x2d, Target: 0x2e, TargetRef: 0x2f, VerDTD: 0x31, VerProto: 0x32,
  NumberOfChanges: 0x33, MoreData: 0x34, Field: 0x35, Filter: 0x36, Record: 0x37,
  FilterType: 0x38, SourceParent: 0x39, TargetParent: 0x3a, Move: 0x3b, Correlator: 0x3c,
});

/** SyncML MetInf 1.2 tags, code page 1. */
export const METINF_TAGS: Readonly<Record<string, number>> = Object.freeze({
  Anchor: 0x05, EMI: 0x06, Format: 0x07, FreeID: 0x08, FreeMem: 0x09, Last: 0x0a, Mark: 0x0b,
  MaxMsgSize: 0x0c, Mem: 0x0d, MetInf: 0x0e, Next: 0x0f, NextNonce: 0x10, SharedMem: 0x11,
  Size: 0x12, Type: 0x13, Version: 0x14, MaxObjSize: 0x15, FieldLevel: 0x16,
});

/** OMA DM DDF 1.2 / TNDS tags, code page 2 (names are case-sensitive: `Node` vs `node`). */
export const DDF_TAGS: Readonly<Record<string, number>> = Object.freeze({
  AccessType: 0x05, ACL: 0x06, Add: 0x07, b64: 0x08, bin: 0x09, bool: 0x0a, chr: 0x0b,
  CaseSense: 0x0c, CIS: 0x0d, Copy: 0x0e, CS: 0x0f, date: 0x10, DDFName: 0x11,
  DefaultValue: 0x12, Delete: 0x13, Description: 0x14, DFFormat: 0x15, DFProperties: 0x16,
  DFTitle: 0x17, DFType: 0x18, Dynamic: 0x19, Exec: 0x1a, float: 0x1b, Format: 0x1c, Get: 0x1d,
  int: 0x1e, Man: 0x1f, MgmtTree: 0x20, MIME: 0x21, Mod: 0x22, Name: 0x23, Node: 0x24,
  node: 0x25, NodeName: 0x26, null: 0x27, Occurrence: 0x28, One: 0x29, OneOrMore: 0x2a,
  OneOrN: 0x2b, Path: 0x2c, Permanent: 0x2d, Replace: 0x2e, RTProperties: 0x2f, Scope: 0x30,
  Size: 0x31, time: 0x32, Title: 0x33, TStamp: 0x34, Type: 0x35, Value: 0x36, VerDTD: 0x37,
  VerNo: 0x38, xml: 0x39, ZeroOrMore: 0x3a, ZeroOrN: 0x3b, ZeroOrOne: 0x3c,
});

/** The code page of each namespace. */
export const CODE_PAGE: Readonly<Record<Namespace, number>> = Object.freeze({ syncml: 0, metinf: 1, ddf: 2 });

/** WBXML public identifier of SyncML 1.2, written by default. */
export const PUBLIC_ID_SYNCML12 = 0x1201;

// Maps (not plain objects) for lookups, so a tag named "constructor" or "__proto__" in an
// untrusted tree or string table cannot resolve through Object.prototype.
const PAGES: readonly { ns: Namespace; byName: ReadonlyMap<string, number>; byToken: ReadonlyMap<number, string> }[] = (
  [
    ['syncml', SYNCML_TAGS],
    ['metinf', METINF_TAGS],
    ['ddf', DDF_TAGS],
  ] as const
).map(([ns, table]) => ({
  ns,
  byName: new Map(Object.entries(table)),
  byToken: new Map(Object.entries(table).map(([name, tok]) => [tok, name] as const)),
}));

/** Numeric public ids accepted on input: SyncML 1.2, MetInf 1.2 (0x1202), SyncML 1.1 (0x0FD3). */
const ACCEPTED_PUBLIC_IDS: ReadonlySet<number> = new Set([0x1201, 0x1202, 0x0fd3]);

/**
 * Formal public identifiers accepted when the public id is 0 and names a string-table entry
 * (WBXML §5.5). libwbxml writes DM DDF (TNDS) documents this way, because DDF has no numeric id.
 */
const ACCEPTED_PUBLIC_LITERALS: ReadonlySet<string> = new Set([
  '-//SYNCML//DTD SyncML 1.2//EN',
  '-//SYNCML//DTD SyncML 1.1//EN',
  '-//SYNCML//DTD MetInf 1.2//EN',
  '-//OMA//DTD-DM-DDF 1.2//EN',
]);

/** IANA MIBenum of UTF-8, the only charset SyncML DM uses. */
const CHARSET_UTF8 = 0x6a;

// Global tokens (WBXML §7.1). They occupy codes 0x00-0x04 of every flag combination, so a tag
// token is anything whose low six bits are >= 5.
const SWITCH_PAGE = 0x00;
const END = 0x01;
const ENTITY = 0x02;
const STR_I = 0x03;
const LITERAL = 0x04;
const EXT_I_0 = 0x40;
const EXT_I_2 = 0x42;
const PI = 0x43;
const EXT_T_0 = 0x80;
const EXT_T_2 = 0x82;
const STR_T = 0x83;
const EXT_0 = 0xc0;
const EXT_2 = 0xc2;
const OPAQUE = 0xc3;
const TAG_CONTENT = 0x40;
const TAG_ATTRIBUTES = 0x80;
const TAG_ID_MASK = 0x3f;
/** Longest accepted LITERAL tag name; the longest real one, NumberOfChanges, has 15 bytes. */
const MAX_TAG_NAME = 32;

// ---------------------------------------------------------------------------------------------
// Decoder
// ---------------------------------------------------------------------------------------------

// fatal: invalid UTF-8 is detected rather than silently replaced; ignoreBOM: a leading U+FEFF in a
// text node is data, not a byte-order mark (the default decoder would drop it).
const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const utf8Encoder = new TextEncoder();

function fail(code: string, message: string, status = 400): never {
  throw new CodecError(code, message, status);
}

interface Frame {
  el: XElement;
  /** Pieces of the text run being read (STR_I, STR_T, ENTITY), merged into one child when it ends. */
  text: Uint8Array[];
}

/** Joins a text run into one child: a string, or the raw bytes when they are not valid UTF-8. */
function flushText(frame: Frame): void {
  const pieces = frame.text;
  if (pieces.length === 0) return;
  frame.text = [];
  let bytes: Uint8Array;
  if (pieces.length === 1) bytes = pieces[0]!;
  else {
    let total = 0;
    for (const p of pieces) total += p.byteLength;
    bytes = new Uint8Array(total);
    let at = 0;
    for (const p of pieces) {
      bytes.set(p, at);
      at += p.byteLength;
    }
  }
  if (bytes.byteLength === 0) return;
  let text: string | undefined;
  try {
    text = utf8Decoder.decode(bytes);
  } catch {
    text = undefined;
  }
  // A device that declares UTF-8 but sends other bytes in an inline string: keep the bytes
  // (lossless, like an OPAQUE) instead of replacing them with U+FFFD. textOf() still reads them.
  frame.el.children.push(text ?? new Uint8Array(bytes));
}

/**
 * Parses a WBXML 1.1-1.3 SyncML DM document into the generic element tree. Throws only CodecError
 * (status 413 for limit breaches, 400 otherwise).
 */
export function parseWbxml(bytes: Uint8Array, limits: DecodeLimits = DEFAULT_LIMITS): XElement {
  if (!(bytes instanceof Uint8Array)) fail('CODEC_WBXML_INPUT', 'WBXML input must be a Uint8Array');
  const len = bytes.byteLength;
  if (len > limits.maxBytes) {
    fail('CODEC_TOO_LARGE', `message of ${len} bytes exceeds the limit of ${limits.maxBytes}`, 413);
  }
  let pos = 0;

  const byte = (what: string): number => {
    if (pos >= len) fail('CODEC_WBXML_TRUNCATED', `truncated WBXML: expected ${what} at offset ${pos}`);
    return bytes[pos++]!;
  };
  // mb_u_int32 (WBXML §5.1): big-endian base-128, continuation bit 0x80, at most 5 bytes, and the
  // value must fit in 32 bits. Multiplication keeps it exact (no 32-bit signed shifts).
  const mbUint = (what: string): number => {
    const start = pos;
    let v = 0;
    for (let n = 0; n < 5; n++) {
      const b = byte(what);
      v = v * 128 + (b & 0x7f);
      if ((b & 0x80) === 0) {
        if (v > 0xffffffff) fail('CODEC_WBXML_MBUINT', `mb_u_int32 ${what} at offset ${start} overflows 32 bits`);
        return v;
      }
    }
    return fail('CODEC_WBXML_MBUINT', `mb_u_int32 ${what} at offset ${start} is longer than 5 bytes`);
  };
  const take = (n: number, what: string): Uint8Array => {
    if (n > len - pos) fail('CODEC_WBXML_TRUNCATED', `truncated WBXML: ${what} of ${n} bytes at offset ${pos} runs past the end`);
    const out = bytes.subarray(pos, pos + n);
    pos += n;
    return out;
  };

  // --- Header (WBXML §5.4): version, publicid [index], charset, strtbl ---
  const version = byte('the version');
  if (version < 0x01 || version > 0x03) {
    // 0x00 (WBXML 1.0) has no charset field; SyncML never used it.
    fail('CODEC_WBXML_VERSION', `unsupported WBXML version byte 0x${version.toString(16).padStart(2, '0')} (1.1-1.3 accepted)`);
  }
  const publicId = mbUint('the public id');
  const publicIndex = publicId === 0 ? mbUint('the public id string-table index') : undefined;
  const charset = mbUint('the charset');
  if (charset !== CHARSET_UTF8) fail('CODEC_WBXML_CHARSET', `unsupported charset MIBenum ${charset} (only UTF-8, 106, is accepted)`);
  const strtblLength = mbUint('the string-table length');
  const strtbl = take(strtblLength, 'string table');

  /** A NUL-terminated string of the string table (WBXML §5.7), searched for at most `maxLength` bytes. */
  const tableBytes = (index: number, maxLength = strtbl.byteLength): Uint8Array => {
    if (index >= strtbl.byteLength) fail('CODEC_WBXML_STRTBL', `string-table reference ${index} is outside the ${strtbl.byteLength}-byte table`);
    const end = strtbl.subarray(index, index + maxLength + 1).indexOf(0);
    if (end < 0) {
      if (index + maxLength < strtbl.byteLength) fail('CODEC_WBXML_STRTBL', `string-table entry at ${index} is longer than ${maxLength} bytes`);
      fail('CODEC_WBXML_STRTBL', `string-table entry at ${index} is not NUL-terminated`);
    }
    return strtbl.subarray(index, index + end);
  };
  const tableString = (index: number, maxLength?: number): string => {
    const raw = tableBytes(index, maxLength);
    try {
      return utf8Decoder.decode(raw);
    } catch {
      return fail('CODEC_WBXML_STRTBL', `string-table entry at ${index} is not valid UTF-8`);
    }
  };

  if (publicIndex !== undefined) {
    const fpi = tableString(publicIndex);
    if (!ACCEPTED_PUBLIC_LITERALS.has(fpi)) fail('CODEC_WBXML_PUBLIC_ID', `unsupported document type "${fpi.slice(0, 80)}"`);
  } else if (!ACCEPTED_PUBLIC_IDS.has(publicId)) {
    fail('CODEC_WBXML_PUBLIC_ID', `unsupported WBXML public id 0x${publicId.toString(16)}`);
  }

  // --- Body ---
  // The tag code page is parser state, not element state: it changes only on SWITCH_PAGE and
  // persists across END (omadm.md §3.11; libwbxml switches back lazily).
  let page = 0;
  let count = 0;
  // STR_T is the one token whose output can exceed its input: a long string-table entry referenced
  // many times. Total referenced text is capped at maxBytes, or a 4 MB message could expand into
  // terabytes.
  let referenced = 0;
  let root: XElement | undefined;
  const stack: Frame[] = [];

  const current = (what: string): Frame => {
    const top = stack[stack.length - 1];
    if (!top) fail('CODEC_WBXML_TOKEN', `${what} at offset ${pos - 1} is outside the root element`);
    return top;
  };

  const openTag = (name: string, ns: Namespace, token: number): void => {
    if ((token & TAG_ATTRIBUTES) !== 0) {
      // SyncML, MetInf and DDF define no attributes (no attribute code pages exist), so an
      // attribute list can only be garbage or a different document type.
      fail('CODEC_WBXML_ATTRIBUTE', `tag <${name}> at offset ${pos - 1} has attributes, which SyncML does not define`);
    }
    if (++count > limits.maxElements) fail('CODEC_TOO_MANY_ELEMENTS', `more than ${limits.maxElements} elements`, 413);
    if (stack.length + 1 > limits.maxDepth) fail('CODEC_TOO_DEEP', `element nesting deeper than ${limits.maxDepth}`, 413);
    const el: XElement = { name, ns, children: [] };
    const parent = stack[stack.length - 1];
    if (parent) {
      flushText(parent);
      parent.el.children.push(el);
    }
    if ((token & TAG_CONTENT) !== 0) stack.push({ el, text: [] });
    else if (!parent) root = el;
  };

  const resolveTag = (token: number): void => {
    const id = token & TAG_ID_MASK;
    const table = PAGES[page];
    const name = table?.byToken.get(id);
    if (table === undefined || name === undefined) {
      fail('CODEC_WBXML_UNKNOWN_TAG', `unknown tag token 0x${id.toString(16).padStart(2, '0')} in code page ${page} at offset ${pos - 1}`);
    }
    openTag(name, table.ns, token);
  };

  const resolveLiteral = (token: number): void => {
    // Tag names are short, so the search for the name's NUL is bounded: repeated literals cannot
    // rescan a huge string-table entry.
    const name = tableString(mbUint('a literal tag index'), MAX_TAG_NAME);
    // The literal names a tag; prefer the current page, since some names exist on several pages.
    const order = [page, 0, 1, 2];
    for (const p of order) {
      const table = PAGES[p];
      if (table?.byName.has(name)) {
        openTag(name, table.ns, token);
        return;
      }
    }
    fail('CODEC_WBXML_UNKNOWN_TAG', `literal tag "${name}" is not a SyncML, MetInf or DDF tag`);
  };

  while (root === undefined) {
    const tok = byte(stack.length === 0 ? 'the root element' : `content of <${stack[stack.length - 1]!.el.name}>`);
    switch (tok) {
      case SWITCH_PAGE:
        page = byte('a code page number');
        break;
      case END: {
        const top = stack.pop();
        if (!top) fail('CODEC_WBXML_TOKEN', `END at offset ${pos - 1} with no open element`);
        flushText(top);
        if (stack.length === 0) root = top.el;
        break;
      }
      case ENTITY: {
        const frame = current('ENTITY');
        const cp = mbUint('an entity code');
        // U+0000 is refused too: it is no XML character and could never have been an inline string.
        if (cp === 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
          fail('CODEC_WBXML_ENTITY', `ENTITY ${cp} is not a character that text can hold`);
        }
        frame.text.push(utf8Encoder.encode(String.fromCodePoint(cp)));
        break;
      }
      case STR_I: {
        const frame = current('STR_I');
        const end = bytes.indexOf(0, pos);
        if (end < 0) fail('CODEC_WBXML_TRUNCATED', `inline string at offset ${pos} is not NUL-terminated`);
        frame.text.push(bytes.subarray(pos, end));
        pos = end + 1;
        break;
      }
      case STR_T: {
        const frame = current('STR_T');
        const piece = tableBytes(mbUint('a string-table reference'));
        referenced += piece.byteLength;
        if (referenced > limits.maxBytes) {
          fail('CODEC_TOO_LARGE', `string-table references expand to more than ${limits.maxBytes} bytes`, 413);
        }
        frame.text.push(piece);
        break;
      }
      case OPAQUE: {
        const frame = current('OPAQUE');
        const data = take(mbUint('an opaque length'), 'opaque data');
        flushText(frame);
        frame.el.children.push(new Uint8Array(data)); // a copy, independent of the input buffer
        break;
      }
      case LITERAL:
      case LITERAL | TAG_CONTENT:
      case LITERAL | TAG_ATTRIBUTES:
      case LITERAL | TAG_CONTENT | TAG_ATTRIBUTES:
        resolveLiteral(tok);
        break;
      default:
        if (tok === PI) fail('CODEC_WBXML_TOKEN', `processing instruction at offset ${pos - 1} is not supported in SyncML`);
        if ((tok >= EXT_I_0 && tok <= EXT_I_2) || (tok >= EXT_T_0 && tok <= EXT_T_2) || (tok >= EXT_0 && tok <= EXT_2)) {
          fail('CODEC_WBXML_TOKEN', `extension token 0x${tok.toString(16)} at offset ${pos - 1}: SyncML defines no extensions`);
        }
        resolveTag(tok);
    }
  }
  if (pos < len) fail('CODEC_WBXML_TRAILING', `${len - pos} trailing bytes after the root element at offset ${pos}`);
  return root;
}

// ---------------------------------------------------------------------------------------------
// Encoder
// ---------------------------------------------------------------------------------------------

/** A growable byte buffer. */
class ByteSink {
  private buf = new Uint8Array(256);
  private len = 0;

  private ensure(extra: number): void {
    if (this.len + extra <= this.buf.byteLength) return;
    let size = this.buf.byteLength * 2;
    while (size < this.len + extra) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }
  byte(b: number): void {
    this.ensure(1);
    this.buf[this.len++] = b;
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.byteLength);
    this.buf.set(b, this.len);
    this.len += b.byteLength;
  }
  mbUint(v: number): void {
    const groups: number[] = [v % 128];
    for (let rest = Math.floor(v / 128); rest > 0; rest = Math.floor(rest / 128)) groups.push((rest % 128) | 0x80);
    for (let i = groups.length - 1; i >= 0; i--) this.byte(groups[i]!);
  }
  result(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

// Unpaired UTF-16 surrogates cannot be encoded in UTF-8; writing U+FFFD instead would change data.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Options of writeWbxml. */
export interface WriteWbxmlOptions {
  /** WBXML public id written in the header (default 0x1201, SyncML 1.2). */
  publicId?: number;
}

/**
 * Encodes an element tree as WBXML 1.2 (UTF-8, empty string table), byte-identical to libwbxml's
 * `xml2wbxml -k -n -v 1.2` for ordinary SyncML trees. Throws CodecError for trees it cannot encode.
 */
export function writeWbxml(root: XElement, options: WriteWbxmlOptions = {}): Uint8Array {
  const publicId = options.publicId ?? PUBLIC_ID_SYNCML12;
  if (!Number.isInteger(publicId) || publicId < 1 || publicId > 0xffffffff) {
    // 0 would need the formal public identifier in a string table, which this writer never emits.
    fail('CODEC_WBXML_PUBLIC_ID', `public id ${publicId} cannot be written (1..0xFFFFFFFF)`);
  }
  const out = new ByteSink();
  out.byte(0x02); // WBXML 1.2
  out.mbUint(publicId);
  out.byte(CHARSET_UTF8);
  out.byte(0x00); // empty string table: strings are always inline, like libwbxml with -n

  let page = 0; // the decoder also starts on page 0
  // Explicit stack instead of recursion, so a deep tree cannot overflow the JS stack.
  const stack: { children: XNode[]; next: number }[] = [];

  const startElement = (e: unknown): void => {
    if (typeof e !== 'object' || e === null || !Array.isArray((e as XElement).children)) {
      fail('CODEC_WBXML_NODE', 'element tree contains a value that is neither an element, a string nor a Uint8Array');
    }
    const { name, ns, children } = e as XElement;
    const pageNo = typeof ns === 'string' && Object.hasOwn(CODE_PAGE, ns) ? CODE_PAGE[ns] : undefined;
    const token = pageNo === undefined ? undefined : PAGES[pageNo]!.byName.get(name);
    if (pageNo === undefined || token === undefined) {
      fail('CODEC_WBXML_UNKNOWN_TAG', `element <${String(name)}> in namespace ${String(ns)} has no WBXML token`);
    }
    // Lazy switching: only when this tag needs another page, never on the way out of an element.
    if (pageNo !== page) {
      out.byte(SWITCH_PAGE);
      out.byte(pageNo);
      page = pageNo;
    }
    // Empty strings carry nothing; an element with only those is written as an empty tag.
    const hasContent = children.some((c) => typeof c !== 'string' || c.length > 0);
    if (hasContent) {
      out.byte(token | TAG_CONTENT);
      stack.push({ children, next: 0 });
    } else {
      out.byte(token);
    }
  };

  startElement(root);
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    if (top.next >= top.children.length) {
      out.byte(END);
      stack.pop();
      continue;
    }
    const child = top.children[top.next++];
    if (typeof child === 'string') {
      if (child.length === 0) continue;
      if (LONE_SURROGATE.test(child)) fail('CODEC_WBXML_TEXT', 'text contains an unpaired UTF-16 surrogate');
      const encoded = utf8Encoder.encode(child);
      if (encoded.includes(0)) {
        // STR_I is NUL-terminated, so text containing U+0000 can only travel as OPAQUE.
        out.byte(OPAQUE);
        out.mbUint(encoded.byteLength);
        out.bytes(encoded);
      } else {
        out.byte(STR_I);
        out.bytes(encoded);
        out.byte(0x00);
      }
    } else if (child instanceof Uint8Array) {
      out.byte(OPAQUE);
      out.mbUint(child.byteLength);
      out.bytes(child);
    } else {
      startElement(child);
    }
  }
  return out.result();
}

// ---------------------------------------------------------------------------------------------
// Direct (tree-less) reader and writer for the SyncML mapping (see element.ts). Element ids are
// the page-0 token, or 0x40 | the page-1 token. The reader accepts a strict subset of what
// parseWbxml accepts (numeric public id, no string table, STR_I/OPAQUE text, pages 0 and 1) and
// throws BAIL on anything else, so decodeSyncML falls back to parseWbxml for the reference
// behaviour; the writer gives the bytes writeWbxml gives for the message's element tree.
// ---------------------------------------------------------------------------------------------

/** 1 for every element id with a tag on its page. */
const KNOWN_ID = new Uint8Array(128);
for (const tok of Object.values(SYNCML_TAGS)) KNOWN_ID[tok] = 1;
for (const tok of Object.values(METINF_TAGS)) KNOWN_ID[0x40 | tok] = 1;

/** Largest message whose strings are sliced from one Latin-1 text of the whole message. */
const WHOLE_TEXT_MAX = 64 * 1024;

interface Latin1Slicer {
  latin1Slice(start: number, end: number): string;
}

/** Reads a SyncML WBXML document element by element (ElementCursor); see the section comment. */
export class WbxmlCursor implements ElementCursor {
  private readonly b: Uint8Array;
  private readonly buf: Buffer & Latin1Slicer;
  private readonly len: number;
  private pos = 0;
  private page = 0;
  private depth = 0;
  private count = 0;
  private selfClosed = false;
  private readonly maxDepth: number;
  private readonly maxElements: number;
  /** The body as Latin-1 text (one native call), sliced for ASCII strings. */
  private latin1 = '';
  private whole = false;
  /** len when the whole body is ASCII (no string needs a UTF-8 check), else the body's offset. */
  private firstHigh = 0;

  constructor(bytes: Uint8Array, limits: DecodeLimits = DEFAULT_LIMITS) {
    this.b = bytes;
    this.len = bytes.byteLength;
    if (this.len > limits.maxBytes) bail();
    this.buf = (Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)) as Buffer & Latin1Slicer;
    this.maxDepth = limits.maxDepth;
    this.maxElements = limits.maxElements;
  }

  private byte(): number {
    if (this.pos >= this.len) bail();
    return this.b[this.pos++]!;
  }

  private mbUint(): number {
    let v = 0;
    for (let n = 0; n < 5; n++) {
      const b = this.byte();
      v = v * 128 + (b & 0x7f);
      if ((b & 0x80) === 0) return v > 0xffffffff ? bail() : v;
    }
    return bail();
  }

  /** Opens the element of tag token t on the current page. */
  private tag(t: number): number {
    const low = t & TAG_ID_MASK;
    if (low < 5 || (t & TAG_ATTRIBUTES) !== 0 || this.page > 1) bail(); // global tokens, attributes, DDF
    const id = (this.page << 6) | low;
    if (KNOWN_ID[id] === 0) bail();
    if (++this.count > this.maxElements || this.depth + 1 > this.maxDepth) bail();
    this.depth++;
    this.selfClosed = (t & TAG_CONTENT) === 0;
    return id;
  }

  /** Text of bytes [s, e): ASCII straight from the buffer, other UTF-8 decoded; invalid UTF-8 bails. */
  private str(s: number, e: number): string {
    if (e > this.firstHigh) {
      const b = this.b;
      for (let k = s; k < e; k++) {
        if (b[k]! >= 0x80) {
          try {
            return utf8Decoder.decode(b.subarray(s, e));
          } catch {
            return bail();
          }
        }
      }
    }
    return this.whole ? this.latin1.slice(s, e) : this.buf.latin1Slice(s, e);
  }

  root(): number {
    const version = this.byte();
    if (version < 1 || version > 3) bail();
    const publicId = this.mbUint();
    if (publicId !== 0x1201 && publicId !== 0x1202 && publicId !== 0x0fd3) bail();
    if (this.mbUint() !== CHARSET_UTF8) bail();
    if (this.mbUint() !== 0) bail(); // a string table: left to the tree path
    // Small messages: one Latin-1 text for all strings. Large ones (big OPAQUE chunks) would pay
    // for converting and keeping alive text that is mostly not strings: per-string slices there.
    this.whole = this.len <= WHOLE_TEXT_MAX;
    if (this.whole) this.latin1 = this.buf.latin1Slice(0, this.len);
    this.firstHigh = isAscii(this.buf.subarray(this.pos)) ? this.len : this.pos;
    for (;;) {
      const t = this.byte();
      if (t === SWITCH_PAGE) this.page = this.byte();
      else return this.tag(t);
    }
  }

  nextChild(): number {
    if (this.selfClosed) {
      this.selfClosed = false;
      this.depth--;
      return CLOSED;
    }
    for (;;) {
      const t = this.byte();
      switch (t) {
        case SWITCH_PAGE:
          this.page = this.byte();
          break;
        case END:
          this.depth--;
          return CLOSED;
        case STR_I: {
          // Text among child elements is ignored by the mapping; it only has to be terminated.
          const e = this.b.indexOf(0, this.pos);
          if (e < 0) bail();
          this.pos = e + 1;
          break;
        }
        case OPAQUE: {
          const n = this.mbUint();
          if (n > this.len - this.pos) bail();
          this.pos += n;
          break;
        }
        default:
          return this.tag(t);
      }
    }
  }

  /** The inline string (STR_I) at the position, up to its NUL; undefined when empty. */
  private inlineStr(): string | undefined {
    const s = this.pos;
    const e = this.b.indexOf(0, s);
    if (e < 0) bail();
    this.pos = e + 1;
    return e > s ? this.str(s, e) : undefined;
  }

  leafText(): string {
    if (this.selfClosed) {
      this.selfClosed = false;
      this.depth--;
      return '';
    }
    let text: string | undefined;
    for (;;) {
      const t = this.byte();
      if (t === STR_I) {
        const piece = this.inlineStr();
        if (piece !== undefined) {
          if (text !== undefined) bail(); // split text: the tree path joins the bytes first
          text = piece;
        }
      } else if (t === END) {
        this.depth--;
        return text ?? '';
      } else if (t === SWITCH_PAGE) this.page = this.byte();
      else bail();
    }
  }

  dataValue(): string | Uint8Array {
    if (this.selfClosed) {
      this.selfClosed = false;
      this.depth--;
      return '';
    }
    let value: string | Uint8Array | undefined;
    for (;;) {
      const t = this.byte();
      if (t === STR_I) {
        const piece = this.inlineStr();
        if (piece !== undefined) {
          if (value !== undefined) bail();
          value = piece;
        }
      } else if (t === OPAQUE) {
        const n = this.mbUint();
        if (n > this.len - this.pos || value !== undefined) bail();
        // A copy, independent of the input buffer; an empty OPAQUE is empty text.
        value = n > 0 ? new Uint8Array(this.b.subarray(this.pos, this.pos + n)) : '';
        this.pos += n;
      } else if (t === END) {
        this.depth--;
        return value ?? '';
      } else if (t === SWITCH_PAGE) this.page = this.byte();
      else bail();
    }
  }

  skip(): void {
    const base = this.depth;
    do this.nextChild();
    while (this.depth >= base);
  }

  end(): void {
    if (this.pos !== this.len) bail();
  }
}

const SCRATCH_SIZE = 8192;
const SCRATCH_KEEP = 64 * 1024;
let scratch = new Uint8Array(SCRATCH_SIZE);

/**
 * Writes a SyncML message as WBXML 1.2 (ElementSink), byte for byte what writeWbxml writes for the
 * message's element tree. One writer at a time (it fills a module-level scratch buffer; encoding is
 * synchronous); result() copies the bytes out.
 */
export class WbxmlWriter implements ElementSink {
  private buf: Uint8Array;
  private cap: number;
  private pos: number;
  private page = 0;

  constructor() {
    const b = scratch;
    this.buf = b;
    this.cap = b.byteLength;
    b[0] = 0x02; // WBXML 1.2
    b[1] = 0x80 | (PUBLIC_ID_SYNCML12 >> 7); // mb_u_int32 of 0x1201
    b[2] = PUBLIC_ID_SYNCML12 & 0x7f;
    b[3] = CHARSET_UTF8;
    b[4] = 0x00; // empty string table
    this.pos = 5;
  }

  /** Makes room for n more bytes. */
  private grow(n: number): void {
    let size = this.cap * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    scratch = next;
    this.buf = next;
    this.cap = size;
  }

  private tag(id: number, content: number): void {
    if (this.pos + 3 > this.cap) this.grow(3);
    const b = this.buf;
    const p = id >> 6;
    if (p !== this.page) {
      b[this.pos++] = SWITCH_PAGE;
      b[this.pos++] = p;
      this.page = p;
    }
    b[this.pos++] = (id & TAG_ID_MASK) | content;
  }

  private mbUint(v: number): void {
    if (this.pos + 5 > this.cap) this.grow(5);
    const b = this.buf;
    if (v < 0x80) b[this.pos++] = v;
    else {
      let n = 0;
      for (let r = v; r >= 0x80; r = Math.floor(r / 128)) n++;
      for (let k = n; k >= 0; k--) b[this.pos + n - k] = (Math.floor(v / 128 ** k) % 128) | (k > 0 ? 0x80 : 0);
      this.pos += n + 1;
    }
  }

  private byte(v: number): void {
    if (this.pos + 1 > this.cap) this.grow(1);
    this.buf[this.pos++] = v;
  }

  open(id: number): void {
    this.tag(id, TAG_CONTENT);
  }
  close(): void {
    this.byte(END);
  }
  empty(id: number): void {
    this.tag(id, 0);
  }
  text(id: number, s: string): void {
    this.tag(id, TAG_CONTENT);
    const n = s.length;
    if (this.pos + n + 3 > this.cap) this.grow(n + 3);
    const b = this.buf;
    const at = this.pos;
    // A JS loop beats Buffer#utf8Write plus a NUL search for the short texts of DM messages.
    let p = at + 1;
    let k = 0;
    for (; k < n; k++) {
      const c = s.charCodeAt(k);
      if (c === 0 || c >= 0x80) break;
      b[p++] = c;
    }
    if (k === n) {
      b[at] = STR_I;
      b[p++] = 0x00;
      b[p++] = END;
      this.pos = p;
      return;
    }
    // Non-ASCII or NUL: the rules of writeWbxml.
    if (LONE_SURROGATE.test(s)) bail(); // the tree path throws CODEC_WBXML_TEXT
    const encoded = utf8Encoder.encode(s);
    const nul = encoded.includes(0); // STR_I is NUL-terminated: such text travels as OPAQUE
    if (nul) {
      this.byte(OPAQUE);
      this.mbUint(encoded.byteLength);
    } else this.byte(STR_I);
    if (this.pos + encoded.byteLength + 2 > this.cap) this.grow(encoded.byteLength + 2);
    this.buf.set(encoded, this.pos);
    this.pos += encoded.byteLength;
    if (!nul) this.buf[this.pos++] = 0x00;
    this.buf[this.pos++] = END;
  }
  bytes(id: number, data: Uint8Array): void {
    this.tag(id, TAG_CONTENT);
    this.byte(OPAQUE);
    this.mbUint(data.byteLength);
    if (this.pos + data.byteLength + 1 > this.cap) this.grow(data.byteLength + 1);
    this.buf.set(data, this.pos);
    this.pos += data.byteLength;
    this.buf[this.pos++] = END;
  }
  /** The document's bytes (a copy, in a pooled Buffer like Buffer.from(string) gives for XML). */
  result(): Uint8Array {
    const out = Buffer.allocUnsafe(this.pos);
    out.set(this.buf.subarray(0, this.pos));
    // A large message grew the scratch buffer: let that memory go rather than keep it forever.
    if (this.cap > SCRATCH_KEEP) scratch = new Uint8Array(SCRATCH_SIZE);
    return out;
  }
}

