/**
 * xstate v5 machines for the server side: `dmServerMachine` is the server's root actor and spawns
 * one `dmSession` child per DM session (by name, with a systemId so the HTTP layer can route a
 * message to it); each session actor serialises the messages of its session, replies through a
 * callback carried by the event, and ends on completion, abort, failure or idle timeout (a delayed
 * transition, so tests drive it with a SimulatedClock).
 */
import { assign, enqueueActions, fromPromise, sendParent, setup, stopChild } from 'xstate';
import { describeError } from '../src/errors.ts';
import type { InboundMessage, OutboundMessage, ServerSession } from '../src/session/server-session.ts';

/** Delivers a message to a session; `reply` receives the answer or the error. */
export interface SessionMessageEvent {
  type: 'message';
  inbound: InboundMessage;
  reply: (result: { ok: true; out: OutboundMessage } | { ok: false; error: unknown }) => void;
}

/** Input of one session actor. */
export interface SessionInput {
  key: string;
  session: ServerSession;
  idleTimeoutMs: number;
}

interface SessionContext extends SessionInput {
  pending: SessionMessageEvent | undefined;
}

/** One server-side DM session as an actor. */
export const serverSessionMachine = setup({
  types: {
    context: {} as SessionContext,
    input: {} as SessionInput,
    events: {} as SessionMessageEvent | { type: 'stop' },
  },
  actors: {
    handleMessage: fromPromise<OutboundMessage, { session: ServerSession; inbound: InboundMessage }>(({ input }) =>
      input.session.handle(input.inbound),
    ),
  },
  delays: {
    idleTimeout: ({ context }) => context.idleTimeoutMs,
  },
  guards: {
    sessionEnded: ({ context }) => context.session.ended,
  },
  actions: {
    replyBusy: (_, params: { event: SessionMessageEvent }) =>
      params.event.reply({ ok: false, error: new Error('a message of this session is still being processed') }),
    notifyParent: sendParent(({ context }) => ({ type: 'session.ended', key: context.key, reason: context.session.endReason })),
  },
}).createMachine({
  id: 'dmSession',
  context: ({ input }) => ({ ...input, pending: undefined }),
  initial: 'awaitingMessage',
  states: {
    awaitingMessage: {
      on: {
        message: { target: 'processing', actions: assign({ pending: ({ event }) => event }) },
        stop: { target: 'timedOut' },
      },
      after: { idleTimeout: { target: 'timedOut' } },
    },
    processing: {
      invoke: {
        src: 'handleMessage',
        input: ({ context }) => ({ session: context.session, inbound: context.pending!.inbound }),
        onDone: [
          {
            guard: 'sessionEnded',
            target: 'ended',
            actions: ({ context, event }) => context.pending!.reply({ ok: true, out: event.output }),
          },
          {
            target: 'awaitingMessage',
            actions: ({ context, event }) => context.pending!.reply({ ok: true, out: event.output }),
          },
        ],
        onError: {
          target: 'failed',
          actions: ({ context, event }) => context.pending!.reply({ ok: false, error: event.error }),
        },
      },
      on: {
        message: { actions: { type: 'replyBusy', params: ({ event }) => ({ event }) } },
      },
    },
    ended: { type: 'final', entry: 'notifyParent' },
    timedOut: {
      type: 'final',
      entry: [({ context }) => context.session.timeout(), 'notifyParent'],
    },
    failed: {
      type: 'final',
      entry: [({ context }) => context.session.timeout(), 'notifyParent'],
    },
  },
});

/** Events of the server's root actor. */
export type ServerEvent =
  | { type: 'session.open'; input: SessionInput }
  | { type: 'session.ended'; key: string; reason?: string }
  | { type: 'shutdown' };

/** The DM server's root actor: supervises session actors and counts them. */
export const dmServerMachine = setup({
  types: {
    context: {} as { active: number; completed: number; onEnded?: (key: string, reason?: string) => void },
    input: {} as { onEnded?: (key: string, reason?: string) => void },
    events: {} as ServerEvent,
  },
  actors: { dmSession: serverSessionMachine },
}).createMachine({
  id: 'dmServer',
  context: ({ input }) => ({ active: 0, completed: 0, ...(input.onEnded ? { onEnded: input.onEnded } : {}) }),
  initial: 'serving',
  states: {
    serving: {
      on: {
        'session.open': {
          // enqueueActions: the child's id and systemId come from the event (systemId must be a string).
          actions: enqueueActions(({ enqueue, event }) => {
            const input = event.input;
            enqueue.spawnChild('dmSession', { id: input.key, systemId: `session:${input.key}`, input });
            enqueue.assign({ active: ({ context }) => context.active + 1 });
          }),
        },
        'session.ended': {
          actions: [
            stopChild(({ event }) => event.key),
            assign({ active: ({ context }) => context.active - 1, completed: ({ context }) => context.completed + 1 }),
            ({ context, event }) => {
              try {
                context.onEnded?.(event.key, event.reason);
              } catch (err) {
                console.error(`session end hook failed: ${describeError(err)}`);
              }
            },
          ],
        },
        shutdown: { target: 'stopped' },
      },
    },
    stopped: { type: 'final' },
  },
});
