/**
 * xstate v5 machine for the client (device) side of a DM session: send Package 1, then exchange
 * messages until the server ends the session. Each exchange is an invoked promise (transport POST
 * plus protocol handling); a request that gets no answer within `requestTimeoutMs` fails the
 * session through a delayed transition (testable with a SimulatedClock).
 */
import { assign, fromPromise, setup } from 'xstate';
import type { ClientOutbound, ClientSession } from '../src/session/client-session.ts';
import { describeError } from '../src/errors.ts';

/** Sends one client message and returns the server's decoded reply. */
export type ClientExchange = (out: ClientOutbound) => Promise<{ message: import('../src/codec/model.ts').SyncMLMessage; raw: Uint8Array; hmacHeader?: string }>;

/** Input of a client session actor. */
export interface ClientSessionInput {
  session: ClientSession;
  exchange: ClientExchange;
  requestTimeoutMs: number;
}

/** How the session ended. */
export interface ClientSessionOutput {
  ok: boolean;
  reason: string;
  messages: number;
  executed: ClientSession['executed'];
}

interface Ctx extends ClientSessionInput {
  out: ClientOutbound | undefined;
  messages: number;
  error: string | undefined;
}

/** One client-side DM session as an actor. */
export const clientSessionMachine = setup({
  types: {
    context: {} as Ctx,
    input: {} as ClientSessionInput,
    output: {} as ClientSessionOutput,
  },
  actors: {
    exchange: fromPromise<ClientOutbound | undefined, { session: ClientSession; exchange: ClientExchange; out: ClientOutbound }>(
      async ({ input }) => {
        const reply = await input.exchange(input.out);
        try {
          return await input.session.handle(reply.message, reply.raw, reply.hmacHeader);
        } catch (err) {
          // The device cannot go on (e.g. a reply that can never fit): tell the server with Alert 1223.
          return input.session.abort(describeError(err));
        }
      },
    ),
  },
  delays: { requestTimeout: ({ context }) => context.requestTimeoutMs },
}).createMachine({
  id: 'dmClientSession',
  context: ({ input }) => ({ ...input, out: input.session.start(), messages: 1, error: undefined }),
  initial: 'exchanging',
  states: {
    exchanging: {
      invoke: {
        src: 'exchange',
        input: ({ context }) => ({ session: context.session, exchange: context.exchange, out: context.out! }),
        onDone: [
          { guard: ({ event }) => event.output === undefined, target: 'done' },
          {
            target: 'exchanging',
            reenter: true,
            actions: assign({ out: ({ event }) => event.output, messages: ({ context }) => context.messages + 1 }),
          },
        ],
        onError: { target: 'failed', actions: assign({ error: ({ event }) => describeError(event.error) }) },
      },
      after: { requestTimeout: { target: 'failed', actions: assign({ error: 'no answer from the server in time' }) } },
    },
    done: { type: 'final' },
    failed: { type: 'final' },
  },
  output: ({ context }) => ({
    ok: context.error === undefined && (context.session.endReason === 'completed' || context.session.endReason === undefined),
    reason:
      context.error ??
      (context.session.endReason === 'protocol-error' && context.session.abortReason ? `aborted: ${context.session.abortReason}` : undefined) ??
      context.session.endReason ??
      'completed',
    messages: context.messages,
    executed: context.session.executed,
  }),
});
