/**
 * Command fanout with response aggregation (GwMO-FORA-001/002, notes §1.5, PROPOSED MO; choices in
 * docs/fanout.md). The server defines a job under `./GwMO/Fanout/<job>` with plain Adds (target
 * group or DeviceIDs, ordered commands, policy), starts it with `Exec .../Operations/Start` (202),
 * and gets one consolidated report: a FanoutComplete Generic Alert, then `Get .../Results` or
 * `.../Report` whenever it likes.
 *
 * Members are partitioned before anything is sent: devices of this gateway run here (one leg each,
 * as a DM Sequence, whose outcome is sent to the member's association actor); members behind a child gateway go to that
 * child as one sub-job, which aggregates its own subtree and whose report is merged here, so the
 * server's cost is a few messages however many devices the tree holds. Every member ends with a
 * status of its own (460 unknown, 461 unreachable/timed out, 215 cancelled, or the DM status);
 * nothing is dropped. Jobs, resolved members and results are in LevelDB: a job interrupted by a
 * restart resumes and finishes (members whose results were not yet written run again: at least once).
 */
import { createActor, type Actor, type InspectionEvent } from 'xstate';
import { el, elements, textOf, type XElement } from '../codec/element.ts';
import { parseXml, writeXml } from '../codec/xml.ts';
import { DmStatusError, describeError, statusOf } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Store, Section } from '../store/store.ts';
import type { ExecArgs, PluginNodeView, PluginWrite, TreeContext, TreePlugin } from '../tree/tree.ts';
import type { Item } from '../codec/model.ts';
import { JOB_STATE, fanoutJobMachine } from '../../machines/fanout.ts';
import type { AssociationStore } from './associations.ts';
import type { GroupStore } from './groups.ts';
import { type GatewayExecutor, type MemberCommand, type MemberItem, type MemberRun } from './proxy.ts';

/** Where fanout jobs live in the gateway's tree. */
export const FANOUT_ROOT = './GwMO/Fanout';
/** MOID (PROPOSED, notes §1.1). */
export const FANOUT_MOID = 'urn:oma:mo:oma-gwmo-fanout:1.1';
/** Generic Alert type sent when a job ends (notes §1.5 step 4). */
export const FANOUT_COMPLETE_ALERT = 'urn:oma:at:gwmo:1.1:FanoutComplete';
/** MIME type of the report document. */
export const FANOUT_REPORT_TYPE = 'application/vnd.oma.gwmo.fanout-report+xml';
/** `Target/GroupID` value meaning every device of this gateway's subtree (gwmo extension). */
export const ALL_DEVICES = '*';
/**
 * In command Data, `${ImageURL:<name>}` stands for the LocalURL of image `<name>` on the gateway
 * that runs the member (gwmo extension, docs/fanout.md): each device downloads from its own gateway.
 */
export const IMAGE_TOKEN = /\$\{ImageURL:([A-Za-z0-9._-]{1,64})\}/g;

/** The names of the images a job's commands refer to. */
export function imagesOf(commands: readonly { data?: string }[]): string[] {
  const out = new Set<string>();
  for (const c of commands) for (const m of (c.data ?? '').matchAll(IMAGE_TOKEN)) out.add(m[1]!);
  return [...out];
}
export { JOB_STATE };

const COMMANDS = ['Get', 'Replace', 'Add', 'Delete', 'Exec'] as const;
/** Reports larger than this go in the alert as a summary only; the full one is read with Get (notes §1.5 step 4). */
const ALERT_REPORT_LIMIT = 32 * 1024;
/** How often a delegated sub-job is polled when no completion alert has arrived. */
const POLL_MS = 5000;

/** The definition the server writes (notes §1.5). */
export interface JobDefinition {
  groupId?: string;
  deviceIds?: string;
  commands: Record<string, { cmd?: string; uri?: string; data?: string; format?: string; type?: string }>;
  policy: { timeout?: number; maxConcurrency?: number; report?: number; abortOnFailRatio?: number };
}

/** A job as stored. */
export interface JobRecord extends JobDefinition {
  name: string;
  state: number;
  correlator?: string;
  /** The server that started it: legs are authorised as this server (mount ACLs). */
  serverId?: string;
  total: number;
  succeeded: number;
  failed: number;
  startedAt?: string;
  endedAt?: string;
}

/** A resolved member: run here (key of a record), delegated to a child gateway, or unknown. */
export interface Member {
  /** Result name: the record key, `<childKey>.<key on the child>` for merged members. */
  key: string;
  deviceId: string;
  kind: 'local' | 'delegate' | 'unknown';
  /** Delegations: the child gateway's record key, and what to target there. */
  child?: string;
  target?: { groupId?: string; deviceIds?: string[] };
}

/** A member's result (notes §1.5 Results/<m>). */
export interface MemberResult {
  deviceId: string;
  status: number;
  cmds: { status: number; items?: MemberItem[] }[];
}

/** What the fanout service needs from the gateway. */
export interface FanoutDeps {
  store: Store;
  associations: AssociationStore;
  groups: GroupStore;
  executor: () => GatewayExecutor;
  log: Logger;
  defaults: { timeout: number; maxConcurrency: number };
  /** Sends a Generic Alert to the parent (durably queued). */
  alert(items: Item[], correlator?: string): Promise<void>;
  /** The association actor of a device (legs are sent to it), if it is live. */
  /** Reports what a leg learnt about a member's reachability to its association (see `Gateway.observe`). */
  observe(deviceId: string, event: { type: 'session.ok' } | { type: 'session.failed' }): void;
  /** The child gateway (record key) a device deeper in the tree sits behind, if known. */
  behindChild(deviceId: string): string | undefined;
  /** This gateway's image store: the LocalURL and hash of a stored image. */
  image(name: string): { url: string; hash?: string } | undefined;
  /** Each member result as it is recorded (metrics). */
  onMemberResult?(status: number): void;
  /** xstate inspection observer for the job actors. */
  inspect?: (event: InspectionEvent) => void;
}

/** Most devices of this gateway in one leg (see `FanoutService.legs`). */
const PARTITION = 256;
const split = (path: string): string[] => (path === '' ? [] : path.split('/'));
const isFinal = (state: number): boolean => state >= JOB_STATE.completed;
const ok = (status: number): boolean => status >= 200 && status <= 299;
const notFound = (p: string): DmStatusError => new DmStatusError(404, 'GW_FANOUT_NOT_FOUND', `${FANOUT_ROOT}/${p} does not exist`);
const notAllowed = (p: string, why = 'command not allowed'): DmStatusError => new DmStatusError(405, 'GW_FANOUT_NOT_ALLOWED', `${why} on ${FANOUT_ROOT}/${p}`);

/** A running job: its actor, members and pending work. */
interface Run {
  actor: Actor<typeof fanoutJobMachine>;
  /** Slots still to run (members, or delegations to a child gateway). */
  members: Member[];
  commands: MemberCommand[];
  next: number;
  active: number;
  cancelled: boolean;
  /** Sub-jobs waiting for their child's completion alert, by sub-job name (true: woken by the alert). */
  wake: Map<string, (byAlert: boolean) => void>;
  /** True while the native multicast phase runs: per-member legs wait for it. */
  holding: boolean;
}

/** The fanout jobs of a gateway. */
export class FanoutService {
  private readonly jobs = new Map<string, JobRecord>();
  private readonly results = new Map<string, Map<string, MemberResult>>();
  private readonly runs = new Map<string, Run>();
  private readonly jobSection: Section<JobRecord>;
  private readonly memberSection: Section<Member[]>;
  /**
   * Results: chunks `<job>\u0000~<n>` of [member key, result] pairs, one per flush (one LevelDB
   * entry for up to a thousand members); single entries `<job>\u0000<member key>` from earlier
   * versions are still read.
   */
  private readonly resultSection: Section<MemberResult | [string, MemberResult][]>;
  /** Chunk keys of each job's results (to delete them with the job). */
  private readonly chunks = new Map<string, string[]>();
  private chunkSeq = 0;
  /** Results not yet written, flushed in batches (one LevelDB batch per tick, not per member). */
  private pendingWrites: [job: string, key: string, result: MemberResult][] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private stopped = false;

  private constructor(private readonly deps: FanoutDeps) {
    this.jobSection = deps.store.section('fanout-jobs');
    this.memberSection = deps.store.section('fanout-members');
    this.resultSection = deps.store.section('fanout-results');
  }

  /** Loads the jobs (not yet resuming them: see `resume`). */
  static async open(deps: FanoutDeps): Promise<FanoutService> {
    const s = new FanoutService(deps);
    for (const [, j] of await s.jobSection.entries()) s.jobs.set(j.name, j);
    for (const [k, r] of await s.resultSection.entries()) {
      const i = k.indexOf('\u0000');
      const job = k.slice(0, i);
      const m = s.resultsOf(job);
      const rest = k.slice(i + 1);
      if (rest.startsWith('~') && Array.isArray(r)) {
        for (const [key, result] of r) m.set(key, result);
        s.chunkKeysOf(job).push(rest);
        s.chunkSeq = Math.max(s.chunkSeq, Number.parseInt(rest.slice(1), 36) || 0);
      } else m.set(rest, r as MemberResult);
    }
    return s;
  }

  /** Resumes jobs that were running when the gateway stopped. */
  async resume(): Promise<void> {
    for (const j of this.jobs.values()) {
      if (j.state !== JOB_STATE.running) continue;
      const members = (await this.memberSection.get(j.name)) ?? [];
      this.deps.log.info(`resuming fanout job ${j.name}: ${this.resultsOf(j.name).size}/${members.length} members done`);
      this.launch(j, members);
    }
  }

  /** Stops dispatching and writes what is pending; running legs are abandoned (they run again on resume). */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const r of this.runs.values()) r.actor.stop();
    this.runs.clear();
    clearTimeout(this.flushTimer);
    await this.flush();
  }

  /** A job by name. */
  job(name: string): JobRecord | undefined {
    return this.jobs.get(name);
  }

  /** A job's results by member key. */
  resultsOf(name: string): Map<string, MemberResult> {
    let m = this.results.get(name);
    if (!m) this.results.set(name, (m = new Map()));
    return m;
  }

  /** A child gateway reported the end of a sub-job (its FanoutComplete alert): wake its waiter. */
  onChildComplete(source: string): void {
    const name = /Fanout\/([^/]+)$/.exec(source)?.[1];
    if (!name) return;
    for (const r of this.runs.values()) r.wake.get(name)?.(true);
  }

  // ------------------------------------------------------------------ starting and running

  /** Exec Operations/Start: resolves and partitions the members, then runs the job (202). */
  async start(name: string, correlator: string | undefined, serverId: string | undefined): Promise<number> {
    const j = this.jobs.get(name);
    if (!j) throw notFound(name);
    if (j.state === JOB_STATE.running) return 202;
    if (j.state !== JOB_STATE.idle) throw new DmStatusError(405, 'GW_FANOUT_DONE', `job ${name} has already run; Delete it and create it again`);
    const commands = this.commandsOf(j);
    const members = this.resolve(j);
    j.state = JOB_STATE.running;
    j.total = members.length;
    j.succeeded = 0;
    j.failed = 0;
    j.startedAt = new Date().toISOString();
    if (correlator !== undefined) j.correlator = correlator;
    if (serverId !== undefined) j.serverId = serverId;
    await this.deps.store.batch([
      { section: 'fanout-members', key: name, value: members },
      { section: 'fanout-jobs', key: name, value: j },
    ]);
    this.deps.log.info(`fanout job ${name} started: ${members.length} members, ${commands.length} command(s)`, {
      local: members.filter((m) => m.kind === 'local').length,
      delegated: members.filter((m) => m.kind === 'delegate').length,
      unknown: members.filter((m) => m.kind === 'unknown').length,
    });
    this.launch(j, members);
    return 202;
  }

  /** The ordered commands of a job, validated (412 when incomplete, 400 when wrong). */
  private commandsOf(j: JobRecord): MemberCommand[] {
    const names = Object.keys(j.commands).sort((a, b) => Number(a) - Number(b));
    if (!names.length) throw new DmStatusError(412, 'GW_FANOUT_NO_COMMANDS', `job ${j.name} has no Commands`);
    return names.map((n) => {
      const c = j.commands[n]!;
      if (!c.cmd || !c.uri) throw new DmStatusError(412, 'GW_FANOUT_INCOMPLETE', `command ${n} of job ${j.name} needs Cmd and URI`);
      if (!(COMMANDS as readonly string[]).includes(c.cmd)) throw new DmStatusError(400, 'GW_FANOUT_BAD_CMD', `command ${n}: Cmd must be one of ${COMMANDS.join(', ')}`);
      return {
        kind: c.cmd as MemberCommand['kind'],
        uri: c.uri,
        ...(c.data !== undefined ? { data: c.data } : {}),
        ...(c.format ? { format: c.format } : {}),
        ...(c.type ? { type: c.type } : {}),
      };
    });
  }

  /**
   * Resolves the target into members and partitions them: this gateway's devices run here; child
   * gateways (as members, or as the way to a deeper DeviceID) get one sub-job each; DeviceIDs found
   * nowhere are 460.
   */
  private resolve(j: JobRecord): Member[] {
    const { associations, groups } = this.deps;
    const records = associations.all();
    let direct: { deviceId: string; subGroup?: string }[];
    let deeper: string[] = [];
    if (j.groupId === ALL_DEVICES) direct = records.map((r) => ({ deviceId: r.deviceId }));
    else if (j.groupId) {
      const r = groups.resolve(j.groupId, records);
      direct = r.members;
      deeper = r.unknown;
    } else if (j.deviceIds) {
      direct = [];
      for (const raw of j.deviceIds.split('/').filter(Boolean)) {
        const id = decodeURIComponent(raw);
        if (associations.get(id)) direct.push({ deviceId: id });
        else deeper.push(id);
      }
    } else throw new DmStatusError(412, 'GW_FANOUT_NO_TARGET', `job ${j.name} needs Target/GroupID or Target/DeviceIDs`);
    const members: Member[] = [];
    const byChild = new Map<string, string[]>();
    // All devices: the records are at hand (no lookup per member).
    const recs = j.groupId === ALL_DEVICES ? records : undefined;
    for (let i = 0; i < direct.length; i++) {
      const d = direct[i]!;
      const rec = recs ? recs[i]! : associations.get(d.deviceId)!;
      if (rec.gateway && rec.mode === 'proxy') {
        members.push({ key: rec.key, deviceId: rec.deviceId, kind: 'delegate', child: rec.key, target: { groupId: d.subGroup ?? ALL_DEVICES } });
      } else members.push({ key: rec.key, deviceId: rec.deviceId, kind: 'local' });
    }
    let u = 0;
    for (const id of deeper) {
      const child = this.deps.behindChild(id);
      if (child && associations.byKey(child)?.mode === 'proxy') byChild.set(child, [...(byChild.get(child) ?? []), id]);
      else members.push({ key: `u${String(++u).padStart(4, '0')}`, deviceId: id, kind: 'unknown' });
    }
    for (const [child, ids] of byChild) {
      const rec = associations.byKey(child)!;
      members.push({ key: `${child}~ids`, deviceId: rec.deviceId, kind: 'delegate', child, target: { deviceIds: ids } });
    }
    return members;
  }

  /** Starts the job actor and the dispatch loop. */
  private launch(j: JobRecord, members: Member[]): void {
    // On resume, slots whose results are already written count as done.
    const done: Member[] = [];
    const todo: Member[] = [];
    for (const m of members) (this.slotDone(j.name, m) ? done : todo).push(m);
    const failed = done.filter((m) => !this.slotOk(j.name, m)).length;
    const run: Run = {
      actor: createActor(fanoutJobMachine, {
        ...(this.deps.inspect ? { inspect: this.deps.inspect } : {}),
        input: { name: j.name, total: members.length, succeeded: done.length - failed, failed, abortOnFailRatio: j.policy.abortOnFailRatio ?? 0 },
      }),
      members: todo,
      commands: this.commandsOf(j),
      next: 0,
      active: 0,
      cancelled: false,
      wake: new Map(),
      holding: false,
    };
    this.runs.set(j.name, run);
    run.actor.subscribe({
      complete: () => void this.finish(j, run).catch((err: unknown) => this.deps.log.error(`fanout job ${j.name} could not finish: ${describeError(err)}`)),
    });
    run.actor.start();
    const c = run.commands[0];
    if (run.commands.length === 1 && (c!.kind === 'Replace' || c!.kind === 'Exec') && todo.some((m) => m.kind === 'local')) {
      run.holding = true;
      void this.multicast(j, run).finally(() => {
        run.holding = false;
        if (this.runs.get(j.name) === run) this.pump(j, run);
      });
    } else this.pump(j, run);
  }

  /**
   * The native multicast phase (issue: "fanout uses the native multicast where the protocol has
   * one"): a single Replace/Exec goes to the members of each network that can multicast it in one
   * native operation; those members get their result from it and run no leg. The rest go member by
   * member. Per-member statuses stay exact: the adapter reports each address it covered.
   */
  private async multicast(j: JobRecord, run: Run): Promise<void> {
    const local = run.members.filter((m) => m.kind === 'local');
    let covered: Map<string, MemberRun>;
    try {
      covered = await this.deps.executor().runMulticast(
        local.map((m) => m.key),
        this.withImageUrls(run.commands)[0]!,
        { serverId: j.serverId ?? '' },
      );
    } catch (err) {
      this.deps.log.warn(`fanout ${j.name}: multicast phase failed, every member runs its own leg: ${describeError(err)}`);
      return;
    }
    if (!covered.size || this.runs.get(j.name) !== run) return;
    let okN = 0;
    let failN = 0;
    this.deps.log.info(`fanout ${j.name}: ${covered.size} member(s) reached by native multicast`);
    run.members = run.members.filter((m) => {
      const r = covered.get(m.key);
      if (!r) return true;
      this.record(j, m.key, { deviceId: m.deviceId, status: r.status, cmds: r.cmds });
      if (ok(r.status)) okN++;
      else failN++;
      this.deps.observe(m.deviceId, { type: r.status === 461 ? 'session.failed' : 'session.ok' });
      return false;
    });
    // The multicast is one leg: one report for all the members it covered.
    run.actor.send({ type: 'leg.done', ok: okN, failed: failN });
  }

  /** Whether a slot has its result: a member's own, or for a delegation its failure or merged members. */
  private slotDone(job: string, m: Member): boolean {
    const results = this.resultsOf(job);
    if (results.has(m.key)) return true;
    if (m.kind !== 'delegate') return false;
    for (const k of results.keys()) if (k.startsWith(`${m.child}.`)) return true;
    return false;
  }

  private slotOk(job: string, m: Member): boolean {
    const results = this.resultsOf(job);
    const own = results.get(m.key);
    if (own || m.kind !== 'delegate') return !!own && ok(own.status);
    for (const [k, r] of results) if (k.startsWith(`${m.child}.`) && !ok(r.status)) return false;
    return true;
  }

  /** Starts legs while the concurrency cap allows. */
  private pump(j: JobRecord, run: Run): void {
    if (run.holding) return;
    const cap = Math.max(1, j.policy.maxConcurrency ?? this.deps.defaults.maxConcurrency);
    const snap = run.actor.getSnapshot();
    if (run.cancelled || snap.context.aborted) {
      // Cancelled or past the abort ratio: members not started end as 215 (Not executed); legs in
      // flight are awaited, so every member still gets exactly one result.
      let skipped = 0;
      while (run.next < run.members.length && snap.status === 'active') {
        const m = run.members[run.next++]!;
        this.record(j, m.key, { deviceId: m.deviceId, status: 215, cmds: [] });
        skipped++;
      }
      if (skipped) run.actor.send({ type: 'leg.done', ok: 0, failed: skipped });
      return;
    }
    // Partitions of this gateway's own devices: as many members as there is room for under the cap,
    // up to PARTITION; a partition is started only when that much room is free (or nothing else
    // is left to start), so the cap is kept and partitions do not shrink to single members.
    const part = Math.max(1, Math.min(PARTITION, Math.ceil(cap / 4)));
    while (!this.stopped && !run.cancelled && run.active < cap && run.next < run.members.length) {
      const first = run.members[run.next]!;
      if (first.kind === 'local') {
        const want = Math.min(part, run.members.length - run.next);
        if (cap - run.active < want && run.active > 0) break;
        let end = run.next;
        const limit = run.next + Math.max(1, Math.min(want, cap - run.active));
        while (end < limit && run.members[end]!.kind === 'local') end++;
        const members = run.members.slice(run.next, end);
        run.next = end;
        run.active += members.length;
        this.legs(j, run, members);
        continue;
      }
      run.next++;
      const m = first;
      run.active++;
      const settle = (okay: boolean): void => {
        run.active--;
        if (this.runs.get(j.name) !== run) return;
        run.actor.send({ type: 'leg.done', ok: okay ? 1 : 0, failed: okay ? 0 : 1 });
        this.pump(j, run);
      };
      if (m.kind === 'unknown') {
        this.record(j, m.key, { deviceId: m.deviceId, status: 460, cmds: [] });
        queueMicrotask(() => settle(false));
      } else if (m.kind === 'delegate') {
        void this.delegate(j, run, m).then(settle, (err: unknown) => {
          this.deps.log.error(`delegation of ${j.name} to ${m.deviceId} failed: ${describeError(err)}`);
          this.record(j, m.key, { deviceId: m.deviceId, status: 500, cmds: [] });
          settle(false);
        });
      }
    }
  }

  /**
   * A partition of this gateway's devices, run together: each member's commands run as its own DM
   * Sequence (its own status, its own deadline), and each member frees its slot as soon as it is
   * done; the job actor hears of the partition once, when all of it is done.
   */
  private legs(j: JobRecord, run: Run, members: Member[]): void {
    const timeoutMs = (j.policy.timeout ?? this.deps.defaults.timeout) * 1000;
    const ctx = { serverId: j.serverId ?? '' };
    let commands: MemberCommand[] | undefined;
    let failure: unknown;
    try {
      commands = this.withImageUrls(run.commands);
    } catch (err) {
      failure = err; // e.g. 412: the image is not stored here; every member gets that status
    }
    const deadline = Date.now() + timeoutMs;
    let left = members.length;
    let okN = 0;
    let failN = 0;
    const done = (m: Member, r: MemberRun): void => {
      this.record(j, m.key, { deviceId: m.deviceId, status: r.status, cmds: r.cmds });
      if (ok(r.status)) okN++;
      else failN++;
      // What the leg learnt about the device goes to its association (inventory status).
      this.deps.observe(m.deviceId, { type: r.status === 461 ? 'session.failed' : 'session.ok' });
      run.active--;
      const current = this.runs.get(j.name) === run;
      if (--left === 0 && current) run.actor.send({ type: 'leg.done', ok: okN, failed: failN });
      if (current) this.pump(j, run);
    };
    const failed = (m: Member, err: unknown): MemberRun => {
      this.deps.log.warn(`fanout ${j.name}: ${m.deviceId} failed: ${describeError(err)}`);
      const status = statusOf(err);
      return { status, cmds: run.commands.map(() => ({ status })) };
    };
    if (!commands) {
      for (const m of members) queueMicrotask(() => done(m, failed(m, failure)));
      return;
    }
    this.deps.executor().runMembers(
      members.map((m) => m.key),
      commands,
      ctx,
      deadline,
      (i, r) => {
        const m = members[i]!;
        if (r.status === 500) this.deps.log.warn(`fanout ${j.name}: ${m.deviceId} failed (500)`);
        done(m, r);
      },
    );
  }

  /** Commands with `${ImageURL:<name>}` replaced by this gateway's LocalURL (fresh expiry); 412 when not stored here. */
  private withImageUrls(commands: MemberCommand[]): MemberCommand[] {
    if (!commands.some((c) => c.data?.includes('${ImageURL:'))) return commands;
    return commands.map((c) => {
      if (!c.data?.includes('${ImageURL:')) return c;
      const data = c.data.replace(IMAGE_TOKEN, (_, name: string) => {
        const img = this.deps.image(name);
        if (!img) throw new DmStatusError(412, 'GW_FANOUT_NO_IMAGE', `image ${name} is not stored on this gateway`);
        return img.url;
      });
      return { ...c, data };
    });
  }

  /**
   * Before a sub-job uses an image, the child gateway gets it from this gateway's store (its
   * LocalURL), not from the server: images flow down the tree once per gateway (notes §2.4).
   * The child verifies the hash; a child that already holds the same content does not download.
   */
  private async ensureImage(child: string, name: string, ctx: { serverId: string }, timeoutMs: number): Promise<number> {
    const exec = this.deps.executor();
    const img = this.deps.image(name);
    if (!img) return 412;
    const base = `./GwMO/ImageInventory/Images/${name}`;
    const read = await exec.runMember(child, [{ kind: 'Get', uri: `${base}/State` }, { kind: 'Get', uri: `${base}/Hash` }], ctx, Date.now() + timeoutMs);
    if (read.cmds[0]?.items?.[0]?.data === '30' && read.cmds[1]?.items?.[0]?.data === img.hash) return 200;
    if (read.cmds[0]?.status !== 404) await exec.runMember(child, [{ kind: 'Delete', uri: base }], ctx, Date.now() + timeoutMs);
    const load = await exec.runMember(
      child,
      [
        { kind: 'Add', uri: base, format: 'node' },
        ...(img.hash ? [{ kind: 'Add' as const, uri: `${base}/Hash`, data: img.hash }] : []),
        { kind: 'Add', uri: `${base}/SourceURL`, data: img.url },
        { kind: 'Exec', uri: `${base}/Operations/Download` },
      ],
      ctx,
      Date.now() + timeoutMs,
    );
    const status = load.cmds.at(-1)?.status ?? load.status;
    if (status !== 202) return status;
    // Still downloading (a large image): wait for the child's store to say stored or failed.
    for (let waited = 0; waited < 10 * timeoutMs; waited += 500) {
      await new Promise((r) => setTimeout(r, 500));
      const st = await exec.runMember(child, [{ kind: 'Get', uri: `${base}/State` }], ctx, Date.now() + timeoutMs);
      const v = st.cmds[0]?.items?.[0]?.data;
      if (v === '30') return 200;
      if (v === '40' || v === '50') return 500;
    }
    return 461;
  }

  /**
   * Members behind a child gateway: one sub-job on the child (created and started in one Sequence
   * through the child's mount), awaited through its completion alert (or polling), then its report
   * is read and merged, and the sub-job deleted. The child aggregates its own subtree.
   */
  private async delegate(j: JobRecord, run: Run, m: Member): Promise<boolean> {
    const exec = this.deps.executor();
    const ctx = { serverId: j.serverId ?? '' };
    const timeoutMs = (j.policy.timeout ?? this.deps.defaults.timeout) * 1000;
    const sub = `${j.name}.${m.key}`.replace(/[^A-Za-z0-9._-]/g, '_');
    const base = `./GwMO/Fanout/${sub}`;
    const define: MemberCommand[] = [{ kind: 'Add', uri: base, format: 'node' }];
    if (m.target?.groupId) define.push({ kind: 'Add', uri: `${base}/Target/GroupID`, data: m.target.groupId });
    if (m.target?.deviceIds) define.push({ kind: 'Add', uri: `${base}/Target/DeviceIDs`, data: m.target.deviceIds.map(encodeURIComponent).join('/') });
    for (const [n, c] of Object.entries(j.commands)) {
      for (const [leaf, v] of [['Cmd', c.cmd], ['URI', c.uri], ['Data', c.data], ['Format', c.format], ['Type', c.type]] as const) {
        if (v !== undefined) define.push({ kind: 'Add', uri: `${base}/Commands/${n}/${leaf}`, data: v });
      }
    }
    for (const [leaf, v] of [['Timeout', j.policy.timeout], ['MaxConcurrency', j.policy.maxConcurrency]] as const) {
      if (v !== undefined) define.push({ kind: 'Add', uri: `${base}/Policy/${leaf}`, data: String(v), format: 'int' });
    }
    define.push({ kind: 'Add', uri: `${base}/Policy/Report`, data: '2', format: 'int' });
    define.push({ kind: 'Exec', uri: `${base}/Operations/Start` });
    for (const img of imagesOf(Object.values(j.commands))) {
      const st = await this.ensureImage(m.child!, img, ctx, timeoutMs);
      if (!ok(st)) {
        this.deps.log.warn(`fanout ${j.name}: ${m.deviceId} could not get image ${img} (${st})`);
        this.record(j, m.key, { deviceId: m.deviceId, status: st, cmds: [] });
        return false;
      }
    }
    const created = await exec.runMember(m.child!, define, ctx, Date.now() + timeoutMs);
    // 418: the sub-job exists already (this job resumed after a restart): keep waiting for it.
    const startStatus = created.cmds.at(-1)?.status ?? created.status;
    const exists = created.cmds[0]?.status === 418;
    if (!exists && !ok(startStatus)) {
      this.deps.log.warn(`fanout ${j.name}: sub-job on ${m.deviceId} refused (${startStatus})`);
      this.record(j, m.key, { deviceId: m.deviceId, status: startStatus === 215 ? created.status : startStatus, cmds: [] });
      return false;
    }
    // Wait for the child's FanoutComplete alert; poll its State meanwhile, so a lost alert or a child
    // that went away is noticed.
    let misses = 0;
    for (;;) {
      if (this.stopped || this.runs.get(j.name) !== run) return false;
      const byAlert = await new Promise<boolean>((resolve) => {
        const t = setTimeout(() => resolve(false), POLL_MS);
        run.wake.set(sub, (alert) => {
          clearTimeout(t);
          resolve(alert);
        });
      });
      run.wake.delete(sub);
      if (this.stopped || this.runs.get(j.name) !== run) return false;
      // The child sends FanoutComplete once its sub-job is final: no need to ask for its State.
      if (byAlert) break;
      const st = await exec.runMember(m.child!, [{ kind: 'Get', uri: `${base}/State` }], ctx, Date.now() + timeoutMs);
      if (st.status === 461) {
        if (++misses * POLL_MS >= timeoutMs || misses >= 3) {
          this.record(j, m.key, { deviceId: m.deviceId, status: 461, cmds: [] });
          return false;
        }
        continue;
      }
      misses = 0;
      const state = Number(st.cmds[0]?.items?.[0]?.data ?? NaN);
      if (!ok(st.status) || Number.isNaN(state)) {
        this.record(j, m.key, { deviceId: m.deviceId, status: ok(st.status) ? 500 : st.status, cmds: [] });
        return false;
      }
      if (isFinal(state)) break;
    }
    // The report, and the child forgets the sub-job, in one session (one Sequence: the Delete runs
    // whatever the Get answered; a report that could not be read is this slot's failure either way).
    const rep = await exec.runMember(m.child!, [{ kind: 'Get', uri: `${base}/Report` }, { kind: 'Delete', uri: base }], ctx, Date.now() + timeoutMs);
    const got = rep.cmds[0];
    const xml = got?.items?.[0]?.data;
    if (!got || !ok(got.status) || !xml) {
      const status = got && !ok(got.status) ? got.status : ok(rep.status) ? 500 : rep.status;
      this.record(j, m.key, { deviceId: m.deviceId, status, cmds: [] });
      return false;
    }
    const report = parseReport(xml);
    let allOk = true;
    for (const r of report.members) {
      this.record(j, `${m.child}.${r.key}`, r.result);
      if (!ok(r.result.status)) allOk = false;
    }
    return allOk;
  }

  /** Records a member's result (batched write). */
  private record(j: JobRecord, key: string, result: MemberResult): void {
    // Legs still finishing while the gateway stops are not written: they run again on resume.
    if (this.stopped) return;
    this.deps.onMemberResult?.(result.status);
    this.resultsOf(j.name).set(key, result);
    this.pendingWrites.push([j.name, key, result]);
    if (this.pendingWrites.length >= 1000) void this.flush();
    else this.flushTimer ??= setTimeout(() => void this.flush(), 50);
  }

  /** Writes pending results in one batch. */
  private flush(): Promise<void> {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    const pending = this.pendingWrites;
    this.pendingWrites = [];
    if (!pending.length) return this.flushing;
    // One chunk per job: a thousand results are one LevelDB entry, not a thousand.
    const byJob = new Map<string, [string, MemberResult][]>();
    for (const [job, key, result] of pending) {
      let list = byJob.get(job);
      if (!list) byJob.set(job, (list = []));
      list.push([key, result]);
    }
    const ops: [string, [string, MemberResult][]][] = [];
    for (const [job, list] of byJob) {
      const chunk = `~${(++this.chunkSeq).toString(36).padStart(8, '0')}`;
      this.chunkKeysOf(job).push(chunk);
      ops.push([`${job}\u0000${chunk}`, list]);
    }
    this.flushing = this.flushing.then(() => this.resultSection.batch(ops)).catch((err: unknown) => this.deps.log.error(`fanout results not written: ${describeError(err)}`));
    return this.flushing;
  }

  private chunkKeysOf(job: string): string[] {
    let c = this.chunks.get(job);
    if (!c) this.chunks.set(job, (c = []));
    return c;
  }

  /** The job ended: counters, state, the report alert to the parent. */
  private async finish(j: JobRecord, run: Run): Promise<void> {
    if (this.runs.get(j.name) !== run || this.stopped) return;
    this.runs.delete(j.name);
    const state = run.actor.getSnapshot().output?.state ?? JOB_STATE.failed;
    const results = this.resultsOf(j.name);
    j.state = state;
    j.total = results.size;
    j.succeeded = [...results.values()].filter((r) => ok(r.status)).length;
    j.failed = j.total - j.succeeded;
    j.endedAt = new Date().toISOString();
    await this.flush();
    await this.jobSection.put(j.name, j);
    // A large job's alert carries the summary only; the parent reads Report or Results (notes §1.5 step 4).
    const full = results.size <= ALERT_REPORT_LIMIT / 100 ? this.report(j, j.policy.report ?? 2) : '';
    const data = full && full.length <= ALERT_REPORT_LIMIT ? full : this.report(j, 0);
    this.deps.log.info(`fanout job ${j.name} ended: state ${state}, ${j.succeeded}/${j.total} succeeded`);
    await this.deps.alert(
      [{ source: { locURI: `${FANOUT_ROOT}/${j.name}` }, meta: { type: FANOUT_COMPLETE_ALERT, format: 'xml' }, data }],
      j.correlator,
    );
  }

  /** The report document (notes §1.5; elements instead of attributes, docs/fanout.md). level 0 summary, 1 failures, 2 all. */
  report(j: JobRecord, level: number): string {
    const results = this.resultsOf(j.name);
    const rows: XElement[] = [];
    if (level > 0) {
      for (const [key, r] of results) {
        if (level === 1 && ok(r.status)) continue;
        rows.push(
          el('Member', [
            el('Key', [key]),
            el('DeviceID', [r.deviceId]),
            el('Status', [String(r.status)]),
            ...r.cmds.map((c, i) =>
              el('Cmd', [
                el('N', [String(i + 1)]),
                el('Status', [String(c.status)]),
                ...(c.items ?? []).map((it) =>
                  el('Item', [el('URI', [it.uri]), ...(it.format ? [el('Format', [it.format])] : []), ...(it.type ? [el('Type', [it.type])] : []), ...(it.data !== undefined ? [el('Data', [it.data])] : [])]),
                ),
              ]),
            ),
          ]),
        );
      }
    }
    const succeeded = [...results.values()].filter((r) => ok(r.status)).length;
    return writeXml(
      el('FanoutReport', [
        el('Job', [j.name]),
        el('State', [String(j.state)]),
        el('Total', [String(isFinal(j.state) ? j.total : Math.max(j.total, results.size))]),
        el('Succeeded', [String(succeeded)]),
        el('Failed', [String(results.size - succeeded)]),
        ...rows,
      ]),
    );
  }

  /** Exec Operations/Cancel: members not started end as 215. */
  cancel(name: string): number {
    const run = this.runs.get(name);
    if (!run) return this.jobs.has(name) ? 200 : 404;
    run.cancelled = true;
    run.actor.send({ type: 'cancel' });
    const j = this.jobs.get(name);
    if (j) this.pump(j, run);
    return 200;
  }

  // ------------------------------------------------------------------ the tree

  /** The plugin serving `./GwMO/Fanout`. */
  plugin(): TreePlugin {
    const job = (name: string, path: string): JobRecord => {
      const j = this.jobs.get(name);
      if (!j) throw notFound(path);
      return j;
    };
    const save = (j: JobRecord): Promise<void> => this.jobSection.put(j.name, j);
    const write = async (path: string, value: PluginWrite, adding: boolean): Promise<{ status: number }> => {
      const p = split(path);
      const name = p[0]!;
      if (p.length === 1) {
        if (!adding || value.format !== 'node') throw notAllowed(path);
        if (this.jobs.has(name)) throw new DmStatusError(418, 'GW_FANOUT_EXISTS', `job ${name} already exists`);
        if (!/^[A-Za-z0-9._-]{1,64}$/.test(name)) throw new DmStatusError(400, 'GW_FANOUT_BAD_NAME', `job names are 1-64 of A-Z a-z 0-9 . _ -`);
        const j: JobRecord = { name, state: JOB_STATE.idle, commands: {}, policy: {}, total: 0, succeeded: 0, failed: 0 };
        this.jobs.set(name, j);
        await save(j);
        return { status: 200 };
      }
      const j = job(name, path);
      if (j.state !== JOB_STATE.idle) throw notAllowed(path, 'a started job cannot be changed');
      const v = (value.data ?? '').trim();
      const int = (): number => {
        const n = Number(v);
        if (!Number.isInteger(n) || n < 0) throw new DmStatusError(400, 'GW_FANOUT_BAD_VALUE', `${FANOUT_ROOT}/${path} needs a non-negative integer`);
        return n;
      };
      const rest = p.slice(1).join('/');
      if (value.format === 'node') {
        // Interior nodes on the way (Target, Commands, Commands/<n>, Policy) exist implicitly.
        if (!/^(Target|Commands|Policy|Commands\/\d{1,4})$/.test(rest) || !adding) throw notAllowed(path);
        if (p[1] === 'Commands' && p[2]) j.commands[p[2]] ??= {};
      } else if (rest === 'Target/GroupID') j.groupId = v;
      else if (rest === 'Target/DeviceIDs') j.deviceIds = v;
      else if (p[1] === 'Commands' && p.length === 4 && /^\d{1,4}$/.test(p[2]!)) {
        const c = (j.commands[p[2]!] ??= {});
        const leaf = p[3]!;
        if (leaf === 'Cmd') {
          if (!(COMMANDS as readonly string[]).includes(v)) throw new DmStatusError(400, 'GW_FANOUT_BAD_CMD', `Cmd must be one of ${COMMANDS.join(', ')}`);
          c.cmd = v;
        } else if (leaf === 'URI') {
          if (!v.startsWith('./') && !/^[A-Za-z]/.test(v)) throw new DmStatusError(400, 'GW_FANOUT_BAD_URI', 'URI must be relative to the device root (./...)');
          c.uri = v;
        } else if (leaf === 'Data') c.data = value.data ?? '';
        else if (leaf === 'Format') c.format = v;
        else if (leaf === 'Type') c.type = v;
        else throw notAllowed(path);
      } else if (rest === 'Policy/Timeout') j.policy.timeout = Math.max(1, int());
      else if (rest === 'Policy/MaxConcurrency') j.policy.maxConcurrency = Math.max(1, int());
      else if (rest === 'Policy/Report') j.policy.report = Math.min(2, int());
      else if (rest === 'Policy/AbortOnFailRatio') j.policy.abortOnFailRatio = Math.min(100, int());
      else throw notAllowed(path);
      await save(j);
      return { status: 200 };
    };
    return {
      get: (path): PluginNodeView | undefined => this.view(path),
      children: (path): string[] => this.childrenOf(path),
      add: (path, value) => write(path, value, true),
      replace: (path, value) => write(path, value, false),
      delete: async (path) => {
        const p = split(path);
        const j = job(p[0]!, path);
        if (p.length !== 1) throw notAllowed(path, 'only whole jobs can be deleted');
        this.cancel(j.name);
        this.runs.delete(j.name);
        this.jobs.delete(j.name);
        const keys = [...this.resultsOf(j.name).keys()];
        this.results.delete(j.name);
        await this.flush();
        const chunks = this.chunkKeysOf(j.name);
        this.chunks.delete(j.name);
        await this.resultSection.batch([...chunks, ...keys].map((k) => [`${j.name}\u0000${k}`, undefined]));
        await this.memberSection.del(j.name);
        await this.jobSection.del(j.name);
        return { status: 200 };
      },
      exec: async (path, args: ExecArgs, ctx: TreeContext) => {
        const p = split(path);
        job(p[0]!, path);
        const op = p.slice(1).join('/');
        if (op === 'Operations/Start') return { status: await this.start(p[0]!, args.correlator, ctx.serverId) };
        if (op === 'Operations/Cancel') return { status: this.cancel(p[0]!) };
        throw notAllowed(path);
      },
    };
  }

  private view(path: string): PluginNodeView | undefined {
    const p = split(path);
    if (p.length === 0) return { format: 'node', type: FANOUT_MOID, access: ['Get', 'Add'] };
    const j = this.jobs.get(p[0]!);
    if (!j) return undefined;
    const rest = p.slice(1).join('/');
    const node = (access: readonly ('Get' | 'Add' | 'Delete')[] = ['Get']): PluginNodeView => ({ format: 'node', access });
    const chr = (data: string | undefined, writable = true): PluginNodeView | undefined =>
      data === undefined ? undefined : { format: 'chr', data, access: writable ? ['Get', 'Replace'] : ['Get'] };
    const int = (n: number | undefined, writable = false): PluginNodeView | undefined =>
      n === undefined ? undefined : { format: 'int', data: String(n), access: writable ? ['Get', 'Replace'] : ['Get'] };
    const results = this.resultsOf(j.name);
    switch (rest) {
      case '':
        return node(['Get', 'Add', 'Delete']);
      case 'Target':
      case 'Policy':
      case 'Commands':
        return node(['Get', 'Add']);
      case 'Operations':
      case 'Progress':
      case 'Results':
        return node();
      case 'Target/GroupID':
        return chr(j.groupId);
      case 'Target/DeviceIDs':
        return chr(j.deviceIds);
      case 'Policy/Timeout':
        return int(j.policy.timeout, true);
      case 'Policy/MaxConcurrency':
        return int(j.policy.maxConcurrency, true);
      case 'Policy/Report':
        return int(j.policy.report ?? 2, true);
      case 'Policy/AbortOnFailRatio':
        return int(j.policy.abortOnFailRatio, true);
      case 'Operations/Start':
      case 'Operations/Cancel':
        return { format: 'null', access: ['Exec'] };
      case 'State':
        return int(j.state);
      case 'Report':
        return { format: 'xml', type: FANOUT_REPORT_TYPE, data: this.report(j, j.policy.report ?? 2), access: ['Get'] };
      case 'Progress/Total':
        return int(Math.max(j.total, results.size));
      case 'Progress/Succeeded':
        return int([...results.values()].filter((r) => ok(r.status)).length);
      case 'Progress/Failed':
        return int([...results.values()].filter((r) => !ok(r.status)).length);
      case 'Progress/Pending':
        return int(isFinal(j.state) ? 0 : Math.max(0, j.total - results.size));
    }
    if (p[1] === 'Commands' && p[2] && j.commands[p[2]]) {
      const c = j.commands[p[2]]!;
      if (p.length === 3) return node(['Get', 'Add']);
      const v = { Cmd: c.cmd, URI: c.uri, Data: c.data, Format: c.format, Type: c.type }[p[3]!];
      return p.length === 4 ? chr(v) : undefined;
    }
    if (p[1] === 'Results' && p[2]) {
      const r = results.get(p[2]);
      if (!r) return undefined;
      if (p.length === 3) return node();
      if (p[3] === 'DeviceID' && p.length === 4) return chr(r.deviceId, false);
      if (p[3] === 'Status' && p.length === 4) return int(r.status);
      if (p[3] === 'Cmd' && p.length === 4) return node();
      const c = p[3] === 'Cmd' ? r.cmds[Number(p[4]) - 1] : undefined;
      if (!c) return undefined;
      if (p.length === 5) return node();
      const first = c.items?.[0];
      if (p.length !== 6) return undefined;
      if (p[5] === 'Status') return int(c.status);
      if (p[5] === 'Data' && first?.data !== undefined) return { format: (first.format ?? 'chr') as PluginNodeView['format'], data: first.data, access: ['Get'] };
      if (p[5] === 'Format' && first?.format) return chr(first.format, false);
      if (p[5] === 'Type' && first?.type) return chr(first.type, false);
    }
    return undefined;
  }

  private childrenOf(path: string): string[] {
    const p = split(path);
    if (p.length === 0) return [...this.jobs.keys()];
    const j = this.jobs.get(p[0]!);
    if (!j) return [];
    const rest = p.slice(1).join('/');
    const results = this.resultsOf(j.name);
    switch (rest) {
      case '':
        return ['Target', 'Commands', 'Policy', 'Operations', 'State', 'Progress', 'Results', 'Report'];
      case 'Target':
        return [...(j.groupId !== undefined ? ['GroupID'] : []), ...(j.deviceIds !== undefined ? ['DeviceIDs'] : [])];
      case 'Commands':
        return Object.keys(j.commands).sort((a, b) => Number(a) - Number(b));
      case 'Policy':
        return ['Timeout', 'MaxConcurrency', 'Report', 'AbortOnFailRatio'].filter((l) => this.view(`${p[0]}/Policy/${l}`));
      case 'Operations':
        return ['Start', 'Cancel'];
      case 'Progress':
        return ['Total', 'Succeeded', 'Failed', 'Pending'];
      case 'Results':
        return [...results.keys()];
    }
    if (p[1] === 'Commands' && p.length === 3) return ['Cmd', 'URI', 'Data', 'Format', 'Type'].filter((l) => this.view(`${path}/${l}`));
    if (p[1] === 'Results' && p[2]) {
      const r = results.get(p[2]);
      if (!r) return [];
      if (p.length === 3) return ['DeviceID', 'Status', 'Cmd'];
      if (p.length === 4 && p[3] === 'Cmd') return r.cmds.map((_, i) => String(i + 1));
      if (p.length === 5) return ['Status', 'Data', 'Format', 'Type'].filter((l) => this.view(`${path}/${l}`));
    }
    return [];
  }
}

/** Parses a report document (a child gateway's, for merging). */
export function parseReport(xml: string): { job: string; state: number; members: { key: string; result: MemberResult }[] } {
  // A subtree's report may be large: allow an element budget proportional to its size.
  const root = parseXml(xml, { maxBytes: 256 * 1024 * 1024, maxDepth: 16, maxElements: Math.max(200_000, xml.length) });
  if (root.name !== 'FanoutReport') throw new DmStatusError(400, 'GW_FANOUT_BAD_REPORT', `expected FanoutReport, got ${root.name}`);
  const child = (e: XElement, name: string): XElement | undefined => elements(e).find((c) => c.name === name);
  const text = (e: XElement, name: string): string | undefined => {
    const c = child(e, name);
    return c ? textOf(c) : undefined;
  };
  const members = elements(root)
    .filter((e) => e.name === 'Member')
    .map((m) => ({
      key: text(m, 'Key') ?? '',
      result: {
        deviceId: text(m, 'DeviceID') ?? '',
        status: Number(text(m, 'Status') ?? 500),
        cmds: elements(m)
          .filter((c) => c.name === 'Cmd')
          .map((c) => {
            const items = elements(c)
              .filter((i) => i.name === 'Item')
              .map((i) => {
                const it: MemberItem = { uri: text(i, 'URI') ?? '' };
                const f = text(i, 'Format');
                const t = text(i, 'Type');
                const d = text(i, 'Data');
                if (f !== undefined) it.format = f;
                if (t !== undefined) it.type = t;
                if (d !== undefined) it.data = d;
                return it;
              });
            return { status: Number(text(c, 'Status') ?? 500), ...(items.length ? { items } : {}) };
          }),
      },
    }));
  return { job: text(root, 'Job') ?? '', state: Number(text(root, 'State') ?? 0), members };
}
