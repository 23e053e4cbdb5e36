/**
 * The GwMO image/configuration store (notes §1.6 GwImageInventory MO, PROPOSED design,
 * GwMO-DCIS-001..006): the server puts firmware, software or configuration blobs on the gateway,
 * either pushed (`Images/<x>/Data`) or pulled from a `SourceURL` (`Operations/Download`), and end
 * devices or child gateways then fetch them from the gateway's own listener at a signed, expiring
 * `LocalURL` (the "download once, fan out locally" use of §1.6).
 *
 * Storage: records in a store Section, bytes as files in one directory. Files are content-addressed
 * by their sha256 so identical images are kept once (DCIS dedup); with dedup `none` each record
 * gets its own file. Invariant: a record references a file (`blob`) exactly when it is Stored (30);
 * a file with no Stored record referencing it is deleted, so UsedBytes is the size of the files on
 * disk. Files are written to a temp file and renamed, and renamed before their record is written (a
 * crash leaves at worst an orphan file, removed on the next open, never a record without its file).
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, stat, unlink } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { DmStatusError, GwError, describeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Section } from '../store/store.ts';
import type { ExecArgs, ExecResult, OpResult, PluginNodeView, PluginWrite, TreePlugin } from '../tree/tree.ts';import { tlsFetch, type TlsClientConfig } from '../transport/tls.ts';


/** Where the MO is mounted. */
export const IMAGES_ROOT = './GwMO/ImageInventory';
/** MOID (PROPOSED, notes §1.1). */
export const IMAGE_MOID = 'urn:oma:mo:oma-gwmo-imageinventory:1.1';
/** Meta Type of the Generic Alert that reports the end of an asynchronous Download (notes §1.6). */
export const IMAGE_DOWNLOAD_ALERT = 'urn:oma:at:gwmo:1.1:ImageDownload';
/** Values of `Images/<x>/State` (notes §1.6). */
export const IMAGE_STATE = { empty: 10, downloading: 20, stored: 30, downloadFailed: 40, verificationFailed: 50 } as const;

/** Kinds accepted in `Images/<x>/Kind`. */
export const IMAGE_KINDS = ['firmware', 'software', 'config'] as const;

/** One image record (`Images/<x>`). */
export interface ImageRecord {
  /** The node name `<x>`. */
  name: string;
  imageId?: string;
  version?: string;
  /** The `Name` leaf. */
  label?: string;
  kind?: string;
  targetModels?: string;
  /** Bytes of the stored content (set when Stored). */
  size?: number;
  /** `sha256:<hex>`: the expected hash (verified on store) and, once Stored, the content's hash. */
  hash?: string;
  sourceUrl?: string;
  /** One of IMAGE_STATE. */
  state: number;
  /** Why the last store or download failed. */
  error?: string;
  /** ISO 8601 time the content was stored. */
  storedAt?: string;
  /** File name in the blob directory; set exactly when state is Stored. */
  blob?: string;
}

/** The store's settings (`Config/*`), persisted in the settings section. */
export interface ImageStoreConfig {
  /** False: the server switched storage off; new data is refused, stored images stay downloadable. */
  enabled: boolean;
  /** `hash`: one file per distinct content; `none`: one file per record. */
  dedup: 'hash' | 'none';
  quotaBytes: number;
  /** Seconds a LocalURL stays valid. */
  urlLifetime: number;
}

/** Options of `ImageStore.open`. */
export interface ImageStoreOptions {
  /** Blob directory (created if missing). */
  dir: string;
  /** Image records. */
  records: Section<ImageRecord>;
  /** Persisted ImageStoreConfig and the URL signing key. */
  settings: Section<unknown>;
  /** First-run configuration (enabled true, dedup 'hash', quotaBytes 1 GiB, urlLifetime 3600); persisted settings win. */
  defaults?: Partial<ImageStoreConfig>;
  /** Origin of the gateway's southbound listener, e.g. 'http://127.0.0.1:4567'; read at each LocalURL. */
  baseUrl: () => string;
  /** URL path prefix of the blob route, default '/images'. */
  path?: string;
  log: Logger;
  /** Called when a Download whose Exec was answered 202 ends (the gateway sends IMAGE_DOWNLOAD_ALERT). */
  onDownloadDone?: (name: string, status: number, correlator?: string) => void;
  /** How long Exec Download holds its answer before answering 202 (default 10000 ms). */
  syncWaitMs?: number;
  /** A download that receives nothing for this long is aborted (default 60000 ms). */
  fetchTimeoutMs?: number;
  /** TLS for https sources (the parent's store): the CA to trust and, for mutual TLS, this gateway's certificate. */
  tls?: TlsClientConfig;
}

const GiB = 1024 * 1024 * 1024;
const DEFAULTS: ImageStoreConfig = { enabled: true, dedup: 'hash', quotaBytes: GiB, urlLifetime: 3600 };
const CONFIG_KEY = 'config';
const URL_KEY = 'urlKey';
const TMP_PREFIX = '.tmp-';
/** Blob file names: `<sha256 hex>` (dedup hash) or `<sha256 hex>.<encoded record name>` (dedup none). */
const BLOB_NAME = /^[0-9a-f]{64}(?:\.[^/\\]+)?$/;
const HASH = /^sha256:[0-9a-f]{64}$/;
/** The tree's int Format is 32-bit signed (notes §3.8), so that is the largest value a server can set. */
const MAX_INT = 2147483647;

// DM statuses of the outcomes a store or download records in State (notes §1.6 leaves the codes open):
/** Verification failure (content does not match Hash): 400, the data the server supplied is wrong. */
const STATUS_VERIFY_FAILED = 400;
/** Quota exceeded: 420 Device full. */
const STATUS_DEVICE_FULL = 420;
/** Source unreachable, HTTP error, timeout, local I/O error. */
const STATUS_DOWNLOAD_FAILED = 500;

const rel = (p: string): string => `${IMAGES_ROOT}/${p}`;
const notFound = (p: string): DmStatusError => new DmStatusError(404, 'GW_IMAGE_NOT_FOUND', `${rel(p)} does not exist`);
const notAllowed = (p: string): DmStatusError => new DmStatusError(405, 'GW_IMAGE_NOT_ALLOWED', `command not allowed on ${rel(p)}`);
const badValue = (p: string, why: string): DmStatusError => new DmStatusError(400, 'GW_IMAGE_BAD_VALUE', `${rel(p)}: ${why}`);
const busy = (name: string): DmStatusError => new DmStatusError(409, 'GW_IMAGE_BUSY', `${rel(`Images/${name}`)}: a Download is running for this image`);
const disabled = (): DmStatusError =>
  new DmStatusError(406, 'GW_IMAGE_STORE_DISABLED', 'the image store is disabled (Config/Enabled is false); no new data is accepted');

/** A failure of a store or download that is recorded in the record's State. */
class Outcome extends Error {
  constructor(
    readonly state: number,
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const split = (path: string): [string, string] => {
  const i = path.indexOf('/');
  return i < 0 ? [path, ''] : [path.slice(0, i), path.slice(i + 1)];
};

const isHttpUrl = (s: string): boolean => {
  try {
    const u = new URL(s);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
};

const parseIntLeaf = (p: string, data: string | undefined, min: number): number => {
  const s = (data ?? '').trim();
  if (!/^[+-]?\d+$/.test(s)) throw badValue(p, `${JSON.stringify(s)} is not an integer`);
  const n = Number(s);
  if (n < min || n > MAX_INT) throw badValue(p, `${n} is out of range ${min}..${MAX_INT}`);
  return n;
};

/** The GwImageInventory store and its DM tree plugin (notes §1.6). */
export class ImageStore {
  private readonly dir: string;
  private readonly prefix: string;
  private readonly records = new Map<string, ImageRecord>();
  /** Blob files on disk (all referenced by a Stored record), with their sizes. */
  private readonly blobs = new Map<string, number>();
  /** Downloads in progress by record name; a second Exec joins the first. */
  private readonly running = new Map<string, { promise: Promise<number>; abort: AbortController }>();
  private cfg: ImageStoreConfig;
  private key: Buffer = Buffer.alloc(0);
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;
  private readonly syncWaitMs: number;
  private readonly fetchTimeoutMs: number;

  private constructor(private readonly opts: ImageStoreOptions) {
    this.dir = resolve(opts.dir);
    this.prefix = (opts.path ?? '/images').replace(/\/+$/, '');
    this.cfg = { ...DEFAULTS, ...opts.defaults };
    this.syncWaitMs = opts.syncWaitMs ?? 10_000;
    this.fetchTimeoutMs = opts.fetchTimeoutMs ?? 60_000;
  }

  /** Opens the store: loads records and settings, cleans the blob directory, repairs interrupted downloads. */
  static async open(opts: ImageStoreOptions): Promise<ImageStore> {
    const s = new ImageStore(opts);
    await s.load();
    return s;
  }

  private async load(): Promise<void> {
    const log = this.opts.log;
    await mkdir(this.dir, { recursive: true });
    const saved = (await this.opts.settings.get(CONFIG_KEY)) as Partial<ImageStoreConfig> | undefined;
    if (saved) this.cfg = { ...this.cfg, ...saved };
    const k = await this.opts.settings.get(URL_KEY);
    if (typeof k === 'string' && /^[0-9a-f]{64}$/.test(k)) this.key = Buffer.from(k, 'hex');
    else {
      // Generated once and persisted, so LocalURLs handed out before a restart stay valid.
      this.key = randomBytes(32);
      await this.opts.settings.put(URL_KEY, this.key.toString('hex'));
    }

    const onDisk = new Map<string, number>();
    for (const f of await readdir(this.dir)) {
      if (f.startsWith(TMP_PREFIX)) {
        // A write or download cut off by a crash.
        await unlink(join(this.dir, f)).catch(() => {});
        continue;
      }
      if (!BLOB_NAME.test(f)) continue; // not ours: neither counted nor touched
      const st = await stat(join(this.dir, f)).catch(() => undefined);
      if (st?.isFile()) onDisk.set(f, st.size);
    }

    const fixes: [string, ImageRecord][] = [];
    for (const [name, rec] of await this.opts.records.entries()) {
      if (rec.state === IMAGE_STATE.downloading) {
        rec.state = IMAGE_STATE.downloadFailed;
        rec.error = 'interrupted by restart';
        delete rec.blob;
        fixes.push([name, rec]);
        log.warn('image download interrupted by restart', { image: name });
      } else if (rec.state === IMAGE_STATE.stored && (!rec.blob || !onDisk.has(rec.blob))) {
        rec.state = IMAGE_STATE.downloadFailed;
        rec.error = 'stored file missing';
        delete rec.blob;
        fixes.push([name, rec]);
        log.warn('stored image file is missing', { image: name });
      } else if (rec.state !== IMAGE_STATE.stored && rec.blob !== undefined) {
        delete rec.blob;
        fixes.push([name, rec]);
      }
      this.records.set(name, rec);
    }
    if (fixes.length > 0) await this.opts.records.batch(fixes);

    const referenced = new Set([...this.records.values()].flatMap((r) => (r.blob ? [r.blob] : [])));
    for (const [f, size] of onDisk) {
      if (referenced.has(f)) this.blobs.set(f, size);
      else {
        // Renamed into place just before a crash, before its record was written (see the header).
        await unlink(join(this.dir, f)).catch(() => {});
        log.info('removed unreferenced image file', { file: f, bytes: size });
      }
    }
  }

  /** Stops running downloads (they stay Downloading in the store and become 40 on the next open) and waits for them. */
  async close(): Promise<void> {
    this.closed = true;
    const pending = [...this.running.values()];
    for (const r of pending) r.abort.abort();
    await Promise.allSettled(pending.map((r) => r.promise));
    await this.tail.catch(() => {});
  }

  // ---------------------------------------------------------------- reads

  /** The current configuration (a copy). */
  config(): ImageStoreConfig {
    return { ...this.cfg };
  }

  /** The record named `name` (a copy). */
  get(name: string): ImageRecord | undefined {
    const r = this.records.get(name);
    return r && { ...r };
  }

  /** The first record with that ImageID (a copy). */
  byImageId(imageId: string): ImageRecord | undefined {
    for (const r of this.records.values()) if (r.imageId === imageId) return { ...r };
    return undefined;
  }

  /** A Stored record whose content has that hash (`sha256:<hex>`), a copy. */
  byHash(hash: string): ImageRecord | undefined {
    const r = this.storedByHash(hash);
    return r && { ...r };
  }

  private storedByHash(hash: string): ImageRecord | undefined {
    for (const r of this.records.values()) if (r.state === IMAGE_STATE.stored && r.hash === hash && r.blob && this.blobs.has(r.blob)) return r;
    return undefined;
  }

  /** Bytes of the files on disk (shared content counted once). */
  usedBytes(): number {
    let n = 0;
    for (const size of this.blobs.values()) n += size;
    return n;
  }

  /** Absolute path of the stored file of `name`, when Stored. */
  blobPath(name: string): string | undefined {
    const r = this.records.get(name);
    return r?.state === IMAGE_STATE.stored && r.blob ? join(this.dir, r.blob) : undefined;
  }

  /** A signed URL valid for `urlLifetime` seconds from `now` (ms since the epoch), when Stored. */
  localUrl(name: string, now: number = Date.now()): string | undefined {
    const r = this.records.get(name);
    if (r?.state !== IMAGE_STATE.stored || !r.blob) return undefined;
    const exp = Math.floor(now / 1000) + this.cfg.urlLifetime;
    return `${this.opts.baseUrl()}${this.prefix}/${encodeURIComponent(r.blob)}?exp=${exp}&sig=${this.sign(r.blob, exp)}`;
  }

  private sign(blob: string, exp: number | string): string {
    return createHmac('sha256', this.key).update(`${blob}.${exp}`).digest('hex');
  }

  // ---------------------------------------------------------------- writes

  /** Runs `fn` after every earlier mutation: record, file and quota changes are serialised. */
  private lock<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn, fn);
    this.tail = run.catch(() => {});
    return run;
  }

  private save(rec: ImageRecord): Promise<void> {
    return this.opts.records.put(rec.name, rec);
  }

  /**
   * The file that holds content `hex` for record `name`, and whether it is already on disk. With
   * dedup `hash` any file with that content is shared, also one named per record while dedup was
   * `none`; with `none` each record has its own file (the record name goes through
   * encodeURIComponent so the file name never holds a separator).
   */
  private blobFor(name: string, hex: string): { blob: string; exists: boolean } {
    if (this.cfg.dedup === 'none') {
      const blob = `${hex}.${encodeURIComponent(name)}`;
      return { blob, exists: this.blobs.has(blob) };
    }
    if (this.blobs.has(hex)) return { blob: hex, exists: true };
    for (const b of this.blobs.keys()) if (b.startsWith(`${hex}.`)) return { blob: b, exists: true };
    return { blob: hex, exists: false };
  }

  /** Deletes `blob` when no Stored record references it any more. */
  private async releaseIfUnused(blob: string | undefined): Promise<void> {
    if (!blob) return;
    for (const r of this.records.values()) if (r.blob === blob) return;
    this.blobs.delete(blob);
    await unlink(join(this.dir, blob)).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.opts.log.warn('cannot delete image file', { file: blob, err: describeError(err) });
    });
  }

  /** Drops the content of `rec` (in memory only; the caller saves the record and then releases the returned blob). */
  private dropContent(rec: ImageRecord): string | undefined {
    const old = rec.blob;
    delete rec.blob;
    delete rec.size;
    delete rec.storedAt;
    return old;
  }

  /** Records a failed store/download: state, error, no content. Runs under the lock. */
  private async recordFailure(rec: ImageRecord, o: Outcome): Promise<number> {
    const old = this.dropContent(rec);
    rec.state = o.state;
    rec.error = o.message;
    if (this.records.get(rec.name) === rec) await this.save(rec);
    await this.releaseIfUnused(old);
    this.opts.log.warn('image not stored', { image: rec.name, state: o.state, status: o.status, error: o.message });
    return o.status;
  }

  /**
   * Makes `blob` (already on disk, or `tmp` to be renamed to it) the content of `rec`. Checks the
   * quota, counting a file that already exists (dedup) as free and the record's previous file as
   * freed when nobody else uses it. Runs under the lock.
   */
  private async commit(rec: ImageRecord, hex: string, size: number, tmp: string | undefined): Promise<number> {
    const { blob, exists } = this.blobFor(rec.name, hex);
    if (!exists) {
      const old = rec.blob;
      const oldFreed = old && old !== blob && ![...this.records.values()].some((r) => r !== rec && r.blob === old) ? (this.blobs.get(old) ?? 0) : 0;
      if (this.usedBytes() - oldFreed + size > this.cfg.quotaBytes) {
        throw new Outcome(IMAGE_STATE.downloadFailed, STATUS_DEVICE_FULL, `quota exceeded: ${size} bytes do not fit (${this.usedBytes()} of ${this.cfg.quotaBytes} used)`);
      }
      if (tmp === undefined) throw new GwError('GW_IMAGE_INTERNAL', 'no data to store');
      await rename(tmp, join(this.dir, blob));
      this.blobs.set(blob, size);
    } else if (tmp !== undefined) {
      await unlink(tmp).catch(() => {});
    }
    const old = rec.blob;
    rec.blob = blob;
    rec.size = size;
    rec.hash = `sha256:${hex}`;
    rec.state = IMAGE_STATE.stored;
    rec.storedAt = new Date().toISOString();
    delete rec.error;
    await this.save(rec);
    if (old !== blob) await this.releaseIfUnused(old);
    this.opts.log.info('image stored', { image: rec.name, bytes: size, hash: rec.hash, shared: exists });
    return 200;
  }

  private async writeTemp(bytes: Uint8Array): Promise<string> {
    const tmp = join(this.dir, `${TMP_PREFIX}${randomBytes(8).toString('hex')}`);
    const fh = await open(tmp, 'wx');
    try {
      await fh.writeFile(bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
    return tmp;
  }

  /**
   * Stores `bytes` as the content of `name` (creating the record when missing), after applying
   * `fields` (identity and Hash; computed fields are ignored). Returns the DM status: 200 stored,
   * 400 content does not match Hash (state 50), 420 quota exceeded (state 40). Throws 406
   * `GW_IMAGE_STORE_DISABLED` when storage is off, 400 for invalid fields.
   */
  async store(name: string, bytes: Uint8Array, fields: Partial<ImageRecord> = {}): Promise<number> {
    if (!name || name.includes('/')) throw new DmStatusError(400, 'GW_IMAGE_BAD_NAME', `invalid image name ${JSON.stringify(name)}`);
    if (!this.cfg.enabled) throw disabled();
    return this.lock(async () => {
      if (!this.cfg.enabled) throw disabled();
      if (this.running.has(name)) throw busy(name);
      let rec = this.records.get(name);
      if (!rec) {
        rec = { name, state: IMAGE_STATE.empty };
        this.records.set(name, rec);
      }
      // A Hash passed here is what these bytes must match; otherwise the record's own (see expectedHash).
      const expected = fields.hash ?? expectedHash(rec);
      this.applyFields(rec, fields);
      return this.storeLocked(rec, bytes, expected);
    });
  }

  private async storeLocked(rec: ImageRecord, bytes: Uint8Array, expected: string | undefined): Promise<number> {
    const hex = createHash('sha256').update(bytes).digest('hex');
    try {
      verify(expected, hex);
      // Existing content (dedup) is not written again; the temp file is made only when needed.
      const tmp = this.blobFor(rec.name, hex).exists ? undefined : await this.writeTemp(bytes);
      try {
        return await this.commit(rec, hex, bytes.length, tmp);
      } catch (err) {
        if (tmp !== undefined) await unlink(tmp).catch(() => {});
        throw err;
      }
    } catch (err) {
      if (err instanceof Outcome) return this.recordFailure(rec, err);
      throw err;
    }
  }

  private applyFields(rec: ImageRecord, f: Partial<ImageRecord>): void {
    const p = `Images/${rec.name}`;
    if (f.kind !== undefined) checkKind(`${p}/Kind`, f.kind);
    if (f.hash !== undefined) checkHash(`${p}/Hash`, f.hash);
    if (f.sourceUrl !== undefined) checkUrl(`${p}/SourceURL`, f.sourceUrl);
    if (f.imageId !== undefined) rec.imageId = f.imageId;
    if (f.version !== undefined) rec.version = f.version;
    if (f.label !== undefined) rec.label = f.label;
    if (f.kind !== undefined) rec.kind = f.kind;
    if (f.targetModels !== undefined) rec.targetModels = f.targetModels;
    if (f.hash !== undefined) rec.hash = f.hash;
    if (f.sourceUrl !== undefined) rec.sourceUrl = f.sourceUrl;
  }

  /**
   * Fetches the record's SourceURL, verifies it against Hash and stores it. The Hash is checked
   * whatever its origin (declared, or computed when earlier content was stored): bytes from a third
   * party have no other integrity anchor, and under one Hash the record holds one content (with
   * dedup `hash` a Download of a Stored record is a no-op for the same reason). To fetch different
   * content the server changes or clears Hash first, which empties the record. Resolves to the DM
   * status (200 stored; 400 verification failed, state 50; 420 quota, 500 source/transfer failure,
   * state 40); a download already running for `name` is joined. With dedup `hash` and content of
   * the record's Hash already stored, it completes at once without fetching (and then needs no
   * SourceURL). Throws 404 (no record), 406 (disabled), 412 (no SourceURL).
   */
  async download(name: string, correlator?: string): Promise<number> {
    // Checks and registration are synchronous, so two concurrent Execs cannot both start a fetch.
    const rec = this.records.get(name);
    if (!rec) throw notFound(`Images/${name}`);
    if (this.closed) throw new GwError('GW_IMAGE_STORE_CLOSED', 'the image store is closed', { status: 500 });
    if (!this.cfg.enabled) throw disabled();
    const cur = this.running.get(name);
    if (cur) {
      this.opts.log.debug('joining running image download', { image: name, correlator });
      return cur.promise;
    }
    const shared = this.cfg.dedup === 'hash' && rec.hash !== undefined ? this.storedByHash(rec.hash) : undefined;
    if (!shared && !rec.sourceUrl) throw new DmStatusError(412, 'GW_IMAGE_NO_SOURCE', `${rel(`Images/${name}`)} needs SourceURL before Download`);
    const abort = new AbortController();
    const promise = this.runDownload(rec, abort.signal, shared?.name).finally(() => {
      if (this.running.get(name)?.abort === abort) this.running.delete(name);
    });
    this.running.set(name, { promise, abort });
    return promise;
  }

  private async runDownload(rec: ImageRecord, signal: AbortSignal, sharedWith: string | undefined): Promise<number> {
    const log = this.opts.log;
    if (sharedWith !== undefined) {
      const done = await this.lock(async () => {
        const other = rec.hash !== undefined ? this.storedByHash(rec.hash) : undefined;
        if (!other?.blob || this.records.get(rec.name) !== rec) return undefined;
        log.info('image download skipped: content already stored', { image: rec.name, hash: rec.hash, sharedWith: other.name });
        // commit finds the file present (dedup), so it neither writes nor counts it again.
        return this.commit(rec, other.blob.slice(0, 64), this.blobs.get(other.blob) ?? 0, undefined);
      });
      if (done !== undefined) return done;
      if (!rec.sourceUrl) return this.lock(() => this.recordFailure(rec, new Outcome(IMAGE_STATE.downloadFailed, 412, 'shared content vanished and there is no SourceURL')));
    }
    const url = rec.sourceUrl as string;
    let tmp: string | undefined;
    try {
      await this.lock(async () => {
        if (this.records.get(rec.name) !== rec) throw new GwError('GW_IMAGE_GONE', `image ${rec.name} was deleted`);
        // The previous content goes now: a record holds content only while Stored (see the header).
        const old = this.dropContent(rec);
        rec.state = IMAGE_STATE.downloading;
        delete rec.error;
        await this.save(rec);
        await this.releaseIfUnused(old);
      });
      log.info('image download started', { image: rec.name, url });
      const got = await this.fetchToTemp(url, signal);
      tmp = got.tmp;
      const t = tmp;
      return await this.lock(async () => {
        if (this.records.get(rec.name) !== rec) {
          log.info('image deleted during its download; result dropped', { image: rec.name });
          await unlink(t).catch(() => {});
          return 404;
        }
        // Always the record's Hash, whatever its origin (see download()); read now, so a Hash the
        // server set while the transfer ran is the one checked.
        verify(rec.hash, got.hex);
        return this.commit(rec, got.hex, got.size, t);
      });
    } catch (err) {
      if (tmp !== undefined) await unlink(tmp).catch(() => {});
      if (this.records.get(rec.name) !== rec) {
        log.info('image deleted during its download', { image: rec.name });
        return 404;
      }
      if (this.closed && signal.aborted) {
        // Left Downloading in the store on purpose: the next open marks it "interrupted by restart".
        log.info('image download stopped: store closing', { image: rec.name });
        return STATUS_DOWNLOAD_FAILED;
      }
      const o = err instanceof Outcome ? err : new Outcome(IMAGE_STATE.downloadFailed, STATUS_DOWNLOAD_FAILED, `download failed: ${describeError(err)}`);
      return this.lock(() => this.recordFailure(rec, o));
    }
  }

  /**
   * Streams `url` into a temp file, hashing as it goes. The size cap is the quota left now: without
   * a known Hash the gateway cannot tell before the end whether the content is a duplicate, so a
   * duplicate larger than the space left is refused too. The timeout is an idle timeout (reset by
   * every chunk), so a large image on a slow link is not cut off while it still makes progress.
   */
  private async fetchToTemp(url: string, outer: AbortSignal): Promise<{ tmp: string; hex: string; size: number }> {
    const ctl = new AbortController();
    const onOuter = (): void => ctl.abort(new GwError('GW_IMAGE_ABORTED', 'download aborted'));
    outer.addEventListener('abort', onOuter, { once: true });
    if (outer.aborted) onOuter();
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => ctl.abort(new GwError('GW_IMAGE_TIMEOUT', `no data from the source for ${this.fetchTimeoutMs} ms`)), this.fetchTimeoutMs);
    };
    const cap = Math.max(0, this.cfg.quotaBytes - this.usedBytes());
    const tooBig = (n: number): Outcome =>
      new Outcome(IMAGE_STATE.downloadFailed, STATUS_DEVICE_FULL, `quota exceeded: the image (${n} bytes or more) exceeds the ${cap} bytes left of ${this.cfg.quotaBytes}`);
    const tmp = join(this.dir, `${TMP_PREFIX}${randomBytes(8).toString('hex')}`);
    let fh: Awaited<ReturnType<typeof open>> | undefined;
    try {
      arm();
      const res = await tlsFetch(url, { signal: ctl.signal, redirect: 'follow' }, this.opts.tls);
      if (!res.ok || !res.body) {
        await res.body?.cancel().catch(() => {});
        throw new GwError('GW_IMAGE_SOURCE_HTTP', `source answered HTTP ${res.status}`);
      }
      const declared = Number(res.headers.get('content-length') ?? NaN);
      if (Number.isFinite(declared) && declared > cap) {
        await res.body.cancel().catch(() => {});
        throw tooBig(declared);
      }
      fh = await open(tmp, 'wx');
      const hash = createHash('sha256');
      let size = 0;
      for await (const chunk of res.body) {
        arm();
        size += chunk.length;
        if (size > cap) {
          ctl.abort();
          throw tooBig(size);
        }
        hash.update(chunk);
        await fh.write(chunk);
      }
      if (ctl.signal.aborted) throw ctl.signal.reason;
      await fh.sync();
      await fh.close();
      fh = undefined;
      return { tmp, hex: hash.digest('hex'), size };
    } catch (err) {
      await fh?.close().catch(() => {});
      await unlink(tmp).catch(() => {});
      // A fetch aborted by our own timer rejects with the reason we gave; keep that message.
      throw err instanceof Outcome ? err : ctl.signal.aborted && ctl.signal.reason instanceof GwError ? ctl.signal.reason : err;
    } finally {
      clearTimeout(timer);
      outer.removeEventListener('abort', onOuter);
    }
  }

  /** Exec Download: holds the answer up to syncWaitMs, then answers 202 and reports through onDownloadDone. */
  private async execDownload(name: string, args: ExecArgs): Promise<ExecResult> {
    const p = this.download(name, args.correlator);
    let timer: NodeJS.Timeout | undefined;
    const waited = await Promise.race([
      p.then((status) => ({ status })),
      new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), this.syncWaitMs))),
    ]).finally(() => clearTimeout(timer));
    if (waited) return waited;
    p.then(
      (status) => {
        try {
          this.opts.onDownloadDone?.(name, status, args.correlator);
        } catch (err) {
          this.opts.log.error('onDownloadDone failed', { image: name, err: describeError(err) });
        }
      },
      (err: unknown) => this.opts.log.error('image download failed unexpectedly', { image: name, err: describeError(err) }),
    );
    this.opts.log.debug('image download continues after 202', { image: name, correlator: args.correlator });
    return { status: 202 };
  }

  // ---------------------------------------------------------------- HTTP

  /**
   * Serves GET/HEAD of signed LocalURLs under the path prefix; returns false for other paths.
   * 403 bad signature, 410 expired, 404 unknown content, 405 other methods. Stored content stays
   * served while the store is disabled (disabled only refuses new data).
   */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
    if (url.pathname !== this.prefix && !url.pathname.startsWith(`${this.prefix}/`)) return false;
    const answer = (status: number, text: string, headers: Record<string, string> = {}): true => {
      res.writeHead(status, { 'content-type': 'text/plain', ...headers });
      res.end(req.method === 'HEAD' ? undefined : `${text}\n`);
      return true;
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return answer(405, 'method not allowed', { allow: 'GET, HEAD' });
    let blob: string;
    try {
      blob = decodeURIComponent(url.pathname.slice(this.prefix.length + 1));
    } catch {
      return answer(404, 'not found');
    }
    const exp = url.searchParams.get('exp') ?? '';
    const sig = url.searchParams.get('sig') ?? '';
    // Signature first, so an unsigned request learns nothing about what is stored.
    if (!BLOB_NAME.test(blob) || !/^\d{1,12}$/.test(exp) || !/^[0-9a-f]{64}$/.test(sig)) return answer(403, 'bad signature');
    if (!timingSafeEqual(Buffer.from(sig, 'hex'), Buffer.from(this.sign(blob, exp), 'hex'))) return answer(403, 'bad signature');
    if (Number(exp) * 1000 < Date.now()) return answer(410, 'link expired');
    const size = this.blobs.get(blob);
    if (size === undefined) return answer(404, 'not found');
    const file = join(this.dir, blob);
    const headers = { 'content-type': 'application/octet-stream', 'content-length': String(size), 'x-content-sha256': blob.slice(0, 64) };
    // Opened before the headers go out, so a file deleted meanwhile is still a clean 404.
    const stream = createReadStream(file);
    const opened = await new Promise<boolean>((ok) => {
      stream.once('open', () => ok(true));
      stream.once('error', () => ok(false));
    });
    if (!opened) return answer(404, 'not found');
    this.opts.log.debug('image served', { file: blob, bytes: size, method: req.method, from: req.socket.remoteAddress });
    res.writeHead(200, headers);
    if (req.method === 'HEAD') {
      stream.destroy();
      res.end();
      return true;
    }
    await pipeline(stream, res).catch((err: unknown) => this.opts.log.debug('image transfer ended early', { file: blob, err: describeError(err) }));
    return true;
  }

  // ---------------------------------------------------------------- tree plugin

  /** The DM tree plugin serving the MO, to be mounted at IMAGES_ROOT. */
  plugin(): TreePlugin {
    return {
      get: (path) => this.nodeView(path),
      children: (path) => this.childNames(path),
      add: (path, value) => this.addNode(path, value),
      replace: (path, value) => this.lock(() => this.setLeaf(path, value)),
      delete: (path) => this.deleteNode(path),
      exec: (path, args) => {
        const [top, rest] = split(path);
        if (top !== 'Images') throw notAllowed(path);
        const [name, leaf] = split(rest);
        if (!this.records.has(name)) throw notFound(path);
        if (leaf !== 'Operations/Download') throw notAllowed(path);
        return this.execDownload(name, args);
      },
    };
  }

  private nodeView(path: string): PluginNodeView | undefined {
    const c = this.cfg;
    switch (path) {
      case '':
        return { format: 'node', type: IMAGE_MOID };
      case 'Images':
        return { format: 'node', access: ['Get', 'Add'] };
      case 'Config':
        return { format: 'node', access: ['Get'] };
      case 'Config/Enabled':
        return { format: 'bool', data: String(c.enabled), access: ['Get', 'Replace'] };
      case 'Config/Dedup':
        return { format: 'chr', data: c.dedup, access: ['Get', 'Replace'] };
      case 'Config/QuotaBytes':
        return { format: 'int', data: String(c.quotaBytes), access: ['Get', 'Replace'] };
      case 'Config/UsedBytes':
        return { format: 'int', data: String(this.usedBytes()), access: ['Get'] };
      case 'Config/URLLifetime':
        return { format: 'int', data: String(c.urlLifetime), access: ['Get', 'Replace'] };
    }
    const [top, rest] = split(path);
    if (top !== 'Images') return undefined;
    const [name, leaf] = split(rest);
    const r = this.records.get(name);
    if (!r) return undefined;
    const rw = (v: string | undefined): PluginNodeView | undefined => (v === undefined ? undefined : { format: 'chr', data: v, access: ['Get', 'Replace'] });
    switch (leaf) {
      case '':
        return { format: 'node', access: ['Get', 'Add', 'Delete'] };
      case 'ImageID':
        return rw(r.imageId);
      case 'Name':
        return rw(r.label);
      case 'Version':
        return rw(r.version);
      case 'Kind':
        return rw(r.kind);
      case 'TargetModels':
        return rw(r.targetModels);
      case 'Hash':
        return rw(r.hash);
      case 'SourceURL':
        return rw(r.sourceUrl);
      case 'Size':
        return r.size === undefined ? undefined : { format: 'int', data: String(r.size), access: ['Get'] };
      case 'State':
        return { format: 'int', data: String(r.state), access: ['Get'] };
      case 'LocalURL': {
        // Computed at each Get, so every reader gets a link with a full lifetime.
        const u = this.localUrl(name);
        return u === undefined ? undefined : { format: 'chr', data: u, access: ['Get'] };
      }
      case 'Data':
        // Write-only (notes §1.6: access R): the node always exists so a Replace reaches it, but it is never readable.
        return { format: 'bin', access: ['Replace'] };
      case 'Operations':
        return { format: 'node', access: ['Get'] };
      case 'Operations/Download':
        return { format: 'null', access: ['Exec'] };
      default:
        return undefined;
    }
  }

  private childNames(path: string): string[] {
    if (path === '') return ['Images', 'Config'];
    if (path === 'Config') return ['Enabled', 'Dedup', 'QuotaBytes', 'UsedBytes', 'URLLifetime'];
    if (path === 'Images') return [...this.records.keys()];
    const [top, rest] = split(path);
    if (top !== 'Images') return [];
    const [name, leaf] = split(rest);
    const r = this.records.get(name);
    if (!r) return [];
    if (leaf === 'Operations') return ['Download'];
    if (leaf !== '') return [];
    const opt: [string, unknown][] = [
      ['ImageID', r.imageId],
      ['Name', r.label],
      ['Version', r.version],
      ['Kind', r.kind],
      ['TargetModels', r.targetModels],
      ['Size', r.size],
      ['Hash', r.hash],
      ['SourceURL', r.sourceUrl],
    ];
    return [
      ...opt.filter(([, v]) => v !== undefined).map(([k]) => k),
      'Data',
      ...(r.state === IMAGE_STATE.stored ? ['LocalURL'] : []),
      'State',
      'Operations',
    ];
  }

  private async addNode(path: string, value: PluginWrite): Promise<OpResult> {
    const [top, rest] = split(path);
    if (top !== 'Images' || rest === '') throw notAllowed(path);
    const [name, leaf] = split(rest);
    if (leaf === '') {
      if (value.format !== 'node') throw notAllowed(path);
      return this.lock(async () => {
        if (this.records.has(name)) throw new DmStatusError(418, 'GW_IMAGE_EXISTS', `${rel(path)} already exists`);
        const rec: ImageRecord = { name, state: IMAGE_STATE.empty };
        this.records.set(name, rec);
        await this.save(rec);
        return { status: 200 };
      });
    }
    return this.lock(() => this.setLeaf(path, value));
  }

  /** Add or Replace of a leaf; runs under the lock. */
  private async setLeaf(path: string, value: PluginWrite): Promise<OpResult> {
    const [top, rest] = split(path);
    if (top === 'Config') return this.setConfig(path, rest, value);
    if (top !== 'Images') throw notAllowed(path);
    const [name, leaf] = split(rest);
    const r = this.records.get(name);
    if (!r) throw notFound(path);
    if (value.format === 'node') throw notAllowed(path);
    const text = value.data ?? '';
    // '' clears an optional leaf (the tree accepts '' for every Format).
    const set = (k: 'imageId' | 'label' | 'version' | 'targetModels' | 'sourceUrl' | 'hash'): void => {
      if (text === '') delete r[k];
      else r[k] = text;
    };
    switch (leaf) {
      case 'ImageID':
        set('imageId');
        break;
      case 'Name':
        set('label');
        break;
      case 'Version':
        set('version');
        break;
      case 'TargetModels':
        set('targetModels');
        break;
      case 'Kind':
        checkKind(path, text);
        r.kind = text;
        break;
      case 'SourceURL':
        if (text !== '') checkUrl(path, text);
        set('sourceUrl');
        break;
      case 'Hash': {
        if (text !== '') checkHash(path, text);
        // Hash identifies the content: changing it (or clearing it) on a Stored record declares
        // another image, so what is stored goes and the record is Empty again, ready for a
        // verified Data push or Download (this is also how a server forces a re-download).
        const drop = r.state === IMAGE_STATE.stored && text !== r.hash;
        set('hash');
        if (drop) {
          const old = this.dropContent(r);
          r.state = IMAGE_STATE.empty;
          await this.save(r);
          await this.releaseIfUnused(old);
          return { status: 200 };
        }
        break;
      }
      case 'Data': {
        if (!this.cfg.enabled) throw disabled();
        if (this.running.has(name)) throw busy(name);
        // Format bin arrives as base64; a text Format (a config file sent as chr/xml) is taken as UTF-8.
        const bytes = value.format === 'bin' ? Buffer.from(text, 'base64') : Buffer.from(text, 'utf8');
        return { status: await this.storeLocked(r, bytes, expectedHash(r)) };
      }
      default:
        throw notAllowed(path);
    }
    await this.save(r);
    return { status: 200 };
  }

  private async setConfig(path: string, leaf: string, value: PluginWrite): Promise<OpResult> {
    const next = { ...this.cfg };
    const text = (value.data ?? '').trim();
    switch (leaf) {
      case 'Enabled':
        if (!/^(true|false)$/i.test(text)) throw badValue(path, 'must be true or false');
        next.enabled = text.toLowerCase() === 'true';
        break;
      case 'Dedup':
        if (text !== 'hash' && text !== 'none') throw badValue(path, 'must be hash or none');
        // Applies to content stored from now on; existing files keep their names.
        next.dedup = text;
        break;
      case 'QuotaBytes':
        // A quota below UsedBytes evicts nothing: it only refuses new content until space is freed.
        next.quotaBytes = parseIntLeaf(path, text, 0);
        break;
      case 'URLLifetime':
        next.urlLifetime = parseIntLeaf(path, text, 1);
        break;
      default:
        throw notAllowed(path);
    }
    await this.opts.settings.put(CONFIG_KEY, next);
    this.cfg = next;
    this.opts.log.info('image store config changed', { [leaf]: text });
    return { status: 200 };
  }

  private async deleteNode(path: string): Promise<OpResult> {
    const [top, rest] = split(path);
    if (top !== 'Images' || rest === '') throw notAllowed(path);
    const [name, leaf] = split(rest);
    return this.lock(async () => {
      const r = this.records.get(name);
      if (!r) throw notFound(path);
      if (leaf !== '') throw notAllowed(path);
      this.records.delete(name);
      await this.opts.records.del(name);
      // A running download is stopped; it sees the record is gone and drops its file. Forgetting it
      // here keeps a new record of the same name from joining it.
      this.running.get(name)?.abort.abort();
      this.running.delete(name);
      await this.releaseIfUnused(r.blob);
      this.opts.log.info('image deleted', { image: name });
      return { status: 200 };
    });
  }
}

/**
 * The Hash pushed content (Data, store()) must match: the record's Hash as the server declared it,
 * unless the record is Stored, where Hash describes the content held (computed by the gateway when
 * none was declared). Pushed bytes come from the authenticated server itself, so new Data replaces
 * Stored content without being held to the old content's hash (Download differs, see download()).
 */
function expectedHash(rec: ImageRecord): string | undefined {
  return rec.state === IMAGE_STATE.stored ? undefined : rec.hash;
}

function verify(expected: string | undefined, hex: string): void {
  if (expected !== undefined && expected !== `sha256:${hex}`) {
    throw new Outcome(IMAGE_STATE.verificationFailed, STATUS_VERIFY_FAILED, `content hash sha256:${hex} does not match ${expected}`);
  }
}

function checkKind(p: string, v: string): void {
  if (!(IMAGE_KINDS as readonly string[]).includes(v)) throw badValue(p, `Kind must be one of ${IMAGE_KINDS.join(', ')}`);
}

function checkHash(p: string, v: string): void {
  if (!HASH.test(v)) throw badValue(p, 'Hash must be sha256:<64 lower-case hex digits>');
}

function checkUrl(p: string, v: string): void {
  if (!isHttpUrl(v)) throw badValue(p, 'SourceURL must be an http or https URL');
}
