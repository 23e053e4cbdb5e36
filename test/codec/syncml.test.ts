/**
 * SyncML message codec tests (src/codec/syncml.ts): typed SyncMLMessage <-> XML / WBXML.
 *
 *  - property-based round trips over whole typed messages in both encodings, and idempotence of
 *    encode(decode(x)) for encoder output;
 *  - the Debian libwbxml tools as an independent oracle at message level, both directions, with
 *    realistic DM packages (P1, P2, P3, 1222 multi-message, MoreData chunks, Generic Alert 1226) and
 *    random messages;
 *  - element order: the encoder writes the order of omadm.md §3.1, the decoder accepts reorderings;
 *  - structural errors and their SyncML statuses, Unsupported commands, decodeHeaderOnly,
 *    encodingOfContentType, and a fuzz asserting that only CodecError (with a status) escapes.
 *
 * Canonical messages: decode(encode(m)) can only give back what the wire keeps, so generated values
 * are canonical: no undefined keys; flags (noResp, archive, sftDel, moreData) are `true` or absent;
 * leaf texts (CmdID, LocURI, Alert/Status Data, Meta values...) carry no leading/trailing white
 * space (the decoder trims them; Item Data is kept exactly); numbers where the model has numbers
 * (Meta Size/MaxMsgSize/MaxObjSize); non-empty EMI lists and Items where a command needs them. Item
 * Data is unicode text (with & < > CR LF, tabs, astral characters); bytes only for WBXML, with Meta
 * Format bin (XML carries bytes as base64 text, and WBXML OPAQUE without a binary format decodes as
 * text). NUL is left out of generated text (STR_I cannot hold it; it travels as OPAQUE, tested apart).
 *
 * libwbxml behaviour that the oracle tests account for (see test/codec/wbxml.test.ts for the tree
 * level; observed with libwbxml 0.11.8):
 *   A. our WBXML -> wbxml2xml: the text of a Data under Add/Replace (Item/Data) is written as a raw
 *      CDATA section, so it must not contain "]]>"; other text is escaped. wbxml2xml keeps CR raw and
 *      parseXml does not normalise line ends, so CR survives. OPAQUE is written raw, so binary Data
 *      cannot take this path. The DOCTYPE wbxml2xml writes is stripped (parseXml refuses DTDs).
 *   B. our XML -> xml2wbxml -k -n -v 1.2: Add/Replace Item Data becomes OPAQUE with every LF turned
 *      into CR LF; decodeSyncML reads that OPAQUE back as text unless the Item (or command) Meta
 *      Format is bin/b64, in which case it stays bytes. libwbxmlView() models exactly this. Meta
 *      Types that trigger other libwbxml rules (text/clear, text/x-vcard, ..., and the devinf/tnds
 *      +xml types it rewrites to +wbxml) are not generated. expat reads XML 1.0, so oracle text is
 *      made of XML 1.0 characters only (CR travels as &#13;).
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { FUZZ_RUNS, FUZZ_TIMEOUT_MS, reportFuzz } from '../support/fast-check-setup.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS, el, isElement, type XElement, type XNode } from '../../src/codec/element.ts';
import type {
  AlertCommand,
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
  OperationCommand,
  ResultsCommand,
  StatusCommand,
  SyncHdr,
  SyncMLMessage,
  UnsupportedCommand,
} from '../../src/codec/model.ts';
import {
  CONTENT_TYPES,
  decodeHeaderOnly,
  decodeSyncML,
  decodeSyncMLDirect,
  decodeSyncMLViaTree,
  encodeSyncML,
  encodeSyncMLDirect,
  encodeSyncMLViaTree,
  encodedSize,
  encodingOfContentType,
  messageToElement,
} from '../../src/codec/syncml.ts';
import { writeWbxml } from '../../src/codec/wbxml.ts';
import { parseXml, writeXml } from '../../src/codec/xml.ts';
import { CodecError } from '../../src/errors.ts';
import { libwbxml } from '../support/libwbxml.ts';

const utf8 = new TextEncoder();
const str = (b: Uint8Array): string => Buffer.from(b).toString('utf8');
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

// ----------------------------------------------------------------------------------------------
// Realistic DM packages
// ----------------------------------------------------------------------------------------------

const SERVER = 'http://dms.example.com/dm';
const DEVICE = 'IMEI:493005100592800';

function hdr(msgID: string, from: 'client' | 'server', extra: Partial<SyncHdr> = {}): SyncHdr {
  return {
    verDTD: '1.2',
    verProto: 'DM/1.2',
    sessionID: '1A2B',
    msgID,
    target: { locURI: from === 'client' ? SERVER : DEVICE },
    source: from === 'client' ? { locURI: DEVICE, locName: 'dev1' } : { locURI: SERVER },
    ...extra,
  };
}

const status = (cmdID: string, msgRef: string, cmdRef: string, cmd: string, data: string, extra: Partial<StatusCommand> = {}): StatusCommand => ({
  kind: 'Status',
  cmdID,
  msgRef,
  cmdRef,
  cmd,
  targetRefs: [],
  sourceRefs: [],
  data,
  items: [],
  ...extra,
});

/** P1: client-initiated session, MD5 Cred, MaxMsgSize/MaxObjSize, Alert 1201, DevInfo Replace. */
const p1 = (): SyncMLMessage => ({
  hdr: hdr('1', 'client', {
    cred: { meta: { format: 'b64', type: 'syncml:auth-md5' }, data: 'Zz6EivR3yeaaENcRN6lpAQ==' },
    meta: { maxMsgSize: 16384, maxObjSize: 65536 },
  }),
  body: [
    { kind: 'Alert', cmdID: '1', data: '1201', items: [] },
    {
      kind: 'Replace',
      cmdID: '2',
      items: [
        { source: { locURI: './DevInfo/DevId' }, meta: { format: 'chr', type: 'text/plain' }, data: DEVICE },
        { source: { locURI: './DevInfo/Man' }, meta: { format: 'chr' }, data: 'Example Corp & Söhne <GmbH>' },
        { source: { locURI: './DevInfo/Mod' }, data: 'Lamp 2000 “Ünïcödé” 中文 😀' },
        { source: { locURI: './DevInfo/DmV' }, data: '1.2' },
        { source: { locURI: './DevInfo/Lang' }, data: 'en-US' },
      ],
    },
  ],
  final: true,
});

/** P2: header status with a challenge, statuses, and Get/Replace/Add/Exec/Delete/Copy/Atomic/Sequence. */
const p2 = (): SyncMLMessage => ({
  hdr: hdr('1', 'server', { respURI: `${SERVER}?s=1A2B&sig=<x>`, meta: { maxMsgSize: 16384 } }),
  body: [
    status('1', '1', '0', 'SyncHdr', '401', {
      targetRefs: [SERVER],
      sourceRefs: [DEVICE],
      chal: { meta: { format: 'b64', type: 'syncml:auth-md5', nextNonce: 'LG3iZQhhdmKNHg==' } },
    }),
    status('2', '1', '1', 'Alert', '200'),
    status('3', '1', '2', 'Replace', '200'),
    { kind: 'Get', cmdID: '4', items: [{ target: { locURI: './DevDetail/SwV' } }, { target: { locURI: './DevInfo/Mod' } }] },
    { kind: 'Get', cmdID: '5', items: [{ target: { locURI: './Vendor?list=Struct' } }] },
    {
      kind: 'Replace',
      cmdID: '6',
      meta: { format: 'chr', type: 'text/plain' },
      items: [{ target: { locURI: './Vendor/Name' }, data: 'kitchen & <lamp> "2"\nsecond line\twith tab' }],
    },
    {
      kind: 'Add',
      cmdID: '7',
      items: [
        { target: { locURI: './Vendor/App' }, meta: { format: 'node' } },
        { target: { locURI: './Vendor/App/Level' }, meta: { format: 'int', type: 'text/plain' }, data: '42' },
      ],
    },
    { kind: 'Exec', cmdID: '8', correlator: 'fumo-0001', items: [{ target: { locURI: './FUMO/Pkg1/Update' }, data: '' }] },
    { kind: 'Delete', cmdID: '9', items: [{ target: { locURI: './Vendor/Old' } }] },
    { kind: 'Copy', cmdID: '10', items: [{ target: { locURI: './Vendor/Name2' }, source: { locURI: './Vendor/Name' } }] },
    {
      kind: 'Atomic',
      cmdID: '11',
      commands: [
        { kind: 'Replace', cmdID: '12', items: [{ target: { locURI: './Vendor/Temp' }, meta: { format: 'float' }, data: '21.5' }] },
        { kind: 'Add', cmdID: '13', items: [{ target: { locURI: './Vendor/On' }, meta: { format: 'bool' }, data: 'true' }] },
      ],
    },
    {
      kind: 'Sequence',
      cmdID: '14',
      commands: [
        { kind: 'Alert', cmdID: '15', data: '1101', items: [{ data: 'MINDT=10&MAXDT=30&DR=1' }, { data: 'Install the update now?' }] },
        { kind: 'Exec', cmdID: '16', items: [{ target: { locURI: './Ops/Reboot' } }] },
      ],
    },
  ],
  final: true,
});

/** P3: statuses for every P2 command and Results for the Gets. */
const p3 = (): SyncMLMessage => ({
  hdr: hdr('2', 'client'),
  body: [
    status('1', '1', '0', 'SyncHdr', '212', { targetRefs: [DEVICE], sourceRefs: [SERVER] }),
    status('2', '1', '4', 'Get', '200', { targetRefs: ['./DevDetail/SwV', './DevInfo/Mod'] }),
    {
      kind: 'Results',
      cmdID: '3',
      msgRef: '1',
      cmdRef: '4',
      items: [
        { source: { locURI: './DevDetail/SwV' }, meta: { format: 'chr', type: 'text/plain' }, data: '4.2.1-rc1' },
        { source: { locURI: './DevInfo/Mod' }, meta: { format: 'chr', type: 'text/plain' }, data: 'Lamp 2000 & <friends>' },
      ],
    },
    status('4', '1', '5', 'Get', '200', { targetRefs: ['./Vendor?list=Struct'] }),
    {
      kind: 'Results',
      cmdID: '5',
      msgRef: '1',
      cmdRef: '5',
      meta: { format: 'node' },
      targetRef: './Vendor?list=Struct',
      items: [{ source: { locURI: './Vendor' }, data: 'App/Name/Temp/On' }],
    },
    status('6', '1', '6', 'Replace', '200', { targetRefs: ['./Vendor/Name'] }),
    status('7', '1', '7', 'Add', '418', { targetRefs: ['./Vendor/App'] }),
    status('8', '1', '8', 'Exec', '202', { targetRefs: ['./FUMO/Pkg1/Update'] }),
    status('9', '1', '9', 'Delete', '404'),
    status('10', '1', '10', 'Copy', '200', { targetRefs: ['./Vendor/Name2'], sourceRefs: ['./Vendor/Name'] }),
    status('11', '1', '11', 'Atomic', '200'),
    status('12', '1', '14', 'Sequence', '200'),
    status('13', '1', '15', 'Alert', '200', { items: [{ data: 'typed text: 1 < 2 & 3 > 2' }] }),
    status('14', '1', '16', 'Exec', '215'),
  ],
  final: true,
});

/** A "next message" exchange: server Status + Alert 1222, no Final; the client answers with 1222. */
const alert1222Server = (): SyncMLMessage => ({
  hdr: hdr('3', 'server'),
  body: [
    status('1', '3', '0', 'SyncHdr', '200', { targetRefs: [SERVER], sourceRefs: [DEVICE] }),
    { kind: 'Alert', cmdID: '2', data: '1222', items: [{ target: { locURI: DEVICE }, source: { locURI: SERVER } }] },
  ],
  final: false,
});
const alert1222Client = (): SyncMLMessage => ({
  hdr: hdr('4', 'client', { meta: { maxMsgSize: 4096 } }),
  body: [
    status('1', '3', '0', 'SyncHdr', '200', { targetRefs: [DEVICE], sourceRefs: [SERVER] }),
    status('2', '3', '2', 'Alert', '200'),
    { kind: 'Alert', cmdID: '3', data: '1222', items: [{ target: { locURI: SERVER }, source: { locURI: DEVICE } }] },
  ],
  final: false,
});

const B64_CHUNK = Buffer.from(Array.from({ length: 150 }, (_, i) => (i * 37) % 256)).toString('base64');

/** Large object: a Results chunk with Meta Size and MoreData (client), and a Replace chunk (server). */
const moreDataResults = (): SyncMLMessage => ({
  hdr: hdr('5', 'client', { meta: { maxMsgSize: 2048, maxObjSize: 1048576 } }),
  body: [
    status('1', '4', '0', 'SyncHdr', '200', { targetRefs: [DEVICE], sourceRefs: [SERVER] }),
    {
      kind: 'Results',
      cmdID: '2',
      msgRef: '2',
      cmdRef: '7',
      items: [
        {
          source: { locURI: './Vendor/Log' },
          meta: { format: 'b64', type: 'application/octet-stream', size: 4096 },
          data: B64_CHUNK,
          moreData: true,
        },
      ],
    },
  ],
  final: false,
});
const moreDataReplace = (): SyncMLMessage => ({
  hdr: hdr('6', 'server'),
  body: [
    status('1', '5', '0', 'SyncHdr', '200', { targetRefs: [SERVER], sourceRefs: [DEVICE] }),
    status('2', '5', '2', 'Results', '213'),
    {
      kind: 'Replace',
      cmdID: '3',
      meta: { format: 'chr', type: 'text/plain' },
      items: [{ target: { locURI: './Vendor/Motd' }, meta: { size: 1200 }, data: 'chunk 1 of 3: Grüße & <hello>\n'.repeat(8), moreData: true }],
    },
  ],
  final: false,
});

/** Generic Alert 1226 (notes §3.9): Correlator echoed from an Exec, Items with Type/Format/Mark. */
const genericAlert = (): SyncMLMessage => ({
  hdr: hdr('1', 'client', { sessionID: '2F' }),
  body: [
    { kind: 'Alert', cmdID: '1', data: '1226', correlator: 'fumo-0001', items: [
      {
        source: { locURI: './FUMO/Pkg1' },
        meta: { type: 'org.openmobilealliance.dm.firmwareupdate.devicerequest', format: 'chr', mark: 'critical' },
        data: '200',
      },
      {
        source: { locURI: './Vendor/Sensors/T1' },
        meta: { type: 'Reversed-Domain-Name: com.example.lamp.overheat', format: 'int', mark: 'warning' },
        data: '97',
      },
    ] },
    { kind: 'Alert', cmdID: '2', data: '1201', items: [] },
  ],
  final: true,
});

const PACKAGES: [string, () => SyncMLMessage][] = [
  ['P1: Alert 1201 + DevInfo Replace, MD5 Cred', p1],
  ['P2: Status+Chal, Get/Replace/Add/Exec/Delete/Copy/Atomic/Sequence', p2],
  ['P3: Statuses and Results', p3],
  ['server next-message reply: Status + Alert 1222, no Final', alert1222Server],
  ['client 1222 in a multi-message package', alert1222Client],
  ['MoreData: Results chunk with Meta Size (b64)', moreDataResults],
  ['MoreData: Replace chunk', moreDataReplace],
  ['Generic Alert 1226 with Correlator and Mark', genericAlert],
];

// ----------------------------------------------------------------------------------------------
// Arbitraries
// ----------------------------------------------------------------------------------------------

interface GenOptions {
  /** Item Data may be bytes (WBXML only), always with Meta Format bin. */
  bytes: boolean;
  /** Text limited to what the libwbxml tools carry faithfully (see header comment). */
  oracle: boolean;
}

/** XML 1.0 characters (what expat reads), NUL excluded. */
const XML10_CHARS = /^[\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]*$/u;

const codePoint = fc.string({ unit: 'binary', minLength: 1, maxLength: 1 });
const SPECIAL_TEXT = ['&', '<', '>', '\r', '\n', '\r\n', '\t', ' ', '"', "'", ']]>', '&amp;', '&#13;', '<![CDATA[x]]>', 'é', '中', '😀', '\u00a0', '\uFEFF'];

/** Unicode text rich in markup characters, CR/LF and astral characters; never NUL. */
const textArb = (o: GenOptions, maxLength = 16): fc.Arbitrary<string> => {
  const unit = fc.oneof(
    { weight: 4, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }) },
    { weight: 2, arbitrary: fc.constantFrom(...SPECIAL_TEXT) },
    { weight: 1, arbitrary: codePoint },
  );
  return fc
    .string({ unit, maxLength })
    .filter((t) => !t.includes('\u0000') && (!o.oracle || (XML10_CHARS.test(t) && !t.includes(']]>'))));
};

/** A leaf text as the decoder returns it: trimmed. */
const leafArb = (o: GenOptions): fc.Arbitrary<string> =>
  fc.oneof({ weight: 2, arbitrary: fc.nat({ max: 99999 }).map(String) }, { weight: 3, arbitrary: textArb(o, 12).map((t) => t.trim()) });

const uriArb = (o: GenOptions): fc.Arbitrary<string> =>
  fc.oneof(
    fc.constantFrom('./DevInfo/Mod', './Vendor/A&B', './Vendor?list=Struct', `${SERVER}?a=1&b=<2>`, DEVICE, './FUMO/Pkg1/Update', ''),
    leafArb(o),
  );

const locArb = (o: GenOptions): fc.Arbitrary<LocRef> => fc.record({ locURI: uriArb(o), locName: leafArb(o) }, { noNullPrototype: true, requiredKeys: ['locURI'] });

const numArb = fc.oneof(fc.nat(), fc.constantFrom(0, 16384, 65536, 2 ** 32, 9_999_999_999));

const FORMATS = ['chr', 'int', 'bool', 'b64', 'bin', 'node', 'null', 'xml', 'date', 'time', 'float'];
const TYPES = ['text/plain', 'application/octet-stream', 'syncml:auth-md5', 'syncml:auth-basic', 'org.openmobilealliance.dm.firmwareupdate.devicerequest', 'Reversed-Domain-Name: com.example'];
const MARKS = ['fatal', 'critical', 'minor', 'warning', 'informational', 'harmless', 'indeterminate'];

const metaArb = (o: GenOptions): fc.Arbitrary<Meta> =>
  fc.record(
    {
      format: fc.oneof(fc.constantFrom(...FORMATS), leafArb(o)),
      type: fc.oneof(fc.constantFrom(...TYPES), leafArb(o)),
      mark: fc.constantFrom(...MARKS),
      size: numArb,
      nextNonce: fc.oneof(fc.base64String({ maxLength: 24 }), leafArb(o)),
      version: leafArb(o),
      maxMsgSize: numArb,
      maxObjSize: numArb,
      emi: fc.array(leafArb(o), { minLength: 1, maxLength: 2 }),
    },
    { noNullPrototype: true, requiredKeys: [] },
  );

const dataArb = (o: GenOptions): fc.Arbitrary<DataValue> =>
  o.bytes ? fc.oneof({ weight: 3, arbitrary: textArb(o, 24) }, { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 24 }) }) : textArb(o, 24);

const itemArb = (o: GenOptions): fc.Arbitrary<Item> =>
  fc
    .record(
      {
        target: locArb(o),
        source: locArb(o),
        targetParent: locArb(o),
        sourceParent: locArb(o),
        meta: metaArb(o),
        data: dataArb(o),
        moreData: fc.constant(true as const),
      },
      { noNullPrototype: true, requiredKeys: [] },
    )
    // Bytes come back as bytes only when the Item declares a binary format.
    .map((it): Item => (it.data instanceof Uint8Array ? { ...it, meta: { ...it.meta, format: 'bin' } } : it));

const items = (o: GenOptions, minLength: number): fc.Arbitrary<Item[]> => fc.array(itemArb(o), { minLength, maxLength: 3 });
const yes = fc.constant(true as const);

function commandArbs(o: GenOptions): { operation: fc.Arbitrary<OperationCommand>; command: fc.Arbitrary<Command> } {
  const cmdID = leafArb(o);
  const itemCommand: fc.Arbitrary<ItemCommand> = fc.record(
    { kind: fc.constantFrom('Add' as const, 'Replace' as const, 'Copy' as const), cmdID, noResp: yes, meta: metaArb(o), items: items(o, 1) },
    { noNullPrototype: true, requiredKeys: ['kind', 'cmdID', 'items'] },
  );
  const get: fc.Arbitrary<GetCommand> = fc.record(
    { kind: fc.constant('Get' as const), cmdID, noResp: yes, lang: leafArb(o), meta: metaArb(o), items: items(o, 1) },
    { noNullPrototype: true, requiredKeys: ['kind', 'cmdID', 'items'] },
  );
  const del: fc.Arbitrary<DeleteCommand> = fc.record(
    { kind: fc.constant('Delete' as const), cmdID, noResp: yes, archive: yes, sftDel: yes, meta: metaArb(o), items: items(o, 1) },
    { noNullPrototype: true, requiredKeys: ['kind', 'cmdID', 'items'] },
  );
  const exec: fc.Arbitrary<ExecCommand> = fc.record(
    { kind: fc.constant('Exec' as const), cmdID, noResp: yes, meta: metaArb(o), correlator: leafArb(o), items: items(o, 1) },
    { noNullPrototype: true, requiredKeys: ['kind', 'cmdID', 'items'] },
  );
  const alert: fc.Arbitrary<AlertCommand> = fc.record(
    {
      kind: fc.constant('Alert' as const),
      cmdID,
      noResp: yes,
      data: fc.oneof(fc.constantFrom('1100', '1101', '1200', '1201', '1222', '1223', '1226'), leafArb(o)),
      correlator: leafArb(o),
      items: items(o, 0),
    },
    { noNullPrototype: true, requiredKeys: ['kind', 'cmdID', 'items'] },
  );
  const { operation } = fc.letrec<{ operation: OperationCommand; container: ContainerCommand }>((tie) => ({
    operation: fc.oneof({ maxDepth: 3, depthIdentifier: 'container' }, itemCommand, get, del, exec, alert, tie('container')),
    container: fc.record(
      {
        kind: fc.constantFrom('Atomic' as const, 'Sequence' as const),
        cmdID,
        noResp: yes,
        meta: metaArb(o),
        commands: fc.array(tie('operation'), { maxLength: 3 }),
      },
      { noNullPrototype: true, requiredKeys: ['kind', 'cmdID', 'commands'] },
    ),
  }));
  const results: fc.Arbitrary<ResultsCommand> = fc.record(
    {
      kind: fc.constant('Results' as const),
      cmdID,
      msgRef: leafArb(o),
      cmdRef: leafArb(o),
      meta: metaArb(o),
      targetRef: uriArb(o),
      sourceRef: uriArb(o),
      items: items(o, 0),
    },
    { noNullPrototype: true, requiredKeys: ['kind', 'cmdID', 'cmdRef', 'items'] },
  );
  const credArb: fc.Arbitrary<Cred> = fc.record({ meta: metaArb(o), data: fc.oneof(fc.base64String({ maxLength: 24 }), leafArb(o)) }, { noNullPrototype: true, requiredKeys: ['data'] });
  const statusArb: fc.Arbitrary<StatusCommand> = fc.record(
    {
      kind: fc.constant('Status' as const),
      cmdID,
      msgRef: leafArb(o),
      cmdRef: leafArb(o),
      cmd: fc.oneof(fc.constantFrom('SyncHdr', 'Alert', 'Get', 'Replace', 'Add', 'Exec', 'Atomic', 'Sequence', 'Results'), leafArb(o)),
      targetRefs: fc.array(uriArb(o), { maxLength: 2 }),
      sourceRefs: fc.array(uriArb(o), { maxLength: 2 }),
      cred: credArb,
      chal: fc.record({ meta: metaArb(o) }, { noNullPrototype: true }),
      data: fc.oneof(fc.constantFrom('200', '212', '213', '401', '407', '418'), leafArb(o)),
      items: items(o, 0),
    },
    { noNullPrototype: true, requiredKeys: ['kind', 'cmdID', 'msgRef', 'cmdRef', 'cmd', 'targetRefs', 'sourceRefs', 'data', 'items'] },
  );
  const unsupported: fc.Arbitrary<UnsupportedCommand> = fc.record({
    kind: fc.constant('Unsupported' as const),
    name: fc.constantFrom('Sync', 'Map', 'Put', 'Search', 'Move'),
    cmdID,
  }, { noNullPrototype: true });
  const command = fc.oneof(
    { weight: 6, arbitrary: operation as fc.Arbitrary<Command> },
    { weight: 2, arbitrary: results },
    { weight: 3, arbitrary: statusArb },
    { weight: 1, arbitrary: unsupported },
  );
  return { operation, command };
}

const messageArb = (o: GenOptions): fc.Arbitrary<SyncMLMessage> => {
  const { command } = commandArbs(o);
  const hdrArb: fc.Arbitrary<SyncHdr> = fc.record(
    {
      verDTD: fc.oneof(fc.constantFrom('1.2', '1.1'), leafArb(o)),
      verProto: fc.oneof(fc.constantFrom('DM/1.2', 'DM/1.3'), leafArb(o)),
      sessionID: leafArb(o),
      msgID: leafArb(o),
      target: locArb(o),
      source: locArb(o),
      respURI: uriArb(o),
      noResp: yes,
      cred: fc.record({ meta: metaArb(o), data: fc.oneof(fc.base64String({ maxLength: 24 }), leafArb(o)) }, { noNullPrototype: true, requiredKeys: ['data'] }),
      meta: metaArb(o),
    },
    { noNullPrototype: true, requiredKeys: ['verDTD', 'verProto', 'sessionID', 'msgID', 'target', 'source'] },
  );
  return fc.record({ hdr: hdrArb, body: fc.array(command, { maxLength: 6 }), final: fc.boolean() }, { noNullPrototype: true });
};

const XML_GEN: GenOptions = { bytes: false, oracle: false };
const WBXML_GEN: GenOptions = { bytes: true, oracle: false };
const ORACLE_GEN: GenOptions = { bytes: false, oracle: true };
const xmlMessageArb = messageArb(XML_GEN);
const wbxmlMessageArb = messageArb(WBXML_GEN);
const oracleMessageArb = messageArb(ORACLE_GEN);
const GEN_FOR: Record<Encoding, fc.Arbitrary<SyncMLMessage>> = { xml: xmlMessageArb, wbxml: wbxmlMessageArb };

/**
 * Loose messages, not canonical: untrimmed leaves, false flags, empty EMI lists, bytes anywhere
 * (also in XML), NUL in text. One decode brings them to canonical form.
 */
const looseMessageArb: fc.Arbitrary<SyncMLMessage> = wbxmlMessageArb.chain((m) =>
  fc
    .record({
      pad: fc.constantFrom('', ' ', '\t', '\n ', '\u00a0'),
      flag: fc.boolean(),
      bytes: fc.uint8Array({ maxLength: 8 }),
      nul: fc.constantFrom('a\u0000b', '\u0000', 'x'),
    })
    .map(({ pad, flag, bytes, nul }): SyncMLMessage => {
      const loosenItem = (it: Item): Item => ({ ...it, data: it.data ?? (flag ? bytes : nul), moreData: it.moreData ?? false, meta: { ...it.meta, emi: [] } });
      const loosen = (c: Command): Command => {
        switch (c.kind) {
          case 'Atomic':
          case 'Sequence':
            return { ...c, cmdID: pad + c.cmdID + pad, noResp: c.noResp ?? false, commands: c.commands.map((x) => loosen(x) as OperationCommand) };
          case 'Unsupported':
            return { ...c, cmdID: pad + c.cmdID };
          case 'Status':
            return { ...c, data: pad + c.data + nul, items: c.items.map(loosenItem) };
          case 'Results':
            return { ...c, cmdRef: c.cmdRef + pad, items: c.items.map(loosenItem) };
          default:
            return { ...c, cmdID: pad + c.cmdID, noResp: c.noResp ?? flag, items: c.items.map(loosenItem) };
        }
      };
      return { ...m, hdr: { ...m.hdr, sessionID: pad + m.hdr.sessionID + pad, noResp: m.hdr.noResp ?? false }, body: m.body.map(loosen) };
    }),
);

// ----------------------------------------------------------------------------------------------
// Helpers
// ----------------------------------------------------------------------------------------------

function codecErrorOf(fn: () => unknown): CodecError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CodecError);
    return e as CodecError;
  }
  throw new Error('expected a CodecError, but nothing was thrown');
}
function expectCodecError(fn: () => unknown, code: string, status = 400): CodecError {
  const e = codecErrorOf(fn);
  expect({ code: e.code, status: e.status }).toEqual({ code, status });
  return e;
}

/** Decodes, or throws only a CodecError with a CODEC_ code and a numeric 400/412/413 status. */
function decodeOrCodecError(input: Uint8Array | string, encoding: Encoding): SyncMLMessage | undefined {
  try {
    return decodeSyncML(input, encoding);
  } catch (e) {
    if (!(e instanceof CodecError)) throw e;
    if (!/^CODEC_/.test(e.code) || typeof e.status !== 'number' || ![400, 412, 413].includes(e.status)) throw e;
    return undefined;
  }
}

const xmlOf = (m: SyncMLMessage): string => str(encodeSyncML(m, 'xml'));

/** Wraps a SyncBody's inner XML into a full message with a fixed header. */
const HDR_XML =
  '<SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>1</SessionID><MsgID>1</MsgID>' +
  `<Target><LocURI>${SERVER}</LocURI></Target><Source><LocURI>${DEVICE}</LocURI></Source></SyncHdr>`;
const withBody = (body: string, header = HDR_XML): string => `<SyncML xmlns="SYNCML:SYNCML1.2">${header}<SyncBody>${body}</SyncBody></SyncML>`;
const HDR_MODEL: SyncHdr = { verDTD: '1.2', verProto: 'DM/1.2', sessionID: '1', msgID: '1', target: { locURI: SERVER }, source: { locURI: DEVICE } };

/** A deterministic PRNG (mulberry32) for shuffles driven by an fc-generated seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const COMMAND_NAMES = new Set(['Add', 'Replace', 'Copy', 'Get', 'Delete', 'Exec', 'Alert', 'Atomic', 'Sequence', 'Results', 'Status', 'Sync', 'Map', 'Put', 'Search', 'Move']);
const CONTAINERS = new Set(['SyncBody', 'Atomic', 'Sequence']);

/**
 * Permutes the children of every element at random, keeping only the order that carries meaning:
 * commands inside SyncBody/Atomic/Sequence, and same-named siblings (Items, TargetRefs, EMIs).
 */
function shuffleTree(e: XElement, rnd: () => number): XElement {
  const kids = e.children.map((c) => (isElement(c) ? shuffleTree(c, rnd) : c));
  if (!kids.some(isElement)) return { ...e, children: kids };
  const group = (c: XNode): string => (isElement(c) ? (CONTAINERS.has(e.name) && COMMAND_NAMES.has(c.name) ? '#command' : c.name) : '#text');
  const perm = kids.map((_, i) => i);
  for (let i = perm.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [perm[i], perm[j]] = [perm[j]!, perm[i]!];
  }
  // Slots in the permuted order are refilled with each group's members in their original order.
  const queues = new Map<string, XNode[]>();
  for (const c of kids) {
    const g = group(c);
    if (!queues.has(g)) queues.set(g, []);
    queues.get(g)!.push(c);
  }
  const out = perm.map((i) => queues.get(group(kids[i]!))!.shift()!);
  return { ...e, children: out };
}

/**
 * The message decodeSyncML gives for the WBXML that xml2wbxml makes of encodeSyncML(m, 'xml')
 * (libwbxml behaviour B in the header comment).
 */
function libwbxmlView(m: SyncMLMessage): SyncMLMessage {
  const binary = new Set(['bin', 'b64']);
  const viewCmd = (c: Command): Command => {
    if (c.kind === 'Atomic' || c.kind === 'Sequence') return { ...c, commands: c.commands.map((x) => viewCmd(x) as OperationCommand) };
    if (c.kind !== 'Add' && c.kind !== 'Replace') return c;
    return {
      ...c,
      items: c.items.map((it) => {
        if (typeof it.data !== 'string' || it.data === '') return it;
        const text = it.data.replace(/\n/g, '\r\n');
        const format = it.meta?.format ?? c.meta?.format;
        return { ...it, data: format !== undefined && binary.has(format) ? utf8.encode(text) : text };
      }),
    };
  };
  return { ...m, body: m.body.map(viewCmd) };
}

// ----------------------------------------------------------------------------------------------
// Oracle plumbing (as in wbxml.test.ts)
// ----------------------------------------------------------------------------------------------

let workDir = '';
let fileNo = 0;
beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'gwmo-syncml-'));
});
afterAll(async () => {
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

/** Runs a libwbxml tool in this file's work directory. */
const tool = (cmd: 'xml2wbxml' | 'wbxml2xml', args: string[]): Promise<void> => libwbxml(cmd, args, workDir);

/** Our WBXML -> wbxml2xml -> the XML, DOCTYPE removed. */
async function viaWbxml2xml(wbxml: Uint8Array): Promise<string> {
  const n = ++fileNo;
  const inPath = join(workDir, `m${n}.wbxml`);
  const outPath = join(workDir, `m${n}.xml`);
  await writeFile(inPath, wbxml);
  await tool('wbxml2xml', ['-k', '-m', '0', '-o', outPath, inPath]);
  const xml = await readFile(outPath, 'utf8');
  expect(xml).toMatch(/<!DOCTYPE SyncML PUBLIC "-\/\/SYNCML\/\/DTD SyncML 1\.2\/\/EN"/);
  return xml.replace(/<!DOCTYPE[^>]*>/, '');
}

/** Our XML -> xml2wbxml -k -n -v 1.2 -> the WBXML bytes. */
async function viaXml2wbxml(xml: Uint8Array): Promise<Uint8Array> {
  const n = ++fileNo;
  const inPath = join(workDir, `x${n}.xml`);
  const outPath = join(workDir, `x${n}.wbxml`);
  await writeFile(inPath, xml);
  await tool('xml2wbxml', ['-k', '-n', '-v', '1.2', '-o', outPath, inPath]);
  return new Uint8Array(await readFile(outPath));
}

// ----------------------------------------------------------------------------------------------
// Tests
// ----------------------------------------------------------------------------------------------

describe('round trips over typed messages', () => {
  for (const enc of ['xml', 'wbxml'] as const) {
    it(`${enc}: decodeSyncML(encodeSyncML(m)) deep-equals m`, () => {
      fc.assert(
        fc.property(GEN_FOR[enc], (m) => {
          expect(decodeSyncML(encodeSyncML(m, enc), enc)).toStrictEqual(m);
        }),
        { numRuns: 400 },
      );
    });

    it(`${enc}: encodeSyncML(decodeSyncML(x)) is byte-identical to x for encoder output x`, () => {
      fc.assert(
        fc.property(GEN_FOR[enc], (m) => {
          const x = encodeSyncML(m, enc);
          expect(toHex(encodeSyncML(decodeSyncML(x, enc), enc))).toBe(toHex(x));
          expect(encodedSize(m, enc)).toBe(x.byteLength);
        }),
        { numRuns: 300 },
      );
    });

    it(`${enc}: non-canonical messages reach a fixed point after one decode`, () => {
      fc.assert(
        fc.property(looseMessageArb, (m0) => {
          const m1 = decodeSyncML(encodeSyncML(m0, enc), enc);
          const x1 = encodeSyncML(m1, enc);
          expect(decodeSyncML(x1, enc)).toStrictEqual(m1);
          expect(toHex(encodeSyncML(decodeSyncML(x1, enc), enc))).toBe(toHex(x1));
        }),
        { numRuns: 200 },
      );
    });

    for (const [label, make] of PACKAGES) {
      it(`${enc}: ${label}`, () => {
        const m = make();
        const x = encodeSyncML(m, enc);
        expect(decodeSyncML(x, enc)).toStrictEqual(m);
        expect(toHex(encodeSyncML(decodeSyncML(x, enc), enc))).toBe(toHex(x));
      });
    }
  }

  it('decodeSyncML accepts XML as a string or as bytes, WBXML as bytes or a Buffer', () => {
    const m = p2();
    expect(decodeSyncML(xmlOf(m), 'xml')).toStrictEqual(m);
    expect(decodeSyncML(Buffer.from(encodeSyncML(m, 'wbxml')), 'wbxml')).toStrictEqual(m);
  });

  it('binary Data (Format bin) travels as WBXML OPAQUE and comes back as the same bytes', () => {
    const blob = new Uint8Array([0x00, 0xff, 0xfe, 0x80, 0x01, 0x03, 0xc3]);
    const m: SyncMLMessage = {
      hdr: HDR_MODEL,
      body: [
        { kind: 'Replace', cmdID: '1', items: [{ target: { locURI: './Vendor/Blob' }, meta: { format: 'bin', type: 'application/octet-stream' }, data: blob }] },
        // command-level Format bin counts too, even for valid UTF-8 bytes
        { kind: 'Add', cmdID: '2', meta: { format: 'bin' }, items: [{ target: { locURI: './Vendor/Text' }, data: utf8.encode('plain') }] },
      ],
      final: true,
    };
    const x = encodeSyncML(m, 'wbxml');
    expect(toHex(x)).toContain('4fc307' + toHex(blob) + '01'); // <Data> OPAQUE len 7 ... END
    const back = decodeSyncML(x, 'wbxml');
    expect(back).toStrictEqual(m);
    const data = (back.body[0] as ItemCommand).items[0]!.data;
    expect(Object.getPrototypeOf(data)).toBe(Uint8Array.prototype);
    // in XML the same bytes become base64 text
    const viaXml = decodeSyncML(encodeSyncML(m, 'xml'), 'xml');
    expect((viaXml.body[0] as ItemCommand).items[0]!.data).toBe(Buffer.from(blob).toString('base64'));
  });

  it('OPAQUE text (libwbxml style) without a binary format decodes as text; invalid UTF-8 stays bytes', () => {
    const tree = messageToElement({ hdr: HDR_MODEL, body: [{ kind: 'Replace', cmdID: '1', items: [{ target: { locURI: './a' }, data: 'x' }, { target: { locURI: './b' }, data: 'y' }] }], final: true });
    const body = tree.children[1] as XElement;
    const replace = body.children[0] as XElement;
    const setData = (item: XElement, v: Uint8Array): void => {
      const d = item.children.find((c): c is XElement => isElement(c) && c.name === 'Data')!;
      d.children = [v];
    };
    setData(replace.children[1] as XElement, utf8.encode('Grüße & <tags>'));
    setData(replace.children[2] as XElement, new Uint8Array([0x61, 0xff]));
    const back = decodeSyncML(writeWbxml(tree), 'wbxml');
    expect((back.body[0] as ItemCommand).items.map((i) => i.data)).toStrictEqual(['Grüße & <tags>', new Uint8Array([0x61, 0xff])]);
  });

  it('Data split into WBXML STR_I and OPAQUE pieces is joined as bytes, then read as text unless binary', () => {
    const decodeData = (format: string | undefined, pieces: XNode[]): DataValue | undefined => {
      const item: Item = { target: { locURI: './a' }, data: 'placeholder', ...(format ? { meta: { format } } : {}) };
      const tree = messageToElement({ hdr: HDR_MODEL, body: [{ kind: 'Replace', cmdID: '1', items: [item] }], final: true });
      const itemEl = ((tree.children[1] as XElement).children[0] as XElement).children[1] as XElement;
      itemEl.children.find((c): c is XElement => isElement(c) && c.name === 'Data')!.children = pieces;
      const m = decodeSyncML(writeWbxml(tree), 'wbxml');
      expect(decodeSyncML(encodeSyncML(m, 'wbxml'), 'wbxml')).toStrictEqual(m); // a fixed point
      return (m.body[0] as ItemCommand).items[0]!.data;
    };
    expect(decodeData(undefined, ['a', new Uint8Array([0xc3, 0xbc]), 'b'])).toBe('aüb');
    expect(decodeData(undefined, ['a', new Uint8Array([0xff])])).toStrictEqual(new Uint8Array([0x61, 0xff])); // not U+FFFD
    expect(decodeData('bin', ['a', new Uint8Array([0x00, 0x62])])).toStrictEqual(new Uint8Array([0x61, 0x00, 0x62]));
    expect(decodeData('bin', [new Uint8Array(0)])).toBe('');
    expect(decodeData(undefined, [new Uint8Array(0)])).toBe('');
    // a leading U+FEFF is data, not a byte-order mark
    expect(decodeData(undefined, [utf8.encode('\uFEFFx')])).toBe('\uFEFFx');
    expect(decodeData(undefined, ['\uFEFF', new Uint8Array([0x79])])).toBe('\uFEFFy');
    // inline elements among OPAQUE pieces (found by the WBXML mutation fuzz in CI): the same
    // join-as-bytes rule, so a Format bin Data with NULs stays bytes through a round trip
    const add = el('Add');
    const addXml = utf8.encode(writeXml(add));
    expect(decodeData('bin', [new Uint8Array([0, 0, 0]), add])).toStrictEqual(new Uint8Array([0, 0, 0, ...addXml]));
    expect(decodeData(undefined, [new Uint8Array([0x61]), add, 'b'])).toBe('a<Add xmlns="SYNCML:SYNCML1.2"/>b');
    expect(decodeData(undefined, [new Uint8Array([0xff]), add])).toStrictEqual(new Uint8Array([0xff, ...addXml]));
    expect(decodeData('bin', ['a', add])).toBe('a<Add xmlns="SYNCML:SYNCML1.2"/>');
  });

  it('text with NUL travels as WBXML OPAQUE and comes back as the same text', () => {
    const m: SyncMLMessage = {
      hdr: HDR_MODEL,
      body: [{ kind: 'Exec', cmdID: '1', items: [{ target: { locURI: './x' }, data: 'a\u0000b' }] }, status('2', '1', '1', 'Exec', '200', { targetRefs: ['./\u0000'] })],
      final: false,
    };
    expect(decodeSyncML(encodeSyncML(m, 'wbxml'), 'wbxml')).toStrictEqual(m);
    expect(decodeSyncML(encodeSyncML(m, 'xml'), 'xml')).toStrictEqual(m);
  });

  it('Data text keeps CR, LF, tabs and surrounding blanks exactly; leaf texts are trimmed', () => {
    const data = '  line1\r\nline2\rline3\n\t & < > ]]> \u00a0 ';
    const m: SyncMLMessage = { hdr: HDR_MODEL, body: [{ kind: 'Exec', cmdID: '1', items: [{ target: { locURI: './x' }, data }] }], final: true };
    const xml = xmlOf(m);
    expect(xml).toContain('<Data>  line1&#13;\nline2&#13;line3\n\t &amp; &lt; &gt; ]]&gt; \u00a0 </Data>');
    for (const enc of ['xml', 'wbxml'] as const) expect(decodeSyncML(encodeSyncML(m, enc), enc)).toStrictEqual(m);
    const padded = xml.replace('<CmdID>1</CmdID>', '<CmdID>\n  1\t</CmdID>').replace(`<LocURI>./x</LocURI>`, '<LocURI> ./x </LocURI>');
    expect(decodeSyncML(padded, 'xml')).toStrictEqual(m);
  });
});

describe('libwbxml oracle at message level (Debian xml2wbxml / wbxml2xml)', () => {
  it('the libwbxml tools are installed (CI installs libwbxml2-utils; these tests must not be skipped)', async () => {
    const xml = await viaWbxml2xml(encodeSyncML(p1(), 'wbxml'));
    expect(xml).toContain('<SyncML xmlns="SYNCML:SYNCML1.2">');
  });

  for (const [label, make] of PACKAGES) {
    it(`ours WBXML -> wbxml2xml -> decodeSyncML(xml) gives the message back: ${label}`, async () => {
      const m = make();
      expect(decodeSyncML(await viaWbxml2xml(encodeSyncML(m, 'wbxml')), 'xml')).toStrictEqual(m);
    });

    it(`ours XML -> xml2wbxml -> decodeSyncML(wbxml) gives the message back: ${label}`, async () => {
      const m = make();
      expect(decodeSyncML(await viaXml2wbxml(encodeSyncML(m, 'xml')), 'wbxml')).toStrictEqual(libwbxmlView(m));
    });
  }

  it('libwbxml quirk B is real: Replace Data becomes OPAQUE with CR LF, Format b64 Data stays bytes', async () => {
    const m: SyncMLMessage = {
      hdr: HDR_MODEL,
      body: [
        { kind: 'Replace', cmdID: '1', items: [{ target: { locURI: './a' }, data: 'l1\nl2' }, { target: { locURI: './b' }, meta: { format: 'b64' }, data: 'QUJD' }] },
        { kind: 'Exec', cmdID: '2', items: [{ target: { locURI: './c' }, data: 'l1\nl2' }] },
      ],
      final: true,
    };
    const wbxml = await viaXml2wbxml(encodeSyncML(m, 'xml'));
    expect(toHex(wbxml)).toContain('4fc3066c310d0a6c3201'); // <Data> OPAQUE "l1\r\nl2" </Data>
    expect(toHex(wbxml)).toContain('4f036c310a6c320001'); // Exec Data stays STR_I with a bare LF
    const back = decodeSyncML(wbxml, 'wbxml');
    expect((back.body[0] as ItemCommand).items.map((i) => i.data)).toStrictEqual(['l1\r\nl2', utf8.encode('QUJD')]);
    expect(back).toStrictEqual(libwbxmlView(m));
  });

  it('random messages: ours WBXML -> wbxml2xml -> decodeSyncML(xml) == m', async () => {
    await fc.assert(
      fc.asyncProperty(oracleMessageArb, async (m) => {
        expect(decodeSyncML(await viaWbxml2xml(encodeSyncML(m, 'wbxml')), 'xml')).toStrictEqual(m);
      }),
      { numRuns: 40 },
    );
  });

  it('random messages: ours XML -> xml2wbxml -> decodeSyncML(wbxml) == m (libwbxml view)', async () => {
    await fc.assert(
      fc.asyncProperty(oracleMessageArb, async (m) => {
        expect(decodeSyncML(await viaXml2wbxml(encodeSyncML(m, 'xml')), 'wbxml')).toStrictEqual(libwbxmlView(m));
      }),
      { numRuns: 40 },
    );
  });
});

/** Child order of each element (omadm.md §3.1 table); '*' stands for any command. */
const ORDER: Record<string, string[]> = {
  SyncML: ['SyncHdr', 'SyncBody'],
  SyncHdr: ['VerDTD', 'VerProto', 'SessionID', 'MsgID', 'Target', 'Source', 'RespURI', 'NoResp', 'Cred', 'Meta'],
  SyncBody: ['*', 'Final'],
  Status: ['CmdID', 'MsgRef', 'CmdRef', 'Cmd', 'TargetRef', 'SourceRef', 'Cred', 'Chal', 'Data', 'Item'],
  Results: ['CmdID', 'MsgRef', 'CmdRef', 'Meta', 'TargetRef', 'SourceRef', 'Item'],
  Add: ['CmdID', 'NoResp', 'Cred', 'Meta', 'Item'],
  Replace: ['CmdID', 'NoResp', 'Cred', 'Meta', 'Item'],
  Copy: ['CmdID', 'NoResp', 'Cred', 'Meta', 'Item'],
  Delete: ['CmdID', 'NoResp', 'Archive', 'SftDel', 'Cred', 'Meta', 'Item'],
  Get: ['CmdID', 'NoResp', 'Lang', 'Cred', 'Meta', 'Item'],
  Exec: ['CmdID', 'NoResp', 'Cred', 'Meta', 'Correlator', 'Item'],
  Alert: ['CmdID', 'NoResp', 'Cred', 'Data', 'Correlator', 'Item'],
  Atomic: ['CmdID', 'NoResp', 'Meta', '*'],
  Sequence: ['CmdID', 'NoResp', 'Meta', '*'],
  Item: ['Target', 'Source', 'TargetParent', 'SourceParent', 'Meta', 'Data', 'MoreData'],
  Target: ['LocURI', 'LocName'],
  Source: ['LocURI', 'LocName'],
  TargetParent: ['LocURI', 'LocName'],
  SourceParent: ['LocURI', 'LocName'],
  Chal: ['Meta'],
  Cred: ['Meta', 'Data'],
  Sync: ['CmdID'],
  Map: ['CmdID'],
  Put: ['CmdID'],
  Search: ['CmdID'],
  Move: ['CmdID'],
};
const METINF_ORDER = ['Format', 'Type', 'Mark', 'Size', 'NextNonce', 'Version', 'MaxMsgSize', 'MaxObjSize', 'EMI'];
const REPEATABLE = new Set(['TargetRef', 'SourceRef', 'Item', 'EMI', '*']);

/** Checks every element of an encoder tree against ORDER; returns the list of violations. */
function orderViolations(e: XElement, path = e.name): string[] {
  const out: string[] = [];
  const kids = e.children.filter(isElement);
  if (e.name === 'Meta') {
    const ranks = kids.map((k) => METINF_ORDER.indexOf(k.name));
    if (kids.some((k) => k.ns !== 'metinf')) out.push(`${path}: MetInf child outside the metinf namespace`);
    ranks.forEach((r, i) => {
      if (r < 0) out.push(`${path}: unexpected <${kids[i]!.name}>`);
      else if (i > 0 && (r < ranks[i - 1]! || (r === ranks[i - 1]! && kids[i]!.name !== 'EMI'))) out.push(`${path}: <${kids[i]!.name}> out of order`);
    });
    return out;
  }
  const table = ORDER[e.name];
  if (!table) return kids.length ? [`${path}: unexpected children`] : [];
  let last = -1;
  let lastName = '';
  for (const k of kids) {
    const key = table.includes(k.name) ? k.name : COMMAND_NAMES.has(k.name) && table.includes('*') ? '*' : undefined;
    if (key === undefined) {
      out.push(`${path}: unexpected <${k.name}>`);
      continue;
    }
    const r = table.indexOf(key);
    if (r < last || (r === last && !REPEATABLE.has(key))) out.push(`${path}: <${k.name}> after <${lastName}>`);
    last = r;
    lastName = k.name;
    out.push(...orderViolations(k, `${path}/${k.name}`));
  }
  return out;
}

describe('element order', () => {
  it('the encoder follows the §3.1 order for every element of random messages', () => {
    fc.assert(
      fc.property(wbxmlMessageArb, (m) => {
        expect(orderViolations(messageToElement(m))).toEqual([]);
      }),
      { numRuns: 300 },
    );
  });

  it('the order checker itself notices a violation', () => {
    const tree = messageToElement({ hdr: HDR_MODEL, body: [status('1', '1', '0', 'SyncHdr', '200')], final: true });
    const st = (tree.children[1] as XElement).children[0] as XElement;
    st.children.reverse();
    expect(orderViolations(tree).length).toBeGreaterThan(0);
  });

  it('Status: CmdID, MsgRef, CmdRef, Cmd, TargetRef*, SourceRef*, Cred?, Chal?, Data, Item* (exact XML)', () => {
    const m: SyncMLMessage = {
      hdr: HDR_MODEL,
      body: [
        status('1', '1', '0', 'SyncHdr', '407', {
          targetRefs: ['t1', 't2'],
          sourceRefs: ['s1'],
          cred: { data: 'c' },
          chal: { meta: { format: 'b64', type: 'syncml:auth-md5', nextNonce: 'Tm9uY2U=' } },
          items: [{ data: 'i' }],
        }),
      ],
      final: true,
    };
    expect(xmlOf(m)).toContain(
      '<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><TargetRef>t1</TargetRef><TargetRef>t2</TargetRef>' +
        '<SourceRef>s1</SourceRef><Cred><Data>c</Data></Cred><Chal><Meta><Format xmlns="syncml:metinf">b64</Format>' +
        '<Type xmlns="syncml:metinf">syncml:auth-md5</Type><NextNonce xmlns="syncml:metinf">Tm9uY2U=</NextNonce></Meta></Chal>' +
        '<Data>407</Data><Item><Data>i</Data></Item></Status><Final/>',
    );
  });

  it('Alert writes Data before Correlator; Exec writes Meta, Correlator, Item', () => {
    const m: SyncMLMessage = {
      hdr: HDR_MODEL,
      body: [
        { kind: 'Alert', cmdID: '1', data: '1226', correlator: 'c1', items: [{ data: 'x' }] },
        { kind: 'Exec', cmdID: '2', meta: { format: 'chr' }, correlator: 'c2', items: [{ target: { locURI: './e' } }] },
      ],
      final: false,
    };
    const xml = xmlOf(m);
    expect(xml).toContain('<Alert><CmdID>1</CmdID><Data>1226</Data><Correlator>c1</Correlator><Item><Data>x</Data></Item></Alert>');
    expect(xml).toContain('<Exec><CmdID>2</CmdID><Meta><Format xmlns="syncml:metinf">chr</Format></Meta><Correlator>c2</Correlator><Item>');
  });

  it('SyncHdr: ..., Target, Source, RespURI, NoResp, Cred, Meta; SyncBody ends with Final', () => {
    const m: SyncMLMessage = {
      hdr: { ...HDR_MODEL, respURI: 'r', noResp: true, cred: { meta: { type: 'syncml:auth-basic' }, data: 'QnJ1Y2UyOk9oQmVoYXZl' }, meta: { maxMsgSize: 1, maxObjSize: 2 } },
      body: [{ kind: 'Get', cmdID: '1', noResp: true, lang: 'en', meta: { type: 'text/plain' }, items: [{ target: { locURI: './a', locName: 'n' } }] }],
      final: true,
    };
    expect(xmlOf(m)).toBe(
      '<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>1</SessionID><MsgID>1</MsgID>' +
        `<Target><LocURI>${SERVER}</LocURI></Target><Source><LocURI>${DEVICE}</LocURI></Source><RespURI>r</RespURI><NoResp/>` +
        '<Cred><Meta><Type xmlns="syncml:metinf">syncml:auth-basic</Type></Meta><Data>QnJ1Y2UyOk9oQmVoYXZl</Data></Cred>' +
        '<Meta><MaxMsgSize xmlns="syncml:metinf">1</MaxMsgSize><MaxObjSize xmlns="syncml:metinf">2</MaxObjSize></Meta></SyncHdr>' +
        '<SyncBody><Get><CmdID>1</CmdID><NoResp/><Lang>en</Lang><Meta><Type xmlns="syncml:metinf">text/plain</Type></Meta>' +
        '<Item><Target><LocURI>./a</LocURI><LocName>n</LocName></Target></Item></Get><Final/></SyncBody></SyncML>',
    );
  });

  for (const enc of ['xml', 'wbxml'] as const) {
    it(`${enc}: the decoder accepts any reordering of children that keeps commands and same-named siblings in order`, () => {
      fc.assert(
        fc.property(GEN_FOR[enc], fc.integer(), (m, seed) => {
          const shuffled = shuffleTree(messageToElement(m), prng(seed));
          const bytes = enc === 'xml' ? writeXml(shuffled) : writeWbxml(shuffled);
          expect(decodeSyncML(bytes, enc)).toStrictEqual(m);
        }),
        { numRuns: 300 },
      );
    });
  }

  it('Alert with Correlator before Data (RTK order) and Data before Correlator decode alike', () => {
    const expected: AlertCommand = { kind: 'Alert', cmdID: '3', data: '1226', correlator: 'abc', items: [{ data: 'v' }] };
    for (const inner of [
      '<CmdID>3</CmdID><Correlator>abc</Correlator><Data>1226</Data><Item><Data>v</Data></Item>',
      '<CmdID>3</CmdID><Data>1226</Data><Correlator>abc</Correlator><Item><Data>v</Data></Item>',
      '<Item><Data>v</Data></Item><Correlator>abc</Correlator><Data>1226</Data><CmdID>3</CmdID>',
    ]) {
      expect(decodeSyncML(withBody(`<Alert>${inner}</Alert>`), 'xml').body).toStrictEqual([expected]);
    }
  });

  it('Status with its children in reverse order, Item with Data before Target, SyncHdr with Meta first', () => {
    const header =
      '<SyncHdr><Meta><MaxMsgSize xmlns="syncml:metinf">4096</MaxMsgSize></Meta><Source><LocURI>d</LocURI></Source><Target><LocURI>s</LocURI></Target>' +
      '<MsgID>2</MsgID><SessionID>7</SessionID><VerProto>DM/1.2</VerProto><VerDTD>1.2</VerDTD></SyncHdr>';
    const body =
      '<Final/><Status><Item><Data>x</Data><Target><LocURI>./t</LocURI></Target></Item><Data>200</Data><SourceRef>s</SourceRef>' +
      '<TargetRef>t</TargetRef><Cmd>Get</Cmd><CmdRef>4</CmdRef><MsgRef>1</MsgRef><CmdID>1</CmdID></Status>';
    const xml = `<SyncML xmlns="SYNCML:SYNCML1.2"><SyncBody>${body}</SyncBody>${header}</SyncML>`;
    expect(decodeSyncML(xml, 'xml')).toStrictEqual({
      hdr: { verDTD: '1.2', verProto: 'DM/1.2', sessionID: '7', msgID: '2', target: { locURI: 's' }, source: { locURI: 'd' }, meta: { maxMsgSize: 4096 } },
      body: [status('1', '1', '4', 'Get', '200', { targetRefs: ['t'], sourceRefs: ['s'], items: [{ target: { locURI: './t' }, data: 'x' }] })],
      final: true,
    });
  });

  it('MetInf in a <MetInf> wrapper, with a namespace prefix, or in the SyncML namespace, decodes alike', () => {
    const expected: Meta = { format: 'b64', type: 'syncml:auth-md5', nextNonce: 'Tm9uY2U=' };
    const variants = [
      '<Meta><Format xmlns="syncml:metinf">b64</Format><Type xmlns="syncml:metinf">syncml:auth-md5</Type><NextNonce xmlns="syncml:metinf">Tm9uY2U=</NextNonce></Meta>',
      '<Meta><MetInf xmlns="syncml:metinf"><Format>b64</Format><Type>syncml:auth-md5</Type><NextNonce>Tm9uY2U=</NextNonce></MetInf></Meta>',
      '<Meta xmlns:m="syncml:metinf"><m:Format>b64</m:Format><m:Type>syncml:auth-md5</m:Type><m:NextNonce>Tm9uY2U=</m:NextNonce></Meta>',
      '<Meta><m:Format xmlns:m="syncml:metinf">b64</m:Format><m:Type xmlns:m="syncml:metinf">syncml:auth-md5</m:Type><x:NextNonce xmlns:x="syncml:metinf">Tm9uY2U=</x:NextNonce></Meta>',
      '<Meta><Format>b64</Format><Type>syncml:auth-md5</Type><NextNonce>Tm9uY2U=</NextNonce></Meta>',
      '<Meta xmlns="syncml:metinf"><MetInf><NextNonce>Tm9uY2U=</NextNonce><Type>syncml:auth-md5</Type><Format>b64</Format></MetInf></Meta>',
    ];
    for (const meta of variants) {
      const xml = withBody(`<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Chal>${meta}</Chal><Data>401</Data></Status>`);
      expect((decodeSyncML(xml, 'xml').body[0] as StatusCommand).chal).toStrictEqual({ meta: expected });
    }
    // WBXML: a MetInf wrapper on page 1
    const tree = messageToElement({ hdr: { ...HDR_MODEL, meta: { maxMsgSize: 8192, maxObjSize: 100 } }, body: [], final: true });
    const meta = (tree.children[0] as XElement).children.find((c): c is XElement => isElement(c) && c.name === 'Meta')!;
    meta.children = [el('MetInf', meta.children, 'metinf')];
    expect(decodeSyncML(writeWbxml(tree), 'wbxml').hdr.meta).toStrictEqual({ maxMsgSize: 8192, maxObjSize: 100 });
  });

  it('prefixed SyncML elements, an XML declaration, comments, pretty-printing and CDATA are accepted', () => {
    const xml = `<?xml version="1.0" encoding="UTF-8"?>
<!-- a DM message -->
<s:SyncML xmlns:s="SYNCML:SYNCML1.2">
  <s:SyncHdr>
    <s:VerDTD>1.2</s:VerDTD>
    <s:VerProto>DM/1.2</s:VerProto>
    <s:SessionID> 1 </s:SessionID>
    <s:MsgID>1</s:MsgID>
    <s:Target><s:LocURI>${SERVER}</s:LocURI></s:Target>
    <s:Source><s:LocURI>${DEVICE}</s:LocURI></s:Source>
  </s:SyncHdr>
  <s:SyncBody>
    <s:Replace>
      <s:CmdID>1</s:CmdID>
      <!-- comment between elements -->
      <s:Item><s:Target><s:LocURI>./a</s:LocURI></s:Target><s:Data><![CDATA[<raw> & ]]>text &amp; more</s:Data></s:Item>
    </s:Replace>
    <s:Final/>
  </s:SyncBody>
</s:SyncML>
`;
    expect(decodeSyncML(xml, 'xml')).toStrictEqual({
      hdr: HDR_MODEL,
      body: [{ kind: 'Replace', cmdID: '1', items: [{ target: { locURI: './a' }, data: '<raw> & text & more' }] }],
      final: true,
    });
  });
});

describe('structural errors map to SyncML statuses', () => {
  it('root other than SyncML, missing SyncHdr or SyncBody -> 400', () => {
    expectCodecError(() => decodeSyncML('<SyncBody/>', 'xml'), 'CODEC_SYNCML_ROOT');
    expectCodecError(() => decodeSyncML('<SyncML xmlns="SYNCML:SYNCML1.2"><SyncBody><Final/></SyncBody></SyncML>', 'xml'), 'CODEC_SYNCML_MISSING', 400);
    expectCodecError(() => decodeSyncML(`<SyncML xmlns="SYNCML:SYNCML1.2">${HDR_XML}</SyncML>`, 'xml'), 'CODEC_SYNCML_MISSING', 400);
    expectCodecError(() => decodeSyncML('<SyncML/>', 'xml'), 'CODEC_SYNCML_MISSING', 400);
    expectCodecError(() => decodeSyncML(writeWbxml(el('SyncML', [el('SyncBody')])), 'wbxml'), 'CODEC_SYNCML_MISSING', 400);
  });

  it('SyncHdr without Target or Source -> 400; without VerDTD -> 412', () => {
    const noSource = HDR_XML.replace(`<Source><LocURI>${DEVICE}</LocURI></Source>`, '');
    expectCodecError(() => decodeSyncML(withBody('', noSource), 'xml'), 'CODEC_SYNCML_MISSING', 400);
    const noTarget = HDR_XML.replace(`<Target><LocURI>${SERVER}</LocURI></Target>`, '');
    expectCodecError(() => decodeSyncML(withBody('', noTarget), 'xml'), 'CODEC_SYNCML_MISSING', 400);
    expectCodecError(() => decodeSyncML(withBody('', HDR_XML.replace('<VerDTD>1.2</VerDTD>', '')), 'xml'), 'CODEC_SYNCML_MISSING', 412);
  });

  it('a command without CmdID -> 412 (also nested, and for unsupported commands)', () => {
    for (const body of [
      '<Get><Item><Target><LocURI>./a</LocURI></Target></Item></Get>',
      '<Alert><Data>1201</Data></Alert>',
      '<Status><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>',
      '<Atomic><CmdID>1</CmdID><Replace><Item><Target><LocURI>./a</LocURI></Target></Item></Replace></Atomic>',
      '<Sync><Target><LocURI>db</LocURI></Target></Sync>',
    ]) {
      expectCodecError(() => decodeSyncML(withBody(body), 'xml'), 'CODEC_SYNCML_MISSING', 412);
    }
    const tree = messageToElement({ hdr: HDR_MODEL, body: [{ kind: 'Delete', cmdID: '1', items: [{ target: { locURI: './a' } }] }], final: true });
    const del = (tree.children[1] as XElement).children[0] as XElement;
    del.children = del.children.filter((c) => !isElement(c) || c.name !== 'CmdID');
    expectCodecError(() => decodeSyncML(writeWbxml(tree), 'wbxml'), 'CODEC_SYNCML_MISSING', 412);
  });

  it('incomplete commands -> 412: no Item in Add/Replace/Copy/Get/Delete/Exec, Status without Data/Cmd, Results without CmdRef, Target without LocURI', () => {
    for (const name of ['Add', 'Replace', 'Copy', 'Get', 'Delete', 'Exec']) {
      expectCodecError(() => decodeSyncML(withBody(`<${name}><CmdID>1</CmdID></${name}>`), 'xml'), 'CODEC_SYNCML_MISSING', 412);
    }
    expectCodecError(() => decodeSyncML(withBody('<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd></Status>'), 'xml'), 'CODEC_SYNCML_MISSING', 412);
    expectCodecError(() => decodeSyncML(withBody('<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Data>200</Data></Status>'), 'xml'), 'CODEC_SYNCML_MISSING', 412);
    expectCodecError(() => decodeSyncML(withBody('<Results><CmdID>1</CmdID><Item><Data>x</Data></Item></Results>'), 'xml'), 'CODEC_SYNCML_MISSING', 412);
    expectCodecError(() => decodeSyncML(withBody('<Get><CmdID>1</CmdID><Item><Target><LocName>x</LocName></Target></Item></Get>'), 'xml'), 'CODEC_SYNCML_MISSING', 412);
  });

  it('an unknown command element in SyncBody (or inside Atomic) -> 400; an unknown element in Item -> 400', () => {
    expectCodecError(() => decodeSyncML(withBody('<Frobnicate><CmdID>1</CmdID></Frobnicate>'), 'xml'), 'CODEC_SYNCML_ELEMENT', 400);
    expectCodecError(() => decodeSyncML(withBody('<Atomic><CmdID>1</CmdID><Final/></Atomic>'), 'xml'), 'CODEC_SYNCML_ELEMENT', 400);
    expectCodecError(() => decodeSyncML(withBody('<Get><CmdID>1</CmdID><Item><Bogus/></Item></Get>'), 'xml'), 'CODEC_SYNCML_ELEMENT', 400);
    // MapItem is a real SyncML element with a WBXML token, but not a command
    expectCodecError(() => decodeSyncML(writeWbxml(el('SyncML', [messageToElement({ hdr: HDR_MODEL, body: [], final: false }).children[0]!, el('SyncBody', [el('MapItem', [el('CmdID', ['1'])])])])), 'wbxml'), 'CODEC_SYNCML_ELEMENT', 400);
  });

  it('non-integer Meta numbers (MaxMsgSize, MaxObjSize, Size) -> 400', () => {
    for (const bad of ['16k', '-1', '1.5', '', '0x10', '1e3', '12345678901', '١٢']) {
      const header = HDR_XML.replace('</SyncHdr>', `<Meta><MaxMsgSize xmlns="syncml:metinf">${bad}</MaxMsgSize></Meta></SyncHdr>`);
      const e = expectCodecError(() => decodeSyncML(withBody('', header), 'xml'), 'CODEC_SYNCML_VALUE', 400);
      expect(e.message).toMatch(/MaxMsgSize/);
    }
    expectCodecError(() => decodeSyncML(withBody('<Get><CmdID>1</CmdID><Meta><MaxObjSize xmlns="syncml:metinf">big</MaxObjSize></Meta><Item/></Get>'), 'xml'), 'CODEC_SYNCML_VALUE');
    expectCodecError(() => decodeSyncML(withBody('<Replace><CmdID>1</CmdID><Item><Meta><Size xmlns="syncml:metinf">12 KB</Size></Meta></Item></Replace>'), 'xml').body, 'CODEC_SYNCML_VALUE');
  });

  it('Meta numbers are trimmed and may have leading zeros', () => {
    const header = HDR_XML.replace('</SyncHdr>', '<Meta><MaxMsgSize xmlns="syncml:metinf"> 016384\n</MaxMsgSize></Meta></SyncHdr>');
    expect(decodeSyncML(withBody('', header), 'xml').hdr.meta).toStrictEqual({ maxMsgSize: 16384 });
  });

  it('Sync, Map, Put, Search and Move decode to Unsupported (their content ignored), in both encodings', () => {
    const body =
      '<Sync><CmdID>1</CmdID><Target><LocURI>db</LocURI></Target><Add><CmdID>2</CmdID><Item><Data>x</Data></Item></Add></Sync>' +
      '<Map><CmdID>3</CmdID><MapItem><Target><LocURI>a</LocURI></Target><Source><LocURI>b</LocURI></Source></MapItem></Map>' +
      '<Put><CmdID>4</CmdID><Item><Data>devinf</Data></Item></Put>' +
      '<Search><CmdID>5</CmdID><NoResults/></Search><Move><CmdID>6</CmdID></Move>' +
      '<Get><CmdID>7</CmdID><Item><Target><LocURI>./a</LocURI></Target></Item></Get><Final/>';
    const expected: Command[] = [
      { kind: 'Unsupported', name: 'Sync', cmdID: '1' },
      { kind: 'Unsupported', name: 'Map', cmdID: '3' },
      { kind: 'Unsupported', name: 'Put', cmdID: '4' },
      { kind: 'Unsupported', name: 'Search', cmdID: '5' },
      { kind: 'Unsupported', name: 'Move', cmdID: '6' },
      { kind: 'Get', cmdID: '7', items: [{ target: { locURI: './a' } }] },
    ];
    const xml = withBody(body);
    expect(decodeSyncML(xml, 'xml').body).toStrictEqual(expected);
    // the same document as WBXML (every element of it has a token)
    expect(decodeSyncML(writeWbxml(parseXml(xml)), 'wbxml').body).toStrictEqual(expected);
  });
});

describe('decodeHeaderOnly', () => {
  const good = p2();

  it('returns the header of a valid message in both encodings', () => {
    for (const enc of ['xml', 'wbxml'] as const) expect(decodeHeaderOnly(encodeSyncML(good, enc), enc)).toStrictEqual(good.hdr);
  });

  it('returns the header when the body is structurally broken (unknown command, missing CmdID, bad number, no SyncBody)', () => {
    for (const body of ['<Frobnicate/>', '<Get><Item/></Get>', '<Replace><CmdID>1</CmdID><Item><Meta><Size xmlns="syncml:metinf">x</Size></Meta></Item></Replace>']) {
      const xml = utf8.encode(withBody(body));
      expect(() => decodeSyncML(xml, 'xml')).toThrow(CodecError);
      expect(decodeHeaderOnly(xml, 'xml')).toStrictEqual(HDR_MODEL);
    }
    expect(decodeHeaderOnly(utf8.encode(`<SyncML xmlns="SYNCML:SYNCML1.2">${HDR_XML}</SyncML>`), 'xml')).toStrictEqual(HDR_MODEL);
    const tree = messageToElement(good);
    (tree.children[1] as XElement).children.push(el('MapItem'));
    expect(() => decodeSyncML(writeWbxml(tree), 'wbxml')).toThrow(CodecError);
    expect(decodeHeaderOnly(writeWbxml(tree), 'wbxml')).toStrictEqual(good.hdr);
  });

  it('XML: returns the header when the body is not well-formed (truncated, mismatched tags, a DTD inside)', () => {
    const xml = xmlOf(good);
    const cut = xml.indexOf('<SyncBody>') + 200;
    for (const broken of [
      xml.slice(0, cut),
      xml.replace('</Get>', '</Got>'),
      xml.replace('<Final/>', '<Final/><!DOCTYPE x><Final/>'),
      xml.replace('<SyncBody>', '<SyncBody>&xxe;'),
      xml + '<SyncML/>',
    ]) {
      expect(() => decodeSyncML(broken, 'xml')).toThrow(CodecError);
      expect(decodeHeaderOnly(utf8.encode(broken), 'xml')).toStrictEqual(good.hdr);
    }
    // prefixed elements
    const prefixed = `<s:SyncML xmlns:s="SYNCML:SYNCML1.2">${HDR_XML.replace(/<(\/?)/g, '<$1s:')}<s:SyncBody><s:Get>`;
    expect(decodeHeaderOnly(utf8.encode(prefixed), 'xml')).toStrictEqual(HDR_MODEL);
    // but not when the header itself is cut, broken or refused
    for (const bad of [
      xml.slice(0, xml.indexOf('</SyncHdr>')),
      xml.slice(0, xml.indexOf('</SyncHdr>') + 5),
      xml.replace('</MsgID>', '</MsgId>').slice(0, cut),
      xml.replace('<MsgID>1</MsgID>', '<MsgID>&xxe;</MsgID>').slice(0, cut),
      xml.replace('<MsgID>1</MsgID>', '<!DOCTYPE x>').slice(0, cut),
      xml.replace(`<Source><LocURI>${SERVER}</LocURI></Source>`, '').slice(0, cut),
    ]) {
      expect(decodeHeaderOnly(utf8.encode(bad), 'xml')).toBeUndefined();
    }
    // WBXML has no such fallback: a truncated message gives no header
    const wbxml = encodeSyncML(good, 'wbxml');
    expect(decodeHeaderOnly(wbxml.subarray(0, wbxml.byteLength - 20), 'wbxml')).toBeUndefined();
  });

  it('the XML fallback stays linear on hostile input (many unterminated SyncHdr tags)', () => {
    const hostile = utf8.encode('<SyncHdr>'.repeat(400_000) + '<');
    const t0 = performance.now();
    expect(decodeHeaderOnly(hostile, 'xml')).toBeUndefined();
    expect(performance.now() - t0).toBeLessThan(5000);
  });

  it('returns undefined for garbage, a missing or broken header, or a document over the limits', () => {
    const cases: [Uint8Array, Encoding][] = [
      [utf8.encode('hello'), 'xml'],
      [new Uint8Array(0), 'xml'],
      [new Uint8Array(0), 'wbxml'],
      [new Uint8Array([0x02, 0xa4, 0x01, 0x6a, 0x00, 0xff]), 'wbxml'],
      [utf8.encode('<!DOCTYPE x [<!ENTITY a "b">]><SyncML/>'), 'xml'],
      [utf8.encode(withBody('<Final/>', '<SyncHdr><VerDTD>1.2</VerDTD></SyncHdr>')), 'xml'],
      [utf8.encode('<SyncML xmlns="SYNCML:SYNCML1.2"><SyncBody/></SyncML>'), 'xml'],
      [encodeSyncML(good, 'xml'), 'wbxml'],
      [encodeSyncML(good, 'wbxml'), 'xml'],
    ];
    for (const [bytes, enc] of cases) expect(decodeHeaderOnly(bytes, enc)).toBeUndefined();
    expect(decodeHeaderOnly(encodeSyncML(good, 'xml'), 'xml', { ...DEFAULT_LIMITS, maxBytes: 100 })).toBeUndefined();
  });

  it('never throws, for random bytes and mutated messages', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.constantFrom<Encoding>('xml', 'wbxml'), (bytes, enc) => {
        const h = decodeHeaderOnly(bytes, enc);
        expect(h === undefined || typeof h.sessionID === 'string').toBe(true);
      }),
      { numRuns: 500 },
    );
  });
});

describe('encodingOfContentType', () => {
  it('accepts the four SyncML MIME types, with parameters, any case, surrounding blanks', () => {
    const cases: [string, Encoding][] = [
      ['application/vnd.syncml.dm+xml', 'xml'],
      ['application/vnd.syncml.dm+wbxml', 'wbxml'],
      ['application/vnd.syncml+xml', 'xml'],
      ['application/vnd.syncml+wbxml', 'wbxml'],
      ['application/vnd.syncml.dm+xml; charset=utf-8', 'xml'],
      ['application/vnd.syncml.dm+xml;charset="UTF-8"', 'xml'],
      ['Application/VND.SyncML.DM+WBXML', 'wbxml'],
      ['  application/vnd.syncml+wbxml ; foo=bar; x=y', 'wbxml'],
    ];
    for (const [ct, enc] of cases) expect(encodingOfContentType(ct), ct).toBe(enc);
    expect(encodingOfContentType(CONTENT_TYPES.xml)).toBe('xml');
    expect(encodingOfContentType(CONTENT_TYPES.wbxml)).toBe('wbxml');
  });

  it('rejects other types', () => {
    for (const ct of [
      undefined,
      '',
      ';',
      'application/xml',
      'text/xml',
      'text/plain',
      'application/octet-stream',
      'application/vnd.syncml.notification',
      'application/vnd.syncml.dm+json',
      'application/vnd.syncml.dm+xmlx',
      'application/vnd.syncml.dmtnds+xml',
      'application/vnd.syncml-devinf+wbxml',
      'xml',
      'wbxml',
      'application/vnd.syncml.dm+ xml',
    ]) {
      expect(encodingOfContentType(ct), String(ct)).toBeUndefined();
    }
  });
});

// ----------------------------------------------------------------------------------------------
// Untrusted input
// ----------------------------------------------------------------------------------------------

const XML_TOKENS = [
  '<', '>', '/>', '</', '<!--', '-->', '<![CDATA[', ']]>', '<?xml version="1.0"?>', '?>', '<!DOCTYPE SyncML [', '<!ENTITY x "y">',
  '&', ';', '&amp;', '&#', '&#x', '&#0;', '&#xD800;', '&xxe;', '"', "'", '=', ' ', '\n', ':', 'xmlns', 'xmlns:m="syncml:metinf"',
  'SyncML', 'SyncHdr', 'SyncBody', 'Status', 'Alert', 'Atomic', 'CmdID', 'Data', 'Item', 'Meta', 'MaxMsgSize', 'LocURI', 'Final',
  'a', '1', 'é', '😀', '\u0000',
];
const xmlSoupArb = fc.string({ unit: fc.oneof(fc.constantFrom(...XML_TOKENS), codePoint), maxLength: 60 });

type Mutation = { kind: 'insert' | 'delete' | 'replace' | 'truncate' | 'duplicate'; at: number; len: number; token: string };
const mutationArb: fc.Arbitrary<Mutation> = fc.record({
  kind: fc.constantFrom('insert', 'delete', 'replace', 'truncate', 'duplicate'),
  at: fc.nat(),
  len: fc.integer({ min: 1, max: 40 }),
  token: fc.oneof(fc.constantFrom(...XML_TOKENS), codePoint),
});
function mutate(s: string, muts: Mutation[]): string {
  for (const m of muts) {
    const at = s.length === 0 ? 0 : m.at % s.length;
    if (m.kind === 'insert') s = s.slice(0, at) + m.token + s.slice(at);
    else if (m.kind === 'delete') s = s.slice(0, at) + s.slice(at + m.len);
    else if (m.kind === 'replace') s = s.slice(0, at) + m.token + s.slice(at + m.token.length);
    else if (m.kind === 'truncate') s = s.slice(0, at);
    else s = s.slice(0, at) + s.slice(at, at + m.len) + s.slice(at);
  }
  return s;
}

/** Whatever decodes must reach the codec's fixed point: re-encoding and decoding gives it back. */
function expectStable(m: SyncMLMessage, enc: Encoding): void {
  expect(decodeSyncML(encodeSyncML(m, enc), enc)).toStrictEqual(m);
}

describe('untrusted input: only CodecError with a status escapes', () => {
  const valid = xmlOf(p2());

  it('DOCTYPE, internal subsets and entity expansion payloads -> CODEC_XML_DTD 400', () => {
    for (const x of [
      `<!DOCTYPE SyncML PUBLIC "-//SYNCML//DTD SyncML 1.2//EN" "http://www.openmobilealliance.org/tech/DTD/OMA-TS-SyncML_RepPro_DTD-V1_2.dtd">${valid}`,
      `<?xml version="1.0"?><!DOCTYPE SyncML [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>${valid.replace('<Data>200</Data>', '<Data>&xxe;</Data>')}`,
      '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><SyncML>&lol2;</SyncML>',
      valid.replace('<SyncHdr>', '<!ENTITY x "y"><SyncHdr>'),
    ]) {
      expectCodecError(() => decodeSyncML(x, 'xml'), 'CODEC_XML_DTD', 400);
    }
  });

  it('entity references other than the five predefined ones -> CODEC_XML_ENTITY 400', () => {
    for (const ent of ['&xxe;', '&nbsp;', '&constructor;', '&__proto__;', '&toString;', '&amp', '&lt', '& ', '&;', '&AMP;']) {
      expectCodecError(() => decodeSyncML(valid.replace('<Data>200</Data>', `<Data>${ent}</Data>`), 'xml'), 'CODEC_XML_ENTITY', 400);
    }
    expectCodecError(() => decodeSyncML(valid.replace('<SyncML xmlns="SYNCML:SYNCML1.2">', '<SyncML xmlns="&xxe;">'), 'xml'), 'CODEC_XML_ENTITY', 400);
  });

  it('invalid character references -> CODEC_XML_ENTITY 400', () => {
    for (const ref of ['&#;', '&#x;', '&#-5;', '&#x-1;', '&#+65;', '&#12abc;', '&#xG1;', '&# 65;', '&#xD800;', '&#xDFFF;', '&#55296;', '&#x110000;', '&#1114112;', '&#99999999999;']) {
      expectCodecError(() => decodeSyncML(valid.replace('<Data>200</Data>', `<Data>${ref}</Data>`), 'xml'), 'CODEC_XML_ENTITY', 400);
    }
    // valid ones decode (including astral characters written as references)
    const ok = decodeSyncML(valid.replace('<Data>200</Data>', '<Data>&#50;&#x30;&#X30; &#x1F600;&#0065;</Data>'), 'xml');
    expect((ok.body[1] as StatusCommand).data).toBe('200 😀A');
  });

  it('unterminated and mismatched tags, two roots, text outside the root, no root -> CODEC_XML_SYNTAX 400', () => {
    const cases = [
      valid.slice(0, -10), // unterminated
      valid.slice(0, -1),
      valid.replace('</SyncHdr>', '</SyncHeader>'), // mismatched
      valid.replace('</MsgID>', '</msgid>'),
      valid + valid, // two roots
      valid + '<Final/>',
      'junk' + valid, // text outside the root
      valid + ' trailing text',
      valid + '&amp;',
      '',
      '   \n ',
      '<!-- only a comment -->',
      '<?xml version="1.0"?>',
      '<SyncML',
      '<SyncML xmlns="SYNCML:SYNCML1.2"',
      '<SyncML xmlns=SYNCML></SyncML>',
      '<SyncML xmlns="SYNCML:SYNCML1.2></SyncML>',
      '<SyncML a></SyncML>',
      '<SyncML/ >',
      '< SyncML/>',
      '</SyncML>',
      '<SyncML><!-- unterminated comment </SyncML>',
      '<SyncML><![CDATA[ unterminated </SyncML>',
      '<SyncML><? unterminated PI </SyncML>',
      '<![CDATA[x]]><SyncML/>',
    ];
    for (const x of cases) expectCodecError(() => decodeSyncML(x, 'xml'), 'CODEC_XML_SYNTAX', 400);
  });

  it('over-deep nesting -> CODEC_TOO_DEEP 413 (64 levels are accepted by the reader)', () => {
    const nest = (n: number): string => '<Atomic><CmdID>1</CmdID>'.repeat(n) + '</Atomic>'.repeat(n);
    // SyncML/SyncBody + n Atomics + CmdID: depth n + 3
    expect(decodeSyncML(withBody(nest(61)), 'xml').body).toHaveLength(1);
    expectCodecError(() => decodeSyncML(withBody(nest(62)), 'xml'), 'CODEC_TOO_DEEP', 413);
    expectCodecError(() => decodeSyncML('<a>'.repeat(100_000), 'xml'), 'CODEC_TOO_DEEP', 413);
    expectCodecError(() => decodeSyncML(withBody(nest(5)), 'xml', { ...DEFAULT_LIMITS, maxDepth: 7 }), 'CODEC_TOO_DEEP', 413);
  });

  it('too many elements -> CODEC_TOO_MANY_ELEMENTS 413', () => {
    const many = withBody('<Final/>'.repeat(1000));
    expect(decodeSyncML(many, 'xml').final).toBe(true);
    expectCodecError(() => decodeSyncML(many, 'xml', { ...DEFAULT_LIMITS, maxElements: 1000 }), 'CODEC_TOO_MANY_ELEMENTS', 413);
    expectCodecError(() => decodeSyncML(withBody('<Final/>'.repeat(200_001)), 'xml'), 'CODEC_TOO_MANY_ELEMENTS', 413);
  });

  it('oversized input -> CODEC_TOO_LARGE 413, counted in UTF-8 bytes', () => {
    const x = utf8.encode(valid);
    expect(decodeSyncML(x, 'xml', { ...DEFAULT_LIMITS, maxBytes: x.byteLength })).toStrictEqual(p2());
    expectCodecError(() => decodeSyncML(x, 'xml', { ...DEFAULT_LIMITS, maxBytes: x.byteLength - 1 }), 'CODEC_TOO_LARGE', 413);
    expectCodecError(() => decodeSyncML(valid, 'xml', { ...DEFAULT_LIMITS, maxBytes: x.byteLength - 1 }), 'CODEC_TOO_LARGE', 413);
    const wide = withBody(`<Exec><CmdID>1</CmdID><Item><Data>${'€'.repeat(100)}</Data></Item></Exec>`);
    expect(wide.length).toBeLessThan(Buffer.byteLength(wide));
    expectCodecError(() => decodeSyncML(wide, 'xml', { ...DEFAULT_LIMITS, maxBytes: wide.length }), 'CODEC_TOO_LARGE', 413);
    expectCodecError(() => decodeSyncML(new Uint8Array(DEFAULT_LIMITS.maxBytes + 1), 'xml'), 'CODEC_TOO_LARGE', 413);
    expectCodecError(() => decodeSyncML(new Uint8Array(DEFAULT_LIMITS.maxBytes + 1), 'wbxml'), 'CODEC_TOO_LARGE', 413);
  });

  it('fuzz: random XML-ish strings', () => {
    fc.assert(
      fc.property(xmlSoupArb, (s) => {
        decodeOrCodecError(s, 'xml');
        const m = decodeOrCodecError(utf8.encode(s), 'xml');
        if (m) expectStable(m, 'xml');
      }),
      { numRuns: 3000 },
    );
  });

  it('fuzz: random strings inside a valid message body', () => {
    let decoded = 0;
    fc.assert(
      fc.property(xmlSoupArb, (s) => {
        const m = decodeOrCodecError(utf8.encode(withBody(s)), 'xml');
        if (m) {
          decoded++;
          expectStable(m, 'xml');
        }
      }),
      { numRuns: 2000 },
    );
    expect(decoded).toBeGreaterThan(20); // the stability check is not vacuous
  });

  it('fuzz: mutated valid messages (insert, delete, replace, truncate, duplicate)', () => {
    let decoded = 0;
    let cases = 0;
    fc.assert(
      fc.property(xmlMessageArb, fc.array(mutationArb, { minLength: 1, maxLength: 3 }), (msg, muts) => {
        cases++;
        const s = mutate(xmlOf(msg), muts);
        const m = decodeOrCodecError(utf8.encode(s), 'xml');
        if (m) {
          decoded++;
          expectStable(m, 'xml');
        }
        expect(() => decodeHeaderOnly(utf8.encode(s), 'xml')).not.toThrow();
      }),
      { numRuns: FUZZ_RUNS },
    );
    reportFuzz('XML decoder', cases, `${decoded} decoded and stable, the rest CodecError`);
    expect(decoded).toBeGreaterThan(cases / 50); // the stability check is not vacuous
  }, FUZZ_TIMEOUT_MS);

  it('fuzz: mutated valid WBXML messages', () => {
    let decoded = 0;
    let cases = 0;
    fc.assert(
      fc.property(
        wbxmlMessageArb,
        fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }), kind: fc.constantFrom('set', 'insert', 'delete', 'truncate') }), { minLength: 1, maxLength: 5 }),
        (msg, muts) => {
          cases++;
          const b = [...encodeSyncML(msg, 'wbxml')];
          for (const mu of muts) {
            const at = b.length === 0 ? 0 : mu.at % b.length;
            if (mu.kind === 'set') b[at] = mu.value;
            else if (mu.kind === 'insert') b.splice(at, 0, mu.value);
            else if (mu.kind === 'delete') b.splice(at, 1);
            else b.length = at;
          }
          const m = decodeOrCodecError(new Uint8Array(b), 'wbxml');
          if (m) {
            decoded++;
            expectStable(m, 'wbxml');
          }
          expect(() => decodeHeaderOnly(new Uint8Array(b), 'wbxml')).not.toThrow();
        },
      ),
      { numRuns: FUZZ_RUNS },
    );
    reportFuzz('WBXML decoder', cases, `${decoded} decoded and stable, the rest CodecError`);
    expect(decoded).toBeGreaterThan(cases / 20); // the stability check is not vacuous
  }, FUZZ_TIMEOUT_MS);
});

describe('encoder input it cannot carry', () => {
  it('WBXML refuses text with an unpaired surrogate (CodecError), XML writes U+FFFD', () => {
    const m: SyncMLMessage = { hdr: HDR_MODEL, body: [{ kind: 'Exec', cmdID: '1', items: [{ target: { locURI: './x' }, data: 'a\uD800b' }] }], final: true };
    expectCodecError(() => encodeSyncML(m, 'wbxml'), 'CODEC_WBXML_TEXT');
    expect((decodeSyncML(encodeSyncML(m, 'xml'), 'xml').body[0] as ExecCommand).items[0]!.data).toBe('a\uFFFDb');
  });

  it('an Unsupported command with a name that has no WBXML token is refused by the WBXML writer', () => {
    const m: SyncMLMessage = { hdr: HDR_MODEL, body: [{ kind: 'Unsupported', name: 'Frobnicate', cmdID: '1' }], final: true };
    expectCodecError(() => encodeSyncML(m, 'wbxml'), 'CODEC_WBXML_UNKNOWN_TAG');
  });
});

// ----------------------------------------------------------------------------------------------
// The direct (tree-less) codec against the element-tree reference
// ----------------------------------------------------------------------------------------------

/** The outcome of a decode: the message, or the error's code and status. */
function outcome(fn: () => SyncMLMessage): { message: SyncMLMessage } | { code: string; status: number | undefined } {
  try {
    return { message: fn() };
  } catch (e) {
    if (!(e instanceof CodecError)) throw e;
    return { code: e.code, status: e.status };
  }
}

/** The direct reader either declines (undefined) or gives exactly the reference's message. */
function expectDirectAgrees(input: Uint8Array | string, enc: Encoding, limits = DEFAULT_LIMITS): boolean {
  const direct = decodeSyncMLDirect(input, enc, limits);
  const reference = outcome(() => decodeSyncMLViaTree(input, enc, limits));
  if (direct !== undefined) expect(reference).toStrictEqual({ message: direct });
  expect(outcome(() => decodeSyncML(input, enc, limits))).toStrictEqual(reference);
  return direct !== undefined;
}

describe('direct codec: same bytes, messages and errors as the element-tree path', () => {
  for (const enc of ['xml', 'wbxml'] as const) {
    it(`${enc}: the direct writer gives the reference bytes, and the direct reader reads them (not vacuous)`, () => {
      fc.assert(
        fc.property(GEN_FOR[enc], (m) => {
          const ref = encodeSyncMLViaTree(m, enc);
          const direct = encodeSyncMLDirect(m, enc);
          expect(direct).toBeDefined();
          expect(toHex(direct!)).toBe(toHex(ref));
          expect(decodeSyncMLDirect(ref, enc)).toStrictEqual(decodeSyncMLViaTree(ref, enc));
        }),
        { numRuns: 500 },
      );
    });

    it(`${enc}: loose messages: direct writer bytes (or its fallback) equal the reference; decodes agree`, () => {
      fc.assert(
        fc.property(looseMessageArb, (m) => {
          const ref = outcome(() => decodeSyncMLViaTree(encodeSyncMLViaTree(m, enc), enc));
          expect(toHex(encodeSyncML(m, enc))).toBe(toHex(encodeSyncMLViaTree(m, enc)));
          expectDirectAgrees(encodeSyncMLViaTree(m, enc), enc);
          expect('message' in ref).toBe(true);
        }),
        { numRuns: 300 },
      );
    });

    it(`${enc}: reordered children decode alike on both paths`, () => {
      let direct = 0;
      fc.assert(
        fc.property(GEN_FOR[enc], fc.integer(), (m, seed) => {
          const shuffled = shuffleTree(messageToElement(m), prng(seed));
          const bytes = enc === 'xml' ? writeXml(shuffled) : writeWbxml(shuffled);
          if (expectDirectAgrees(bytes, enc)) direct++;
        }),
        { numRuns: 300 },
      );
      expect(direct).toBeGreaterThan(250);
    });
  }

  it('realistic packages, pretty-printed XML with a declaration and comments, and tight limits agree', () => {
    for (const [, make] of PACKAGES) {
      const m = make();
      for (const enc of ['xml', 'wbxml'] as const) {
        const x = encodeSyncML(m, enc);
        expect(expectDirectAgrees(x, enc)).toBe(true);
        for (const limits of [
          { ...DEFAULT_LIMITS, maxBytes: x.byteLength },
          { ...DEFAULT_LIMITS, maxBytes: x.byteLength - 1 },
          { ...DEFAULT_LIMITS, maxDepth: 5 },
          { ...DEFAULT_LIMITS, maxDepth: 6 },
          { ...DEFAULT_LIMITS, maxElements: 10 },
        ]) {
          expectDirectAgrees(x, enc, limits);
        }
      }
      const pretty = `\uFEFF<?xml version="1.0" encoding="UTF-8"?>\n<!-- c -->${xmlOf(m).replace(/></g, '>\n  <')}\n<!-- end -->\n`;
      expect(expectDirectAgrees(pretty, 'xml')).toBe(true);
    }
  });

  it('fuzz: mutated XML messages give the reference message or the reference error', () => {
    let direct = 0;
    fc.assert(
      fc.property(xmlMessageArb, fc.array(mutationArb, { minLength: 1, maxLength: 3 }), (msg, muts) => {
        const s = mutate(xmlOf(msg), muts);
        if (expectDirectAgrees(utf8.encode(s), 'xml')) direct++;
        expectDirectAgrees(s, 'xml');
      }),
      { numRuns: Math.min(FUZZ_RUNS, 5000) },
    );
    expect(direct).toBeGreaterThan(50);
  }, FUZZ_TIMEOUT_MS);

  it('fuzz: random strings inside a valid body give the reference message or error', () => {
    fc.assert(
      fc.property(xmlSoupArb, (s) => {
        expectDirectAgrees(withBody(s), 'xml');
        expectDirectAgrees(s, 'xml');
      }),
      { numRuns: 3000 },
    );
  });

  it('fuzz: mutated WBXML messages give the reference message or the reference error', () => {
    let direct = 0;
    fc.assert(
      fc.property(
        wbxmlMessageArb,
        fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }), kind: fc.constantFrom('set', 'insert', 'delete', 'truncate') }), { minLength: 1, maxLength: 5 }),
        (msg, muts) => {
          const b = [...encodeSyncML(msg, 'wbxml')];
          for (const mu of muts) {
            const at = b.length === 0 ? 0 : mu.at % b.length;
            if (mu.kind === 'set') b[at] = mu.value;
            else if (mu.kind === 'insert') b.splice(at, 0, mu.value);
            else if (mu.kind === 'delete') b.splice(at, 1);
            else b.length = at;
          }
          if (expectDirectAgrees(new Uint8Array(b), 'wbxml')) direct++;
        },
      ),
      { numRuns: Math.min(FUZZ_RUNS, 5000) },
    );
    expect(direct).toBeGreaterThan(50);
  }, FUZZ_TIMEOUT_MS);

  it('large messages (over 64 KB: the writer scratch grows, the reader slices per string) agree', () => {
    const items: Item[] = Array.from({ length: 3000 }, (_, i) => ({
      target: { locURI: `./Vendor/Config/Param${i}` },
      data: i % 3 === 0 ? `value ${i} & <friends> Grüße 😀` : i % 3 === 1 ? `plain ${i}`.repeat(4) : new Uint8Array([i & 0xff, 0, 0xff]),
      ...(i % 3 === 2 ? { meta: { format: 'bin' } } : {}),
    }));
    const m: SyncMLMessage = { hdr: HDR_MODEL, body: [{ kind: 'Replace', cmdID: '1', items }], final: true };
    for (const enc of ['xml', 'wbxml'] as const) {
      const ref = encodeSyncMLViaTree(m, enc);
      expect(ref.byteLength).toBeGreaterThan(64 * 1024);
      expect(toHex(encodeSyncMLDirect(m, enc)!)).toBe(toHex(ref));
      expect(expectDirectAgrees(ref, enc)).toBe(true);
      // and a small message right after still encodes correctly (the scratch buffer was reset)
      const small = p1();
      expect(toHex(encodeSyncML(small, enc))).toBe(toHex(encodeSyncMLViaTree(small, enc)));
    }
  });

  it('unusual input is declined by the direct reader and handled by the reference path', () => {
    const cases = [
      '<s:SyncML xmlns:s="SYNCML:SYNCML1.2"/>',
      withBody('<Get><CmdID>1</CmdID><CmdID>2</CmdID><Item><Target><LocURI>./a</LocURI></Target></Item></Get>'),
      withBody('<Get><CmdID>1</CmdID><Meta><MetInf xmlns="syncml:metinf"><Type>t</Type></MetInf></Meta><Item><Target><LocURI>./a</LocURI></Target></Item></Get>'),
      withBody('<Replace><CmdID>1</CmdID><Item><Target><LocURI>./a</LocURI></Target><Data><x/></Data></Item></Replace>'),
      '<!DOCTYPE x><SyncML/>',
    ];
    for (const x of cases) {
      expect(decodeSyncMLDirect(x, 'xml')).toBeUndefined();
      expectDirectAgrees(x, 'xml');
    }
  });
});
