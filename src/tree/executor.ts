/**
 * Maps the management commands of a server package onto the tree (notes §3.3) and produces the
 * Status and Results replies, with CmdIDs left to the session, which numbers them when it builds
 * the message. Also runs the UI alerts 1100–1104 (§3.5) through an injectable handler. It never
 * throws: every failure becomes a status.
 */
import type { AlertCommand, Command, ContainerCommand, DataValue, Item, Meta, OperationCommand, ResultsCommand, StatusCommand } from '../codec/model.ts';
import { DmStatusError, GwError } from '../errors.ts';
import { DEFAULT_FORMAT, DEFAULT_TYPE } from './format.ts';
import { type DmTree, type ListEntry, type TreeContext, parseTargetUri } from './tree.ts';

/** A reply to one command, before the session gives it a CmdID. */
export type Reply = Omit<StatusCommand, 'cmdID'> | Omit<ResultsCommand, 'cmdID'>;

/** A UI alert code (§3.5). */
export type UiAlertCode = 1100 | 1101 | 1102 | 1103 | 1104;

/** A UI alert as the handler sees it (§3.5): parameters from Item 1, text from Item 2, choices from Items 3…. */
export interface UiAlert {
  code: UiAlertCode;
  /** MINDT, MAXDT, DR, MAXLEN, IT, ET … as given (URL-decoded). */
  params: Record<string, string>;
  text: string;
  /** For 1103/1104, numbered from 1 in the reply. */
  choices: string[];
  correlator?: string;
  serverId: string;
}

/**
 * The user's answer: `status` 200 (accepted/answered), 304 (1101 rejected), 214 (cancelled), 408
 * (timeout); `items` are the Status Items: the typed text for 1102, one chosen index per item for 1103/1104.
 */
export interface UiAnswer {
  status: number;
  items?: string[];
}

/** Presents a UI alert to the user and returns the answer. */
export type UiHandler = (alert: UiAlert) => UiAnswer | Promise<UiAnswer>;

/** A headless device's answers: displays and confirms succeed, text input gives the default (DR) text, choices pick '1'. */
export const defaultUiHandler: UiHandler = (alert) => {
  switch (alert.code) {
    case 1102:
      return { status: 200, items: [alert.params.DR ?? ''] };
    case 1103:
    case 1104:
      return { status: 200, items: ['1'] };
    default:
      return { status: 200 };
  }
};

/** Who sends the commands, how the UI answers, and where unexpected errors are reported. */
export interface ExecutorContext {
  serverId: string;
  ui?: UiHandler;
  /** Called with every unexpected exception (it still becomes a 500, never propagates). */
  onError?: (err: unknown, cmd: Command) => void;
}

const TNDS_TYPES = new Set(['application/vnd.syncml.dmtnds+xml', 'application/vnd.syncml.dmtnds+wbxml']);

interface Outcome {
  replies: Reply[];
  /** True when the command and everything in it succeeded (2xx): what an Atomic needs. */
  ok: boolean;
  /** True when the user aborted (a rejected or cancelled UI alert): later commands of a Sequence get 215. */
  abort: boolean;
}

interface ItemOutcome {
  status: number;
  targetRef?: string;
  sourceRef?: string;
  statusItems?: Item[];
  results?: Item[];
}

const isOk = (status: number): boolean => status >= 200 && status < 300;

const text = (d: DataValue | undefined): string => (d === undefined ? '' : typeof d === 'string' ? d : Buffer.from(d).toString('utf8'));

/**
 * Executes `commands` in order against the tree as `ctx.serverId` and returns, per command, its
 * Status (one per command when all items share a status, else one per item) followed, for a
 * successful Get, by its Results (§3.2: Results come after the Get's Status).
 */
export async function executeCommands(tree: DmTree, commands: OperationCommand[], msgRef: string, ctx: ExecutorContext): Promise<Reply[]> {
  const ex = new Executor(tree, msgRef, ctx);
  const out: Reply[] = [];
  // Outside Atomic/Sequence each command stands alone (§3.3 "Ordering"), so an abort does not skip later ones.
  for (const c of commands) out.push(...(await ex.run(c, false)).replies);
  return out;
}

class Executor {
  private readonly treeCtx: TreeContext;
  constructor(
    private readonly tree: DmTree,
    private readonly msgRef: string,
    private readonly ctx: ExecutorContext,
  ) {
    this.treeCtx = { serverId: ctx.serverId };
  }

  async run(c: Command, inAtomic: boolean): Promise<Outcome> {
    try {
      switch (c.kind) {
        case 'Atomic':
          return await this.atomic(c);
        case 'Sequence':
          return await this.sequence(c, inAtomic);
        case 'Alert':
          return await this.alert(c);
        case 'Add':
        case 'Replace':
        case 'Copy':
        case 'Delete':
        case 'Get':
        case 'Exec':
          return await this.items(c);
        case 'Unsupported':
          return this.single(this.status(c.cmdID, c.name, 406), false);
        default:
          // Status/Results inside a container are not commands to run; they need no reply.
          return { replies: [], ok: true, abort: false };
      }
    } catch (err) {
      // Only reached by a bug in this module; still a status, never an exception.
      return this.single(this.status(cmdIdOf(c), nameOf(c), this.statusFor(err, c)), false);
    }
  }

  // -------------------------------------------------------------- containers

  /**
   * Atomic (§3.3): all or nothing through a tree transaction. Get, Exec or a nested Atomic anywhere
   * inside gives 500 for that command and fails the Atomic before anything runs. On failure: 507
   * for the Atomic, 216 for inner commands that had succeeded (516 if the rollback failed), the
   * failing command keeps its own status, and commands after it are not run (215).
   */
  private async atomic(c: ContainerCommand): Promise<Outcome> {
    const forbidden = new Set<Command>();
    const scan = (cmds: Command[]): void => {
      for (const x of cmds) {
        if (x.kind === 'Get' || x.kind === 'Exec' || x.kind === 'Atomic') forbidden.add(x);
        else if (x.kind === 'Sequence') scan(x.commands);
      }
    };
    scan(c.commands);
    if (forbidden.size > 0) {
      const inner: Reply[] = [];
      const mark = (cmds: Command[]): void => {
        for (const x of cmds) {
          if (forbidden.has(x)) inner.push(this.status(cmdIdOf(x), nameOf(x), 500, refsOf(x)));
          else if (x.kind === 'Sequence') {
            inner.push(this.status(x.cmdID, 'Sequence', 215));
            mark(x.commands);
          } else inner.push(...this.skipped(x, 215));
        }
      };
      mark(c.commands);
      return { replies: [this.status(c.cmdID, 'Atomic', 507), ...inner], ok: false, abort: false };
    }
    let tx;
    try {
      tx = this.tree.begin();
    } catch (err) {
      return {
        replies: [this.status(c.cmdID, 'Atomic', this.statusFor(err, c)), ...c.commands.flatMap((x) => this.skipped(x, 215))],
        ok: false,
        abort: false,
      };
    }
    const inner: { replies: Reply[]; ran: boolean }[] = [];
    let failed = false;
    let abort = false;
    for (const x of c.commands) {
      if (failed) {
        inner.push({ replies: this.skipped(x, 215), ran: false });
        continue;
      }
      const r = await this.run(x, true);
      inner.push({ replies: r.replies, ran: true });
      if (!r.ok) failed = true;
      if (r.abort) abort = true;
    }
    if (!failed) {
      await tx.commit();
      return { replies: [this.status(c.cmdID, 'Atomic', 200), ...inner.flatMap((i) => i.replies)], ok: true, abort };
    }
    let rolledBack = true;
    try {
      await tx.rollback();
    } catch (err) {
      rolledBack = false;
      if (!(err instanceof GwError && err.code === 'TREE_ROLLBACK_FAILED' && err.cause === undefined)) this.ctx.onError?.(err, c);
    }
    const undone = rolledBack ? '216' : '516';
    // Only what actually ran was undone; 215 (not executed, e.g. after a user abort in an inner Sequence) stays.
    const undo = (r: Reply): Reply => (r.kind === 'Status' && r.data !== '215' && isOk(Number(r.data)) ? { ...r, data: undone } : r);
    const replies = inner.flatMap((i) => (i.ran ? i.replies.map(undo) : i.replies));
    return { replies: [this.status(c.cmdID, 'Atomic', 507), ...replies], ok: false, abort };
  }

  /** Sequence (§3.3): 200 once started, inner commands in order; after a user abort the rest get 215. */
  private async sequence(c: ContainerCommand, inAtomic: boolean): Promise<Outcome> {
    const replies: Reply[] = [this.status(c.cmdID, 'Sequence', 200)];
    let ok = true;
    let abort = false;
    for (const x of c.commands) {
      if (abort) {
        replies.push(...this.skipped(x, 215));
        continue;
      }
      const r = await this.run(x, inAtomic);
      replies.push(...r.replies);
      if (!r.ok) ok = false;
      if (r.abort) abort = true;
    }
    return { replies, ok, abort };
  }

  /** Statuses with `code` for a command that was not executed, and for everything inside it. */
  private skipped(x: Command, code: number): Reply[] {
    if (x.kind === 'Atomic' || x.kind === 'Sequence') {
      return [this.status(x.cmdID, x.kind, code), ...x.commands.flatMap((y) => this.skipped(y, code))];
    }
    if (x.kind === 'Status' || x.kind === 'Results') return [];
    return [this.status(cmdIdOf(x), nameOf(x), code, refsOf(x))];
  }

  // -------------------------------------------------------------- alerts

  /** UI alerts 1100–1104 (§3.5) go to the UI handler; any other code here is 406 (session alerts belong to the session). */
  private async alert(c: AlertCommand): Promise<Outcome> {
    const code = Number(c.data);
    if (!(code >= 1100 && code <= 1104)) return this.single(this.status(c.cmdID, 'Alert', 406), false);
    const params: Record<string, string> = {};
    for (const [k, v] of new URLSearchParams(text(c.items[0]?.data))) params[k] = v;
    const alert: UiAlert = {
      code: code as UiAlertCode,
      params,
      text: text(c.items[1]?.data),
      choices: c.items.slice(2).map((i) => text(i.data)),
      serverId: this.ctx.serverId,
    };
    if (c.correlator !== undefined) alert.correlator = c.correlator;
    let answer: UiAnswer;
    try {
      answer = await (this.ctx.ui ?? defaultUiHandler)(alert);
    } catch (err) {
      return this.single(this.status(c.cmdID, 'Alert', this.statusFor(err, c)), false);
    }
    const s = this.status(c.cmdID, 'Alert', answer.status);
    s.items = (answer.items ?? []).map((d) => ({ data: d }));
    // A 1101 answered No (304), a cancel (214) or a timeout (408) stops a Sequence (§3.3 Sequence).
    return { replies: [s], ok: isOk(answer.status), abort: !isOk(answer.status) };
  }

  // -------------------------------------------------------------- item commands

  private async items(c: Exclude<OperationCommand, AlertCommand | ContainerCommand>): Promise<Outcome> {
    if (c.items.length === 0) return this.single(this.status(c.cmdID, c.kind, 412), false);
    const outs: ItemOutcome[] = [];
    for (const item of c.items) {
      const o: ItemOutcome = { status: 500 };
      if (item.target?.locURI !== undefined) o.targetRef = item.target.locURI;
      if (item.source?.locURI !== undefined) o.sourceRef = item.source.locURI;
      try {
        Object.assign(o, await this.item(c, item));
      } catch (err) {
        o.status = this.statusFor(err, c);
      }
      outs.push(o);
    }
    const replies: Reply[] = [];
    const first = outs[0] as ItemOutcome;
    if (outs.every((o) => o.status === first.status)) {
      const s = this.status(c.cmdID, c.kind, first.status);
      s.targetRefs = outs.flatMap((o) => (o.targetRef === undefined ? [] : [o.targetRef]));
      s.sourceRefs = outs.flatMap((o) => (o.sourceRef === undefined ? [] : [o.sourceRef]));
      s.items = outs.flatMap((o) => o.statusItems ?? []);
      replies.push(s);
      const results = outs.flatMap((o) => o.results ?? []);
      if (results.length > 0) replies.push(this.results(c.cmdID, results));
    } else {
      for (const o of outs) {
        const s = this.status(c.cmdID, c.kind, o.status);
        if (o.targetRef !== undefined) s.targetRefs = [o.targetRef];
        if (o.sourceRef !== undefined) s.sourceRefs = [o.sourceRef];
        s.items = o.statusItems ?? [];
        replies.push(s);
        if (o.results && o.results.length > 0) replies.push(this.results(c.cmdID, o.results));
      }
    }
    return { replies, ok: outs.every((o) => isOk(o.status)), abort: false };
  }

  private async item(c: Exclude<OperationCommand, AlertCommand | ContainerCommand>, item: Item): Promise<Omit<ItemOutcome, 'targetRef' | 'sourceRef'>> {
    const raw = item.target?.locURI;
    if (raw === undefined || raw === '') throw new DmStatusError(412, 'TREE_NO_TARGET', `${c.kind} item without Target`);
    const target = parseTargetUri(raw);
    const meta: Meta = { ...(c.meta ?? {}), ...(item.meta ?? {}) }; // item Meta wins over command Meta
    const tctx = this.treeCtx;
    const plainTarget = (): string => {
      if (target.list !== undefined || target.prop !== undefined) {
        throw new DmStatusError(405, 'TREE_NOT_ALLOWED', `${c.kind} does not accept ${raw}`);
      }
      return target.uri;
    };
    switch (c.kind) {
      case 'Add': {
        rejectTnds(meta);
        const v: { format?: string; type?: string; data?: DataValue } = {};
        if (meta.format !== undefined) v.format = meta.format;
        if (meta.type !== undefined) v.type = meta.type;
        if (item.data !== undefined) v.data = item.data;
        return await this.tree.add(plainTarget(), v, tctx);
      }
      case 'Replace': {
        if (target.prop !== undefined) return await this.tree.replaceProperty(target.uri, target.prop, text(item.data), tctx);
        rejectTnds(meta);
        const v: { format?: string; type?: string; data?: DataValue } = {};
        if (meta.format !== undefined) v.format = meta.format;
        if (meta.type !== undefined) v.type = meta.type;
        if (item.data !== undefined) v.data = item.data;
        return await this.tree.replace(plainTarget(), v, tctx);
      }
      case 'Delete':
        return await this.tree.delete(plainTarget(), tctx);
      case 'Copy': {
        const src = item.source?.locURI;
        if (src === undefined || src === '') throw new DmStatusError(412, 'TREE_NO_SOURCE', 'Copy item without Source');
        return await this.tree.copy(plainTarget(), src, tctx);
      }
      case 'Exec': {
        const args: { data?: DataValue; correlator?: string } = {};
        if (item.data !== undefined) args.data = item.data;
        if (c.correlator !== undefined) args.correlator = c.correlator;
        const r = await this.tree.exec(plainTarget(), args, tctx);
        return r.data === undefined ? { status: r.status } : { status: r.status, statusItems: [{ data: r.data }] };
      }
      case 'Get': {
        if (target.list !== undefined) {
          const entries = await this.tree.list(target.uri, target.list, tctx);
          return { status: 200, results: entries.map(resultItem) };
        }
        if (target.prop !== undefined) {
          const value = await this.tree.getProperty(target.uri, target.prop, tctx);
          return { status: 200, results: [{ source: { locURI: raw }, data: value }] };
        }
        const v = await this.tree.get(target.uri, tctx);
        // Item Source = the URI as the server sent it, so it can match its request.
        return { status: 200, results: [resultItem({ ...v, uri: raw })] };
      }
    }
  }

  // -------------------------------------------------------------- helpers

  private statusFor(err: unknown, c: Command): number {
    if (err instanceof DmStatusError && err.status !== undefined) return err.status;
    this.ctx.onError?.(err, c);
    return err instanceof GwError && err.status !== undefined ? err.status : 500;
  }

  private status(cmdRef: string, cmd: string, code: number, refs: { targetRefs: string[]; sourceRefs: string[] } = { targetRefs: [], sourceRefs: [] }) {
    const s: Omit<StatusCommand, 'cmdID'> = {
      kind: 'Status',
      msgRef: this.msgRef,
      cmdRef,
      cmd,
      targetRefs: refs.targetRefs,
      sourceRefs: refs.sourceRefs,
      data: String(code),
      items: [],
    };
    return s;
  }

  private results(cmdRef: string, items: Item[]): Omit<ResultsCommand, 'cmdID'> {
    return { kind: 'Results', msgRef: this.msgRef, cmdRef, items };
  }

  private single(s: Reply, ok: boolean): Outcome {
    return { replies: [s], ok, abort: false };
  }
}

function rejectTnds(meta: Meta): void {
  // §3.3 Add/Replace: a client without TNDS answers 415 to a TNDS payload.
  if (meta.type !== undefined && TNDS_TYPES.has(meta.type)) throw new DmStatusError(415, 'TREE_NO_TNDS', 'TNDS payloads are not supported');
}

/** A Results Item for one node: Meta only when not the defaults chr / text/plain (§3.6 P3). */
function resultItem(e: ListEntry): Item {
  const item: Item = { source: { locURI: e.uri } };
  const meta: Meta = {};
  if (e.format !== DEFAULT_FORMAT) meta.format = e.format;
  if (e.type !== '' && e.type !== DEFAULT_TYPE) meta.type = e.type;
  if (meta.format !== undefined || meta.type !== undefined) item.meta = meta;
  if (e.data !== undefined) item.data = e.data;
  return item;
}

function cmdIdOf(c: Command): string {
  return c.cmdID;
}

function nameOf(c: Command): string {
  return c.kind === 'Unsupported' ? c.name : c.kind;
}

function refsOf(c: Command): { targetRefs: string[]; sourceRefs: string[] } {
  if (!('items' in c)) return { targetRefs: [], sourceRefs: [] };
  const items: Item[] = c.items;
  return {
    targetRefs: items.flatMap((i) => (i.target?.locURI ? [i.target.locURI] : [])),
    sourceRefs: items.flatMap((i) => (i.source?.locURI ? [i.source.locURI] : [])),
  };
}
