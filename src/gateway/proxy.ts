/**
 * Proxy mode (GwMO-PMode-001..005, notes §2.2 variant A): commands the server addresses to a
 * device's mount point `./GwMO/Devices/<x>/...` in the gateway's tree are authorised against the
 * ACL of that mount node (PMode-004, configurable by the server with Replace ?prop=ACL), then run
 * by the gateway in its own southbound session with the device, and the device's statuses and
 * results are returned with the mount prefix restored. Everything else runs on the gateway's tree.
 * A child gateway is such a device too, so deeper devices are reached by recursion.
 */
import type { Command, Item, OperationCommand } from '../codec/model.ts';
import { GwError, describeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { DmServer } from '../server/server.ts';
import type { CommandOutcome, QueueEntry } from '../server/queue.ts';
import { cmdStatus, type Outgoing } from '../session/common.ts';
import { mapCommandUris, mapItems, prefixUri, stripPrefix } from '../session/route.ts';
import { DEFERRED_MARK } from '../session/server-session.ts';
import { aclAllows, type AclCommand } from '../tree/acl.ts';
import { executeCommands, type ExecutorContext, type Reply } from '../tree/executor.ts';
import { LOCAL, type DmTree } from '../tree/tree.ts';
import type { CommandExecutor } from '../device/device.ts';
import type { AssociationStore } from './associations.ts';

/** Where devices are mounted in the gateway's tree (notes §1.8). */
export const DEVICES_ROOT = './GwMO/Devices';

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
  const walk = (cmd: Command, path: number[]): void => {
    const code = path.length === 0 ? outcome.status : (byPath.get(path.join('.')) ?? 215);
    out.push(cmdStatus(msgRef, cmd, code));
    if (cmd.kind === 'Get' && code === 200 && outcome.results.length && !resultsPlaced) {
      resultsPlaced = true;
      out.push({ kind: 'Results', msgRef, cmdRef: cmd.cmdID, items: mapItems(outcome.results, (u) => prefixUri(mount, u)) });
    }
    if ('commands' in cmd) cmd.commands.forEach((inner, i) => walk(inner, [...path, i]));
  };
  let resultsPlaced = false;
  walk(c, []);
  return out;
}

/** Creates the gateway's executor: proxy for mounted devices, the local tree for the rest. */
export function createGatewayExecutor(deps: ProxyDeps): CommandExecutor {
  const { tree, associations, south, log } = deps;
  return async (commands: OperationCommand[], msgRef: string, ctx: ExecutorContext): Promise<Reply[]> => {
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
      const started = await forward(c, key, msgRef, ctx);
      parts.push(Array.isArray(started) ? started : started(deadline));
    }
    return (await Promise.all(parts)).flat() as Reply[];
  };

  /** Checks and sends one proxied command; returns its replies, or a function that awaits them. */
  async function forward(
    c: OperationCommand,
    key: string,
    msgRef: string,
    ctx: ExecutorContext,
  ): Promise<Outgoing[] | ((deadline: number) => Promise<Outgoing[]>)> {
    const mount = `${DEVICES_ROOT}/${key}`;
    const rec = associations.byKey(key);
    if (!rec || !tree.hasLocal(mount)) return notExecuted(msgRef, c, 404);
    // PMode-004/005: the server's rights on this device are the ACL of its mount node.
    const acl = await tree.effectiveAcl(mount, LOCAL);
    const denied = aclNeeds(c).find((need) => !aclAllows(acl, need, ctx.serverId));
    if (denied) {
      log.warn(`${c.kind} for ${rec.deviceId} refused: ${ctx.serverId} lacks ${denied} on ${mount}`);
      return notExecuted(msgRef, c, 425);
    }
    if (rec.mode === 'transparent') return notExecuted(msgRef, c, 406); // the device talks to its server itself
    if (rec.mode === 'adaptation') return notExecuted(msgRef, c, 501); // adapters arrive with the adaptation issue
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
