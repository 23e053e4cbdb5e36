/**
 * The generic document tree shared by the XML and WBXML codecs. The typed SyncML model is mapped
 * to and from this tree (src/codec/syncml.ts), so both encodings share one mapping and one set of
 * validation rules (the hot path maps the model without building the tree, through the cursor and
 * sink interfaces at the end of this file, with the same rules). Children keep document order, which SyncML needs (command order is meaningful
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

// ---------------------------------------------------------------------------------------------
// Direct (tree-less) codec interfaces. The SyncML mapping in syncml.ts reads a message straight
// from a cursor over the wire bytes and writes it straight into a sink, so the hot path builds no
// element tree. Elements are named by a small integer id: the SyncML code-page-0 token for SyncML
// elements, 0x40 | the code-page-1 token for MetInf elements (wbxml.ts has both tables), 0 for any
// other name. The tree-based path stays the reference: a cursor or sink that meets anything outside
// its fast subset throws BAIL, and the caller redoes the work on the element tree (same result, same
// errors).
// ---------------------------------------------------------------------------------------------

/** Thrown by the direct codec when input or model leaves its fast subset; never escapes the codec. */
export const BAIL: { readonly bail: true } = Object.freeze({ bail: true });

/** Throws BAIL. */
export function bail(): never {
  throw BAIL;
}

/** nextChild() result when the current element has ended (its end tag is consumed). */
export const CLOSED = -1;

/** Id of an element name the direct codec does not know. */
export const UNKNOWN_TAG = 0;

/** A forward-only reader over a SyncML document in either encoding, enforcing the decode limits. */
export interface ElementCursor {
  /** Reads the prolog and the root start tag; returns the root's id. */
  root(): number;
  /** Inside the element opened last: the id of the next child element (its start tag read), or CLOSED. */
  nextChild(): number;
  /** The text content of the element just opened, up to and including its end tag (raw, untrimmed). */
  leafText(): string;
  /** The content of a Data element just opened: text, or bytes (WBXML OPAQUE). */
  dataValue(): string | Uint8Array;
  /** Skips the element just opened, content and end tag, still checking it. */
  skip(): void;
  /** After the root has closed: checks that nothing but blanks/comments (XML) or nothing (WBXML) follows. */
  end(): void;
}

/** A writer of a SyncML document in either encoding, fed in document order by the SyncML mapping. */
export interface ElementSink {
  /** Start tag of an element with content. */
  open(id: number): void;
  /** End tag of the element opened last. */
  close(id: number): void;
  /** An element without content. */
  empty(id: number): void;
  /** A whole leaf element with non-empty text. */
  text(id: number, s: string): void;
  /** A whole leaf element with non-empty bytes (XML: base64; WBXML: OPAQUE). */
  bytes(id: number, b: Uint8Array): void;
}
