/**
 * Maps the typed SyncML DM model to and from the wire, and exposes the encode/decode entry points
 * for both encodings. Element order on output follows the reference toolkit (notes §3.1); on input
 * reorderings are accepted.
 *
 * Two implementations of one mapping: the element-tree path (messageToElement/elementToMessage over
 * parseXml/writeXml/parseWbxml/writeWbxml) is the reference and produces every error; the direct
 * path (readMessage/writeMessage over the cursors and sinks of xml.ts and wbxml.ts) builds no tree
 * and is what decodeSyncML/encodeSyncML use whenever the input is in its subset (profiled: building
 * and walking the tree, the per-element namespace maps and the callback-based escaping were most of
 * the time). Differential tests in test/codec/syncml.test.ts check that both paths give the same
 * bytes, messages and errors.
 */
import { CodecError } from '../errors.ts';
import {
  CLOSED,
  DEFAULT_LIMITS,
  bail,
  el,
  elements,
  isElement,
  textOf,
  type DecodeLimits,
  type ElementCursor,
  type ElementSink,
  type XElement,
  type XNode,
} from './element.ts';
import type {
  AlertCommand,
  Chal,
  Command,
  ContainerCommand,
  Cred,
  DataValue,
  DeleteCommand,
  Encoding,
  ExecCommand,
  GetCommand,
  Item,
  ItemCommand,
  LocRef,
  Meta,
  ResultsCommand,
  StatusCommand,
  SyncHdr,
  SyncMLMessage,
} from './model.ts';
import { METINF_TAGS, SYNCML_TAGS, WbxmlCursor, WbxmlWriter, parseWbxml, writeWbxml } from './wbxml.ts';
import { XmlCursor, XmlWriter, parseXml, writeXml } from './xml.ts';

/** MIME types DM messages travel with; the `vnd.syncml+...` forms are what many real clients send. */
export const CONTENT_TYPES = {
  xml: 'application/vnd.syncml.dm+xml',
  wbxml: 'application/vnd.syncml.dm+wbxml',
} as const;

/** Returns the encoding of a Content-Type header, or undefined when it is not a SyncML type. */
export function encodingOfContentType(ct: string | undefined): Encoding | undefined {
  if (!ct) return undefined;
  const base = ct.split(';')[0]!.trim().toLowerCase();
  if (base === 'application/vnd.syncml.dm+xml' || base === 'application/vnd.syncml+xml') return 'xml';
  if (base === 'application/vnd.syncml.dm+wbxml' || base === 'application/vnd.syncml+wbxml') return 'wbxml';
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// model -> element tree

const leaf = (name: string, text: string, ns: XElement['ns'] = 'syncml'): XElement => el(name, text === '' ? [] : [text], ns);
const flag = (name: string): XElement => el(name);

function metaChildren(m: Meta): XElement[] {
  const out: XElement[] = [];
  const mi = (name: string, v: string | number | undefined): void => {
    if (v !== undefined) out.push(leaf(name, String(v), 'metinf'));
  };
  mi('Format', m.format);
  mi('Type', m.type);
  mi('Mark', m.mark);
  mi('Size', m.size);
  mi('NextNonce', m.nextNonce);
  mi('Version', m.version);
  mi('MaxMsgSize', m.maxMsgSize);
  mi('MaxObjSize', m.maxObjSize);
  for (const e of m.emi ?? []) mi('EMI', e);
  return out;
}

function metaEl(m: Meta | undefined): XElement[] {
  if (!m) return [];
  return [el('Meta', metaChildren(m))];
}

function locEl(name: string, r: LocRef | undefined): XElement[] {
  if (!r) return [];
  const kids = [leaf('LocURI', r.locURI)];
  if (r.locName !== undefined) kids.push(leaf('LocName', r.locName));
  return [el(name, kids)];
}

function dataEl(d: DataValue | undefined): XElement[] {
  if (d === undefined) return [];
  if (typeof d === 'string') return [leaf('Data', d)];
  return [el('Data', d.byteLength ? [d] : [])];
}

function itemEl(it: Item): XElement {
  return el('Item', [
    ...locEl('Target', it.target),
    ...locEl('Source', it.source),
    ...locEl('TargetParent', it.targetParent),
    ...locEl('SourceParent', it.sourceParent),
    ...metaEl(it.meta),
    ...dataEl(it.data),
    ...(it.moreData ? [flag('MoreData')] : []),
  ]);
}

function credEl(c: Cred | undefined): XElement[] {
  if (!c) return [];
  return [el('Cred', [...metaEl(c.meta), leaf('Data', c.data)])];
}

function commandEl(c: Command): XElement {
  const head = (cmdID: string, noResp?: boolean): XElement[] => [leaf('CmdID', cmdID), ...(noResp ? [flag('NoResp')] : [])];
  switch (c.kind) {
    case 'Add':
    case 'Replace':
    case 'Copy':
      return el(c.kind, [...head(c.cmdID, c.noResp), ...metaEl(c.meta), ...c.items.map(itemEl)]);
    case 'Get':
      return el('Get', [
        ...head(c.cmdID, c.noResp),
        ...(c.lang !== undefined ? [leaf('Lang', c.lang)] : []),
        ...metaEl(c.meta),
        ...c.items.map(itemEl),
      ]);
    case 'Delete':
      return el('Delete', [
        ...head(c.cmdID, c.noResp),
        ...(c.archive ? [flag('Archive')] : []),
        ...(c.sftDel ? [flag('SftDel')] : []),
        ...metaEl(c.meta),
        ...c.items.map(itemEl),
      ]);
    case 'Exec':
      return el('Exec', [
        ...head(c.cmdID, c.noResp),
        ...metaEl(c.meta),
        ...(c.correlator !== undefined ? [leaf('Correlator', c.correlator)] : []),
        ...c.items.map(itemEl),
      ]);
    case 'Alert':
      return el('Alert', [
        ...head(c.cmdID, c.noResp),
        ...(c.data !== undefined ? [leaf('Data', c.data)] : []),
        ...(c.correlator !== undefined ? [leaf('Correlator', c.correlator)] : []),
        ...c.items.map(itemEl),
      ]);
    case 'Atomic':
    case 'Sequence':
      return el(c.kind, [...head(c.cmdID, c.noResp), ...metaEl(c.meta), ...c.commands.map(commandEl)]);
    case 'Results':
      return el('Results', [
        leaf('CmdID', c.cmdID),
        ...(c.msgRef !== undefined ? [leaf('MsgRef', c.msgRef)] : []),
        leaf('CmdRef', c.cmdRef),
        ...metaEl(c.meta),
        ...(c.targetRef !== undefined ? [leaf('TargetRef', c.targetRef)] : []),
        ...(c.sourceRef !== undefined ? [leaf('SourceRef', c.sourceRef)] : []),
        ...c.items.map(itemEl),
      ]);
    case 'Status':
      return el('Status', [
        leaf('CmdID', c.cmdID),
        leaf('MsgRef', c.msgRef),
        leaf('CmdRef', c.cmdRef),
        leaf('Cmd', c.cmd),
        ...c.targetRefs.map((t) => leaf('TargetRef', t)),
        ...c.sourceRefs.map((s) => leaf('SourceRef', s)),
        ...credEl(c.cred),
        ...(c.chal ? [el('Chal', metaEl(c.chal.meta))] : []),
        leaf('Data', c.data),
        ...c.items.map(itemEl),
      ]);
    case 'Unsupported':
      return el(c.name, [leaf('CmdID', c.cmdID)]);
  }
}

function hdrEl(h: SyncHdr): XElement {
  return el('SyncHdr', [
    leaf('VerDTD', h.verDTD),
    leaf('VerProto', h.verProto),
    leaf('SessionID', h.sessionID),
    leaf('MsgID', h.msgID),
    ...locEl('Target', h.target),
    ...locEl('Source', h.source),
    ...(h.respURI !== undefined ? [leaf('RespURI', h.respURI)] : []),
    ...(h.noResp ? [flag('NoResp')] : []),
    ...credEl(h.cred),
    ...metaEl(h.meta),
  ]);
}

/** Builds the element tree of a message. */
export function messageToElement(m: SyncMLMessage): XElement {
  return el('SyncML', [hdrEl(m.hdr), el('SyncBody', [...m.body.map(commandEl), ...(m.final ? [flag('Final')] : [])])]);
}

// ---------------------------------------------------------------------------------------------
// element tree -> model

function missing(what: string, where: string, status = 412): never {
  throw new CodecError('CODEC_SYNCML_MISSING', `${where} lacks the required element ${what}`, status);
}

function child(e: XElement, name: string): XElement | undefined {
  for (const c of e.children) if (isElement(c) && c.name === name) return c;
  return undefined;
}

function childText(e: XElement, name: string): string | undefined {
  const c = child(e, name);
  return c ? textOf(c).trim() : undefined;
}

function reqText(e: XElement, name: string): string {
  const v = childText(e, name);
  if (v === undefined) missing(name, e.name);
  return v;
}

function intOf(s: string, what: string): number {
  if (!/^\d{1,10}$/.test(s)) throw new CodecError('CODEC_SYNCML_VALUE', `${what} must be a non-negative integer, got "${s.slice(0, 40)}"`);
  return Number(s);
}

function parseMeta(m: XElement): Meta {
  const out: Meta = {};
  // MetInf may be wrapped in a <MetInf> element (allowed by the MetInf DTD) or sit directly in Meta.
  const fields = elements(m).flatMap((c) => (c.name === 'MetInf' ? elements(c) : [c]));
  for (const f of fields) {
    const v = textOf(f).trim();
    switch (f.name) {
      case 'Format': out.format = v; break;
      case 'Type': out.type = v; break;
      case 'Mark': out.mark = v; break;
      case 'Size': out.size = intOf(v, 'Meta Size'); break;
      case 'NextNonce': out.nextNonce = v; break;
      case 'Version': out.version = v; break;
      case 'MaxMsgSize': out.maxMsgSize = intOf(v, 'MaxMsgSize'); break;
      case 'MaxObjSize': out.maxObjSize = intOf(v, 'MaxObjSize'); break;
      case 'EMI': (out.emi ??= []).push(v); break;
      default: break; // Anchor, Mem, FreeMem... belong to data sync; ignored in DM.
    }
  }
  return out;
}

function optMeta(e: XElement): Meta | undefined {
  const m = child(e, 'Meta');
  return m ? parseMeta(m) : undefined;
}

function parseLoc(e: XElement | undefined): LocRef | undefined {
  if (!e) return undefined;
  const locURI = childText(e, 'LocURI');
  if (locURI === undefined) missing('LocURI', e.name);
  const locName = childText(e, 'LocName');
  return locName === undefined ? { locURI } : { locURI, locName };
}

const utf8 = new TextEncoder();

/** Data is opaque: keep text exactly (no trimming), bytes as bytes; inline XML is re-serialised. */
function parseData(d: XElement): DataValue {
  if (d.children.length === 1 && d.children[0] instanceof Uint8Array && d.children[0].byteLength > 0) return d.children[0];
  // Fix: text and opaque pieces (WBXML STR_I + OPAQUE) are joined as bytes; textualise() turns
  // valid UTF-8 back into text unless the Format is binary. textOf() decoded the opaque part as
  // UTF-8, which was lossy for non-UTF-8 bytes, and a Format bin Data came back as text with NULs
  // that re-encoded as one OPAQUE and then decoded as bytes (encode/decode not idempotent). An
  // empty OPAQUE is empty text, as the encoder writes both alike (an empty <Data/>). Inline
  // elements among opaque pieces follow the same rule (serialised, then joined as bytes).
  if (d.children.some((c) => c instanceof Uint8Array)) {
    const parts = d.children.map((c) => (typeof c === 'string' ? utf8.encode(c) : isElement(c) ? utf8.encode(writeXml(c)) : c));
    const bytes = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
    let at = 0;
    for (const p of parts) {
      bytes.set(p, at);
      at += p.byteLength;
    }
    return bytes.byteLength > 0 ? bytes : '';
  }
  if (d.children.some(isElement)) {
    return d.children.map((c: XNode) => (isElement(c) ? writeXml(c) : c)).join('');
  }
  return textOf(d);
}

const BINARY_FORMATS = new Set(['bin', 'b64']);

/**
 * libwbxml-based peers send Add/Replace Data as OPAQUE even when it is text; unless the item is
 * declared binary, valid UTF-8 bytes are text.
 */
function textualise(it: Item, cmdMeta: Meta | undefined): void {
  if (!(it.data instanceof Uint8Array)) return;
  const format = it.meta?.format ?? cmdMeta?.format;
  if (format !== undefined && BINARY_FORMATS.has(format)) return;
  try {
    // Fix: ignoreBOM, so a leading U+FEFF is data, not a byte-order mark (it used to be dropped,
    // e.g. Replace Data "\uFEFF..." sent by libwbxml as OPAQUE lost its first character).
    it.data = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(it.data);
  } catch {
    // not UTF-8: stays binary
  }
}

function parseItem(e: XElement, cmdMeta?: Meta): Item {
  const it: Item = {};
  for (const c of elements(e)) {
    switch (c.name) {
      case 'Target': it.target = parseLoc(c); break;
      case 'Source': it.source = parseLoc(c); break;
      case 'TargetParent': it.targetParent = parseLoc(c); break;
      case 'SourceParent': it.sourceParent = parseLoc(c); break;
      case 'Meta': it.meta = parseMeta(c); break;
      case 'Data': it.data = parseData(c); break;
      case 'MoreData': it.moreData = true; break;
      default: throw new CodecError('CODEC_SYNCML_ELEMENT', `unexpected <${c.name}> in Item`);
    }
  }
  textualise(it, cmdMeta);
  return it;
}

function parseCred(e: XElement | undefined): Cred | undefined {
  if (!e) return undefined;
  const meta = optMeta(e);
  const data = reqText(e, 'Data');
  return meta ? { meta, data } : { data };
}

const items = (e: XElement): Item[] => {
  const m = child(e, 'Meta');
  const cmdMeta = m ? parseMeta(m) : undefined;
  return elements(e).filter((c) => c.name === 'Item').map((i) => parseItem(i, cmdMeta));
};
const hasFlag = (e: XElement, name: string): boolean => child(e, name) !== undefined;

/** SyncML commands that exist in the representation protocol but are not used by DM. */
const UNSUPPORTED = new Set(['Sync', 'Map', 'Put', 'Search', 'Move']);

/** Command elements parseCommand knows (besides UNSUPPORTED). */
const COMMANDS = new Set(['Add', 'Replace', 'Copy', 'Get', 'Delete', 'Exec', 'Alert', 'Atomic', 'Sequence', 'Results', 'Status']);

function parseCommand(e: XElement): Command {
  // Fix: an unknown element is a bad request (400), checked before the CmdID requirement; it used
  // to be reported as an incomplete command (412) whenever it had no CmdID, e.g. <Final/> in Atomic.
  if (!COMMANDS.has(e.name) && !UNSUPPORTED.has(e.name)) {
    throw new CodecError('CODEC_SYNCML_ELEMENT', `unknown command <${e.name}> in SyncBody`);
  }
  const cmdID = reqText(e, 'CmdID');
  const noResp = hasFlag(e, 'NoResp') ? { noResp: true } : {};
  const meta = optMeta(e);
  const withMeta = meta ? { meta } : {};
  switch (e.name) {
    case 'Add':
    case 'Replace':
    case 'Copy': {
      const c: ItemCommand = { kind: e.name, cmdID, ...noResp, ...withMeta, items: items(e) };
      if (c.items.length === 0) missing('Item', e.name);
      return c;
    }
    case 'Get': {
      const lang = childText(e, 'Lang');
      const c: GetCommand = { kind: 'Get', cmdID, ...noResp, ...(lang !== undefined ? { lang } : {}), ...withMeta, items: items(e) };
      if (c.items.length === 0) missing('Item', 'Get');
      return c;
    }
    case 'Delete': {
      const c: DeleteCommand = {
        kind: 'Delete',
        cmdID,
        ...noResp,
        ...(hasFlag(e, 'Archive') ? { archive: true } : {}),
        ...(hasFlag(e, 'SftDel') ? { sftDel: true } : {}),
        ...withMeta,
        items: items(e),
      };
      if (c.items.length === 0) missing('Item', 'Delete');
      return c;
    }
    case 'Exec': {
      const correlator = childText(e, 'Correlator');
      const c: ExecCommand = { kind: 'Exec', cmdID, ...noResp, ...withMeta, ...(correlator !== undefined ? { correlator } : {}), items: items(e) };
      if (c.items.length === 0) missing('Item', 'Exec');
      return c;
    }
    case 'Alert': {
      const data = childText(e, 'Data');
      const correlator = childText(e, 'Correlator');
      const c: AlertCommand = {
        kind: 'Alert',
        cmdID,
        ...noResp,
        ...(data !== undefined ? { data } : {}),
        ...(correlator !== undefined ? { correlator } : {}),
        items: items(e),
      };
      return c;
    }
    case 'Atomic':
    case 'Sequence': {
      const inner = elements(e).filter((c) => !['CmdID', 'NoResp', 'Meta'].includes(c.name));
      const c: ContainerCommand = { kind: e.name, cmdID, ...noResp, ...withMeta, commands: inner.map((x) => parseCommand(x)) };
      return c;
    }
    case 'Results': {
      const msgRef = childText(e, 'MsgRef');
      const targetRef = childText(e, 'TargetRef');
      const sourceRef = childText(e, 'SourceRef');
      const c: ResultsCommand = {
        kind: 'Results',
        cmdID,
        ...(msgRef !== undefined ? { msgRef } : {}),
        cmdRef: reqText(e, 'CmdRef'),
        ...withMeta,
        ...(targetRef !== undefined ? { targetRef } : {}),
        ...(sourceRef !== undefined ? { sourceRef } : {}),
        items: items(e),
      };
      return c;
    }
    case 'Status': {
      const chalEl = child(e, 'Chal');
      let chal: Chal | undefined;
      if (chalEl) {
        const m = child(chalEl, 'Meta');
        chal = { meta: m ? parseMeta(m) : {} };
      }
      const cred = parseCred(child(e, 'Cred'));
      const c: StatusCommand = {
        kind: 'Status',
        cmdID,
        msgRef: reqText(e, 'MsgRef'),
        cmdRef: reqText(e, 'CmdRef'),
        cmd: reqText(e, 'Cmd'),
        targetRefs: elements(e).filter((x) => x.name === 'TargetRef').map((x) => textOf(x).trim()),
        sourceRefs: elements(e).filter((x) => x.name === 'SourceRef').map((x) => textOf(x).trim()),
        ...(cred ? { cred } : {}),
        ...(chal ? { chal } : {}),
        data: reqText(e, 'Data'),
        items: items(e),
      };
      return c;
    }
    default:
      if (UNSUPPORTED.has(e.name)) return { kind: 'Unsupported', name: e.name, cmdID };
      throw new CodecError('CODEC_SYNCML_ELEMENT', `unknown command <${e.name}> in SyncBody`);
  }
}

/** Decodes the SyncHdr element. */
function parseHdr(h: XElement): SyncHdr {
  const target = parseLoc(child(h, 'Target'));
  const source = parseLoc(child(h, 'Source'));
  if (!target) missing('Target', 'SyncHdr', 400);
  if (!source) missing('Source', 'SyncHdr', 400);
  const respURI = childText(h, 'RespURI');
  const cred = parseCred(child(h, 'Cred'));
  const meta = optMeta(h);
  return {
    verDTD: reqText(h, 'VerDTD'),
    verProto: reqText(h, 'VerProto'),
    sessionID: reqText(h, 'SessionID'),
    msgID: reqText(h, 'MsgID'),
    target,
    source,
    ...(respURI !== undefined ? { respURI } : {}),
    ...(hasFlag(h, 'NoResp') ? { noResp: true } : {}),
    ...(cred ? { cred } : {}),
    ...(meta ? { meta } : {}),
  };
}

/** Maps an element tree to a message; throws CodecError (with a SyncML status) on structural errors. */
export function elementToMessage(root: XElement): SyncMLMessage {
  if (root.name !== 'SyncML') throw new CodecError('CODEC_SYNCML_ROOT', `root element is <${root.name}>, expected <SyncML>`);
  const kids = elements(root);
  const hdrEl = kids.find((k) => k.name === 'SyncHdr');
  const bodyEl = kids.find((k) => k.name === 'SyncBody');
  if (!hdrEl) missing('SyncHdr', 'SyncML', 400);
  if (!bodyEl) missing('SyncBody', 'SyncML', 400);
  const hdr = parseHdr(hdrEl);
  const body: Command[] = [];
  let final = false;
  for (const c of elements(bodyEl)) {
    if (c.name === 'Final') final = true;
    else body.push(parseCommand(c));
  }
  return { hdr, body, final };
}

/**
 * Decodes just enough of a message to answer it (the SyncHdr), for replying with an error status
 * when the body is malformed. Returns undefined when even the header is unreadable.
 */
export function decodeHeaderOnly(bytes: Uint8Array, encoding: Encoding, limits: DecodeLimits = DEFAULT_LIMITS): SyncHdr | undefined {
  let root: XElement;
  try {
    root = encoding === 'xml' ? parseXml(bytes, limits) : parseWbxml(bytes, limits);
  } catch {
    return encoding === 'xml' ? headerOfBrokenXml(bytes, limits) : undefined;
  }
  try {
    const h = elements(root).find((k) => k.name === 'SyncHdr');
    return h ? parseHdr(h) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Fix: when the XML body was not well-formed (e.g. a message truncated inside SyncBody) the whole
 * parse failed and no header came back although it was intact. The first <SyncHdr>...</SyncHdr> is
 * now read on its own (still with parseXml, so no DTD or entity gets through). Two forward searches,
 * no backtracking over repeated tags. (WBXML has no such fallback.)
 */
function headerOfBrokenXml(bytes: Uint8Array, limits: DecodeLimits): SyncHdr | undefined {
  if (bytes.byteLength > limits.maxBytes) return undefined;
  try {
    const text = Buffer.from(bytes).toString('utf8');
    const open = /<([A-Za-z_][-A-Za-z0-9_.]*:)?SyncHdr[\s>]/.exec(text);
    if (!open) return undefined;
    const end = text.indexOf(`</${open[1] ?? ''}SyncHdr`, open.index);
    const gt = end < 0 ? -1 : text.indexOf('>', end);
    if (gt < 0) return undefined;
    const h = parseXml(text.slice(open.index, gt + 1), limits);
    return h.name === 'SyncHdr' ? parseHdr(h) : undefined;
  } catch {
    return undefined;
  }
}


// ---------------------------------------------------------------------------------------------
// Direct mapping: wire <-> model without an element tree (the hot path; see element.ts)
//
// The reader follows exactly the rules of elementToMessage above, on a subset of inputs: anything
// outside it (duplicate singular children, MetInf wrappers, namespace prefixes, inline markup in
// Data, WBXML string tables, ...) and every error throws BAIL, and decodeSyncML then decodes the
// message again through the element tree, which gives the same result or the reference error. The
// writer likewise produces the bytes of writeXml/writeWbxml(messageToElement(m)) and bails on
// anything unusual in the model.
// ---------------------------------------------------------------------------------------------

// Element ids: SyncML code page 0 tokens; MetInf tokens | 0x40 (checked against the tables below).
const ADD = 0x05, ALERT = 0x06, ARCHIVE = 0x07, ATOMIC = 0x08, CHAL = 0x09, CMD = 0x0a, CMDID = 0x0b;
const CMDREF = 0x0c, COPY = 0x0d, CRED = 0x0e, DATA = 0x0f, DELETE = 0x10, EXEC = 0x11, FINAL = 0x12;
const GET = 0x13, ITEM = 0x14, LANG = 0x15, LOCNAME = 0x16, LOCURI = 0x17, MAP = 0x18, META = 0x1a;
const MSGID = 0x1b, MSGREF = 0x1c, NORESP = 0x1d, PUT = 0x1f, REPLACE = 0x20, RESPURI = 0x21;
const RESULTS = 0x22, SEARCH = 0x23, SEQUENCE = 0x24, SESSIONID = 0x25, SFTDEL = 0x26, SOURCE = 0x27;
const SOURCEREF = 0x28, STATUS = 0x29, SYNC = 0x2a, SYNCBODY = 0x2b, SYNCHDR = 0x2c, SYNCML = 0x2d;
const TARGET = 0x2e, TARGETREF = 0x2f, VERDTD = 0x31, VERPROTO = 0x32, MOREDATA = 0x34;
const SOURCEPARENT = 0x39, TARGETPARENT = 0x3a, MOVE = 0x3b, CORRELATOR = 0x3c;
const M_EMI = 0x46, M_FORMAT = 0x47, M_MARK = 0x4b, M_MAXMSGSIZE = 0x4c, M_METINF = 0x4e, M_NEXTNONCE = 0x50;
const M_SIZE = 0x52, M_TYPE = 0x53, M_VERSION = 0x54, M_MAXOBJSIZE = 0x55;

{
  const check: [string, number, Readonly<Record<string, number>>][] = [
    ['Add', ADD, SYNCML_TAGS], ['Alert', ALERT, SYNCML_TAGS], ['Archive', ARCHIVE, SYNCML_TAGS], ['Atomic', ATOMIC, SYNCML_TAGS],
    ['Chal', CHAL, SYNCML_TAGS], ['Cmd', CMD, SYNCML_TAGS], ['CmdID', CMDID, SYNCML_TAGS], ['CmdRef', CMDREF, SYNCML_TAGS],
    ['Copy', COPY, SYNCML_TAGS], ['Cred', CRED, SYNCML_TAGS], ['Data', DATA, SYNCML_TAGS], ['Delete', DELETE, SYNCML_TAGS],
    ['Exec', EXEC, SYNCML_TAGS], ['Final', FINAL, SYNCML_TAGS], ['Get', GET, SYNCML_TAGS], ['Item', ITEM, SYNCML_TAGS],
    ['Lang', LANG, SYNCML_TAGS], ['LocName', LOCNAME, SYNCML_TAGS], ['LocURI', LOCURI, SYNCML_TAGS], ['Map', MAP, SYNCML_TAGS],
    ['Meta', META, SYNCML_TAGS], ['MsgID', MSGID, SYNCML_TAGS], ['MsgRef', MSGREF, SYNCML_TAGS], ['NoResp', NORESP, SYNCML_TAGS],
    ['Put', PUT, SYNCML_TAGS], ['Replace', REPLACE, SYNCML_TAGS], ['RespURI', RESPURI, SYNCML_TAGS], ['Results', RESULTS, SYNCML_TAGS],
    ['Search', SEARCH, SYNCML_TAGS], ['Sequence', SEQUENCE, SYNCML_TAGS], ['SessionID', SESSIONID, SYNCML_TAGS],
    ['SftDel', SFTDEL, SYNCML_TAGS], ['Source', SOURCE, SYNCML_TAGS], ['SourceRef', SOURCEREF, SYNCML_TAGS],
    ['Status', STATUS, SYNCML_TAGS], ['Sync', SYNC, SYNCML_TAGS], ['SyncBody', SYNCBODY, SYNCML_TAGS], ['SyncHdr', SYNCHDR, SYNCML_TAGS],
    ['SyncML', SYNCML, SYNCML_TAGS], ['Target', TARGET, SYNCML_TAGS], ['TargetRef', TARGETREF, SYNCML_TAGS],
    ['VerDTD', VERDTD, SYNCML_TAGS], ['VerProto', VERPROTO, SYNCML_TAGS], ['MoreData', MOREDATA, SYNCML_TAGS],
    ['SourceParent', SOURCEPARENT, SYNCML_TAGS], ['TargetParent', TARGETPARENT, SYNCML_TAGS], ['Move', MOVE, SYNCML_TAGS],
    ['Correlator', CORRELATOR, SYNCML_TAGS],
    ['EMI', M_EMI & 0x3f, METINF_TAGS], ['Format', M_FORMAT & 0x3f, METINF_TAGS], ['Mark', M_MARK & 0x3f, METINF_TAGS],
    ['MaxMsgSize', M_MAXMSGSIZE & 0x3f, METINF_TAGS], ['MetInf', M_METINF & 0x3f, METINF_TAGS],
    ['NextNonce', M_NEXTNONCE & 0x3f, METINF_TAGS], ['Size', M_SIZE & 0x3f, METINF_TAGS], ['Type', M_TYPE & 0x3f, METINF_TAGS],
    ['Version', M_VERSION & 0x3f, METINF_TAGS], ['MaxObjSize', M_MAXOBJSIZE & 0x3f, METINF_TAGS],
  ];
  for (const [name, id, table] of check) if (table[name] !== id) throw new Error(`codec: element id of ${name} does not match its WBXML token`);
}

/** Command element ids of a SyncBody (COMMANDS and UNSUPPORTED above); the value is the element name. */
const COMMAND_NAME: (string | undefined)[] = [];
for (const name of [...COMMANDS, ...UNSUPPORTED]) COMMAND_NAME[SYNCML_TAGS[name]!] = name;
const isCommand = (id: number): boolean => COMMAND_NAME[id] !== undefined;
const isUnsupported = (id: number): boolean => id === SYNC || id === MAP || id === PUT || id === SEARCH || id === MOVE;

const leafOf = (c: ElementCursor): string => c.leafText().trim();
const DIGITS = /^\d{1,10}$/;
function intLeaf(c: ElementCursor): number {
  const s = c.leafText().trim();
  if (!DIGITS.test(s)) bail();
  return Number(s);
}

function readMeta(c: ElementCursor): Meta {
  const out: Meta = {};
  for (let id = c.nextChild(); id !== CLOSED; id = c.nextChild()) {
    switch (id) {
      case M_FORMAT: out.format = leafOf(c); break;
      case M_TYPE: out.type = leafOf(c); break;
      case M_MARK: out.mark = leafOf(c); break;
      case M_SIZE: out.size = intLeaf(c); break;
      case M_NEXTNONCE: out.nextNonce = leafOf(c); break;
      case M_VERSION: out.version = leafOf(c); break;
      case M_MAXMSGSIZE: out.maxMsgSize = intLeaf(c); break;
      case M_MAXOBJSIZE: out.maxObjSize = intLeaf(c); break;
      case M_EMI: (out.emi ??= []).push(leafOf(c)); break;
      case M_METINF: bail(); // the wrapper form: rare, left to the tree path
      default: c.skip(); // Anchor, Mem, FreeMem... ignored in DM
    }
  }
  return out;
}

function readLoc(c: ElementCursor): LocRef {
  let locURI: string | undefined;
  let locName: string | undefined;
  for (let id = c.nextChild(); id !== CLOSED; id = c.nextChild()) {
    if (id === LOCURI) {
      if (locURI !== undefined) bail();
      locURI = leafOf(c);
    } else if (id === LOCNAME) {
      if (locName !== undefined) bail();
      locName = leafOf(c);
    } else c.skip();
  }
  if (locURI === undefined) bail();
  return locName === undefined ? { locURI } : { locURI, locName };
}

function readItem(c: ElementCursor): Item {
  const it: Item = {};
  for (let id = c.nextChild(); id !== CLOSED; id = c.nextChild()) {
    switch (id) {
      case TARGET: it.target = readLoc(c); break;
      case SOURCE: it.source = readLoc(c); break;
      case TARGETPARENT: it.targetParent = readLoc(c); break;
      case SOURCEPARENT: it.sourceParent = readLoc(c); break;
      case META: it.meta = readMeta(c); break;
      case DATA: it.data = c.dataValue(); break;
      case MOREDATA: c.skip(); it.moreData = true; break;
      default: bail(); // an error on the tree path
    }
  }
  return it;
}

function readCred(c: ElementCursor): Cred {
  let meta: Meta | undefined;
  let data: string | undefined;
  for (let id = c.nextChild(); id !== CLOSED; id = c.nextChild()) {
    if (id === META) {
      if (meta !== undefined) bail();
      meta = readMeta(c);
    } else if (id === DATA) {
      if (data !== undefined) bail();
      data = leafOf(c);
    } else c.skip();
  }
  if (data === undefined) bail();
  return meta ? { meta, data } : { data };
}

function readChal(c: ElementCursor): Chal {
  let meta: Meta | undefined;
  for (let id = c.nextChild(); id !== CLOSED; id = c.nextChild()) {
    if (id === META) {
      if (meta !== undefined) bail();
      meta = readMeta(c);
    } else c.skip();
  }
  return { meta: meta ?? {} };
}

function readHdr(c: ElementCursor): SyncHdr {
  let verDTD: string | undefined, verProto: string | undefined, sessionID: string | undefined, msgID: string | undefined;
  let target: LocRef | undefined, source: LocRef | undefined, respURI: string | undefined;
  let cred: Cred | undefined, meta: Meta | undefined;
  let noResp = false;
  for (let id = c.nextChild(); id !== CLOSED; id = c.nextChild()) {
    switch (id) {
      case VERDTD: if (verDTD !== undefined) bail(); verDTD = leafOf(c); break;
      case VERPROTO: if (verProto !== undefined) bail(); verProto = leafOf(c); break;
      case SESSIONID: if (sessionID !== undefined) bail(); sessionID = leafOf(c); break;
      case MSGID: if (msgID !== undefined) bail(); msgID = leafOf(c); break;
      case TARGET: if (target !== undefined) bail(); target = readLoc(c); break;
      case SOURCE: if (source !== undefined) bail(); source = readLoc(c); break;
      case RESPURI: if (respURI !== undefined) bail(); respURI = leafOf(c); break;
      case NORESP: noResp = true; c.skip(); break;
      case CRED: if (cred !== undefined) bail(); cred = readCred(c); break;
      case META: if (meta !== undefined) bail(); meta = readMeta(c); break;
      default: c.skip();
    }
  }
  if (target === undefined || source === undefined || verDTD === undefined || verProto === undefined || sessionID === undefined || msgID === undefined) bail();
  const h: SyncHdr = { verDTD, verProto, sessionID, msgID, target, source };
  if (respURI !== undefined) h.respURI = respURI;
  if (noResp) h.noResp = true;
  if (cred) h.cred = cred;
  if (meta) h.meta = meta;
  return h;
}

function readCommand(c: ElementCursor, kind: number): Command {
  const container = kind === ATOMIC || kind === SEQUENCE;
  const unsupported = isUnsupported(kind);
  let cmdID: string | undefined;
  let noResp = false;
  let meta: Meta | undefined;
  const items: Item[] = [];
  const commands: Command[] = [];
  let lang: string | undefined, correlator: string | undefined, data: string | undefined;
  let msgRef: string | undefined, cmdRef: string | undefined, cmd: string | undefined;
  let targetRef: string | undefined, sourceRef: string | undefined;
  let targetRefs: string[] | undefined, sourceRefs: string[] | undefined;
  let cred: Cred | undefined, chal: Chal | undefined;
  let archive = false;
  let sftDel = false;
  for (let id = c.nextChild(); id !== CLOSED; id = c.nextChild()) {
    if (id === CMDID) {
      if (cmdID !== undefined) bail();
      cmdID = leafOf(c);
    } else if (id === NORESP) {
      noResp = true;
      c.skip();
    } else if (id === META) {
      if (meta !== undefined) bail();
      meta = readMeta(c);
    } else if (container) {
      if (!isCommand(id)) bail();
      commands.push(readCommand(c, id));
    } else if (unsupported) {
      c.skip();
    } else {
      switch (id) {
        case ITEM: items.push(readItem(c)); break;
        case LANG:
          if (kind !== GET) c.skip();
          else { if (lang !== undefined) bail(); lang = leafOf(c); }
          break;
        case ARCHIVE: if (kind === DELETE) archive = true; c.skip(); break;
        case SFTDEL: if (kind === DELETE) sftDel = true; c.skip(); break;
        case CORRELATOR:
          if (kind !== EXEC && kind !== ALERT) c.skip();
          else { if (correlator !== undefined) bail(); correlator = leafOf(c); }
          break;
        case DATA:
          if (kind !== ALERT && kind !== STATUS) c.skip();
          else { if (data !== undefined) bail(); data = leafOf(c); }
          break;
        case MSGREF:
          if (kind !== RESULTS && kind !== STATUS) c.skip();
          else { if (msgRef !== undefined) bail(); msgRef = leafOf(c); }
          break;
        case CMDREF:
          if (kind !== RESULTS && kind !== STATUS) c.skip();
          else { if (cmdRef !== undefined) bail(); cmdRef = leafOf(c); }
          break;
        case CMD:
          if (kind !== STATUS) c.skip();
          else { if (cmd !== undefined) bail(); cmd = leafOf(c); }
          break;
        case TARGETREF:
          if (kind === STATUS) (targetRefs ??= []).push(leafOf(c));
          else if (kind === RESULTS) { if (targetRef !== undefined) bail(); targetRef = leafOf(c); }
          else c.skip();
          break;
        case SOURCEREF:
          if (kind === STATUS) (sourceRefs ??= []).push(leafOf(c));
          else if (kind === RESULTS) { if (sourceRef !== undefined) bail(); sourceRef = leafOf(c); }
          else c.skip();
          break;
        case CRED:
          if (kind !== STATUS) c.skip();
          else { if (cred !== undefined) bail(); cred = readCred(c); }
          break;
        case CHAL:
          if (kind !== STATUS) c.skip();
          else { if (chal !== undefined) bail(); chal = readChal(c); }
          break;
        default: c.skip(); // ignored, as on the tree path
      }
    }
  }
  if (cmdID === undefined) bail();
  if (unsupported) return { kind: 'Unsupported', name: COMMAND_NAME[kind]!, cmdID };
  if (container) {
    const o: ContainerCommand = { kind: kind === ATOMIC ? 'Atomic' : 'Sequence', cmdID, commands };
    return withFlagsAndMeta(o, noResp, meta, 'commands', commands) as ContainerCommand;
  }
  for (const it of items) if (it.data instanceof Uint8Array) textualise(it, meta);
  switch (kind) {
    case ADD:
    case REPLACE:
    case COPY: {
      if (items.length === 0) bail();
      const o = { kind: COMMAND_NAME[kind] as ItemCommand['kind'], cmdID } as ItemCommand;
      return withFlagsAndMeta(o, noResp, meta, 'items', items) as ItemCommand;
    }
    case GET: {
      if (items.length === 0) bail();
      const o = { kind: 'Get', cmdID } as GetCommand;
      if (noResp) o.noResp = true;
      if (lang !== undefined) o.lang = lang;
      if (meta) o.meta = meta;
      o.items = items;
      return o;
    }
    case DELETE: {
      if (items.length === 0) bail();
      const o = { kind: 'Delete', cmdID } as DeleteCommand;
      if (noResp) o.noResp = true;
      if (archive) o.archive = true;
      if (sftDel) o.sftDel = true;
      if (meta) o.meta = meta;
      o.items = items;
      return o;
    }
    case EXEC: {
      if (items.length === 0) bail();
      const o = { kind: 'Exec', cmdID } as ExecCommand;
      if (noResp) o.noResp = true;
      if (meta) o.meta = meta;
      if (correlator !== undefined) o.correlator = correlator;
      o.items = items;
      return o;
    }
    case ALERT: {
      const o = { kind: 'Alert', cmdID } as AlertCommand;
      if (noResp) o.noResp = true;
      if (data !== undefined) o.data = data;
      if (correlator !== undefined) o.correlator = correlator;
      o.items = items;
      return o;
    }
    case RESULTS: {
      if (cmdRef === undefined) bail();
      const o = { kind: 'Results', cmdID } as ResultsCommand;
      if (msgRef !== undefined) o.msgRef = msgRef;
      o.cmdRef = cmdRef;
      if (meta) o.meta = meta;
      if (targetRef !== undefined) o.targetRef = targetRef;
      if (sourceRef !== undefined) o.sourceRef = sourceRef;
      o.items = items;
      return o;
    }
    case STATUS: {
      if (msgRef === undefined || cmdRef === undefined || cmd === undefined || data === undefined) bail();
      const o: StatusCommand = { kind: 'Status', cmdID, msgRef, cmdRef, cmd, targetRefs: targetRefs ?? [], sourceRefs: sourceRefs ?? [] } as StatusCommand;
      if (cred) o.cred = cred;
      if (chal) o.chal = chal;
      o.data = data;
      o.items = items;
      return o;
    }
    default:
      return bail();
  }
}

/** Adds noResp, meta and the list property in the order of the tree path's object literals. */
function withFlagsAndMeta<T extends { noResp?: boolean; meta?: Meta }>(o: T, noResp: boolean, meta: Meta | undefined, listKey: string, list: unknown[]): T {
  if (noResp) o.noResp = true;
  if (meta) o.meta = meta;
  (o as Record<string, unknown>)[listKey] = list;
  return o;
}

/** Reads a whole message from a cursor (throws BAIL when the input leaves the fast subset). */
export function readMessage(c: ElementCursor): SyncMLMessage {
  if (c.root() !== SYNCML) bail();
  let hdr: SyncHdr | undefined;
  let body: Command[] | undefined;
  let final = false;
  for (let id = c.nextChild(); id !== CLOSED; id = c.nextChild()) {
    if (id === SYNCHDR) {
      if (hdr !== undefined) bail();
      hdr = readHdr(c);
    } else if (id === SYNCBODY) {
      if (body !== undefined) bail();
      body = [];
      for (let k = c.nextChild(); k !== CLOSED; k = c.nextChild()) {
        if (k === FINAL) {
          final = true;
          c.skip();
        } else if (isCommand(k)) body.push(readCommand(c, k));
        else bail();
      }
    } else c.skip();
  }
  c.end();
  if (hdr === undefined || body === undefined) bail();
  return { hdr, body, final };
}

// --- writer ---

function leafTo(s: ElementSink, id: number, v: string): void {
  if (typeof v !== 'string') bail();
  if (v === '') s.empty(id);
  else s.text(id, v);
}

function metaField(s: ElementSink, id: number, v: string | number | undefined): void {
  if (v === undefined) return;
  if (typeof v === 'string') leafTo(s, id, v);
  else if (typeof v === 'number') leafTo(s, id, String(v));
  else bail(); // String() of anything else is the tree path's business
}

function writeMeta(s: ElementSink, m: Meta | undefined): void {
  if (!m) return;
  const emi = m.emi;
  if (emi !== undefined && !Array.isArray(emi)) bail();
  if (
    m.format === undefined && m.type === undefined && m.mark === undefined && m.size === undefined && m.nextNonce === undefined &&
    m.version === undefined && m.maxMsgSize === undefined && m.maxObjSize === undefined && (emi === undefined || emi.length === 0)
  ) {
    s.empty(META);
    return;
  }
  s.open(META);
  metaField(s, M_FORMAT, m.format);
  metaField(s, M_TYPE, m.type);
  metaField(s, M_MARK, m.mark);
  metaField(s, M_SIZE, m.size);
  metaField(s, M_NEXTNONCE, m.nextNonce);
  metaField(s, M_VERSION, m.version);
  metaField(s, M_MAXMSGSIZE, m.maxMsgSize);
  metaField(s, M_MAXOBJSIZE, m.maxObjSize);
  if (emi !== undefined) for (let i = 0; i < emi.length; i++) metaField(s, M_EMI, emi[i]);
  s.close(META);
}

function writeLoc(s: ElementSink, id: number, r: LocRef | undefined): void {
  if (!r) return;
  s.open(id);
  leafTo(s, LOCURI, r.locURI);
  if (r.locName !== undefined) leafTo(s, LOCNAME, r.locName);
  s.close(id);
}

function writeItem(s: ElementSink, it: Item): void {
  const d = it.data;
  if (!it.target && !it.source && !it.targetParent && !it.sourceParent && !it.meta && d === undefined && !it.moreData) {
    s.empty(ITEM);
    return;
  }
  s.open(ITEM);
  writeLoc(s, TARGET, it.target);
  writeLoc(s, SOURCE, it.source);
  writeLoc(s, TARGETPARENT, it.targetParent);
  writeLoc(s, SOURCEPARENT, it.sourceParent);
  writeMeta(s, it.meta);
  if (d !== undefined) {
    if (typeof d === 'string') leafTo(s, DATA, d);
    else if (d instanceof Uint8Array) {
      if (d.byteLength > 0) s.bytes(DATA, d);
      else s.empty(DATA);
    } else bail();
  }
  if (it.moreData) s.empty(MOREDATA);
  s.close(ITEM);
}

function writeItems(s: ElementSink, items: Item[]): void {
  for (let i = 0; i < items.length; i++) writeItem(s, items[i]!);
}

function writeCred(s: ElementSink, c: Cred | undefined): void {
  if (!c) return;
  s.open(CRED);
  writeMeta(s, c.meta);
  leafTo(s, DATA, c.data);
  s.close(CRED);
}

function writeCommand(s: ElementSink, c: Command): void {
  switch (c.kind) {
    case 'Add':
    case 'Replace':
    case 'Copy':
    case 'Get':
    case 'Delete':
    case 'Exec':
    case 'Alert':
    case 'Atomic':
    case 'Sequence': {
      const id = c.kind === 'Add' ? ADD : c.kind === 'Replace' ? REPLACE : c.kind === 'Copy' ? COPY : c.kind === 'Get' ? GET
        : c.kind === 'Delete' ? DELETE : c.kind === 'Exec' ? EXEC : c.kind === 'Alert' ? ALERT : c.kind === 'Atomic' ? ATOMIC : SEQUENCE;
      s.open(id);
      leafTo(s, CMDID, c.cmdID);
      if (c.noResp) s.empty(NORESP);
      switch (c.kind) {
        case 'Get':
          if (c.lang !== undefined) leafTo(s, LANG, c.lang);
          writeMeta(s, c.meta);
          writeItems(s, c.items);
          break;
        case 'Delete':
          if (c.archive) s.empty(ARCHIVE);
          if (c.sftDel) s.empty(SFTDEL);
          writeMeta(s, c.meta);
          writeItems(s, c.items);
          break;
        case 'Exec':
          writeMeta(s, c.meta);
          if (c.correlator !== undefined) leafTo(s, CORRELATOR, c.correlator);
          writeItems(s, c.items);
          break;
        case 'Alert':
          if (c.data !== undefined) leafTo(s, DATA, c.data);
          if (c.correlator !== undefined) leafTo(s, CORRELATOR, c.correlator);
          writeItems(s, c.items);
          break;
        case 'Atomic':
        case 'Sequence':
          writeMeta(s, c.meta);
          for (let i = 0; i < c.commands.length; i++) writeCommand(s, c.commands[i]!);
          break;
        default:
          writeMeta(s, c.meta);
          writeItems(s, c.items);
      }
      s.close(id);
      return;
    }
    case 'Results':
      s.open(RESULTS);
      leafTo(s, CMDID, c.cmdID);
      if (c.msgRef !== undefined) leafTo(s, MSGREF, c.msgRef);
      leafTo(s, CMDREF, c.cmdRef);
      writeMeta(s, c.meta);
      if (c.targetRef !== undefined) leafTo(s, TARGETREF, c.targetRef);
      if (c.sourceRef !== undefined) leafTo(s, SOURCEREF, c.sourceRef);
      writeItems(s, c.items);
      s.close(RESULTS);
      return;
    case 'Status': {
      s.open(STATUS);
      leafTo(s, CMDID, c.cmdID);
      leafTo(s, MSGREF, c.msgRef);
      leafTo(s, CMDREF, c.cmdRef);
      leafTo(s, CMD, c.cmd);
      for (let i = 0; i < c.targetRefs.length; i++) leafTo(s, TARGETREF, c.targetRefs[i]!);
      for (let i = 0; i < c.sourceRefs.length; i++) leafTo(s, SOURCEREF, c.sourceRefs[i]!);
      writeCred(s, c.cred);
      if (c.chal) {
        if (c.chal.meta) {
          s.open(CHAL);
          writeMeta(s, c.chal.meta);
          s.close(CHAL);
        } else s.empty(CHAL);
      }
      leafTo(s, DATA, c.data);
      writeItems(s, c.items);
      s.close(STATUS);
      return;
    }
    case 'Unsupported': {
      // Only the SyncML command names (any other name goes the tree path: XML writes it as given,
      // WBXML refuses it).
      const id = Object.hasOwn(SYNCML_TAGS, c.name) ? SYNCML_TAGS[c.name]! : -1;
      if (id < 0 || !isCommand(id)) bail();
      s.open(id);
      leafTo(s, CMDID, c.cmdID);
      s.close(id);
      return;
    }
    default:
      bail();
  }
}

/** Writes a whole message into a sink, in the element order of messageToElement. */
export function writeMessage(s: ElementSink, m: SyncMLMessage): void {
  const h = m.hdr;
  s.open(SYNCML);
  s.open(SYNCHDR);
  leafTo(s, VERDTD, h.verDTD);
  leafTo(s, VERPROTO, h.verProto);
  leafTo(s, SESSIONID, h.sessionID);
  leafTo(s, MSGID, h.msgID);
  writeLoc(s, TARGET, h.target);
  writeLoc(s, SOURCE, h.source);
  if (h.respURI !== undefined) leafTo(s, RESPURI, h.respURI);
  if (h.noResp) s.empty(NORESP);
  writeCred(s, h.cred);
  writeMeta(s, h.meta);
  s.close(SYNCHDR);
  const body = m.body;
  if (body.length === 0 && !m.final) s.empty(SYNCBODY);
  else {
    s.open(SYNCBODY);
    for (let i = 0; i < body.length; i++) writeCommand(s, body[i]!);
    if (m.final) s.empty(FINAL);
    s.close(SYNCBODY);
  }
  s.close(SYNCML);
}

// ---------------------------------------------------------------------------------------------
// Entry points

/**
 * Decodes a message through the element tree only (the reference path; the direct path must give
 * the same result or the same error). Exported for the differential tests.
 */
export function decodeSyncMLViaTree(bytes: Uint8Array | string, encoding: Encoding, limits: DecodeLimits = DEFAULT_LIMITS): SyncMLMessage {
  if (encoding === 'xml') return elementToMessage(parseXml(bytes, limits));
  const b = typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes;
  return elementToMessage(parseWbxml(b, limits));
}

/** Encodes a message through the element tree only (the reference path). Exported for tests. */
export function encodeSyncMLViaTree(m: SyncMLMessage, encoding: Encoding): Uint8Array {
  const tree = messageToElement(m);
  return encoding === 'xml' ? Buffer.from(writeXml(tree), 'utf8') : writeWbxml(tree);
}

/**
 * Decodes a message straight from the wire into the model, or returns undefined when the input
 * leaves the direct reader's subset (including every malformed input). Exported for tests.
 */
export function decodeSyncMLDirect(bytes: Uint8Array | string, encoding: Encoding, limits: DecodeLimits = DEFAULT_LIMITS): SyncMLMessage | undefined {
  try {
    if (encoding === 'xml') return readMessage(new XmlCursor(bytes, limits));
    const b = typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes;
    if (!(b instanceof Uint8Array)) return undefined;
    return readMessage(new WbxmlCursor(b, limits));
  } catch {
    // BAIL, or anything the reference path must judge (it gives the reference error)
    return undefined;
  }
}

/** Encodes a message straight from the model, or returns undefined when the model is unusual. Exported for tests. */
export function encodeSyncMLDirect(m: SyncMLMessage, encoding: Encoding): Uint8Array | undefined {
  try {
    if (encoding === 'xml') {
      const w = new XmlWriter();
      writeMessage(w, m);
      return Buffer.from(w.out, 'utf8');
    }
    const w = new WbxmlWriter();
    writeMessage(w, m);
    return w.result();
  } catch {
    return undefined;
  }
}

/**
 * Decodes a message from the wire: directly into the model on the common path, through the element
 * tree (the reference, which also produces every error) otherwise.
 */
export function decodeSyncML(bytes: Uint8Array | string, encoding: Encoding, limits: DecodeLimits = DEFAULT_LIMITS): SyncMLMessage {
  return decodeSyncMLDirect(bytes, encoding, limits) ?? decodeSyncMLViaTree(bytes, encoding, limits);
}

/** Encodes a message for the wire (directly; through the element tree for unusual models). */
export function encodeSyncML(m: SyncMLMessage, encoding: Encoding): Uint8Array {
  return encodeSyncMLDirect(m, encoding) ?? encodeSyncMLViaTree(m, encoding);
}

/** Size in bytes of a message in the given encoding (used to respect MaxMsgSize). */
export function encodedSize(m: SyncMLMessage, encoding: Encoding): number {
  return encodeSyncML(m, encoding).byteLength;
}
