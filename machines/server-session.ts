/**
 * xstate v5 machines for the server side: `dmServerMachine` is the server's root actor and spawns
 * one `dmSession` child per DM session (by name, with a systemId so the HTTP layer can route a
 * message to it); each session actor serialises the messages of its session, replies through a
 * callback carried by the event, and ends on completion, abort, failure or idle timeout (a delayed
 * transition, so tests drive it with a SimulatedClock).
 *
 * The session's messages are handled by one `handleMessage` actor invoked for the whole session
 * (not one promise actor per message: creating, starting and stopping an actor for every message
 * was the largest xstate cost of the DM endpoint under load). It reports each reply back to the
 * session actor, and completes ("done: handleMessage") with the reply that ends the session.
 */
import { assign, enqueueActions, sendParent, sendTo, setup, stopChild, type ActorLogic, type AnyActorRef, type Snapshot } from 'xstate';
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

/** A reply of the session's message handler that does not end the session. */
interface HandledEvent {
  type: 'handled';
  output: OutboundMessage;
}

type HandlerEvent = { type: 'handle'; inbound: InboundMessage } | { type: 'handler.result'; output: OutboundMessage } | { type: 'handler.failed'; error: unknown };

type HandlerSnapshot = Snapshot<OutboundMessage> & { input: { session: ServerSession; parent: AnyActorRef } };

/**
 * Runs the messages of one session through `ServerSession.handle`, one at a time (the session actor
 * only sends the next one after the reply): each reply goes back to the session actor as `handled`;
 * the reply that ends the session completes this actor (its output), and a failure fails it.
 */
const messageHandler: ActorLogic<HandlerSnapshot, HandlerEvent, { session: ServerSession; parent: AnyActorRef }> = {
  transition(snapshot, event, scope) {
    if (snapshot.status !== 'active') return snapshot;
    const { session, parent } = snapshot.input;
    switch (event.type) {
      case 'handle': {
        // The session actor may have been stopped meanwhile (server stop): then nobody waits.
        const back = (ev: HandlerEvent): void => {
          if (scope.self.getSnapshot().status === 'active') scope.self.send(ev);
        };
        session.handle(event.inbound).then(
          (output) => back({ type: 'handler.result', output }),
          (error: unknown) => back({ type: 'handler.failed', error }),
        );
        return snapshot;
      }
      case 'handler.result':
        if (session.ended) return { ...snapshot, status: 'done', output: event.output };
        parent.send({ type: 'handled', output: event.output } satisfies HandledEvent);
        return snapshot;
      case 'handler.failed':
        return { ...snapshot, status: 'error', error: event.error };
      default:
        return snapshot;
    }
  },
  getInitialSnapshot: (_scope, input) => ({ status: 'active', output: undefined, error: undefined, input }),
  getPersistedSnapshot: (snapshot) => snapshot,
};

/** One server-side DM session as an actor. */
export const serverSessionMachine = setup({
  types: {
    context: {} as SessionContext,
    input: {} as SessionInput,
    events: {} as SessionMessageEvent | HandledEvent | { type: 'stop' },
  },
  actors: {
    handleMessage: messageHandler,
  },
  delays: {
    idleTimeout: ({ context }) => context.idleTimeoutMs,
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
  invoke: {
    id: 'handleMessage',
    src: 'handleMessage',
    input: ({ context, self }) => ({ session: context.session, parent: self }),
    // The reply that ends the session.
    onDone: {
      target: '.ended',
      actions: ({ context, event }) => context.pending!.reply({ ok: true, out: event.output }),
    },
    onError: {
      target: '.failed',
      actions: ({ context, event }) => context.pending?.reply({ ok: false, error: event.error }),
    },
  },
  states: {
    awaitingMessage: {
      on: {
        message: {
          target: 'processing',
          actions: [assign({ pending: ({ event }) => event }), sendTo('handleMessage', ({ event }) => ({ type: 'handle' as const, inbound: event.inbound }))],
        },
        stop: { target: 'timedOut' },
      },
      after: { idleTimeout: { target: 'timedOut' } },
    },
    processing: {
      on: {
        handled: {
          target: 'awaitingMessage',
          actions: ({ context, event }) => context.pending!.reply({ ok: true, out: event.output }),
        },
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
