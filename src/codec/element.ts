/**
 * The generic document tree shared by the XML and WBXML codecs. The typed SyncML model is mapped
 * to and from this tree (src/codec/syncml.ts), so both encodings share one mapping and one set of
 * validation rules. Children keep document order, which SyncML needs (command order is meaningful
 * inside Sequence, and Status must reference commands in order).
 */

/** A namespace an element belongs to; decides the WBXML code page and the XML xmlns attribute. */
export type Namespace = 'syncml' | 'metinf' | 'ddf';

/** One element: name, namespace, and ordered children (elements, text, or opaque bytes from WBXML). */
export interface XElement {
  name: string;
  ns: Namespace;
  children: XNode[];
}

/** A child of an element. */
export type XNode = XElement | string | Uint8Array;

/** Limits applied to untrusted input by both decoders. */
export interface DecodeLimits {
  /** Largest accepted message in bytes (413 beyond it). */
  maxBytes: number;
  /** Deepest accepted element nesting. */
  maxDepth: number;
  /** Most elements accepted in one message. */
  maxElements: number;
}

/** Defaults sized for DM traffic: far above any real message, far below what could exhaust memory. */
export const DEFAULT_LIMITS: DecodeLimits = { maxBytes: 4 * 1024 * 1024, maxDepth: 64, maxElements: 200_000 };

/** Creates an element. */
export function el(name: string, children: XNode[] = [], ns: Namespace = 'syncml'): XElement {
  return { name, ns, children };
}

/** True when the node is an element. */
export function isElement(n: XNode | undefined): n is XElement {
  return typeof n === 'object' && n !== null && !(n instanceof Uint8Array);
}

/** The element children of an element. */
export function elements(e: XElement): XElement[] {
  return e.children.filter(isElement);
}

/** The text content of a leaf element: concatenated strings (opaque bytes decoded as UTF-8). */
export function textOf(e: XElement): string {
  let s = '';
  for (const c of e.children) {
    if (typeof c === 'string') s += c;
    else if (c instanceof Uint8Array) s += Buffer.from(c).toString('utf8');
  }
  return s;
}

/** Namespace of MetInf elements in XML (SyncML Meta Information DTD). */
export const METINF_NS = 'syncml:metinf';
/** Namespace of the SyncML 1.2 root element. */
export const SYNCML12_NS = 'SYNCML:SYNCML1.2';
/** Namespace of the DM DDF/TNDS elements. */
export const DDF_NS = 'syncml:dmddf1.2';
