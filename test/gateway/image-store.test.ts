/**
 * The GwImageInventory store (notes §1.6, GwMO-DCIS-001..006): real LevelDB, real files, real HTTP
 * (a local source for downloads and a front server mounting `handle` for LocalURLs), and the MO
 * read and written through a real DmTree.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  IMAGE_MOID,
  IMAGE_STATE,
  IMAGES_ROOT,
  ImageStore,
  type ImageRecord,
  type ImageStoreOptions,
} from '../../src/gateway/images.ts';
import { type Store, openStore } from '../../src/store/store.ts';
import { DmTree, LOCAL, type NodeRecord } from '../../src/tree/tree.ts';
import { memoryLogger, tempDir } from '../support/fixtures.ts';

const S = { serverId: 'srv' };
const ACL = 'Get=srv&Replace=srv&Add=srv&Delete=srv&Exec=srv';
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const I = (p: string): string => `${IMAGES_ROOT}/${p}`;

async function listenOn(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ server: Server; url: string }> {
  const server = createServer(handler);
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

const closeServer = (s: Server): Promise<void> =>
  new Promise((ok) => {
    s.closeAllConnections();
    s.close(() => ok());
  });

/** Everything one test needs; `reopen` simulates a gateway restart on the same data directory. */
interface Bed {
  images: ImageStore;
  tree: DmTree;
  kv: Store;
  blobDir: string;
  lines: string[];
  /** Origin of the front server that mounts `images.handle`. */
  front: string;
  /** Origin of the download source; `hits` counts its requests by path. */
  source: string;
  hits: Map<string, number>;
  /** Bodies the source serves, by path. */
  files: Map<string, Uint8Array>;
  done: { name: string; status: number; correlator?: string }[];
  reopen(extra?: Partial<ImageStoreOptions>): Promise<void>;
  files_(): Promise<string[]>;
}

let bed: Bed;
let cleanup: (() => Promise<void>)[] = [];

/**
 * The source: `/slow/...` sends half, pauses 300 ms, then the rest; `/stall/...` sends half and
 * never ends; `/chunked/...` has no Content-Length.
 */
function sourceHandler(files: Map<string, Uint8Array>, hits: Map<string, number>) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    const body = files.get(path.replace(/^\/(slow|stall|chunked)/, ''));
    if (!body) {
      res.writeHead(404).end('nope');
      return;
    }
    if (path.startsWith('/chunked/')) {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      for (let i = 0; i < body.length; i += 1000) res.write(body.subarray(i, i + 1000));
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(body.length) });
    if (path.startsWith('/stall/')) res.write(body.subarray(0, body.length >> 1));
    else if (path.startsWith('/slow/')) {
      const half = Math.floor(body.length / 2);
      res.write(body.subarray(0, half));
      setTimeout(() => res.end(body.subarray(half)), 300);
    } else res.end(body);
  };
}

async function makeBed(extra: Partial<ImageStoreOptions> = {}): Promise<Bed> {
  const tmp = await tempDir('gwmo-images-');
  const dbDir = join(tmp.dir, 'db');
  const blobDir = join(tmp.dir, 'blobs');
  const { logger, lines } = memoryLogger('images');
  const files = new Map<string, Uint8Array>();
  const hits = new Map<string, number>();
  const src = await listenOn(sourceHandler(files, hits));
  let images: ImageStore | undefined;
  const front = await listenOn((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    void images!.handle(req, res, url).then((handled) => {
      if (!handled) res.writeHead(404, { 'content-type': 'text/plain' }).end('no route');
    });
  });
  const done: Bed['done'] = [];
  const open = async (kv: Store, more: Partial<ImageStoreOptions>): Promise<{ images: ImageStore; tree: DmTree }> => {
    const s = await ImageStore.open({
      dir: blobDir,
      records: kv.section<ImageRecord>('images'),
      settings: kv.section<unknown>('imageSettings'),
      baseUrl: () => front.url,
      log: logger,
      onDownloadDone: (name, status, correlator) => done.push({ name, status, ...(correlator !== undefined ? { correlator } : {}) }),
      ...extra,
      ...more,
    });
    const tree = await DmTree.open(kv.section<NodeRecord>('tree'));
    await tree.mount(IMAGES_ROOT, s.plugin(), { acl: ACL });
    return { images: s, tree };
  };
  const kv = await openStore(dbDir);
  const first = await open(kv, {});
  images = first.images;
  const b: Bed = {
    images: first.images,
    tree: first.tree,
    kv,
    blobDir,
    lines,
    front: front.url,
    source: src.url,
    hits,
    files,
    done,
    async reopen(more = {}) {
      await b.images.close();
      await b.kv.close();
      b.kv = await openStore(dbDir);
      const next = await open(b.kv, more);
      images = b.images = next.images;
      b.tree = next.tree;
    },
    files_: async () => (await readdir(blobDir)).sort(),
  };
  cleanup.push(async () => {
    await b.images.close();
    await b.kv.close();
    await closeServer(src.server);
    await closeServer(front.server);
    await tmp.cleanup();
  });
  return b;
}

afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

/** Adds `Images/<name>` and its leaves through the tree, as a server would. */
async function addImage(tree: DmTree, name: string, leaves: Record<string, string>): Promise<void> {
  await tree.add(I(`Images/${name}`), { format: 'node' }, S);
  for (const [k, v] of Object.entries(leaves)) await tree.add(I(`Images/${name}/${k}`), { format: 'chr', data: v }, S);
}

const leaf = async (tree: DmTree, p: string): Promise<string> => (await tree.get(I(p), S)).data;

async function rejection(p: Promise<unknown>): Promise<{ status?: number; code?: string }> {
  try {
    await p;
  } catch (err) {
    return err as { status?: number; code?: string };
  }
  throw new Error('expected a rejection');
}

describe('ImageStore: content addressing and dedup (DCIS dedup)', () => {
  beforeEach(async () => {
    bed = await makeBed();
  });

  it('keeps identical bytes in one file and counts them once', async () => {
    const bytes = randomBytes(5000);
    const hex = sha(bytes);
    expect(await bed.images.store('a', bytes, { kind: 'firmware', imageId: 'fw-1' })).toBe(200);
    expect(await bed.images.store('b', bytes)).toBe(200);
    expect(await bed.files_()).toEqual([hex]);
    expect(bed.images.usedBytes()).toBe(5000);
    expect(await leaf(bed.tree, 'Config/UsedBytes')).toBe('5000');
    expect(bed.images.get('a')).toMatchObject({ state: IMAGE_STATE.stored, size: 5000, hash: `sha256:${hex}`, kind: 'firmware', blob: hex });
    expect(bed.images.blobPath('a')).toBe(bed.images.blobPath('b'));
    expect(bed.images.byImageId('fw-1')?.name).toBe('a');
    expect(bed.images.byHash(`sha256:${hex}`)?.state).toBe(IMAGE_STATE.stored);
    expect(sha(await readFile(bed.images.blobPath('a')!))).toBe(hex);
  });

  it('with Dedup none gives each record its own file', async () => {
    expect((await bed.tree.replace(I('Config/Dedup'), { format: 'chr', data: 'none' }, S)).status).toBe(200);
    const bytes = randomBytes(3000);
    const hex = sha(bytes);
    expect(await bed.images.store('a', bytes)).toBe(200);
    expect(await bed.images.store('b', bytes)).toBe(200);
    expect(await bed.files_()).toEqual([`${hex}.a`, `${hex}.b`]);
    expect(bed.images.usedBytes()).toBe(6000);
    expect(await leaf(bed.tree, 'Config/UsedBytes')).toBe('6000');
    expect(bed.images.blobPath('a')).not.toBe(bed.images.blobPath('b'));
  });

  it('Delete removes the file only when no other record uses it', async () => {
    const bytes = randomBytes(1000);
    const other = randomBytes(700);
    await bed.images.store('a', bytes);
    await bed.images.store('b', bytes);
    await bed.images.store('c', other);
    expect(await bed.files_()).toEqual([sha(bytes), sha(other)].sort());
    expect((await bed.tree.delete(I('Images/a'), S)).status).toBe(200);
    expect(await bed.files_()).toEqual([sha(bytes), sha(other)].sort());
    expect(bed.images.get('a')).toBeUndefined();
    expect(bed.images.usedBytes()).toBe(1700);
    await bed.tree.delete(I('Images/b'), S);
    expect(await bed.files_()).toEqual([sha(other)]);
    expect(bed.images.usedBytes()).toBe(700);
    // A leaf cannot be deleted on its own.
    expect((await rejection(bed.tree.delete(I('Images/c/State'), S))).status).toBe(405);
  });

  it('replacing a record with new content frees the old file', async () => {
    const v1 = randomBytes(400);
    const v2 = randomBytes(600);
    await bed.images.store('a', v1);
    await bed.images.store('a', v2);
    expect(await bed.files_()).toEqual([sha(v2)]);
    expect(bed.images.usedBytes()).toBe(600);
    // Clearing Hash declares that the record no longer holds that image: the content goes.
    await bed.tree.replace(I('Images/a/Hash'), { format: 'chr', data: '' }, S);
    expect(bed.images.get('a')).toMatchObject({ state: IMAGE_STATE.empty });
    expect(bed.images.get('a')?.hash).toBeUndefined();
    expect(await bed.files_()).toEqual([]);
  });
});

describe('ImageStore: Download (Operations/Download)', () => {
  beforeEach(async () => {
    bed = await makeBed();
  });

  it('downloads from SourceURL and verifies the Hash', async () => {
    const bytes = randomBytes(20_000);
    bed.files.set('/fw.bin', bytes);
    await addImage(bed.tree, 'fw', { ImageID: 'fw-2', Kind: 'firmware', Version: '2.0.1', SourceURL: `${bed.source}/fw.bin`, Hash: `sha256:${sha(bytes)}` });
    expect(await leaf(bed.tree, 'Images/fw/State')).toBe('10');
    const r = await bed.tree.exec(I('Images/fw/Operations/Download'), { correlator: 'c-1' }, S);
    expect(r.status).toBe(200);
    expect(await leaf(bed.tree, 'Images/fw/State')).toBe('30');
    expect(await leaf(bed.tree, 'Images/fw/Size')).toBe('20000');
    expect(sha(await readFile(bed.images.blobPath('fw')!))).toBe(sha(bytes));
    expect(await bed.files_()).toEqual([sha(bytes)]);
    // Synchronous answers need no alert.
    expect(bed.done).toEqual([]);
  });

  it('a content mismatch ends in state 50 with status 400 and leaves no file', async () => {
    bed.files.set('/fw.bin', randomBytes(5000));
    await addImage(bed.tree, 'fw', { Kind: 'firmware', SourceURL: `${bed.source}/fw.bin`, Hash: `sha256:${sha(randomBytes(10))}` });
    expect((await bed.tree.exec(I('Images/fw/Operations/Download'), {}, S)).status).toBe(400);
    expect(bed.images.get('fw')).toMatchObject({ state: IMAGE_STATE.verificationFailed });
    expect(bed.images.get('fw')?.error).toMatch(/does not match/);
    expect(await bed.files_()).toEqual([]);
    expect(bed.images.usedBytes()).toBe(0);
    expect(bed.images.localUrl('fw')).toBeUndefined();
    expect((await rejection(bed.tree.get(I('Images/fw/LocalURL'), S))).status).toBe(404);
  });

  it('a source error ends in state 40; Download without SourceURL is 412', async () => {
    await addImage(bed.tree, 'gone', { Kind: 'software', SourceURL: `${bed.source}/missing.bin` });
    expect((await bed.tree.exec(I('Images/gone/Operations/Download'), {}, S)).status).toBe(500);
    expect(bed.images.get('gone')).toMatchObject({ state: IMAGE_STATE.downloadFailed });
    expect(bed.images.get('gone')?.error).toMatch(/HTTP 404/);
    await addImage(bed.tree, 'nosrc', { Kind: 'software' });
    expect(await rejection(bed.tree.exec(I('Images/nosrc/Operations/Download'), {}, S))).toMatchObject({ status: 412, code: 'GW_IMAGE_NO_SOURCE' });
    expect(await bed.files_()).toEqual([]);
  });

  it('a Delete during the download drops its result', async () => {
    bed.files.set('/big.bin', randomBytes(40_000));
    await addImage(bed.tree, 'big', { Kind: 'firmware', SourceURL: `${bed.source}/slow/big.bin` });
    const p = bed.images.download('big');
    await vi.waitFor(() => expect(bed.images.get('big')?.state).toBe(IMAGE_STATE.downloading));
    await bed.tree.delete(I('Images/big'), S);
    expect(await p).toBe(404);
    expect(bed.images.get('big')).toBeUndefined();
    expect(await bed.kv.section<ImageRecord>('images').get('big')).toBeUndefined();
    expect(await bed.files_()).toEqual([]);
  });

  it('a source that stops sending times out (state 40)', async () => {
    await bed.reopen({ fetchTimeoutMs: 200 });
    bed.files.set('/x.bin', randomBytes(10_000));
    await addImage(bed.tree, 'x', { Kind: 'software', SourceURL: `${bed.source}/stall/x.bin` });
    expect((await bed.tree.exec(I('Images/x/Operations/Download'), {}, S)).status).toBe(500);
    expect(bed.images.get('x')).toMatchObject({ state: IMAGE_STATE.downloadFailed });
    expect(bed.images.get('x')?.error).toMatch(/no data from the source/);
    expect(await bed.files_()).toEqual([]);
  });

  it('does not fetch content whose Hash is already stored (dedup hash)', async () => {
    const bytes = randomBytes(3000);
    await bed.images.store('a', bytes);
    bed.files.set('/copy.bin', bytes);
    await addImage(bed.tree, 'b', { Kind: 'firmware', SourceURL: `${bed.source}/copy.bin`, Hash: `sha256:${sha(bytes)}` });
    expect((await bed.tree.exec(I('Images/b/Operations/Download'), {}, S)).status).toBe(200);
    expect(bed.hits.get('/copy.bin')).toBeUndefined();
    expect(bed.images.get('b')).toMatchObject({ state: IMAGE_STATE.stored, size: 3000 });
    expect(await bed.files_()).toEqual([sha(bytes)]);
    expect(bed.lines.some((l) => l.includes('image download skipped'))).toBe(true);
  });

  it('answers 202 past syncWaitMs, joins a second Exec, and reports through onDownloadDone', async () => {
    await bed.reopen({ syncWaitMs: 50 });
    const bytes = randomBytes(50_000);
    bed.files.set('/big.bin', bytes);
    await addImage(bed.tree, 'big', { Kind: 'firmware', SourceURL: `${bed.source}/slow/big.bin`, Hash: `sha256:${sha(bytes)}` });
    expect((await bed.tree.exec(I('Images/big/Operations/Download'), { correlator: 'c-1' }, S)).status).toBe(202);
    expect(await leaf(bed.tree, 'Images/big/State')).toBe('20');
    expect((await bed.tree.exec(I('Images/big/Operations/Download'), { correlator: 'c-2' }, S)).status).toBe(202);
    await vi.waitFor(() => expect(bed.done).toHaveLength(2), { timeout: 5000 });
    expect(bed.done).toEqual(
      expect.arrayContaining([
        { name: 'big', status: 200, correlator: 'c-1' },
        { name: 'big', status: 200, correlator: 'c-2' },
      ]),
    );
    expect(bed.hits.get('/slow/big.bin')).toBe(1);
    expect(await leaf(bed.tree, 'Images/big/State')).toBe('30');
    expect(sha(await readFile(bed.images.blobPath('big')!))).toBe(sha(bytes));
  });
});

describe('ImageStore: quota and Enabled', () => {
  beforeEach(async () => {
    bed = await makeBed({ defaults: { quotaBytes: 10_000 } });
  });

  it('refuses content beyond the quota with 420 and state 40, leaving no file', async () => {
    expect(await bed.images.store('big', randomBytes(12_000))).toBe(420);
    expect(bed.images.get('big')).toMatchObject({ state: IMAGE_STATE.downloadFailed });
    expect(bed.images.get('big')?.error).toMatch(/quota/);
    expect(await bed.files_()).toEqual([]);
    const small = randomBytes(6000);
    expect(await bed.images.store('s1', small)).toBe(200);
    expect(await bed.images.store('s2', randomBytes(6000))).toBe(420);
    // The same content again costs nothing.
    expect(await bed.images.store('s3', small)).toBe(200);
    expect(bed.images.usedBytes()).toBe(6000);
    expect(await bed.files_()).toEqual([sha(small)]);
  });

  it('caps a download at the space left, with and without Content-Length', async () => {
    await bed.images.store('s1', randomBytes(6000));
    bed.files.set('/big.bin', randomBytes(8000));
    await addImage(bed.tree, 'd1', { Kind: 'firmware', SourceURL: `${bed.source}/big.bin` });
    await addImage(bed.tree, 'd2', { Kind: 'firmware', SourceURL: `${bed.source}/chunked/big.bin` });
    expect((await bed.tree.exec(I('Images/d1/Operations/Download'), {}, S)).status).toBe(420);
    expect((await bed.tree.exec(I('Images/d2/Operations/Download'), {}, S)).status).toBe(420);
    expect(bed.images.get('d1')).toMatchObject({ state: IMAGE_STATE.downloadFailed });
    expect(bed.images.get('d2')).toMatchObject({ state: IMAGE_STATE.downloadFailed });
    expect(await bed.files_()).toHaveLength(1);
    expect(bed.images.usedBytes()).toBe(6000);
  });

  it('a disabled store refuses Download and Data with 406 but keeps serving stored images', async () => {
    const kept = randomBytes(500);
    await bed.images.store('kept', kept);
    const url = bed.images.localUrl('kept')!;
    bed.files.set('/fw.bin', randomBytes(100));
    await addImage(bed.tree, 'fw', { Kind: 'firmware', SourceURL: `${bed.source}/fw.bin` });
    await bed.tree.replace(I('Config/Enabled'), { format: 'bool', data: 'false' }, S);
    expect(bed.images.config().enabled).toBe(false);
    const want = { status: 406, code: 'GW_IMAGE_STORE_DISABLED' };
    expect(await rejection(bed.tree.exec(I('Images/fw/Operations/Download'), {}, S))).toMatchObject(want);
    expect(await rejection(bed.tree.replace(I('Images/fw/Data'), { format: 'b64', data: Buffer.from('hello').toString('base64') }, S))).toMatchObject(want);
    expect(await rejection(bed.images.store('x', randomBytes(10)))).toMatchObject(want);
    expect(bed.hits.size).toBe(0);
    expect(bed.images.get('fw')?.state).toBe(IMAGE_STATE.empty);
    expect(bed.images.get('x')).toBeUndefined();
    expect(await bed.files_()).toEqual([sha(kept)]);
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(sha(new Uint8Array(await res.arrayBuffer()))).toBe(sha(kept));
    // The setting is persisted.
    await bed.reopen();
    expect(bed.images.config()).toMatchObject({ enabled: false, quotaBytes: 10_000 });
  });
});

describe('ImageStore: LocalURL (signed, expiring) over HTTP', () => {
  beforeEach(async () => {
    bed = await makeBed();
  });

  it('serves the stored bytes; 403 bad signature, 410 expired, 404 unknown, 405 other methods', async () => {
    const bytes = randomBytes(70_000);
    await bed.images.store('fw', bytes, { kind: 'firmware' });
    const url = await leaf(bed.tree, 'Images/fw/LocalURL');
    expect(url).toMatch(new RegExp(`^${bed.front}/images/${sha(bytes)}\\?exp=\\d+&sig=[0-9a-f]{64}$`));
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/octet-stream');
    expect(res.headers.get('content-length')).toBe('70000');
    expect(res.headers.get('x-content-sha256')).toBe(sha(bytes));
    expect(sha(new Uint8Array(await res.arrayBuffer()))).toBe(sha(bytes));
    expect(bed.lines.some((l) => l.includes('image served'))).toBe(true);

    const head = await fetch(url, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe('70000');

    const u = new URL(url);
    const sig = u.searchParams.get('sig')!;
    u.searchParams.set('sig', (sig[0] === 'a' ? 'b' : 'a') + sig.slice(1));
    expect((await fetch(u)).status).toBe(403);
    const later = new URL(url);
    later.searchParams.set('exp', String(Number(later.searchParams.get('exp')) + 60));
    expect((await fetch(later)).status).toBe(403);
    expect((await fetch(`${bed.front}/images/${sha(bytes)}`)).status).toBe(403);

    // Signed two hours ago with a one-hour lifetime.
    const expired = bed.images.localUrl('fw', Date.now() - 7_200_000)!;
    expect((await fetch(expired)).status).toBe(410);

    expect((await fetch(url, { method: 'POST' })).status).toBe(405);
    const other = await fetch(`${bed.front}/dm`);
    expect(await other.text()).toBe('no route');

    // Validly signed, but the content is gone.
    await bed.tree.delete(I('Images/fw'), S);
    expect((await fetch(url)).status).toBe(404);
  });

  it('URLLifetime sets the expiry of new links', async () => {
    await bed.images.store('fw', randomBytes(10));
    await bed.tree.replace(I('Config/URLLifetime'), { format: 'int', data: '1' }, S);
    const now = Date.now();
    const exp = Number(new URL(bed.images.localUrl('fw', now)!).searchParams.get('exp'));
    expect(exp).toBe(Math.floor(now / 1000) + 1);
    expect((await fetch(bed.images.localUrl('fw', now - 5000)!)).status).toBe(410);
    expect((await rejection(bed.tree.replace(I('Config/URLLifetime'), { format: 'int', data: '0' }, S))).status).toBe(400);
  });
});

describe('ImageStore: the MO through a DmTree', () => {
  beforeEach(async () => {
    bed = await makeBed();
  });

  it('serves the nodes and leaves of §1.6 and checks values', async () => {
    const root = await bed.tree.get(IMAGES_ROOT, S);
    expect(root).toMatchObject({ format: 'node', type: IMAGE_MOID, data: 'Images/Config' });
    expect(await leaf(bed.tree, 'Config')).toBe('Enabled/Dedup/QuotaBytes/UsedBytes/URLLifetime');
    expect(await leaf(bed.tree, 'Config/QuotaBytes')).toBe(String(1024 ** 3));
    expect(await leaf(bed.tree, 'Config/Dedup')).toBe('hash');

    await addImage(bed.tree, 'cfg1', { ImageID: 'c-7', Name: 'thermostat profile', Kind: 'config', TargetModels: 'Acme:T1/Acme:T2' });
    expect(await leaf(bed.tree, 'Images')).toBe('cfg1');
    expect(await leaf(bed.tree, 'Images/cfg1')).toBe('ImageID/Name/Kind/TargetModels/Data/State/Operations');
    expect(await leaf(bed.tree, 'Images/cfg1/Name')).toBe('thermostat profile');
    expect(await leaf(bed.tree, 'Images/cfg1/Operations')).toBe('Download');
    expect((await rejection(bed.tree.add(I('Images/cfg1'), { format: 'node' }, S))).status).toBe(418);

    // Value checks.
    for (const [p, v] of [
      ['Kind', 'kernel'],
      ['Hash', 'md5:abc'],
      ['Hash', `sha256:${'A'.repeat(64)}`],
      ['SourceURL', 'ftp://example.com/x'],
      ['SourceURL', 'not a url'],
    ] as const) {
      const err = await rejection(
        p === 'Kind' ? bed.tree.replace(I(`Images/cfg1/${p}`), { format: 'chr', data: v }, S) : bed.tree.add(I(`Images/cfg1/${p}`), { format: 'chr', data: v }, S),
      );
      expect(err, `${p}=${v}`).toMatchObject({ status: 400, code: 'GW_IMAGE_BAD_VALUE' });
    }
    expect((await rejection(bed.tree.replace(I('Config/Dedup'), { format: 'chr', data: 'maybe' }, S))).status).toBe(400);

    // Data: written with Replace (b64), never readable; read-only leaves refuse Replace.
    const text = '<profile setpoint="21"/>';
    expect((await bed.tree.replace(I('Images/cfg1/Data'), { format: 'b64', data: Buffer.from(text).toString('base64') }, S)).status).toBe(200);
    expect((await rejection(bed.tree.get(I('Images/cfg1/Data'), S))).status).toBe(405);
    expect(await leaf(bed.tree, 'Images/cfg1/State')).toBe('30');
    expect(await leaf(bed.tree, 'Images/cfg1/Size')).toBe(String(text.length));
    expect(await leaf(bed.tree, 'Images/cfg1/Hash')).toBe(`sha256:${sha(Buffer.from(text))}`);
    expect(await leaf(bed.tree, 'Images/cfg1/LocalURL')).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/images\//);
    expect((await rejection(bed.tree.replace(I('Images/cfg1/State'), { format: 'int', data: '30' }, S))).status).toBe(405);
    expect((await rejection(bed.tree.replace(I('Config/UsedBytes'), { format: 'int', data: '0' }, S))).status).toBe(405);
    expect(await readFile(bed.images.blobPath('cfg1')!, 'utf8')).toBe(text);
    expect(bed.images.byImageId('c-7')?.kind).toBe('config');

    // A Data push that does not match the declared Hash.
    await addImage(bed.tree, 'p2', { Kind: 'firmware', Hash: `sha256:${sha(Buffer.from('expected'))}` });
    expect((await bed.tree.replace(I('Images/p2/Data'), { format: 'bin', data: new Uint8Array(Buffer.from('other')) }, S)).status).toBe(400);
    expect(await leaf(bed.tree, 'Images/p2/State')).toBe('50');

    // A new Hash on stored content names another image: the content is dropped.
    await bed.tree.replace(I('Images/cfg1/Hash'), { format: 'chr', data: `sha256:${'0'.repeat(64)}` }, S);
    expect(await leaf(bed.tree, 'Images/cfg1/State')).toBe('10');
    expect(await bed.files_()).toEqual([]);

    // The device's own code (LOCAL) sees the same MO.
    expect((await bed.tree.get(I('Images/p2/State'), LOCAL)).data).toBe('50');
  });
});

describe('ImageStore: restart', () => {
  beforeEach(async () => {
    bed = await makeBed();
  });

  it('keeps records, files, the URL key; repairs interrupted downloads and cleans the directory', async () => {
    const bytes = randomBytes(4000);
    await bed.images.store('a', bytes, { kind: 'firmware', version: '1.0' });
    const url = bed.images.localUrl('a')!;
    // A download cut off by a crash, a temp file and an orphan file left behind.
    await bed.kv.section<ImageRecord>('images').put('stuck', { name: 'stuck', state: IMAGE_STATE.downloading, sourceUrl: 'http://127.0.0.1:1/x' });
    await writeFile(join(bed.blobDir, '.tmp-deadbeef'), randomBytes(100));
    await writeFile(join(bed.blobDir, 'f'.repeat(64)), randomBytes(100));
    await writeFile(join(bed.blobDir, 'README'), 'not ours');

    await bed.reopen();
    expect(bed.images.get('a')).toMatchObject({ state: IMAGE_STATE.stored, size: 4000, version: '1.0', kind: 'firmware' });
    expect(bed.images.get('stuck')).toMatchObject({ state: IMAGE_STATE.downloadFailed, error: 'interrupted by restart' });
    expect(await leaf(bed.tree, 'Images/stuck/State')).toBe('40');
    expect(await bed.files_()).toEqual(['README', sha(bytes)].sort());
    expect(bed.images.usedBytes()).toBe(4000);
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(sha(new Uint8Array(await res.arrayBuffer()))).toBe(sha(bytes));

    // The repair was persisted, not only applied in memory.
    expect(await bed.kv.section<ImageRecord>('images').get('stuck')).toMatchObject({ state: IMAGE_STATE.downloadFailed });
  });
});
