/**
 * Proxy mode (GwMO-PMode-001..005, notes §2.2 variant A): commands the server addresses to a
 * device's mount point `./GwMO/Devices/<x>/...` in the gateway's tree are authorised against the
 * ACL of that mount node (PMode-004, configurable by the server with Replace ?prop=ACL), then run
 * by the gateway in its own southbound session with the device, and the device's statuses and
 * results are returned with the mount prefix restored. Everything else runs on the gateway's tree.
 * A child gateway is such a device too, so deeper devices are reached by recursion.
 */
import type { Command, Item, OperationCommand } from '../codec/model.ts';
import { DmStatusError, GwError, describeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { DmServer } from '../server/server.ts';
import type { CommandOutcome, QueueEntry } from '../server/queue.ts';
import { cmdStatus, type Outgoing } from '../session/common.ts';
import { mapCommandUris, mapItems, prefixUri, stripPrefix } from '../session/route.ts';
import { DEFERRED_MARK } from '../session/server-session.ts';
import { aclAllows, type AclCommand } from '../tree/acl.ts';
import { executeCommands, type ExecutorContext, type Reply } from '../tree/executor.ts';
import { LOCAL, type DmTree, type NodeValue } from '../tree/tree.ts';
import type { CommandExecutor } from '../device/device.ts';
import type { AssociationStore } from './associations.ts';
import type { Adapter } from '../../adapters/contract.ts';
import { DEVICES_ROOT } from './inventory.ts';

export { DEVICES_ROOT };

// Below a mount point (the device's own nodes). The mount node itself and its properties
// (`./GwMO/Devices/d0001?prop=ACL`) belong to the gateway: that is where the server sets its rights.
const MOUNT_RE = /^(?:\.\/)?GwMO\/Devices\/([^/?]+)\/.*$/;

/** Services the proxy needs. */
export interface ProxyDeps {
  tree: DmTree;
  associations: AssociationStore;
  south: DmServer;
  timeoutMs: number;
  log: Logger;
  /**
   * Records, durably, that the gateway answered 202 for a southbound entry: its result must be
   * reported with a DeferredResult when the device answers (also after a gateway restart).
   */
  defer(entry: QueueEntry, mount: string, original: Command): Promise<void>;
  /** The adapter of an adaptation network, by name (for native multicast). */
  adapter?(network: string): Adapter | undefined;
}

/** Every Target/Source URI a command touches (through Atomic/Sequence). */
function urisOf(c: Command): string[] {
  if ('commands' in c) return c.commands.flatMap(urisOf);
  if ('items' in c) return c.items.flatMap((i) => [i.target?.locURI, i.source?.locURI].filter((u): u is string => !!u));
  return [];
}

/** The mount key a command is for, '' when it is local, or an error when it mixes devices. */
function mountKeyOf(c: Command): string {
  const keys = new Set(urisOf(c).map((u) => MOUNT_RE.exec(u)?.[1] ?? ''));
  if (keys.size > 1) throw new GwError('GW_MIXED_TARGETS', 'one command may address one device (or only the gateway)', { status: 400 });
  return [...keys][0] ?? '';
}

/** ACL commands a DM command needs (Copy has no ACL entry of its own: Get on the source, Replace on the target). */
function aclNeeds(c: Command): AclCommand[] {
  switch (c.kind) {
    case 'Atomic':
    case 'Sequence':
      return c.commands.flatMap(aclNeeds);
    case 'Copy':
      return ['Get', 'Replace'];
    case 'Add':
    case 'Delete':
    case 'Exec':
    case 'Get':
    case 'Replace':
      return [c.kind];
    default:
      return [];
  }
}

/** Statuses for a command (and, in a container, its inner commands: 215) that was not executed. */
export function notExecuted(msgRef: string, c: Command, code: number): Outgoing[] {
  const out = [cmdStatus(msgRef, c, code)];
  if ('commands' in c) for (const inner of c.commands) out.push(...notExecuted(msgRef, inner, 215).map((s) => s));
  return out;
}

/** Turns a device's outcome into the replies to the server's command (URIs under the mount). */
export function outcomeReplies(msgRef: string, c: Command, outcome: CommandOutcome, mount: string): Outgoing[] {
  const byPath = new Map(outcome.statuses.map((s) => [s.path.join('.'), s.status]));
  const out: Outgoing[] = [];
  const paths = outcome.resultPaths?.length === outcome.results.length ? outcome.resultPaths : undefined;
  const walk = (cmd: Command, path: number[]): void => {
    const code = path.length === 0 ? outcome.status : (byPath.get(path.join('.')) ?? 215);
    out.push(cmdStatus(msgRef, cmd, code));
    if (cmd.kind === 'Get' && code === 200 && outcome.results.length) {
      // Each Get gets the results that answer it; without result paths (older outcomes), the first Get gets them all.
      const here = paths ? outcome.results.filter((_, i) => paths[i]!.join('.') === path.join('.')) : resultsPlaced ? [] : outcome.results;
      resultsPlaced = true;
      if (here.length) out.push({ kind: 'Results', msgRef, cmdRef: cmd.cmdID, items: mapItems(here, (u) => prefixUri(mount, u)) });
    }
    if ('commands' in cmd) cmd.commands.forEach((inner, i) => walk(inner, [...path, i]));
  };
  let resultsPlaced = false;
  walk(c, []);
  return out;
}

/** One command of a per-member run (URIs relative to the device's root). */
export interface MemberCommand {
  kind: 'Get' | 'Replace' | 'Add' | 'Delete' | 'Exec';
  uri: string;
  data?: string;
  format?: string;
  type?: string;
}

/** A result item of a member command (URI relative to the device's root). */
export interface MemberItem {
  uri: string;
  data?: string;
  format?: string;
  type?: string;
}

/** What one member did with a run of commands. */
export interface MemberRun {
  /** The worst per-command status (the first that is not 2xx), or a GwMO result code (461 ...). */
  status: number;
  cmds: { status: number; items?: MemberItem[] }[];
}

/** The gateway's executor, and the per-member runner fanout jobs use. */
export interface GatewayExecutor {
  execute: CommandExecutor;
  /**
   * Runs `commands` on the device with mount key `key` as one DM Sequence (notes §1.5: "executed
   * per member as a DM Sequence"), authorised as `ctx.serverId` against the device's mount ACL.
   * A member that has not answered by `deadline` is 461; its queued command is withdrawn if it was
   * not sent yet.
   */
  runMember(key: string, commands: MemberCommand[], ctx: ExecutorContext, deadline: number): Promise<MemberRun>;
  /**
   * `runMember` for many members at once, against one deadline (a fanout partition): `each` gets
   * every member's run exactly once, by index, as it finishes (461 for those not done by the deadline).
   */
  runMembers(keys: readonly string[], commands: MemberCommand[], ctx: ExecutorContext, deadline: number, each: (i: number, run: MemberRun) => void): void;
  /**
   * Runs one Replace/Exec on many adaptation members with their networks' native multicast (a KNX
   * group address, a ZigBee group) where the adapter offers one. Only members whose mount ACL lets
   * `ctx.serverId` run the command are considered. Returns the runs of the members it covered; the
   * others are left to `runMember`.
   */
  runMulticast(keys: readonly string[], command: MemberCommand, ctx: ExecutorContext): Promise<Map<string, MemberRun>>;
}

type Awaitable<T> = T | Promise<T>;
const isThenable = <T>(x: Awaitable<T>): x is Promise<T> => typeof (x as { then?: unknown } | null | undefined)?.then === 'function';

/** A Get's outcome for a member: 200 and its Results item, as the executor builds it. */
function gotValue(itemUri: string, v: NodeValue): MemberRun['cmds'][number] {
  const item: MemberItem = { uri: itemUri };
  if (v.data !== undefined) item.data = typeof v.data === 'string' ? v.data : Buffer.from(v.data).toString('base64');
  if (v.format !== 'chr') item.format = v.format;
  if (v.type !== '' && v.type !== 'text/plain') item.type = v.type;
  return { status: 200, items: [item] };
}

/** A member that did not answer in time (GwMO 461) for every command. */
function unreachable(commands: readonly MemberCommand[]): MemberRun {
  return { status: 461, cmds: commands.map(() => ({ status: 461 })) };
}

/** A member whose run threw: the error's status (500 when it has none) for every command. */
function failedRun(commands: readonly MemberCommand[], err: unknown): MemberRun {
  const status = err instanceof GwError && err.status !== undefined ? err.status : 500;
  return { status, cmds: commands.map(() => ({ status })) };
}

/** Per command of a direct run: its URI relative to the mount, and the URI its Results item carries (the same for every member). */
type DirectPlan = { rel: string; itemUri: string }[];

function directPlan(commands: readonly MemberCommand[]): DirectPlan {
  return commands.map((c) => {
    const rel = c.uri.replace(/^\.\/?/, '');
    return { rel, itemUri: rel ? `./${rel}` : '.' };
  });
}

/** Commands `runDirect` takes: Get, Replace and Exec on plain URIs (no `?list=`, `?prop=`). */
function isDirect(c: MemberCommand): boolean {
  return (c.kind === 'Get' || c.kind === 'Replace' || c.kind === 'Exec') && !c.uri.includes('?');
}

/** The worst status of a run: the first that is not 2xx, else the first. */
export function worstStatus(statuses: number[]): number {
  return statuses.find((s) => s < 200 || s > 299) ?? statuses[0] ?? 200;
}

/** Creates the gateway's executor: proxy for mounted devices, the local tree for the rest. */
export function createGatewayExecutor(deps: ProxyDeps): GatewayExecutor {
  const { tree, associations, south, log } = deps;
  const execute = async (commands: OperationCommand[], msgRef: string, ctx: ExecutorContext): Promise<Reply[]> => {
    // Proxied commands are all sent first and then awaited together, against one deadline for the
    // whole message: waiting for them one after another could outlast the parent's session timeout.
    const deadline = Date.now() + deps.timeoutMs;
    const parts: (Outgoing[] | Promise<Outgoing[]>)[] = [];
    for (const c of commands) {
      let key: string;
      try {
        key = mountKeyOf(c);
      } catch (err) {
        parts.push(notExecuted(msgRef, c, 400));
        log.warn(describeError(err));
        continue;
      }
      if (!key) {
        parts.push((await executeCommands(tree, [c], msgRef, ctx)) as Outgoing[]);
        continue;
      }
      const started = await forward(c, key, msgRef, ctx, 'defer');
      parts.push(Array.isArray(started) ? started : started(deadline));
    }
    return (await Promise.all(parts)).flat() as Reply[];
  };

  const runMember = async (key: string, commands: MemberCommand[], ctx: ExecutorContext, deadline: number): Promise<MemberRun> => {
    const mount = `${DEVICES_ROOT}/${key}`;
    const rec = associations.byKey(key);
    if (rec?.mode === 'adaptation' && commands.every(isDirect)) {
      // The common fanout commands (Get, Replace, Exec on plain URIs) go straight to the tree's
      // operations, which make every check the executor would (existence, AccessType, ACL); a
      // full Sequence through the executor costs several times more per member.
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<MemberRun>((resolve) => {
        timer = setTimeout(() => resolve(unreachable(commands)), Math.max(0, deadline - Date.now()));
      });
      const run = await Promise.race([runDirect(mount, commands, ctx), late]);
      clearTimeout(timer);
      return run;
    }
    const inner = commands.map((c, i): OperationCommand => {
      const item: Item = { target: { locURI: prefixUri(mount, c.uri) } };
      if (c.data !== undefined) item.data = c.data;
      if (c.format || c.type) item.meta = { ...(c.format ? { format: c.format } : {}), ...(c.type ? { type: c.type } : {}) };
      return { kind: c.kind, cmdID: String(i + 1), items: [item] } as OperationCommand;
    });
    const seq = { kind: 'Sequence', cmdID: '0', commands: inner } as OperationCommand;
    let replies: Outgoing[];
    if (rec?.mode === 'adaptation') {
      // A native operation cannot be recalled once sent to the radio; past the deadline the member
      // is reported 461 and whatever the device does afterwards is not waited for.
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<Outgoing[]>((resolve) => {
        timer = setTimeout(() => resolve(notExecuted('fanout', seq, 461)), Math.max(0, deadline - Date.now()));
      });
      replies = await Promise.race([executeCommands(tree, [seq], 'fanout', ctx) as Promise<Outgoing[]>, late]);
      clearTimeout(timer);
    } else {
      const started = await forward(seq, key, 'fanout', ctx, 'fail');
      replies = Array.isArray(started) ? started : await started(deadline);
    }
    const cmds: MemberRun['cmds'] = commands.map(() => ({ status: 215 }));
    let seqStatus = 200;
    for (const r of replies) {
      if (r.kind === 'Status' && r.cmdRef === '0') seqStatus = Number(r.data);
      else if (r.kind === 'Status') {
        const c = cmds[Number(r.cmdRef) - 1];
        if (c) c.status = Number(r.data);
      } else if (r.kind === 'Results') {
        const c = cmds[Number(r.cmdRef) - 1];
        if (!c) continue;
        c.items = r.items.map((it) => ({
          uri: stripPrefix(mount, it.source?.locURI ?? ''),
          ...(it.data !== undefined ? { data: typeof it.data === 'string' ? it.data : Buffer.from(it.data).toString('base64') } : {}),
          ...(it.meta?.format ? { format: it.meta.format } : {}),
          ...(it.meta?.type ? { type: it.meta.type } : {}),
        }));
      }
    }
    // A Sequence that failed as a whole (device unreachable, refused) gives its status to every command.
    if (seqStatus < 200 || seqStatus > 299) for (const c of cmds) if (c.status === 215) c.status = seqStatus;
    return { status: worstStatus([seqStatus, ...cmds.map((c) => c.status)]), cmds };
  };

  const runMulticast = async (keys: readonly string[], command: MemberCommand, ctx: ExecutorContext): Promise<Map<string, MemberRun>> => {
    const out = new Map<string, MemberRun>();
    if (command.kind !== 'Replace' && command.kind !== 'Exec') return out;
    const byNetwork = new Map<string, { adapter: Adapter; keyOf: Map<string, string> }>();
    for (const key of keys) {
      const rec = associations.byKey(key);
      if (rec?.mode !== 'adaptation' || !rec.network || rec.address === undefined) continue;
      const adapter = deps.adapter?.(rec.network);
      if (!adapter?.multicast) continue;
      // The mount point's ACL governs the device's subtree (PMode-004); reading it costs no native operation.
      if (!aclAllows(await tree.effectiveAcl(`${DEVICES_ROOT}/${key}`, ctx), command.kind, ctx.serverId)) continue;
      let g = byNetwork.get(rec.network);
      if (!g) byNetwork.set(rec.network, (g = { adapter, keyOf: new Map() }));
      g.keyOf.set(rec.address, key);
    }
    await Promise.all(
      [...byNetwork.values()].map(async ({ adapter, keyOf }) => {
        try {
          const res = await adapter.multicast!({
            addresses: [...keyOf.keys()],
            kind: command.kind as 'Replace' | 'Exec',
            path: command.uri.replace(/^\.\//, ''),
            ...(command.data !== undefined ? { data: command.data } : {}),
            ...(command.format !== undefined ? { format: command.format } : {}),
          });
          for (const [address, r] of res) {
            const key = keyOf.get(address);
            if (key) out.set(key, { status: r.status, cmds: [{ status: r.status, ...(r.data !== undefined ? { items: [{ uri: command.uri, data: r.data }] } : {}) }] });
          }
        } catch (err) {
          // A failed multicast decides nothing: its members go device by device.
          log.warn(`multicast on ${adapter.name} failed, falling back to per-device operations: ${describeError(err)}`);
        }
      }),
    );
    return out;
  };

  const runMembers = (keys: readonly string[], commands: MemberCommand[], ctx: ExecutorContext, deadline: number, each: (i: number, run: MemberRun) => void): void => {
    const direct = commands.every(isDirect);
    const plan = direct ? directPlan(commands) : [];
    const reported = new Uint8Array(keys.length);
    let open = 0;
    let timer: NodeJS.Timeout | undefined;
    const report = (i: number, run: MemberRun): void => {
      if (reported[i]) return;
      reported[i] = 1;
      each(i, run);
    };
    const settled = (i: number, run: MemberRun): void => {
      report(i, run);
      if (--open === 0) clearTimeout(timer);
    };
    /** Members answered at once: index and run, reported together in one microtask. */
    let now: (number | MemberRun)[] | undefined;
    keys.forEach((key, i) => {
      const rec = associations.byKey(key);
      if (direct && rec?.mode === 'adaptation') {
        // One deadline timer for the whole partition instead of one per member.
        open++;
        const run = runDirect(`${DEVICES_ROOT}/${key}`, commands, ctx, plan);
        if (isThenable(run)) {
          run.then(
            (r) => settled(i, r),
            (err: unknown) => settled(i, failedRun(commands, err)),
          );
        } else (now ??= []).push(i, run); // reported after the loop, as an async answer would be
      } else {
        runMember(key, commands, ctx, deadline).then(
          (run) => report(i, run),
          (err: unknown) => report(i, failedRun(commands, err)),
        );
      }
    });
    if (now) {
      const ready = now;
      queueMicrotask(() => {
        for (let k = 0; k < ready.length; k += 2) settled(ready[k] as number, ready[k + 1] as MemberRun);
      });
    }
    if (open > 0) {
      timer = setTimeout(() => keys.forEach((_, i) => report(i, unreachable(commands))), Math.max(0, deadline - Date.now()));
    }
  };

  return { execute, runMember, runMembers, runMulticast };

  /**
   * A member's commands on the tree directly, in order, as a Sequence would run them (a failed
   * command does not stop the next: §3.3 Sequence stops only on a user abort, which these cannot
   * raise). Statuses, Results items and their URIs are those `executeCommands` gives.
   */
  function runDirect(mount: string, commands: MemberCommand[], ctx: ExecutorContext, plan: DirectPlan = directPlan(commands)): Awaitable<MemberRun> {
    const tctx = { serverId: ctx.serverId };
    // One command (the usual fanout): answered without a promise when the device answers at once.
    if (commands.length === 1) {
      const one = directCommand(mount, commands[0]!, plan[0]!, tctx);
      return isThenable(one) ? one.then((out) => ({ status: out.status, cmds: [out] })) : { status: one.status, cmds: [one] };
    }
    return (async () => {
      const cmds: MemberRun['cmds'] = [];
      let worst = 200;
      for (let i = 0; i < commands.length; i++) {
        const out = await directCommand(mount, commands[i]!, plan[i]!, tctx);
        if ((out.status < 200 || out.status > 299) && worst >= 200 && worst <= 299) worst = out.status;
        cmds.push(out);
      }
      return { status: worst, cmds };
    })();
  }

  /** One command of a direct run: its status (and Results item), as the executor would give them. */
  function directCommand(mount: string, c: MemberCommand, step: DirectPlan[number], tctx: { serverId: string | undefined }): Awaitable<MemberRun['cmds'][number]> {
    const uri = step.rel ? `${mount}/${step.rel}` : mount; // prefixUri(mount, c.uri), for a URI without a query
    try {
      if (c.kind === 'Get') {
        const v = tree.read(uri, tctx);
        return isThenable(v) ? v.then((x) => gotValue(step.itemUri, x), (err: unknown) => failedCommand(c, uri, err)) : gotValue(step.itemUri, v);
      }
      const op =
        c.kind === 'Replace'
          ? tree.replace(uri, { ...(c.format !== undefined ? { format: c.format } : {}), ...(c.type !== undefined ? { type: c.type } : {}), ...(c.data !== undefined ? { data: c.data } : {}) }, tctx)
          : tree.exec(uri, c.data !== undefined ? { data: c.data } : {}, tctx);
      return op.then(
        (r) => ({ status: r.status }),
        (err: unknown) => failedCommand(c, uri, err),
      );
    } catch (err) {
      return failedCommand(c, uri, err);
    }
  }

  /** A command of a direct run that failed: its DM status; anything but a DmStatusError is logged. */
  function failedCommand(c: MemberCommand, uri: string, err: unknown): MemberRun['cmds'][number] {
    if (!(err instanceof DmStatusError)) log.warn(`${c.kind} ${uri} failed: ${describeError(err)}`);
    return { status: err instanceof GwError && err.status !== undefined ? err.status : 500 };
  }


  /** Checks and sends one proxied command; returns its replies, or a function that awaits them. */
  async function forward(
    c: OperationCommand,
    key: string,
    msgRef: string,
    ctx: ExecutorContext,
    onTimeout: 'defer' | 'fail',
  ): Promise<Outgoing[] | ((deadline: number) => Promise<Outgoing[]>)> {
    const mount = `${DEVICES_ROOT}/${key}`;
    const rec = associations.byKey(key);
    if (!rec || rec.mode === 'transparent') return notExecuted(msgRef, c, rec ? 406 : 404); // transparent: the device talks to its server itself
    // PMode-004/005: the server's rights on this device are the ACL of its mount node.
    const acl = await tree.effectiveAcl(mount, LOCAL);
    const denied = aclNeeds(c).find((need) => !aclAllows(acl, need, ctx.serverId));
    if (denied) {
      log.warn(`${c.kind} for ${rec.deviceId} refused: ${ctx.serverId} lacks ${denied} on ${mount}`);
      return notExecuted(msgRef, c, 425);
    }
    // Adaptation: the device's subtree is its adapter's plugin under the mount (inventory.ts).
    if (rec.mode === 'adaptation') return (await executeCommands(tree, [c], msgRef, ctx)) as Outgoing[];
    const { cmdID: _drop, ...rest } = c;
    void _drop;
    const local = mapCommandUris(rest as Outgoing, (u) => stripPrefix(mount, u));
    // The same command still pending for the device (the server re-sent it after a restart or a
    // lost session): wait for that one instead of sending it twice.
    const same = JSON.stringify(local);
    const entry =
      (await south.queue.pending(rec.deviceId)).find((e) => JSON.stringify(e.command) === same) ?? (await south.queue.enqueue(rec.deviceId, local));
    await south.notify(rec.deviceId).catch((err: unknown) => log.warn(`cannot wake ${rec.deviceId}: ${describeError(err)}`));
    return async (deadline) => {
      const done = await south.queue.waitFor(rec.deviceId, entry.id, Math.max(0, deadline - Date.now()));
      if (!done?.outcome && onTimeout === 'fail') {
        // A fanout member that did not answer in time: GwMO 461, and the command is withdrawn if
        // the device has not received it yet, so it does not run later unknown to the server.
        const withdrawn = await south.queue.cancel(rec.deviceId, entry.id);
        log.info(`${rec.deviceId} did not answer in time (461)${withdrawn ? '; command withdrawn' : '; command already sent'}`);
        return notExecuted(msgRef, c, 461);
      }
      if (!done?.outcome) {
        // Not back in time: accepted for processing; the result follows as a DeferredResult alert.
        log.info(`${c.kind} for ${rec.deviceId} still pending after ${deps.timeoutMs} ms; answering 202`, { entry: entry.id });
        await deps.defer(entry, mount, c);
        return [cmdStatus(msgRef, c, 202, [{ meta: { type: DEFERRED_MARK, format: 'chr' }, data: entry.id }])];
      }
      return outcomeReplies(msgRef, c, done.outcome, mount);
    };
  }
}

/** Items of a DeferredResult alert: the status, then any results, under the mount. */
export function deferredItems(mount: string, original: Command, e: QueueEntry, type: string): Item[] {
  const target = 'items' in original ? (original.items[0]?.target?.locURI ?? mount) : mount;
  return [
    { source: { locURI: target }, meta: { type, format: 'int' }, data: String(e.outcome?.status ?? 500) },
    ...mapItems(e.outcome?.results ?? [], (u) => prefixUri(mount, u)).map((it) => ({ ...it, meta: { ...(it.meta ?? {}), type } })),
  ];
}
