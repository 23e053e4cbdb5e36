/**
 * Maps the typed SyncML DM model to and from the generic element tree, and exposes the
 * encode/decode entry points for both wire encodings. Element order on output follows the
 * reference toolkit (notes §3.1); on input reorderings are accepted.
 */
import { CodecError } from '../errors.ts';
import { DEFAULT_LIMITS, el, elements, isElement, textOf, type DecodeLimits, type XElement, type XNode } from './element.ts';
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
import { parseWbxml, writeWbxml } from './wbxml.ts';
import { parseXml, writeXml } from './xml.ts';

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

/** Decodes a message from the wire. */
export function decodeSyncML(bytes: Uint8Array | string, encoding: Encoding, limits: DecodeLimits = DEFAULT_LIMITS): SyncMLMessage {
  if (encoding === 'xml') return elementToMessage(parseXml(bytes, limits));
  const b = typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes;
  return elementToMessage(parseWbxml(b, limits));
}

/** Encodes a message for the wire. */
export function encodeSyncML(m: SyncMLMessage, encoding: Encoding): Uint8Array {
  const tree = messageToElement(m);
  return encoding === 'xml' ? Buffer.from(writeXml(tree), 'utf8') : writeWbxml(tree);
}

/** Size in bytes of a message in the given encoding (used to respect MaxMsgSize). */
export function encodedSize(m: SyncMLMessage, encoding: Encoding): number {
  return encodeSyncML(m, encoding).byteLength;
}
